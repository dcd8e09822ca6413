"""Backends that answer in ways a request-smuggling attempt relies on, and the timers around
a session: each test is one promise of docs/protocol.md, docs/websocket.md or
docs/operations.md, shown through the real binary with a scripted backend.

- a 101 to a request that asked for no upgrade is a 502, never a tunnel;
- a response cut short by the backend (FIN or RST) is never passed off as whole;
- a kept-alive backend connection closed as it is reused: bodiless requests are retried
  once on a new connection, requests with a body get 502;
- interim 1xx responses reach the client before the final one;
- timeouts.handshake: silence is closed silently, a partial head gets 408;
- timeouts.idle in a tunnel: wsgate's own pings are not activity, the client's pongs are.

Each test names, in tests/mutants/session-*.mutant, the bug it was shown to catch.
"""

import threading
import time

import harness
import wsproto
from backend_scripts import (bytes_until_eof, keep_alive_answers, next_request,
                             per_connection, wait_for_test)
from harness import (Deadline, assert_error_response, build_request, gateway_config, pool,
                     route, switching_protocols, wait_for)

TEXT, CLOSE, PING, PONG = wsproto.OP_TEXT, wsproto.OP_CLOSE, wsproto.OP_PING, wsproto.OP_PONG


def gateway(start_wsgate, backend, **kwargs):
    """wsgate with one route to a pool holding only `backend`."""
    return start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": pool(backend)},
                                       **kwargs))


# --- a 101 nobody asked for ------------------------------------------------------------------

BACKEND_SMUGGLED = b"BACKEND-SMUGGLED"
CLIENT_SMUGGLED = b"CLIENT-SMUGGLED"


def test_101_to_a_plain_get_gives_502_and_nothing_is_tunnelled(start_wsgate, fake_backend,
                                                                connect):
    def switches_anyway(conn, backend):
        request = next_request(conn)
        if request is None:
            return
        backend.append("requests", request)
        # A 101 to a GET without Upgrade, and tunnel bytes right behind it in the same write.
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n" +
                  wsproto.encode_frame(TEXT, BACKEND_SMUGGLED) + BACKEND_SMUGGLED)
        backend.note("after", bytes_until_eof(conn))

    backend = fake_backend(switches_anyway)
    gate = gateway(start_wsgate, backend)
    conn = connect(gate.port)
    # A frame pipelined behind the plain GET: it must not reach the backend either.
    conn.send(build_request("GET", "/plain") +
              wsproto.encode_frame(TEXT, CLIENT_SMUGGLED, mask=True))
    response = conn.read_response()
    assert_error_response(response, 502)
    assert BACKEND_SMUGGLED not in response.body
    assert conn.read_until_eof(timeout=3) == b"", "bytes after the 502"
    wait_for(lambda: "after" in backend.notes, 5, "wsgate to end the backend connection")
    assert backend.notes["after"] == b"", "the backend connection was kept or got client bytes"
    assert [r.target for r in backend.notes["requests"]] == ["/plain"]
    record = gate.access_for(conn)[0]
    assert (record["status"], record["reason"]) == (502, "invalid 101")
    why = f":{conn.local_port} response b=app/fake] bad 101: 101 to a request that asked for no"
    wait_for(lambda: why in gate.stderr(), 5, "the log line saying why")


# --- a response cut short ----------------------------------------------------------------------

FULL_LENGTH = 100
SENT_BEFORE_CUT = b"x" * 40


def cut_short_after(cut: threading.Event, reset: bool):
    """Answers with Content-Length 100 but only 40 bytes of body, then, once the test has
    read them, closes (FIN) or resets (RST) the connection."""
    def script(conn, backend):
        if next_request(conn) is None:
            return
        conn.send(f"HTTP/1.1 200 OK\r\nContent-Length: {FULL_LENGTH}\r\n\r\n".encode() +
                  SENT_BEFORE_CUT)
        wait_for_test(cut, backend)
        if reset:
            conn.abort()
        else:
            conn.close()
    return script


def assert_cut_response_is_not_passed_off_as_whole(gate, backend, connect, cut):
    conn = connect(gate.port)
    conn.send(build_request("GET", "/cut"))
    head = conn.read_head()
    assert head.start[1] == "200"
    assert head.get("content-length") == str(FULL_LENGTH)
    assert conn.read_exactly(len(SENT_BEFORE_CUT)) == SENT_BEFORE_CUT
    cut.set()
    # Closed at once (backend_response is 10s: a wsgate waiting for the rest would still hold
    # the connection), and nothing completes the body.
    rest = bytes_until_eof(conn, timeout=3)
    assert rest is not None, "the client connection stayed open after a cut-short response"
    assert rest == b"", "bytes the backend never sent completed the body"
    record = gate.access_for(conn)[0]
    assert record["status"] == 200
    assert record["reason"] != "ok", record
    # The next client gets the whole response, over a new backend connection.
    next_client = connect(gate.port)
    response = next_client.request("GET", "/next")
    assert (response.status, response.body) == (200, b"whole\n")
    assert backend.accepted == 2
    assert backend.notes["whole"] == ["/next"]


def test_backend_closing_mid_body_closes_the_client_without_completing_the_response(
        start_wsgate, fake_backend, connect):
    cut = threading.Event()
    backend = fake_backend(per_connection(cut_short_after(cut, reset=False),
                                          keep_alive_answers("whole", b"whole\n")))
    gate = gateway(start_wsgate, backend, timeouts={"backend_response": "10s"})
    assert_cut_response_is_not_passed_off_as_whole(gate, backend, connect, cut)


def test_backend_resetting_mid_body_closes_the_client_without_completing_the_response(
        start_wsgate, fake_backend, connect):
    cut = threading.Event()
    backend = fake_backend(per_connection(cut_short_after(cut, reset=True),
                                          keep_alive_answers("whole", b"whole\n")))
    gate = gateway(start_wsgate, backend, timeouts={"backend_response": "10s"})
    assert_cut_response_is_not_passed_off_as_whole(gate, backend, connect, cut)


# --- a kept-alive backend connection closed as it is reused -----------------------------------


def test_keep_alive_backend_connection_carries_the_clients_next_request(start_wsgate,
                                                                        fake_backend, connect):
    backend = fake_backend(keep_alive_answers("seen", b"kept\n"))
    gate = gateway(start_wsgate, backend)
    conn = connect(gate.port)
    for path in ("/one", "/two"):
        response = conn.request("GET", path)
        assert (response.status, response.body) == (200, b"kept\n")
    assert backend.notes["seen"] == ["/one", "/two"]
    assert backend.accepted == 1, "the second request did not reuse the backend connection"


def closes_on_the_second_request(conn, backend):
    """Answers the first request (keep-alive), then closes once the next one is here: for
    wsgate, a kept-alive connection that the backend closed just as it was reused."""
    first = next_request(conn)
    if first is None:
        return
    backend.append("first connection", first.target)
    conn.send(harness.response_bytes(200, b"first\n"))
    second = next_request(conn)
    if second is not None:
        backend.append("first connection", second.target)
    conn.close()  # a FIN: the request was read whole, body included


def test_bodiless_request_on_a_reused_connection_the_backend_closed_is_retried_once(
        start_wsgate, fake_backend, connect):
    backend = fake_backend(per_connection(closes_on_the_second_request,
                                          keep_alive_answers("second connection", b"retried\n")))
    gate = gateway(start_wsgate, backend)
    conn = connect(gate.port)
    assert conn.request("GET", "/one").body == b"first\n"
    response = conn.request("GET", "/two")
    assert (response.status, response.body) == (200, b"retried\n")
    assert backend.notes["first connection"] == ["/one", "/two"]  # it was reused
    assert backend.notes["second connection"] == ["/two"]  # and retried once, on a new one
    assert backend.accepted == 2
    assert [r["status"] for r in gate.access_for(conn, count=2)] == [200, 200]


def test_request_with_a_body_on_a_reused_connection_the_backend_closed_gets_502(
        start_wsgate, fake_backend, connect):
    def answers_without_reading_the_body(conn, backend):
        # Only a wrongly retried request gets here; its body went to the closed connection.
        head = conn.read_head()
        backend.append("second connection", head.start[1])
        conn.send(harness.response_bytes(200, b"retried\n"))

    backend = fake_backend(per_connection(closes_on_the_second_request,
                                          answers_without_reading_the_body))
    gate = gateway(start_wsgate, backend)
    conn = connect(gate.port)
    assert conn.request("GET", "/one").body == b"first\n"
    response = conn.request("POST", "/two", body=b"not idempotent")
    assert_error_response(response, 502)
    assert backend.notes["first connection"] == ["/one", "/two"]  # it was reused
    assert backend.accepted == 1, "a request with a body was sent again"
    records = gate.access_for(conn, count=2)
    assert [(r["method"], r["status"]) for r in records] == [("GET", 200), ("POST", 502)]


# --- interim responses ---------------------------------------------------------------------------


def test_100_continue_and_103_early_hints_reach_the_client_before_the_final_response(
        start_wsgate, fake_backend, connect):
    body = b"the body, sent after 100 Continue"
    hints_seen = threading.Event()

    def interim_then_final(conn, backend):
        try:
            head = conn.read_head()
            backend.note("expect", head.get("expect"))
            conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            backend.note("body", conn.read_exactly(len(body)))
        except (harness.ConnectionClosed, TimeoutError):
            return  # the client never got the 100 (the test fails on its side)
        conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        # The final response does not exist until the client has the 103.
        if wait_for_test(hints_seen, backend):
            conn.send(harness.response_bytes(200, b"final\n"))

    backend = fake_backend(interim_then_final)
    gate = gateway(start_wsgate, backend)
    conn = connect(gate.port)
    conn.send(f"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
              "Expect: 100-continue\r\n\r\n".encode())
    # The body is held back until the 100 arrives, as a client honouring Expect does.
    continue_head = conn.read_head(timeout=3)
    assert continue_head.start[1:] == ("100", "Continue")
    conn.send(body)
    hints = conn.read_head(timeout=3)
    assert hints.start[1:] == ("103", "Early Hints")
    assert hints.get("link") == "</style.css>; rel=preload"
    hints_seen.set()
    final = conn.read_response("POST", skip_interim=False)
    assert (final.status, final.body) == (200, b"final\n")
    assert backend.notes["expect"] == "100-continue"
    assert backend.notes["body"] == body


# --- timeouts.handshake --------------------------------------------------------------------------


def test_client_sending_nothing_is_closed_silently_at_the_handshake_timeout(start_wsgate,
                                                                            fake_backend,
                                                                            connect):
    backend = fake_backend(keep_alive_answers("seen", b"unused\n"))
    gate = gateway(start_wsgate, backend, timeouts={"handshake": "1s"})
    conn = connect(gate.port)
    opened = time.monotonic()
    assert conn.read_until_eof(timeout=4) == b"", "a client that sent nothing got an answer"
    elapsed = time.monotonic() - opened
    assert 0.8 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s with handshake: 1s"
    assert backend.accepted == 0


def test_client_stopping_mid_head_gets_408_at_the_handshake_timeout(start_wsgate, fake_backend,
                                                                    connect):
    backend = fake_backend(keep_alive_answers("seen", b"unused\n"))
    gate = gateway(start_wsgate, backend, timeouts={"handshake": "1s"})
    conn = connect(gate.port)
    opened = time.monotonic()
    conn.send(b"GET /partial HTTP/1.1\r\nHost: localhost\r\n")  # no blank line: never ends
    response = conn.read_response(timeout=4)
    elapsed = time.monotonic() - opened
    assert_error_response(response, 408)
    assert response.header("connection") == "close"
    assert 0.8 <= elapsed <= 3.0, f"408 after {elapsed:.2f}s with handshake: 1s"
    assert conn.read_until_eof(timeout=7) == b""
    assert backend.accepted == 0
    record = gate.access_for(conn)[0]
    assert (record["status"], record["reason"]) == (408, "handshake timeout")


# --- timeouts.idle and timeouts.ping_interval in a tunnel ---------------------------------------


def silent_websocket(conn, backend):
    """Completes the upgrade, then never speaks first: echoes data frames, records every frame
    under notes["frames"], echoes a Close and waits for the end of the stream."""
    request = next_request(conn)
    if request is None:
        return
    conn.send(switching_protocols(request))
    while not backend.stopping.is_set():
        try:
            frame = conn.recv_frame(timeout=30)
        except (harness.ConnectionClosed, TimeoutError):
            return
        backend.append("frames", frame)
        try:
            if frame.opcode == CLOSE:
                conn.send(wsproto.encode_frame(CLOSE, frame.payload))
                bytes_until_eof(conn)
                return
            if frame.opcode == TEXT:
                conn.send(wsproto.encode_frame(TEXT, frame.payload))
        except OSError:
            return  # wsgate closed the connection: nothing left to answer


def test_wsgate_own_pings_do_not_keep_a_silent_session_past_the_idle_timeout(start_wsgate,
                                                                             fake_backend,
                                                                             connect):
    # docs/websocket.md: no frame either way for timeouts.idle -> 1001; wsgate's own pings
    # do not count. With idle 1.5s and pings every 1s, the one ping (at 1s) goes unanswered and
    # the idle close comes at 1.5s, before a ping timeout (two misses, at 3s) could.
    backend = fake_backend(silent_websocket)
    gate = gateway(start_wsgate, backend, timeouts={"idle": "1500ms", "ping_interval": "1s"})
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    opened = time.monotonic()
    frames = [conn.recv_frame(timeout=6)]
    while frames[-1].opcode != CLOSE:
        frames.append(conn.recv_frame(timeout=6))
    elapsed = time.monotonic() - opened
    assert [f.opcode for f in frames] == [PING, CLOSE], frames
    assert frames[0].payload.startswith(b"wsgate:")
    assert wsproto.parse_close(frames[-1].payload)[0] == wsproto.CLOSE_GOING_AWAY
    assert 1.2 <= elapsed <= 2.8, f"close after {elapsed:.2f}s with idle: 1500ms"
    conn.send_close(wsproto.CLOSE_GOING_AWAY)
    assert conn.frames_until_eof(timeout=4) == []
    record = gate.access_for(conn)[0]
    assert record["reason"] == "idle timeout"
    assert (record["close_code"], record["close_by"]) == (1001, "wsgate")


def test_client_answering_every_ping_keeps_a_silent_session_past_the_idle_timeout(
        start_wsgate, fake_backend, connect):
    # docs/websocket.md: "wsgate's own pings do not count; the client's pongs to them do".
    backend = fake_backend(silent_websocket)
    gate = gateway(start_wsgate, backend, timeouts={"idle": "1s", "ping_interval": "300ms"})
    conn = connect(gate.port)
    assert conn.upgrade("/ws").status == 101
    quiet = Deadline(3.0)  # three idle timeouts with nothing but pings and pongs
    pongs = 0
    while not quiet.expired():
        try:
            frame = conn.recv_frame(timeout=quiet.remaining())
        except TimeoutError:
            break
        assert frame.opcode == PING, f"got {frame} while answering every ping"
        conn.send_frame(PONG, frame.payload)
        pongs += 1
    assert pongs >= 5, f"only {pongs} pings in 3s with ping_interval: 300ms"
    conn.send_frame(TEXT, b"still open")
    while (frame := conn.recv_frame(timeout=3)).opcode == PING:
        conn.send_frame(PONG, frame.payload)
    assert (frame.opcode, frame.payload) == (TEXT, b"still open")
    conn.send_close(wsproto.CLOSE_NORMAL)
    closing = [f for f in conn.frames_until_eof(timeout=4) if f.opcode != PING]
    assert [f.opcode for f in closing] == [CLOSE]
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1000, "client")
    opcodes = [f.opcode for f in backend.notes["frames"]]
    assert opcodes == [TEXT, CLOSE], "pings or pongs reached the backend"
