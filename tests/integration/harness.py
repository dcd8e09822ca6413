"""Harness for wsgate's integration tests: the real binary, real sockets, loopback only.

- Wsgate: writes a config, starts the binary, waits for `ready`, reads the
  bound ports from its `listening listener=... address=...` lines, and reads
  the JSON access log it writes to stdout.
- EchoBackend: tests/backends/echo_backend.py as a subprocess (a well-behaved backend).
- FakeBackend: an in-process server whose every connection runs a script on its
  own thread (misbehaving backends), counting the connections it accepted.
- Conn: a blocking client socket with a receive buffer, where every read has a
  deadline: HTTP heads and bodies, WebSocket frames, end of stream. TlsConn: the same over
  TLS (tls_client_context makes its context); TlsEchoBackend: the echo backend serving TLS.

Waits are bounded: wait_for() polls a condition until a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

SOURCE_DIR = Path(os.environ.get("WSGATE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BACKENDS_DIR = SOURCE_DIR / "tests" / "backends"
sys.path.insert(0, str(BACKENDS_DIR))

import http11  # noqa: E402
import wsproto  # noqa: E402

PYTHON = sys.executable
DEFAULT_TIMEOUT = 5.0
LOOPBACK = "127.0.0.1"


def wsgate_binary() -> Path:
    """WSGATE_BIN, or the default build directory's binary; absolute, because processes start
    in the test's tmp_path, where a relative WSGATE_BIN (`WSGATE_BIN=build/wsgate pytest ...`)
    would not be found."""
    return Path(os.environ.get("WSGATE_BIN", SOURCE_DIR / "build" / "wsgate")).resolve()


# --- waiting ------------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def wait_for(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT,
             what: str = "condition", interval: float = 0.02) -> Any:
    """Polls `predicate` until it returns something truthy; fails after `timeout` seconds."""
    deadline = Deadline(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if deadline.expired():
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- config -------------------------------------------------------------------


def wait_lines(read, count, what):
    """Waits until read() holds `count` lines; returns them (and fails on more)."""
    def enough():
        lines = read().splitlines()
        return lines if len(lines) >= count else None

    lines = wait_for(enough, what=what)
    assert len(lines) == count, lines
    return lines


def route(pool: Optional[str] = None, *, path_prefix: Optional[str] = None,
          host: Optional[str] = None, header: Optional[Dict[str, str]] = None,
          respond: Optional[Tuple[int, str]] = None) -> dict:
    """A routes entry: to `pool`, or answered by wsgate itself with respond=(status, body)."""
    match: Dict[str, Any] = {}
    if host is not None:
        match["host"] = host
    if path_prefix is not None:
        match["path_prefix"] = path_prefix
    if header:
        match["header"] = dict(header)
    entry: Dict[str, Any] = {"match": match}
    if respond is not None:
        entry["respond"] = {"status": respond[0], "body": respond[1]}
    else:
        entry["pool"] = pool
    return entry


def pool(*backends, retries: Optional[int] = None, connect_timeout: str = "1s") -> dict:
    """A pools entry; each backend is anything with .name and .address, or (name, address)."""
    entries = []
    for b in backends:
        name, address = (b if isinstance(b, tuple) else (b.name, b.address))
        entries.append({"name": name, "address": address})
    cfg: Dict[str, Any] = {"policy": "round_robin", "backends": entries,
                           "connect_timeout": connect_timeout}
    if retries is not None:
        cfg["retries"] = retries
    return cfg


def gateway_config(routes: List[dict], pools: Optional[Dict[str, dict]] = None, *,
                   timeouts: Optional[Dict[str, str]] = None,
                   limits: Optional[Dict[str, Any]] = None,
                   listeners: Optional[List[dict]] = None, workers: int = 1) -> dict:
    """A complete config: one loopback listener on port 0, JSON access log on stdout,
    short timeouts so that a failing test fails fast."""
    cfg: Dict[str, Any] = {
        "workers": workers,
        "log": {"level": "info", "access": "stdout", "format": "json"},
        "listeners": listeners or [{"name": "public", "listen": f"{LOOPBACK}:0"}],
        "routes": routes,
    }
    if pools:
        cfg["pools"] = pools
    cfg["timeouts"] = {"handshake": "5s", "backend_response": "5s", "idle": "30s",
                       **(timeouts or {})}
    if limits:
        cfg["limits"] = dict(limits)
    return cfg


def to_yaml(value: Any) -> str:
    """Block-style YAML for the dicts, lists and scalars a config is made of."""
    lines: List[str] = []
    _emit_yaml(value, 0, lines)
    return "\n".join(lines) + "\n"


def _yaml_inline(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict) and not v:
        return "{}"
    if isinstance(v, list) and not v:
        return "[]"
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def _emit_yaml(value: Any, indent: int, lines: List[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                _emit_yaml(v, indent + 2, lines)
            else:
                lines.append(f"{pad}{k}: {_yaml_inline(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub: List[str] = []
                _emit_yaml(item, indent + 2, sub)
                lines.append(f"{pad}- {sub[0][indent + 2:]}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_yaml_inline(item)}")
    else:
        lines.append(pad + _yaml_inline(value))


# --- processes ------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _Process:
    """A child process whose stdout and stderr go to files, read by polling."""

    def __init__(self, label: str, workdir: Path):
        self.label = label
        self.workdir = workdir
        self.stdout_path = workdir / f"{label}.stdout"
        self.stderr_path = workdir / f"{label}.stderr"
        self.proc: Optional[subprocess.Popen] = None
        self.stopped_by_us = False

    def _spawn(self, argv: List[str], nofile: Optional[int] = None) -> None:
        """`nofile`: the child's open-files limit (soft and hard), to run it out of them. Set
        by util-linux's prlimit, which execs the child (no preexec_fn: backends run as
        threads of this process)."""
        if nofile:
            argv = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] + argv
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_line(self, pattern: str, stream: str = "stderr",
                  timeout: float = 10.0) -> re.Match:
        """Waits for a line matching `pattern`; fails early if the process exits."""
        regex = re.compile(pattern, re.MULTILINE)
        read = self.stderr if stream == "stderr" else self.stdout

        def seen():
            m = regex.search(read())
            if m is None and not self.running():
                raise AssertionError(
                    f"{self.label} exited with {self.proc.returncode} before printing "
                    f"{pattern!r}; stderr:\n{_tail(self.stderr_path)}")
            return m

        return wait_for(seen, timeout, f"{self.label} to print {pattern!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> Optional[int]:
        """Signals the process and waits; kills it past `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.stopped_by_us = True
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    SANITIZER_REPORT = re.compile(
        r"^(==\d+==ERROR: (AddressSanitizer|LeakSanitizer)|.*: runtime error: )", re.MULTILINE)

    def sanitizer_report(self) -> Optional[str]:
        """Under the ASan+UBSan build: the sanitizers' report in the process's stderr (a
        leak found at exit, or an error that did not end the process), from its first line;
        None when there is none."""
        text = self.stderr()
        m = self.SANITIZER_REPORT.search(text)
        return text[m.start():][:20000] if m else None

    def report(self) -> str:
        return (f"--- {self.label} stderr (tail) ---\n{_tail(self.stderr_path)}\n"
                f"--- {self.label} stdout (tail) ---\n{_tail(self.stdout_path)}\n")


class Wsgate(_Process):
    """The binary under test, started with a config written to its work directory."""

    LISTENING = r"listening listener=(\S+) address=(\S+):(\d+)"

    def __init__(self, binary: Path, workdir: Path, label: str = "wsgate"):
        super().__init__(label, workdir)
        self.binary = binary
        self.config_path = workdir / f"{label}.yaml"
        self.ports: Dict[str, int] = {}

    def start(self, config, timeout: float = 10.0, nofile: Optional[int] = None) -> "Wsgate":
        text = config if isinstance(config, str) else to_yaml(config)
        self.config_path.write_text(text)
        self._spawn([str(self.binary), "-c", str(self.config_path)], nofile=nofile)
        self.wait_line(r"\bready\b", timeout=timeout)
        for name, _host, port in re.findall(self.LISTENING, self.stderr()):
            self.ports[name] = int(port)
        assert self.ports, f"wsgate printed no listening line:\n{self.stderr()}"
        return self

    @property
    def port(self) -> int:
        """The port of the first listener."""
        return next(iter(self.ports.values()))

    def open_fds(self) -> int:
        """How many file descriptors the process holds now."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def access_log(self) -> List[dict]:
        """Every JSON access-log line written so far."""
        records = []
        for line in self.stdout().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line still being written
        return records

    def wait_access(self, predicate: Callable[[dict], bool], timeout: float = DEFAULT_TIMEOUT,
                    count: int = 1) -> List[dict]:
        """Waits until `count` access-log records satisfy `predicate`; returns them all."""
        def matching():
            found = [r for r in self.access_log() if predicate(r)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, f"{count} access-log record(s)")

    def access_for(self, conn: "Conn", timeout: float = DEFAULT_TIMEOUT,
                   count: int = 1) -> List[dict]:
        """The access-log records of the client connection `conn` (matched by its port)."""
        suffix = f":{conn.local_port}"
        return self.wait_access(lambda r: str(r.get("client", "")).endswith(suffix),
                                timeout, count)


class EchoBackend(_Process):
    """tests/backends/echo_backend.py on an ephemeral loopback port, or on `host` and `port`
    (any of 127.0.0.0/8: backends that share a port, told apart by address)."""

    def __init__(self, name: str, workdir: Path, host: str = LOOPBACK, port: int = 0):
        super().__init__(f"backend-{name}", workdir)
        self.name = name
        self.host = host
        self.port = port

    def start(self, timeout: float = 10.0) -> "EchoBackend":
        self._spawn([PYTHON, str(BACKENDS_DIR / "echo_backend.py"),
                     "--listen", f"{self.host}:{self.port}", "--name", self.name])
        m = self.wait_line(r"^listening \S+:(\d+)$", stream="stdout", timeout=timeout)
        self.port = int(m.group(1))
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def requests_logged(self) -> int:
        """Requests and WebSocket sessions the backend has finished (its stderr lines)."""
        return len([l for l in self.stderr().splitlines() if f" {self.name} " in l])

    UNHANDLED = "unhandled exception"
    crashed = False

    def crash(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: its connections vanish without a close."""
        self.crashed = True
        self.stop(signal.SIGKILL)

    def failure(self) -> Optional[str]:
        """After stop(): what went wrong in the backend, None if nothing did. It raised an
        exception it did not expect (it prints the traceback and exits with status 3), or it
        exited before stop() asked it to."""
        if self.proc is None:
            return None
        code = self.proc.returncode
        if not self.stopped_by_us:
            return f"{self.label} exited with {code} before the test stopped it:\n" + \
                _tail(self.stderr_path)
        if (code != 0 and not (self.crashed and code == -signal.SIGKILL)) or \
                self.UNHANDLED in self.stderr():
            return f"{self.label} exited with {code} after unhandled exceptions:\n" + \
                _tail(self.stderr_path, 80)
        return None


# --- client connections --------------------------------------------------------


@dataclass
class Response:
    status: int
    reason: str
    head: http11.Head
    body: bytes

    def header(self, name: str) -> Optional[str]:
        return self.head.get(name)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Request:
    method: str
    target: str
    version: str
    head: http11.Head
    body: bytes

    def header(self, name: str) -> Optional[str]:
        return self.head.get(name)


class ConnectionClosed(Exception):
    """The peer closed the connection before a complete message arrived."""


class Conn:
    """A blocking TCP connection; every read takes a timeout and fails when it passes."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.reset = False  # the peer reset the connection (RST) rather than closing it
        self._frames: deque = deque()
        self._decoder = wsproto.FrameDecoder()
        self._assembler = wsproto.MessageAssembler(validate_utf8=False)

    @classmethod
    def open(cls, port: int, host: str = LOOPBACK, timeout: float = DEFAULT_TIMEOUT,
             rcvbuf: Optional[int] = None) -> "Conn":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Closes with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    # -- raw bytes

    def _recv(self, deadline: Deadline, size: int = 1 << 20) -> bool:
        """Receives into self.buf; False at end of stream. TimeoutError past the deadline."""
        if self.eof:
            return False
        remaining = deadline.remaining()
        if remaining <= 0:
            raise TimeoutError(f"no data within {deadline.seconds}s")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(size)
        except socket.timeout:
            raise TimeoutError(f"no data within {deadline.seconds}s") from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_exactly(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        deadline = Deadline(timeout)
        while len(self.buf) < n:
            if not self._recv(deadline):
                raise ConnectionClosed(f"closed after {len(self.buf)} of {n} bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_until_eof(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Everything up to the end of the stream; fails if the peer keeps it open."""
        deadline = Deadline(timeout)
        while self._recv(deadline):
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def is_closed_within(self, timeout: float) -> bool:
        """Whether the peer ends the stream (FIN or RST) within `timeout`, discarding data."""
        try:
            self.read_until_eof(timeout)
            return True
        except TimeoutError:
            return False

    def received_within(self, seconds: float) -> bytes:
        """Whatever arrives in the next `seconds` (for asserting that nothing does)."""
        deadline = Deadline(seconds)
        try:
            while self._recv(deadline):
                pass
        except TimeoutError:
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    # -- HTTP

    def read_head(self, timeout: float = DEFAULT_TIMEOUT) -> http11.Head:
        deadline = Deadline(timeout)
        while True:
            raw = http11.take_head(self.buf)
            if raw is not None:
                return http11.parse_head(raw)
            if not self._recv(deadline):
                raise ConnectionClosed(
                    f"closed before a complete head; got {bytes(self.buf[:200])!r}")

    def _read_body(self, decoder: http11.BodyDecoder, deadline: Deadline) -> bytes:
        self.buf = bytearray(decoder.feed(bytes(self.buf)))
        while not decoder.done:
            if not self._recv(deadline):
                decoder.finish()
                break
            self.buf = bytearray(decoder.feed(bytes(self.buf)))
        return bytes(decoder.body)

    def read_response(self, method: str = "GET", timeout: float = DEFAULT_TIMEOUT,
                      skip_interim: bool = True) -> Response:
        """One response; 100 Continue and other 1xx (except 101) are skipped."""
        deadline = Deadline(timeout)
        while True:
            head = self.read_head(deadline.remaining())
            status = int(head.start[1])
            if not (skip_interim and 100 <= status < 200 and status != 101):
                break
        body = b""
        if status != 101:
            body = self._read_body(http11.BodyDecoder.for_response(head, method), deadline)
        return Response(status, head.start[2], head, body)

    def read_request(self, timeout: float = DEFAULT_TIMEOUT) -> Optional[Request]:
        """One request (as a backend sees it); None when the peer closed cleanly first."""
        deadline = Deadline(timeout)
        if not self.buf and not self._recv(deadline):
            return None
        head = self.read_head(deadline.remaining())
        body = self._read_body(http11.BodyDecoder.for_request(head), deadline)
        method, target, version = head.start
        return Request(method, target, version, head, body)

    def request(self, method: str, path: str, headers: Tuple[Tuple[str, str], ...] = (),
                body: Optional[bytes] = None, host: str = "localhost",
                timeout: float = DEFAULT_TIMEOUT) -> Response:
        """Sends one request and reads its response."""
        self.send(build_request(method, path, headers, body, host))
        return self.read_response(method, timeout)

    # -- WebSocket

    def upgrade(self, path: str = "/", host: str = "localhost",
                extra_headers: Tuple[Tuple[str, str], ...] = (), trailing: bytes = b"",
                timeout: float = DEFAULT_TIMEOUT) -> Response:
        """Sends an upgrade request (plus `trailing` bytes in the same write) and reads the
        response; when it is a 101, checks it opened a WebSocket correctly."""
        key = wsproto.new_key()
        self.send(wsproto.upgrade_request(path, host, key, extra_headers) + trailing)
        response = self.read_response(timeout=timeout)
        if response.status == 101:
            assert response.head.has_token("upgrade", "websocket"), response.head
            assert response.head.has_token("connection", "upgrade"), response.head
            assert response.header("sec-websocket-accept") == wsproto.accept_for(key)
        return response

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True,
                   mask: bool = True, rsv: int = 0) -> None:
        self.send(wsproto.encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> wsproto.Frame:
        deadline = Deadline(timeout)
        while not self._frames:
            if self.buf:
                self._frames.extend(self._decoder.feed(bytes(self.buf)))
                self.buf.clear()
                continue
            if not self._recv(deadline, 4 << 20):
                raise ConnectionClosed("closed while waiting for a frame")
        return self._frames.popleft()

    def recv_message(self, timeout: float = DEFAULT_TIMEOUT) -> Tuple[int, bytes]:
        """The next data message or control frame, as (opcode, payload)."""
        deadline = Deadline(timeout)
        while True:
            message = self._assembler.add(self.recv_frame(deadline.remaining()))
            if message is not None:
                return message

    def frames_until_eof(self, timeout: float = DEFAULT_TIMEOUT) -> List[wsproto.Frame]:
        """Every frame received until the peer ends the stream; TimeoutError if it does not."""
        deadline = Deadline(timeout)
        frames = []
        while True:
            try:
                frames.append(self.recv_frame(deadline.remaining()))
            except ConnectionClosed:
                return frames

    def send_close(self, code: int = wsproto.CLOSE_NORMAL, reason: str = "",
                   mask: bool = True) -> None:
        self.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(code, reason), mask=mask)


def upgrade_and_echo(conn: "Conn", path: str = "/ws",
                     headers: Tuple[Tuple[str, str], ...] = ()) -> "Response":
    """An upgrade on `conn`; checks the 101 and that a message echoes; returns the 101."""
    response = conn.upgrade(path, extra_headers=headers)
    assert response.status == 101, (response.status, response.body)
    payload = f"hello {conn.local_port}".encode()
    conn.send_frame(wsproto.OP_TEXT, payload)
    assert conn.recv_message() == (wsproto.OP_TEXT, payload)
    return response


def admin_port(gate: "Wsgate") -> int:
    """The port of wsgate's admin listener (admin.listen on 127.0.0.1:0), from its log."""
    return int(gate.wait_line(r"admin listening address=127\.0\.0\.1:(\d+)").group(1))


def admin_request(port: int, method: str, path: str) -> Tuple[int, str]:
    """(status, body) of one request to the admin listener; an error status is returned too."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def build_request(method: str, path: str, headers: Tuple[Tuple[str, str], ...] = (),
                  body: Optional[bytes] = None, host: Optional[str] = "localhost") -> bytes:
    """A request with Host first and Content-Length when there is a body and no
    Transfer-Encoding among `headers`."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    names = {k.lower() for k, _ in headers}
    if body is not None and "transfer-encoding" not in names and "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def headers_seen(response: Response) -> Dict[str, List[str]]:
    """The headers the echo backend reports it received: lower-case name -> values."""
    seen: Dict[str, List[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


# --- TLS ----------------------------------------------------------------------------------


def tls_client_context(ca: Optional[str] = None, *, cert: Optional[str] = None,
                       key: Optional[str] = None, minimum: Optional[ssl.TLSVersion] = None,
                       maximum: Optional[ssl.TLSVersion] = None,
                       alpn: Optional[List[str]] = None) -> ssl.SSLContext:
    """A client context that trusts `ca` only and checks the server's name (pass the name as
    TlsConn's server_hostname); `cert`/`key`: a client certificate to present."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        context.load_verify_locations(ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


class TlsConn(Conn):
    """A Conn over TLS, for the same tests over wss: an ssl.SSLObject over memory BIOs on a
    plain socket. Reads keep their deadlines; `sock` stays the TCP socket (TCP_CORK,
    SO_LINGER and abort() act on it as on a Conn); shutdown_write() sends close_notify and
    then the FIN; close() closes the socket without a close_notify, as a vanishing client.

    The end of the stream is the peer's close_notify (`close_notify` set), its FIN or RST
    without one, or a fatal TLS alert (kept in `tls_error`, e.g. "TLSV13_ALERT_CERTIFICATE_
    REQUIRED"): each makes reads report the end, as the FIN does on a Conn."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext,
                 server_hostname: Optional[str]):
        super().__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_side=False,
                                    server_hostname=server_hostname)
        self.close_notify = False
        self.tls_error: Optional[ssl.SSLError] = None

    @classmethod
    def open(cls, port: int, host: str = LOOPBACK, timeout: float = DEFAULT_TIMEOUT,
             rcvbuf: Optional[int] = None, *, context: ssl.SSLContext,
             server_hostname: Optional[str] = "localhost") -> "TlsConn":
        """Connects and completes the handshake (ssl.SSLError when it fails)."""
        plain = Conn.open(port, host, timeout, rcvbuf)
        conn = cls(plain.sock, context, server_hostname)
        try:
            conn.handshake(timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def handshake(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = Deadline(timeout)
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill(deadline):
                    self._incoming.write_eof()
                    if self.reset:
                        raise ConnectionResetError("reset during the TLS handshake") from None

    @property
    def version(self) -> Optional[str]:
        return self.tls.version()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self, deadline: Deadline) -> bool:
        """Raw bytes from the socket into the TLS object; False at end of stream."""
        remaining = deadline.remaining()
        if remaining <= 0:
            raise TimeoutError(f"no data within {deadline.seconds}s")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError(f"no data within {deadline.seconds}s") from None
        except ConnectionResetError:
            self.reset = True
            return False
        if not data:
            return False
        self._incoming.write(data)
        return True

    def _recv(self, deadline: Deadline, size: int = 1 << 20) -> bool:
        if self.eof:
            return False
        while True:
            try:
                data = self.tls.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill(deadline):
                    self._incoming.write_eof()  # the next read reports how the stream ended
                continue
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                data = b""
            except ssl.SSLEOFError:  # FIN or RST without close_notify
                data = b""
            except ssl.SSLError as e:  # a fatal alert, a bad record
                self.tls_error = e
                data = b""
            self._flush()  # whatever reading made OpenSSL answer (a key update)
            if not data:
                self.eof = True
                return False
            self.buf += data
            return True

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.tls.write(view):]
        self._flush()

    def shutdown_write(self) -> None:
        """close_notify, then the FIN; reading goes on."""
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:  # sent; the peer's close_notify is not here yet
            pass
        self._flush()
        self.sock.shutdown(socket.SHUT_WR)


class TlsEchoBackend(EchoBackend):
    """tests/backends/echo_backend.py serving TLS (--tls-cert/--tls-key, --tls-client-ca)."""

    def __init__(self, name: str, workdir: Path, cert: str, key: str,
                 client_ca: Optional[str] = None):
        super().__init__(name, workdir)
        self.tls_args = ["--tls-cert", cert, "--tls-key", key]
        if client_ca is not None:
            self.tls_args += ["--tls-client-ca", client_ca]

    def start(self, timeout: float = 10.0) -> "TlsEchoBackend":
        self._spawn([PYTHON, str(BACKENDS_DIR / "echo_backend.py"),
                     "--listen", f"{LOOPBACK}:0", "--name", self.name] + self.tls_args)
        m = self.wait_line(r"^listening \S+:(\d+)$", stream="stdout", timeout=timeout)
        self.port = int(m.group(1))
        return self


# --- fake backends ---------------------------------------------------------------


Script = Callable[[Conn, "FakeBackend"], None]


class FakeBackend:
    """An in-process backend: each accepted connection runs `script(conn, backend)` on its
    own thread. Counts connections, keeps script errors, and records notes for the test."""

    def __init__(self, script: Script, name: str = "fake"):
        self.script = script
        self.name = name
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.accepted = 0
        self.errors: List[str] = []  # "Type: message" of every script exception
        self.tracebacks: List[str] = []  # and its traceback, for the failure report
        self.hung: List[str] = []  # threads still running 5s after stop()
        self.notes: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._conns: List[Conn] = []
        self._threads: List[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"{name}-accept")
        self._accept_thread.start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def note(self, key: str, value: Any) -> None:
        with self._lock:
            self.notes[key] = value

    def append(self, key: str, value: Any) -> None:
        with self._lock:
            self.notes.setdefault(key, []).append(value)

    def requests(self, conn: "Conn", poll: float = 0.2):
        """Yields the requests `conn` reads until it ends or the backend stops."""
        return self._until_stopped(conn.read_request, poll)

    def frames(self, conn: "Conn", poll: float = 0.2):
        """Yields the frames `conn` reads until it ends or the backend stops."""
        return self._until_stopped(conn.recv_frame, poll)

    def _until_stopped(self, read: Callable[..., Any], poll: float):
        while True:
            try:
                item = read(timeout=poll)
            except TimeoutError:
                if self.stopping.is_set():
                    return
                continue
            except ConnectionClosed:
                return
            if item is None:  # read_request: the connection ended between requests
                return
            yield item

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock)
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True,
                                      name=f"{self.name}-conn")
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _run(self, conn: Conn) -> None:
        try:
            self.script(conn, self)
        except Exception as e:  # noqa: BLE001 - reported to the test through .errors
            # After stop() shut the sockets down, a script still reading fails: not its fault.
            if not self.stopping.is_set():
                with self._lock:
                    self.errors.append(f"{type(e).__name__}: {e}")
                    self.tracebacks.append(traceback.format_exc())
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self._accept_thread.join(5)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(5)
            if thread.is_alive():
                self.hung.append(thread.name)
        for conn in conns:
            conn.close()

    def failure(self) -> Optional[str]:
        """What went wrong in this backend's scripts, for the test that used it; None if
        nothing did. A script raised (a bug in the script, or an exception it did not expect:
        a script expecting the peer to reset or close must catch that itself), or it was still
        running after stop() had shut its sockets down."""
        problems = []
        with self._lock:
            if self.tracebacks:
                problems.append(f"{len(self.tracebacks)} script exception(s) in fake backend "
                                f"{self.name!r}:\n" + "\n".join(self.tracebacks))
            if self.hung:
                problems.append(f"fake backend {self.name!r}: {len(self.hung)} script thread(s) "
                                "still running 5s after stop()")
        return "\n".join(problems) or None


def refused_port() -> Tuple[socket.socket, int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not
    listening. Keep the socket open for as long as the port must stay refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    return sock, sock.getsockname()[1]


# --- scripts for fake backends -------------------------------------------------------


def answer_http(status: int = 200, body: bytes = b"ok\n",
                extra: Tuple[Tuple[str, str], ...] = ()) -> Script:
    """Answers every request on the connection with `status` and `body` (keep-alive),
    recording each request under notes["requests"]."""
    def script(conn: Conn, backend: FakeBackend) -> None:
        while not backend.stopping.is_set():
            try:
                request = conn.read_request(timeout=60)
            except ConnectionClosed:
                return
            if request is None:
                return
            backend.append("requests", request)
            conn.send(response_bytes(status, body, extra))
    return script


def response_bytes(status: int, body: bytes = b"",
                   extra: Tuple[Tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASON_PHRASES.get(status, 'Status')}",
             f"Content-Length: {len(body)}", "Content-Type: text/plain"]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def switching_protocols(request: Request, *, accept: Optional[str] = None,
                        extra: Tuple[Tuple[str, str], ...] = (),
                        upgrade: Optional[str] = "websocket") -> bytes:
    """A 101 answering `request`; accept/upgrade can be overridden to make it wrong."""
    if accept is None:
        accept = wsproto.accept_for(request.header("sec-websocket-key") or "")
    lines = ["HTTP/1.1 101 Switching Protocols"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    lines += ["Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}"]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def stall(conn: Conn, backend: FakeBackend) -> None:
    """Reads the request, then never answers (until the test ends)."""
    request = conn.read_request(timeout=30)
    backend.append("requests", request)
    backend.stopping.wait(60)


def websocket_echo(conn: Conn, backend: FakeBackend) -> None:
    """Completes the upgrade correctly, then sends every frame back unmasked until a
    close or the end of the stream. Records notes["requests"] and notes["frames"]."""
    request = conn.read_request(timeout=30)
    backend.append("requests", request)
    conn.send(switching_protocols(request))
    while not backend.stopping.is_set():
        try:
            frame = conn.recv_frame(timeout=60)
        except ConnectionClosed:
            return
        backend.append("frames", frame)
        conn.send(wsproto.encode_frame(frame.opcode, frame.payload, fin=frame.fin))
        if frame.opcode == wsproto.OP_CLOSE:
            return


def accept_and_reset(conn: Conn, backend: FakeBackend) -> None:
    """Resets the connection as soon as it is accepted."""
    conn.abort()


REASON_PHRASES = {
    101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request",
    403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 414: "URI Too Long",
    426: "Upgrade Required", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 504: "Gateway Timeout",
}


def assert_error_response(response: Response, status: int) -> None:
    """wsgate's own error answer: `HTTP/1.1 <code> <phrase>`, text body "<code> <phrase>: ..."."""
    assert response.status == status, (response.status, response.body)
    assert response.reason == REASON_PHRASES[status], response.reason
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.header("content-length") == str(len(response.body))
    assert response.body.startswith(f"{status} {REASON_PHRASES[status]}: ".encode()), response.body
    assert response.body.endswith(b"\n"), response.body


class WebsocketsEchoServer:
    """python3-websockets serving an echo that accepts permessage-deflate when offered, on its
    own loop thread: an independent implementation on the backend side. Records each
    session's request headers (names lower-cased) under `requests` and the names of the
    extensions it negotiated under `extensions`. A session that ends in an exception (a close
    without a close handshake, a protocol error) is kept in `errors`; the fixture fails the
    test with them."""

    name = "wsecho"

    def __init__(self):
        import websockets  # only the tests that use this server need the package

        self.loop = asyncio.new_event_loop()
        self.requests: List[Dict[str, str]] = []
        self.extensions: List[List[str]] = []
        self.errors: List[str] = []
        self.port = 0
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            async def echo(ws, *_):
                self.requests.append({k.lower(): v for k, v in ws.request_headers.raw_items()})
                self.extensions.append([e.name for e in ws.extensions])
                try:
                    async for message in ws:  # ends at a clean close (ConnectionClosedOK)
                        await ws.send(message)
                except Exception:  # noqa: BLE001 - reported to the test by the fixture
                    self.errors.append(traceback.format_exc())
                    raise

            self.server = self.loop.run_until_complete(websockets.serve(
                echo, LOOPBACK, 0, compression="deflate", max_size=None, ping_interval=None))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True, name="websockets-echo")
        self.thread.start()
        assert ready.wait(10), "the websockets server did not start"

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        async def shutdown():
            self.server.close()
            await self.server.wait_closed()
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        except TimeoutError:  # a session stuck in its close: stop the loop anyway
            pass
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
