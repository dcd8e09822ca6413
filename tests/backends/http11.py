"""HTTP/1.1 message framing (RFC 9112) shared by the echo backend and the tests.

Sans-I/O like wsproto: take_head() cuts a complete head off a receive buffer,
parse_head() splits it into a start line and fields, and BodyDecoder consumes
body bytes (Content-Length, chunked, or until close) and hands back whatever
follows the body, i.e. the start of the next pipelined message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

HEAD_END = b"\r\n\r\n"


class MessageError(Exception):
    """A message that cannot be framed; a server answers it with 400 and closes."""


@dataclass
class Head:
    """A parsed request or response head.

    start is (method, target, version) for a request and (version, status,
    reason) for a response. Field names keep their case as received.
    """

    start: Tuple[str, str, str]
    headers: List[Tuple[str, str]] = field(default_factory=list)

    def get_all(self, name: str) -> List[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def get(self, name: str) -> Optional[str]:
        """All values of `name` joined by ", " (RFC 9110 5.3), or None when absent."""
        values = self.get_all(name)
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> List[str]:
        """The comma-separated, lower-cased tokens of every `name` field."""
        return [t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()]

    def has_token(self, name: str, token: str) -> bool:
        return token.lower() in self.tokens(name)

    def as_dict(self) -> Dict[str, str]:
        """Lower-case name -> joined values."""
        out: Dict[str, str] = {}
        for k, _ in self.headers:
            out.setdefault(k.lower(), self.get(k))
        return out


def take_head(buf: bytearray, limit: int = 1 << 20) -> Optional[bytes]:
    """Removes and returns one complete head (with its final CRLFCRLF) from `buf`.

    Returns None when more bytes are needed. Empty lines before a request line
    are skipped (RFC 9112 2.2). Raises MessageError past `limit` bytes.
    """
    while buf.startswith(b"\r\n"):
        del buf[:2]
    end = buf.find(HEAD_END)
    if end < 0:
        if len(buf) > limit:
            raise MessageError(f"head larger than {limit} bytes")
        return None
    head = bytes(buf[: end + len(HEAD_END)])
    del buf[: end + len(HEAD_END)]
    return head


def parse_head(raw: bytes) -> Head:
    """Parses a head as returned by take_head(). Strict enough to refuse what a
    careful server refuses: bare LF/CR, obs-fold, space before the colon."""
    text = raw.decode("latin-1")
    if not text.endswith("\r\n\r\n"):
        raise MessageError("head does not end with CRLFCRLF")
    lines = text[:-4].split("\r\n")
    for line in lines:
        if "\r" in line or "\n" in line:
            raise MessageError("bare CR or LF in the head")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2:
        raise MessageError(f"malformed start line {lines[0]!r}")
    start = (parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise MessageError("obs-fold")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise MessageError(f"malformed field line {line!r}")
        headers.append((name, value.strip(" \t")))
    return Head(start=start, headers=headers)


class BodyDecoder:
    """Consumes one message body. feed() returns the bytes that follow the body."""

    LENGTH, CHUNKED, UNTIL_CLOSE = "length", "chunked", "until-close"

    def __init__(self, mode: str, length: int = 0):
        self.mode = mode
        self.body = bytearray()
        self.trailers: List[Tuple[str, str]] = []
        self._remaining = length
        self._buf = bytearray()
        self._chunk_left: Optional[int] = None  # None: expecting a size line
        self._in_trailers = False
        self.done = mode == self.LENGTH and length == 0

    @classmethod
    def for_request(cls, head: Head) -> "BodyDecoder":
        if head.get_all("transfer-encoding"):
            if head.tokens("transfer-encoding")[-1:] != ["chunked"]:
                raise MessageError("request transfer coding does not end with chunked")
            return cls(cls.CHUNKED)
        return cls(cls.LENGTH, _content_length(head))

    @classmethod
    def for_response(cls, head: Head, request_method: str = "GET") -> "BodyDecoder":
        status = int(head.start[1])
        if request_method == "HEAD" or status < 200 or status in (204, 304):
            return cls(cls.LENGTH, 0)
        if head.get_all("transfer-encoding"):
            if head.tokens("transfer-encoding")[-1:] == ["chunked"]:
                return cls(cls.CHUNKED)
            return cls(cls.UNTIL_CLOSE)
        if head.get_all("content-length"):
            return cls(cls.LENGTH, _content_length(head))
        return cls(cls.UNTIL_CLOSE)

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return bytes(data)
        if self.mode == self.UNTIL_CLOSE:
            self.body += data
            return b""
        if self.mode == self.LENGTH:
            take = min(self._remaining, len(data))
            self.body += data[:take]
            self._remaining -= take
            self.done = self._remaining == 0
            return bytes(data[take:])
        self._buf += data
        self._parse_chunks()
        if self.done:
            rest = bytes(self._buf)
            self._buf.clear()
            return rest
        return b""

    def finish(self) -> None:
        """The connection closed: ends an until-close body, fails a truncated one."""
        if self.mode == self.UNTIL_CLOSE:
            self.done = True
        if not self.done:
            raise MessageError("connection closed inside the message body")

    def _parse_chunks(self) -> None:
        buf = self._buf
        while not self.done:
            if self._in_trailers:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end]).decode("latin-1")
                del buf[: end + 2]
                if not line:
                    self.done = True
                    return
                name, _, value = line.partition(":")
                self.trailers.append((name, value.strip()))
            elif self._chunk_left is None:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 4096:
                        raise MessageError("chunk size line too long")
                    return
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError as e:
                    raise MessageError(f"bad chunk size {size_text!r}") from e
                if size == 0:
                    self._in_trailers = True
                else:
                    self._chunk_left = size
            else:
                if len(buf) < self._chunk_left + 2:
                    take = min(self._chunk_left, len(buf))
                    self.body += buf[:take]
                    del buf[:take]
                    self._chunk_left -= take
                    if self._chunk_left > 0 or len(buf) < 2:
                        return
                else:
                    self.body += buf[: self._chunk_left]
                    del buf[: self._chunk_left]
                    self._chunk_left = 0
                if bytes(buf[:2]) != b"\r\n":
                    raise MessageError("chunk data not followed by CRLF")
                del buf[:2]
                self._chunk_left = None


def _content_length(head: Head) -> int:
    values = head.get_all("content-length")
    if not values:
        return 0
    if len(set(values)) != 1 or not values[0].isdigit():
        raise MessageError(f"invalid Content-Length {values!r}")
    return int(values[0])


def encode_chunked(data: bytes, chunk_size: int = 16384) -> bytes:
    """`data` as a chunked body, including the last-chunk and the final CRLF."""
    out = bytearray()
    for i in range(0, len(data), chunk_size):
        piece = data[i : i + chunk_size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)
