"""WebSocket through wsgate: echo with an independent client, upgrade validation, what
happens when the backend does not switch protocols, timeouts and half-close."""

import asyncio
import base64
import os
import socket
import time

import pytest
import websockets

import harness
import wsproto
from harness import (Deadline, assert_error_response, gateway_config, pool,
                     route, switching_protocols, wait_for)

INTERNAL = route(path_prefix="/internal", respond=(403, "forbidden\n"))


@pytest.fixture
def echo(echo_backend):
    return echo_backend("echo1")


@pytest.fixture
def gate(start_wsgate, echo):
    """/internal answered 403 by wsgate, everything else to the echo backend."""
    return start_wsgate(gateway_config([INTERNAL, route("ws", path_prefix="/")],
                                       {"ws": pool(echo)}))


def gateway_to(start_wsgate, backend, **kwargs):
    """wsgate routing everything but /internal to `backend` (pool "ws")."""
    return start_wsgate(gateway_config([INTERNAL, route("ws", path_prefix="/")],
                                       {"ws": pool(backend)}, **kwargs))


def websockets_session(port, messages, path="/ws"):
    """Sends each message with python3-websockets and collects the replies.
    Returns (client port, replies, close code)."""
    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None,
                                      compression=None, open_timeout=5, close_timeout=5,
                                      ping_interval=None) as ws:
            client_port = ws.local_address[1]
            replies = [None] * len(messages)
            for i, message in enumerate(messages):
                await ws.send(message)
                replies[i] = await asyncio.wait_for(ws.recv(), 20)
        return client_port, replies, ws.close_code
    return asyncio.run(run())


def raw_upgrade(path="/ws", headers=(), method="GET", key=None, version="13"):
    """An upgrade request with every field under the test's control."""
    lines = [f"{method} {path} HTTP/1.1", "Host: example.test"]
    defaults = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key or wsproto.new_key()),
                ("Sec-WebSocket-Version", version)]
    override = {name.lower() for name, _ in headers}
    lines += [f"{k}: {v}" for k, v in defaults if k.lower() not in override and v is not None]
    lines += [f"{k}: {v}" for k, v in headers if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- echo -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 1 << 20],
                         ids=lambda n: f"{n}B")
def test_binary_message_comes_back_intact_through_wsgate(gate, size):
    payload = os.urandom(size)
    _, replies, close_code = websockets_session(gate.port, [payload])
    assert replies == [payload]
    assert close_code == 1000


def test_text_messages_come_back_in_order_through_wsgate(gate):
    messages = ["", "a", "h\u00e9llo \u2603 \U0001f600", "x" * 70000]
    _, replies, _ = websockets_session(gate.port, messages)
    assert replies == messages


def test_a_finished_websocket_session_is_logged_once(gate):
    client_port, _, _ = websockets_session(gate.port, [b"ping"], path="/ws/room?id=7")
    records = gate.wait_access(lambda r: str(r["client"]).endswith(f":{client_port}"))
    assert len(records) == 1
    record = records[0]
    assert record["kind"] == "websocket"
    assert record["status"] == 101
    assert record["method"] == "GET"
    assert record["path"].startswith("/ws/room")
    assert record["backend"] == "ws/echo1"
    assert isinstance(record["reason"], str) and record["reason"]


def test_fragments_and_a_ping_between_them_pass_through(gate, connect):
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    conn.send_frame(wsproto.OP_BINARY, b"frag", fin=False)
    conn.send_frame(wsproto.OP_PING, b"are you there")
    conn.send_frame(wsproto.OP_CONT, b"men", fin=False)
    conn.send_frame(wsproto.OP_CONT, b"ted", fin=True)
    assert conn.recv_message() == (wsproto.OP_PONG, b"are you there")
    assert conn.recv_message() == (wsproto.OP_BINARY, b"fragmented")


def test_close_handshake_passes_through_and_both_sides_close(gate, echo, connect):
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"last")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"last")
    conn.send_close(1000, "bye")
    opcode, payload = conn.recv_message()
    assert opcode == wsproto.OP_CLOSE
    assert wsproto.parse_close(payload) == (1000, "bye")
    assert conn.is_closed_within(5)
    wait_for(lambda: echo.requests_logged() >= 1, 5, "the backend to see the session end")


def test_upgrade_tokens_match_case_insensitively_among_others(gate, connect):
    conn = connect(gate.port)
    key = wsproto.new_key()
    conn.send(raw_upgrade(key=key, headers=(("Upgrade", "WebSocket"),
                                            ("Connection", "keep-alive, Upgrade"))))
    response = conn.read_response()
    assert response.status == 101
    assert response.header("sec-websocket-accept") == wsproto.accept_for(key)
    conn.send_frame(wsproto.OP_TEXT, b"still echoed")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"still echoed")


def test_backend_sees_regenerated_upgrade_headers_and_forwarded_for(start_wsgate,
                                                                   fake_backend, connect):
    backend = fake_backend(harness.websocket_echo)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    conn.send(raw_upgrade(headers=(("Upgrade", "WebSocket"),
                                   ("Connection", "keep-alive, Upgrade, X-Private"),
                                   ("X-Private", "hop"))))
    assert conn.read_response().status == 101
    request = backend.notes["requests"][0]
    assert request.head.tokens("upgrade") == ["websocket"]
    assert request.head.tokens("connection") == ["upgrade"]
    assert request.header("x-private") is None
    assert request.head.tokens("x-forwarded-for")[-1:] == ["127.0.0.1"]
    assert request.header("sec-websocket-version") == "13"
    conn.send_frame(wsproto.OP_BINARY, b"\x00\x01")
    assert conn.recv_message() == (wsproto.OP_BINARY, b"\x00\x01")


# --- upgrade validation ---------------------------------------------------------------

SHORT_KEY = base64.b64encode(os.urandom(15)).decode()
LONG_KEY = base64.b64encode(os.urandom(17)).decode()

BAD_UPGRADES = [
    ("missing-key", 400, raw_upgrade(headers=(("Sec-WebSocket-Key", None),))),
    ("key-of-15-bytes", 400, raw_upgrade(key=SHORT_KEY)),
    ("key-of-17-bytes", 400, raw_upgrade(key=LONG_KEY)),
    ("key-not-base64", 400, raw_upgrade(key="!!!!!!!!!!!!!!!!!!!!!!==")),
    ("post-method", 400, raw_upgrade(method="POST", headers=(("Content-Length", "0"),))),
    ("version-8", 426, raw_upgrade(version="8")),
    ("version-14", 426, raw_upgrade(version="14")),
    ("content-length-body", 400, raw_upgrade(headers=(("Content-Length", "5"),)) + b"hello"),
    ("chunked-body", 400,
     raw_upgrade(headers=(("Transfer-Encoding", "chunked"),)) + b"5\r\nhello\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("raw,status", [(raw, status) for _, status, raw in BAD_UPGRADES],
                         ids=[name for name, _, _ in BAD_UPGRADES])
def test_invalid_upgrade_is_refused_before_any_backend_is_contacted(start_wsgate, fake_backend,
                                                                   connect, raw, status):
    backend = fake_backend(harness.websocket_echo)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    conn.send(raw)
    response = conn.read_response()
    assert_error_response(response, status)
    if status == 426:
        assert response.header("sec-websocket-version") == "13"
    record = gate.access_for(conn)[0]
    assert record["status"] == status
    assert record["backend"] is None
    assert backend.accepted == 0, "an invalid upgrade reached the backend"


def test_frame_pipelined_behind_the_upgrade_is_held_until_the_101(start_wsgate, fake_backend,
                                                                  connect):
    def holds(conn, backend):
        request = conn.read_request(timeout=10)
        # Anything arriving while the 101 is withheld would be a frame sent too early.
        backend.note("early", conn.received_within(0.5))
        conn.send(switching_protocols(request))
        frame = conn.recv_frame(timeout=10)
        backend.note("frame", frame)
        conn.send(wsproto.encode_frame(frame.opcode, frame.payload))

    backend = fake_backend(holds)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    early_frame = wsproto.encode_frame(wsproto.OP_TEXT, b"first frame", mask=True)
    assert conn.upgrade("/ws", trailing=early_frame).status == 101
    assert conn.recv_message() == (wsproto.OP_TEXT, b"first frame")
    assert backend.notes["early"] == b""
    assert backend.notes["frame"].masked
    assert backend.errors == []


# --- the backend does not switch protocols -------------------------------------------------


@pytest.mark.parametrize("status", [200, 426, 403])
def test_non_101_answer_is_relayed_and_the_connection_stays_http(start_wsgate, fake_backend,
                                                                connect, status):
    backend = fake_backend(harness.answer_http(status, b"not switching\n"))
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    response = conn.upgrade("/ws")
    assert (response.status, response.body) == (status, b"not switching\n")
    # The next bytes are a new request, routed on their own: /internal is wsgate's 403.
    follow_up = conn.request("GET", "/internal/secrets")
    assert (follow_up.status, follow_up.body) == (403, b"forbidden\n")
    assert len(backend.notes["requests"]) == 1
    assert backend.errors == []


def test_request_after_a_refused_upgrade_is_forwarded_as_http(start_wsgate, fake_backend,
                                                              connect):
    backend = fake_backend(harness.answer_http(426, b"upgrade elsewhere\n"))
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 426
    assert conn.request("GET", "/api/next").status == 426
    wait_for(lambda: len(backend.notes.get("requests", [])) == 2, 5, "the second request")
    second = backend.notes["requests"][1]
    assert second.target == "/api/next"
    # Parsed and forwarded by wsgate, not relayed as raw tunnel bytes.
    assert second.head.tokens("x-forwarded-for")[-1:] == ["127.0.0.1"]


def test_frame_pipelined_behind_a_refused_upgrade_is_never_tunnelled(start_wsgate,
                                                                     fake_backend, connect):
    def refuses(conn, backend):
        conn.read_request(timeout=10)
        conn.send(harness.response_bytes(403, b"no\n"))
        backend.note("after", conn.received_within(1.0))

    backend = fake_backend(refuses)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    frame = wsproto.encode_frame(wsproto.OP_TEXT, b"GET /internal HTTP/1.1", mask=True)
    response = conn.upgrade("/ws", trailing=frame)
    assert response.status == 403
    wait_for(lambda: "after" in backend.notes, 5, "the backend to stop listening")
    assert backend.notes["after"] == b"", "frame bytes reached the backend"


def test_subprotocol_and_extension_chosen_from_the_offer_pass_through(start_wsgate,
                                                                     fake_backend, connect):
    def chooses(conn, backend):
        request = conn.read_request(timeout=10)
        backend.note("request", request)
        conn.send(switching_protocols(request, extra=(
            ("Sec-WebSocket-Protocol", "chat.v2"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"))))
        backend.stopping.wait(10)

    backend = fake_backend(chooses)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    response = conn.upgrade("/ws", extra_headers=(
        ("Sec-WebSocket-Protocol", "chat.v1, chat.v2"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")))
    assert response.status == 101
    assert response.header("sec-websocket-protocol") == "chat.v2"
    assert response.header("sec-websocket-extensions").startswith("permessage-deflate")
    offered = backend.notes["request"]
    assert offered.header("sec-websocket-protocol") == "chat.v1, chat.v2"
    assert offered.header("sec-websocket-extensions").startswith("permessage-deflate")


BAD_SWITCHES = [
    ("wrong-accept", dict(accept=wsproto.accept_for(wsproto.new_key()))),
    ("empty-accept", dict(accept="")),
    ("unoffered-subprotocol", dict(extra=(("Sec-WebSocket-Protocol", "chat"),))),
    ("unoffered-extension", dict(extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),))),
    ("no-upgrade-header", dict(upgrade=None)),
    ("upgrade-to-h2c", dict(upgrade="h2c")),
]


@pytest.mark.parametrize("bad", [b for _, b in BAD_SWITCHES], ids=[n for n, _ in BAD_SWITCHES])
def test_invalid_101_from_backend_gives_502_and_no_tunnel(start_wsgate, fake_backend, connect,
                                                          bad):
    def bad_switch(conn, backend):
        request = conn.read_request(timeout=10)
        conn.send(switching_protocols(request, **bad))
        try:
            after = conn.read_until_eof(timeout=5)
            backend.note("closed", True)
        except TimeoutError:
            after = bytes(conn.buf)
            backend.note("closed", False)
        backend.note("after", after)

    backend = fake_backend(bad_switch)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    frame = wsproto.encode_frame(wsproto.OP_TEXT, b"must not pass", mask=True)
    response = conn.upgrade("/ws", trailing=frame)
    assert_error_response(response, 502)
    wait_for(lambda: "after" in backend.notes, 7, "the backend connection to end")
    assert backend.notes["closed"], "wsgate kept the backend connection after a bad 101"
    assert backend.notes["after"] == b"", "client bytes were tunnelled after a bad 101"
    record = gate.access_for(conn)[0]
    assert record["status"] == 502
    assert record["reason"] not in ("", "ok")


# --- timeouts and half-close -------------------------------------------------------------


def test_idle_tunnel_is_closed_after_the_idle_timeout(start_wsgate, echo, connect):
    gate = gateway_to(start_wsgate, echo, timeouts={"idle": "1s"})
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"hello")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"hello")
    quiet_since = time.monotonic()
    close = conn.recv_frame(timeout=5)
    elapsed = time.monotonic() - quiet_since
    assert close.opcode == wsproto.OP_CLOSE
    assert wsproto.parse_close(close.payload)[0] == wsproto.CLOSE_GOING_AWAY
    assert 0.8 <= elapsed <= 3.0, f"close 1001 after {elapsed:.2f}s idle with idle: 1s"
    conn.send_frame(wsproto.OP_CLOSE, close.payload)  # the echo completes the handshake
    conn.frames_until_eof(timeout=3)
    wait_for(lambda: echo.requests_logged() >= 1, 5, "the backend side to be closed too")
    record = gate.access_for(conn)[0]
    assert record["kind"] == "websocket"
    assert record["reason"] == "idle timeout"


def test_active_tunnel_outlives_the_idle_timeout(start_wsgate, echo, connect):
    gate = gateway_to(start_wsgate, echo, timeouts={"idle": "1s"})
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    deadline = Deadline(2.2)
    i = 0
    while not deadline.expired():  # a message every ~300 ms for twice the idle timeout
        conn.send_frame(wsproto.OP_TEXT, b"tick %d" % i)
        assert conn.recv_message() == (wsproto.OP_TEXT, b"tick %d" % i)
        assert conn.received_within(0.3) == b""
        i += 1
    conn.send_frame(wsproto.OP_TEXT, b"still here")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"still here")


def test_backend_bytes_still_arrive_after_the_client_half_closes(start_wsgate, fake_backend,
                                                                 connect):
    def answers_after_eof(conn, backend):
        request = conn.read_request(timeout=10)
        conn.send(switching_protocols(request))
        backend.note("received", conn.read_until_eof(timeout=10))
        conn.send(wsproto.encode_frame(wsproto.OP_BINARY, b"last words"))
        conn.send(wsproto.encode_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000)))
        conn.sock.shutdown(socket.SHUT_WR)

    backend = fake_backend(answers_after_eof)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"goodbye")
    conn.shutdown_write()
    frames = conn.frames_until_eof(timeout=5)
    assert [(f.opcode, f.payload) for f in frames][:1] == [(wsproto.OP_BINARY, b"last words")]
    received = wsproto.FrameDecoder().feed(backend.notes["received"])
    assert (received[0].opcode, received[0].payload) == (wsproto.OP_TEXT, b"goodbye")
    assert backend.errors == []


def test_client_disconnect_closes_the_backend_connection(start_wsgate, fake_backend, connect):
    def waits_for_eof(conn, backend):
        request = conn.read_request(timeout=10)
        conn.send(switching_protocols(request))
        try:
            conn.read_until_eof(timeout=10)
            backend.note("closed", True)
        except TimeoutError:
            backend.note("closed", False)

    backend = fake_backend(waits_for_eof)
    gate = gateway_to(start_wsgate, backend)
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    client_port = conn.local_port
    conn.abort()
    wait_for(lambda: "closed" in backend.notes, 12, "the backend connection to end")
    assert backend.notes["closed"], "backend connection outlived the client"
    record = gate.wait_access(lambda r: str(r["client"]).endswith(f":{client_port}"))[0]
    assert record["kind"] == "websocket"


def test_a_client_reset_mid_frame_ends_the_backend_connection_at_once(start_wsgate,
                                                                      fake_backend, connect):
    """A client that resets with half a frame relayed: no Close can follow that half toward the
    backend, so a FIN has to, at once (found by `make soak`: the backend heard nothing until
    timeouts.close, and the access line read 'close timeout'). The line says 'client reset'."""
    def reads_until_eof(conn, backend):
        request = conn.read_request(timeout=10)
        conn.send(switching_protocols(request))
        try:
            data = conn.read_until_eof(timeout=10)
            backend.note("eof_at", time.monotonic())
            backend.note("received", data)
        except TimeoutError:
            backend.note("eof_at", None)

    backend = fake_backend(reads_until_eof)
    gate = gateway_to(start_wsgate, backend, timeouts={"close": "5s"})
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    client_port = conn.local_port
    whole = wsproto.encode_frame(wsproto.OP_BINARY, bytes(range(64)), mask=True)
    half = whole[:len(whole) - 32]
    conn.send(half)
    time.sleep(0.3)  # relayed before the reset
    reset_at = time.monotonic()
    conn.abort()
    wait_for(lambda: "eof_at" in backend.notes, 12, "the backend connection to end")
    assert backend.notes["eof_at"] is not None, "the backend connection outlived the client"
    elapsed = backend.notes["eof_at"] - reset_at
    assert elapsed < 2.0, f"the backend heard of the reset {elapsed:.2f}s later (close is 5s)"
    assert len(backend.notes["received"]) == len(half), "nothing may follow the half frame"
    record = gate.wait_access(lambda r: str(r["client"]).endswith(f":{client_port}"))[0]
    assert (record["reason"], record["close_code"], record["close_by"]) == \
        ("client reset", 1006, "client"), record


def test_sessions_are_independent(gate, connect):
    a, b = connect(gate.port), connect(gate.port)
    assert a.upgrade("/a").status == 101 and b.upgrade("/b").status == 101
    a.send_frame(wsproto.OP_TEXT, b"for a")
    b.send_frame(wsproto.OP_TEXT, b"for b")
    assert b.recv_message() == (wsproto.OP_TEXT, b"for b")
    assert a.recv_message() == (wsproto.OP_TEXT, b"for a")
    a.abort()
    b.send_frame(wsproto.OP_TEXT, b"b lives on")
    assert b.recv_message() == (wsproto.OP_TEXT, b"b lives on")

