#!/usr/bin/python3
"""Measures how a config reload that removes a backend drains that backend's WebSocket
sessions (for docs/operations.md), and what it costs the sessions that stay.

    python3 tests/bench/drain_spread.py --wsgate build/wsgate

Setup, all on loopback:

- two echo backends (tests/backends/echo_backend.py --quiet), "blue1" and "green1";
- wsgate (workers: 2, timeouts.drain_spread: 10s, timeouts.drain: 30s, admin on 127.0.0.1:0,
  JSON access log to a file), routes /blue -> pool blue [blue1], / -> pool green [green1];
- a holder client (this script, --role holder): 5,000 WebSocket sessions on /blue, idle,
  noting when each gets a Close and with which code (it answers the Close, as a client must);
- a prober client (--role prober, another process so that the holder's work does not delay
  its timing): 500 sessions on /green, each sending one 32-byte text message a second (random
  phase, 500 msgs/s in all) and timing the echo.

Timeline (T = the moment POST /reload is sent): two 10 s windows with no reload
[T-20, T-10) and [T-10, T), then the reload to a config where pool blue's only backend is
"blue2" (green1's address): blue1 is removed, its 5,000 sessions drain. The holder stops at
T+40. wsgate's CPU time (utime+stime from /proc/PID/stat, summed over its process tree) is
sampled at each window edge. Both clients are raw asyncio sockets with a minimal RFC 6455
handshake and framing (client frames masked), Python stdlib only.

Prints markdown and writes it to --out (default /tmp/drain_spread_result.md). Every wait is
bounded; the run takes about 75 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import http.client
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1]
ECHO_BACKEND = SOURCE / "tests" / "backends" / "echo_backend.py"
TICKS = os.sysconf("SC_CLK_TCK")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHILD_HARD_LIMIT = 170.0  # a client process exits by itself after this many seconds


# --- a minimal WebSocket client (RFC 6455) ------------------------------------------------


def mask_bytes(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame, masked (every client->server frame must be)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


async def read_frame(reader: asyncio.StreamReader) -> Tuple[int, bytes]:
    """(opcode, payload) of the next frame (the server's frames are not masked)."""
    h = await reader.readexactly(2)
    opcode, n = h[0] & 0x0F, h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if h[1] & 0x80 else None
    payload = await reader.readexactly(n)
    return opcode, (mask_bytes(payload, key) if key else payload)


async def ws_open(port: int, path: str, timeout: float):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port +
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                     b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            raise ConnectionError(f"handshake refused: {head[:80]!r}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def open_many(port: int, path: str, n: int, concurrency: int, deadline: float):
    """Opens n sessions, at most `concurrency` handshakes at a time, each retried until
    `deadline` (monotonic). Returns (sessions, failed attempts)."""
    sem = asyncio.Semaphore(concurrency)
    failures = [0]

    async def one():
        async with sem:
            while time.monotonic() < deadline:
                try:
                    return await ws_open(port, path, timeout=5.0)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                        asyncio.LimitOverrunError, ConnectionError):
                    failures[0] += 1
                    await asyncio.sleep(0.05)
            return None

    got = await asyncio.gather(*(one() for _ in range(n)))
    return [s for s in got if s is not None], failures[0]


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def wait_stop(limit: float) -> None:
    """Returns when the parent writes a line on stdin (or closes it), or after `limit` s."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), limit)
    except asyncio.TimeoutError:
        pass


async def holder(args) -> None:
    """Holds idle sessions; notes every session's end: (time, "close", code) for a Close
    frame (answered with a Close), (time, "eof", 0) for a connection ended without one."""
    start = time.monotonic()
    sessions, failures = await open_many(args.port, args.path, args.n, args.concurrency,
                                         start + args.connect_seconds)
    events: List[list] = []

    async def watch(reader, writer):
        try:
            while True:
                opcode, payload = await read_frame(reader)
                if opcode == 8:
                    t = time.monotonic()
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    events.append([t, "close", code])
                    try:
                        writer.write(client_frame(8, payload[:2]))
                        await asyncio.wait_for(reader.read(), 5.0)  # wsgate closes the TCP side
                    except (OSError, asyncio.TimeoutError, ConnectionError):
                        pass
                    return
                if opcode == 9:
                    writer.write(client_frame(10, payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            events.append([time.monotonic(), "eof", 0])
        finally:
            writer.close()

    tasks = [asyncio.create_task(watch(r, w)) for r, w in sessions]
    emit({"event": "ready", "open": len(sessions), "wanted": args.n, "failed_attempts": failures,
          "seconds": round(time.monotonic() - start, 2)})
    await wait_stop(CHILD_HARD_LIMIT - (time.monotonic() - start))
    stopped = time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit({"event": "result", "open": len(sessions), "events": events, "stopped": stopped,
          "still_open": len(sessions) - len(events)})


async def prober(args) -> None:
    """Each session sends a 32-byte text message every `interval` s (random phase) and times
    its echo: samples (send time, round trip s). A missing echo (5 s) or an end is noted."""
    start = time.monotonic()
    sessions, failures = await open_many(args.port, args.path, args.n, args.concurrency,
                                         start + args.connect_seconds)
    samples: List[list] = []
    problems: List[list] = []
    stop = asyncio.Event()

    async def probe(i, reader, writer):
        rnd = random.Random(i)
        next_at = time.monotonic() + rnd.random() * args.interval
        try:
            while not stop.is_set():
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                if stop.is_set():
                    return
                body = b"%08d-%023d" % (i, len(samples))
                t0 = time.monotonic()
                writer.write(client_frame(1, body))
                while True:
                    opcode, payload = await asyncio.wait_for(read_frame(reader), 5.0)
                    if opcode == 8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                        problems.append([time.monotonic(), "close", code])
                        return
                    if opcode == 1 and payload == body:
                        break
                samples.append([t0, time.monotonic() - t0])
                next_at += args.interval
                if next_at < time.monotonic():  # fell behind: skip, do not burst
                    next_at = time.monotonic() + args.interval
        except asyncio.TimeoutError:
            problems.append([time.monotonic(), "echo timeout", 0])
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            problems.append([time.monotonic(), "eof", 0])
        finally:
            writer.close()

    tasks = [asyncio.create_task(probe(i, r, w)) for i, (r, w) in enumerate(sessions)]
    emit({"event": "ready", "open": len(sessions), "wanted": args.n, "failed_attempts": failures,
          "seconds": round(time.monotonic() - start, 2)})
    await wait_stop(CHILD_HARD_LIMIT - (time.monotonic() - start))
    stop.set()
    await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit({"event": "result", "open": len(sessions), "samples": samples, "problems": problems})


def client_main(args) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.alarm(int(CHILD_HARD_LIMIT) + 10)  # the last resort: SIGALRM ends the process
    asyncio.run(holder(args) if args.role == "holder" else prober(args))
    return 0


# --- the run ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> Tuple[float, float]:
    """(user, system) CPU seconds of pid and its descendants, from /proc/PID/stat."""
    user = system = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime (field 14)
            system += int(fields[12])  # stime (field 15)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return user / TICKS, system / TICKS


def uniform_reference(n: int, trials: int = 200) -> Tuple[float, int]:
    """For n moments drawn uniformly over 10 s: the 95th percentiles, over `trials` draws, of
    the 1 s buckets' coefficient of variation and of the busiest 100 ms slot."""
    rnd = random.Random(1)
    cvs, busiest = [], []
    for _ in range(trials):
        slots = [0] * 100
        for _ in range(n):
            slots[int(rnd.random() * 100)] += 1
        secs = [sum(slots[i:i + 10]) for i in range(0, 100, 10)]
        m = sum(secs) / 10
        cvs.append(statistics.pstdev(secs) / m if m else 0.0)
        busiest.append(max(slots))
    return pct(cvs, 0.95), int(pct(busiest, 0.95))


def run_delay(pid: int) -> float:
    """Seconds the threads of pid and its descendants spent runnable but waiting for a core
    (/proc/PID/task/TID/schedstat, second field)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[1])
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def cpu_pressure() -> float:
    """Seconds since boot in which some runnable task waited for a core (/proc/pressure/cpu)."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.split("total=")[1]) / 1e6
    except (OSError, IndexError, ValueError):
        pass
    return float("nan")


def machine_seconds() -> Tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat: busy is
    user+nice+system+irq+softirq+steal (guest time is inside user)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS, steal / TICKS


def wait_match(path: Path, pattern: str, proc: subprocess.Popen, seconds: float) -> re.Match:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        text = path.read_text(errors="replace") if path.exists() else ""
        m = re.search(pattern, text, re.M)
        if m:
            return m
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}):\n{text[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no line matching {pattern!r} in {path} after {seconds}s")


def pct(values: List[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s))) - 1))]


def config_text(blue: Tuple[str, object], green_port: object, access: Path) -> str:
    return f"""# drain_spread.py: pool blue's backend is {blue[0]}
workers: 2
log: {{ level: info, access: "{access}", format: json }}
listeners:
  - {{ name: public, listen: 127.0.0.1:0 }}
admin: {{ listen: 127.0.0.1:0 }}
routes:
  - match: {{ path_prefix: /blue }}
    pool: blue
  - match: {{ path_prefix: / }}
    pool: green
pools:
  blue:
    policy: round_robin
    backends:
      - {{ name: {blue[0]}, address: 127.0.0.1:{blue[1]} }}
  green:
    policy: round_robin
    backends:
      - {{ name: green1, address: 127.0.0.1:{green_port} }}
timeouts:
  idle: 1h
  drain: 30s
  drain_spread: 10s
  close: 2s
limits:
  max_connections: 9000
"""


class Run:
    def __init__(self, args):
        self.args = args
        self.wsgate = Path(args.wsgate).resolve()
        self.dir = Path(tempfile.mkdtemp(prefix="wsgate-drain-"))
        self.procs: List[subprocess.Popen] = []
        self.commands: List[str] = []

    def spawn(self, argv: List[str], log: str, stdin=subprocess.DEVNULL, stdout=None) -> subprocess.Popen:
        self.commands.append(" ".join(str(a) for a in argv))
        err = open(self.dir / log, "wb")
        proc = subprocess.Popen([str(a) for a in argv], stdin=stdin, stderr=err,
                                stdout=stdout if stdout is not None else err, cwd=self.dir)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def backend(self, name: str) -> int:
        proc = self.spawn([sys.executable, ECHO_BACKEND, "--listen", "127.0.0.1:0", "--name", name,
                           "--quiet"], f"{name}.err", stdout=subprocess.PIPE)
        line = proc.stdout.readline().decode()  # "listening HOST:PORT", printed once bound
        m = re.match(r"listening \S+:(\d+)", line)
        if not m:
            raise RuntimeError(f"echo backend {name}: {line!r}")
        return int(m.group(1))

    def client(self, role: str, port: int, path: str, n: int) -> Tuple[subprocess.Popen, dict]:
        argv = [sys.executable, Path(__file__).resolve(), "--role", role, "--port", port, "--path", path,
                "--n", n, "--concurrency", self.args.concurrency, "--connect-seconds", 60]
        proc = self.spawn(argv, f"{role}.err", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = json.loads(proc.stdout.readline() or b"{}")
        if ready.get("event") != "ready":
            raise RuntimeError(f"{role}: {ready} {(self.dir / (role + '.err')).read_text()[-2000:]}")
        return proc, ready

    def finish(self, proc: subprocess.Popen) -> dict:
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=60)
        return json.loads(out.splitlines()[-1])

    def admin(self, method: str, path: str) -> Tuple[int, str]:
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=15)
        try:
            c.request(method, path, body=b"" if method == "POST" else None)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def run(self) -> str:
        a = self.args
        blue_port = self.backend("blue1")
        green_port = self.backend("green1")
        access = self.dir / "access.log"
        conf = self.dir / "wsgate.yaml"
        conf.write_text(config_text(("blue1", blue_port), green_port, access))
        self.version = subprocess.run([str(self.wsgate), "--version"], capture_output=True,
                                      text=True, timeout=10).stdout.strip()
        gate = self.spawn([self.wsgate, "-c", conf], "wsgate.err")
        # The binary that runs (another build may replace build/wsgate meanwhile).
        self.digest = hashlib.sha256(Path(f"/proc/{gate.pid}/exe").read_bytes()).hexdigest()
        self.built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.wsgate.stat().st_mtime))
        err = self.dir / "wsgate.err"
        wait_match(err, r"\bready\b", gate, 10)
        port = int(wait_match(err, r"listening listener=public address=\S+:(\d+)", gate, 5).group(1))
        self.admin_port = int(wait_match(err, r"admin listening address=\S+:(\d+)", gate, 5).group(1))

        holder, h_ready = self.client("holder", port, "/blue/chat", a.sessions)
        prober, p_ready = self.client("prober", port, "/green/chat", a.probes)
        status_before = json.loads(self.admin("GET", "/status")[1])

        # Windows: [T-20, T-10), [T-10, T) with no reload, [T, T+10) the spread, [T+10, T+20).
        time.sleep(2.0)  # every prober session has sent a first message
        t_reload = time.monotonic() + 20.0
        edges = [t_reload + d for d in (-20, -10, 0, 10, 20, 40)]
        cpu: Dict[float, Tuple[float, float]] = {}
        mine: Dict[float, Dict[str, float]] = {}  # CPU s of every process of this run, by role
        reload_answer, reload_seconds = None, None
        for edge, rel in zip(edges, (-20, -10, 0, 10, 20, 40)):
            time.sleep(max(0.0, edge - time.monotonic()))
            cpu[rel] = cpu_seconds(gate.pid)
            own = resource.getrusage(resource.RUSAGE_SELF)
            mine[rel] = {"machine": machine_seconds()[0], "steal": machine_seconds()[1],
                         "wsgate": sum(cpu[rel]),
                         "backends": sum(sum(cpu_seconds(p.pid)) for p in self.procs[:2]),
                         "clients": sum(cpu_seconds(holder.pid)) + sum(cpu_seconds(prober.pid))
                         + own.ru_utime + own.ru_stime,
                         "pressure": cpu_pressure(), "wsgate_wait": run_delay(gate.pid),
                         "prober_wait": run_delay(prober.pid)}
            if rel == 0:
                t_reload = time.monotonic()
                # The new config: pool blue's backend is blue2 (at green1's address); blue1 is
                # removed, so its sessions drain. Written in place, then POST /reload.
                conf.write_text(config_text(("blue2", green_port), green_port, access))
                reload_answer = self.admin("POST", "/reload")
                reload_seconds = time.monotonic() - t_reload
        status_after = json.loads(self.admin("GET", "/status")[1])
        held = self.finish(holder)
        probed = self.finish(prober)
        time.sleep(0.5)
        stderr_text = err.read_text(errors="replace")
        access_lines = access.read_text(errors="replace").splitlines() if access.exists() else []
        self.mine = mine
        return self.report(t_reload, reload_answer, reload_seconds, cpu, h_ready, p_ready, held, probed,
                           status_before, status_after, stderr_text, access_lines)

    # --- the write-up -----------------------------------------------------------------------

    def report(self, t0, reload_answer, reload_seconds, cpu, h_ready, p_ready, held, probed,
               status_before, status_after, stderr_text, access_lines) -> str:
        a = self.args
        out: List[str] = []
        self.anomalies: List[str] = []
        if reload_answer[0] != 200:
            self.anomalies.append(f"the reload was answered {reload_answer[0]}: {reload_answer[1].strip()[:300]}")
        for role, ready in (("holder", h_ready), ("prober", p_ready)):
            if ready["open"] != ready["wanted"] or ready["failed_attempts"]:
                self.anomalies.append(f"{role}: {ready['open']} of {ready['wanted']} sessions opened, "
                                      f"{ready['failed_attempts']} failed attempt(s)")
        closes = [(t - t0, kind, code) for t, kind, code in held["events"]]
        got1012 = [d for d, kind, code in closes if kind == "close" and code == 1012]
        other = [(d, kind, code) for d, kind, code in closes if not (kind == "close" and code == 1012)]
        buckets = [0] * 11
        for d in got1012:
            buckets[min(10, max(0, int(d)))] += 1
        fine = [0] * 100  # 100 ms slots of the spread window
        for d in got1012:
            if 0 <= d < 10:
                fine[int(d * 10)] += 1
        in_spread = buckets[:10]
        mean = sum(in_spread) / 10
        cv = statistics.pstdev(in_spread) / mean if mean else float("nan")
        # 1012 records in wsgate's access log (close_by wsgate), by session kind.
        log1012 = log_other_blue = 0
        for line in access_lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("kind") != "websocket":
                continue
            if rec.get("close_code") == 1012:
                log1012 += 1
            elif (rec.get("backend") or "").startswith("blue/"):
                log_other_blue += 1

        out.append("## Reload drain: measured spread and cost\n")
        out.append(f"One run, `python3 tests/bench/drain_spread.py --wsgate {a.wsgate}`. "
                   f"{h_ready['open']} WebSocket sessions on backend `blue/blue1`, {p_ready['open']} on "
                   f"`green/green1`; at T, `POST /reload` with a config in which pool `blue`'s only backend "
                   f"is `blue2` (another address): `blue1` is removed and its sessions drain. "
                   f"`workers: 2`, `timeouts.drain_spread: 10s`, `timeouts.drain: 30s`, `timeouts.close: 2s`. "
                   f"The reload was answered in {reload_seconds * 1000:.0f} ms: "
                   f"`{reload_answer[0]} {reload_answer[1].strip()}`.\n")

        out.append("### 1. When the drained sessions got their close 1012\n")
        out.append("Close 1012 frames received by the clients, by second after the reload was sent "
                   f"(expected for a flat spread: {h_ready['open'] / 10:.0f} a second):\n")
        out.append("| seconds after reload | 1012 closes | |")
        out.append("|---|---:|---|")
        scale = max(buckets) or 1
        for i, n in enumerate(buckets):
            label = f"{i}-{i + 1}" if i < 10 else "10 and later"
            out.append(f"| {label} | {n} | {'#' * round(40 * n / scale)} |")
        out.append("")
        cv95, busiest95 = uniform_reference(sum(in_spread))
        out.append(f"- Over the ten 1 s buckets: mean {mean:.0f}, min {min(in_spread)}, max {max(in_spread)}, "
                   f"coefficient of variation {cv:.1%}. At 100 ms: mean {sum(fine) / 100:.1f} per slot, "
                   f"busiest {max(fine)}, emptiest {min(fine)}. For reference, {sum(in_spread)} moments drawn "
                   f"uniformly over 10 s (200 simulated draws) stay under a CV of {cv95:.1%} and a busiest "
                   f"100 ms slot of {busiest95} in 95% of draws.")
        if got1012 and (cv > 2 * cv95 or max(fine) > 2 * busiest95):
            self.anomalies.append(f"the 1012 closes are not flat: CV {cv:.1%} (uniform: < {cv95:.1%}), "
                                  f"busiest 100 ms slot {max(fine)} (uniform: <= {busiest95})")
        first = min(got1012) if got1012 else float("nan")
        last = max(got1012) if got1012 else float("nan")
        out.append(f"- First 1012 at T+{first:.3f} s, last at T+{last:.3f} s.")
        out.append("")
        out.append("| drained sessions (of " + str(h_ready['open']) + ") | count |")
        out.append("|---|---:|")
        out.append(f"| got close 1012 | {len(got1012)} |")
        kinds: Dict[str, int] = {}
        for d, kind, code in other:
            key = f"close {code}" if kind == "close" else "connection ended without a Close"
            kinds[key] = kinds.get(key, 0) + 1
        out.append(f"| got anything else | {len(other)}" +
                   (f" ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))})" if kinds else "") + " |")
        out.append(f"| not closed by T+40 s | {held['still_open']} |")
        if other or held["still_open"]:
            self.anomalies.append(f"drained sessions: {len(other)} ended otherwise than by 1012, "
                                  f"{held['still_open']} still open at T+40 s")
        # The spread counts from when the workers applied the reload (after the reload thread
        # prepared it, about the reload's answer time), and the client reads a close a little
        # later: up to T+10 s + that + 250 ms is on time.
        late = [d for d in got1012 if d >= 10.0]
        late_note = ""
        if late:
            late_note = (f"{len(late)} 1012 close(s) arrived after T+10 s, the latest at T+{max(late):.3f} s: the "
                         "spread counts from when the workers applied the reload (the reload was answered "
                         f"{reload_seconds * 1000:.0f} ms after T), and the client reads a close a little later.")
        if late and max(late) > 10.25 + reload_seconds:
            self.anomalies.append(f"{len(late)} 1012 close(s) arrived after T+10 s, the latest at "
                                  f"T+{max(late):.3f} s")
        out.append(f"| access log: WebSocket records with close_code 1012 | {log1012} |")
        out.append(f"| access log: other records of blue sessions | {log_other_blue} |")
        out.append("")
        if late_note:
            out.append(late_note)
            out.append("")

        out.append("### 2. The sessions that stay, and wsgate's CPU\n")
        windows = [(-20, -10, "T-20 .. T-10 (no reload)"), (-10, 0, "T-10 .. T (no reload)"),
                   (0, 10, "T .. T+10 (the drain spread)"), (10, 20, "T+10 .. T+20 (after)")]
        out.append(f"{p_ready['open']} sessions on `green1`, each echoing one 32-byte message a second "
                   "(round trip measured by the client, which runs on the same 2 cores as everything "
                   "else; samples by send time):\n")
        out.append("| window | echoes | p50 ms | p99 ms | max ms | wsgate CPU s (user+sys) | of which sys |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for lo, hi, label in windows:
            rtts = [r for t, r in probed["samples"] if lo <= t - t0 < hi]
            u = cpu[hi][0] - cpu[lo][0]
            s = cpu[hi][1] - cpu[lo][1]
            if rtts:
                lat = f"{len(rtts)} | {pct(rtts, .5) * 1e3:.2f} | {pct(rtts, .99) * 1e3:.2f} | {max(rtts) * 1e3:.2f}"
            else:
                lat = "0 | - | - | -"
            out.append(f"| {label} | {lat} | {u + s:.2f} | {s:.2f} |")
        out.append("")
        quiet = [(cpu[0][0] + cpu[0][1]) - (cpu[-10][0] + cpu[-10][1]),
                 (cpu[-10][0] + cpu[-10][1]) - (cpu[-20][0] + cpu[-20][1])]
        spread = (cpu[10][0] + cpu[10][1]) - (cpu[0][0] + cpu[0][1])
        whole = (cpu[40][0] + cpu[40][1]) - (cpu[0][0] + cpu[0][1])
        quiet40 = 4 * statistics.mean(quiet)
        out.append(f"- wsgate CPU over the 10 s spread window: {spread:.2f} s, against "
                   f"{statistics.mean(quiet):.2f} s for 10 s with no reload: the drain of "
                   f"{len(got1012)} sessions cost about {spread - statistics.mean(quiet):.2f} CPU s "
                   f"({(spread - statistics.mean(quiet)) * 1e6 / max(1, len(got1012)):.0f} us a session, "
                   f"access log line included). T .. T+40: {whole:.2f} s (no-reload rate: {quiet40:.2f} s). "
                   "Most of it is system time: closing two TCP connections a session, and on loopback the "
                   "kernel's work for the receiving peer is charged to the sender.")
        out.append("- The staying sessions' latency is measured by a Python client on a 2-core machine that "
                   "also runs the Python holder and echo backends, whose own CPU doubles while they handle "
                   "500 closes a second (see below): part of the rise during the spread is that contention.")
        out.append("")
        out.append("Where the machine's CPU went, per 10 s window (CPU s, of the 2 cores' 20 s). \"others\" is "
                   "the machine's busy time (/proc/stat, sampled at each tick, so it undercounts short bursts on a "
                   "lightly loaded machine) less this run's processes: only a large figure means much. \"CPU "
                   "pressure\" is the time some task waited for a core (/proc/pressure/cpu); the last two columns "
                   "are how long wsgate's threads and the prober waited for one (/proc/PID/task/*/schedstat).\n")
        out.append("| window | whole machine | wsgate | echo backends | clients | others | CPU pressure s "
                   "| wsgate waited s | prober waited s |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        m = self.mine
        self.noisy = []
        for lo, hi, label in windows:
            d = {k: m[hi][k] - m[lo][k] for k in m[hi]}
            others = d["machine"] - d["wsgate"] - d["backends"] - d["clients"]
            if others > 2.0:
                self.noisy.append(f"{label}: others {others:.1f} CPU s")
            out.append(f"| {label} | {d['machine']:.2f} | {d['wsgate']:.2f} | {d['backends']:.2f} | "
                       f"{d['clients']:.2f} | {max(0.0, others):.2f} | {d['pressure']:.2f} | "
                       f"{d['wsgate_wait']:.3f} | {d['prober_wait']:.3f} |")
        out.append("")
        if self.noisy:
            out.append(f"- **Noisy:** other processes used more than 2 CPU s in: {'; '.join(self.noisy)}. "
                       "Latencies and 1012 arrival times there include waiting for a core.")
        problems = probed["problems"]
        if problems:
            self.anomalies.append(f"{len(problems)} problem(s) on the staying sessions: {problems[:5]}")
        if self.noisy:
            self.anomalies.append("other processes on the machine used more than 2 CPU s (of 20) in: "
                                  + ", ".join(self.noisy))
        out.append(f"- The staying sessions: {len(problems)} problem(s) (close frames, ends, missing "
                   f"echoes){': ' + str(problems[:5]) if problems else ''}. wsgate's `/status` sessions: "
                   f"{status_before.get('sessions')} before, {status_after.get('sessions')} at T+40.")
        out.append("")

        levels: Dict[str, int] = {}
        notable = []
        for line in stderr_text.splitlines():
            parts = line.split(" ", 2)
            level = parts[1] if len(parts) > 2 else "?"
            levels[level] = levels.get(level, 0) + 1
            if level not in ("info", "debug"):
                notable.append(line)
        if notable:
            self.anomalies.append(f"{len(notable)} line(s) above info in wsgate's stderr")
        if status_after.get("sessions") != p_ready["open"]:
            self.anomalies.append(f"wsgate's /status counts {status_after.get('sessions')} sessions at "
                                  f"T+40 s, expected {p_ready['open']}")
        out.append("### wsgate's stderr\n")
        out.append("Lines by level: " + ", ".join(f"{k} {v}" for k, v in sorted(levels.items())) + ". "
                   + ("Lines above info:" if notable else "No line above info."))
        for line in notable[:10]:
            out.append(f"    {line}")
        reload_lines = [l for l in stderr_text.splitlines() if "reload" in l]
        for line in reload_lines[:4]:
            out.append(f"    {line}")
        out.append("")

        out.append("### 3. Machine, versions, commands\n")
        model = "?"
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        rev = subprocess.run(["git", "-C", str(SOURCE), "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip() or "?"
        now_digest = hashlib.sha256(self.wsgate.read_bytes()).hexdigest()
        replaced = (f" **{self.wsgate} was replaced during the run** (now sha256 {now_digest[:16]}...); "
                    "the figures are those of the binary that ran" if now_digest != self.digest else "")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        out.append(f"- `uname -r`: {platform.release()}; `nproc`: {os.cpu_count()}; CPU: {model}; "
                   f"open files (soft/hard): {nofile[0]}/{nofile[1]}")
        out.append(f"- `wsgate --version`: {self.version} (binary {self.wsgate}, modified {self.built}, "
                   f"sha256 of the running binary {self.digest[:16]}...; source tree `git describe --always "
                   f"--dirty`: {rev}); Python {platform.python_version()}.{replaced}")
        out.append("- CPU: utime+stime from /proc/PID/stat summed over wsgate's process tree, read at each "
                   "window edge. The machine is shared and noisy: compare the windows with one another, "
                   "not with other runs.")
        out.append("- Commands (run from a temporary directory holding the configs and logs):")
        out.append("")
        out.append("```")
        for c in self.commands:
            out.append(c)
        out.append("curl -X POST http://127.0.0.1:ADMIN/reload   # (sent with http.client at T)")
        out.append("```")
        out.append("")
        out.append("Config before the reload (after it: `blue1` -> `blue2` at green1's address):")
        out.append("")
        out.append("```yaml")
        out.append(config_text(("blue1", "BLUE1_PORT"), "GREEN1_PORT", Path("TMPDIR/access.log")).rstrip())
        out.append("```")
        if replaced:
            self.anomalies.append(f"{self.wsgate} was replaced during the run")
        head = ["### Anomalies\n"] + ([f"- {x}" for x in self.anomalies] or ["- none"]) + [""]
        at = out.index("### 1. When the drained sessions got their close 1012\n")
        out[at:at] = head
        return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wsgate", default=str(SOURCE / "build" / "wsgate"))
    p.add_argument("--sessions", type=int, default=5000, help="sessions on the backend the reload removes")
    p.add_argument("--probes", type=int, default=500, help="echoing sessions on the backend that stays")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight while connecting")
    p.add_argument("--out", default="/tmp/drain_spread_result.md")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    # The client processes this script starts.
    p.add_argument("--role", choices=["holder", "prober"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--connect-seconds", type=float, default=60, help=argparse.SUPPRESS)
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        return client_main(args)
    run = Run(args)
    try:
        text = run.run()
    finally:
        run.stop()
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
