"""PROXY protocol v1 and v2 (listeners' proxy_protocol, pools' proxy_protocol): the address an
L4 balancer carries is the client's everywhere (X-Forwarded-For, the access log, Lua,
source_ip stickiness); peers outside proxy_protocol_from are closed unread; missing,
malformed, truncated, oversized and silent headers are closed without an answer, counted
by reason, and logged once per window; the header comes before TLS; pools send a v2 header
(health probes a LOCAL one); and HAProxy from Debian, in TCP mode with send-proxy-v2 and
send-proxy, is understood.

Loopback is all of 127.0.0.0/8: the listeners trust 127.0.0.2/32 only, and a client binds
127.0.0.2 to be trusted or 127.0.0.1 not to be."""

import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

import harness
import tls_certs
from harness import (LOOPBACK, Conn, TlsConn, admin_port, gateway_config, headers_seen, pool,
                     route, tls_client_context, wait_for)
from harness import admin_request as admin

TRUSTED = "127.0.0.2"
UNTRUSTED = "127.0.0.1"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
REFUSAL_LINE = "before its PROXY header was accepted"


# --- headers, as a balancer writes them ------------------------------------------------------


def v1(src, dst=None, sport=40000, dport=443):
    proto = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("2001:db8::1" if ":" in src else "192.0.2.1")
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst=None, sport=40000, dport=443, tlvs=b""):
    six = ":" in src
    dst = dst or ("2001:db8::1" if six else "192.0.2.1")
    family = socket.AF_INET6 if six else socket.AF_INET
    body = (socket.inet_pton(family, src) + socket.inet_pton(family, dst) +
            struct.pack("!HH", sport, dport) + tlvs)
    return SIG + bytes([0x21, 0x21 if six else 0x11]) + struct.pack("!H", len(body)) + body


V2_LOCAL = SIG + b"\x20\x00\x00\x00"


def read_v2(conn: Conn) -> dict:
    """Reads one v2 header from `conn` (a backend's view) and decodes it."""
    fixed = conn.read_exactly(16)
    assert fixed[:12] == SIG, fixed
    length = struct.unpack("!H", fixed[14:16])[0]
    body = conn.read_exactly(length)
    return decode_v2(fixed, body)


def decode_v2(fixed: bytes, body: bytes) -> dict:
    command, family = fixed[12], fixed[13]
    header = {"command": "PROXY" if command == 0x21 else "LOCAL" if command == 0x20 else command,
              "family": family, "length": len(body)}
    if command == 0x21 and family in (0x11, 0x21):
        n = 4 if family == 0x11 else 16
        af = socket.AF_INET if n == 4 else socket.AF_INET6
        sport, dport = struct.unpack("!HH", body[2 * n:2 * n + 4])
        header["source"] = (socket.inet_ntop(af, body[:n]), sport)
        header["destination"] = (socket.inet_ntop(af, body[n:2 * n]), dport)
    return header


# --- clients and wsgate -----------------------------------------------------------------------


def open_from(port: int, source: str, timeout: float = harness.DEFAULT_TIMEOUT) -> Conn:
    """A client connection from `source` (any 127.0.0.0/8 address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((LOOPBACK, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Conn(sock)


@pytest.fixture
def client():
    """client(port, source=TRUSTED) -> a Conn from `source`, closed at teardown."""
    conns = []

    def open_conn(port, source=TRUSTED):
        conn = open_from(port, source)
        conns.append(conn)
        return conn

    yield open_conn
    for conn in conns:
        conn.close()


def pp_listener(name="lb", trusted=(f"{TRUSTED}/32",), **extra) -> dict:
    return {"name": name, "listen": f"{LOOPBACK}:0", "proxy_protocol": True,
            "proxy_protocol_from": list(trusted), **extra}


def start_gate(start_wsgate, pools, *, routes=None, listeners=None, **kwargs):
    cfg = gateway_config(routes or [route("app", path_prefix="/")], pools,
                         listeners=listeners or [pp_listener()], **kwargs)
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    return start_wsgate(cfg)


def scrape(gate) -> dict:
    status, body = admin(admin_port(gate), "GET", "/metrics")
    assert status == 200, body
    series = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            series[name] = int(float(value))
    return series


def rejected(series, reason, listener="lb"):
    return series[f'wsgate_proxy_protocol_rejected_total{{listener="{listener}",reason="{reason}"}}']


def headers_total(series, version, listener="lb"):
    return series[f'wsgate_proxy_protocol_headers_total{{listener="{listener}",version="{version}"}}']


def refusal_lines(gate):
    return [line for line in gate.stderr().splitlines() if REFUSAL_LINE in line]


def forwarded_for(response) -> list:
    return [t.strip() for v in headers_seen(response)["x-forwarded-for"] for t in v.split(",")]


def shown(ip: str, port: int) -> str:
    """An address as wsgate's access log writes it."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --- the carried address is the client's ----------------------------------------------------


CARRIED = [
    pytest.param(v1, "203.0.113.7", id="v1-tcp4"),
    pytest.param(v1, "2001:db8::7", id="v1-tcp6"),
    pytest.param(v2, "198.51.100.9", id="v2-inet"),
    pytest.param(v2, "2001:db8:1::9", id="v2-inet6"),
]


@pytest.mark.parametrize("make,ip", CARRIED)
def test_carried_address_reaches_the_backend_and_the_access_log(
        start_wsgate, echo_backend, client, make, ip):
    gate = start_gate(start_wsgate, {"app": pool(echo_backend())})
    conn = client(gate.port)
    # Header and request in one write: the request behind the header must not be lost.
    conn.send(make(ip, sport=50123) +
              harness.build_request("GET", "/whoami"))
    response = conn.read_response()
    assert response.status == 200, response.body
    assert forwarded_for(response) == [ip]
    # A second request on the same connection: no second header, same client.
    response = conn.request("GET", "/again")
    assert forwarded_for(response) == [ip]
    records = gate.wait_access(lambda r: r.get("client") == shown(ip, 50123), count=2)
    assert [r["path"] for r in records] == ["/whoami", "/again"]
    version = "1" if make is v1 else "2"
    assert headers_total(scrape(gate), version) == 1


@pytest.mark.parametrize("header", [
    pytest.param(b"PROXY UNKNOWN\r\n", id="v1-unknown"),
    pytest.param(b"PROXY UNKNOWN ::1 ::2 1 2\r\n", id="v1-unknown-with-addresses"),
    pytest.param(V2_LOCAL, id="v2-local"),
])
def test_local_and_unknown_keep_the_peer_address(start_wsgate, echo_backend, client, header):
    gate = start_gate(start_wsgate, {"app": pool(echo_backend())})
    conn = client(gate.port)
    conn.send(header)
    response = conn.request("GET", "/whoami")
    assert forwarded_for(response) == [TRUSTED]
    assert gate.access_for(conn)[0]["client"] == f"{TRUSTED}:{conn.local_port}"


def test_header_split_over_several_segments_is_waited_for(start_wsgate, echo_backend, client):
    gate = start_gate(start_wsgate, {"app": pool(echo_backend())})
    conn = client(gate.port)
    header = v2("192.0.2.44", tlvs=b"\x04\x00\x05noop!")
    for piece in (header[:5], header[5:15], header[15:30], header[30:]):
        conn.send(piece)
        time.sleep(0.05)  # the scenario: separate segments, each read on its own
    response = conn.request("GET", "/whoami")
    assert forwarded_for(response) == ["192.0.2.44"]


def test_lua_sees_the_carried_address(start_wsgate, echo_backend, client, tmp_path):
    script = tmp_path / "ip.lua"
    script.write_text("function on_request(req)\n"
                      "  return { status = 200, body = 'ip=' .. req.client_ip }\nend\n")
    routes = [{"match": {"path_prefix": "/"}, "pool": "app", "lua": "on_request"}]
    cfg = gateway_config(routes, {"app": pool(echo_backend())}, listeners=[pp_listener()])
    cfg["scripting"] = {"file": str(script)}
    gate = start_wsgate(cfg)
    conn = client(gate.port)
    conn.send(v1("2001:db8::42"))
    response = conn.request("GET", "/")
    assert (response.status, response.body) == (200, b"ip=2001:db8::42")


def test_source_ip_stickiness_follows_the_carried_address(start_wsgate, echo_backend, client):
    backends = [echo_backend("b1"), echo_backend("b2"), echo_backend("b3")]
    app = pool(*backends)
    app["sticky"] = {"source_ip": True}
    gate = start_gate(start_wsgate, {"app": app})

    def backend_for(ip):
        conn = client(gate.port)
        conn.send(v2(ip))
        response = conn.request("GET", "/sticky")
        conn.close()
        return response.header("x-backend")

    ips = [f"198.51.100.{i}" for i in range(1, 25)]
    first = {ip: backend_for(ip) for ip in ips}
    # Every connection comes from 127.0.0.2: stickiness by the peer would put them all on one
    # backend. By the carried address, the clients spread, and each stays where it went.
    assert len(set(first.values())) >= 2, first
    for ip in ips[:8]:
        assert backend_for(ip) == first[ip], ip


# --- refusals ---------------------------------------------------------------------------------


def test_untrusted_peer_is_closed_before_anything_is_read(start_wsgate, fake_backend, client):
    backend = fake_backend(lambda conn, b: None)
    gate = start_gate(start_wsgate, {"app": pool(backend)})
    conn = client(gate.port, source=UNTRUSTED)
    # Nothing sent: the close comes at once, not at timeouts.handshake (5 s here).
    started = time.monotonic()
    assert conn.read_until_eof(timeout=2) == b""
    assert time.monotonic() - started < 2
    series = scrape(gate)
    assert rejected(series, "untrusted") == 1
    assert sum(rejected(series, r) for r in ("missing", "malformed", "truncated", "oversized",
                                             "timeout")) == 0
    assert backend.accepted == 0
    assert len(refusal_lines(gate)) == 1
    assert f"from {UNTRUSTED}:{conn.local_port}" in refusal_lines(gate)[0]


BAD = {
    "missing": [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00"],
    "malformed": [b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n",
                  b"PROXY TCP4 01.2.3.4 5.6.7.8 1 80\r\nGET / HTTP/1.1\r\n\r\n",
                  SIG + b"\x21\x12\x00\x0c" + bytes(12)],  # a datagram family
    "oversized": [b"PROXY UNKNOWN " + b"x" * 120, SIG + b"\x21\x11\x10\x00"],
}


def test_bad_headers_are_closed_unanswered_counted_by_reason_and_logged_once(
        start_wsgate, echo_backend, client):
    gate = start_gate(start_wsgate, {"app": pool(echo_backend())}, timeouts={"handshake": "1s"})
    # A well-behaved client, before and after the others.
    good = client(gate.port)
    good.send(v1("192.0.2.200"))
    assert good.request("GET", "/before").status == 200
    for reason, inputs in BAD.items():
        for data in inputs:
            conn = client(gate.port)
            conn.send(data)
            assert conn.read_until_eof(timeout=3) == b"", (reason, data)  # no HTTP answer
    half_then_eof = client(gate.port)
    half_then_eof.send(v2("192.0.2.9")[:20])
    half_then_eof.shutdown_write()
    half_then_silence = client(gate.port)
    half_then_silence.send(b"PROXY TCP4 192.0.2.9 19")
    silent = client(gate.port)
    for conn in (half_then_eof, half_then_silence, silent):
        assert conn.read_until_eof(timeout=4) == b""
    assert good.request("GET", "/after").status == 200
    series = scrape(gate)
    assert {r: rejected(series, r) for r in
            ("untrusted", "missing", "malformed", "truncated", "oversized", "timeout")} == {
        "untrusted": 0, "missing": 2, "malformed": 3, "truncated": 2, "oversized": 2,
        "timeout": 1}
    assert headers_total(series, "1") == 1
    # Ten refusals within the window: one line, naming the first one's reason.
    lines = refusal_lines(gate)
    assert len(lines) == 1, lines
    assert "[listener lb]" in lines[0] and ": missing (not a PROXY header)" in lines[0]
    assert [r["path"] for r in gate.access_log()] == ["/before", "/after"]


def test_a_connection_closed_before_any_byte_is_not_a_refusal(start_wsgate, echo_backend,
                                                              client):
    # An L4 balancer's TCP check opens and closes without a byte.
    gate = start_gate(start_wsgate, {"app": pool(echo_backend())})
    conn = client(gate.port)
    conn.shutdown_write()
    assert conn.read_until_eof() == b""
    series = scrape(gate)
    assert sum(rejected(series, r) for r in ("missing", "truncated", "timeout")) == 0
    assert refusal_lines(gate) == []


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tls_certs.Pki:
    return tls_certs.session_pki(tmp_path_factory)


def test_header_comes_before_the_tls_handshake(start_wsgate, echo_backend, pki):
    listener = pp_listener(tls={"certificates": [pki.localhost.listener_entry()]})
    gate = start_gate(start_wsgate, {"app": pool(echo_backend())}, listeners=[listener])
    context = tls_client_context(pki.ca)
    for ip in ("203.0.113.70", "2001:db8::70"):
        plain = open_from(gate.port, TRUSTED)
        conn = TlsConn(plain.sock, context, "localhost")
        try:
            # The ClientHello rides in the same segment as the header.
            try:
                conn.tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            conn.sock.sendall(v2(ip) +
                              conn._outgoing.read())
            conn.handshake()
            response = conn.request("GET", "/whoami")
            assert response.status == 200
            assert forwarded_for(response) == [ip]
            assert headers_seen(response)["x-forwarded-proto"] == ["https"]
        finally:
            conn.close()
    # TLS without the header first: missing, not a TLS failure.
    plain = open_from(gate.port, TRUSTED)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        TlsConn(plain.sock, context, "localhost").handshake(timeout=3)
    plain.close()
    series = scrape(gate)
    assert headers_total(series, "2") == 2
    assert rejected(series, "missing") == 1
    assert series['wsgate_tls_handshakes_total{listener="lb"}'] == 2


# --- towards backends -------------------------------------------------------------------------


def header_then_http(conn, backend):
    """A backend that expects a v2 header, then answers each request with 200."""
    backend.append("headers", read_v2(conn))
    for request in backend.requests(conn):
        backend.append("requests", request.target)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_pool_sends_a_v2_header_with_the_client_address(start_wsgate, fake_backend, client):
    backend = fake_backend(header_then_http)
    app = pool(backend)
    app["proxy_protocol"] = True
    listeners = [pp_listener(), {"name": "plain", "listen": f"{LOOPBACK}:0"}]
    gate = start_gate(start_wsgate, {"app": app}, listeners=listeners)
    # Through a PROXY listener: the carried client.
    conn = client(gate.ports["lb"])
    conn.send(v1("2001:db8::5", dst="::1", sport=61000))
    assert conn.request("GET", "/a").status == 200
    assert conn.request("GET", "/b").status == 200  # kept alive: no second header
    # Straight from a client: its own address.
    direct = client(gate.ports["plain"], source="127.0.0.3")
    assert direct.request("GET", "/c").status == 200
    headers = wait_for(lambda: len(backend.notes.get("headers", [])) == 2 and
                       backend.notes["headers"], what="two backend connections")
    assert backend.notes["requests"] == ["/a", "/b", "/c"]
    carried, own = headers
    assert carried["command"] == "PROXY"
    # The listener's address is IPv4: the IPv6 client makes both sides IPv6, mapped.
    assert carried["source"] == ("2001:db8::5", 61000)
    assert carried["destination"] == ("::ffff:127.0.0.1", gate.ports["lb"])
    assert own["source"] == ("127.0.0.3", direct.local_port)
    assert own["destination"] == (LOOPBACK, gate.ports["plain"])
    assert own["family"] == 0x11 and own["length"] == 12


def test_pool_with_tls_sends_the_header_before_the_handshake(start_wsgate, fake_backend, client,
                                                             pki):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.backend.cert, pki.backend.key)

    def script(conn, backend):
        sock = conn.sock  # nothing read through the Conn yet: the header is on the socket
        fixed = sock.recv(16, socket.MSG_WAITALL)
        body = sock.recv(struct.unpack("!H", fixed[14:16])[0], socket.MSG_WAITALL)
        backend.append("headers", decode_v2(fixed, body))
        with server.wrap_socket(sock, server_side=True) as tls:
            tls.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                data += chunk
            backend.append("requests", data.split(b" ")[1].decode())
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    backend = fake_backend(script)
    app = pool(backend)
    app["proxy_protocol"] = True
    app["tls"] = {"ca": pki.ca, "sni": "backend.test"}
    gate = start_gate(start_wsgate, {"app": app})
    conn = client(gate.port)
    conn.send(v2("203.0.113.99", sport=4242))
    response = conn.request("GET", "/secure")
    assert (response.status, response.body) == (200, b"ok")
    assert backend.notes["requests"] == ["/secure"]
    assert backend.notes["headers"][0]["source"] == ("203.0.113.99", 4242)


def test_health_probes_send_a_local_header(start_wsgate, fake_backend, client):
    def script(conn, backend):
        fixed = conn.read_exactly(16)
        body = conn.read_exactly(struct.unpack("!H", fixed[14:16])[0])
        header = decode_v2(fixed, body)
        request = conn.read_request()
        backend.append("probes" if request.target == "/health" else "requests",
                       (header["command"], header.get("source")))
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    backend = fake_backend(script)
    app = pool(backend)
    app["proxy_protocol"] = True
    app["health"] = {"path": "/health", "interval": "200ms", "timeout": "150ms", "rise": 1,
                     "fall": 1}
    gate = start_gate(start_wsgate, {"app": app})
    wait_for(lambda: len(backend.notes.get("probes", [])) >= 2, what="two probes")
    assert set(backend.notes["probes"]) == {("LOCAL", None)}
    conn = client(gate.port)
    conn.send(v1("192.0.2.77", sport=7777))
    assert conn.request("GET", "/x", headers=(("Connection", "close"),)).status == 200
    wait_for(lambda: backend.notes.get("requests"), what="the request")
    assert backend.notes["requests"] == [("PROXY", ("192.0.2.77", 7777))]


# --- reload -----------------------------------------------------------------------------------


def test_reload_turns_proxy_protocol_on_for_new_connections(start_wsgate, echo_backend, client):
    backend = echo_backend()
    plain = {"name": "lb", "listen": f"{LOOPBACK}:0"}
    cfg = gateway_config([route("app", path_prefix="/")], {"app": pool(backend)},
                         listeners=[plain])
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    before = client(gate.port)
    assert forwarded_for(before.request("GET", "/one")) == [TRUSTED]
    # The same name and address: the listener (and its socket) is kept.
    cfg["listeners"] = [pp_listener()]
    gate.config_path.write_text(harness.to_yaml(cfg))
    gate.proc.send_signal(signal.SIGHUP)
    gate.wait_line(r"reload ok generation=2 listeners kept=1 opened=0 closed=0")
    # A connection accepted before the reload goes on without a header.
    assert forwarded_for(before.request("GET", "/two")) == [TRUSTED]
    after = client(gate.port)
    after.send(v2("192.0.2.123"))
    assert forwarded_for(after.request("GET", "/three")) == ["192.0.2.123"]
    refused = client(gate.port)
    refused.send(harness.build_request("GET", "/four"))
    assert refused.read_until_eof() == b""
    assert rejected(scrape(gate), "missing") == 1


# --- HAProxy in front -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@pytest.fixture
def haproxy(tmp_path):
    """haproxy(target_port, server_options) -> the port of a HAProxy in TCP mode that
    forwards to 127.0.0.1:target_port with `server_options` (send-proxy-v2, ...)."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(binary).exists(), "haproxy is missing: run packaging/install-deps.sh"
    procs = []

    def start(target_port, options):
        port = free_port()
        cfg = tmp_path / f"haproxy{len(procs)}.cfg"
        cfg.write_text(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind {LOOPBACK}:{port}
    default_backend be
backend be
    server wsgate {LOOPBACK}:{target_port} {options}
""")
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        log = open(tmp_path / f"haproxy{len(procs)}.log", "w")
        proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=log)
        procs.append((proc, log))

        def listening():
            # Told by the port being taken, not by connecting: a connection would reach
            # wsgate through HAProxy and count as a header of its own.
            assert proc.poll() is None, (tmp_path / f"haproxy{len(procs) - 1}.log").read_text()
            with socket.socket() as probe:
                try:
                    probe.bind((LOOPBACK, port))
                    return False
                except OSError:
                    return True

        wait_for(listening, what="haproxy listening")
        return port

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("options,version", [("send-proxy-v2", "2"), ("send-proxy", "1")])
def test_haproxy_in_front_is_understood(start_wsgate, echo_backend, haproxy, options, version):
    # HAProxy connects from 127.0.0.1: that is the balancer wsgate trusts here.
    listener = pp_listener(trusted=[f"{LOOPBACK}/32"])
    gate = start_gate(start_wsgate, {"app": pool(echo_backend())}, listeners=[listener])
    front = haproxy(gate.port, options)
    conn = open_from(front, "127.0.0.9")
    try:
        response = conn.request("GET", "/via-haproxy")
        assert response.status == 200
        assert forwarded_for(response) == ["127.0.0.9"]
        record = gate.access_for(conn)[0]
        assert record["client"] == f"127.0.0.9:{conn.local_port}"
        assert record["path"] == "/via-haproxy"
    finally:
        conn.close()
    series = scrape(gate)
    assert headers_total(series, version) == 1
    assert headers_total(series, "2" if version == "1" else "1") == 0
    assert sum(rejected(series, r) for r in ("untrusted", "missing", "malformed", "truncated",
                                             "oversized", "timeout")) == 0
