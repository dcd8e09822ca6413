"""A third WebSocket client nobody here wrote: Autobahn|Python (Debian's python3-autobahn, by
the authors of the Autobahn test suite), on asyncio, through the real wsgate. It checks the
handshake as a client library sees it (the backend's subprotocol, the Accept it verifies
itself, a refused upgrade that must not become a tunnel), fragmentation (its own fragmenter
and streaming frame API, a ping between fragments, a backend's fragments relayed as they
are) and the close handshake (codes and reasons both ways, wsgate's 1009 and its 1012 on a
drain), over ws:// and wss://. python3-websockets and node `ws` cover the rest
(test_websocket.py, test_lua.py); the raw frame cases are test_frames.py."""

import asyncio
import os
import ssl
from typing import List, Optional, Tuple

import pytest
from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (PerMessageDeflateOffer, PerMessageDeflateResponse,
                                         PerMessageDeflateResponseAccept)

import harness
import tls_certs
import wsproto
from harness import admin_request, gateway_config, pool, route, switching_protocols, wait_for

TEXT, BINARY, CONT = wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_CONT
CLOSE, PING, PONG = wsproto.OP_CLOSE, wsproto.OP_PING, wsproto.OP_PONG
TIMEOUT = 10


# --- the client -------------------------------------------------------------------------------


class Session:
    """What one Autobahn client session saw: the handshake response, each message with the
    sizes of the frames it came in, pongs, and how it closed (was_clean, code, reason)."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future = loop.create_future()  # True, or the close if it failed
        self.closed: asyncio.Future = loop.create_future()
        self.messages: asyncio.Queue = asyncio.Queue()
        self.pongs: asyncio.Queue = asyncio.Queue()
        self.response = None
        self.protocol: Optional[WebSocketClientProtocol] = None
        self._frames: List[int] = []

    async def message(self) -> Tuple[bytes, bool, List[int]]:
        """(payload, is_binary, [frame lengths]) of the next message."""
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def close_seen(self) -> Tuple[bool, Optional[int], Optional[str]]:
        return await asyncio.wait_for(asyncio.shield(self.closed), TIMEOUT)


def client_protocol(session: Session):
    class Client(WebSocketClientProtocol):
        def onConnect(self, response):
            session.response = response
            session.protocol = self

        def onOpen(self):
            if not session.opened.done():
                session.opened.set_result(True)

        def onMessageFrameBegin(self, length):
            session._frames.append(length)
            super().onMessageFrameBegin(length)

        def onMessage(self, payload, isBinary):
            session.messages.put_nowait((payload, isBinary, session._frames))
            session._frames = []

        def onPong(self, payload):
            session.pongs.put_nowait(payload)

        def onClose(self, wasClean, code, reason):
            if not session.opened.done():
                session.opened.set_result((wasClean, code, reason))
            if not session.closed.done():
                session.closed.set_result((wasClean, code, reason))
    return Client


async def open_session(port: int, *, context: Optional[ssl.SSLContext] = None,
                       protocols: Optional[List[str]] = None, deflate: bool = False,
                       expect_open: bool = True) -> Session:
    """An Autobahn client session to wsgate on `port` (wss:// with `context`)."""
    session = Session()
    scheme = "wss" if context else "ws"
    factory = WebSocketClientFactory(f"{scheme}://localhost:{port}/ws", protocols=protocols)
    factory.protocol = client_protocol(session)
    factory.setProtocolOptions(openHandshakeTimeout=TIMEOUT, closeHandshakeTimeout=TIMEOUT,
                               autoFragmentSize=0)
    if deflate:
        def accept(response):
            if isinstance(response, PerMessageDeflateResponse):
                return PerMessageDeflateResponseAccept(response)
            return None
        factory.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()],
                                   perMessageCompressionAccept=accept)
    await asyncio.get_running_loop().create_connection(
        factory, "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None)
    opened = await asyncio.wait_for(asyncio.shield(session.opened), TIMEOUT)
    if expect_open:
        assert opened is True, f"the handshake failed: {opened}"
    return session


# --- ws and wss -------------------------------------------------------------------------------


@pytest.fixture(params=["ws", "wss"])
def scheme(request, tmp_path_factory):
    """(listener tls block or None, client SSLContext or None) for ws:// or wss://."""
    if request.param == "ws":
        return None, None
    pki = tls_certs.session_pki(tmp_path_factory)
    return ({"certificates": [pki.localhost.listener_entry()]},
            harness.tls_client_context(pki.ca))


def start_gate(start_wsgate, backend, scheme, **kwargs):
    tls, _ = scheme
    listener = {"name": "public", "listen": "127.0.0.1:0"}
    if tls:
        listener["tls"] = tls
    cfg = gateway_config([route("ws", path_prefix="/")], {"ws": pool(backend)},
                         listeners=[listener], **kwargs)
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    return start_wsgate(cfg)


# --- backends ---------------------------------------------------------------------------------


class FrameEcho:
    """A FakeBackend script: 101 (choosing `protocol` when the client offered it), then
    records each frame under notes["frames"] and echoes data frames as they came (same
    fragmentation), pongs pings and echoes a Close. With `first` it sends those frames as
    soon as the session opens."""

    def __init__(self, protocol: Optional[str] = None, first: Tuple[bytes, ...] = ()):
        self.protocol = protocol
        self.first = first

    def __call__(self, conn, backend) -> None:
        request = conn.read_request(timeout=30)
        backend.append("requests", request)
        offered = [p.strip() for p in (request.header("sec-websocket-protocol") or "").split(",")]
        extra = (("Sec-WebSocket-Protocol", self.protocol),) if self.protocol in offered else ()
        conn.send(switching_protocols(request, extra=extra) + b"".join(self.first))
        while not backend.stopping.is_set():
            frame = conn.recv_frame(timeout=30)
            backend.append("frames", frame)
            if frame.opcode == CLOSE:
                conn.send(wsproto.encode_frame(CLOSE, frame.payload))
                return
            if frame.opcode == PING:
                conn.send(wsproto.encode_frame(PONG, frame.payload))
            elif frame.opcode in (TEXT, BINARY, CONT):
                conn.send(wsproto.encode_frame(frame.opcode, frame.payload, fin=frame.fin))


def answers(head: bytes):
    """A FakeBackend script that answers the upgrade request with `head` and closes."""
    def script(conn, backend):
        backend.append("requests", conn.read_request(timeout=30))
        conn.send(head)
    return script


# --- handshake --------------------------------------------------------------------------------


def test_autobahn_gets_the_subprotocol_the_backend_chose_and_verifies_the_accept(
        start_wsgate, fake_backend, scheme):
    backend = fake_backend(FrameEcho(protocol="chat.v2"))
    gate = start_gate(start_wsgate, backend, scheme)

    async def run():
        session = await open_session(gate.port, context=scheme[1],
                                     protocols=["chat.v1", "chat.v2"])
        session.protocol.sendMessage("hello, autobahn".encode(), isBinary=False)
        echoed = await session.message()
        session.protocol.sendClose(1000)
        return session, echoed, await session.close_seen()

    session, echoed, closed = asyncio.run(run())
    # Autobahn checked Sec-WebSocket-Accept against its own key (wsgate's 101 is the
    # backend's, relayed), and took the one subprotocol the backend chose.
    assert session.response.protocol == "chat.v2"
    offered = backend.notes["requests"][0].header("sec-websocket-protocol")
    assert [p.strip() for p in offered.split(",")] == ["chat.v1", "chat.v2"]
    assert echoed == (b"hello, autobahn", False, [15])
    assert closed == (True, 1000, None)


@pytest.mark.parametrize("head, status", [
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Accept: c3VyZWx5IG5vdCB0aGUga2V5Cg==\r\n\r\n", 502),
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403),
], ids=["wrong-accept-is-502", "backend-403-relayed"])
def test_autobahn_sees_a_refused_upgrade_as_a_failed_handshake_never_a_tunnel(
        start_wsgate, fake_backend, head, status):
    backend = fake_backend(answers(head))
    gate = start_gate(start_wsgate, backend, (None, None))

    async def run():
        return await open_session(gate.port, expect_open=False)

    session = asyncio.run(run())
    was_clean, code, reason = session.opened.result()
    assert (was_clean, code) == (False, 1006)
    assert f"upgrade failed [{status}]" in reason, reason
    assert gate.wait_access(lambda r: r.get("status") == status)


# --- fragmentation ----------------------------------------------------------------------------


def test_autobahn_fragments_and_a_ping_between_them_pass_frame_for_frame(
        start_wsgate, fake_backend, scheme):
    backend = fake_backend(FrameEcho())
    gate = start_gate(start_wsgate, backend, scheme)
    payload = os.urandom(7 * 4096 + 1328)

    async def run():
        session = await open_session(gate.port, context=scheme[1])
        client = session.protocol
        # Autobahn's own fragmenter: 4 KiB frames, FIN on the last (the shorter one).
        client.sendMessage(payload, isBinary=True, fragmentSize=4096)
        whole = await session.message()
        # Its streaming API: three frames, a ping between the second and third, then an
        # empty final frame. The pong must come back before the message ends (no
        # whole-message buffering in wsgate or in the relay).
        client.beginMessage(isBinary=False)
        client.sendMessageFrame(b"one ")
        client.sendMessageFrame(b"two ")
        client.sendPing(b"mid-message")
        pong = await asyncio.wait_for(session.pongs.get(), TIMEOUT)
        client.sendMessageFrame(b"three")
        client.endMessage()
        streamed = await session.message()
        client.sendClose(1000)
        await session.close_seen()
        return whole, pong, streamed

    whole, pong, streamed = asyncio.run(run())
    assert whole == (payload, True, [4096] * 7 + [1328])
    assert pong == b"mid-message"
    assert streamed == (b"one two three", False, [4, 4, 5, 0])
    # The backend got Autobahn's frames as sent: opcode on the first, continuations after,
    # FIN on the last, the ping between the fragments.
    frames = [(f.opcode, len(f.payload), f.fin) for f in backend.notes["frames"]]
    assert frames[:8] == [(BINARY, 4096, False)] + [(CONT, 4096, False)] * 6 + [(CONT, 1328, True)]
    assert frames[8:14] == [(TEXT, 4, False), (CONT, 4, False), (PING, 11, True),
                            (CONT, 5, False), (CONT, 0, True), (CLOSE, 2, True)]


def test_autobahn_reassembles_a_backends_fragments_that_wsgate_relays_unchanged(
        start_wsgate, fake_backend, scheme):
    pieces = [b"st", b"re", b"am", b"ed"]
    first = [wsproto.encode_frame(TEXT if i == 0 else CONT, p, fin=i == len(pieces) - 1)
             for i, p in enumerate(pieces)]
    backend = fake_backend(FrameEcho(first=tuple(first)))
    gate = start_gate(start_wsgate, backend, scheme)

    async def run():
        session = await open_session(gate.port, context=scheme[1])
        got = await session.message()
        session.protocol.sendClose(1000)
        await session.close_seen()
        return got

    assert asyncio.run(run()) == (b"streamed", False, [2, 2, 2, 2])


def test_autobahn_permessage_deflate_is_negotiated_through_wsgate(start_wsgate,
                                                                  websockets_echo, scheme):
    gate = start_gate(start_wsgate, websockets_echo, scheme)
    text = ("compress me " * 2000).encode()

    async def run():
        session = await open_session(gate.port, context=scheme[1], deflate=True)
        session.protocol.sendMessage(text, isBinary=False)
        got = await session.message()
        session.protocol.sendClose(1000)
        await session.close_seen()
        return session, got

    session, (payload, is_binary, frames) = asyncio.run(run())
    assert session.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
    assert [type(e).__name__ for e in session.response.extensions] == ["PerMessageDeflate"]
    assert websockets_echo.extensions[0] == ["permessage-deflate"]
    assert (payload, is_binary) == (text, False)
    assert sum(frames) < len(text) // 10  # it crossed wsgate compressed


# --- close ------------------------------------------------------------------------------------


def test_autobahn_close_code_and_reason_pass_both_ways(start_wsgate, fake_backend, scheme):
    backend = fake_backend(FrameEcho())
    gate = start_gate(start_wsgate, backend, scheme)

    async def run():
        session = await open_session(gate.port, context=scheme[1])
        session.protocol.sendClose(4001, "done for today")
        return await session.close_seen()

    assert asyncio.run(run()) == (True, 4001, "done for today")
    close = backend.notes["frames"][-1]
    assert close.opcode == CLOSE
    assert close.payload == (4001).to_bytes(2, "big") + b"done for today"


def test_autobahn_gets_1009_for_a_message_over_max_message_bytes(start_wsgate, fake_backend,
                                                                  scheme):
    backend = fake_backend(FrameEcho())
    gate = start_gate(start_wsgate, backend, scheme, limits={"max_message_bytes": 1024})

    async def run():
        session = await open_session(gate.port, context=scheme[1])
        session.protocol.sendMessage(b"x" * 600 + b"y" * 600, isBinary=True, fragmentSize=600)
        return await session.close_seen()

    was_clean, code, _ = asyncio.run(run())
    assert (was_clean, code) == (True, 1009)
    # The first fragment went through before the second made the message too big; the
    # second never reached the backend, which was told 1001.
    frames = wait_for(lambda: (f := backend.notes.get("frames", [])) and f[-1].opcode == CLOSE
                      and f, TIMEOUT, "the backend's close")
    assert [(f.opcode, len(f.payload)) for f in frames[:-1]] == [(BINARY, 600)]
    assert frames[-1].payload[:2] == (1001).to_bytes(2, "big")


def test_autobahn_gets_1012_when_its_backend_is_drained(start_wsgate, echo_backend, scheme):
    echo = echo_backend("e1")
    gate = start_gate(start_wsgate, echo, scheme,
                      timeouts={"drain": "10s", "drain_spread": "0s"})
    admin = harness.admin_port(gate)

    async def run():
        session = await open_session(gate.port, context=scheme[1])
        session.protocol.sendMessage(b"before the drain", isBinary=False)
        await session.message()
        status = await asyncio.to_thread(admin_request, admin, "POST",
                                         "/pools/ws/backends/e1/drain")
        return status[0], await session.close_seen()

    status, (was_clean, code, _) = asyncio.run(run())
    assert status == 200
    assert (was_clean, code) == (True, 1012)
