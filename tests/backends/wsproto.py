"""WebSocket (RFC 6455) building blocks shared by the echo backend and the tests.

Sans-I/O: nothing here touches a socket. Callers feed received bytes to a
FrameDecoder, hand its frames to a MessageAssembler, and write what
encode_frame() returns. Both the asyncio echo backend and the blocking test
clients pump bytes through the same code, so a bug here shows up everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

# RFC 6455 1.3: appended to the client's key before hashing.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

# Close codes (RFC 6455 7.4.1) the helpers below use.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009


class ProtocolError(Exception):
    """The peer broke RFC 6455; `code` is the close code to answer with."""

    def __init__(self, message: str, code: int = CLOSE_PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


# --- handshake --------------------------------------------------------------


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to `key` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def is_valid_key(key: Optional[str]) -> bool:
    """True when `key` is base64 of exactly 16 bytes (RFC 6455 4.2.1 item 5)."""
    if key is None or len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


def upgrade_request(
    path: str = "/",
    host: str = "localhost",
    key: Optional[str] = None,
    extra_headers: Tuple[Tuple[str, str], ...] = (),
) -> bytes:
    """A minimal, valid client upgrade request head."""
    key = key or new_key()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- frames -----------------------------------------------------------------


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XORs `data` with the 4-byte masking key (masking and unmasking are the same)."""
    n = len(data)
    if n == 0 or key == b"\0\0\0\0":
        return bytes(data)
    # One big-integer XOR: fast enough for 16 MiB payloads in pure Python.
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = False,
    rsv: int = 0,
    mask_key: Optional[bytes] = None,
) -> bytes:
    """One frame on the wire. Clients must pass mask=True (RFC 6455 5.3)."""
    payload = bytes(payload)
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return header + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return header + key + apply_mask(payload, key)


def close_payload(code: Optional[int] = CLOSE_NORMAL, reason: str = "") -> bytes:
    """The payload of a Close frame: empty, or a 2-byte code and a UTF-8 reason."""
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode("utf-8")


def parse_close(payload: bytes) -> Tuple[Optional[int], str]:
    """(code, reason) of a Close payload; (None, "") when it is empty."""
    if len(payload) == 0:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError("close payload of 1 byte")
    (code,) = struct.unpack("!H", payload[:2])
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError("close reason is not UTF-8", CLOSE_INVALID_DATA) from e
    return code, reason


def is_valid_close_code(code: int) -> bool:
    """Codes an endpoint may put on the wire (RFC 6455 7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes  # unmasked
    rsv: int = 0
    masked: bool = False


class FrameDecoder:
    """Turns a byte stream into frames. feed() returns every frame completed so far."""

    def __init__(self, max_frame_bytes: int = 1 << 62):
        self._buf = bytearray()
        self._max = max_frame_bytes

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> List[Frame]:
        self._buf += data
        frames = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Optional[Frame]:
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            (n,) = struct.unpack_from("!H", buf, 2)
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            (n,) = struct.unpack_from("!Q", buf, 2)
            if n >> 63:
                raise ProtocolError("64-bit length with the top bit set")
            pos = 10
        if n > self._max:
            raise ProtocolError(f"frame of {n} bytes over the limit", CLOSE_TOO_BIG)
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos : pos + n])
        del buf[: pos + n]
        if masked:
            payload = apply_mask(payload, key)
        return Frame(
            fin=bool(b0 & 0x80), opcode=b0 & 0x0F, payload=payload, rsv=(b0 >> 4) & 0x7,
            masked=masked,
        )


class MessageAssembler:
    """Joins fragments into messages and checks the framing rules of RFC 6455 5.

    add() returns (opcode, payload) for each control frame and for each data
    message once its last fragment arrived, and None while a message is still
    incomplete. Raises ProtocolError with the close code to answer with.
    """

    def __init__(self, max_message_bytes: int = 64 << 20, validate_utf8: bool = True):
        self._max = max_message_bytes
        self._validate_utf8 = validate_utf8
        self._opcode: Optional[int] = None  # opcode of the message being assembled
        self._parts: List[bytes] = []
        self._size = 0

    def add(self, frame: Frame) -> Optional[Tuple[int, bytes]]:
        if frame.rsv:
            raise ProtocolError("RSV bits set without a negotiated extension")
        if frame.opcode in CONTROL_OPCODES:
            if not frame.fin:
                raise ProtocolError("fragmented control frame")
            if len(frame.payload) > 125:
                raise ProtocolError("control frame payload over 125 bytes")
            return frame.opcode, frame.payload
        if frame.opcode not in DATA_OPCODES:
            raise ProtocolError(f"reserved opcode {frame.opcode:#x}")
        if frame.opcode == OP_CONT:
            if self._opcode is None:
                raise ProtocolError("continuation without a started message")
        else:
            if self._opcode is not None:
                raise ProtocolError("new data frame inside a fragmented message")
            self._opcode = frame.opcode
        self._size += len(frame.payload)
        if self._size > self._max:
            raise ProtocolError(f"message over {self._max} bytes", CLOSE_TOO_BIG)
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        opcode, data = self._opcode, b"".join(self._parts)
        self._opcode, self._parts, self._size = None, [], 0
        if opcode == OP_TEXT and self._validate_utf8:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ProtocolError("text message is not UTF-8", CLOSE_INVALID_DATA) from e
        return opcode, data
