"""The frame-aware WebSocket relay through the real binary: every close path (who gets
which code), protocol violations from either side, message-size and UTF-8 limits,
keepalive pings, permessage-deflate, the access-log counters, and one representative
scenario per Autobahn|Testsuite case group (docs/websocket.md maps groups to tests).

Backends here record every frame they receive (Recorder), so each test can say what the
backend saw as well as what the client got.

Every test runs twice, over ws and over wss (the `transport` fixture): under wss wsgate's
listener terminates TLS and every client, raw (harness.TlsConn) or python3-websockets,
connects over TLS; the backends stay plain. The frames, closes and timings must not change."""

import asyncio
import copy
import os
import socket
import ssl
import time
from typing import Callable, List, Optional, Tuple

import pytest
import websockets

import harness
import tls_certs
import wsproto
from harness import (Deadline, TlsConn, gateway_config, pool, route, switching_protocols,
                     tls_client_context, wait_for)

TEXT, BINARY, CONT = wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_CONT
CLOSE, PING, PONG = wsproto.OP_CLOSE, wsproto.OP_PING, wsproto.OP_PONG
DEFLATE_OFFER = (("Sec-WebSocket-Extensions", "permessage-deflate"),)
DEFLATE_CHOSEN = (("Sec-WebSocket-Extensions", "permessage-deflate"),)
MARK = b"BAD-FRAME-MARKER"  # in every payload that must never reach the backend


# --- ws and wss ------------------------------------------------------------------------------


class Transport:
    """How the clients of a test reach wsgate: "ws" (plain TCP) or "wss" (TLS listeners,
    with the test session's certificate for localhost, trusted by the clients)."""

    def __init__(self, scheme: str, pki: Optional[tls_certs.Pki] = None):
        self.scheme = scheme
        self.pki = pki
        self.context: Optional[ssl.SSLContext] = tls_client_context(pki.ca) if pki else None

    def listening(self, config: dict) -> dict:
        """`config` with TLS turned on in every listener under wss."""
        if self.scheme == "ws":
            return config
        config = copy.deepcopy(config)
        for listener in config["listeners"]:
            listener["tls"] = {"certificates": [self.pki.localhost.listener_entry()]}
        return config

    def url(self, gate, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{gate.port}{path}"

    def websockets_options(self) -> dict:
        """What websockets.connect needs to reach the listener."""
        if self.scheme == "ws":
            return {}
        return {"ssl": self.context, "server_hostname": "localhost"}


@pytest.fixture(params=["ws", "wss"], scope="module")
def transport(request, tmp_path_factory) -> Transport:
    if request.param == "ws":
        return Transport("ws")
    return Transport("wss", tls_certs.session_pki(tmp_path_factory))


@pytest.fixture
def start_wsgate(start_wsgate, transport):
    """conftest's start_wsgate, its listeners speaking TLS under wss."""
    def start(config, **kwargs):
        return start_wsgate(transport.listening(config), **kwargs)
    return start


@pytest.fixture
def connect(connect, transport):
    """conftest's connect; under wss, the connection then completes a TLS handshake (a
    TlsConn over the same socket, which conftest's fixture closes at teardown)."""
    if transport.scheme == "ws":
        return connect

    def open_tls(port, **kwargs):
        conn = TlsConn(connect(port, **kwargs).sock, transport.context, "localhost")
        conn.handshake()
        return conn
    return open_tls


# --- backends ---------------------------------------------------------------------------


class Recorder:
    """A FakeBackend script: switches protocols (101 with `extra` headers), runs `after_upgrade`,
    then records every frame it receives under notes["frames"] and the raw bytes under
    notes["raw"]. Echoes data frames (frame for frame, unmasked) when `echo`, answers pings
    when `pong`, and echoes a Close (after sending `before_close_echo`) when `echo_close`, then
    reads to the end of the stream; notes["eof"] is set when it ends ("reset" for an RST)."""

    def __init__(self, echo: bool = True, pong: bool = True, extra: Tuple = (),
                 after_upgrade: Optional[Callable] = None, before_close_echo: bytes = b"",
                 echo_close: bool = True):
        self.echo = echo
        self.pong = pong
        self.echo_close = echo_close
        self.extra = extra
        self.after_upgrade = after_upgrade
        self.before_close_echo = before_close_echo

    def __call__(self, conn, backend) -> None:
        request = conn.read_request(timeout=30)
        backend.append("requests", request)
        conn.send(switching_protocols(request, extra=self.extra))
        if self.after_upgrade is not None:
            self.after_upgrade(conn, backend)
        decoder = wsproto.FrameDecoder()
        closed = False
        while not backend.stopping.is_set():
            data = read_some(conn, 60)
            if not data:
                backend.note("eof", "reset" if conn.reset else "fin")
                return
            backend.append("raw", data)
            for frame in decoder.feed(data):
                backend.append("frames", frame)
                if closed:
                    continue
                if frame.opcode == CLOSE:
                    closed = True
                    if self.echo_close:
                        conn.send(self.before_close_echo +
                                  wsproto.encode_frame(CLOSE, frame.payload))
                elif frame.opcode == PING and self.pong:
                    conn.send(wsproto.encode_frame(PONG, frame.payload))
                elif frame.opcode in (TEXT, BINARY, CONT) and self.echo:
                    conn.send(wsproto.encode_frame(frame.opcode, frame.payload, fin=frame.fin,
                                                   rsv=frame.rsv))


def read_some(conn, timeout: float) -> bytes:
    """Raw bytes as they arrive on a harness Conn (its buffer first); b"" at end of stream.
    TimeoutError when nothing arrives within `timeout` (a quiet peer is not an end of stream)."""
    if conn.buf:
        data = bytes(conn.buf)
        conn.buf.clear()
        return data
    if not conn._recv(Deadline(timeout)):
        return b""
    data = bytes(conn.buf)
    conn.buf.clear()
    return data


def frames_of(backend) -> List[wsproto.Frame]:
    return list(backend.notes.get("frames", []))


def raw_of(backend) -> bytes:
    return b"".join(backend.notes.get("raw", []))


def backend_close(backend, timeout: float = 5.0) -> wsproto.Frame:
    """The first Close the backend received (waits for it)."""
    def find():
        return next((f for f in frames_of(backend) if f.opcode == CLOSE), None)
    return wait_for(find, timeout, "the backend to receive a Close")


def backend_eof(backend, timeout: float = 5.0) -> str:
    return wait_for(lambda: backend.notes.get("eof"), timeout, "the backend connection to end")


# --- wsgate and clients --------------------------------------------------------------------


def start_gate(start_wsgate, backend, *, validate_utf8: Optional[bool] = None, **kwargs):
    """wsgate routing everything to `backend` (pool "ws"). timeouts.close is 500ms unless a
    test sets timeouts: most cases end with a backend that never echoes wsgate's Close, and
    waiting the default 2 s for it, case after case, was most of this suite's run time (the
    suite runs four times in `make test`: ws and wss, io_uring on and off, and again under
    ASan). An echo that does come takes milliseconds, even under ASan."""
    kwargs.setdefault("timeouts", {"close": "500ms"})
    cfg = gateway_config([route("ws", path_prefix="/")], {"ws": pool(backend)}, **kwargs)
    if validate_utf8 is not None:
        cfg["websocket"] = {"validate_utf8": validate_utf8}
    return start_wsgate(cfg)


def open_ws(gate, connect, path: str = "/ws", extra_headers: Tuple = ()):
    conn = connect(gate.port)
    response = conn.upgrade(path, extra_headers=extra_headers)
    assert response.status == 101, (response.status, response.body)
    return conn


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True,
          rsv: int = 0) -> bytes:
    """A frame as a client sends it (masked unless told otherwise)."""
    return wsproto.encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv)


def expect_close(conn, code: Optional[int], timeout: float = 5.0):
    """Reads frames until a Close; checks it is unmasked (wsgate is the client's server) and
    carries `code`. Returns (frames before it, its reason)."""
    deadline = Deadline(timeout)
    before = []
    while True:
        frame = conn.recv_frame(deadline.remaining())
        if frame.opcode == CLOSE:
            break
        before.append(frame)
    assert not frame.masked, "a Close toward the client must not be masked"
    got, reason = wsproto.parse_close(frame.payload)
    assert got == code, f"close {got} ({reason!r}), expected {code}"
    return before, reason


def echo_close_and_expect_eof(conn, code: int, timeout: float = 5.0) -> None:
    """Answers wsgate's Close, then the connection must end."""
    conn.send_close(code)
    assert conn.is_closed_within(timeout), "wsgate kept the client connection open"


def assert_backend_told(backend, code: int, timeout: float = 5.0) -> wsproto.Frame:
    """The backend got a masked Close with `code` (wsgate is the backend's client)."""
    close = backend_close(backend, timeout)
    assert close.masked, "a Close toward the backend must be masked"
    assert wsproto.parse_close(close.payload)[0] == code, close
    return close


def assert_never_reached_backend(backend) -> None:
    for frame in frames_of(backend):
        assert MARK not in frame.payload, f"the bad frame reached the backend: {frame}"
        assert frame.opcode in (TEXT, BINARY, CONT, CLOSE, PING, PONG), frame


# --- close paths -----------------------------------------------------------------------------


def test_close_1000_client_close_and_backend_echo_are_relayed_byte_for_byte(
        start_wsgate, fake_backend, connect):
    backend = fake_backend(Recorder())
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    client_close = wsproto.encode_frame(CLOSE, wsproto.close_payload(1000, "bye"), mask=True,
                                        mask_key=b"\x0a\x0b\x0c\x0d")
    conn.send(client_close)
    echoed = wsproto.encode_frame(CLOSE, wsproto.close_payload(1000, "bye"))
    assert conn.read_exactly(len(echoed)) == echoed
    assert conn.is_closed_within(5), "wsgate kept the client connection after both closes"
    assert backend_eof(backend) in ("fin", "reset")
    assert raw_of(backend) == client_close  # mask and all, nothing else
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1000, "client")


def test_client_close_handshake_ends_with_a_fin_not_a_reset(start_wsgate, fake_backend,
                                                             connect):
    # The client started the close and sends nothing more, not even its FIN. With its Close
    # read, wsgate closes the client socket right behind the backend's echo instead of
    # lingering for the client's FIN (timeouts.close is 10 s here): a clean FIN, no RST.
    backend = fake_backend(Recorder())
    gate = start_gate(start_wsgate, backend, timeouts={"close": "10s"})
    conn = open_ws(gate, connect)
    conn.send_frame(TEXT, b"last words")
    assert conn.recv_message() == (TEXT, b"last words")
    started = time.monotonic()
    conn.send_close(1000, "bye")
    assert conn.recv_message() == (CLOSE, wsproto.close_payload(1000, "bye"))
    assert conn.is_closed_within(5), "wsgate kept the client connection after both closes"
    assert time.monotonic() - started < 3.0, "wsgate lingered for the client's FIN"
    assert not conn.reset, "the client got an RST instead of a FIN"
    assert backend_eof(backend) in ("fin", "reset")
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1000, "client")


def test_client_close_without_backend_echo_ends_after_timeouts_close(start_wsgate,
                                                                    fake_backend, connect):
    backend = fake_backend(Recorder(echo_close=False))
    gate = start_gate(start_wsgate, backend, timeouts={"close": "1s"})
    conn = open_ws(gate, connect)
    conn.send_close(1000)
    assert_backend_told(backend, 1000)
    started = time.monotonic()
    assert conn.is_closed_within(5), "wsgate kept the client past timeouts.close"
    assert 0.7 <= time.monotonic() - started <= 4.0
    backend_eof(backend)


def test_nothing_is_forwarded_after_a_client_close(start_wsgate, fake_backend, connect):
    backend = fake_backend(Recorder())
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    conn.send(frame(CLOSE, wsproto.close_payload(1000)) + frame(TEXT, MARK) + frame(PING, MARK))
    assert conn.recv_message() == (CLOSE, wsproto.close_payload(1000))
    assert conn.is_closed_within(5)
    backend_eof(backend)
    assert [f.opcode for f in frames_of(backend)] == [CLOSE]


def test_nothing_is_forwarded_after_a_backend_close(start_wsgate, fake_backend, connect):
    def closes_then_talks(conn, backend):
        conn.send(wsproto.encode_frame(CLOSE, wsproto.close_payload(1000, "done")) +
                  wsproto.encode_frame(TEXT, MARK))

    backend = fake_backend(Recorder(after_upgrade=closes_then_talks))
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    frames, reason = expect_close(conn, 1000)
    assert (frames, reason) == ([], "done")
    conn.send_close(1000, "done")
    assert conn.frames_until_eof(timeout=5) == []  # the text behind the Close never came
    backend_eof(backend)
    assert [f.opcode for f in frames_of(backend)] == [CLOSE]
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1000, "backend")


def test_close_1001_idle_timeout_closes_both_sides(start_wsgate, fake_backend, connect):
    backend = fake_backend(Recorder())
    gate = start_gate(start_wsgate, backend, timeouts={"idle": "1s"})
    conn = open_ws(gate, connect)
    conn.send_frame(TEXT, b"hello")
    assert conn.recv_message() == (TEXT, b"hello")
    quiet_since = time.monotonic()
    expect_close(conn, 1001, timeout=6)
    assert 0.8 <= time.monotonic() - quiet_since <= 4.0
    assert_backend_told(backend, 1001)
    echo_close_and_expect_eof(conn, 1001)
    backend_eof(backend)
    record = gate.access_for(conn)[0]
    assert record["reason"] == "idle timeout"
    assert (record["close_code"], record["close_by"]) == (1001, "wsgate")


# (id, valid frames sent first, the bad frame); each must end with close 1002.
CLIENT_VIOLATIONS = [
    ("unmasked-frame", [], frame(TEXT, MARK, mask=False)),
    ("rsv1-without-extension", [], frame(TEXT, MARK, rsv=4)),
    ("rsv3", [], frame(BINARY, MARK, rsv=1)),
    ("reserved-opcode-3", [], frame(3, MARK)),
    ("reserved-opcode-11", [], frame(11, MARK)),
    ("ping-of-126-bytes", [], frame(PING, MARK + b"x" * (126 - len(MARK)))),
    ("fragmented-ping", [], frame(PING, MARK, fin=False)),
    ("orphan-continuation", [], frame(CONT, MARK)),
    ("text-inside-fragmented-message", [frame(BINARY, b"start", fin=False)], frame(TEXT, MARK)),
    ("close-with-1-byte-payload", [], frame(CLOSE, b"\x03")),
    ("close-code-1005", [], frame(CLOSE, wsproto.close_payload(1005, "BAD-FRAME-MARKER"))),
    ("close-code-999", [], frame(CLOSE, wsproto.close_payload(999, "BAD-FRAME-MARKER"))),
    ("close-code-2000", [], frame(CLOSE, wsproto.close_payload(2000, "BAD-FRAME-MARKER"))),
]


@pytest.mark.parametrize("before,bad", [(b, x) for _, b, x in CLIENT_VIOLATIONS],
                         ids=[n for n, _, _ in CLIENT_VIOLATIONS])
def test_close_1002_client_violation_closes_client_1002_and_backend_1001(
        start_wsgate, fake_backend, connect, before, bad):
    backend = fake_backend(Recorder(echo=False))
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    conn.send(frame(TEXT, b"valid first"))
    wait_for(lambda: any(f.payload == b"valid first" for f in frames_of(backend)), 5,
             "the valid frame to reach the backend")
    for f in before:
        conn.send(f)
    conn.send(bad)
    frames, _ = expect_close(conn, 1002)
    assert frames == [], "the client got frames before the close"
    assert_backend_told(backend, 1001)
    assert_never_reached_backend(backend)
    echo_close_and_expect_eof(conn, 1002)
    backend_eof(backend)
    closes = [f for f in frames_of(backend) if f.opcode == CLOSE]
    assert len(closes) == 1, closes
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1002, "wsgate")


def test_close_1014_backend_violation_masked_frame(start_wsgate, fake_backend, connect):
    def sends_masked(conn, backend):
        conn.send(frame(TEXT, MARK, mask=True))

    backend = fake_backend(Recorder(after_upgrade=sends_masked))
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    frames, _ = expect_close(conn, 1014)
    assert frames == [], "the masked frame (or part of it) reached the client"
    assert_backend_told(backend, 1002)
    echo_close_and_expect_eof(conn, 1014)
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1002, "wsgate")


def test_close_1014_backend_violation_reserved_opcode_after_valid_frames(
        start_wsgate, fake_backend, connect):
    def sends_bad(conn, backend):
        conn.send(wsproto.encode_frame(TEXT, b"fine"))
        conn.send(wsproto.encode_frame(6, MARK))

    backend = fake_backend(Recorder(after_upgrade=sends_bad))
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    frames, _ = expect_close(conn, 1014)
    assert [(f.opcode, f.payload) for f in frames] == [(TEXT, b"fine")]
    assert_backend_told(backend, 1002)


LIMITS_1K = {"max_message_bytes": 1024}


def test_close_1009_frame_over_max_message_bytes_before_its_payload(start_wsgate,
                                                                    fake_backend, connect):
    backend = fake_backend(Recorder(echo=False))
    gate = start_gate(start_wsgate, backend, limits=LIMITS_1K)
    conn = open_ws(gate, connect)
    whole = frame(BINARY, MARK * 128)  # 2 KiB
    header = whole[:2 + 2 + 4]  # 16-bit length and the mask key
    conn.send(header)  # the payload is not even sent yet
    expect_close(conn, 1009)
    conn.send(whole[len(header):])
    assert_backend_told(backend, 1001)
    assert [f.opcode for f in frames_of(backend)] == [CLOSE]
    echo_close_and_expect_eof(conn, 1009)
    assert MARK not in raw_of(backend)


def test_violator_still_sending_after_the_close_gets_a_fin_not_a_reset(start_wsgate,
                                                                       fake_backend, connect):
    # Both closes are through once the backend echoes its 1001, while the client that broke
    # the rule has not read its 1009 yet and still sends. wsgate lingers: FIN, then reads and
    # drops until the client's own FIN. An RST here could destroy the 1009 unread.
    backend = fake_backend(Recorder(echo=False))
    gate = start_gate(start_wsgate, backend, limits=LIMITS_1K)
    conn = open_ws(gate, connect)
    conn.send(frame(BINARY, MARK * 128)[:8])  # a header over max_message_bytes
    assert_backend_told(backend, 1001)
    # wsgate ends the backend connection once the backend's Close echo is back: the close
    # handshake is through on that side, and the client's side is lingering now.
    assert backend_eof(backend) == "fin"
    conn.send(frame(BINARY, MARK * 128)[8:] + frame(TEXT, b"late"))  # no reset
    expect_close(conn, 1009)
    echo_close_and_expect_eof(conn, 1009)
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1009, "wsgate")


def test_backend_message_over_max_message_bytes_gives_backend_1009_and_client_1014(
        start_wsgate, fake_backend, connect):
    def sends_big(conn, backend):
        conn.send(wsproto.encode_frame(BINARY, MARK * 128))

    backend = fake_backend(Recorder(after_upgrade=sends_big))
    gate = start_gate(start_wsgate, backend, limits=LIMITS_1K)
    conn = open_ws(gate, connect)
    frames, _ = expect_close(conn, 1014)
    assert frames == []
    assert_backend_told(backend, 1009)


def test_close_1009_message_whose_fragments_sum_over_max_message_bytes(start_wsgate,
                                                                       fake_backend, connect):
    backend = fake_backend(Recorder(echo=False))
    gate = start_gate(start_wsgate, backend, limits=LIMITS_1K)
    conn = open_ws(gate, connect)
    conn.send(frame(BINARY, b"a" * 600, fin=False))
    conn.send(frame(CONT, MARK + b"b" * (600 - len(MARK))))
    expect_close(conn, 1009)
    assert_backend_told(backend, 1001)
    got = [(f.opcode, len(f.payload)) for f in frames_of(backend)]
    assert got[:1] == [(BINARY, 600)] and got[1][0] == CLOSE, got
    assert_never_reached_backend(backend)


def test_close_1007_invalid_utf8_with_validate_utf8(start_wsgate, fake_backend, connect):
    backend = fake_backend(Recorder(echo=False))
    gate = start_gate(start_wsgate, backend, validate_utf8=True)
    conn = open_ws(gate, connect)
    conn.send(frame(TEXT, "h\u00e9llo".encode()))
    wait_for(lambda: frames_of(backend), 5, "the valid text to reach the backend")
    conn.send(frame(TEXT, MARK + b" \xc3\x28 invalid"))
    expect_close(conn, 1007)
    assert_backend_told(backend, 1001)
    assert [f.opcode for f in frames_of(backend)] == [TEXT, CLOSE]
    assert_never_reached_backend(backend)


def test_close_1014_backend_invalid_utf8_with_validate_utf8(start_wsgate, fake_backend,
                                                            connect):
    def sends_invalid(conn, backend):
        conn.send(wsproto.encode_frame(TEXT, b"fine"))
        conn.send(wsproto.encode_frame(TEXT, MARK + b" \xc3\x28 invalid"))

    backend = fake_backend(Recorder(after_upgrade=sends_invalid))
    gate = start_gate(start_wsgate, backend, validate_utf8=True)
    conn = open_ws(gate, connect)
    frames, _ = expect_close(conn, 1014)
    assert [(f.opcode, f.payload) for f in frames] == [(TEXT, b"fine")]
    assert_backend_told(backend, 1007)


def test_invalid_utf8_passes_untouched_without_validate_utf8(start_wsgate, fake_backend,
                                                             connect):
    backend = fake_backend(Recorder(echo=False))
    gate = start_gate(start_wsgate, backend)  # validate_utf8 defaults to false
    conn = open_ws(gate, connect)
    invalid = b"\xc3\x28 \xed\xa0\x80 \xff"
    sent = frame(TEXT, invalid)
    conn.send(sent)
    wait_for(lambda: frames_of(backend), 5, "the text to reach the backend")
    assert raw_of(backend) == sent
    assert conn.received_within(0.3) == b""  # no close from wsgate


@pytest.mark.parametrize("how", ["reset", "fin"])
@pytest.mark.parametrize("client_echoes", [True, False], ids=["client-echoes", "no-echo"])
def test_close_1014_when_the_backend_vanishes_without_a_close(start_wsgate, fake_backend,
                                                              connect, how, client_echoes):
    def vanishes(conn, backend):
        request = conn.read_request(timeout=30)
        conn.send(switching_protocols(request))
        conn.recv_frame(timeout=30)  # the client's signal
        if how == "reset":
            conn.abort()
        else:
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        backend.note("gone", True)

    backend = fake_backend(vanishes)
    gate = start_gate(start_wsgate, backend, timeouts={"close": "1s"})
    conn = open_ws(gate, connect)
    conn.send_frame(TEXT, b"go")
    wait_for(lambda: backend.notes.get("gone"), 5, "the backend to vanish")
    gone_at = time.monotonic()
    expect_close(conn, 1014, timeout=3)
    elapsed = time.monotonic() - gone_at
    assert elapsed < 1.0, f"close 1014 came {elapsed:.2f}s after the backend vanished"
    if client_echoes:
        echo_close_and_expect_eof(conn, 1014, timeout=3)
    else:
        # No echo: the session still ends once timeouts.close (1s) passes.
        assert conn.is_closed_within(4), "the session outlived timeouts.close"
    record = gate.access_for(conn)[0]
    assert record["close_by"] == "backend"
    assert record["close_code"] == 1006


@pytest.mark.parametrize("one_segment", [False, True], ids=["frame-then-fin", "frame-with-fin"])
def test_client_fin_without_close_gives_backend_1001_and_relays_its_last_frames(
        start_wsgate, fake_backend, connect, one_segment):
    backend = fake_backend(Recorder(echo=False,
                                    before_close_echo=wsproto.encode_frame(BINARY, b"last")))
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    if one_segment:
        # TCP_CORK holds the frame back until the shutdown, which sends it with the FIN in
        # one segment: wsgate sees data and end of stream on the same edge, and a short read
        # of the frame must not end its reading there.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    conn.send_frame(TEXT, b"goodbye")
    conn.shutdown_write()
    assert_backend_told(backend, 1001)
    frames = conn.frames_until_eof(timeout=5)
    assert [(f.opcode, f.payload) for f in frames][:1] == [(BINARY, b"last")]
    assert backend_eof(backend) == "fin"
    assert [f.opcode for f in frames_of(backend)] == [TEXT, CLOSE]


# --- pings ------------------------------------------------------------------------------------


def test_ping_interval_keeps_an_idle_session_alive_and_pongs_stay_with_wsgate(
        start_wsgate, fake_backend, transport):
    backend = fake_backend(Recorder())
    gate = start_gate(start_wsgate, backend,
                      timeouts={"idle": "1s", "ping_interval": "300ms"})

    async def run():
        # python3-websockets answers pings on its own; it sends none (ping_interval=None).
        async with websockets.connect(transport.url(gate, "/ws"), compression=None,
                                      ping_interval=None, open_timeout=5, close_timeout=5,
                                      **transport.websockets_options()) as ws:
            await ws.send("before")
            assert await asyncio.wait_for(ws.recv(), 5) == "before"
            await asyncio.sleep(3.5)  # 3.5 x the idle timeout without a data frame
            await ws.send("after")
            reply = await asyncio.wait_for(ws.recv(), 5)
            return reply, ws.local_address[1]

    reply, client_port = asyncio.run(run())
    assert reply == "after"
    record = gate.wait_access(lambda r: str(r["client"]).endswith(f":{client_port}"))[0]
    assert record["close_code"] == 1000
    opcodes = [f.opcode for f in frames_of(backend)]
    assert PONG not in opcodes and PING not in opcodes, opcodes


def test_client_that_never_answers_pings_is_closed_1001_after_two_missed(
        start_wsgate, fake_backend, connect):
    backend = fake_backend(Recorder())
    gate = start_gate(start_wsgate, backend, timeouts={"ping_interval": "200ms"})
    conn = open_ws(gate, connect)
    started = time.monotonic()
    frames, _ = expect_close(conn, 1001, timeout=5)
    elapsed = time.monotonic() - started
    pings = [f for f in frames if f.opcode == PING]
    assert len(pings) >= 2 and len(pings) == len(frames), frames
    assert all(p.payload.startswith(b"wsgate:") for p in pings), pings
    assert 0.4 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s with ping_interval 200ms"
    assert_backend_told(backend, 1001)
    assert PING not in [f.opcode for f in frames_of(backend)]
    echo_close_and_expect_eof(conn, 1001)
    record = gate.access_for(conn)[0]
    assert record["reason"] == "ping timeout"


@pytest.mark.parametrize("payload", [b"from backend", b"wsgate:1"],
                         ids=["plain", "wsgate-like-payload"])
def test_backend_ping_reaches_the_client_and_its_pong_reaches_the_backend(
        start_wsgate, fake_backend, connect, payload):
    def pings(conn, backend):
        conn.send(wsproto.encode_frame(PING, payload))

    backend = fake_backend(Recorder(after_upgrade=pings))
    gate = start_gate(start_wsgate, backend)  # wsgate sends no pings of its own
    conn = open_ws(gate, connect)
    ping = conn.recv_frame()
    assert (ping.opcode, ping.payload, ping.masked) == (PING, payload, False)
    conn.send_frame(PONG, payload)
    pong = wait_for(lambda: next((f for f in frames_of(backend) if f.opcode == PONG), None), 5,
                    "the pong to reach the backend")
    assert (pong.payload, pong.masked) == (payload, True)


# --- permessage-deflate -------------------------------------------------------------------------


def test_negotiated_permessage_deflate_lets_rsv1_frames_pass_both_ways(start_wsgate,
                                                                      fake_backend, connect):
    compressed = b"\xf2\x48\xcd\xc9\xc9\x07\x00"  # "Hello" deflated, not UTF-8

    def sends_compressed(conn, backend):
        conn.send(wsproto.encode_frame(TEXT, compressed, rsv=4))

    backend = fake_backend(Recorder(echo=False, extra=DEFLATE_CHOSEN,
                                    after_upgrade=sends_compressed))
    gate = start_gate(start_wsgate, backend, validate_utf8=True)
    conn = open_ws(gate, connect, extra_headers=DEFLATE_OFFER)
    got = conn.recv_frame()
    assert (got.opcode, got.rsv, got.payload) == (TEXT, 4, compressed)
    conn.send_frame(TEXT, compressed, rsv=4)
    conn.send_frame(BINARY, compressed, rsv=4, fin=False)
    conn.send_frame(CONT, b"\x00")
    wait_for(lambda: len(frames_of(backend)) >= 3, 5, "the frames to reach the backend")
    assert [(f.opcode, f.rsv, f.payload) for f in frames_of(backend)] == [
        (TEXT, 4, compressed), (BINARY, 4, compressed), (CONT, 0, b"\x00")]
    # RSV1 on a continuation is still wrong, extension or not (RFC 7692 6).
    conn.send_frame(BINARY, b"x", rsv=4, fin=False)
    conn.send_frame(CONT, MARK, rsv=4)
    expect_close(conn, 1002)
    assert_never_reached_backend(backend)


# --- access log and isolation ----------------------------------------------------------------


def test_access_log_counts_frames_messages_and_the_close(start_wsgate, fake_backend, connect):
    backend = fake_backend(Recorder())
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    conn.send_frame(TEXT, b"a")
    assert conn.recv_message() == (TEXT, b"a")
    conn.send_frame(BINARY, b"b1", fin=False)
    conn.send_frame(CONT, b"b2")
    assert conn.recv_message() == (BINARY, b"b1b2")
    conn.send_frame(PING, b"p")
    assert conn.recv_message() == (PONG, b"p")
    conn.send_close(1000, "done")
    assert conn.recv_message() == (CLOSE, wsproto.close_payload(1000, "done"))
    assert conn.is_closed_within(5)
    record = gate.access_for(conn)[0]
    assert record["kind"] == "websocket" and record["status"] == 101
    assert record["frames_from_client"] == 5  # text, 2 fragments, ping, close
    assert record["frames_to_client"] == 5    # the same, echoed
    assert record["messages_from_client"] == 2
    assert record["messages_to_client"] == 2
    assert record["close_code"] == 1000
    assert record["close_by"] == "client"


def test_a_violating_session_does_not_disturb_another(start_wsgate, echo_backend, connect):
    gate = start_gate(start_wsgate, echo_backend("echo1"))
    bad, good = open_ws(gate, connect, "/bad"), open_ws(gate, connect, "/good")
    good.send_frame(TEXT, b"one")
    assert good.recv_message() == (TEXT, b"one")
    bad.send_frame(5, b"reserved")
    expect_close(bad, 1002)
    good.send_frame(BINARY, b"two", fin=False)
    good.send_frame(CONT, b"three")
    assert good.recv_message() == (BINARY, b"twothree")
    good.send_close(1000)
    assert good.recv_message() == (CLOSE, wsproto.close_payload(1000))
    assert good.is_closed_within(5)
    assert bad.is_closed_within(5)
    assert gate.access_for(bad)[0]["close_code"] == 1002
    assert gate.access_for(good)[0]["close_code"] == 1000


# --- one representative scenario per Autobahn|Testsuite case group ----------------------------
# Against the echo backend (tests/backends/echo_backend.py), which checks masks, framing and
# UTF-8 on its own and echoes each message whole.


@pytest.fixture(scope="module")
def shared_echo_gate(wsgate_bin, transport, tmp_path_factory):
    """One wsgate in front of one echo backend for every echo case of a transport (about 60):
    starting and stopping a pair for each case cost more than the cases (0.6 s a case under
    ASan, the suite runs four times in `make test`). Each case opens sessions of its own,
    and the pair keeps nothing from one session to the next. Stopped after the last case,
    with the checks conftest's fixtures make (a sanitizer report, a backend failure)."""
    workdir = tmp_path_factory.mktemp("echo-gate")
    backend = harness.EchoBackend("echo1", workdir).start()
    gate = harness.Wsgate(wsgate_bin, workdir, label="echo-gate")
    start_gate(lambda cfg: gate.start(transport.listening(cfg)), backend)
    yield gate
    gate.stop()
    backend.stop()
    print(gate.report() + backend.report())
    problems = [p for p in (gate.sanitizer_report(), backend.failure()) if p]
    if problems:
        pytest.fail("the shared echo gateway:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def echo_gate(shared_echo_gate):
    """The shared echo gateway, checked alive before and after the case that uses it, so a
    crash fails the case that caused it."""
    assert shared_echo_gate.running(), "the shared echo gateway died in an earlier case"
    yield shared_echo_gate
    if not shared_echo_gate.running():
        pytest.fail(f"wsgate exited with {shared_echo_gate.proc.returncode} during this case:\n"
                    f"{shared_echo_gate.report()}", pytrace=False)


def send_chopped(conn, data: bytes, piece: int) -> None:
    for at in range(0, len(data), piece):
        conn.send(data[at:at + piece])


@pytest.mark.parametrize("size", [0, 125, 126, 127, 128, 65535, 65536],
                         ids=lambda n: f"{n}B")
@pytest.mark.parametrize("chop", [None, 1, 997], ids=["whole", "chop1", "chop997"])
def test_autobahn_group_1_text_and_binary_of_every_length_encoding(echo_gate, connect, size,
                                                                    chop):
    if chop == 1 and size > 128:
        chop = 61  # one byte per write would only slow the test down
    conn = open_ws(echo_gate, connect)
    for opcode, payload in ((TEXT, b"*" * size), (BINARY, os.urandom(size))):
        data = frame(opcode, payload)
        if chop is None:
            conn.send(data)
        else:
            send_chopped(conn, data, chop)
        expected = wsproto.encode_frame(opcode, payload)
        assert conn.read_exactly(len(expected), timeout=10) == expected


def test_autobahn_group_2_pings_and_pongs(echo_gate, connect):
    conn = open_ws(echo_gate, connect)
    for payload in (b"", os.urandom(125)):
        conn.send_frame(PING, payload)
        assert conn.recv_message() == (PONG, payload)
    conn.send_frame(PONG, b"unsolicited")  # 2.7: ignored by the peer, not an error
    payloads = [b"ping %d" % i for i in range(10)]
    for p in payloads:
        conn.send_frame(PING, p)
    assert [conn.recv_message() for _ in payloads] == [(PONG, p) for p in payloads]
    conn.send_frame(PING, b"x" * 126)  # 2.5: over 125 bytes
    expect_close(conn, 1002)


def test_autobahn_group_3_reserved_bits_fail_after_what_came_before(echo_gate, connect):
    conn = open_ws(echo_gate, connect)
    conn.send_frame(TEXT, b"before")
    assert conn.recv_message() == (TEXT, b"before")
    conn.send_frame(TEXT, b"rsv2", rsv=2)
    expect_close(conn, 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_autobahn_group_4_reserved_opcodes(echo_gate, connect, opcode):
    conn = open_ws(echo_gate, connect)
    conn.send_frame(TEXT, b"before")
    assert conn.recv_message() == (TEXT, b"before")
    conn.send_frame(opcode, b"reserved")
    expect_close(conn, 1002)


def test_autobahn_group_5_pong_comes_back_before_the_last_fragment_is_sent(echo_gate,
                                                                           connect):
    conn = open_ws(echo_gate, connect)
    conn.send_frame(TEXT, b"frag", fin=False)
    conn.send_frame(PING, b"between")
    # The pong arrives while the message is still open: wsgate buffered nothing whole.
    assert conn.recv_message() == (PONG, b"between")
    conn.send_frame(CONT, b"men", fin=False)
    time.sleep(0.2)  # deliberate: 5.x is a pause mid-message (the rest comes in a later read)
    conn.send_frame(CONT, b"ted")
    assert conn.recv_message() == (TEXT, b"fragmented")
    conn.send_frame(CONT, b"orphan")  # 5.9: continuation without a message
    expect_close(conn, 1002)


def test_autobahn_group_5_fragmented_control_frame_fails(echo_gate, connect):
    conn = open_ws(echo_gate, connect)
    conn.send_frame(PING, b"half", fin=False)
    expect_close(conn, 1002)


@pytest.mark.parametrize("validate", [True, False], ids=["validate", "pass-through"])
def test_autobahn_group_6_utf8_split_code_points_pass(start_wsgate, echo_backend, connect,
                                                      validate):
    gate = start_gate(start_wsgate, echo_backend("echo1"), validate_utf8=validate)
    conn = open_ws(gate, connect)
    text = "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001f600".encode()
    for i in range(1, len(text)):  # every split point, code points cut in two
        conn.send_frame(TEXT, text[:i], fin=False)
        conn.send_frame(CONT, text[i:])
        assert conn.recv_message() == (TEXT, text)


def test_autobahn_group_6_invalid_utf8_is_failed_fast_by_wsgate_with_validate_utf8(
        start_wsgate, echo_backend, connect):
    gate = start_gate(start_wsgate, echo_backend("echo1"), validate_utf8=True)
    conn = open_ws(gate, connect)
    whole = frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" + b"x" * 100)
    conn.send(whole[:6 + 15])  # header, mask and the bytes up to the surrogate only
    _, reason = expect_close(conn, 1007)  # 6.4.x: fail-fast inside the frame
    assert reason


def test_autobahn_group_6_invalid_utf8_without_validation_gets_the_backends_1007(
        start_wsgate, echo_backend, connect):
    gate = start_gate(start_wsgate, echo_backend("echo1"), validate_utf8=False)
    conn = open_ws(gate, connect)
    conn.send_frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")
    _, reason = expect_close(conn, 1007)
    assert "UTF-8" in reason  # the echo backend's own close, relayed intact
    echo_close_and_expect_eof(conn, 1007)
    record = gate.access_for(conn)[0]
    assert (record["close_code"], record["close_by"]) == (1007, "backend")


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_autobahn_group_7_valid_close_codes_pass_and_are_echoed(echo_gate, connect, code):
    conn = open_ws(echo_gate, connect)
    conn.send_close(code, "r\u00e9ason")
    _, reason = expect_close(conn, code)
    assert reason == "r\u00e9ason"
    assert conn.is_closed_within(5)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_autobahn_group_7_invalid_close_codes_are_1002(echo_gate, connect, code):
    conn = open_ws(echo_gate, connect)
    conn.send_close(code)
    expect_close(conn, 1002)


@pytest.mark.parametrize("payload,expect", [
    (b"", None),  # 7.3.1: empty close, echoed empty
    (wsproto.close_payload(1000, "r" * 123), 1000),  # 7.3.5: 125-byte payload
    (wsproto.close_payload(1000, "r" * 124), 1002),  # 7.3.6: 126 bytes, over the limit
    (b"\x03", 1002),  # 7.3.2: 1-byte payload
    (wsproto.close_payload(1000) + b"\xce\xba\xed\xa0\x80", 1007),  # 7.5.1: reason not UTF-8
], ids=["empty", "reason-123", "reason-124", "one-byte", "reason-not-utf8"])
def test_autobahn_group_7_close_payloads(echo_gate, connect, payload, expect):
    conn = open_ws(echo_gate, connect)
    conn.send_frame(CLOSE, payload)
    expect_close(conn, expect)
    assert conn.is_closed_within(5)


@pytest.mark.parametrize("fragments", [1, 16], ids=["one-frame", "16-fragments"])
def test_autobahn_group_9_message_of_16_mib(echo_gate, connect, fragments):
    conn = open_ws(echo_gate, connect)
    payload = os.urandom(16 << 20)
    step = len(payload) // fragments
    data = b"".join(
        frame(BINARY if i == 0 else CONT, payload[i * step:(i + 1) * step],
              fin=i == fragments - 1)
        for i in range(fragments))
    send_chopped(conn, data, 65536)
    assert conn.recv_message(timeout=60) == (BINARY, payload)


def test_autobahn_group_10_auto_fragmented_messages_pass(start_wsgate, fake_backend, connect):
    def refragments(conn, backend):
        request = conn.read_request(timeout=30)
        conn.send(switching_protocols(request))
        assembler = wsproto.MessageAssembler()
        while True:
            opcode, data = None, None
            while opcode is None:
                got = assembler.add(conn.recv_frame(timeout=30))
                if got is not None:
                    opcode, data = got
            if opcode == CLOSE:
                conn.send(wsproto.encode_frame(CLOSE, data))
                return
            pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)] or [b""]
            for i, piece in enumerate(pieces):
                conn.send(wsproto.encode_frame(opcode if i == 0 else CONT, piece,
                                               fin=i == len(pieces) - 1))

    backend = fake_backend(refragments)
    gate = start_gate(start_wsgate, backend)
    conn = open_ws(gate, connect)
    message = os.urandom(65536)
    conn.send_frame(BINARY, message)  # 10.1.1: one big frame in, fragments out
    frames = [conn.recv_frame(timeout=10) for _ in range(66)]
    assert [f.fin for f in frames] == [False] * 65 + [True]
    assert b"".join(f.payload for f in frames) == message
    assert backend.errors == []


@pytest.mark.parametrize("size", [0, 1, 5000, 1 << 20], ids=lambda n: f"{n}B")
def test_autobahn_group_12_13_permessage_deflate_negotiation_passes(start_wsgate,
                                                                   websockets_echo, size,
                                                                   transport):
    gate = start_gate(start_wsgate, websockets_echo)
    text = ("compressible " * (size // 13 + 1))[:size]
    binary = os.urandom(size)

    async def run():
        async with websockets.connect(transport.url(gate, "/ws"), compression="deflate",
                                      max_size=None, ping_interval=None, open_timeout=5,
                                      close_timeout=5, **transport.websockets_options()) as ws:
            negotiated = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            replies = []
            for message in (text, binary, text):
                await ws.send(message)
                replies.append(await asyncio.wait_for(ws.recv(), 20))
            return negotiated, [e.name for e in ws.extensions], replies, ws.local_address[1]

    negotiated, extensions, replies, client_port = asyncio.run(run())
    assert negotiated.startswith("permessage-deflate"), negotiated
    assert extensions == ["permessage-deflate"]
    assert websockets_echo.extensions and "permessage-deflate" in websockets_echo.extensions[0]
    assert replies == [text, binary, text]
    record = gate.wait_access(lambda r: str(r["client"]).endswith(f":{client_port}"))[0]
    assert record["messages_from_client"] == 3 and record["messages_to_client"] == 3
    assert record["close_code"] == 1000
