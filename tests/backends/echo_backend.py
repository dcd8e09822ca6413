#!/usr/bin/python3
"""Echo backend for the wsgate demo (`make run`) and the integration tests.

    /usr/bin/python3 tests/backends/echo_backend.py --listen 127.0.0.1:9001 --name echo1

Speaks HTTP/1.1 with keep-alive and pipelining, and WebSocket (RFC 6455):

  GET, HEAD, DELETE, OPTIONS  200, JSON describing the request as this backend saw it:
                              {"backend", "method", "path", "version", "headers": [[k, v]...]}
  POST, PUT, PATCH            200, the request body echoed back (Content-Length or chunked
                              request bodies); answered chunked when the path starts with
                              /chunked, with Content-Length otherwise
  GET + Upgrade: websocket    101, then every text/binary message is echoed back (fragmented
                              messages are reassembled), pings get pongs, a close is echoed

Every response carries `X-Backend: NAME`. Once listening it prints
`listening HOST:PORT` on stdout (useful with port 0), then one line per request
or WebSocket session on stderr unless --quiet. SIGTERM/SIGINT stop it cleanly.

With --tls-cert and --tls-key it serves the same over TLS (wss:// and https://) instead of
plain TCP; --tls-client-ca then also asks for a client certificate and requires one signed by
that CA. A failed handshake is the client's doing: it ends that connection only. JSON answers
then also carry "tls": {"version", "resumed", "client_subject"} (the client certificate's
subject, or null), and each log line ends with ` tls=VERSION resumed=yes|no`.

A connection that raises anything but a connection error (a bug in this backend) is closed,
and its traceback goes to stderr after a line `echo_backend NAME: unhandled exception ...`
(even with --quiet); the exit status is then 3, so that the tests which used it fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import time
import traceback
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import http11  # noqa: E402
import wsproto  # noqa: E402

READ_SIZE = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024

REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    426: "Upgrade Required",
}


class Connection:
    """One client connection: HTTP requests in order, possibly ending in a WebSocket."""

    def __init__(self, server: "EchoServer", reader, writer):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.tls_note = ""
        if server.tls is not None:
            tls = self.tls_description()
            self.tls_note = f" tls={tls['version']} resumed={'yes' if tls['resumed'] else 'no'}"

    async def run(self) -> None:
        try:
            while await self.serve_one():
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def fill(self) -> bool:
        """Reads more bytes into self.buf; False at end of stream."""
        data = await self.reader.read(READ_SIZE)
        if not data:
            return False
        self.buf += data
        return True

    async def serve_one(self) -> bool:
        """Serves one request; returns whether the connection stays open for another."""
        try:
            raw = http11.take_head(self.buf, MAX_HEAD_BYTES)
            while raw is None:
                if not await self.fill():
                    return False
                raw = http11.take_head(self.buf, MAX_HEAD_BYTES)
            head = http11.parse_head(raw)
            method, path, version = head.start
            if not version.startswith("HTTP/1."):
                raise http11.MessageError(f"unsupported version {version!r}")
        except http11.MessageError as e:
            await self.send_response(400, b"bad request: %s\n" % str(e).encode(), close=True)
            return False

        if method == "GET" and head.has_token("upgrade", "websocket"):
            return await self.serve_websocket(head)

        if (head.get("expect") or "").lower() == "100-continue":
            await self.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await self.read_body(http11.BodyDecoder.for_request(head))
        except http11.MessageError as e:
            await self.send_response(400, b"bad request: %s\n" % str(e).encode(), close=True)
            return False

        keep_alive = self.wants_keep_alive(head)
        if method in ("POST", "PUT", "PATCH"):
            content_type = head.get("content-type") or "application/octet-stream"
            await self.send_response(
                200, bytes(body), content_type=content_type, close=not keep_alive,
                chunked=path.startswith("/chunked"),
            )
        elif method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            described = {
                "backend": self.server.name,
                "method": method,
                "path": path,
                "version": version,
                "headers": [[k, v] for k, v in head.headers],
            }
            if self.server.tls is not None:
                described["tls"] = self.tls_description()
            payload = (json.dumps(described) + "\n").encode()
            await self.send_response(
                200, payload, content_type="application/json", close=not keep_alive,
                head_only=method == "HEAD",
            )
        else:
            await self.send_response(405, b"method not allowed\n", close=not keep_alive)
        self.server.log(f"{self.peer} {method} {path} {len(body)}B{self.tls_note}")
        return keep_alive

    def tls_description(self) -> dict:
        ssl_object = self.writer.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        subject = None
        if peer:
            subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
        return {"version": ssl_object.version() if ssl_object else None,
                "resumed": ssl_object.session_reused if ssl_object else None,
                "client_subject": subject}

    async def read_body(self, decoder: http11.BodyDecoder) -> bytes:
        rest = decoder.feed(bytes(self.buf))
        self.buf = bytearray(rest)
        while not decoder.done:
            data = await self.reader.read(READ_SIZE)
            if not data:
                decoder.finish()
                break
            self.buf = bytearray(decoder.feed(data))
        return bytes(decoder.body)

    @staticmethod
    def wants_keep_alive(head: http11.Head) -> bool:
        if head.has_token("connection", "close"):
            return False
        if head.start[2] == "HTTP/1.0":
            return head.has_token("connection", "keep-alive")
        return True

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_response(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        close: bool = False,
        chunked: bool = False,
        head_only: bool = False,
        extra: tuple = (),
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
            f"X-Backend: {self.server.name}",
            f"Content-Type: {content_type}",
        ]
        lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        lines += [f"{k}: {v}" for k, v in extra]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head_only:
            payload = b""
        elif chunked:
            payload = http11.encode_chunked(body, 8192)
        else:
            payload = body
        await self.send_raw(head + payload)

    # --- WebSocket ---------------------------------------------------------

    async def serve_websocket(self, head: http11.Head) -> bool:
        key = head.get("sec-websocket-key")
        problem = None
        if not head.has_token("connection", "upgrade"):
            problem = "Connection does not contain upgrade"
        elif not wsproto.is_valid_key(key):
            problem = "Sec-WebSocket-Key is not base64 of 16 bytes"
        elif head.get_all("content-length") or head.get_all("transfer-encoding"):
            problem = "upgrade request with a body"
        if problem:
            await self.send_response(400, (problem + "\n").encode(), close=True)
            return False
        if head.get("sec-websocket-version") != "13":
            await self.send_response(
                426, b"only version 13\n", close=True, extra=(("Sec-WebSocket-Version", "13"),)
            )
            return False

        await self.send_raw(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {wsproto.accept_for(key)}\r\n"
                f"X-Backend: {self.server.name}\r\n\r\n"
            ).encode("latin-1")
        )
        started = time.monotonic()
        code = await self.echo_messages()
        self.server.log(
            f"{self.peer} websocket {head.start[1]} closed {code} after "
            f"{time.monotonic() - started:.3f}s{self.tls_note}"
        )
        return False

    async def echo_messages(self) -> Optional[int]:
        """Echoes until a close; returns the close code seen or sent (None: connection lost)."""
        decoder = wsproto.FrameDecoder(self.server.max_message_bytes)
        assembler = wsproto.MessageAssembler(self.server.max_message_bytes)
        pending = bytes(self.buf)  # frames pipelined right behind the upgrade request
        self.buf.clear()
        while True:
            try:
                for frame in decoder.feed(pending):
                    if not frame.masked:
                        raise wsproto.ProtocolError("unmasked client frame")
                    message = assembler.add(frame)
                    if message is None:
                        continue
                    opcode, data = message
                    if opcode == wsproto.OP_PING:
                        self.writer.write(wsproto.encode_frame(wsproto.OP_PONG, data))
                    elif opcode == wsproto.OP_CLOSE:
                        code, _ = wsproto.parse_close(data)
                        if code is not None and not wsproto.is_valid_close_code(code):
                            raise wsproto.ProtocolError(f"invalid close code {code}")
                        await self.send_raw(wsproto.encode_frame(wsproto.OP_CLOSE, data))
                        return code
                    elif opcode in (wsproto.OP_TEXT, wsproto.OP_BINARY):
                        self.writer.write(wsproto.encode_frame(opcode, data))
                await self.writer.drain()
            except wsproto.ProtocolError as e:
                reply = wsproto.close_payload(e.code, str(e)[:100])
                await self.send_raw(wsproto.encode_frame(wsproto.OP_CLOSE, reply))
                return e.code
            pending = await self.reader.read(READ_SIZE)
            if not pending:
                return None


class EchoServer:
    def __init__(self, name: str, quiet: bool, max_message_bytes: int,
                 tls: Optional[ssl.SSLContext] = None):
        self.name = name
        self.quiet = quiet
        self.max_message_bytes = max_message_bytes
        self.tls = tls
        self.connections: set = set()
        self.errors = 0  # unhandled exceptions so far

    def log(self, line: str) -> None:
        if not self.quiet:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            print(f"{stamp} {self.name} {line}", file=sys.stderr, flush=True)

    def unhandled(self, where: str, trace: str) -> None:
        """Reports an exception nothing expected; main() then exits with status 3."""
        self.errors += 1
        print(f"echo_backend {self.name}: unhandled exception {where}\n{trace}",
              file=sys.stderr, flush=True)

    def loop_exception(self, loop, context: dict) -> None:
        exc = context.get("exception")
        trace = ("".join(traceback.format_exception(exc)) if exc is not None
                 else context.get("message", "?"))
        self.unhandled("in the event loop", trace)

    async def handle(self, reader, writer) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            await Connection(self, reader, writer).run()
        except Exception:  # noqa: BLE001 - a bug here: reported, and the exit status says so
            peer = writer.get_extra_info("peername") or ("?", 0)
            self.unhandled(f"serving {peer[0]}:{peer[1]}", traceback.format_exc())
            writer.close()
        finally:
            self.connections.discard(task)

    async def serve(self, host: str, port: int) -> None:
        asyncio.get_running_loop().set_exception_handler(self.loop_exception)
        tls = {"ssl": self.tls, "ssl_handshake_timeout": 10} if self.tls else {}
        server = await asyncio.start_server(self.handle, host, port, limit=READ_SIZE, **tls)
        bound = server.sockets[0].getsockname()
        print(f"listening {bound[0]}:{bound[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
            server.close()
            for task in list(self.connections):
                task.cancel()
            await asyncio.gather(*self.connections, return_exceptions=True)


def parse_listen(value: str) -> tuple:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def tls_context(cert: str, key: str, client_ca: Optional[str]) -> ssl.SSLContext:
    """A server context for --tls-cert/--tls-key (TLS 1.2 and later, ALPN http/1.1)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=parse_listen, default="127.0.0.1:9001",
                        help="HOST:PORT; port 0 picks a free one (default %(default)s)")
    parser.add_argument("--name", default="echo", help="backend name reported in responses")
    parser.add_argument("--max-message-bytes", type=int, default=64 << 20,
                        help="largest WebSocket message accepted (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    parser.add_argument("--tls-cert", metavar="PATH",
                        help="serve TLS with this PEM certificate chain (needs --tls-key)")
    parser.add_argument("--tls-key", metavar="PATH", help="the private key of --tls-cert")
    parser.add_argument("--tls-client-ca", metavar="PATH",
                        help="require a client certificate signed by a CA in this PEM file")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    tls = None
    if args.tls_cert:
        try:
            tls = tls_context(args.tls_cert, args.tls_key, args.tls_client_ca)
        except (OSError, ssl.SSLError) as e:
            print(f"echo_backend: TLS: {e}", file=sys.stderr)
            return 1
    server = EchoServer(args.name, args.quiet, args.max_message_bytes, tls)
    try:
        asyncio.run(server.serve(*args.listen))
    except OSError as e:
        print(f"echo_backend: {e}", file=sys.stderr)
        return 1
    return 3 if server.errors else 0


if __name__ == "__main__":
    sys.exit(main())
