"""wsload, the load generator: its echo server against a client nobody here wrote, its
clients against its server directly and through wsgate, and the failures it must report.

Every run is short (about a second) and bounded by a timeout."""

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
import websockets

import harness
import tls_certs
import wsproto
from harness import LOOPBACK, gateway_config, pool, route, wait_for

RUN_TIMEOUT = 20.0


def wsload_binary() -> Path:
    """WSLOAD_BIN, or the default build directory's binary."""
    default = harness.SOURCE_DIR / "build" / "tests" / "bench" / "wsload"
    return Path(os.environ.get("WSLOAD_BIN", default)).resolve()


@pytest.fixture(scope="session")
def wsload_bin():
    path = wsload_binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"wsload binary not found at {path}; set WSLOAD_BIN", pytrace=False)
    return path


class Serve(harness._Process):
    """`wsload serve` on an ephemeral loopback port."""

    def __init__(self, binary: Path, workdir: Path, name: Optional[str] = None):
        super().__init__(f"wsload-serve{'-' + name if name else ''}", workdir)
        self.binary = binary
        self.name = name
        self.port = 0

    def start(self) -> "Serve":
        self._spawn([str(self.binary), "serve", "--listen", f"{LOOPBACK}:0"] +
                    (["--name", self.name] if self.name else []))
        m = self.wait_line(r"^listening 127\.0\.0\.1:(\d+)$", stream="stdout")
        self.port = int(m.group(1))
        return self

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


@pytest.fixture
def serve(wsload_bin, tmp_path):
    server = Serve(wsload_bin, tmp_path).start()
    yield server
    code = server.stop()
    print(server.report())
    assert code == 0, f"wsload serve exited with {code} on SIGTERM"


@pytest.fixture
def gate(start_wsgate, serve):
    """wsgate routing everything to `wsload serve`."""
    return start_wsgate(gateway_config([route("ws", path_prefix="/")],
                                       {"ws": pool(("serve", serve.address))}))


def run(wsload_bin, *args: str) -> Tuple[int, List[dict], str]:
    """Runs wsload to completion: (exit code, its JSON lines, stderr)."""
    proc = subprocess.run([str(wsload_bin), *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, lines, proc.stderr


def result_of(lines: List[dict]) -> dict:
    results = [line for line in lines if "mode" in line]
    assert len(results) == 1, lines
    return results[0]


def echo_args(port: int, *extra: str) -> List[str]:
    return ["echo", "--url", f"ws://{LOOPBACK}:{port}/bench", "--duration", "1",
            "--warmup", "0.2", *extra]


# --- wsload against wsload --------------------------------------------------------------


def test_echo_against_serve_counts_round_trips_and_latency(wsload_bin, serve):
    code, lines, stderr = run(wsload_bin, *echo_args(serve.port, "--connections", "4",
                                                     "--pipeline", "4"))
    assert code == 0, stderr
    assert lines[0] == {"event": "start"}, lines
    result = result_of(lines)
    assert (result["mode"], result["connections"], result["size"], result["pipeline"]) == \
        ("echo", 4, 64, 4)
    assert result["messages"] > 0 and result["errors"] == 0, result
    assert result["msgs_per_s"] == pytest.approx(result["messages"] / result["seconds"], rel=0.01)
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["p999_us"], result


@pytest.mark.parametrize("extra", [("--text", "--size", "70000"), ("--size", "5"),
                                   ("--size", "0"), ("--threads", "2", "--pipeline", "3")],
                         ids=["text-70000B", "5B", "0B", "2-threads"])
def test_echo_against_serve_in_other_shapes(wsload_bin, serve, extra):
    code, lines, stderr = run(wsload_bin, *echo_args(serve.port, "--connections", "3", *extra))
    assert code == 0, stderr
    result = result_of(lines)
    assert result["messages"] > 0 and result["errors"] == 0, result


# --- serve against an independent client --------------------------------------------------


def test_serve_echoes_an_independent_client(serve):
    async def session():
        async with websockets.connect(f"ws://{LOOPBACK}:{serve.port}/any", max_size=None,
                                      compression=None, open_timeout=5, close_timeout=5,
                                      ping_interval=None) as ws:
            replies = []
            for message in ["hello", "h\u00e9llo \u2603", b"\x00\xff" * 40000, b"", ""]:
                await ws.send(message)
                replies.append(await asyncio.wait_for(ws.recv(), 5))
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
        return replies, ws.close_code

    replies, close_code = asyncio.run(session())
    assert replies == ["hello", "h\u00e9llo \u2603", b"\x00\xff" * 40000, b"", ""]
    assert close_code == 1000


def test_serve_echoes_frame_by_frame_and_answers_close_with_its_code(serve, connect):
    conn = connect(serve.port)
    assert conn.upgrade("/frames").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"frag", fin=False)
    conn.send_frame(wsproto.OP_PING, b"p")
    conn.send_frame(wsproto.OP_CONT, b"mented", fin=True)
    frames = [conn.recv_frame() for _ in range(3)]
    assert [(f.opcode, f.fin, f.payload, f.masked) for f in frames] == [
        (wsproto.OP_TEXT, False, b"frag", False), (wsproto.OP_PONG, True, b"p", False),
        (wsproto.OP_CONT, True, b"mented", False)]
    conn.send_close(4001, "bye")
    close = conn.recv_frame()
    assert close.opcode == wsproto.OP_CLOSE
    assert wsproto.parse_close(close.payload)[0] == 4001
    assert conn.is_closed_within(2)


def test_serve_answers_health_checks_with_keep_alive(serve, connect):
    conn = connect(serve.port)
    for path in ("/health", "/again"):
        response = conn.request("GET", path)
        assert (response.status, response.body) == (200, b"ok\n")
        assert response.header("content-length") == "3"


def test_serve_refuses_a_bad_upgrade_with_400_and_closes(serve, connect):
    conn = connect(serve.port)
    conn.send(harness.build_request("GET", "/", (("Upgrade", "websocket"),
                                                 ("Connection", "Upgrade"),
                                                 ("Sec-WebSocket-Key", "short"),
                                                 ("Sec-WebSocket-Version", "13"))))
    assert conn.read_response().status == 400
    assert conn.is_closed_within(2)


# --- through wsgate ----------------------------------------------------------------------------


def test_echo_through_wsgate(wsload_bin, gate):
    code, lines, stderr = run(wsload_bin, *echo_args(gate.port, "--connections", "4",
                                                     "--pipeline", "2"))
    assert code == 0, stderr
    result = result_of(lines)
    assert result["messages"] > 0 and result["errors"] == 0, result


def test_idle_connections_through_wsgate_hold_and_echo(wsload_bin, gate, tmp_path):
    out_path, err_path = tmp_path / "idle.stdout", tmp_path / "idle.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([str(wsload_bin), "idle", "--url",
                                 f"ws://{LOOPBACK}:{gate.port}/idle", "--connections", "200"],
                                stdin=subprocess.PIPE, stdout=out, stderr=err)
    try:
        def json_lines():
            return [json.loads(l) for l in out_path.read_text().splitlines() if l.endswith("}")]

        ready = wait_for(lambda: [l for l in json_lines() if l.get("event") == "ready"],
                         timeout=10, what="the ready line")[0]
        assert (ready["open"], ready["failed"]) == (200, 0), ready
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.wait(timeout=15) == 0, err_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = result_of(json_lines())
    assert (result["mode"], result["open"], result["echoed"], result["errors"]) == \
        ("idle", 200, 200, 0), result


def test_churn_through_wsgate(wsload_bin, gate):
    code, lines, stderr = run(wsload_bin, "churn", "--url", f"ws://{LOOPBACK}:{gate.port}/churn",
                              "--concurrency", "4", "--duration", "1")
    assert code == 0, stderr
    result = result_of(lines)
    assert result["sessions"] > 0 and result["errors"] == 0, result
    assert result["p50_us"] <= result["p99_us"], result


def test_soak_injects_resets_and_stalls_and_reports_each_failure(wsload_bin, start_wsgate,
                                                                 tmp_path):
    """`wsload soak` (tests/soak/soak.py's client): resets mid-frame and stalled readers on
    command, one event line each with the session's backend (from `serve --name` through
    wsgate's 101), a failure line per session a killed backend ended, then reconnects."""
    backend = Serve(wsload_bin, tmp_path, name="s1").start()
    gate = start_wsgate(gateway_config([route("ws", path_prefix="/")],
                                       {"ws": pool(("s1", backend.address))}))
    out_path, err_path = tmp_path / "soak.stdout", tmp_path / "soak.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([str(wsload_bin), "soak", "--url",
                                 f"ws://{LOOPBACK}:{gate.port}/soak", "--connections", "20",
                                 "--rate", "200", "--size", "64", "--stall-size", "65536",
                                 "--stall-burst", "16", "--reconnect-delay", "0.2"],
                                stdin=subprocess.PIPE, stdout=out, stderr=err)

    def events(name):
        return [json.loads(l) for l in out_path.read_text().splitlines()
                if l.endswith("}") and json.loads(l).get("event") == name]

    def command(text):
        proc.stdin.write(text.encode() + b"\n")
        proc.stdin.flush()

    try:
        wait_for(lambda: events("start"), timeout=10, what="the start line")
        command("reset 2")
        command("stall 2 0.5")
        wait_for(lambda: len(events("stall_done")) == 2, timeout=10, what="two stalls done")
        resets = events("reset")
        assert len(resets) == 2 and all(e["backend"] == "s1" and e["port"] > 0 for e in resets)
        assert not events("fail"), events("fail")
        # wsgate saw half a frame, then the RST.
        gate.wait_access(lambda r: r.get("reason") == "client reset", count=2)
        backend.stop(signal.SIGKILL)
        ended = wait_for(lambda: len(opened := [e for e in events("fail") if e["opened"]]) >= 18
                         and opened, timeout=10, what="the sessions on the killed backend to end")
        assert all(e["backend"] == "s1" for e in ended), ended
        command("stop")
        proc.stdin.close()
        assert proc.wait(timeout=15) == 0, err_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        backend.stop()
    result = result_of([json.loads(l) for l in out_path.read_text().splitlines()
                        if l.endswith("}")])
    assert (result["resets"], result["stalls"], result["stalls_done"],
            result["stall_echoes"]) == (2, 2, 2, 32), result
    assert result["messages"] > 0 and result["reopened"] >= 2, result


# --- failures are reported ----------------------------------------------------------------------


def test_nothing_listening_is_an_error(wsload_bin, refused_address):
    code, lines, stderr = run(wsload_bin, "echo", "--url", f"ws://{refused_address()}/",
                              "--connections", "2", "--duration", "1")
    assert code == 1
    result = result_of(lines)
    assert result["errors"] == 2 and result["messages"] == 0, result
    assert result["error"] == "connect: Connection refused", result
    assert "Connection refused" in stderr


def test_a_server_that_refuses_the_upgrade_is_an_error(wsload_bin, fake_backend):
    backend = fake_backend(harness.answer_http(400, b"no\n"))
    code, lines, stderr = run(wsload_bin, *echo_args(backend.port, "--connections", "1"))
    assert code == 1, stderr
    assert result_of(lines)["error"] == "handshake: status 400"


def test_a_wrong_accept_is_an_error(wsload_bin, fake_backend):
    def wrong_accept(conn, backend):
        request = conn.read_request(timeout=10)
        someone_elses = wsproto.accept_for(wsproto.new_key())
        conn.send(harness.switching_protocols(request, accept=someone_elses))
        backend.stopping.wait(10)

    backend = fake_backend(wrong_accept)
    code, lines, _ = run(wsload_bin, *echo_args(backend.port, "--connections", "1"))
    assert code == 1
    assert result_of(lines)["error"] == "handshake: incorrect Sec-WebSocket-Accept"


@pytest.fixture
def tls_gate(start_wsgate, serve, tmp_path_factory):
    """wsgate terminating TLS (the test PKI's localhost certificate) in front of `wsload
    serve`: what the wss rows of `make bench` measure."""
    leaf = tls_certs.session_pki(tmp_path_factory).localhost
    listener = {"name": "secure", "listen": f"{LOOPBACK}:0",
                "tls": {"certificates": [leaf.listener_entry()]}}
    return start_wsgate(gateway_config([route("ws", path_prefix="/")],
                                       {"ws": pool(("serve", serve.address))},
                                       listeners=[listener]))


def test_wss_echo_through_a_tls_listener(wsload_bin, tls_gate):
    code, lines, stderr = run(wsload_bin, "echo", "--url", f"wss://{LOOPBACK}:{tls_gate.port}/",
                              "--connections", "4", "--duration", "1", "--warmup", "0")
    assert code == 0, stderr
    result = result_of(lines)
    assert result["messages"] > 0 and result["errors"] == 0, result


@pytest.mark.parametrize("resume", [False, True], ids=["full", "resumed"])
def test_tls_handshakes_through_a_tls_listener(wsload_bin, tls_gate, resume):
    extra = ["--resume"] if resume else []
    code, lines, stderr = run(wsload_bin, "handshakes", "--url",
                              f"wss://{LOOPBACK}:{tls_gate.port}", "--concurrency", "2",
                              "--duration", "1", *extra)
    assert code == 0, stderr
    result = result_of(lines)
    assert result.get("errors", 0) == 0, result
    assert result["handshakes"] > 0, result
    # Every handshake hands the client a ticket, a resumed one too (a TLS 1.3 client uses
    # each ticket once), and with --resume every handshake resumes.
    assert result["tickets"] == result["handshakes"], result
    assert result["resumed"] == (result["handshakes"] if resume else 0), result


@pytest.mark.parametrize("args", [[], ["echo", "--url", "ws://127.0.0.1:1/"],
                                  ["echo", "--connections", "1"],
                                  ["echo", "--url", "ws://127.0.0.1:1/", "--connections", "1",
                                   "--bogus", "1"],
                                  ["idle", "--url", "ws://127.0.0.1:1/", "--connections", "1",
                                   "--pipeline", "2"],
                                  ["serve"], ["echo", "--url", "http://x/", "--connections", "1"]],
                         ids=["none", "no-connections", "no-url", "unknown-option",
                              "option-of-another-command", "serve-without-listen", "not-ws"])
def test_bad_command_lines_print_usage(wsload_bin, args):
    code, lines, stderr = run(wsload_bin, *args)
    assert code == 2 and lines == []
    assert "usage:" in stderr


def corrupting_echo(conn, backend):
    """Upgrades correctly, then echoes every data frame with its middle byte flipped."""
    request = conn.read_request(timeout=10)
    conn.send(harness.switching_protocols(request))
    while not backend.stopping.is_set():
        try:
            frame = conn.recv_frame(timeout=10)
        except harness.ConnectionClosed:
            return
        payload = bytearray(frame.payload)
        if frame.opcode in (wsproto.OP_TEXT, wsproto.OP_BINARY) and payload:
            payload[len(payload) // 2] ^= 0x01
        conn.send(wsproto.encode_frame(frame.opcode, bytes(payload), fin=frame.fin))
        if frame.opcode == wsproto.OP_CLOSE:
            return


def test_echo_detects_a_corrupting_server(wsload_bin, fake_backend):
    backend = fake_backend(corrupting_echo)
    code, lines, _ = run(wsload_bin, "echo", "--url", f"ws://{LOOPBACK}:{backend.port}/",
                         "--connections", "1", "--duration", "0.5", "--warmup", "0")
    assert code == 1
    result = result_of(lines)
    assert result["errors"] > 0, result
    assert result["error"].startswith("echo mismatch"), result
