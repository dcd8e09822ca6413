"""Reloading the config while wsgate serves (SIGHUP, POST /reload, `watch: true`) and
stopping it (SIGTERM): what an operator relies on. Kept listeners keep their sockets; a
backend whose pool, name and address stay keeps its live counts and takes a new weight in
place; a removed backend's or listener's sessions get close 1012 spread over drain_spread and
the others are untouched; a broken file is refused and the running config stays; kept-alive
HTTP connections take the new config at their next request while open tunnels keep theirs;
SIGTERM drains and exits 0, a second SIGTERM exits at once."""

import hashlib
import json
import os
import re
import selectors
import signal
import socket
import threading
import time
from collections import Counter

import wsproto
from harness import admin_port, admin_request as admin
from harness import (ConnectionClosed, Conn, Deadline, build_request, gateway_config, pool,
                     route, switching_protocols, to_yaml, wait_for)


# --- helpers ------------------------------------------------------------------------------


def with_admin(cfg):
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    return cfg


def free_port():
    """A loopback port nobody listens on now (the kernel's pick for port 0, released)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def write_config(gate, cfg):
    """Replaces the config file the way an editor or a deploy tool does: a temporary file in
    the same directory, renamed over it (a reader never sees half a file)."""
    text = cfg if isinstance(cfg, str) else to_yaml(cfg)
    temp = gate.config_path.with_name(gate.config_path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, gate.config_path)
    return text


def reload(gate, port, cfg=None):
    """Writes `cfg` (if given), POST /reload; returns (status, parsed JSON body)."""
    if cfg is not None:
        write_config(gate, cfg)
    status, body = admin(port, "POST", "/reload")
    return status, json.loads(body)


def reload_ok(gate, port, cfg, generation, changes):
    status, answer = reload(gate, port, cfg)
    assert (status, answer) == (200, {"result": "ok", "generation": generation,
                                      "changes": changes}), (status, answer)


def status_of(port):
    status, body = admin(port, "GET", "/status")
    assert status == 200, (status, body)
    return json.loads(body)


def active_counts(port, pool_name="app"):
    return {b["name"]: b["active"] for b in status_of(port)["pools"][pool_name]["backends"]}


def metric_values(text):
    """Prometheus text -> {series: value}, with the HELP and TYPE lines left out."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def open_websocket(gate, connect, path="/ws", port=None):
    """A client with an open WebSocket session through wsgate; (conn, backend name)."""
    conn = connect(port or gate.port)
    response = conn.upgrade(path)
    assert response.status == 101, (response.status, response.body)
    return conn, response.header("x-backend")


def echoes(conn, payload=b"still here"):
    """The session echoes one message (and nothing else, a Close, came first)."""
    conn.send_frame(wsproto.OP_TEXT, payload)
    assert conn.recv_message() == (wsproto.OP_TEXT, payload)


def close_websocket(conn):
    """The client's closing handshake: Close 1000, the echo, then the end of the stream."""
    conn.send_close(wsproto.CLOSE_NORMAL)
    frames = conn.frames_until_eof()
    assert [f.opcode for f in frames] == [wsproto.OP_CLOSE], frames
    conn.close()


def answer_1012(conn, timeout):
    """Waits for wsgate's Close 1012, answers it, and sees the end of the stream."""
    close = conn.recv_frame(timeout=timeout)
    assert close.opcode == wsproto.OP_CLOSE, close
    assert wsproto.parse_close(close.payload)[0] == 1012, close.payload
    conn.send_frame(wsproto.OP_CLOSE, close.payload)
    assert conn.frames_until_eof(timeout=5) == []


def arrival_delays(conns, since, timeout):
    """For each conn, how long after `since` something first arrived on it."""
    pending = {c.sock: c for c in conns}
    delays = {}
    sel = selectors.DefaultSelector()
    for sock in pending:
        sel.register(sock, selectors.EVENT_READ)
    deadline = Deadline(timeout)
    try:
        while pending:
            ready = sel.select(deadline.remaining())
            if not ready:
                raise AssertionError(f"{len(pending)} of {len(conns)} sessions got nothing "
                                     f"within {timeout}s")
            now = time.monotonic()
            for key, _ in ready:
                sel.unregister(key.fileobj)
                delays[pending.pop(key.fileobj)] = now - since
    finally:
        sel.close()
    return delays


def refuses(port):
    """Whether a connection to `port` is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def probe(port, path="/probe", timeout=5.0):
    """(status, body) of one GET on a fresh connection that ends after it."""
    conn = Conn.open(port, timeout=timeout)
    try:
        response = conn.request("GET", path, (("Connection", "close"),), timeout=timeout)
        return response.status, response.body
    finally:
        conn.close()


def stop_with(gate, sig):
    """Sends `sig` to wsgate; the fixture does not count its exit as a crash."""
    gate.stopped_by_us = True
    gate.proc.send_signal(sig)


def exit_code_within(gate, seconds):
    """Waits for wsgate to exit; (exit code, seconds it took)."""
    started = time.monotonic()
    code = gate.proc.wait(seconds)
    return code, time.monotonic() - started


def named_websocket_echo(conn, backend):
    """Completes the upgrade with X-Backend: its name, echoes every frame; notes the code of
    the Close it gets under "closes" (and echoes it)."""
    request = conn.read_request(timeout=10)
    if request is None:
        return
    conn.send(switching_protocols(request, extra=(("X-Backend", backend.name),)))
    for frame in backend.frames(conn):
        conn.send(wsproto.encode_frame(frame.opcode, frame.payload, fin=frame.fin))
        if frame.opcode == wsproto.OP_CLOSE:
            backend.append("closes", wsproto.parse_close(frame.payload)[0])
            return


# --- reloads under load ------------------------------------------------------------------


class ChattingSessions(threading.Thread):
    """Keeps open WebSocket sessions talking: each sends a text message every `period`
    seconds (the sends staggered over the period) and expects exactly its echo back. Any
    other frame (a Close), the end of the stream or an echo later than 5 s is a problem,
    noted in `problems`. One thread, one selector: 300 sessions stay light."""

    def __init__(self, conns, period):
        super().__init__(daemon=True, name="chatting-sessions")
        self.conns = conns
        self.period = period
        self.decoders = [wsproto.FrameDecoder() for _ in conns]
        self.pending = [None] * len(conns)
        self.sent_at = [0.0] * len(conns)
        self.echoed = [0] * len(conns)
        self.late = set()
        self.problems = []
        self.stopping = threading.Event()
        self.selector = selectors.DefaultSelector()
        for i, conn in enumerate(conns):
            conn.sock.setblocking(False)
            self.selector.register(conn.sock, selectors.EVENT_READ, i)

    def run(self):
        step = self.period / len(self.conns)
        turn, following = 0, time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            while following <= now:
                self._send(turn % len(self.conns), now, turn // len(self.conns))
                turn += 1
                following += step
            self._receive(max(0.0, min(following - time.monotonic(), 0.05)))
        # The last messages' echoes, then the sockets go back to the blocking Conn.
        deadline = Deadline(5.0)
        while any(p is not None for p in self.pending) and not deadline.expired():
            self._receive(0.05)
        for i, payload in enumerate(self.pending):
            if payload is not None:
                self.problems.append(f"session {i}: no echo of {payload!r}")
        self.selector.close()

    def _send(self, i, now, round_):
        if self.pending[i] is not None:
            if now - self.sent_at[i] > 5.0 and i not in self.late:
                self.late.add(i)
                self.problems.append(f"session {i}: no echo of {self.pending[i]!r} in 5 s")
            return
        payload = f"session {i} round {round_}".encode()
        try:
            self.conns[i].sock.sendall(wsproto.encode_frame(wsproto.OP_TEXT, payload, mask=True))
        except OSError as e:
            self.problems.append(f"session {i}: send failed: {e!r}")
            return
        self.pending[i], self.sent_at[i] = payload, now

    def _receive(self, timeout):
        for key, _ in self.selector.select(timeout):
            i = key.data
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                data, error = b"", repr(e)
            else:
                error = "end of stream"
            if not data:
                self.problems.append(f"session {i}: {error}")
                self.selector.unregister(key.fileobj)
                continue
            for frame in self.decoders[i].feed(data):
                if frame.opcode == wsproto.OP_TEXT and frame.payload == self.pending[i]:
                    self.pending[i] = None
                    self.echoed[i] += 1
                else:
                    self.problems.append(f"session {i}: unexpected frame {frame.opcode:#x} "
                                         f"{frame.payload[:60]!r}")


class NewSessions(threading.Thread):
    """Opens session after session: upgrade, one echo, the closing handshake. Every failure
    (refused, reset, a status other than 101, a missing echo) is noted in `failures`."""

    def __init__(self, port):
        super().__init__(daemon=True, name="new-sessions")
        self.port = port
        self.done = 0
        self.failures = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            conn = None
            try:
                conn = Conn.open(self.port)
                response = conn.upgrade("/ws")
                if response.status != 101:
                    self.failures.append(f"upgrade answered {response.status}")
                    continue
                payload = f"new {self.done}".encode()
                conn.send_frame(wsproto.OP_TEXT, payload)
                got = conn.recv_message()
                if got != (wsproto.OP_TEXT, payload):
                    self.failures.append(f"echo: {got!r}")
                    continue
                conn.send_close(wsproto.CLOSE_NORMAL)
                frames = conn.frames_until_eof()
                if [f.opcode for f in frames] != [wsproto.OP_CLOSE]:
                    self.failures.append(f"closing handshake: {frames!r}")
                    continue
                self.done += 1
            except (OSError, ConnectionClosed, AssertionError) as e:
                self.failures.append(repr(e))
            finally:
                if conn is not None:
                    conn.close()


SESSIONS = 300
RELOADS = 20
RELOAD_EVERY = 0.5  # seconds: 20 reloads in 10 s


def test_twenty_reloads_in_ten_seconds_drop_no_session_refuse_no_connect_and_leak_no_descriptor(
        start_wsgate, echo_backend, connect):
    a, b = echo_backend("a"), echo_backend("b")
    extra_port = free_port()

    def config(variant):
        """A: `/` to the pool, weights 1 and 2, one listener. B: `/ws` to the pool, weights 2
        and 1, a second listener, /probe answered differently."""
        cfg = gateway_config(
            [route(respond=(200, f"config {variant}\n"), path_prefix="/probe"),
             route("app", path_prefix="/" if variant == "A" else "/ws")],
            {"app": pool(a, b)}, workers=2,
            timeouts={"drain": "5s", "drain_spread": "1s"})
        weights = (1, 2) if variant == "A" else (2, 1)
        for backend, weight in zip(cfg["pools"]["app"]["backends"], weights):
            backend["weight"] = weight
        if variant == "B":
            cfg["listeners"].append({"name": "extra", "listen": f"127.0.0.1:{extra_port}"})
        return with_admin(cfg)

    gate = start_wsgate(config("A"))
    port = admin_port(gate)
    baseline = gate.open_fds()
    sessions = [open_websocket(gate, connect)[0] for _ in range(SESSIONS)]
    chatting = ChattingSessions(sessions, period=0.5)
    opening = NewSessions(gate.port)
    chatting.start()
    opening.start()
    try:
        started = time.monotonic()
        for n in range(1, RELOADS + 1):
            # The pace of the reloads is the scenario: one every RELOAD_EVERY seconds.
            time.sleep(max(0.0, started + n * RELOAD_EVERY - time.monotonic()))
            variant = "B" if n % 2 else "A"
            opened, closed = (1, 0) if variant == "B" else (0, 1)
            reload_ok(gate, port, config(variant), n + 1,
                      f"listeners kept=1 opened={opened} closed={closed} "
                      "backends kept=2 added=0 removed=0 updated=2")
            assert probe(gate.port) == (200, f"config {variant}\n".encode())
            if variant == "B":
                assert probe(extra_port) == (200, b"config B\n")
            else:  # the workers close their sockets when they take the new config
                wait_for(lambda: refuses(extra_port), what="the extra listener to close")
    finally:
        opening.stopping.set()
        chatting.stopping.set()
        opening.join(10)
        chatting.join(10)
    assert not opening.is_alive() and not chatting.is_alive()

    assert opening.failures == [], f"{len(opening.failures)} new sessions failed: " \
        f"{opening.failures[:10]}"
    assert opening.done >= 100, f"only {opening.done} new sessions in {RELOADS} reloads"
    assert chatting.problems == [], chatting.problems[:10]
    assert min(chatting.echoed) >= 15, f"a session echoed only {min(chatting.echoed)} times"
    for conn in sessions:  # every one of the 300 still echoes, then closes cleanly
        echoes(conn, b"after the reloads")
    for conn in sessions:
        close_websocket(conn)

    # The last reload went back to config A (one listener): once every session has closed,
    # wsgate holds exactly the descriptors it held before the first session and reload;
    # the extra listener's (one socket per worker, and the main thread's copy of each) are
    # gone with it.
    wait_for(lambda: gate.open_fds() == baseline, timeout=5,
             what=f"wsgate's descriptors back to {baseline} (now {gate.open_fds()})")
    config_status = status_of(port)["config"]
    assert (config_status["generation"], config_status["reloads_succeeded"],
            config_status["reloads_failed"]) == (RELOADS + 1, RELOADS, 0)


# --- a removed backend ------------------------------------------------------------------------


def test_a_reload_that_removes_a_backend_sends_its_sessions_1012_and_new_ones_elsewhere(
        start_wsgate, fake_backend, connect):
    a = fake_backend(named_websocket_echo, "a")
    b = fake_backend(named_websocket_echo, "b")
    timeouts = {"drain": "5s", "drain_spread": "1s"}
    gate = start_wsgate(with_admin(gateway_config([route("app")], {"app": pool(a, b)},
                                                  timeouts=timeouts)))
    port = admin_port(gate)
    sessions = [open_websocket(gate, connect) for _ in range(6)]
    on_a = [conn for conn, name in sessions if name == "a"]
    on_b = [conn for conn, name in sessions if name == "b"]
    assert (len(on_a), len(on_b)) == (3, 3), sessions  # round robin

    reloaded_at = time.monotonic()
    reload_ok(gate, port, with_admin(gateway_config([route("app")], {"app": pool(b)},
                                                    timeouts=timeouts)),
              2, "listeners kept=1 opened=0 closed=0 backends kept=1 added=0 removed=1 updated=0")
    delays = arrival_delays(on_a, reloaded_at, timeout=4.0)
    assert max(delays.values()) < 1.0 + 0.5, f"a 1012 came after drain_spread: {delays}"
    for conn in on_a:
        answer_1012(conn, timeout=1.0)
    for conn in on_b:  # untouched: no Close came first, and they still echo
        echoes(conn)
    assert {open_websocket(gate, connect)[1] for _ in range(4)} == {"b"}

    # wsgate told the removed backend it was going away (1001), and logged why.
    wait_for(lambda: len(a.notes.get("closes", [])) == 3, what="a's three closes")
    assert a.notes["closes"] == [wsproto.CLOSE_GOING_AWAY] * 3
    assert "closes" not in b.notes
    for conn in on_a:
        record = gate.access_for(conn)[0]
        assert (record["close_code"], record["close_by"]) == (1012, "wsgate"), record
    assert [x["name"] for x in status_of(port)["pools"]["app"]["backends"]] == ["b"]


# --- a weight edit --------------------------------------------------------------------------


def test_a_weight_edit_keeps_least_conn_counts_and_new_sessions_follow_the_new_weights(
        start_wsgate, echo_backend, connect):
    a, b = echo_backend("a"), echo_backend("b")

    def config(weight_b):
        cfg = gateway_config([route("app")], {"app": pool(a, b)}, workers=2)
        cfg["pools"]["app"]["policy"] = "least_conn"
        cfg["pools"]["app"]["backends"][1]["weight"] = weight_b
        return with_admin(cfg)

    gate = start_wsgate(config(1))
    port = admin_port(gate)
    sessions = [open_websocket(gate, connect) for _ in range(4)]
    counts = Counter(name for _, name in sessions)
    assert counts == {"a": 2, "b": 2}, counts
    wait_for(lambda: active_counts(port) == counts, what=f"/status active {dict(counts)}")

    reload_ok(gate, port, config(3), 2,
              "listeners kept=1 opened=0 closed=0 backends kept=2 added=0 removed=0 updated=1")
    # The same Backend objects, with their counts: replaced ones would start from 0 (and the
    # old sessions' leases would be given back to objects nobody picks any more).
    assert active_counts(port) == counts
    weights = {"a": 1, "b": 3}
    for _ in range(8):
        conn, name = open_websocket(gate, connect)
        other = "b" if name == "a" else "a"
        # least_conn: the pick had no more active sessions per unit of weight than the other.
        assert counts[name] * weights[other] <= counts[other] * weights[name], (name, counts)
        counts[name] += 1
        sessions.append((conn, name))
    assert counts == {"a": 3, "b": 9}, counts  # 12 sessions at 1:3, whatever the ties gave
    wait_for(lambda: active_counts(port) == counts, what=f"/status active {dict(counts)}")

    # Closing sessions opened before the reload gives their counts back to the same objects.
    for conn, name in [s for s in sessions if s[1] == "b"][:3]:
        close_websocket(conn)
        counts[name] -= 1
    wait_for(lambda: active_counts(port) == counts, what=f"/status active {dict(counts)}")


# --- refused reloads ----------------------------------------------------------------------------


def test_a_broken_file_or_an_unknown_key_is_refused_and_the_running_config_keeps_serving(
        start_wsgate, echo_backend, connect):
    cfg = with_admin(gateway_config([route("app")], {"app": pool(echo_backend("a"))}))
    gate = start_wsgate(cfg)
    port = admin_port(gate)
    path = str(gate.config_path)
    running = hashlib.sha256(gate.config_path.read_bytes()).hexdigest()
    session, _ = open_websocket(gate, connect)

    # Broken YAML: an unclosed flow sequence.
    write_config(gate, to_yaml(cfg) + "extra: [1, 2\n")
    status, answer = reload(gate, port)
    assert status == 400, (status, answer)
    assert (answer["result"], answer["generation"]) == ("failed", 1), answer
    assert len(answer["errors"]) >= 1 and \
        re.match(re.escape(path) + r":\d+:\d+: ", answer["errors"][0]), answer
    echoes(session)
    echoes(open_websocket(gate, connect)[0])

    # An unknown key: the error points at it, line and column.
    cfg["listeners"][0]["lisen"] = "127.0.0.1:0"
    text = write_config(gate, cfg)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if "lisen" in l)
    column = text.splitlines()[line - 1].index("lisen") + 1
    status, answer = reload(gate, port)
    assert status == 400, (status, answer)
    assert (answer["result"], answer["generation"]) == ("failed", 1), answer
    unknown = answer["errors"][0]
    assert unknown.startswith(f"{path}:{line}:{column}: "), (unknown, line, column)
    assert "lisen" in unknown, unknown
    echoes(session)
    echoes(open_websocket(gate, connect)[0])

    # SIGHUP: the same refusal, in the log.
    gate.proc.send_signal(signal.SIGHUP)
    gate.wait_line(r"reload requested by SIGHUP")
    gate.wait_line(r"reload failed, the running config stays: " + re.escape(unknown) + "$")
    echoes(session)
    echoes(open_websocket(gate, connect)[0])

    wait_for(lambda: status_of(port)["config"]["reloads_failed"] == 3, what="3 failed reloads")
    # The digest is the running snapshot's file, not the broken one now on disk.
    assert status_of(port)["config"] == {"file": path, "sha256": running, "generation": 1,
                                         "reloads": 3, "reloads_succeeded": 0,
                                         "reloads_failed": 3, "last_reload_error": unknown}
    metrics = metric_values(admin(port, "GET", "/metrics")[1])
    assert metrics['wsgate_config_reloads_total{result="failed"}'] == 3
    assert metrics['wsgate_config_reloads_total{result="ok"}'] == 0
    assert metrics["wsgate_config_generation"] == 1


# --- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_sends_every_session_1012_within_drain_spread_and_exits_0_once_they_are_gone(
        start_wsgate, echo_backend, connect):
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("a"))}, workers=2,
                         timeouts={"drain": "10s", "drain_spread": "1s"})
    gate = start_wsgate(cfg)
    sessions = [open_websocket(gate, connect)[0] for _ in range(8)]

    stopped_at = time.monotonic()
    stop_with(gate, signal.SIGTERM)
    delays = arrival_delays(sessions, stopped_at, timeout=4.0)
    assert max(delays.values()) < 1.0 + 0.5, f"a 1012 came after drain_spread: {delays}"
    assert refuses(gate.port), "the listener still accepts after SIGTERM"
    for conn in sessions:
        answer_1012(conn, timeout=1.0)
    # The last session gone, it exits well before timeouts.drain (10 s).
    code, _ = exit_code_within(gate, 3.0)
    assert code == 0
    assert time.monotonic() - stopped_at < 4.0
    assert "every session is gone: exiting" in gate.stderr()


def test_sigterm_with_a_client_that_never_answers_the_1012_exits_0_at_timeouts_drain(
        start_wsgate, echo_backend, connect):
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("a"))},
                         timeouts={"drain": "2s", "drain_spread": "0s", "close": "30s"})
    gate = start_wsgate(cfg)
    silent, _ = open_websocket(gate, connect)

    stopped_at = time.monotonic()
    stop_with(gate, signal.SIGTERM)
    close = silent.recv_frame(timeout=2.0)
    assert (close.opcode, wsproto.parse_close(close.payload)[0]) == (wsproto.OP_CLOSE, 1012)
    # The client does not answer; timeouts.close (30 s) is longer than timeouts.drain (2 s):
    # the process cuts the session and exits at the drain deadline.
    code, _ = exit_code_within(gate, 6.0)
    waited = time.monotonic() - stopped_at
    assert code == 0
    assert 2.0 - 0.2 < waited < 2.0 + 1.5, waited
    assert silent.is_closed_within(1.0)
    record = gate.access_for(silent)[0]
    assert (record["reason"], record["close_code"], record["close_by"]) == \
        ("shutdown", 1012, "wsgate"), record
    assert 2000 - 200 < record["duration_ms"] < 2000 + 1000, record


def test_a_second_sigterm_exits_at_once_cutting_the_sessions_still_draining(
        start_wsgate, echo_backend, connect):
    cfg = gateway_config([route("app")], {"app": pool(echo_backend("a"))}, workers=2,
                         timeouts={"drain": "60s", "drain_spread": "60s"})
    gate = start_wsgate(cfg)
    sessions = [open_websocket(gate, connect)[0] for _ in range(4)]

    stop_with(gate, signal.SIGTERM)
    gate.wait_line(r"SIGTERM: shutting down")
    assert gate.running()
    again_at = time.monotonic()
    gate.proc.send_signal(signal.SIGTERM)
    code, _ = exit_code_within(gate, 3.0)
    assert code == 0
    assert time.monotonic() - again_at < 1.0
    for conn in sessions:  # cut (a 1012 may have come first, drawn early in the 60 s)
        conn.frames_until_eof(timeout=1.0)
    assert "SIGTERM again: exiting now" in gate.stderr()


# --- listeners ------------------------------------------------------------------------------


def test_a_listener_added_by_sighup_serves_and_a_removed_one_refuses_and_drains_its_session(
        start_wsgate, echo_backend, connect):
    a = echo_backend("a")
    timeouts = {"drain": "5s", "drain_spread": "1s"}
    kept = {"name": "kept", "listen": "127.0.0.1:0"}
    old_port, new_port = free_port(), free_port()
    gate = start_wsgate(gateway_config(
        [route("app")], {"app": pool(a)}, timeouts=timeouts, workers=2,
        listeners=[kept, {"name": "old", "listen": f"127.0.0.1:{old_port}"}]))
    kept_port = gate.ports["kept"]
    fds_before = gate.open_fds()
    on_kept, _ = open_websocket(gate, connect, port=kept_port)
    on_old, _ = open_websocket(gate, connect, port=old_port)

    write_config(gate, gateway_config(
        [route("app")], {"app": pool(a)}, timeouts=timeouts, workers=2,
        listeners=[kept, {"name": "new", "listen": f"127.0.0.1:{new_port}"}]))
    reloaded_at = time.monotonic()
    gate.proc.send_signal(signal.SIGHUP)
    gate.wait_line(r"reload ok generation=2 listeners kept=1 opened=1 closed=1 "
                   r"backends kept=1 added=0 removed=0 updated=0")
    assert f"listening listener=new address=127.0.0.1:{new_port}" in gate.stderr()
    assert f"listener closed address=127.0.0.1:{old_port}; its sessions drain" in gate.stderr()

    wait_for(lambda: refuses(old_port), what="the old listener to refuse")
    conn, _ = open_websocket(gate, connect, port=new_port)
    echoes(conn)
    close_websocket(conn)
    delay = arrival_delays([on_old], reloaded_at, timeout=4.0)[on_old]
    assert delay < 1.0 + 0.5, delay
    answer_1012(on_old, timeout=1.0)
    echoes(on_kept)
    assert gate.access_for(on_old)[0]["close_code"] == 1012

    # One listener's sockets went, another's came: with the session on `kept` (client and
    # backend sockets) still open, wsgate holds two descriptors more than before any session.
    wait_for(lambda: gate.open_fds() == fds_before + 2, timeout=5,
             what=f"wsgate's descriptors at {fds_before} + 2 (now {gate.open_fds()})")


def test_two_listeners_on_port_0_each_serve_before_and_after_a_reload_that_keeps_them(
        start_wsgate):
    # configuration.md: "Two listeners may not use the same host and port (two with port 0
    # may)": each gets a port of its own from the kernel.
    def config(body):
        return with_admin(gateway_config(
            [route(respond=(200, body), path_prefix="/")], workers=2,
            listeners=[{"name": "one", "listen": "127.0.0.1:0"},
                       {"name": "two", "listen": "127.0.0.1:0"}]))

    gate = start_wsgate(config("before\n"))
    port = admin_port(gate)
    assert set(gate.ports) == {"one", "two"} and len(set(gate.ports.values())) == 2, gate.ports
    for name, listener_port in gate.ports.items():
        assert probe(listener_port, "/", timeout=2.0) == (200, b"before\n"), name

    reload_ok(gate, port, config("after\n"), 2,
              "listeners kept=2 opened=0 closed=0 backends kept=0 added=0 removed=0 updated=0")
    for name, listener_port in gate.ports.items():
        assert probe(listener_port, "/", timeout=2.0) == (200, b"after\n"), name


# --- watch: true --------------------------------------------------------------------------------


def test_watch_reloads_when_an_editor_renames_a_new_file_over_the_config_and_not_on_a_touch(
        start_wsgate, connect):
    def config(body):
        cfg = gateway_config([route(respond=(200, body), path_prefix="/")])
        cfg["watch"] = True
        return cfg

    gate = start_wsgate(config("first\n"))
    assert probe(gate.port, "/") == (200, b"first\n")

    write_config(gate, config("second\n"))  # a temporary file renamed over the config
    gate.wait_line(r"reload requested by a change of the config file")
    gate.wait_line(r"reload ok generation=2 ")
    wait_for(lambda: probe(gate.port, "/") == (200, b"second\n"), what="the new answer")

    # A touch, and a save of the same bytes: no reload. The window is the scenario: 200 ms of
    # debounce, and time to act on it.
    os.utime(gate.config_path)
    write_config(gate, config("second\n"))
    time.sleep(1.0)
    assert gate.stderr().count("reload requested") == 1, gate.stderr()
    assert probe(gate.port, "/") == (200, b"second\n")

    # A later edit is seen too.
    write_config(gate, config("third\n"))
    gate.wait_line(r"reload ok generation=3 ")
    wait_for(lambda: probe(gate.port, "/") == (200, b"third\n"), what="the third answer")


def test_watch_reloads_when_the_lua_script_alone_changes(start_wsgate, echo_backend, tmp_path):
    a = echo_backend("a")
    script = tmp_path / "route.lua"

    def answer(body):
        # Written beside, then renamed over, as an editor does.
        tmp = tmp_path / "route.lua.new"
        tmp.write_text("function on_request(req)\n"
                       f"  return {{ status = 200, body = {json.dumps(body)} }}\n"
                       "end\n")
        os.replace(tmp, script)

    answer("first\n")
    cfg = gateway_config([{"match": {"path_prefix": "/"}, "pool": "app", "lua": "on_request"}],
                         {"app": pool(a)})
    cfg["watch"] = True
    cfg["scripting"] = {"file": str(script)}
    gate = start_wsgate(cfg)
    assert probe(gate.port, "/") == (200, b"first\n")

    answer("second\n")  # the YAML is untouched
    gate.wait_line(r"reload requested by a change of the config file or script")
    gate.wait_line(r"reload ok generation=2 .* script=changed")
    wait_for(lambda: probe(gate.port, "/") == (200, b"second\n"), what="the new script's answer")

    # A script that does not compile is refused; the running one stays.
    script.write_text("function on_request(req)\n  retrun nil\nend\n")
    gate.wait_line(r"reload failed, the running config stays: .*route\.lua:2: ")
    assert probe(gate.port, "/") == (200, b"second\n")


# --- kept-alive HTTP and open tunnels -------------------------------------------------------


def test_a_kept_alive_connection_takes_the_new_routes_at_its_next_request_and_a_tunnel_keeps_going(
        start_wsgate, echo_backend, connect):
    a = echo_backend("a")
    gate = start_wsgate(with_admin(gateway_config([route("app")], {"app": pool(a)})))
    port = admin_port(gate)
    kept_alive = connect(gate.port)
    first = kept_alive.request("GET", "/page")
    assert first.status == 200 and first.json()["path"] == "/page", first
    tunnel, _ = open_websocket(gate, connect)

    # The route that went to the pool now answers 403 itself; the pool stays (unused).
    reload_ok(gate, port, with_admin(gateway_config([route(respond=(403, "closed\n"))],
                                                    {"app": pool(a)})),
              2, "listeners kept=1 opened=0 closed=0 backends kept=1 added=0 removed=0 updated=0")
    second = kept_alive.request("GET", "/page")  # the same connection, kept alive
    assert (second.status, second.body) == (403, b"closed\n"), (second.status, second.body)
    echoes(tunnel)  # the tunnel keeps the config it started with
    refused = connect(gate.port).upgrade("/ws")
    assert refused.status == 403, refused.status
    assert not kept_alive.eof
    kept_alive.send(build_request("GET", "/page", (("Connection", "close"),)))
    assert kept_alive.read_response().status == 403
    echoes(tunnel)
    close_websocket(tunnel)


# --- what a reload cannot change, and health checks -------------------------------------------


def test_a_workers_change_is_reported_as_needing_a_restart_and_the_rest_applies(
        start_wsgate, echo_backend, connect):
    a = echo_backend("a")

    def config(workers, body):
        return with_admin(gateway_config(
            [route(respond=(200, body), path_prefix="/probe"), route("app")],
            {"app": pool(a)}, workers=workers))

    gate = start_wsgate(config(2, "before\n"))
    port = admin_port(gate)
    status, answer = reload(gate, port, config(1, "after\n"))
    assert status == 200, (status, answer)
    assert (answer["result"], answer["needs_restart"]) == ("ok", ["workers: 2 -> 1"]), answer
    gate.wait_line(r"reload: workers: 2 -> 1 needs a restart; the rest of the reload applies")
    conn = connect(gate.port)
    response = conn.request("GET", "/probe")
    assert (response.status, response.body) == (200, b"after\n")
    assert status_of(port)["workers"] == 2  # still running with the workers it started with


def test_health_checks_follow_a_reload_kept_backends_keep_their_state_removed_checks_stop(
        start_wsgate, fake_backend):
    from test_health import health_controlled
    a = fake_backend(health_controlled, name="a")
    b = fake_backend(health_controlled, name="b")
    b.note("healthy", False)

    def config(health, weight_b=1):
        cfg = gateway_config([route("app")], {"app": pool(a, b)})
        cfg["pools"]["app"]["backends"][1]["weight"] = weight_b
        if health:
            cfg["pools"]["app"]["health"] = {"path": "/health", "interval": "100ms",
                                             "timeout": "80ms", "rise": 1, "fall": 1}
        return with_admin(cfg)

    def health_up(port):
        return {x["name"]: x["health_up"] for x in status_of(port)["pools"]["app"]["backends"]}

    gate = start_wsgate(config(True))
    port = admin_port(gate)
    wait_for(lambda: health_up(port) == {"a": True, "b": False}, what="b down by its probes")

    # Checks kept, b kept (a weight edit): it stays down, probed as before.
    reload_ok(gate, port, config(True, weight_b=2), 2,
              "listeners kept=1 opened=0 closed=0 backends kept=2 added=0 removed=0 updated=1")
    assert health_up(port) == {"a": True, "b": False}
    probes = b.accepted
    wait_for(lambda: b.accepted > probes, what="b probed after the reload")

    # Checks removed: nothing says b is down any more, and nothing probes it.
    reload_ok(gate, port, config(False, weight_b=2), 3,
              "listeners kept=1 opened=0 closed=0 backends kept=2 added=0 removed=0 updated=0")
    assert health_up(port) == {"a": True, "b": True}
    probes = b.accepted
    time.sleep(0.5)  # five probe intervals in which no probe may come
    # At most the one already connecting when the reload landed (counted by the backend's
    # accept thread a moment later); running checks would have sent about five.
    assert b.accepted - probes <= 1, f"{b.accepted - probes} probes after the checks were removed"
