"""Backends that refuse, stall, reset or talk nonsense: the client gets a clear error,
the access log says why, and wsgate keeps serving everyone else."""

import time

import harness
import wsproto
from harness import assert_error_response, gateway_config, pool, route, wait_for


def single_pool_gateway(start_wsgate, *backends, retries=None, **kwargs):
    return start_wsgate(gateway_config([route("app", path_prefix="/")],
                                       {"app": pool(*backends, retries=retries)}, **kwargs))


def test_refused_backend_is_skipped_for_one_that_is_up(start_wsgate, echo_backend,
                                                       refused_address, connect):
    echo = echo_backend("echo1")
    gate = single_pool_gateway(start_wsgate, ("down", refused_address()), echo, retries=1)
    for i in range(4):  # round robin puts the refused backend first at least once
        conn = connect(gate.port)
        response = conn.request("GET", f"/try/{i}")
        assert response.status == 200, response.body
        assert response.json()["backend"] == "echo1"
        assert gate.access_for(conn)[0]["backend"] == "app/echo1"


def test_retries_zero_means_a_refused_backend_is_not_retried(start_wsgate, echo_backend,
                                                             refused_address, connect):
    echo = echo_backend("echo1")
    gate = single_pool_gateway(start_wsgate, ("down", refused_address()), echo, retries=0)
    statuses = sorted(connect(gate.port).request("GET", "/").status for _ in range(2))
    assert statuses == [200, 502]


def test_websocket_upgrade_is_retried_on_another_backend_too(start_wsgate, echo_backend,
                                                             refused_address, connect):
    echo = echo_backend("echo1")
    gate = single_pool_gateway(start_wsgate, ("down", refused_address()), echo, retries=1)
    for _ in range(2):
        conn = connect(gate.port)
        assert conn.upgrade("/ws").status == 101
        conn.send_frame(wsproto.OP_TEXT, b"through")
        assert conn.recv_message() == (wsproto.OP_TEXT, b"through")


def test_all_backends_down_gives_502_with_a_reason(start_wsgate, refused_address, connect):
    gate = single_pool_gateway(start_wsgate, ("down1", refused_address()),
                               ("down2", refused_address()), retries=1)
    conn = connect(gate.port)
    response = conn.request("GET", "/anything")
    assert_error_response(response, 502)
    record = gate.access_for(conn)[0]
    assert record["status"] == 502
    assert record["reason"] not in ("", "ok")


def test_stalled_backend_gives_504_after_backend_response_timeout(start_wsgate, fake_backend,
                                                                  connect):
    backend = fake_backend(harness.stall)
    gate = single_pool_gateway(start_wsgate, backend, timeouts={"backend_response": "1s"})
    conn = connect(gate.port)
    started = time.monotonic()
    response = conn.request("GET", "/slow", timeout=6)
    elapsed = time.monotonic() - started
    assert_error_response(response, 504)
    assert 0.8 <= elapsed <= 3.0, f"504 after {elapsed:.2f}s with backend_response: 1s"
    record = gate.access_for(conn)[0]
    assert record["status"] == 504
    assert record["reason"] not in ("", "ok")


def test_stalled_websocket_upgrade_gives_504(start_wsgate, fake_backend, connect):
    backend = fake_backend(harness.stall)
    gate = single_pool_gateway(start_wsgate, backend, timeouts={"backend_response": "1s"})
    conn = connect(gate.port)
    assert_error_response(conn.upgrade("/ws", timeout=6), 504)


def test_backend_resetting_the_connection_gives_502(start_wsgate, fake_backend, connect):
    backend = fake_backend(harness.accept_and_reset)
    gate = single_pool_gateway(start_wsgate, backend)
    conn = connect(gate.port)
    assert_error_response(conn.request("GET", "/"), 502)
    assert gate.access_for(conn)[0]["reason"] not in ("", "ok")


def test_backend_answering_garbage_gives_502(start_wsgate, fake_backend, connect):
    def garbage(conn, backend):
        conn.read_request(timeout=10)
        conn.send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        backend.stopping.wait(10)

    backend = fake_backend(garbage)
    gate = single_pool_gateway(start_wsgate, backend)
    conn = connect(gate.port)
    assert_error_response(conn.request("GET", "/"), 502)


def assert_closed_1014(conn):
    """wsgate tells the client why its backend went away (1014: bad gateway), and ends the
    stream once the client answers."""
    close = conn.recv_frame()
    assert (close.opcode, wsproto.parse_close(close.payload)[0]) == (wsproto.OP_CLOSE, 1014)
    conn.send_close(1014)
    assert conn.frames_until_eof(timeout=5) == []


def test_backend_reset_mid_tunnel_closes_the_client_and_others_carry_on(
        start_wsgate, fake_backend, echo_backend, connect):
    def resets_after_first_frame(conn, backend):
        request = conn.read_request(timeout=10)
        conn.send(harness.switching_protocols(request))
        backend.note("frame", conn.recv_frame(timeout=10))
        conn.abort()

    flaky = fake_backend(resets_after_first_frame)
    echo = echo_backend("echo1")
    gate = start_wsgate(gateway_config(
        [route("flaky", path_prefix="/flaky"), route("ws", path_prefix="/")],
        {"flaky": pool(flaky), "ws": pool(echo)}))

    bystander = connect(gate.port)
    assert bystander.upgrade("/ws").status == 101

    victim = connect(gate.port)
    assert victim.upgrade("/flaky").status == 101
    victim.send_frame(wsproto.OP_TEXT, b"boom")
    assert_closed_1014(victim)
    assert flaky.notes["frame"].payload == b"boom"
    record = gate.access_for(victim)[0]
    assert record["kind"] == "websocket"
    assert (record["close_code"], record["close_by"]) == (1006, "backend")
    assert record["reason"] not in ("", "ok")

    bystander.send_frame(wsproto.OP_TEXT, b"unaffected")
    assert bystander.recv_message() == (wsproto.OP_TEXT, b"unaffected")
    newcomer = connect(gate.port)
    assert newcomer.upgrade("/ws").status == 101
    newcomer.send_frame(wsproto.OP_TEXT, b"new session")
    assert newcomer.recv_message() == (wsproto.OP_TEXT, b"new session")


def test_backend_closing_mid_tunnel_closes_the_client(start_wsgate, fake_backend, connect):
    def closes_after_first_frame(conn, backend):
        request = conn.read_request(timeout=10)
        conn.send(harness.switching_protocols(request))
        conn.recv_frame(timeout=10)
        conn.close()

    backend = fake_backend(closes_after_first_frame)
    gate = single_pool_gateway(start_wsgate, backend)
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"hello")
    assert_closed_1014(conn)
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1006, "backend")


def test_many_failed_requests_leave_wsgate_serving(start_wsgate, echo_backend, refused_address,
                                                   connect):
    count = 20
    echo = echo_backend("echo1")
    gate = start_wsgate(gateway_config(
        [route("dead", path_prefix="/dead"), route("live", path_prefix="/")],
        {"dead": pool(("down", refused_address()), retries=0), "live": pool(echo)}))
    for _ in range(count):
        assert connect(gate.port).request("GET", "/dead").status == 502
    assert connect(gate.port).request("GET", "/live").status == 200
    wait_for(lambda: len(gate.access_log()) >= count + 1, 5, "all requests logged")
