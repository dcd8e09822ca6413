"""wsgate under systemd: the Type=notify protocol (NOTIFY_SOCKET, sd_notify(3)) as a unit
sees it, and the unit files in packaging/systemd/ as systemd-analyze reads them."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import gateway_config, pool, route

UNITS = harness.SOURCE_DIR / "packaging" / "systemd"


class NotifyListener:
    """The manager's end: a datagram socket at a path or an abstract name."""

    def __init__(self, tmp_path: Path, abstract: bool):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"wsgate-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = tmp_path / "notify"
            self.sock.bind(str(path))
            self.env = str(path)
        self.sock.settimeout(10.0)

    def next(self, timeout: float = 10.0) -> dict:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(4096)
        return dict(line.split("=", 1) for line in data.decode().split("\n"))

    def quiet(self, seconds: float) -> list:
        """What comes within `seconds` (expected: nothing)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.next(timeout=left))
            except socket.timeout:
                break
        return got


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_type_notify_hears_ready_reloading_ready_and_stopping(start_wsgate, echo_backend,
                                                              connect, tmp_path, monkeypatch,
                                                              abstract):
    manager = NotifyListener(tmp_path, abstract)
    monkeypatch.setenv("NOTIFY_SOCKET", manager.env)
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("a"))}, workers=2)
    gate = start_wsgate(cfg)

    ready = manager.next()
    assert ready == {"READY": "1", "STATUS": "serving, config generation 1"}, ready
    # READY=1 comes once the listeners accept: a request goes through at once.
    assert connect(gate.port).request("GET", "/after-ready").status == 200

    # A reload: RELOADING=1 with the monotonic clock at its start, then READY=1.
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    gate.proc.send_signal(signal.SIGHUP)
    reloading = manager.next()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert reloading["RELOADING"] == "1" and reloading["STATUS"] == "reloading (SIGHUP)"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after, (before, reloading, after)
    assert manager.next() == {"READY": "1", "STATUS": "serving, config generation 2"}

    # A reload that fails still ends in READY=1: the old config serves on.
    gate.config_path.write_text("listeners: [\n")
    gate.proc.send_signal(signal.SIGHUP)
    assert manager.next()["RELOADING"] == "1"
    assert manager.next() == {"READY": "1",
                              "STATUS": "reload failed, still serving config generation 2"}

    # SIGTERM: STOPPING=1 as the drain begins.
    gate.proc.send_signal(signal.SIGTERM)
    stopping = manager.next()
    assert stopping["STOPPING"] == "1" and re.fullmatch(r"draining \d+ session\(s\)",
                                                        stopping["STATUS"]), stopping
    gate.stopped_by_us = True
    assert gate.proc.wait(10) == 0


def test_a_binary_upgrade_hands_mainpid_to_the_new_process_and_never_says_stopping(
        start_wsgate, echo_backend, tmp_path, monkeypatch):
    manager = NotifyListener(tmp_path, abstract=False)
    monkeypatch.setenv("NOTIFY_SOCKET", manager.env)
    gate = start_wsgate(gateway_config([route("app")], {"app": pool(echo_backend("a"))},
                                       timeouts={"drain": "5s", "drain_spread": "0s"}))
    assert manager.next()["READY"] == "1"
    successor = None
    try:
        gate.stopped_by_us = True  # it exits once the new binary is ready
        gate.proc.send_signal(signal.SIGUSR2)
        successor = int(gate.wait_line(r"SIGUSR2: started \S+ as pid (\d+)").group(1))
        # The new process says READY=1 itself; the old one then names it the main process.
        messages = [manager.next(), manager.next()]
        assert {"READY": "1", "STATUS": "serving, config generation 1"} in messages, messages
        assert {"MAINPID": str(successor), "READY": "1",
                "STATUS": f"new binary pid {successor} took over"} in messages, messages
        assert gate.proc.wait(10) == 0
        # The old process's drain is no stop of the service: no STOPPING=1 came.
        assert all("STOPPING" not in m for m in manager.quiet(0.5))
    finally:
        if successor:
            try:
                os.kill(successor, signal.SIGKILL)
            except ProcessLookupError:
                pass


def unit_text(name: str, binary: Path) -> str:
    """A unit of packaging/systemd/ with ExecStart's binary pointing at the one under test."""
    return (UNITS / name).read_text().replace("/usr/bin/wsgate", str(binary))


def test_the_units_pass_systemd_analyze_verify(tmp_path, wsgate_bin):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run packaging/install-deps.sh (Debian: systemd)"
    for name in ("wsgate.service", "wsgate.socket"):
        (tmp_path / name).write_text(unit_text(name, wsgate_bin))
    # --man=no: Documentation= names wsgate(8), which a .deb installs, not this checkout.
    run = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "wsgate.service"),
                          str(tmp_path / "wsgate.socket")],
                         capture_output=True, text=True, timeout=60, check=False)
    # Lines about units of the host (this container has no running systemd) are not ours.
    ours = [line for line in (run.stdout + run.stderr).splitlines() if "wsgate" in line]
    assert run.returncode == 0 and not ours, run.stdout + run.stderr


def test_the_service_is_type_notify_reloads_with_sighup_and_is_hardened():
    unit = (UNITS / "wsgate.service").read_text()
    settings = {}
    for line in unit.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["all"],  # a successor (SIGUSR2) speaks from its own pid
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "KillSignal": ["SIGTERM"],
        "User": ["wsgate"],
        "AmbientCapabilities": ["CAP_NET_BIND_SERVICE"],
        "CapabilityBoundingSet": ["CAP_NET_BIND_SERVICE"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "PrivateTmp": ["yes"],
        "SystemCallFilter": ["@system-service"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    }
    assert {k: settings.get(k) for k in expected} == expected, unit
    assert int(settings["LimitNOFILE"][0]) >= 65536
    # systemd must wait longer than timeouts.drain (30 s by default) before SIGKILL.
    assert settings["TimeoutStopSec"][0].endswith("s") and int(settings["TimeoutStopSec"][0][:-1]) > 30
