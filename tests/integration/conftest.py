"""Fixtures: factories that start wsgate and backends and always clean them up.

Every factory registers what it started; teardown stops processes, threads and
sockets even when the test failed, and prints the logs (pytest shows them for
failing tests only). A wsgate that died during the test fails it, and so does a
backend that went wrong: a fake backend whose script raised (or hung past its
stop), an echo backend that raised an unhandled exception or exited early. The
failure comes after all cleanup, so nothing is left running.
"""

import os

import pytest

import harness


@pytest.fixture(scope="session")
def wsgate_bin():
    path = harness.wsgate_binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"wsgate binary not found at {path}; set WSGATE_BIN", pytrace=False)
    return path


@pytest.fixture
def start_wsgate(wsgate_bin, tmp_path):
    """start_wsgate(config) -> a running Wsgate (config is a dict or YAML text)."""
    started = []

    def start(config, label="wsgate", **kwargs):
        gate = harness.Wsgate(wsgate_bin, tmp_path, label=f"{label}{len(started) or ''}")
        started.append(gate)
        return gate.start(config, **kwargs)

    yield start
    crashed = []
    for gate in started:
        if gate.ports and not gate.running() and not gate.stopped_by_us:
            crashed.append(f"{gate.label} exited with {gate.proc.returncode} during the test")
        gate.stop()
        print(gate.report())
        # ASan and UBSan (make asan): a leak is reported only at exit, after the test.
        sanitized = gate.sanitizer_report()
        if sanitized:
            crashed.append(f"{gate.label}: sanitizer report:\n{sanitized}")
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)


@pytest.fixture
def echo_backend(tmp_path):
    """echo_backend(name) -> a running echo_backend.py subprocess."""
    started = []

    def start(name="echo1"):
        backend = harness.EchoBackend(name, tmp_path)
        started.append(backend)
        return backend.start()

    yield start
    failures = []
    for backend in started:
        backend.stop()
        print(backend.report())
        failures.append(backend.failure())
    _fail_if(failures)


@pytest.fixture
def websockets_echo():
    """A running harness.WebsocketsEchoServer (python3-websockets, deflate when offered)."""
    server = harness.WebsocketsEchoServer()
    yield server
    server.stop()
    if server.errors:
        pytest.fail("the websockets echo's sessions failed:\n" + "\n".join(server.errors),
                    pytrace=False)


@pytest.fixture
def fake_backend():
    """fake_backend(script, name) -> a FakeBackend running `script` per connection."""
    started = []

    def start(script, name="fake"):
        backend = harness.FakeBackend(script, name)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()
    _fail_if([backend.failure() for backend in started])


def _fail_if(failures):
    """Fails the test (at teardown) with every backend failure, if there is one."""
    failures = [f for f in failures if f]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def refused_address():
    """refused_address() -> "127.0.0.1:PORT" where connections are refused."""
    sockets = []

    def reserve():
        sock, port = harness.refused_port()
        sockets.append(sock)
        return f"{harness.LOOPBACK}:{port}"

    yield reserve
    for sock in sockets:
        sock.close()


@pytest.fixture
def connect():
    """connect(port, **kw) -> a client Conn, closed at teardown."""
    conns = []

    def open_conn(port, **kwargs):
        conn = harness.Conn.open(port, **kwargs)
        conns.append(conn)
        return conn

    yield open_conn
    for conn in conns:
        conn.close()
