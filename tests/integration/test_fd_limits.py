"""wsgate out of file descriptors: new connections wait in the accept queue (none is
refused, the worker does not spin, the log does not flood), a request whose backend
connection cannot get a descriptor is answered 503 without blaming the backend, and
everything is served again once descriptors are free."""

import socket
import time

import wsproto
from harness import LOOPBACK, Deadline, gateway_config, pool, route, wait_for

NOFILE = 64  # the open-files limit wsgate runs under in these tests


def start_limited(start_wsgate, echo):
    cfg = gateway_config([route("app", path_prefix="/")], {"app": pool(echo)},
                         timeouts={"handshake": "60s"})
    return start_wsgate(cfg, nofile=NOFILE)


def hold_descriptors(gate, count):
    """Opens `count` idle client connections, each waited for until wsgate holds a
    descriptor for it; returns the sockets."""
    hogs = []
    for _ in range(count):
        before = gate.open_fds()
        hogs.append(socket.create_connection((LOOPBACK, gate.port)))
        wait_for(lambda: gate.open_fds() > before, what="wsgate to accept an idle connection")
    return hogs


def accept_failures(gate):
    return gate.stderr().count("accept failed: Too many open files")


def test_out_of_descriptors_new_connections_wait_and_are_served_once_some_free_up(
        start_wsgate, echo_backend, connect):
    gate = start_limited(start_wsgate, echo_backend("echo1"))
    hogs = hold_descriptors(gate, NOFILE - gate.open_fds())
    assert gate.open_fds() == NOFILE

    # The kernel completes the handshake; wsgate cannot accept it and says so once.
    conn = connect(gate.port)
    key = wsproto.new_key()
    conn.send(wsproto.upgrade_request("/chat", "localhost", key))
    gate.wait_line(r"worker 0 out of resources: accept failed: Too many open files")

    # Waiting is quiet: no busy loop on the still-readable listener, no line per attempt.
    cpu_before = gate.cpu_seconds()
    window = Deadline(1.0)
    while not window.expired():
        time.sleep(0.05)
    assert gate.cpu_seconds() - cpu_before < 0.5, "wsgate spins while out of descriptors"
    assert accept_failures(gate) <= 2, gate.stderr()[-2000:]
    assert conn.received_within(0.1) == b"", "the waiting client must not be answered yet"

    # Two descriptors free (client + backend socket): the waiting client gets through.
    for hog in hogs[:2]:
        hog.close()
    response = conn.read_response()
    assert response.status == 101, response.body
    assert response.header("sec-websocket-accept") == wsproto.accept_for(key)
    conn.send_frame(wsproto.OP_TEXT, b"still here")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"still here")
    gate.wait_line(r"worker 0 accepting again")
    for hog in hogs[2:]:
        hog.close()


def test_a_backend_connection_without_a_descriptor_gets_503_and_the_backend_stays_up(
        start_wsgate, echo_backend, connect):
    gate = start_limited(start_wsgate, echo_backend("echo1"))
    hogs = hold_descriptors(gate, NOFILE - gate.open_fds() - 1)

    # The client takes the last descriptor; its backend connection finds none.
    conn = connect(gate.port)
    response = conn.request("GET", "/page")
    assert response.status == 503, (response.status, response.body)
    assert b"no file descriptor left" in response.body
    gate.wait_line(r"worker 0 out of resources: backend socket failed: Too many open files")
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
                         timeouts={"handshake": "60s"})
    cfg["admin"] = {"listen": f"{LOOPBACK}:0"}
    gate = start_wsgate(cfg, nofile=NOFILE)
    admin_port = int(gate.wait_line(r"admin listening address=\S+:(\d+)").group(1))
    hogs = hold_descriptors(gate, NOFILE - gate.open_fds())

    status = socket.create_connection((LOOPBACK, admin_port))
    status.sendall(b"GET /status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
    gate.wait_line(r"admin: accept failed: Too many open files")
    cpu_before = gate.cpu_seconds()
    window = Deadline(1.0)
    while not window.expired():
        time.sleep(0.05)
    assert gate.cpu_seconds() - cpu_before < 0.5, "wsgate spins while out of descriptors"

    hogs.pop().close()
    status.settimeout(10)
    reply = b""
    while chunk := status.recv(65536):
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    status.close()
    for hog in hogs:
        hog.close()
