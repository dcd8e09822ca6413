"""/metrics after scripted runs: every counter has exactly the value the run implies, summed
over two workers, and the exposition passes `promtool check metrics`."""

import json
import re
import shutil
import subprocess

import harness
import wsproto
from harness import admin_request as admin
from harness import gateway_config, route, wait_for

BOOM = """\
function on_request(req)
  if req.path == "/boom" then error("boom") end
  if req.path == "/spin" then while true do end end
  return nil
end
"""


def lua_route(prefix):
    return {"match": {"path_prefix": prefix}, "pool": "app", "lua": "on_request"}


def scrape(port):
    status, body = admin(port, "GET", "/metrics")
    assert status == 200, body
    series = {}
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        number = float(value)
        series[name] = int(number) if number.is_integer() else number
    return series, body


def promtool_check(body):
    """`promtool check metrics` on a scrape: lint problems and format errors fail the test."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run packaging/install-deps.sh (Debian: prometheus)"
    run = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                         capture_output=True, timeout=30, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()


def test_metrics_count_every_request_session_message_close_and_lua_failure(
        start_wsgate, echo_backend, connect, tmp_path):
    script = tmp_path / "boom.lua"
    script.write_text(BOOM)
    app = harness.pool(echo_backend("echo1"))
    cfg = gateway_config([lua_route("/boom"), lua_route("/spin"),
                          route(respond=(403, "no\n"), path_prefix="/deny"),
                          route("app", path_prefix="/")],
                         {"app": app}, workers=2)
    cfg["scripting"] = {"file": str(script), "instruction_limit": 100000}
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)
    before, _ = scrape(port)
    assert before['wsgate_connections_accepted_total{listener="public"}'] == 0

    # Two requests on one connection (200, 200), a 403 from a respond route, two Lua failures
    # (500): five requests on four connections.
    kept = connect(gate.port)
    assert kept.request("GET", "/a").status == 200
    assert kept.request("GET", "/b").status == 200
    assert connect(gate.port).request("GET", "/deny", (("Connection", "close"),)).status == 403
    assert connect(gate.port).request("GET", "/boom").status == 500
    assert connect(gate.port).request("GET", "/spin").status == 500

    # Two WebSocket sessions: one closed by the client with 1000 after 3 messages each way,
    # one closed by wsgate with 1002 (the client sent an unmasked frame).
    ws = connect(gate.port)
    assert ws.upgrade("/chat").status == 101
    for payload in (b"one", b"two", b"three"):
        ws.send_frame(wsproto.OP_TEXT, payload)
        assert ws.recv_message() == (wsproto.OP_TEXT, payload)
    ws.send_close()
    assert [f.opcode for f in ws.frames_until_eof()] == [wsproto.OP_CLOSE]
    bad = connect(gate.port)
    assert bad.upgrade("/chat").status == 101
    bad.send_frame(wsproto.OP_TEXT, b"x", mask=False)
    frames = bad.frames_until_eof()
    assert wsproto.parse_close(frames[-1].payload)[0] == 1002
    gate.wait_access(lambda r: r.get("close_code") == 1002)
    gate.wait_access(lambda r: r.get("close_code") == 1000)
    kept.close()
    wait_for(lambda: scrape(port)[0]["wsgate_http_requests_total{code=\"2xx\"}"] == 2,
             what="the kept-alive connection's requests in the counters")

    after, body = scrape(port)
    expected = {
        'wsgate_connections_accepted_total{listener="public"}': 6,
        'wsgate_http_requests_total{code="none"}': 0,
        'wsgate_http_requests_total{code="1xx"}': 2,
        'wsgate_http_requests_total{code="2xx"}': 2,
        'wsgate_http_requests_total{code="3xx"}': 0,
        'wsgate_http_requests_total{code="4xx"}': 1,
        'wsgate_http_requests_total{code="5xx"}': 2,
        "wsgate_websocket_sessions_total": 2,
        'wsgate_websocket_messages_total{direction="client_to_backend"}': 3,
        'wsgate_websocket_messages_total{direction="backend_to_client"}': 3,
        'wsgate_websocket_payload_bytes_total{direction="client_to_backend"}': 11,
        'wsgate_websocket_payload_bytes_total{direction="backend_to_client"}': 11,
        'wsgate_websocket_closes_total{code="1000",by="client"}': 1,
        'wsgate_websocket_closes_total{code="1002",by="wsgate"}': 1,
        'wsgate_lua_errors_total{hook="on_request"}': 2,
        'wsgate_lua_errors_total{hook="on_message"}': 0,
        'wsgate_lua_limit_hits_total{limit="instructions"}': 1,
        'wsgate_lua_limit_hits_total{limit="memory"}': 0,
    }
    assert {k: after.get(k) for k in expected} == expected, body
    # Close pairs that never happened have no series.
    assert not [k for k in after if k.startswith("wsgate_websocket_closes_total")
                and k not in expected], body
    assert re.search(r"^# TYPE wsgate_websocket_closes_total counter$", body, re.M)


def test_metrics_after_echoes_a_502_a_1009_a_drain_and_a_reload(
        start_wsgate, echo_backend, connect, tmp_path):
    """The issue's scripted run: each labelled series (listener, pool, backend), histogram
    count, gauge and counter has exactly its value, the counters survive a reload, and the
    text passes promtool."""
    app = harness.pool(echo_backend("echo1"))
    held, dead_port = harness.refused_port()
    dead = harness.pool(("gone", f"127.0.0.1:{dead_port}"), retries=0)
    cfg = gateway_config([route("dead", path_prefix="/dead"), route("app", path_prefix="/")],
                         {"app": app, "dead": dead}, workers=2,
                         timeouts={"drain": "10s", "drain_spread": "200ms"},
                         limits={"max_message_bytes": 1024})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)

    # An HTTP 200 and a 502 (the dead pool's backend refuses: one connect failure, one
    # ejection, no retry).
    assert connect(gate.port).request("GET", "/a", (("Connection", "close"),)).status == 200
    assert connect(gate.port).request("GET", "/dead/x", (("Connection", "close"),)).status == 502
    # Echoes: three messages each way, closed by the client with 1000.
    ws = connect(gate.port)
    assert ws.upgrade("/chat").status == 101
    for payload in (b"one", b"two", b"three"):
        ws.send_frame(wsproto.OP_TEXT, payload)
        assert ws.recv_message() == (wsproto.OP_TEXT, payload)
    ws.send_close()
    assert [f.opcode for f in ws.frames_until_eof()] == [wsproto.OP_CLOSE]
    # A message over limits.max_message_bytes: 1009 from wsgate, nothing relayed.
    big = connect(gate.port)
    assert big.upgrade("/chat").status == 101
    big.send_frame(wsproto.OP_BINARY, b"x" * 2000)
    frames = big.frames_until_eof()
    assert wsproto.parse_close(frames[-1].payload)[0] == 1009
    # A drain: the session on the drained backend gets 1012 within drain_spread.
    drained = connect(gate.port)
    assert drained.upgrade("/chat").status == 101
    wait_for(lambda: scrape(port)[0]["wsgate_websocket_sessions_active"] == 1,
             what="the tunnel in the active gauge")
    assert admin(port, "POST", "/pools/app/backends/echo1/drain")[0] == 200
    close = drained.recv_frame(timeout=5.0)
    assert wsproto.parse_close(close.payload)[0] == 1012
    drained.send_frame(wsproto.OP_CLOSE, close.payload)
    drained.frames_until_eof()
    gate.wait_access(lambda r: r.get("close_code") == 1012)
    assert admin(port, "POST", "/pools/app/backends/echo1/enable")[0] == 200
    # A reload (one route more): the counters go on, they do not start over.
    cfg["routes"].insert(0, route(respond=(403, "no\n"), path_prefix="/deny"))
    gate.config_path.write_text(harness.to_yaml(cfg))
    status, body = admin(port, "POST", "/reload")
    assert status == 200 and json.loads(body)["result"] == "ok", body
    assert connect(gate.port).request("GET", "/deny", (("Connection", "close"),)).status == 403
    last = connect(gate.port)
    assert last.upgrade("/chat").status == 101
    last.send_frame(wsproto.OP_TEXT, b"four")
    assert last.recv_message() == (wsproto.OP_TEXT, b"four")
    last.send_close()
    last.frames_until_eof()
    wait_for(lambda: scrape(port)[0]["wsgate_websocket_sessions_total"] == 4
             and scrape(port)[0]['wsgate_connections_active{listener="public"}'] == 0,
             what="every session ended and counted")

    after, body = scrape(port)
    app_b = 'pool="app",backend="echo1"'
    dead_b = 'pool="dead",backend="gone"'
    expected = {
        'wsgate_connections_accepted_total{listener="public"}': 7,
        'wsgate_connections_active{listener="public"}': 0,
        'wsgate_connections_refused_total{reason="out_of_resources"}': 0,
        "wsgate_sessions": 0,
        'wsgate_config_reloads_total{result="ok"}': 1,
        'wsgate_config_reloads_total{result="failed"}': 0,
        "wsgate_config_generation": 2,
        'wsgate_http_requests_total{code="1xx"}': 4,
        'wsgate_http_requests_total{code="2xx"}': 1,
        'wsgate_http_requests_total{code="4xx"}': 1,
        'wsgate_http_requests_total{code="5xx"}': 1,
        # Request heads read: 7; backend connects made: 5 (the refused one is not a
        # duration); responses from a backend: 5.
        "wsgate_handshake_duration_seconds_count": 7,
        'wsgate_handshake_duration_seconds_bucket{le="+Inf"}': 7,
        "wsgate_backend_connect_duration_seconds_count": 5,
        "wsgate_backend_response_duration_seconds_count": 5,
        "wsgate_websocket_sessions_active": 0,
        "wsgate_websocket_sessions_total": 4,
        'wsgate_websocket_messages_total{direction="client_to_backend"}': 4,
        'wsgate_websocket_messages_total{direction="backend_to_client"}': 4,
        'wsgate_websocket_payload_bytes_total{direction="client_to_backend"}': 15,
        'wsgate_websocket_payload_bytes_total{direction="backend_to_client"}': 15,
        'wsgate_websocket_closes_total{code="1000",by="client"}': 2,
        'wsgate_websocket_closes_total{code="1009",by="wsgate"}': 1,
        'wsgate_websocket_closes_total{code="1012",by="wsgate"}': 1,
        "wsgate_draining_sessions": 0,
        "wsgate_drained_sessions_total": 1,
        "wsgate_queue_length": 0,
        "wsgate_queue_waits_total": 0,
        "wsgate_queue_timeouts_total": 0,
        f"wsgate_backend_up{{{app_b}}}": 1,
        f"wsgate_backend_available{{{app_b}}}": 1,
        f"wsgate_backend_draining{{{app_b}}}": 0,
        f"wsgate_backend_active{{{app_b}}}": 0,
        f'wsgate_backend_responses_total{{{app_b},code="1xx"}}': 4,
        f'wsgate_backend_responses_total{{{app_b},code="2xx"}}': 1,
        f"wsgate_backend_websocket_sessions_total{{{app_b}}}": 4,
        f"wsgate_backend_connect_failures_total{{{app_b}}}": 0,
        f"wsgate_backend_dropped_sessions_total{{{app_b}}}": 0,
        f"wsgate_backend_up{{{dead_b}}}": 0,
        f"wsgate_backend_connect_failures_total{{{dead_b}}}": 1,
        f"wsgate_backend_ejections_total{{{dead_b}}}": 1,
        f"wsgate_backend_retries_total{{{dead_b}}}": 0,
        f'wsgate_backend_responses_total{{{dead_b},code="5xx"}}': 0,
    }
    wrong = {k: (after.get(k), v) for k, v in expected.items() if after.get(k) != v}
    assert not wrong, f"(got, expected): {wrong}\n{body}"
    assert not [k for k in after if k.startswith("wsgate_websocket_closes_total")
                and k not in expected], body
    # Buckets are cumulative and end at the count.
    buckets = [v for k, v in after.items()
               if k.startswith("wsgate_backend_response_duration_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == 5, body
    assert after["process_open_fds"] > 0 and after["process_max_fds"] >= after["process_open_fds"]
    assert after["process_resident_memory_bytes"] > 1 << 20
    assert after["process_cpu_seconds_total"] > 0
    assert re.search(r'^wsgate_build_info\{version="[^"]+"\} 1$', body, re.M), body
    promtool_check(body)
    held.close()


def test_a_backend_that_drops_live_sessions_is_counted_and_named_once_with_the_count(
        start_wsgate, echo_backend, connect):
    backend = echo_backend("crashy")
    cfg = gateway_config([route("app")], {"app": harness.pool(backend)}, workers=2)
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)
    sessions = [connect(gate.port) for _ in range(3)]
    for conn in sessions:
        harness.upgrade_and_echo(conn)

    backend.crash()  # no close frame to anyone
    for conn in sessions:
        frames = conn.frames_until_eof()
        assert wsproto.parse_close(frames[-1].payload)[0] == 1014
    for _ in sessions:
        gate.wait_access(lambda r: r.get("reason") == "backend vanished"
                         and r.get("close_code") == 1006 and r.get("close_by") == "backend")
    series, body = scrape(port)
    assert series['wsgate_backend_dropped_sessions_total{pool="app",backend="crashy"}'] == 3, body
    # One warning per backend per 10 s at most: the three may straddle one tick, so at most
    # two lines, and the last says 3 in all.
    line = r"backend app/crashy dropped (\d+) live WebSocket session\(s\) without a close.*?(\d+) in all"
    wait_for(lambda: sum(int(n) for n, _ in re.findall(line, gate.stderr())) == 3,
             timeout=15.0, what="warnings naming the three dropped sessions")
    warnings = re.findall(line, gate.stderr())
    assert len(warnings) <= 2 and warnings[-1][1] == "3", warnings


def test_the_queue_gauge_waits_and_timeouts_follow_requests_that_wait_for_a_full_backend(
        start_wsgate, echo_backend, connect):
    app = harness.pool(echo_backend("solo"))
    app["backends"][0]["max_connections"] = 1
    cfg = gateway_config([route("app")], {"app": app}, workers=2, timeouts={"queue": "1s"})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)
    session = connect(gate.port)
    harness.upgrade_and_echo(session)  # the backend's one place

    def queue():
        series = scrape(port)[0]
        return (series["wsgate_queue_length"], series["wsgate_queue_waits_total"],
                series["wsgate_queue_timeouts_total"])

    # One request waits its whole timeouts.queue: it is in the gauge meanwhile, then 503.
    timed_out = connect(gate.port)
    timed_out.send(harness.build_request("GET", "/waits", (("Connection", "close"),)))
    wait_for(lambda: queue() == (1, 1, 0), what="the waiting request in the queue gauge")
    assert timed_out.read_response(timeout=5).status == 503
    assert queue() == (0, 1, 1)
    # Another waits until the session ends, then gets its place.
    served = connect(gate.port)
    served.send(harness.build_request("GET", "/gets-in", (("Connection", "close"),)))
    wait_for(lambda: queue() == (1, 2, 1), what="the second request in the queue gauge")
    session.send_close()
    session.frames_until_eof()
    assert served.read_response(timeout=5).status == 200
    assert queue() == (0, 2, 1)


def test_a_retry_is_counted_on_the_backend_it_went_to_and_the_failure_on_the_one_that_failed(
        start_wsgate, echo_backend, connect):
    held, dead_port = harness.refused_port()
    app = harness.pool(("gone", f"127.0.0.1:{dead_port}"), echo_backend("live"), retries=1)
    cfg = gateway_config([route("app")], {"app": app}, workers=1)  # one round-robin cycle
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)
    for i in range(4):  # round robin meets "gone" within two; its ejection keeps it out
        assert connect(gate.port).request("GET", f"/r{i}", (("Connection", "close"),)).status == 200
    series, body = scrape(port)
    expected = {
        'wsgate_backend_connect_failures_total{pool="app",backend="gone"}': 1,
        'wsgate_backend_ejections_total{pool="app",backend="gone"}': 1,
        'wsgate_backend_retries_total{pool="app",backend="gone"}': 0,
        'wsgate_backend_retries_total{pool="app",backend="live"}': 1,
        'wsgate_backend_connect_failures_total{pool="app",backend="live"}': 0,
        'wsgate_backend_responses_total{pool="app",backend="live",code="2xx"}': 4,
        "wsgate_backend_connect_duration_seconds_count": 4,
    }
    assert {k: series.get(k) for k in expected} == expected, body
    held.close()
