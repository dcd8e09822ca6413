"""/metrics after a scripted run: every counter of the workers' blocks (proxy/stats.h) has
exactly the value the run implies, summed over two workers."""

import re

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
        series[name] = int(value)
    return series, body


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
    assert before["wsgate_connections_accepted_total"] == 0

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
        "wsgate_connections_accepted_total": 6,
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
