"""The access log (issue 15): one line per HTTP request and one per WebSocket session at its
end, its fields in a fixed order with the time the request began (RFC 3339, UTC,
milliseconds), the text form of the same fields, a file reopened on SIGUSR1 after logrotate
renamed it (packaging/logrotate/wsgate), and a reader that stops reading: lines are dropped
and counted, the event loop never waits."""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
import wsproto
from harness import Deadline, build_request, gateway_config, pool, route, wait_for

HTTP_KEYS = ["time", "session", "kind", "client", "listener", "route", "method", "host", "path",
             "pool", "backend", "status", "reason", "duration_ms", "connect_ms", "response_ms",
             "bytes_from_client", "bytes_to_client"]
WEBSOCKET_KEYS = HTTP_KEYS + ["frames_from_client", "frames_to_client", "messages_from_client",
                              "messages_to_client", "close_code", "close_by"]
TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"

LOGROTATE_STANZA = harness.SOURCE_DIR / "packaging" / "logrotate" / "wsgate"


def ordered_records(text):
    """Every JSON line of `text` as a list of (key, value) pairs, in the order written."""
    return [json.loads(line, object_pairs_hook=list) for line in text.splitlines()
            if line.startswith("{")]


def record_in_order(gate, conn):
    """The access record of `conn` as (key, value) pairs in the order they were written."""
    gate.access_for(conn)
    suffix = f":{conn.local_port}"
    return next(pairs for pairs in ordered_records(gate.stdout())
                if dict(pairs)["client"].endswith(suffix))


def seconds_of(time_text):
    """An RFC 3339 UTC time with milliseconds as seconds since the epoch."""
    assert re.fullmatch(TIME, time_text), time_text
    moment = datetime.datetime.strptime(time_text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def assert_began_within(record, before, after):
    """The line's time is when the request began: not before `before` (to the millisecond
    it is floored to), and it plus the duration is not after `after`."""
    began = seconds_of(record["time"])
    assert int(before * 1000) / 1000 - 0.0005 <= began <= after, (before, record["time"], after)
    assert began + record["duration_ms"] / 1000 <= after + 0.002, (record, after)


def routed_gateway(start_wsgate, backend, **kwargs):
    """Route 0 answers /local itself, route 1 sends /app to pool app; nothing else matches."""
    cfg = gateway_config([route(respond=(403, "local\n"), path_prefix="/local"),
                          route("app", path_prefix="/app")],
                         {"app": pool(backend, **kwargs)})
    return start_wsgate(cfg)


# --- the JSON line ----------------------------------------------------------------------------


def test_an_http_line_has_its_fields_in_order_with_the_time_the_request_began(
        start_wsgate, echo_backend, connect):
    gate = routed_gateway(start_wsgate, echo_backend("echo1"))
    before = time.time()
    conn = connect(gate.port)
    assert conn.request("GET", "/app/page?q=1", host="example.test").status == 200
    pairs = record_in_order(gate, conn)
    after = time.time()

    assert [k for k, _ in pairs] == HTTP_KEYS
    record = dict(pairs)
    assert_began_within(record, before, after)
    assert {k: v for k, v in record.items()
            if k not in ("time", "session", "duration_ms", "connect_ms", "response_ms",
                         "bytes_to_client")} == {
        "kind": "http", "client": f"127.0.0.1:{conn.local_port}", "listener": "public",
        "route": 1, "method": "GET", "host": "example.test", "path": "/app/page",
        "pool": "app", "backend": "app/echo1", "status": 200, "reason": "ok",
        "bytes_from_client": len(build_request("GET", "/app/page?q=1", host="example.test"))}
    assert 0 <= record["connect_ms"] <= record["duration_ms"]
    assert 0 <= record["response_ms"] <= record["duration_ms"]


def test_a_local_answer_names_no_pool_and_a_request_no_route_matches_has_no_route(
        start_wsgate, echo_backend, connect):
    gate = routed_gateway(start_wsgate, echo_backend("echo1"))
    local = connect(gate.port)
    assert local.request("GET", "/local/x").status == 403
    nowhere = connect(gate.port)
    assert nowhere.request("GET", "/elsewhere").status == 404

    answered, unrouted = gate.access_for(local)[0], gate.access_for(nowhere)[0]
    assert (answered["route"], answered["pool"], answered["backend"], answered["reason"]) == \
        (0, None, None, "respond")
    assert (unrouted["route"], unrouted["pool"], unrouted["backend"], unrouted["reason"]) == \
        (None, None, None, "no route")
    for record in (answered, unrouted):
        assert (record["connect_ms"], record["response_ms"]) == (None, None)
        assert record["listener"] == "public"


def test_connect_ms_is_measured_on_a_fresh_backend_connection_and_null_on_a_reused_one(
        start_wsgate, echo_backend, connect):
    gate = routed_gateway(start_wsgate, echo_backend("echo1"))
    conn = connect(gate.port)
    assert conn.request("GET", "/app/first").status == 200
    assert conn.request("GET", "/app/second").status == 200

    fresh, reused = gate.access_for(conn, count=2)
    assert (fresh["path"], reused["path"]) == ("/app/first", "/app/second")
    assert fresh["session"] == reused["session"]  # one client connection
    assert isinstance(fresh["connect_ms"], float) and fresh["connect_ms"] >= 0
    assert reused["connect_ms"] is None
    for record in (fresh, reused):
        assert isinstance(record["response_ms"], float)
        assert 0 <= record["response_ms"] <= record["duration_ms"]


def test_a_refused_backend_gives_a_502_line_with_its_pool_backend_and_reason(
        start_wsgate, refused_address, connect):
    gate = routed_gateway(start_wsgate, ("down", refused_address()), retries=0)
    conn = connect(gate.port)
    harness.assert_error_response(conn.request("GET", "/app/x"), 502)

    record = gate.access_for(conn)[0]
    assert (record["status"], record["route"], record["pool"], record["backend"],
            record["reason"]) == (502, 1, "app", "app/down", "backend connect failed")
    assert (record["connect_ms"], record["response_ms"]) == (None, None)


def test_a_websocket_line_has_the_http_fields_then_frames_messages_and_the_close(
        start_wsgate, echo_backend, connect):
    gate = routed_gateway(start_wsgate, echo_backend("echo1"))
    before = time.time()
    conn = connect(gate.port)
    assert conn.upgrade("/app/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"hello")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"hello")
    conn.send_close(1000)
    assert [f.opcode for f in conn.frames_until_eof()] == [wsproto.OP_CLOSE]
    pairs = record_in_order(gate, conn)
    after = time.time()

    assert [k for k, _ in pairs] == WEBSOCKET_KEYS
    record = dict(pairs)
    assert_began_within(record, before, after)
    assert (record["kind"], record["status"], record["route"], record["pool"],
            record["backend"]) == ("websocket", 101, 1, "app", "app/echo1")
    assert (record["reason"], record["close_code"], record["close_by"]) == \
        ("closed", 1000, "client")
    assert (record["frames_from_client"], record["frames_to_client"],
            record["messages_from_client"], record["messages_to_client"]) == (2, 2, 1, 1)
    assert 0 <= record["connect_ms"] <= record["duration_ms"]
    assert 0 <= record["response_ms"] <= record["duration_ms"]


def echo_once_then(clean):
    """A backend script: the upgrade, one message echoed, then a clean close (Close 1000,
    the echo awaited) or none at all (the socket just closes: a crash, a deploy)."""
    def script(conn, backend):
        request = conn.read_request(timeout=10)
        conn.send(harness.switching_protocols(request))
        frame = conn.recv_frame(timeout=10)
        conn.send(wsproto.encode_frame(frame.opcode, frame.payload))
        if clean:
            conn.send(wsproto.encode_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000)))
            for frame in backend.frames(conn):
                if frame.opcode == wsproto.OP_CLOSE:
                    break
        # returning closes the connection (a FIN, no Close frame when not clean)
    return script


@pytest.mark.parametrize("clean", [False, True], ids=["vanished", "clean"])
def test_a_backend_that_vanishes_mid_session_is_told_apart_from_a_clean_close(
        start_wsgate, fake_backend, connect, clean):
    gate = routed_gateway(start_wsgate, fake_backend(echo_once_then(clean)))
    conn = connect(gate.port)
    assert conn.upgrade("/app/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"one")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"one")
    close = conn.recv_frame()
    assert close.opcode == wsproto.OP_CLOSE
    code = wsproto.parse_close(close.payload)[0]
    # wsgate tells the client a backend that vanished is a bad gateway; a clean close is
    # passed on as it was.
    assert code == (1000 if clean else 1014)
    conn.send_close(code)
    conn.frames_until_eof()

    record = gate.access_for(conn)[0]
    assert record["close_by"] == "backend"
    if clean:
        assert (record["close_code"], record["reason"]) == (1000, "closed")
    else:
        assert (record["close_code"], record["reason"]) == (1006, "backend vanished")


# --- the text line ----------------------------------------------------------------------------

TEXT_HTTP = re.compile(
    rf"(?P<time>{TIME}) s(?P<session>\d+) http 127\.0\.0\.1:(?P<port>\d+) listener=public "
    r"route=0 GET example\.test /page pool=app backend=app/echo1 200 reason=ok "
    r"(?P<ms>\d+\.\d{3})ms connect=(?P<connect>\d+\.\d{3})ms response=(?P<response>\d+\.\d{3})ms "
    r"in=(?P<in>\d+) out=(?P<out>\d+)")
TEXT_WEBSOCKET = re.compile(
    rf"(?P<time>{TIME}) s(?P<session>\d+) websocket 127\.0\.0\.1:(?P<port>\d+) listener=public "
    r"route=0 GET example\.test /chat pool=app backend=app/echo1 101 reason=closed "
    r"(?P<ms>\d+\.\d{3})ms connect=(?P<connect>\d+\.\d{3})ms response=(?P<response>\d+\.\d{3})ms "
    r"in=(?P<in>\d+) out=(?P<out>\d+) "
    r"frames=(?P<frames_in>\d+)/(?P<frames_out>\d+) "
    r"messages=(?P<messages_in>\d+)/(?P<messages_out>\d+) close=1000 by=client")


def head_bytes(head):
    """The size of a head as sent: start line, `Name: value` lines, the empty line."""
    return len(" ".join(head.start)) + sum(len(f"{k}: {v}") + 2 for k, v in head.headers) + 4


def test_the_text_format_writes_the_same_fields_in_the_same_order(
        start_wsgate, echo_backend, connect):
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("echo1"))})
    cfg["log"]["format"] = "text"
    gate = start_wsgate(cfg)

    http = connect(gate.port)
    request = build_request("GET", "/page?q=1", (("Connection", "close"),), host="example.test")
    http.send(request)
    answer = http.read_until_eof()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:100]

    # Two messages from the client in three frames, echoed in two, and the client's Close.
    ws = connect(gate.port)
    upgrade = wsproto.upgrade_request("/chat", "example.test")
    ws.send(upgrade)
    switching = ws.read_response()
    assert switching.status == 101
    sent = [wsproto.encode_frame(wsproto.OP_TEXT, b"one", mask=True),
            wsproto.encode_frame(wsproto.OP_TEXT, b"tw", fin=False, mask=True),
            wsproto.encode_frame(wsproto.OP_CONT, b"o", mask=True),
            wsproto.encode_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000), mask=True)]
    for frame in sent[:3]:
        ws.send(frame)
    assert ws.recv_message() == (wsproto.OP_TEXT, b"one")
    assert ws.recv_message() == (wsproto.OP_TEXT, b"two")
    ws.send(sent[3])
    assert [f.opcode for f in ws.frames_until_eof()] == [wsproto.OP_CLOSE]
    received = [wsproto.encode_frame(wsproto.OP_TEXT, b"one"),
                wsproto.encode_frame(wsproto.OP_TEXT, b"two"),
                wsproto.encode_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))]

    lines = harness.wait_lines(gate.stdout, 2, "two access lines")
    http_line = TEXT_HTTP.fullmatch(lines[0])
    assert http_line, lines[0]
    assert int(http_line["port"]) == http.local_port
    assert (int(http_line["in"]), int(http_line["out"])) == (len(request), len(answer))
    ws_line = TEXT_WEBSOCKET.fullmatch(lines[1])
    assert ws_line, lines[1]
    assert int(ws_line["port"]) == ws.local_port
    assert int(ws_line["session"]) != int(http_line["session"])
    assert (int(ws_line["in"]), int(ws_line["out"])) == (
        len(upgrade) + sum(map(len, sent)),
        head_bytes(switching.head) + sum(map(len, received))), lines[1]
    assert ((int(ws_line["frames_in"]), int(ws_line["frames_out"])),
            (int(ws_line["messages_in"]), int(ws_line["messages_out"]))) == ((4, 3), (2, 2)), \
        lines[1]
    assert seconds_of(http_line["time"]) <= seconds_of(ws_line["time"])


# --- a file, SIGUSR1 and logrotate ------------------------------------------------------------


def sequence_numbers(path):
    """The N of every /seq/N request logged in `path`, in file order."""
    if not path.exists():
        return []
    return [int(json.loads(line)["path"].rsplit("/", 1)[1])
            for line in path.read_text().splitlines()]


def open_files(pid):
    """The paths wsgate holds open."""
    paths = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return paths


class Traffic:
    """Requests for /seq/0, /seq/1, ... one after the other on one keep-alive connection, on
    a thread, until stopped; `sent` is how many were answered."""

    def __init__(self, port):
        self.conn = harness.Conn.open(port)
        self.sent = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                assert self.conn.request("GET", f"/seq/{self.sent}").status == 200
                self.sent += 1
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.errors.append(repr(e))

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        self.conn.close()
        assert not self.errors, self.errors
        return self.sent


def test_sigusr1_after_a_rename_sends_new_lines_to_a_new_file_and_loses_none(
        start_wsgate, echo_backend, tmp_path):
    path = tmp_path / "logs" / "access.log"
    rotated = path.with_name("access.log.1")
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("echo1"))})
    cfg["log"]["access"] = str(path)
    gate = start_wsgate(cfg)

    # Requests keep coming while the file is renamed and wsgate reopens it, as under logrotate.
    traffic = Traffic(gate.port)
    try:
        wait_for(lambda: len(sequence_numbers(path)) >= 20, what="lines before the rename")
        os.rename(path, rotated)
        os.kill(gate.pid, signal.SIGUSR1)
        gate.wait_line(r"SIGUSR1: access log reopened")
        wait_for(lambda: len(sequence_numbers(path)) >= 20, what="lines in the new file")
    finally:
        sent = traffic.stop()

    wait_for(lambda: len(sequence_numbers(rotated)) + len(sequence_numbers(path)) >= sent,
             what=f"{sent} lines over both files")
    old, new = sequence_numbers(rotated), sequence_numbers(path)
    assert old and new
    assert old + new == list(range(sent))  # each once, in order, the old file first
    # The renamed file is closed once its lines are written; the new one stays open.
    wait_for(lambda: str(rotated) not in open_files(gate.pid), what="the old file closed")
    assert str(path) in open_files(gate.pid)
    assert gate.stdout() == ""


def test_logrotate_accepts_the_packaged_stanza():
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    assert Path(logrotate).exists(), "logrotate is missing: packaging/install-deps.sh installs it"
    result = subprocess.run([logrotate, "-d", "-s", "/dev/null", str(LOGROTATE_STANZA)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    stanza = LOGROTATE_STANZA.read_text()
    for directive in ("daily", "rotate 14", "compress", "delaycompress", "missingok",
                      "notifempty", "postrotate", "systemctl kill -s USR1 wsgate.service"):
        assert re.search(rf"^\s*{re.escape(directive)}\b", stanza, re.MULTILINE), directive


def test_logrotate_with_the_packaged_stanza_rotates_and_wsgate_writes_on_in_a_new_file(
        start_wsgate, echo_backend, connect, tmp_path):
    logs = tmp_path / "logs"
    path = logs / "access.log"
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("echo1"))})
    cfg["log"]["access"] = str(path)
    gate = start_wsgate(cfg)
    conn = connect(gate.port)
    for i in range(3):
        assert conn.request("GET", f"/seq/{i}").status == 200
    wait_for(lambda: len(sequence_numbers(path)) == 3, what="three lines")

    # The packaged stanza, for this directory and this process (the signal is the same).
    stanza = LOGROTATE_STANZA.read_text().replace("/var/log/wsgate/", f"{logs}/")
    stanza = re.sub(r"postrotate\n.*?endscript",
                    f"postrotate\n        kill -USR1 {gate.pid}\n    endscript", stanza,
                    flags=re.DOTALL)
    config = tmp_path / "logrotate.conf"
    config.write_text(stanza)
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    result = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "logrotate.state"),
                             str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    gate.wait_line(r"SIGUSR1: access log reopened")

    for i in range(3, 6):
        assert conn.request("GET", f"/seq/{i}").status == 200
    wait_for(lambda: len(sequence_numbers(path)) == 3, what="three lines in the new file")
    assert sequence_numbers(logs / "access.log.1") == [0, 1, 2]  # delaycompress: plain
    assert sequence_numbers(path) == [3, 4, 5]


# --- a reader that stops reading --------------------------------------------------------------


class UndrainedWsgate(harness.Wsgate):
    """wsgate whose stdout (the access log) is a pipe that nobody reads."""

    def _spawn(self, argv, nofile=None):
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)

    def stdout(self):
        return ""


@pytest.fixture
def undrained_wsgate(wsgate_bin, tmp_path):
    started = []

    def start(config):
        gate = UndrainedWsgate(wsgate_bin, tmp_path, label="undrained")
        started.append(gate)
        return gate.start(config)

    yield start
    for gate in started:
        gate.stop()
        gate.proc.stdout.close()
        print(gate.report())


# Paths this long make each access line about 8 KiB: a few hundred fill the pipe (64 KiB)
# and wsgate's queue (4 MiB).
LONG_PATH = "/flood/" + "x" * 8000
PROMPT = 2.0  # seconds: what one request or echo may take while the log is stuck


def flood(gate, requests):
    """`requests` pipelined GETs of LONG_PATH on each of four connections; every answer
    must come within the deadline."""
    conns = [harness.Conn.open(gate.port) for _ in range(4)]
    try:
        batch = build_request("GET", LONG_PATH) * requests
        for conn in conns:
            conn.send(batch)
        deadline = Deadline(10)
        for conn in conns:
            for _ in range(requests):
                assert conn.read_response(timeout=deadline.remaining()).status == 200
    finally:
        for conn in conns:
            conn.close()


def stuck_gateway(undrained_wsgate, echo_backend):
    """wsgate (with an admin listener) whose stdout nobody reads, flooded until its access
    log drops lines: (the gateway, its config, the first drop count it warned about)."""
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("e1"))})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = undrained_wsgate(cfg)
    dropped = re.compile(r"access log: (\d+) lines dropped \(writer too slow\)")
    deadline = Deadline(60)
    while not dropped.search(gate.stderr()):
        assert not deadline.expired(), "no line was ever dropped"
        flood(gate, 50)
    return gate, cfg, int(dropped.search(gate.stderr()).group(1))


def test_a_reader_that_stops_reading_costs_dropped_lines_not_a_stalled_event_loop(
        undrained_wsgate, echo_backend, connect):
    gate, _, warned = stuck_gateway(undrained_wsgate, echo_backend)
    assert warned > 0
    # The same count on /metrics.
    status, metrics = harness.admin_request(harness.admin_port(gate), "GET", "/metrics")
    assert status == 200
    counted = re.search(r"^wsgate_access_log_dropped_total (\d+)$", metrics, re.MULTILINE)
    assert counted, metrics
    assert int(counted.group(1)) >= warned

    # With the pipe full and the queue full, each request and each echo is still prompt.
    for i in range(20):
        conn = connect(gate.port)
        started = time.monotonic()
        assert conn.request("GET", f"/after/{i}", timeout=PROMPT).status == 200
        assert conn.upgrade("/ws", timeout=PROMPT).status == 101
        conn.send_frame(wsproto.OP_TEXT, b"still here")
        assert conn.recv_message(timeout=PROMPT) == (wsproto.OP_TEXT, b"still here")
        assert time.monotonic() - started < PROMPT
        conn.close()

    # And a stuck reader does not hold the exit for more than the writer's give-up time.
    started = time.monotonic()
    assert gate.stop(timeout=10) == 0
    assert time.monotonic() - started < 5.0


def test_a_reload_to_a_file_gets_lines_there_while_the_old_pipe_is_stuck(
        undrained_wsgate, echo_backend, connect, tmp_path):
    """Lines queued for a stuck pipe are given up on (dropped, counted) once a new target
    waits, so the file a reload (or SIGUSR1) names gets the lines that follow."""
    gate, cfg, _ = stuck_gateway(undrained_wsgate, echo_backend)

    path = tmp_path / "after.log"
    cfg["log"]["access"] = str(path)
    gate.config_path.write_text(harness.to_yaml(cfg))
    status, body = harness.admin_request(harness.admin_port(gate), "POST", "/reload")
    assert status == 200, body

    def arrived():
        conn = connect(gate.port)
        assert conn.request("GET", "/to-the-file", (("Connection", "close"),),
                            timeout=PROMPT).status == 200
        text = path.read_text() if path.exists() else ""
        return "/to-the-file" in text

    wait_for(arrived, timeout=10.0, what="a line in the reloaded access log file")
