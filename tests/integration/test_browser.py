"""A real browser through wsgate: headless Chromium (Debian's `chromium`) loads a page wsgate
proxies from an HTTP backend, opens WebSockets through the same wsgate with its own masking,
framing and permessage-deflate offer, over ws:// and over wss:// (wsgate's TLS listener,
its certificate pinned in Chromium by public key), echoes text and binary, gets 1009 for an
oversize message and 1012 on both kinds of session when the test drains the backend. The
page writes its results into the DOM; the test reads them over the DevTools protocol.

The last test puts a plain TCP forwarder in wsgate's place: the 4 KiB message comes back
echoed instead of closing with 1009, so the page never opens its second session and the
first test's 1009 and 1012 checks would fail: they tell a WebSocket-aware proxy apart."""

import asyncio
import base64
import hashlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import websockets

import harness
import tls_certs
from harness import admin_request, gateway_config, pool, route, wait_for

PAGE_DIR = Path(__file__).resolve().parent / "browser"


class PageServer:
    """The HTTP backend that serves page.html (a thread of the test)."""

    def __init__(self):
        handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(PAGE_DIR), **k)
        self.httpd = HTTPServer(("127.0.0.1", 0), handler)
        self.httpd.RequestHandlerClass.log_message = lambda *a: None
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Chromium:
    """Headless Chromium on a URL, with the DevTools protocol on a port it picks."""

    def __init__(self, url: str, tmp_path: Path, trust_spki: str):
        binary = shutil.which("chromium")
        assert binary, "chromium is missing: run packaging/install-deps.sh"
        self.stderr_path = tmp_path / "chromium.stderr"
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-port=0",
             # Trusts the test certificate's key and nothing else: certificate errors
             # stay errors for any other key.
             f"--ignore-certificate-errors-spki-list={trust_spki}", url],
            stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("wb"))
        match = wait_for(lambda: re.search(r"DevTools listening on (ws://\S+)",
                                           self.stderr_path.read_text(errors="replace")),
                         timeout=30, what="chromium's DevTools address")
        browser = match.group(1)
        self.http = browser.split("/devtools/")[0].replace("ws://", "http://")

    def page_socket(self) -> str:
        with urllib.request.urlopen(self.http + "/json/list", timeout=5) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        return pages[0]["webSocketDebuggerUrl"]

    def results(self) -> dict:
        async def evaluate():
            async with websockets.connect(self.page_socket(), max_size=None) as cdp:
                await cdp.send(json.dumps({"id": 1, "method": "Runtime.evaluate", "params": {
                    "expression": "document.getElementById('out').textContent"}}))
                while True:
                    answer = json.loads(await cdp.recv())
                    if answer.get("id") == 1:
                        return json.loads(answer["result"]["result"].get("value") or "{}")
        return asyncio.run(evaluate())

    def close(self):
        self.proc.kill()
        self.proc.wait(10)


def spki_sha256(cert: str) -> str:
    """Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's
    --ignore-certificate-errors-spki-list takes it."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_chromium_echoes_over_ws_and_wss_and_sees_1009_and_1012_through_wsgate(
        start_wsgate, echo_backend, tmp_path, tmp_path_factory):
    pki = tls_certs.session_pki(tmp_path_factory)
    page = PageServer()
    echo = echo_backend("e1")
    listeners = [{"name": "public", "listen": "127.0.0.1:0"},
                 {"name": "secure", "listen": "127.0.0.1:0",
                  "tls": {"certificates": [pki.localhost.listener_entry()]}}]
    cfg = gateway_config([route("web", path_prefix="/page"), route("echo", path_prefix="/")],
                         {"web": pool(("w1", page.address)), "echo": pool(echo)},
                         listeners=listeners, limits={"max_message_bytes": 1024},
                         timeouts={"drain": "10s", "drain_spread": "0s"})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    admin = harness.admin_port(gate)
    browser = Chromium(f"http://127.0.0.1:{gate.ports['public']}/page.html"
                       f"?wss={gate.ports['secure']}", tmp_path,
                       trust_spki=spki_sha256(pki.localhost.cert))
    try:
        got = wait_for(lambda: (r := browser.results()).get("readyTls") and r, timeout=30,
                       what="the page's echoes, its 1009, its second and its wss session")
        assert got["text"] == "hello from chromium"
        assert got["binary"] == [0, 1, 2, 253, 254, 255]
        assert got["close1"] == 1009, got
        assert got["second"] == "still here"
        assert got["tlsText"] == "hello over tls"
        assert got["tlsBinary"] == [9, 8, 7, 0, 255]

        assert admin_request(admin, "POST", "/pools/echo/backends/e1/drain")[0] == 200
        got = wait_for(lambda: (r := browser.results()).get("close2")
                       and r.get("closeTls") and r, timeout=15,
                       what="the ws and wss sessions' closes after the drain")
        assert (got["close2"], got["closeTls"]) == (1012, 1012), got
    finally:
        browser.close()
        page.close()
    # The page and the three sessions went through wsgate, with Chromium's own handshakes,
    # the last through the TLS listener.
    sessions = gate.wait_access(lambda r: r.get("kind") == "websocket", count=3)
    assert sorted((r["listener"], r["close_code"]) for r in sessions) == [
        ("public", 1009), ("public", 1012), ("secure", 1012)], sessions


class TcpForwarder:
    """A plain TCP forwarder (a thread of the test): every connection is spliced byte for
    byte to `target` (host, port), whatever it carries."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(0.2)
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:  # closed by close()
                return
            upstream = socket.create_connection(self.target, timeout=5)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.stopping.set()
        self.listener.close()


def test_the_page_tells_wsgate_from_a_plain_tcp_forwarder(echo_backend, tmp_path,
                                                          tmp_path_factory):
    """The same page through a TCP forwarder to a backend that serves both the page and the
    echo: the oversize message is echoed back (nothing enforces max_message_bytes), so there
    is no 1009 and no second session, and the first test's checks fail as they must."""
    pki = tls_certs.session_pki(tmp_path_factory)
    page = PageServer()
    echo = echo_backend("e1")
    forwarder = TcpForwarder(("127.0.0.1", echo.port))
    page_forwarder = TcpForwarder(("127.0.0.1", int(page.address.split(":")[1])))
    # The page through one forwarder, its WebSockets (?ws=) through another to the echo.
    browser = Chromium(f"http://127.0.0.1:{page_forwarder.port}/page.html?ws={forwarder.port}",
                       tmp_path, trust_spki=spki_sha256(pki.localhost.cert))
    try:
        got = wait_for(lambda: (r := browser.results()).get("oversizeEchoed") and r,
                       timeout=30, what="the oversize message echoed through the forwarder")
        assert got["oversizeEchoed"] == 4096
        assert "close1" not in got and "ready2" not in got, got
    finally:
        browser.close()
        forwarder.close()
        page_forwarder.close()
        page.close()
