"""A side that stops reading must stop the other side, not grow wsgate's memory: with
limits.max_buffer_bytes, wsgate's RSS stays bounded while a peer pushes hundreds of MiB
at a reader that does not read, and the stream resumes intact once it does."""

import select
import socket
import struct
import time

import harness
import wsproto
from harness import Deadline, gateway_config, pool, route, rss_bytes, wait_for

MESSAGE = 1 << 20
COUNT = 200  # 200 MiB toward a client that does not read
UPLOAD_COUNT = 64  # 64 MiB toward a backend that does not read (it decodes them in Python)
MAX_GROWTH = 48 << 20
SMALL_BUFFER = 256 << 10


def numbered(i: int) -> bytes:
    """Message i: its index, then a fixed filler (so reordering or loss is visible)."""
    return struct.pack("!Q", i) + b"\xa5" * (MESSAGE - 8)


def gateway(start_wsgate, backend):
    return start_wsgate(gateway_config([route("ws", path_prefix="/")], {"ws": pool(backend)},
                                       limits={"max_buffer_bytes": "256KiB"}))


def wait_until_stalled(progress, pid, quiet: float = 1.0, timeout: float = 30.0):
    """Polls progress() until it stops growing for `quiet` seconds, sampling wsgate's RSS.
    Returns (progress when stalled, peak RSS seen)."""
    peak = rss_bytes(pid)
    last, last_change = progress(), time.monotonic()
    deadline = Deadline(timeout)
    while not deadline.expired():
        time.sleep(0.1)
        peak = max(peak, rss_bytes(pid))
        now = progress()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            return now, peak
    raise AssertionError(f"the sender never stalled (progress {last} bytes)")


def test_client_that_never_reads_bounds_wsgate_memory_then_resumes(start_wsgate, fake_backend,
                                                                   connect):
    def pushes(conn, backend):
        request = conn.read_request(timeout=10)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        conn.send(harness.switching_protocols(request))
        conn.sock.settimeout(60)
        for i in range(COUNT):
            conn.sock.sendall(wsproto.encode_frame(wsproto.OP_BINARY, numbered(i)))
            backend.note("sent", (i + 1) * MESSAGE)
        backend.note("done", True)
        backend.stopping.wait(30)

    backend = fake_backend(pushes)
    gate = gateway(start_wsgate, backend)
    baseline = rss_bytes(gate.pid)

    conn = connect(gate.port, rcvbuf=SMALL_BUFFER)
    assert conn.upgrade("/ws").status == 101
    sent, peak = wait_until_stalled(lambda: backend.notes.get("sent", 0), gate.pid)
    assert sent < COUNT * MESSAGE, \
        "the backend pushed everything although the client never read"
    assert peak - baseline < MAX_GROWTH, \
        f"wsgate grew by {(peak - baseline) >> 20} MiB while the client did not read"

    deadline = Deadline(60)
    for i in range(COUNT):
        opcode, payload = conn.recv_message(timeout=deadline.remaining())
        assert opcode == wsproto.OP_BINARY
        assert len(payload) == MESSAGE and payload[:8] == struct.pack("!Q", i), \
            f"message {i} lost, reordered or corrupted"
    assert backend.notes.get("done")
    assert rss_bytes(gate.pid) - baseline < MAX_GROWTH


def send_until_blocked(sock, data: bytes, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """Sends `data` without blocking until the socket has not been writable for `quiet`
    seconds (or all of it went out). Returns the number of bytes sent."""
    sock.setblocking(False)
    view = memoryview(data)
    sent = 0
    deadline = Deadline(timeout)
    try:
        while sent < len(data):
            if deadline.expired():
                raise AssertionError(f"still sending after {timeout}s ({sent} bytes)")
            _, writable, _ = select.select([], [sock], [], quiet)
            if not writable:
                break
            sent += sock.send(view[sent:sent + (1 << 20)])
    finally:
        sock.setblocking(True)
    return sent


def test_backend_that_never_reads_bounds_wsgate_memory_then_resumes(start_wsgate,
                                                                    fake_backend, connect):
    def reads_when_told(conn, backend):
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        request = conn.read_request(timeout=10)
        conn.send(harness.switching_protocols(request))
        wait_for(lambda: backend.notes.get("go") or backend.stopping.is_set(), 60,
                 "the test to let the backend read")
        for i in range(UPLOAD_COUNT):
            opcode, payload = conn.recv_message(timeout=30)
            if opcode != wsproto.OP_BINARY or payload[:8] != struct.pack("!Q", i):
                raise AssertionError(f"message {i} lost, reordered or corrupted")
            backend.note("received", i + 1)

    backend = fake_backend(reads_when_told)
    gate = gateway(start_wsgate, backend)
    baseline = rss_bytes(gate.pid)

    conn = connect(gate.port)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    assert conn.upgrade("/ws").status == 101
    stream = b"".join(wsproto.encode_frame(wsproto.OP_BINARY, numbered(i), mask=True,
                                           mask_key=b"\0\0\0\0") for i in range(UPLOAD_COUNT))
    sent = send_until_blocked(conn.sock, stream)
    assert sent < len(stream), "the client pushed everything although the backend never read"
    peak = rss_bytes(gate.pid)
    assert peak - baseline < MAX_GROWTH, \
        f"wsgate grew by {(peak - baseline) >> 20} MiB while the backend did not read"

    backend.note("go", True)
    conn.sock.settimeout(60)
    conn.sock.sendall(memoryview(stream)[sent:])
    wait_for(lambda: backend.notes.get("received") == UPLOAD_COUNT or backend.errors, 60,
             "the backend to read every message")
    assert backend.errors == []
    assert rss_bytes(gate.pid) - baseline < MAX_GROWTH
