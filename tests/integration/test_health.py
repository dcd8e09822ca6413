"""Active health checks: a backend whose probe fails is taken out of the pool (no new
sessions) after `fall` probes and put back after `rise` good ones; a WebSocket probe needs a
valid 101."""

import harness
from harness import gateway_config, route, wait_for


def health_controlled(conn, backend):
    """Answers /health with 200 or 503 as notes["healthy"] says; anything else with 200."""
    while not backend.stopping.is_set():
        request = conn.read_request(timeout=60)
        if request is None:  # wsgate closed the connection (FIN or RST)
            return
        if request.target == "/health":
            status = 200 if backend.notes.get("healthy", True) else 503
        else:
            status = 200
            backend.append("served", request.target)
        try:
            conn.send(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n"
                      f"X-Backend: {backend.name}\r\n\r\nok".encode())
        except (BrokenPipeError, ConnectionResetError):  # a probe wsgate already gave up on
            return


def served_by(gate, connect, count):
    names = []
    for i in range(count):
        conn = connect(gate.port)  # a new connection each: a new pick each
        response = conn.request("GET", f"/r{i}")
        assert response.status == 200
        names.append(response.header("x-backend"))
    return names


def test_a_failing_health_check_takes_a_backend_out_and_back_in(start_wsgate, fake_backend,
                                                                connect):
    a = fake_backend(health_controlled, name="a")
    b = fake_backend(health_controlled, name="b")
    pool = harness.pool(a, b)
    pool["health"] = {"path": "/health", "interval": "100ms", "timeout": "80ms",
                      "rise": 2, "fall": 2}
    gate = start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": pool}))
    assert set(served_by(gate, connect, 6)) == {"a", "b"}

    b.note("healthy", False)
    gate.wait_line(r"\[health b=app/b\] down after 2 failed probes", timeout=5)
    assert set(served_by(gate, connect, 6)) == {"a"}

    b.note("healthy", True)
    gate.wait_line(r"\[health b=app/b\] up after 2 good probes", timeout=5)
    assert "b" in served_by(gate, connect, 6)


def test_a_websocket_probe_needs_a_valid_101(start_wsgate, echo_backend, fake_backend, connect):
    good = echo_backend("good")
    bad = fake_backend(harness.answer_http(200), name="bad")  # 200 to an upgrade: not healthy
    pool = harness.pool(good, bad)
    pool["health"] = {"path": "/ws", "websocket": True, "interval": "100ms", "timeout": "80ms",
                      "rise": 1, "fall": 1}
    gate = start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": pool}))
    gate.wait_line(r"\[health b=app/bad\] down after 1 failed probes: no 101", timeout=5)
    # With "bad" out, every upgrade goes to "good": a pick of "bad" would relay its 200.
    for _ in range(6):
        conn = connect(gate.port)
        assert conn.upgrade("/ws").status == 101
