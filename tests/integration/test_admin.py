"""The admin endpoint: drain a backend (no new sessions; its tunnels get close 1012 spread
over drain_spread, the others are untouched) and enable it again; status, metrics, errors."""

import json
import time
import urllib.error
import urllib.request

import pytest

import harness
from harness import admin_request as admin
import wsproto
from harness import gateway_config, route


def start_gateway(start_wsgate, backends, **timeouts):
    cfg = gateway_config([route("app", path_prefix="/")], {"app": harness.pool(*backends)},
                         timeouts={"drain": "5s", "drain_spread": "1s", **timeouts})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    return gate, harness.admin_port(gate)


def open_session(gate, connect):
    conn = connect(gate.port)
    response = conn.upgrade("/ws")
    assert response.status == 101
    return conn, response.header("x-backend")


def test_drain_closes_the_backends_sessions_with_1012_and_sends_new_ones_elsewhere(
        start_wsgate, echo_backend, connect):
    a, b = echo_backend("a"), echo_backend("b")
    gate, port = start_gateway(start_wsgate, [a, b])
    sessions = [open_session(gate, connect) for _ in range(6)]
    on_a = [conn for conn, name in sessions if name == "a"]
    on_b = [conn for conn, name in sessions if name == "b"]
    assert (len(on_a), len(on_b)) == (3, 3), sessions  # round robin

    status, body = admin(port, "POST", "/pools/app/backends/a/drain")
    assert status == 200 and json.loads(body)["state"] == "draining"
    started = time.monotonic()
    for conn in on_a:
        close = conn.recv_frame(timeout=5)
        assert close.opcode == wsproto.OP_CLOSE
        assert wsproto.parse_close(close.payload)[0] == 1012
        assert time.monotonic() - started < 3.0  # within drain_spread (1s), with slack
        conn.send_frame(wsproto.OP_CLOSE, close.payload)
        assert conn.frames_until_eof(timeout=5) == []
    for conn in on_b:  # untouched: still echoing
        conn.send_frame(wsproto.OP_TEXT, b"still here")
        assert conn.recv_message() == (wsproto.OP_TEXT, b"still here")
    assert {open_session(gate, connect)[1] for _ in range(4)} == {"b"}

    _, body = admin(port, "GET", "/status")
    backends = {x["name"]: x for x in json.loads(body)["pools"]["app"]["backends"]}
    assert backends["a"]["draining"] and not backends["b"]["draining"]

    status, body = admin(port, "POST", "/pools/app/backends/a/enable")
    assert status == 200 and json.loads(body)["state"] == "enabled"
    assert "a" in {open_session(gate, connect)[1] for _ in range(6)}


def test_admin_answers_errors_status_and_metrics(start_wsgate, echo_backend):
    a = echo_backend("a")
    gate, port = start_gateway(start_wsgate, [a])
    assert admin(port, "POST", "/pools/nope/backends/a/drain")[0] == 404
    assert admin(port, "POST", "/pools/app/backends/nope/drain")[0] == 404
    assert admin(port, "GET", "/pools/app/backends/a/drain")[0] == 405
    assert admin(port, "GET", "/reload")[0] == 405
    # A 405 says what the endpoint takes (RFC 9110 15.5.6), whatever the method.
    for method, path, allow in (("GET", "/reload", "POST"), ("PUT", "/status", "GET"),
                                ("DELETE", "/metrics", "GET"),
                                ("PATCH", "/pools/app/backends/a/enable", "POST")):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert (refused.value.code, refused.value.headers.get("Allow")) == (405, allow), path
    assert admin(port, "DELETE", "/nothing")[0] == 404
    assert admin(port, "GET", "/nothing")[0] == 404
    status, body = admin(port, "GET", "/metrics")
    assert status == 200
    assert 'wsgate_backend_active{pool="app",backend="a"} 0' in body
    assert 'wsgate_backend_available{pool="app",backend="a"} 1' in body


def test_status_shows_a_backend_without_checks_as_passive_and_ejected_after_a_failed_connect(
        start_wsgate, echo_backend, refused_address):
    a = echo_backend("a")
    gone = ("gone", refused_address())
    cfg = gateway_config([route("app", path_prefix="/")],
                         {"app": harness.pool(gone, a, retries=1)})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)

    def backends():
        _, body = admin(port, "GET", "/status")
        return {x["name"]: x for x in json.loads(body)["pools"]["app"]["backends"]}

    assert {n: (b["check"], b["passive"]) for n, b in backends().items()} == {
        "gone": ("none", "up"), "a": ("none", "up")}
    # Round robin tries `gone` first (refused), then retries on `a`.
    for _ in range(2):
        conn = harness.Conn.open(gate.port)
        assert conn.request("GET", "/x").status == 200
        conn.close()
    state = backends()
    assert (state["gone"]["check"], state["gone"]["passive"], state["gone"]["available"]) == (
        "none", "ejected", False), state
    assert state["gone"]["health_up"] is True  # no active check: never down by one
    assert state["a"]["passive"] == "up", state
