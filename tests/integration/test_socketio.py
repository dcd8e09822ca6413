"""socket.io through wsgate: two socket.io servers (Node.js, npm packages socket.io and
socket.io-client, pinned in tests/integration/socketio/package-lock.json) behind one pool.

A socket.io client starts with HTTP long-polling: a handshake GET creates the session on one
server, then POSTs and long-poll GETs carry its sid, then a WebSocket upgrade with the same sid.
Each server knows only the sessions it created and answers any other sid with 400 "Session ID
unknown", so every request of a session has to reach the server that made it. Cookie
stickiness (`sticky: { cookie: { name: WSGATE, insert: true } }`) does that: wsgate sets the
cookie on the first answer and the client's cookie jar sends it with every later request and
with the upgrade. Without it round robin spreads the session's requests, which use more than one
client connection (the long-poll GET and the POST run at once), over both servers and the
session fails. Both outcomes are asserted.

The npm packages are installed on first use (`npm ci` into tests/integration/socketio/
node_modules, under a file lock). Node.js and npm are test dependencies
(packaging/install-deps.sh installs them): without them the tests fail, naming what is missing.
A socket.io server that dies during a test, or exits non-zero when stopped, fails the test too.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import pytest

import harness

SOCKETIO_DIR = harness.SOURCE_DIR / "tests" / "integration" / "socketio"
SERVER_JS = SOCKETIO_DIR / "server.js"
CLIENT_JS = SOCKETIO_DIR / "client.js"
MESSAGES = 5
CLIENTS = 4
CLIENT_DEADLINE_MS = 10_000
STICKY = {"cookie": {"name": "WSGATE", "insert": True}}


# --- Node.js and the npm packages ---------------------------------------------------------


def _packages_resolve(node: str) -> bool:
    """Whether node, run in the socketio folder, finds both packages."""
    probe = subprocess.run(
        [node, "-e", "require.resolve('socket.io'); require.resolve('socket.io-client')"],
        cwd=SOCKETIO_DIR, capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def node():
    """The node binary, with socket.io and socket.io-client installed from package-lock.json
    (`npm ci` when node_modules lacks them; a file lock keeps concurrent sessions apart)."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None:
        missing = "neither 'node' nor 'npm' is" if npm_bin is None else "'node' is not"
        pytest.fail(f"the socket.io tests need Node.js and npm, and {missing} on PATH: run "
                    "packaging/install-deps.sh (Debian packages nodejs and npm)", pytrace=False)
    lock_name = "wsgate-socketio-npm-" + hashlib.sha1(str(SOCKETIO_DIR).encode()).hexdigest()[:12]
    with open(os.path.join(tempfile.gettempdir(), lock_name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _packages_resolve(node_bin):
            if npm_bin is None:
                pytest.fail(f"{SOCKETIO_DIR}/node_modules lacks socket.io and 'npm' is not on "
                            "PATH to install it: run packaging/install-deps.sh", pytrace=False)
            install = subprocess.run(
                [npm_bin, "ci", "--no-audit", "--no-fund", "--prefix", str(SOCKETIO_DIR)],
                capture_output=True, text=True, timeout=300)
            if install.returncode != 0 or not _packages_resolve(node_bin):
                pytest.fail(f"npm ci in {SOCKETIO_DIR} failed ({install.returncode}):\n"
                            f"{install.stdout[-3000:]}\n{install.stderr[-3000:]}", pytrace=False)
    return node_bin


class SocketIoServer(harness._Process):
    """socketio/server.js on an ephemeral loopback port; answers carry its name."""

    def __init__(self, node_bin: str, name: str, workdir):
        super().__init__(f"socketio-{name}", workdir)
        self.node_bin = node_bin
        self.name = name
        self.port = 0

    def start(self, timeout: float = 15.0) -> "SocketIoServer":
        self._spawn([self.node_bin, str(SERVER_JS), "0", self.name])
        self.port = int(self.wait_line(r"^listening (\d+)$", stream="stdout",
                                       timeout=timeout).group(1))
        return self

    @property
    def address(self) -> str:
        return f"{harness.LOOPBACK}:{self.port}"

    def unknown_sessions(self) -> int:
        """Requests this server refused for a sid it did not create ("Session ID unknown")."""
        return self.stderr().count('message="Session ID unknown"')


@pytest.fixture
def servers(node, tmp_path):
    """The two socket.io servers s1 and s2."""
    started = [SocketIoServer(node, name, tmp_path) for name in ("s1", "s2")]
    try:
        for server in started:
            server.start()
        yield started
    finally:
        failed = []
        for server in started:
            died = server.proc is not None and not server.running()
            code = server.stop()
            print(server.report())
            if died or code not in (0, None):
                failed.append(f"{server.label} {'died during the test' if died else 'stopped'}"
                              f" with exit code {code}")
        if failed:
            pytest.fail("; ".join(failed), pytrace=False)


def run_client(node_bin: str, port: int) -> dict:
    """client.js through wsgate: its JSON result, plus its exit code and stderr."""
    done = subprocess.run(
        [node_bin, str(CLIENT_JS), f"http://{harness.LOOPBACK}:{port}",
         "--messages", str(MESSAGES), "--deadline", str(CLIENT_DEADLINE_MS)],
        capture_output=True, text=True, timeout=CLIENT_DEADLINE_MS / 1000 + 10)
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    assert lines, f"client.js printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    result = json.loads(lines[-1])
    result["exit_code"] = done.returncode
    result["stderr"] = done.stderr[-2000:]
    return result


def start_gate(start_wsgate, backends, sticky=None):
    pool = harness.pool(*backends)
    if sticky is not None:
        pool["sticky"] = sticky
    return start_wsgate(harness.gateway_config([harness.route("app", path_prefix="/")],
                                               {"app": pool}))


def assert_worked(result: dict) -> None:
    """Polling first, upgraded to WebSocket, every message acked, one server throughout."""
    assert result["exit_code"] == 0 and result["ok"], result
    assert result["first_transport"] == "polling", result
    assert result["hello"]["transport"] == "polling", result
    assert result["upgraded"] and result["transport"] == "websocket", result
    assert result["messages"] == {"sent": MESSAGES, "acked": MESSAGES}, result
    assert len(result["servers"]) == 1 and result["servers"][0] == result["hello"]["server"], result
    assert result["errors"] == [], result


# --- tests -----------------------------------------------------------------------------


def test_one_server_needs_no_stickiness(node, servers, start_wsgate):
    """The control: with a single server behind wsgate every request of a session reaches
    the server that made it, so socket.io works without stickiness. When this fails, wsgate
    breaks socket.io's polling or upgrade itself, not the balancing."""
    gate = start_gate(start_wsgate, servers[:1])
    assert_worked(run_client(node, gate.port))


def test_cookie_stickiness_keeps_a_socketio_session_on_one_of_two_servers(
        node, servers, start_wsgate):
    gate = start_gate(start_wsgate, servers, sticky=STICKY)
    results = [run_client(node, gate.port) for _ in range(CLIENTS)]
    for result in results:
        assert_worked(result)
        assert "WSGATE" in result["cookies"], result
    # Only a session's first request (no cookie yet) is balanced: round robin gives
    # consecutive sessions different servers, so both did serve sessions.
    assert sorted({r["servers"][0] for r in results}) == ["s1", "s2"], results
    assert sum(s.unknown_sessions() for s in servers) == 0


def test_without_stickiness_round_robin_breaks_a_socketio_session(node, servers, start_wsgate):
    gate = start_gate(start_wsgate, servers)
    results = [run_client(node, gate.port) for _ in range(CLIENTS)]
    for result in results:
        assert result["exit_code"] == 1 and not result["ok"], result
        symptoms = " ".join(result["errors"])
        # A request of the session reached the other server: the polling POST/GET or the
        # upgrade answered 400 "Session ID unknown" (or answers came from both servers).
        assert ("Session ID unknown" in symptoms or "status 400" in symptoms
                or "upgrade failed" in symptoms or len(result["servers"]) > 1), result
    # The servers saw it from their side too, and wsgate relayed their 400s.
    assert sum(s.unknown_sessions() for s in servers) >= CLIENTS
    refused = gate.wait_access(lambda r: r.get("status") == 400, count=CLIENTS)
    assert {r["backend"] for r in refused} <= {"app/s1", "app/s2"}
