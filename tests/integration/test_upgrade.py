"""Process-level operations: a binary upgrade on SIGUSR2 hands the listening sockets to a new
process without refusing a connection; sockets from systemd (LISTEN_FDS) are served; a second
wsgate cannot silently join a running one's port; signals wsgate does not act on are ignored
with a log line instead of killing every session."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import wsproto
from harness import Conn, Deadline, gateway_config, pool, route, wait_for
from test_operations import close_websocket, open_websocket


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_quietly(pid):
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


class ConnectLoop:
    """Opens, uses and closes plain HTTP connections in a loop until stopped; counts failures."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.is_set():
            try:
                conn = Conn.open(self.port, timeout=5.0)
                response = conn.request("GET", "/loop", (("Connection", "close"),))
                conn.close()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
                else:
                    self.ok += 1
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                self.failures.append(repr(e))


def test_sigusr2_hands_the_listeners_to_a_new_binary_without_refusing_a_connection(
        start_wsgate, echo_backend, connect):
    a = echo_backend("a")
    gate = start_wsgate(gateway_config([route("app")], {"app": pool(a)}, workers=2,
                                       timeouts={"drain": "10s", "drain_spread": "1s"}))
    session, _ = open_websocket(gate, connect)
    successor = None
    try:
        with ConnectLoop(gate.port) as loop:
            wait_for(lambda: loop.ok >= 5, what="connections before the upgrade")
            gate.stopped_by_us = True  # it exits once the new binary is ready
            gate.proc.send_signal(signal.SIGUSR2)
            started = gate.wait_line(r"SIGUSR2: started \S+ as pid (\d+)")
            successor = int(started.group(1))
            gate.wait_line(rf"new binary pid {successor} is ready")
            # The old session gets its 1012 within drain_spread; the old process then exits 0.
            close = session.recv_frame(timeout=5.0)
            assert close.opcode == wsproto.OP_CLOSE
            assert wsproto.parse_close(close.payload)[0] == 1012
            session.send_close(1012)
            assert gate.proc.wait(10) == 0
            before = loop.ok
            wait_for(lambda: loop.ok >= before + 20, what="connections served by the new binary")
        assert loop.failures == [], loop.failures[:5]
        assert pid_alive(successor)
        # The new process holds the listening socket: a new WebSocket session works there.
        conn, _ = open_websocket(gate, connect)
        conn.send_frame(wsproto.OP_TEXT, b"after the upgrade")
        assert conn.recv_message() == (wsproto.OP_TEXT, b"after the upgrade")
        close_websocket(conn)
        assert re.search(rf"listening listener=\S+ address=\S+:{gate.port} \(inherited\)",
                         gate.stderr())
    finally:
        kill_quietly(successor)


def test_a_new_binary_that_fails_to_start_leaves_the_old_one_serving(start_wsgate, echo_backend,
                                                                      connect):
    a = echo_backend("a")
    gate = start_wsgate(gateway_config([route("app")], {"app": pool(a)}, workers=1))
    session, _ = open_websocket(gate, connect)
    gate.config_path.write_text(gate.config_path.read_text() + "\nnot_a_key: 1\n")
    gate.proc.send_signal(signal.SIGUSR2)
    gate.wait_line(r"new binary pid \d+ exited \(status 1\) before it was ready; still serving")
    session.send_frame(wsproto.OP_TEXT, b"still here")
    assert session.recv_message() == (wsproto.OP_TEXT, b"still here")
    response = connect(gate.port).request("GET", "/after")
    assert response.status == 200
    assert gate.running()


def test_listening_sockets_from_systemd_are_served(tmp_path, wsgate_bin, echo_backend):
    """LISTEN_FDS/LISTEN_PID as systemd sets them: fd 3 is a listening socket made by the
    caller; wsgate serves it instead of binding its own."""
    a = echo_backend("a")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    cfg = gateway_config([route("app")], {"app": pool(a)}, workers=2)
    cfg["listeners"] = [{"name": "public", "listen": f"127.0.0.1:{port}"}]
    from harness import to_yaml
    config = tmp_path / "activated.yaml"
    config.write_text(to_yaml(cfg))
    stderr = tmp_path / "activated.stderr"
    fd = listener.fileno()

    def as_fd_3():
        os.dup2(fd, 3)
        os.set_inheritable(3, True)

    with open(stderr, "wb") as err:
        # LISTEN_PID must be wsgate's own pid: the shell sets it, then execs wsgate.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=public exec "$0" -c "$1"',
             str(wsgate_bin), str(config)],
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
            preexec_fn=as_fd_3, pass_fds=(3,) if fd != 3 else ())
    try:
        wait_for(lambda: "ready" in stderr.read_text(), what="wsgate ready")
        text = stderr.read_text()
        assert f"address=127.0.0.1:{port} (inherited)" in text, text
        listener.close()  # the socket lives on in wsgate
        conn = Conn.open(port)
        assert conn.request("GET", "/activated").status == 200
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_a_second_wsgate_on_a_running_ones_port_fails_naming_its_pid(start_wsgate,
                                                                       echo_backend, tmp_path,
                                                                       wsgate_bin):
    a = echo_backend("a")
    first = start_wsgate(gateway_config([route("app")], {"app": pool(a)}, workers=2))
    cfg = first.config_path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{first.port}", 1)
    second_config = tmp_path / "second.yaml"
    second_config.write_text(cfg)
    result = subprocess.run([str(wsgate_bin), "-c", str(second_config)], capture_output=True,
                            text=True, timeout=10)
    assert result.returncode == 1, result.stderr
    assert re.search(rf"address already in use: 127\.0\.0\.1:{first.port} is held by pid "
                     rf"{first.pid} \(wsgate\)", result.stderr), result.stderr
    # The running one is untouched and still serves.
    conn = Conn.open(first.port)
    assert conn.request("GET", "/first").status == 200


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGALRM, signal.SIGPROF,
                                 signal.SIGRTMIN + 3])
def test_a_signal_wsgate_does_not_act_on_kills_no_session(start_wsgate, echo_backend, connect,
                                                          sig):
    a = echo_backend("a")
    gate = start_wsgate(gateway_config([route("app")], {"app": pool(a)}, workers=1))
    session, _ = open_websocket(gate, connect)
    gate.proc.send_signal(sig)
    if sig == signal.SIGUSR1:
        gate.wait_line(r"SIGUSR1: access log reopened")
    else:
        gate.wait_line(rf"signal {int(sig)} \(SIG\S+\) ignored")
    session.send_frame(wsproto.OP_TEXT, b"alive")
    assert session.recv_message() == (wsproto.OP_TEXT, b"alive")
    assert gate.running()


def test_sigusr1_reopens_the_access_log_file_after_logrotate_moved_it(start_wsgate, echo_backend,
                                                                      connect, tmp_path):
    access = tmp_path / "access.log"
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("a"))}, workers=1)
    cfg["log"] = {"level": "info", "access": str(access), "format": "json"}
    gate = start_wsgate(cfg)
    assert connect(gate.port).request("GET", "/before", (("Connection", "close"),)).status == 200
    wait_for(lambda: access.exists() and "/before" in access.read_text(), what="the first line")
    rotated = tmp_path / "access.log.1"
    os.rename(access, rotated)  # what logrotate does (without copytruncate)
    gate.proc.send_signal(signal.SIGUSR1)
    gate.wait_line(r"SIGUSR1: access log reopened")
    assert connect(gate.port).request("GET", "/after", (("Connection", "close"),)).status == 200
    wait_for(lambda: access.exists() and "/after" in access.read_text(),
             what="the next line in a new file at the configured path")
    assert "/after" not in rotated.read_text()
    assert "/before" in rotated.read_text() and "/before" not in access.read_text()
