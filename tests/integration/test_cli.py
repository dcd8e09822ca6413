"""The command line: --version, --check, and how the process starts and stops."""

import re
import signal
import subprocess
import time

import harness

VALID_CONFIG = """\
workers: 1
log: { level: info, access: stdout, format: json }
listeners:
  - name: public
    listen: 127.0.0.1:0
routes:
  - match: { path_prefix: / }
    respond: { status: 200, body: "hello\\n" }
timeouts:
  drain: 2s
  drain_spread: 1s
"""


def run_cli(wsgate_bin, *args, timeout=10):
    return subprocess.run([str(wsgate_bin), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def check(wsgate_bin, tmp_path, text):
    path = tmp_path / "wsgate.yaml"
    path.write_text(text)
    return path, run_cli(wsgate_bin, "--check", "-c", str(path))


def error_lines(result, path):
    """(line, col, message) of every FILE:LINE:COL error printed for `path`."""
    pattern = re.compile(rf"^{re.escape(str(path))}:(\d+):(\d+): (.+)$", re.MULTILINE)
    return [(int(l), int(c), m) for l, c, m in pattern.findall(result.stderr)]


def test_version_prints_the_project_version(wsgate_bin):
    result = run_cli(wsgate_bin, "--version")
    assert result.returncode == 0, result.stderr
    cmake = (harness.SOURCE_DIR / "CMakeLists.txt").read_text()
    project_version = re.search(r"project\(wsgate VERSION (\d+\.\d+\.\d+)", cmake).group(1)
    assert result.stdout.strip() == f"wsgate {project_version}"


def test_check_prints_ok_for_a_valid_config(wsgate_bin, tmp_path):
    _, result = check(wsgate_bin, tmp_path, VALID_CONFIG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_check_reports_an_unknown_key_at_its_line_and_column(wsgate_bin, tmp_path):
    text = VALID_CONFIG.replace("    listen: 127.0.0.1:0\n",
                                "    listen: 127.0.0.1:0\n    lisen: 127.0.0.1:1\n")
    path, result = check(wsgate_bin, tmp_path, text)
    assert result.returncode == 1
    errors = error_lines(result, path)
    assert any(line == 6 and col == 5 and "lisen" in msg for line, col, msg in errors), \
        result.stderr
    assert result.stdout.strip() != "ok"


def test_check_reports_an_unknown_top_level_key(wsgate_bin, tmp_path):
    path, result = check(wsgate_bin, tmp_path, VALID_CONFIG + "colour: blue\n")
    assert result.returncode == 1
    assert any(line == 12 and col == 1 and "colour" in msg
               for line, col, msg in error_lines(result, path)), result.stderr


def test_check_reports_an_invalid_value_at_its_line(wsgate_bin, tmp_path):
    text = VALID_CONFIG.replace("  drain: 2s\n", "  drain: soon\n")
    path, result = check(wsgate_bin, tmp_path, text)
    assert result.returncode == 1
    # The column may point at the key (3) or at the value (10).
    assert any(line == 10 and col in (3, 10) for line, col, _ in error_lines(result, path)), \
        result.stderr


def test_check_reports_a_yaml_syntax_error_with_a_position(wsgate_bin, tmp_path):
    path, result = check(wsgate_bin, tmp_path, VALID_CONFIG + "routes: [\n")
    assert result.returncode == 1
    assert error_lines(result, path), result.stderr


def test_check_rejects_a_route_to_an_undefined_pool(wsgate_bin, tmp_path):
    text = VALID_CONFIG.replace('    respond: { status: 200, body: "hello\\n" }\n',
                                "    pool: nowhere\n")
    path, result = check(wsgate_bin, tmp_path, text)
    assert result.returncode == 1
    assert any("nowhere" in msg for _, _, msg in error_lines(result, path)), result.stderr


def test_check_resolves_listener_addresses_as_a_start_or_reload_would(wsgate_bin, tmp_path):
    text = VALID_CONFIG.replace("listen: 127.0.0.1:0", "listen: no-such-host.invalid:8080")
    path, result = check(wsgate_bin, tmp_path, text)
    assert result.returncode == 1
    assert any(line == 5 and "listener public" in msg and "no-such-host.invalid" in msg
               for line, _, msg in error_lines(result, path)), result.stderr


def test_run_refuses_to_start_with_an_invalid_config(wsgate_bin, tmp_path):
    path = tmp_path / "wsgate.yaml"
    path.write_text(VALID_CONFIG + "colour: blue\n")
    result = run_cli(wsgate_bin, "-c", str(path))
    assert result.returncode != 0
    assert f"{path}:12:1:" in result.stderr


def test_port_zero_listener_reports_its_port_and_serves(start_wsgate, connect):
    gate = start_wsgate(VALID_CONFIG)
    assert set(gate.ports) == {"public"}
    response = connect(gate.port).request("GET", "/")
    assert (response.status, response.body) == (200, b"hello\n")


def test_sigterm_exits_zero_within_a_few_seconds(start_wsgate, connect):
    gate = start_wsgate(VALID_CONFIG)
    idle_client = connect(gate.port)
    assert idle_client.request("GET", "/").status == 200  # an idle keep-alive connection stays
    started = time.monotonic()
    assert gate.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 5
    assert idle_client.is_closed_within(1)

