"""wsgate out of file descriptors: new connections wait in the accept queue (none is
refused, the worker does not spin, the log does not flood), a request whose backend
connection cannot get a descriptor is answered 503 without blaming the backend, and
everything is served again once descriptors are free."""

import socket
import time

import wsproto
from harness import LOOPBACK, gateway_config, pool, route, wait_for

NOFILE = 64  # the open-files limit wsgate runs under in these tests


def start_limited(start_wsgate, echo, connect, **timeouts):
    """wsgate under NOFILE open files, after one request and one WebSocket went through it
    (so every code path the tests take has run once while descriptors were free:
    UBSan's first check of a virtual call needs a pipe)."""
    # max_connections written, over what NOFILE carries: descriptors run out first.
    cfg = gateway_config([route("app", path_prefix="/")], {"app": pool(echo)},
                         timeouts={"handshake": "60s", **timeouts},
                         limits={"max_connections": 100000})
    gate = start_wsgate(cfg, nofile=NOFILE)
    idle_fds = gate.open_fds()
    warm = connect(gate.port)
    assert warm.request("GET", "/warm-up").status == 200
    ws = connect(gate.port)
    assert ws.upgrade("/warm-up").status == 101
    ws.send_frame(wsproto.OP_TEXT, b"hi")
    assert ws.recv_message() == (wsproto.OP_TEXT, b"hi")
    warm.close()
    ws.close()
    wait_for(lambda: gate.open_fds() == idle_fds, what="wsgate to close the warm-up sessions")
    return gate


def test_max_connections_left_out_follows_the_open_files_limit_without_a_warning(
        start_wsgate, echo_backend):
    cfg = gateway_config([route("app", path_prefix="/")], {"app": pool(echo_backend("echo1"))})
    gate = start_wsgate(cfg, nofile=NOFILE)
    # (64 - 64 / 4 reserved) / 2 sessions: two descriptors each.
    gate.wait_line(r"limits\.max_connections 24 \(not set: what the open files limit 64 "
                   r"carries, at most 100000\)")
    assert "needs" not in gate.stderr() and "warning" not in gate.stderr(), gate.stderr()


def hold_descriptors(gate, count):
    """Opens `count` idle client connections, each waited for until wsgate holds a
    descriptor for it; returns the sockets."""
    hogs = []
    for _ in range(count):
        before = gate.open_fds()
        hogs.append(socket.create_connection((LOOPBACK, gate.port)))
        wait_for(lambda: gate.open_fds() > before, what="wsgate to accept an idle connection")
    return hogs


STATUS_REQUEST = b"GET /status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"


def get_status(port):
    """GET /status from the admin endpoint; the raw response."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(STATUS_REQUEST)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


def assert_idle_for_a_second(gate):
    """wsgate uses well under a CPU-second in the next second: it does not spin on its
    listening sockets, which stay readable while it cannot accept."""
    cpu_before = gate.cpu_seconds()
    time.sleep(1.0)  # deliberate: the window the CPU time is measured over
    assert gate.cpu_seconds() - cpu_before < 0.5, "wsgate spins while out of descriptors"


def accept_failures(gate):
    return gate.stderr().count("accept failed: Too many open files")


def test_out_of_descriptors_new_connections_wait_and_are_served_once_some_free_up(
        start_wsgate, echo_backend, connect):
    gate = start_limited(start_wsgate, echo_backend("echo1"), connect)
    assert ("limits.max_connections 100000 needs 200100 open files, the limit is 64"
            in gate.stderr())
    hogs = hold_descriptors(gate, NOFILE - gate.open_fds())
    assert gate.open_fds() == NOFILE

    # The kernel completes the handshake; wsgate cannot accept it and says so once.
    conn = connect(gate.port)
    key = wsproto.new_key()
    conn.send(wsproto.upgrade_request("/chat", "localhost", key))
    gate.wait_line(r"worker 0 out of resources: accept failed: Too many open files")

    # Waiting is quiet: no busy loop on the still-readable listener, no line per attempt.
    assert_idle_for_a_second(gate)
    assert accept_failures(gate) <= 3, gate.stderr()[-2000:]  # one line a second at most
    assert conn.received_within(0.1) == b"", "the waiting client must not be answered yet"

    # One descriptor frees up: the client is accepted, and its backend socket finds none;
    # the request waits for another instead of failing.
    hogs.pop().close()
    gate.wait_line(r"backend socket failed: Too many open files; waiting for one to free up")
    hogs.pop().close()
    response = conn.read_response()
    assert response.status == 101, response.body
    assert response.header("sec-websocket-accept") == wsproto.accept_for(key)
    conn.send_frame(wsproto.OP_TEXT, b"still here")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"still here")
    gate.wait_line(r"worker 0 accepting again")
    for hog in hogs:
        hog.close()


def test_a_backend_connection_without_a_descriptor_gets_503_and_the_backend_stays_up(
        start_wsgate, echo_backend, connect):
    gate = start_limited(start_wsgate, echo_backend("echo1"), connect, queue="300ms")
    hogs = hold_descriptors(gate, NOFILE - gate.open_fds() - 1)

    # The client takes the last descriptor; its backend connection finds none, and none
    # frees up within timeouts.queue.
    conn = connect(gate.port)
    response = conn.request("GET", "/page")
    assert response.status == 503, (response.status, response.body)
    assert b"wsgate has no file descriptor left for a backend connection" in response.body
    assert gate.access_for(conn)[0]["reason"] == "out of resources"
    gate.wait_line(r"backend socket failed: Too many open files")
    assert "backend connect failed" not in gate.stderr()

    for hog in hogs:
        hog.close()
    wait_for(lambda: gate.open_fds() < NOFILE - 2, what="wsgate to close the idle connections")
    # The backend was not marked down for wsgate's own shortage: served at once.
    again = connect(gate.port)
    response = again.request("GET", "/page")
    assert response.status == 200, (response.status, response.body)
    assert response.json()["backend"] == "echo1"


def test_the_admin_endpoint_waits_out_a_descriptor_shortage_too(start_wsgate, echo_backend):
    cfg = gateway_config([route("app", path_prefix="/")], {"app": pool(echo_backend("echo1"))},
                         timeouts={"handshake": "60s"}, limits={"max_connections": 100000})
    cfg["admin"] = {"listen": f"{LOOPBACK}:0"}
    gate = start_wsgate(cfg, nofile=NOFILE)
    admin_port = int(gate.wait_line(r"admin listening address=\S+:(\d+)").group(1))
    idle_fds = gate.open_fds()
    assert get_status(admin_port).startswith(b"HTTP/1.1 200")  # warm-up (see start_limited)
    wait_for(lambda: gate.open_fds() == idle_fds, what="wsgate to close the warm-up request")
    hogs = hold_descriptors(gate, NOFILE - gate.open_fds())

    status = socket.create_connection((LOOPBACK, admin_port))
    status.sendall(STATUS_REQUEST)
    gate.wait_line(r"admin: accept failed: Too many open files")
    assert_idle_for_a_second(gate)

    hogs.pop().close()
    status.settimeout(10)
    reply = b""
    while chunk := status.recv(65536):
        reply += chunk
    status.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    for hog in hogs:
        hog.close()


def test_health_probes_that_find_no_descriptor_are_skipped_not_counted_as_failures(
        start_wsgate, echo_backend, connect):
    echo = echo_backend("echo1")
    app = pool(echo)
    app["health"] = {"path": "/health-probe", "interval": "100ms", "timeout": "80ms",
                     "fall": 1, "rise": 1}
    cfg = gateway_config([route("app", path_prefix="/")], {"app": app},
                         timeouts={"handshake": "60s"}, limits={"max_connections": 100000})
    gate = start_wsgate(cfg, nofile=NOFILE)
    wait_for(lambda: "GET /health-probe" in echo.stderr(), what="a first probe")

    # More idle connections than descriptors: the probes find none (every 100 ms).
    hogs = [socket.create_connection((LOOPBACK, gate.port)) for _ in range(NOFILE)]
    gate.wait_line(r"\[health b=app/echo1\] probe skipped: Too many open files")
    for hog in hogs:
        hog.close()
    wait_for(lambda: gate.open_fds() < NOFILE - 4, what="wsgate to close the idle connections")
    response = connect(gate.port).request("GET", "/after")
    assert response.status == 200, (response.status, response.body)
    assert "down after" not in gate.stderr()

