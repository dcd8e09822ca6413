"""What docs/operations.md promises an operator, checked end to end: accepting pauses at
limits.max_connections (the next client waits in the accept queue, then is served); /metrics
and /status carry exact counts; an admin drain closes the backend's idle kept-alive
connections, sends its WebSocket sessions close 1012 spread over timeouts.drain_spread and
cuts those whose client does not answer timeouts.close later; the access log goes to a file
when log.access names one, and format: text writes one line of fields per request."""

import hashlib
import json
import re
import select
import time
from collections import Counter

import wsproto
from harness import admin_port, admin_request as admin
from harness import (Deadline, build_request, gateway_config, pool,
                     response_bytes, route, switching_protocols, wait_for, wait_lines)


# --- helpers ------------------------------------------------------------------------------


def with_admin(cfg):
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    return cfg


def open_websocket(gate, connect, path="/ws"):
    """A client with an open WebSocket session through wsgate; (conn, backend name)."""
    conn = connect(gate.port)
    response = conn.upgrade(path)
    assert response.status == 101, (response.status, response.body)
    return conn, response.header("x-backend")


def close_websocket(conn):
    """The client's closing handshake: Close 1000, the echo, then the end of the stream."""
    conn.send_close(wsproto.CLOSE_NORMAL)
    frames = conn.frames_until_eof()
    assert [f.opcode for f in frames] == [wsproto.OP_CLOSE], frames
    conn.close()


def gauge_values(text):
    """The open-count series of /metrics (every other series is test_metrics.py's subject)."""
    return {k: v for k, v in metric_values(text).items()
            if k == "wsgate_sessions" or k.startswith(("wsgate_backend_active{",
                                                         "wsgate_backend_available{",
                                                         "wsgate_config_"))}


def metric_values(text):
    """Prometheus text -> {series: value}, with the HELP and TYPE lines left out."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            assert series not in values, f"{series} exposed twice:\n{text}"
            values[series] = float(value)
    return values


def wait_for_admin(port, path, parse, expected, what):
    """Polls GET `path` until parse(body) == expected (the counts follow closes a moment
    later); fails with the last body."""
    seen = {}

    def matches():
        status, body = admin(port, "GET", path)
        assert status == 200, (status, body)
        seen["body"] = body
        return parse(body) == expected

    try:
        wait_for(matches, what=what)
    except AssertionError:
        assert parse(seen["body"]) == expected, seen["body"]
        raise


def readable_times(conns, timeout):
    """For each conn, the time (monotonic) at which something first arrived on it."""
    pending = {c.sock: c for c in conns}
    times = {}
    deadline = Deadline(timeout)
    while pending:
        ready, _, _ = select.select(list(pending), [], [], deadline.remaining())
        if not ready:
            raise AssertionError(f"{len(pending)} of {len(conns)} sessions got nothing "
                                 f"within {timeout}s")
        now = time.monotonic()
        for sock in ready:
            times[pending.pop(sock)] = now
    return times


def answer_keep_alive(conn, backend):
    """Answers every request 200 with X-Backend: its name, keeping the connection; notes
    the request targets under "requests" and when the connection ended under "closed"."""
    for request in backend.requests(conn):
        backend.append("requests", request.target)
        conn.send(response_bytes(200, b"ok\n", (("X-Backend", backend.name),)))
    if not backend.stopping.is_set():
        backend.append("closed", time.monotonic())


def upgrade_then_stay_silent(conn, backend):
    """Completes the upgrade, then reads frames (notes["frames"]) and never answers them,
    not even a Close."""
    request = conn.read_request(timeout=10)
    if request is None:
        return
    conn.send(switching_protocols(request))
    for frame in backend.frames(conn):
        backend.append("frames", frame)


# --- limits.max_connections ------------------------------------------------------------------


def test_at_max_connections_the_next_client_waits_unserved_until_a_session_closes(
        start_wsgate, echo_backend, connect):
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("echo1"))},
                         limits={"max_connections": 3})
    gate = start_wsgate(cfg)
    sessions = [open_websocket(gate, connect)[0] for _ in range(3)]
    gate.wait_line(r"worker 0 at max_connections \(3 sessions\): accepting paused")

    # The kernel completes the handshake and queues the connection; wsgate leaves it there:
    # no answer, no FIN, no reset.
    waiting = connect(gate.port)
    waiting.send(build_request("GET", "/fourth"))
    assert waiting.received_within(1.0) == b"", "the fourth client was served over the limit"
    assert not waiting.eof and not waiting.reset, "the fourth client was refused"

    close_websocket(sessions[0])
    response = waiting.read_response(timeout=2.0)
    assert response.status == 200, (response.status, response.body)
    assert response.json()["path"] == "/fourth"
    for conn in sessions[1:]:  # the others were untouched
        conn.send_frame(wsproto.OP_TEXT, b"still here")
        assert conn.recv_message() == (wsproto.OP_TEXT, b"still here")


# --- /metrics and /status --------------------------------------------------------------------


def test_metrics_and_status_give_exact_open_connections_and_active_sessions_per_backend(
        start_wsgate, echo_backend, connect):
    a, b = echo_backend("a"), echo_backend("b")
    gate = start_wsgate(with_admin(gateway_config([route("app")], {"app": pool(a, b)},
                                                  workers=2)))
    port = admin_port(gate)
    version = re.search(r"wsgate (\S+) ready workers=2", gate.stderr()).group(1)

    # Three requests on connections that end: nothing of them stays open.
    for i in range(3):
        conn = connect(gate.port)
        response = conn.request("GET", f"/done{i}", (("Connection", "close"),))
        assert response.status == 200
        assert conn.is_closed_within(2.0)
        conn.close()
    # One kept-alive connection, idle: open, but no backend's active session.
    idle = connect(gate.port)
    assert idle.request("GET", "/kept-alive").status == 200
    # Ten WebSocket sessions: open, and each active on its backend.
    sessions = [open_websocket(gate, connect) for _ in range(10)]
    per_backend = Counter(name for _, name in sessions)
    assert set(per_backend) == {"a", "b"}, per_backend

    def expected_metrics():
        return {"wsgate_sessions": 1 + len(sessions),
                'wsgate_backend_active{pool="app",backend="a"}': per_backend["a"],
                'wsgate_backend_active{pool="app",backend="b"}': per_backend["b"],
                'wsgate_backend_available{pool="app",backend="a"}': 1,
                'wsgate_backend_available{pool="app",backend="b"}': 1,
                'wsgate_config_reloads_total{result="ok"}': 0,
                'wsgate_config_reloads_total{result="failed"}': 0,
                "wsgate_config_generation": 1}

    def expected_status():
        return {"version": version, "workers": 2, "sessions": 1 + len(sessions),
                "config": {"file": str(gate.config_path), "generation": 1,
                           "sha256": hashlib.sha256(gate.config_path.read_bytes()).hexdigest(),
                           "reloads": 0, "reloads_succeeded": 0, "reloads_failed": 0,
                           "last_reload_error": ""},
                "listeners": [{"name": "public", "address": f"127.0.0.1:{gate.port}",
                               "tls": False}],
                "pools": {"app": {"backends": [
                    {"name": x.name, "address": x.address, "active": per_backend[x.name],
                     "available": True, "health_up": True, "check": "none", "passive": "up",
                     "draining": False, "last_failure_ago_seconds": None,
                     "ejected_for_seconds": None}
                    for x in (a, b)]}}}

    def status_without_clocks(body):  # uptime_seconds and started_at: test_admin.py
        return {k: v for k, v in json.loads(body).items()
                if k not in ("uptime_seconds", "started_at")}

    wait_for_admin(port, "/metrics", gauge_values, expected_metrics(), "the open counts")
    wait_for_admin(port, "/status", status_without_clocks, expected_status(), "the open counts")
    status, body = admin(port, "GET", "/metrics")
    assert status == 200
    assert "# TYPE wsgate_sessions gauge\n" in body
    assert "# TYPE wsgate_backend_active gauge\n" in body
    assert "# TYPE wsgate_backend_available gauge\n" in body

    # Three sessions on a end, and the idle connection: the counts follow.
    on_a = [conn for conn, name in sessions if name == "a"][:3]
    for conn in on_a:
        close_websocket(conn)
    idle.close()
    sessions = [(conn, name) for conn, name in sessions if conn not in on_a]
    per_backend["a"] -= len(on_a)
    expected = expected_metrics()
    expected["wsgate_sessions"] = len(sessions)
    wait_for_admin(port, "/metrics", gauge_values, expected, "the counts after closes")
    expected = expected_status()
    expected["sessions"] = len(sessions)
    wait_for_admin(port, "/status", status_without_clocks, expected, "the counts after closes")


# --- admin drain ---------------------------------------------------------------------------


def test_drain_closes_the_backends_idle_kept_alive_connection_and_the_next_request_goes_elsewhere(
        start_wsgate, fake_backend, connect):
    backends = {name: fake_backend(answer_keep_alive, name) for name in ("a", "b")}
    gate = start_wsgate(with_admin(gateway_config([route("app")],
                                                  {"app": pool(*backends.values())})))
    port = admin_port(gate)
    client = connect(gate.port)
    first = client.request("GET", "/first")
    assert first.status == 200
    drained = backends[first.header("x-backend")]
    other = next(b for b in backends.values() if b is not drained)

    status, body = admin(port, "POST", f"/pools/app/backends/{drained.name}/drain")
    assert (status, json.loads(body)["state"]) == (200, "draining")
    wait_for(lambda: drained.notes.get("closed"), timeout=2.0,
             what="wsgate to close its idle connection to the drained backend")

    second = client.request("GET", "/second")  # the same client connection, still open
    assert second.status == 200
    assert second.header("x-backend") == other.name
    assert drained.accepted == 1 and drained.notes["requests"] == ["/first"]
    assert other.notes["requests"] == ["/second"]


DRAIN_SPREAD = 2.0  # seconds


def test_drain_sends_close_1012_to_each_session_at_moments_spread_over_drain_spread(
        start_wsgate, echo_backend, connect):
    a = echo_backend("a")
    cfg = gateway_config([route("app")], {"app": pool(a)},
                         timeouts={"drain": "10s", "drain_spread": f"{int(DRAIN_SPREAD)}s"})
    gate = start_wsgate(with_admin(cfg))
    port = admin_port(gate)
    sessions = [open_websocket(gate, connect)[0] for _ in range(20)]

    drained_at = time.monotonic()
    assert admin(port, "POST", "/pools/app/backends/a/drain")[0] == 200
    arrivals = readable_times(sessions, DRAIN_SPREAD + 3.0)
    for conn in sessions:
        close = conn.recv_frame(timeout=1.0)
        assert close.opcode == wsproto.OP_CLOSE, close
        assert wsproto.parse_close(close.payload)[0] == 1012, close.payload
        conn.send_frame(wsproto.OP_CLOSE, close.payload)

    # Each 1012 comes at a uniformly random moment of the window: with 20 sessions, several
    # land in each half of it and the first and last are more than half of it apart (each
    # fails by chance with a probability of about 2e-5).
    delays = sorted(t - drained_at for t in arrivals.values())
    assert delays[-1] < DRAIN_SPREAD + 0.5, f"a close came after drain_spread: {delays}"
    half = DRAIN_SPREAD / 2
    assert sum(d < half for d in delays) >= 2, f"too few closes in the first half: {delays}"
    assert sum(d >= half for d in delays) >= 2, f"too few closes in the second half: {delays}"
    assert delays[-1] - delays[0] > half, f"the closes are not spread: {delays}"


CLOSE_TIMEOUT = 1.5  # seconds


def test_a_drained_session_whose_client_does_not_answer_the_1012_is_cut_timeouts_close_later(
        start_wsgate, fake_backend, connect):
    silent = fake_backend(upgrade_then_stay_silent, "silent")
    cfg = gateway_config([route("app")], {"app": pool(silent)},
                         timeouts={"drain": "30s", "drain_spread": "0s",
                                   "close": f"{int(CLOSE_TIMEOUT * 1000)}ms"})
    gate = start_wsgate(with_admin(cfg))
    port = admin_port(gate)
    conn, _ = open_websocket(gate, connect)

    assert admin(port, "POST", "/pools/app/backends/silent/drain")[0] == 200
    close = conn.recv_frame(timeout=2.0)
    sent_at = time.monotonic()
    assert close.opcode == wsproto.OP_CLOSE
    assert wsproto.parse_close(close.payload)[0] == 1012
    # The client never answers (nor does the backend answer its 1001): the connection is
    # ended timeouts.close after the 1012, not before and not at timeouts.drain.
    assert conn.frames_until_eof(timeout=CLOSE_TIMEOUT + 2.0) == []
    waited = time.monotonic() - sent_at
    assert CLOSE_TIMEOUT - 0.2 < waited < CLOSE_TIMEOUT + 1.0, waited
    record = gate.access_for(conn)[0]
    assert (record["reason"], record["close_code"], record["close_by"]) == \
        ("backend drained", 1012, "wsgate")
    frames = silent.notes["frames"]
    assert [(f.opcode, wsproto.parse_close(f.payload)[0]) for f in frames] == \
        [(wsproto.OP_CLOSE, wsproto.CLOSE_GOING_AWAY)]


# --- access log ------------------------------------------------------------------------------


def test_access_log_to_a_file_path_appends_every_line_there_and_nothing_to_stdout(
        start_wsgate, echo_backend, connect, tmp_path):
    path = tmp_path / "logs" / "access.log"
    path.parent.mkdir()
    path.write_text("a line from before\n")
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("echo1"))})
    cfg["log"]["access"] = str(path)
    gate = start_wsgate(cfg)

    http = connect(gate.port)
    assert http.request("GET", "/to-a-file").status == 200
    ws, _ = open_websocket(gate, connect, "/ws-to-a-file")
    close_websocket(ws)

    lines = wait_lines(path.read_text, 3, "two access lines in the file")
    assert lines[0] == "a line from before"
    records = [json.loads(line) for line in lines[1:]]
    assert [(r["kind"], r["path"], r["status"], r["backend"]) for r in records] == [
        ("http", "/to-a-file", 200, "app/echo1"),
        ("websocket", "/ws-to-a-file", 101, "app/echo1")]
    assert records[0]["client"] == f"127.0.0.1:{http.local_port}"
    assert gate.stdout() == ""
