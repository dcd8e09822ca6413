"""TLS through the real binary: listeners that terminate TLS (listeners[].tls) and pools that
speak TLS to their backends (pools.NAME.tls), as docs/configuration.md ("listener tls", "pool
tls") promises them. Every certificate is made for the test session with the openssl CLI
(tls_certs.py); clients are python3-websockets, `openssl s_client` and the harness's TlsConn.

One scenario per test: wss and https through wsgate, SNI picking the certificate, the versions
refused and accepted, ALPN, what a non-TLS client gets, the handshake timeout, session
resumption across workers, verified TLS to backends, and client certificates.
"""

import asyncio
import os
import re
import ssl
import subprocess
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pytest
import websockets

import harness
import http11
import tls_certs
import wsproto
from harness import (LOOPBACK, TlsConn, assert_error_response, build_request,
                     gateway_config, headers_seen, pool, route, tls_client_context, wait_for)

TEXT, BINARY = wsproto.OP_TEXT, wsproto.OP_BINARY
SEVENTY_KB = 70 * 1024


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> tls_certs.Pki:
    return tls_certs.session_pki(tmp_path_factory)


@pytest.fixture
def tls_echo_backend(tmp_path):
    """tls_echo_backend(name, leaf, client_ca=None) -> echo_backend.py serving TLS with
    `leaf`; stopped, reported and checked like the echo_backend fixture's."""
    started = []

    def start(name, leaf, client_ca=None):
        backend = harness.TlsEchoBackend(name, tmp_path, leaf.cert, leaf.key, client_ca)
        started.append(backend)
        return backend.start()

    yield start
    failures = []
    for backend in started:
        backend.stop()
        print(backend.report())
        failures.append(backend.failure())
    failures = [f for f in failures if f]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def tls_connect():
    """tls_connect(port, context, server_hostname="localhost") -> a TlsConn, closed at
    teardown."""
    conns = []

    def open_conn(port, context, server_hostname="localhost", **kwargs):
        conn = TlsConn.open(port, context=context, server_hostname=server_hostname, **kwargs)
        conns.append(conn)
        return conn

    yield open_conn
    for conn in conns:
        conn.close()


# --- config -----------------------------------------------------------------------------------


def tls_listener(leaves, name: str = "secure", **tls) -> dict:
    """A loopback listener on port 0 terminating TLS with `leaves` (the first is the
    default certificate) and any other listener tls keys."""
    return {"name": name, "listen": f"{LOOPBACK}:0",
            "tls": {"certificates": [leaf.listener_entry() for leaf in leaves], **tls}}


def start_gate(start_wsgate, backend, leaves, *, pool_tls: Optional[dict] = None,
               plain_listener: bool = False, listener_tls: Optional[dict] = None, **kwargs):
    """wsgate with a TLS listener "secure" (plus a plain "public" one if asked) routing
    everything to `backend` (pool "app", with `pool_tls` as its tls block)."""
    listeners = [tls_listener(leaves, **(listener_tls or {}))]
    if plain_listener:
        listeners.append({"name": "public", "listen": f"{LOOPBACK}:0"})
    app = pool(backend)
    if pool_tls is not None:
        app["tls"] = pool_tls
    return start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": app},
                                       listeners=listeners, **kwargs))


def client_context(pki, **kwargs) -> ssl.SSLContext:
    return tls_client_context(pki.ca, **kwargs)


# --- openssl s_client -------------------------------------------------------------------------


@dataclass
class SClient:
    """One `openssl s_client` run: exit status, stdout, stderr."""
    returncode: int
    out: str
    err: str

    def text(self) -> str:
        return f"exit {self.returncode}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"

    def handshake_done(self) -> bool:
        return (self.returncode == 0 and
                re.search(r"^(New|Reused), TLSv", self.out, re.M) is not None)

    def reused(self) -> bool:
        return re.search(r"^Reused, TLSv", self.out, re.M) is not None

    def protocol(self) -> Optional[str]:
        m = re.search(r"^(?:New|Reused), (TLSv[\d.]+)", self.out, re.M)
        return m.group(1) if m else None

    def alpn(self) -> Optional[str]:
        """The protocol ALPN selected, None when none was."""
        m = re.search(r"^ALPN protocol: (\S+)", self.out, re.M)
        if m:
            return m.group(1)
        assert "No ALPN negotiated" in self.out, self.text()
        return None

    def certificate(self) -> str:
        """The server's certificate, PEM."""
        m = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", self.out,
                      re.S)
        assert m, "s_client printed no certificate:\n" + self.text()
        return m.group(0)

    def response(self) -> Optional[harness.Response]:
        """The HTTP response that came through the TLS connection, if any."""
        at = self.out.find("HTTP/1.")
        if at < 0:
            return None
        buf = bytearray(self.out[at:].encode("latin-1"))
        raw = http11.take_head(buf)
        assert raw is not None, "incomplete HTTP head:\n" + self.text()
        head = http11.parse_head(raw)
        decoder = http11.BodyDecoder.for_response(head, "GET")
        decoder.feed(bytes(buf))
        return harness.Response(int(head.start[1]), head.start[2], head, bytes(decoder.body))


def s_client(port: int, *args: str, send: bytes = b"", timeout: float = 15.0) -> SClient:
    """`openssl s_client -connect 127.0.0.1:PORT ARGS` with `send` on its stdin. Without
    -ign_eof it ends the connection when stdin ends, which it reads only once the handshake
    is through; with it, it waits for the server to close."""
    argv = ["openssl", "s_client", "-connect", f"{LOOPBACK}:{port}", *args]
    result = subprocess.run(argv, input=send, capture_output=True, timeout=timeout)
    return SClient(result.returncode, result.stdout.decode("latin-1"),
                   result.stderr.decode("latin-1"))


def s_client_get(port: int, path: str, *args: str) -> SClient:
    """A GET with `Connection: close` through s_client; waits for wsgate to close."""
    request = build_request("GET", path, (("Connection", "close"),))
    return s_client(port, "-ign_eof", *args, send=request)


def certificate_names(pem: str) -> Tuple[str, str, str]:
    """(subject, subjectAltName, public key algorithm) of a PEM certificate."""
    result = subprocess.run(["openssl", "x509", "-noout", "-subject", "-text"],
                            input=pem.encode(), capture_output=True, timeout=10)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    subject = re.search(r"^subject=(.*)$", text, re.M).group(1).strip()
    san = re.search(r"X509v3 Subject Alternative Name:.*?\n\s*(.*)", text)
    algorithm = re.search(r"Public Key Algorithm: (\S+)", text).group(1)
    return subject, san.group(1).strip() if san else "", algorithm


# --- log --------------------------------------------------------------------------------------

ABOVE_INFO = re.compile(r"^\S+ (warn\w*|error|crit\w*|alert|emerg\w*|fatal)\b.*$", re.M)


def lines_above_info(text: str) -> List[str]:
    """wsgate's error-log lines (`TIME LEVEL MESSAGE`) above info."""
    return [m.group(0) for m in ABOVE_INFO.finditer(text)]


def stderr_since(gate, offset: int) -> str:
    return gate.stderr()[offset:]


# --- wss and https ----------------------------------------------------------------------------


def test_wss_echo_with_python_websockets_text_binary_and_70kb(start_wsgate, echo_backend, pki):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost])
    messages = ["hello over wss", os.urandom(1000), os.urandom(SEVENTY_KB),
                "t" * SEVENTY_KB]

    async def run():
        async with websockets.connect(f"wss://{LOOPBACK}:{gate.port}/ws",
                                      ssl=client_context(pki), server_hostname="localhost",
                                      max_size=None, compression=None, open_timeout=5,
                                      close_timeout=5, ping_interval=None) as ws:
            replies = []
            for message in messages:
                await ws.send(message)
                replies.append(await asyncio.wait_for(ws.recv(), 10))
            version = ws.transport.get_extra_info("ssl_object").version()
            return replies, ws.local_address[1], version

    replies, client_port, version = asyncio.run(run())
    assert replies == messages
    assert version == "TLSv1.3"
    record = gate.wait_access(lambda r: str(r["client"]).endswith(f":{client_port}"))[0]
    assert (record["kind"], record["status"]) == ("websocket", 101)
    assert record["messages_from_client"] == 4 and record["messages_to_client"] == 4
    assert (record["close_code"], record["close_by"]) == (1000, "client")


def test_https_get_through_openssl_s_client_reaches_the_backend_as_https(start_wsgate,
                                                                        echo_backend, pki):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost])
    run = s_client_get(gate.port, "/hello?x=1", "-CAfile", pki.ca, "-servername", "localhost",
                       "-verify_return_error", "-verify_hostname", "localhost")
    assert run.handshake_done(), run.text()
    assert "Verify return code: 0 (ok)" in run.out, run.text()
    response = run.response()
    assert response is not None, run.text()
    assert response.status == 200, run.text()
    seen = headers_seen(response)
    assert seen["x-forwarded-proto"] == ["https"], seen
    assert response.json()["path"] == "/hello?x=1"
    record = gate.wait_access(lambda r: r.get("path") == "/hello")[0]
    assert record["status"] == 200


def test_ktls_listener_serves_wss_whether_or_not_the_kernel_offers_it(start_wsgate,
                                                                     echo_backend, pki,
                                                                     tls_connect):
    # docs: where the kernel does not offer kTLS, wsgate quietly goes on in user space.
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost],
                      listener_tls={"ktls": True})
    log_start = len(gate.stderr())
    conn = tls_connect(gate.port, client_context(pki))
    harness.upgrade_and_echo(conn)
    big = os.urandom(SEVENTY_KB)
    conn.send_frame(BINARY, big)
    assert conn.recv_message() == (BINARY, big)
    conn.send_close(1000)
    assert conn.recv_message() == (wsproto.OP_CLOSE, wsproto.close_payload(1000))
    assert conn.is_closed_within(5)
    assert lines_above_info(stderr_since(gate, log_start)) == []


# --- certificates and SNI ---------------------------------------------------------------------

# (SNI sent, the subject expected, its subjectAltName); None: no SNI at all.
SNI_CASES = [
    ("a.test", "CN = a.test", "DNS:a.test"),
    ("A.Test", "CN = a.test", "DNS:a.test"),  # DNS names compare case-insensitively
    ("x.b.test", "CN = *.b.test", "DNS:*.b.test"),
    ("rsa.test", "CN = rsa.test", "DNS:rsa.test"),
    ("b.test", "CN = localhost", "DNS:localhost, IP Address:127.0.0.1"),  # * is one label
    ("y.x.b.test", "CN = localhost", "DNS:localhost, IP Address:127.0.0.1"),  # not two
    ("unknown.test", "CN = localhost", "DNS:localhost, IP Address:127.0.0.1"),
    (None, "CN = localhost", "DNS:localhost, IP Address:127.0.0.1"),
]


def test_sni_picks_the_certificate_and_unknown_or_no_name_gets_the_first(start_wsgate,
                                                                         echo_backend, pki):
    gate = start_gate(start_wsgate, echo_backend("echo1"),
                      [pki.localhost, pki.a_test, pki.wildcard_b, pki.rsa])
    wrong = []
    for sni, subject, san in SNI_CASES:
        name_args = ["-servername", sni] if sni else ["-noservername"]
        run = s_client(gate.port, "-CAfile", pki.ca, *name_args)
        assert run.handshake_done(), f"SNI {sni}: " + run.text()
        got = certificate_names(run.certificate())
        if got[:2] != (subject, san):
            wrong.append(f"SNI {sni!r}: got {got[:2]}, expected {(subject, san)}")
        elif sni == "rsa.test" and got[2] != "rsaEncryption":
            wrong.append(f"SNI rsa.test: key {got[2]}")
        assert "Verify return code: 0 (ok)" in run.out, f"SNI {sni}: " + run.text()
    assert wrong == []


# --- versions ---------------------------------------------------------------------------------


def refused_by_the_server(run: SClient) -> bool:
    """The handshake failed after the client sent its hello: the server ended it (with an
    alert or not), not the client's own settings ("no protocols available")."""
    written = re.search(r"SSL handshake has read \d+ bytes and written (\d+) bytes", run.out)
    return (not run.handshake_done() and written is not None and int(written.group(1)) > 0
            and "no protocols available" not in run.err and "no ciphers" not in run.err)


# The client offers TLS 1.1 only, and allows its old ciphers and SHA-1 signatures: the failure
# is the server's refusal, not the client's own.
TLS_1_1 = ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")


def test_tls_1_1_is_refused_and_1_2_and_1_3_are_served(start_wsgate, echo_backend, pki):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost])
    old = s_client(gate.port, *TLS_1_1, "-CAfile", pki.ca)
    assert refused_by_the_server(old), old.text()
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        run = s_client_get(gate.port, "/v", flag, "-CAfile", pki.ca, "-servername", "localhost")
        assert run.handshake_done() and run.protocol() == version, run.text()
        assert run.response() is not None and run.response().status == 200, run.text()
    assert gate.running()


def test_min_version_1_3_refuses_a_tls_1_2_client(start_wsgate, echo_backend, pki):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost],
                      listener_tls={"min_version": "1.3"})
    old = s_client(gate.port, "-tls1_2", "-CAfile", pki.ca)
    assert refused_by_the_server(old), old.text()
    run = s_client_get(gate.port, "/v", "-tls1_3", "-CAfile", pki.ca)
    assert run.handshake_done() and run.protocol() == "TLSv1.3", run.text()
    assert run.response().status == 200, run.text()


def no_options(pki):
    return {}


def min_1_3(pki):
    return {"min_version": "1.3"}


def client_cert_required(pki):
    return {"client_ca": pki.client_ca, "client_cert": "required"}


def cert_of_the_server_ca(pki):
    return ("-cert", pki.a_test.cert, "-key", pki.a_test.key)


# (id, listener tls keys, s_client arguments, the alert s_client must report), given the pki.
# What OpenSSL's own s_server sends in each case; RFC 8446 4.1.3 and 4.4.2.4 and RFC 5246
# 7.4.1.2 and 7.4.6 make them MUSTs (SHOULD for a missing certificate in TLS 1.2).
REFUSALS = [
    ("tls1.1", no_options, lambda pki: TLS_1_1, "alert protocol version"),
    ("tls1.2-below-min-1.3", min_1_3, lambda pki: ("-tls1_2",), "alert protocol version"),
    ("no-client-cert-tls1.2", client_cert_required, lambda pki: ("-tls1_2",),
     "alert handshake failure"),
    ("no-client-cert-tls1.3", client_cert_required, lambda pki: ("-tls1_3",),
     "alert certificate required"),
    ("client-cert-of-another-ca", client_cert_required, cert_of_the_server_ca,
     "alert unknown ca"),
]


@pytest.mark.parametrize("listener,args,alert", [c[1:] for c in REFUSALS],
                         ids=[c[0] for c in REFUSALS])
def test_a_refused_handshake_gets_the_alert_that_says_why(start_wsgate, echo_backend, pki,
                                                          listener, args, alert):
    # A client told "protocol version" or "certificate required" knows what to change; one
    # whose connection just ends ("unexpected eof") suspects the network or a crash.
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost],
                      listener_tls=listener(pki))
    args = args(pki)
    # A request with -ign_eof: with TLS 1.3 a client certificate is judged after the client
    # has finished its handshake, and the alert comes when the client reads.
    run = s_client_get(gate.port, "/refused", *args, "-CAfile", pki.ca)
    assert run.response() is None, run.text()
    assert alert in run.err, run.text()


# --- ALPN -------------------------------------------------------------------------------------


def test_alpn_selects_http_1_1_and_a_client_offering_only_h2_goes_on_without_alpn(
        start_wsgate, echo_backend, pki):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost])
    both = s_client_get(gate.port, "/alpn", "-alpn", "h2,http/1.1", "-CAfile", pki.ca)
    assert both.handshake_done(), both.text()
    assert both.alpn() == "http/1.1", both.text()
    assert both.response().status == 200, both.text()
    # No protocol in common: wsgate does not send no_application_protocol (as nginx does
    # not); the handshake completes without ALPN and the client may speak HTTP/1.1.
    h2 = s_client_get(gate.port, "/alpn", "-alpn", "h2", "-CAfile", pki.ca)
    assert h2.handshake_done(), h2.text()
    assert h2.alpn() is None, h2.text()
    assert h2.response().status == 200, h2.text()


# --- clients that do not speak TLS ------------------------------------------------------------

NOT_TLS = [
    ("plain-http", build_request("GET", "/plain")),
    ("text-garbage", b"garbage\r\n" * 100),
    ("binary-garbage", bytes(range(256)) * 4),
    ("handshake-record-of-junk", b"\x16\x03\x01\x00\x10" + b"\xff" * 16),
]


def test_plain_http_and_garbage_on_the_tls_port_are_closed_quietly_and_nothing_else_suffers(
        start_wsgate, echo_backend, pki, connect, tls_connect):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost])  # handshake 5s
    wss = tls_connect(gate.port, client_context(pki))
    harness.upgrade_and_echo(wss)
    log_start = len(gate.stderr())
    for name, data in NOT_TLS:
        conn = connect(gate.port)
        sent_at = time.monotonic()
        conn.send(data)
        got = b""
        try:
            got = conn.read_until_eof(timeout=3)
        except TimeoutError:
            pytest.fail(f"{name}: wsgate kept the connection open 3s (timeouts.handshake is 5s)")
        elapsed = time.monotonic() - sent_at
        assert elapsed < 2.0, f"{name}: closed after {elapsed:.2f}s"
        assert b"HTTP/" not in got, f"{name}: an HTTP answer in plaintext: {got[:200]!r}"
        # At most a TLS alert record (content type 21) came back.
        assert got == b"" or got[:1] == b"\x15", f"{name}: {got[:64]!r}"
        wss.send_frame(TEXT, name.encode())  # the wss session still works, in between
        assert wss.recv_message() == (TEXT, name.encode())
    big = os.urandom(SEVENTY_KB)
    wss.send_frame(BINARY, big)
    assert wss.recv_message() == (BINARY, big)
    assert gate.running()
    assert lines_above_info(stderr_since(gate, log_start)) == []


# --- the handshake timeout --------------------------------------------------------------------


def client_hello() -> bytes:
    """A real ClientHello, as python's ssl writes it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
    return hello


@pytest.mark.parametrize("stall", ["nothing", "half-a-client-hello", "client-hello-only",
                                   "handshake-done-no-request"])
def test_a_stalled_handshake_is_closed_at_timeouts_handshake(start_wsgate, echo_backend, pki,
                                                             connect, stall):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost],
                      timeouts={"handshake": "1s"})
    log_start = len(gate.stderr())
    started = time.monotonic()
    if stall == "handshake-done-no-request":
        conn = TlsConn.open(gate.port, context=client_context(pki))
    else:
        conn = connect(gate.port)
        if stall == "half-a-client-hello":
            hello = client_hello()
            conn.send(hello[:len(hello) // 2])
        elif stall == "client-hello-only":
            conn.send(client_hello())  # and never an answer to the server's flight
    try:
        assert conn.is_closed_within(5), "wsgate kept the stalled connection 5s"
        elapsed = time.monotonic() - started
        assert 0.8 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s with timeouts.handshake 1s"
        if isinstance(conn, TlsConn):
            assert conn.buf == bytearray() and conn.tls_error is None
    finally:
        conn.close()
    assert gate.running()
    assert lines_above_info(stderr_since(gate, log_start)) == []


# --- session resumption -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_sessions_resume_on_either_worker(start_wsgate, echo_backend, pki, tmp_path, version):
    # Tickets are sealed with keys shared by the whole process: a session from one worker
    # resumes on the other. SO_REUSEPORT spreads connections over both by their source port;
    # connect until both workers served a few (each served connection is logged with its
    # session id, and worker = (session - 1) % workers).
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost], workers=2)
    session_file = str(tmp_path / "session.pem")
    first = s_client_get(gate.port, "/first", version, "-CAfile", pki.ca, "-sess_out",
                         session_file)
    assert first.handshake_done() and not first.reused(), first.text()
    assert first.response().status == 200, first.text()
    served_by = {0: 0, 1: 0}
    not_reused = []
    for i in range(40):
        run = s_client_get(gate.port, f"/again/{i}", version, "-CAfile", pki.ca, "-sess_in",
                           session_file)
        assert run.handshake_done(), run.text()
        assert run.response().status == 200, run.text()
        if not run.reused():
            not_reused.append(run.text())
        record = gate.wait_access(lambda r, i=i: r.get("path") == f"/again/{i}")[0]
        served_by[(record["session"] - 1) % 2] += 1
        if i >= 5 and min(served_by.values()) >= 2:
            break
    assert min(served_by.values()) >= 2, f"connections per worker: {served_by}"
    assert not_reused == [], (f"{len(not_reused)} of {sum(served_by.values())} connections "
                              f"not resumed (per worker {served_by}); first:\n{not_reused[0]}")


# --- TLS to backends --------------------------------------------------------------------------


def test_pool_tls_verified_by_ca_and_sni_carries_ws_wss_and_http(start_wsgate,
                                                                 tls_echo_backend, pki,
                                                                 connect, tls_connect):
    backend = tls_echo_backend("secure1", pki.backend)
    gate = start_gate(start_wsgate, backend, [pki.localhost], plain_listener=True,
                      pool_tls={"ca": pki.ca, "sni": "backend.test"})
    plain = connect(gate.ports["public"])
    response = plain.request("GET", "/plain-to-tls")
    assert response.status == 200, response.body
    assert response.json()["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert headers_seen(response)["x-forwarded-proto"] == ["http"]
    ws = connect(gate.ports["public"])
    harness.upgrade_and_echo(ws, "/ws-to-wss")
    big = os.urandom(SEVENTY_KB)
    ws.send_frame(BINARY, big)
    assert ws.recv_message() == (BINARY, big)
    wss = tls_connect(gate.ports["secure"], client_context(pki))
    harness.upgrade_and_echo(wss, "/wss-to-wss")
    wss.send_frame(BINARY, big)
    assert wss.recv_message() == (BINARY, big)
    https = tls_connect(gate.ports["secure"], client_context(pki))
    response = https.request("GET", "/https-to-tls")
    assert response.status == 200, response.body
    assert headers_seen(response)["x-forwarded-proto"] == ["https"]


def backend_tls_refused(gate, connect, why: str) -> None:
    """A GET and an upgrade both get wsgate's 502, and its log says `why`."""
    assert_error_response(connect(gate.ports["public"]).request("GET", "/refused"), 502)
    assert_error_response(connect(gate.ports["public"]).upgrade("/refused-ws"), 502)
    wait_for(lambda: re.search(r"backend TLS failed: .*" + why, gate.stderr(), re.I), 5,
             f"wsgate's log to say {why!r}")


def test_pool_tls_with_the_wrong_ca_gives_502_and_logs_certificate_verify_failed(
        start_wsgate, tls_echo_backend, pki, connect):
    backend = tls_echo_backend("secure1", pki.backend)
    gate = start_gate(start_wsgate, backend, [pki.localhost], plain_listener=True,
                      pool_tls={"ca": pki.wrong_ca, "sni": "backend.test"})
    backend_tls_refused(gate, connect, "certificate verify failed")
    assert backend.requests_logged() == 0


def test_pool_tls_with_a_name_the_certificate_does_not_hold_gives_502_hostname_mismatch(
        start_wsgate, tls_echo_backend, pki, connect):
    backend = tls_echo_backend("secure1", pki.backend)
    gate = start_gate(start_wsgate, backend, [pki.localhost], plain_listener=True,
                      pool_tls={"ca": pki.ca, "sni": "other.test"})
    backend_tls_refused(gate, connect, "hostname mismatch")
    assert backend.requests_logged() == 0


def test_pool_tls_client_certificate_is_presented_to_a_backend_that_requires_one(
        start_wsgate, tls_echo_backend, pki, connect):
    backend = tls_echo_backend("mtls1", pki.backend, client_ca=pki.client_ca)
    gate = start_gate(start_wsgate, backend, [pki.localhost], plain_listener=True,
                      pool_tls={"ca": pki.ca, "sni": "backend.test", "cert": pki.client.cert,
                                "key": pki.client.key})
    conn = connect(gate.ports["public"])
    response = conn.request("GET", "/mtls")
    assert response.status == 200, response.body
    assert response.json()["tls"]["client_subject"] == "commonName=wsgate-test-client"
    harness.upgrade_and_echo(connect(gate.ports["public"]), "/mtls-ws")


def test_each_websocket_to_a_tls_backend_resumes_the_workers_last_session(
        start_wsgate, tls_echo_backend, pki, connect):
    # docs/architecture.md: each worker keeps one resumable session per TLS backend, so the
    # backend connection every WebSocket opens is a resumed handshake.
    backend = tls_echo_backend("secure1", pki.backend)
    gate = start_gate(start_wsgate, backend, [pki.localhost], plain_listener=True,
                      pool_tls={"ca": pki.ca, "sni": "backend.test"})
    for i in range(4):
        conn = connect(gate.ports["public"])
        harness.upgrade_and_echo(conn, f"/ws/{i}")
        conn.send_close(1000)
        assert conn.recv_message() == (wsproto.OP_CLOSE, wsproto.close_payload(1000))
        assert conn.is_closed_within(5)
    wait_for(lambda: backend.requests_logged() == 4, 5, "the backend to log 4 sessions")
    resumed = re.findall(r"websocket (/ws/\d) closed .* resumed=(yes|no)$", backend.stderr(),
                         re.M)
    assert resumed == [("/ws/0", "no"), ("/ws/1", "yes"), ("/ws/2", "yes"), ("/ws/3", "yes")]


# --- client certificates on a listener --------------------------------------------------------


def assert_refused(port: int, context: ssl.SSLContext) -> None:
    """Connects with `context` and sends a GET: the handshake fails, or (TLS 1.3, where the
    server judges the client's certificate after the client has finished) the connection ends
    without any HTTP answer. Which alert, if any, is test_a_refused_handshake_gets_the_alert_
    that_says_why's business."""
    try:
        conn = TlsConn.open(port, context=context)
    except (ssl.SSLError, ConnectionError, harness.ConnectionClosed):
        return
    try:
        try:
            conn.send(build_request("GET", "/refused"))
        except (BrokenPipeError, ConnectionResetError):
            return
        got = conn.read_until_eof(timeout=5)
        assert b"HTTP/" not in got, f"served without a valid certificate: {got[:200]!r}"
    finally:
        conn.close()


def served(port: int, context: ssl.SSLContext) -> harness.Response:
    conn = TlsConn.open(port, context=context)
    try:
        return conn.request("GET", "/with-cert")
    finally:
        conn.close()


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_client_cert_required_serves_a_client_signed_by_client_ca_only(start_wsgate,
                                                                       echo_backend, pki,
                                                                       maximum):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost],
                      listener_tls={"client_ca": pki.client_ca, "client_cert": "required"})
    log_start = len(gate.stderr())
    with_cert = client_context(pki, cert=pki.client.cert, key=pki.client.key, maximum=maximum)
    assert served(gate.port, with_cert).status == 200
    assert_refused(gate.port, client_context(pki, maximum=maximum))
    # A certificate, but not from client_ca (the server CA signed it).
    other = client_context(pki, cert=pki.a_test.cert, key=pki.a_test.key, maximum=maximum)
    assert_refused(gate.port, other)
    assert served(gate.port, with_cert).status == 200
    assert lines_above_info(stderr_since(gate, log_start)) == []


def test_client_cert_optional_serves_clients_with_and_without_one(start_wsgate, echo_backend,
                                                                  pki):
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost],
                      listener_tls={"client_ca": pki.client_ca, "client_cert": "optional"})
    with_cert = client_context(pki, cert=pki.client.cert, key=pki.client.key)
    assert served(gate.port, with_cert).status == 200
    assert served(gate.port, client_context(pki)).status == 200
    # optional still verifies a certificate that is sent.
    other = client_context(pki, cert=pki.a_test.cert, key=pki.a_test.key)
    assert_refused(gate.port, other)


def test_the_verified_client_subject_reaches_the_backend_and_a_forged_one_does_not(
        start_wsgate, echo_backend, pki):
    # docs/operations.md: X-Forwarded-Client-Cert carries the subject wsgate verified; one a
    # client sends is dropped, with a certificate or without.
    gate = start_gate(start_wsgate, echo_backend("echo1"), [pki.localhost],
                      listener_tls={"client_ca": pki.client_ca, "client_cert": "optional"})
    forged = (("X-Forwarded-Client-Cert", 'Subject="CN=admin"'),)
    for context, expect in ((client_context(pki, cert=pki.client.cert, key=pki.client.key),
                             ['Subject="CN=wsgate-test-client"']),
                            (client_context(pki), None)):
        conn = TlsConn.open(gate.port, context=context)
        try:
            conn.send(build_request("GET", "/who", forged))
            seen = headers_seen(conn.read_response())
        finally:
            conn.close()
        assert seen.get("x-forwarded-client-cert") == expect, seen


@pytest.mark.parametrize("trusted", [True, False], ids=["right-ca", "wrong-ca"])
def test_health_probes_of_a_tls_pool_speak_tls(start_wsgate, tls_echo_backend, pki, trusted):
    # docs/operations.md: probes use the pool's TLS (CA, name): a backend that verifies stays
    # up and sees the probes; one that does not is taken out, with the reason.
    backend = tls_echo_backend("secure1", pki.backend)
    app = pool(backend)
    app["tls"] = {"ca": pki.ca if trusted else pki.wrong_ca, "sni": "backend.test"}
    app["health"] = {"path": "/health", "interval": "100ms", "timeout": "80ms", "rise": 1,
                     "fall": 2}
    gate = start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": app}))
    if trusted:
        wait_for(lambda: backend.requests_logged() >= 3, 5, "three probes over TLS")
        assert "down after" not in gate.stderr()
    else:
        gate.wait_line(r"\[health b=app/secure1\] down after 2 failed probes: TLS: "
                       r"certificate verify failed", timeout=5)
        assert backend.requests_logged() == 0


# --- metrics ----------------------------------------------------------------------------------


def test_tls_handshakes_and_each_failure_reason_are_counted_by_listener(start_wsgate,
                                                                        echo_backend, pki,
                                                                        connect):
    """wsgate_tls_handshakes_total and _failures_total{reason}: one served s_client, one
    TLS 1.1 client (protocol), plain HTTP on the TLS port (plain_http), a client that closes
    mid-handshake (closed) and one that stalls until timeouts.handshake (timeout)."""
    listeners = [tls_listener([pki.localhost]), {"name": "public", "listen": f"{LOOPBACK}:0"}]
    cfg = gateway_config([route("app", path_prefix="/")], {"app": pool(echo_backend("echo1"))},
                         listeners=listeners, timeouts={"handshake": "1s"}, workers=2)
    cfg["admin"] = {"listen": f"{LOOPBACK}:0"}
    gate = start_wsgate(cfg)
    port = gate.ports["secure"]
    admin_port = harness.admin_port(gate)

    served = s_client_get(port, "/v", "-CAfile", pki.ca, "-servername", "localhost")
    assert served.handshake_done(), served.text()
    assert refused_by_the_server(s_client(port, *TLS_1_1, "-CAfile", pki.ca))
    plain = connect(port)
    plain.send(build_request("GET", "/"))
    plain.read_until_eof(timeout=3)
    half = connect(port)
    half.send(client_hello()[:20])  # part of a record, then gone
    half.close()
    stalled = connect(port)
    stalled.read_until_eof(timeout=4)  # closed at timeouts.handshake: nothing ever sent

    def series():
        status, body = harness.admin_request(admin_port, "GET", "/metrics")
        assert status == 200
        return {k: float(v) for k, v in re.findall(r"^(wsgate_tls\S+) (\S+)$", body, re.M)}

    expected = {
        'wsgate_tls_handshakes_total{listener="secure"}': 1,
        'wsgate_tls_handshake_failures_total{listener="secure",reason="protocol"}': 1,
        'wsgate_tls_handshake_failures_total{listener="secure",reason="plain_http"}': 1,
        'wsgate_tls_handshake_failures_total{listener="secure",reason="closed"}': 1,
        'wsgate_tls_handshake_failures_total{listener="secure",reason="timeout"}': 1,
        'wsgate_tls_handshake_failures_total{listener="secure",reason="certificate"}': 0,
        'wsgate_tls_handshake_failures_total{listener="secure",reason="sni"}': 0,
        'wsgate_tls_handshake_failures_total{listener="secure",reason="other"}': 0,
    }
    wait_for(lambda: {k: series().get(k) for k in expected} == expected, timeout=5.0,
             what=f"the TLS counters to read {expected}; last {series()}")
    # A plain listener has no TLS series.
    assert not [k for k in series() if 'listener="public"' in k]
