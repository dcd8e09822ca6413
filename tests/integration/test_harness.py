"""The harness itself: a backend that goes wrong fails the test that used it, even when the
test's own asserts pass. Each scenario is a tiny test file run by a pytest of its own (a
subprocess, with conftest.py loaded as a plugin), whose outcome is read from its JUnit XML."""

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree

import harness

INTEGRATION_DIR = harness.SOURCE_DIR / "tests" / "integration"

SCENARIOS = '''
import socket

import harness


def test_fake_script_raising(fake_backend):
    def raises(conn, backend):
        conn.read_request(timeout=5)
        raise ValueError("a bug in the script")

    backend = fake_backend(raises)
    conn = harness.Conn.open(backend.port)
    conn.send(harness.build_request("GET", "/"))
    assert conn.is_closed_within(5)  # the test itself passes


def test_fake_script_still_reading_when_stopped(fake_backend):
    def reads_until_stopped(conn, backend):
        conn.read_request(timeout=5)
        backend.note("read", True)
        conn.recv_frame(timeout=30)  # ConnectionClosed once stop() shuts the socket down

    backend = fake_backend(reads_until_stopped)
    conn = harness.Conn.open(backend.port)
    backend.note("client", conn)  # kept open: its FIN before stop() would be a real error
    conn.send(harness.build_request("GET", "/"))
    harness.wait_for(lambda: backend.notes.get("read"), what="the request to be read")


def test_fake_script_expecting_the_reset(fake_backend):
    def expects_reset(conn, backend):
        try:
            conn.read_exactly(1, timeout=5)
        except harness.ConnectionClosed:
            backend.note("reset", conn.reset)

    backend = fake_backend(expects_reset)
    conn = harness.Conn.open(backend.port)
    harness.wait_for(lambda: backend.accepted, what="the connection to be accepted")
    conn.abort()
    harness.wait_for(lambda: "reset" in backend.notes, what="the script to see the reset")


def test_fake_script_hanging(fake_backend):
    import threading
    never = threading.Event()

    def hangs(conn, backend):
        never.wait(8)  # ignores stop(): a thread the harness cannot end

    backend = fake_backend(hangs)
    harness.Conn.open(backend.port)
    harness.wait_for(lambda: backend.accepted, what="the connection to be accepted")


def test_echo_backend_raising(echo_backend, monkeypatch, tmp_path):
    # An echo_backend.py whose every connection raises, run as EchoBackend runs the real one.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "echo_backend.py").write_text(
        "import sys\\n"
        f"sys.path.insert(0, {str(harness.BACKENDS_DIR)!r})\\n"
        "import importlib.util\\n"
        f"spec = importlib.util.spec_from_file_location('real', "
        f"{str(harness.BACKENDS_DIR / 'echo_backend.py')!r})\\n"
        "real = importlib.util.module_from_spec(spec)\\n"
        "spec.loader.exec_module(real)\\n"
        "async def boom(self):\\n"
        "    raise KeyError('a bug in the backend')\\n"
        "real.Connection.serve_one = boom\\n"
        "sys.exit(real.main())\\n")
    monkeypatch.setattr(harness, "BACKENDS_DIR", broken)
    echo = echo_backend("broken")
    conn = harness.Conn.open(echo.port)
    conn.send(harness.build_request("GET", "/"))
    assert conn.is_closed_within(5)  # the test itself passes


def test_echo_backend_healthy(echo_backend):
    echo = echo_backend("fine")
    conn = harness.Conn.open(echo.port)
    assert conn.request("GET", "/").status == 200
'''


def run_scenarios(tmp_path, scenarios: str = SCENARIOS, env: dict = None):
    """Runs `scenarios` with the real fixtures; {test name: (outcome, failure text)}."""
    (tmp_path / "test_scenarios.py").write_text(textwrap.dedent(scenarios))
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
         f"--junitxml={report}", "--rootdir", str(tmp_path), str(tmp_path / "test_scenarios.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(INTEGRATION_DIR), **(env or {})})
    assert report.exists(), proc.stdout + proc.stderr
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = problems[0].tag if problems else "passed"
        text = "\n".join((p.get("message") or "") + (p.text or "") for p in problems)
        outcomes[case.get("name")] = (outcome, text)
    return outcomes, proc.stdout


def test_a_backend_that_goes_wrong_fails_the_test_that_used_it(tmp_path):
    outcomes, output = run_scenarios(tmp_path)
    summary = {name: outcome for name, (outcome, _) in outcomes.items()}
    assert summary == {
        # The test passed its own asserts; the fixture's teardown fails it.
        "test_fake_script_raising": "error",
        "test_fake_script_hanging": "error",
        "test_echo_backend_raising": "error",
        # Exceptions after stop(), or caught by the script where expected, are fine.
        "test_fake_script_still_reading_when_stopped": "passed",
        "test_fake_script_expecting_the_reset": "passed",
        "test_echo_backend_healthy": "passed",
    }, output
    raising = outcomes["test_fake_script_raising"][1]
    assert "ValueError: a bug in the script" in raising, raising
    assert "1 script exception(s) in fake backend 'fake'" in raising, raising
    assert "still running 5s after stop()" in outcomes["test_fake_script_hanging"][1]
    echo = outcomes["test_echo_backend_raising"][1]
    assert "backend-broken exited with 3 after unhandled exceptions" in echo, echo
    assert "KeyError: 'a bug in the backend'" in echo, echo


# A stand-in for an ASan build of wsgate: it starts as wsgate does, and at SIGTERM reports
# what LeakSanitizer (or UBSan) would, then exits as the sanitized binary does.
FAKE_SANITIZED_WSGATE = """#!/bin/sh
echo "listening listener=public address=127.0.0.1:9" >&2
echo "wsgate ready" >&2
trap 'printf "%s\\n" "$REPORT" >&2; exit 23' TERM
while :; do sleep 0.05; done
"""

SANITIZER_SCENARIOS = '''
def test_wsgate_that_reports_at_exit(start_wsgate):
    start_wsgate("workers: 1")
'''


def test_a_sanitizer_report_at_wsgate_exit_fails_the_test_that_ran_it(tmp_path):
    fake = tmp_path / "wsgate"
    fake.write_text(FAKE_SANITIZED_WSGATE)
    fake.chmod(0o755)
    reports = {
        "leak": "==42==ERROR: LeakSanitizer: detected memory leaks",
        "ubsan": "proxy/session/session.cpp:10:5: runtime error: signed integer overflow",
        "clean": "stopped",
    }
    for name, report in reports.items():
        work = tmp_path / name
        work.mkdir()
        outcomes, output = run_scenarios(work, SANITIZER_SCENARIOS,
                                         {"WSGATE_BIN": str(fake), "REPORT": report})
        outcome, text = outcomes["test_wsgate_that_reports_at_exit"]
        if name == "clean":
            assert outcome == "passed", output
        else:
            assert outcome == "error", output
            assert "sanitizer report" in text and report in text, text

