#!/usr/bin/python3
"""`make soak`: wsgate (the ASan + UBSan build) under steady echo traffic while faults are
injected, then checks that nothing broke, leaked or went unexplained. docs/reliability.md.

    /usr/bin/python3 tests/soak/soak.py --wsgate build-asan/wsgate \
        --wsload build/tests/bench/wsload [--seconds 300] [--sessions 3000] [--rate 1500]

Knobs (an argument wins over its environment variable): SOAK_SECONDS, SOAK_SESSIONS,
SOAK_RATE (echoes per second over all sessions), SOAK_SIZE, SOAK_RELOAD_EVERY, SOAK_KILL_EVERY,
SOAK_DOWN (how long a killed backend stays down), SOAK_RESET_EVERY, SOAK_RESETS,
SOAK_STALL_EVERY, SOAK_STALLS, SOAK_STALL_SECONDS, SOAK_QUIET (fault-free tail), SOAK_SEED,
SOAK_RSS_TOLERANCE_MB, SOAK_WORKDIR.

Processes, all on loopback: four `wsload serve --name bN` echo backends on fixed ports, wsgate
(2 workers, one pool of three backends; configs A = b1 b2 b3 and B = b1 b2 b4 alternate, so
every reload removes one backend, whose sessions drain with 1012, and adds another), and one
`wsload soak` client process whose stdin takes the client-side faults and whose stdout carries
one JSON line per failure, reset and stall, with the session's backend (its 101's X-Backend).

Faults: reload (SIGHUP and POST /reload in turn), backend SIGKILL + restart on the same port,
client reset mid-frame (half a frame, then RST), slow reader (stops reading while a 4 MiB
burst is echoed back at it). Every client failure must be explained by one of them (see
explain()); anything else fails the run. At the end: the client closes everything, wsgate's
descriptors must be back to the baseline exactly and its RSS within the tolerance, then
SIGTERM must drain and exit 0 with no sanitizer report on stderr.

Exit status: 0 all checks passed, 1 a check failed, 2 the run itself could not be set up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

SOURCE_DIR = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
BACKENDS = ["b1", "b2", "b3", "b4"]
CONFIG_A = ["b1", "b2", "b3"]
CONFIG_B = ["b1", "b2", "b4"]
DRAIN_SPREAD_S = 2.0
DRAIN_S = 6.0
CLOSE_S = 3.0  # timeouts.close: a drained client that does not answer its 1012 is cut then
SLACK_S = 5.0  # a failure may be seen this long after the fault that caused it (ASan, load)
# ASan's allocator gives free pages back to the OS at most every 5 s
# (allocator_release_to_os_interval_ms): RSS is read after that.
RELEASE_WAIT_S = 6.0
# How a WebSocket session may end in wsgate's access log during a soak: the clients' final
# Close (and the warm-up's), the reload drains, the killed backends, the injected resets.
EXPECTED_REASONS = {"closed", "backend drained", "backend vanished", "backend reset",
                    "client reset"}
# An upgrade a dying backend could not answer (502, killed after it accepted the connect):
# its access line, whose status is not 101.
REFUSED_REASONS = {"backend closed", "backend reset", "backend connect failed", "backends failed",
                   "no backend available"}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer",
                     "ERROR: ThreadSanitizer")


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wsgate", default=str(SOURCE_DIR / "build-asan" / "wsgate"))
    p.add_argument("--wsload", default=str(SOURCE_DIR / "build" / "tests" / "bench" / "wsload"))
    p.add_argument("--workdir", default=os.environ.get("SOAK_WORKDIR") or
                   str(SOURCE_DIR / "build-asan" / "soak"))
    p.add_argument("--seconds", type=float, default=env_number("SOAK_SECONDS", 300))
    p.add_argument("--sessions", type=int, default=int(env_number("SOAK_SESSIONS", 3000)))
    p.add_argument("--rate", type=int, default=int(env_number("SOAK_RATE", 1500)))
    p.add_argument("--size", type=int, default=int(env_number("SOAK_SIZE", 256)))
    p.add_argument("--reload-every", type=float, default=env_number("SOAK_RELOAD_EVERY", 4))
    p.add_argument("--kill-every", type=float, default=env_number("SOAK_KILL_EVERY", 7))
    p.add_argument("--down", type=float, default=env_number("SOAK_DOWN", 1.5))
    p.add_argument("--reset-every", type=float, default=env_number("SOAK_RESET_EVERY", 2))
    p.add_argument("--resets", type=int, default=int(env_number("SOAK_RESETS", 5)))
    p.add_argument("--stall-every", type=float, default=env_number("SOAK_STALL_EVERY", 5))
    p.add_argument("--stalls", type=int, default=int(env_number("SOAK_STALLS", 3)))
    p.add_argument("--stall-seconds", type=float, default=env_number("SOAK_STALL_SECONDS", 3))
    p.add_argument("--quiet", type=float, default=env_number("SOAK_QUIET", 15),
                   help="seconds at the end without faults, before the clients stop")
    p.add_argument("--rounds", type=int, default=int(env_number("SOAK_ROUNDS", 3)),
                   help="client runs of seconds/rounds each against the same wsgate: RSS after "
                        "each, so growth per round tells a leak from the allocator's high-water")
    p.add_argument("--round-growth-mb", type=float,
                   default=env_number("SOAK_ROUND_GROWTH_MB", 4),
                   help="how much more RSS the last round may leave than the one before")
    p.add_argument("--seed", type=int, default=int(env_number("SOAK_SEED", 0)) or None)
    p.add_argument("--rss-tolerance-mb", type=float,
                   default=env_number("SOAK_RSS_TOLERANCE_MB", 32))
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    # Children run in the work directory: absolute paths.
    args.wsgate, args.wsload, args.workdir = (str(Path(x).resolve()) for x in
        (args.wsgate, args.wsload, args.workdir))
    return args


# --- processes -----------------------------------------------------------------------------


class Proc:
    """A child whose stdout/stderr go to files in the work directory."""

    def __init__(self, label: str, argv: List[str], workdir: Path, env=None,
                 stdin=subprocess.DEVNULL, stdout_pipe: bool = False):
        self.label = label
        self.stdout_path = workdir / f"{label}.stdout"
        self.stderr_path = workdir / f"{label}.stderr"
        self.out = open(self.stdout_path, "ab")
        self.err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=stdin,
                                     stdout=subprocess.PIPE if stdout_pipe else self.out,
                                     stderr=self.err, cwd=workdir, env=env,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()
        self.err.close()
        return self.proc.returncode

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_ports(count: int) -> List[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind((LOOPBACK, 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Backend:
    def __init__(self, name: str, port: int, wsload: str, workdir: Path):
        self.name, self.port, self.wsload, self.workdir = name, port, wsload, workdir
        self.proc: Optional[Proc] = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = Proc(f"backend-{self.name}", [self.wsload, "serve", "--listen",
                                                  f"{LOOPBACK}:{self.port}", "--name", self.name],
                         self.workdir)
        # Listening once the port takes a connection (its stdout line goes to a file).
        def up():
            if not self.proc.running():
                raise RuntimeError(f"backend {self.name} exited: {self.proc.stderr_text()}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, f"backend {self.name} on port {self.port}")

    def kill(self) -> None:
        self.proc.stop(signal.SIGKILL)

    def running(self) -> bool:
        return self.proc is not None and self.proc.running()


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- wsgate ----------------------------------------------------------------------------------


def gateway_yaml(ports: Dict[str, int], members: List[str]) -> str:
    backends = "\n".join(f"      - {{ name: {b}, address: {LOOPBACK}:{ports[b]} }}"
                         for b in members)
    return f"""# written by tests/soak/soak.py
workers: 2
log: {{ level: info, access: stdout, format: json }}
admin: {{ listen: {LOOPBACK}:0 }}
listeners:
  - {{ name: public, listen: {LOOPBACK}:0 }}
routes:
  - match: {{ path_prefix: / }}
    pool: app
pools:
  app:
    policy: least_conn
    connect_timeout: 1s
    retries: 3
    health: {{ path: /health, interval: 1s, timeout: 500ms, rise: 1, fall: 1 }}
    backends:
{backends}
timeouts:
  handshake: 10s
  backend_response: 10s
  idle: 120s
  drain: {int(DRAIN_S)}s
  drain_spread: {int(DRAIN_SPREAD_S)}s
  close: {int(CLOSE_S)}s
  queue: 5s
"""


class Gateway:
    def __init__(self, binary: str, workdir: Path, ports: Dict[str, int]):
        self.workdir, self.ports = workdir, ports
        self.config = workdir / "wsgate.yaml"
        self.members = list(CONFIG_A)
        self.config.write_text(gateway_yaml(ports, self.members))
        env = dict(os.environ)
        # As tests/CMakeLists.txt: a small quarantine, leaks checked at exit.
        env["ASAN_OPTIONS"] = "quarantine_size_mb=8:detect_leaks=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1"
        self.proc = Proc("wsgate", [binary, "-c", str(self.config)], workdir, env=env)
        text = wait_for(lambda: self._ready(), 60, "wsgate ready")
        self.port = int(re.search(r"listening listener=public address=\S+:(\d+)", text).group(1))
        self.admin = int(re.search(r"admin listening address=\S+:(\d+)", text).group(1))

    def _ready(self) -> Optional[str]:
        text = self.proc.stderr_text()
        if not self.proc.running():
            raise RuntimeError(f"wsgate exited at start:\n{text[-3000:]}")
        return text if re.search(r"\bready\b", text) and "admin listening" in text else None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.admin}{path}", timeout=10) as r:
            return r.read().decode()

    def post(self, path: str) -> str:
        req = urllib.request.Request(f"http://{LOOPBACK}:{self.admin}{path}", data=b"",
                                     method="POST")
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.read().decode()

    def metrics(self) -> Dict[str, float]:
        values: Dict[str, float] = {}
        for line in self.get("/metrics").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
        return values

    def active_on(self) -> Dict[str, int]:
        status = json.loads(self.get("/status"))
        return {b["name"]: b["active"] for b in status["pools"]["app"]["backends"]}

    def reload(self, members: List[str], via: str) -> str:
        self.members = list(members)
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(gateway_yaml(self.ports, members))
        tmp.replace(self.config)
        if via == "SIGHUP":
            self.proc.proc.send_signal(signal.SIGHUP)
            return ""
        return self.post("/reload")

    def access_log(self) -> List[dict]:
        out = []
        for line in self.proc.stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out


def metric_sum(m: Dict[str, float], prefix: str, **labels: str) -> float:
    total = 0.0
    for name, value in m.items():
        if name == prefix or name.startswith(prefix + "{"):
            if all(f'{k}="{v}"' in name for k, v in labels.items()):
                total += value
    return total


# --- the client --------------------------------------------------------------------------------


class Client:
    """`wsload soak`: commands on stdin, event lines on stdout read by a thread."""

    def __init__(self, args, workdir: Path, port: int, label: str = "wsload"):
        argv = [args.wsload, "soak", "--url", f"ws://{LOOPBACK}:{port}/soak",
                "--connections", str(args.sessions), "--rate", str(args.rate),
                "--size", str(args.size), "--echo-timeout", "15", "--reconnect-delay", "0.5"]
        self.proc = Proc(label, argv, workdir, stdin=subprocess.PIPE, stdout_pipe=True)
        self.events: List[dict] = []
        self.lines = open(workdir / f"{label}.events", "w")
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.proc.proc.stdout:
            line = raw.decode(errors="replace").strip()
            self.lines.write(line + "\n")
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                self.events.append(event)

    def snapshot(self) -> List[dict]:
        with self.lock:
            return list(self.events)

    def wait_event(self, name: str, timeout: float) -> dict:
        def seen():
            if not self.proc.running():
                raise RuntimeError(f"wsload exited: {self.proc.stderr_text()[-2000:]}")
            return next((e for e in self.snapshot() if e.get("event") == name), None)
        return wait_for(seen, timeout, f"wsload {name}")

    def command(self, text: str) -> None:
        self.proc.proc.stdin.write((text + "\n").encode())
        self.proc.proc.stdin.flush()

    def finish(self, timeout: float) -> dict:
        self.command("stop")
        self.proc.proc.stdin.close()
        self.proc.proc.wait(timeout)
        self.reader.join(10)
        self.lines.close()
        result = next((e for e in self.snapshot() if e.get("mode") == "soak"), None)
        if result is None:
            raise RuntimeError(f"wsload printed no result: {self.proc.stderr_text()[-2000:]}")
        return result


# --- attribution ----------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # reload, kill, reset, stall
    t: float
    backend: str = ""  # kill: the backend; reload: the one it removed
    added: str = ""
    via: str = ""
    affects: int = 0  # sessions it could affect (on the backend; the connections picked)
    until: float = 0.0  # kill: when the backend was back
    explained: int = 0  # failures attributed to it


def close_code(why: str) -> Optional[int]:
    m = re.search(r"\(Close (\d+)\)", why)
    return int(m.group(1)) if m else None


def classify(event: dict) -> str:
    why = event.get("why", "")
    code = close_code(why)
    if not event.get("opened"):
        return why if why.startswith("handshake") else "handshake: " + why
    if code is not None:
        return f"close {code}"
    if "reset by peer" in why:
        return "reset by wsgate"
    if "closed by peer" in why:
        return "closed without Close"
    if "timeout" in why:
        return "timeout"
    return why


def explain(event: dict, faults: List[Fault], stalls: Dict[int, List[float]],
            stall_seconds: float) -> Optional[Fault]:
    """The injected fault that explains a client failure, or None.

    - close 1012 on a session of backend B: a reload that removed B, at most
      drain_spread + SLACK before (a drained client that is stalled sees it after its stall);
    - any other end of an open session on backend B (1011, 1014, EOF, RST, a write error): a
      kill of B, or the cut of a drain of B (a stalled client cannot answer its 1012, so it is
      cut at `close` after it, or at `drain`);
    - a failed handshake (502, 503, EOF before the 101, handshake timeout): a backend down or
      killed around that moment (wsgate retries other backends, but a connect can also meet
      a backend that dies after accepting it), or a reload whose drained sessions' backend
      the request went to.
    """
    t = event["t"]
    backend = event.get("backend", "")
    stalled = any(s <= t <= s + stall_seconds + SLACK_S
                  for s in stalls.get((event["round"], event["conn"]), []))
    extra = stall_seconds if stalled else 0.0
    code = close_code(event.get("why", ""))
    if not event.get("opened"):
        for f in faults:
            if f.kind == "kill" and f.t <= t <= max(f.until, f.t) + SLACK_S:
                return f
        for f in faults:
            if f.kind == "reload" and f.t <= t <= f.t + SLACK_S:
                return f
        return None
    if code == 1012:
        for f in faults:
            if f.kind == "reload" and f.backend == backend and \
                    f.t <= t <= f.t + DRAIN_SPREAD_S + SLACK_S + extra:
                return f
        return None
    for f in faults:
        if f.kind == "kill" and f.backend == backend and f.t <= t <= f.t + SLACK_S + extra:
            return f
    for f in faults:
        if f.kind == "reload" and f.backend == backend and \
                f.t <= t <= f.t + DRAIN_S + SLACK_S + extra:
            return f
    return None


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Samples:
    fds: List[int] = field(default_factory=list)
    rss: List[int] = field(default_factory=list)

    def add(self, pid: int) -> None:
        self.fds.append(proc_fds(pid))
        self.rss.append(proc_rss(pid))


def settle(gate: Gateway, what: str, timeout: float = 60) -> None:
    """Waits until wsgate holds no session and no drain is pending."""
    def idle():
        m = gate.metrics()
        return metric_sum(m, "wsgate_sessions") == 0 and \
            metric_sum(m, "wsgate_draining_sessions") == 0
    wait_for(idle, timeout, what, interval=0.5)


def steady_sample(pid: int, seconds: float = 3.0) -> Samples:
    """A few samples a second apart (health probes open short-lived sockets: the minimum
    of the descriptor counts is the steady one)."""
    s = Samples()
    end = time.monotonic() + seconds
    while True:
        s.add(pid)
        if time.monotonic() >= end:
            return s
        time.sleep(0.5)


def soak_round(args, rnd: int, seconds: float, rng: random.Random, gate: "Gateway",
               backends: Dict[str, "Backend"], faults: List["Fault"], during: "Samples",
               events: List[dict], results: List[dict], violations: List[str],
               reloads: int) -> int:
    """One client run: open the sessions, inject faults on schedule (the last args.quiet
    seconds without), stop the client. Returns the reload count so far (SIGHUP and POST
    alternate across rounds)."""
    client: Optional[Client] = None
    try:
        client = Client(args, gate.workdir, gate.port, label=f"wsload-r{rnd}")
        ready = client.wait_event("ready", 300)
        if ready.get("failed"):
            raise RuntimeError(f"{ready['failed']} of {args.sessions} sessions failed to open")
        start = client.wait_event("start", 30)["t"]
        print(f"soak: {ready['open']} sessions open in {ready['setup_s']} s; "
              f"round {rnd}: running {seconds:.0f} s", flush=True)

        end = start + seconds
        faults_end = end - args.quiet
        next_at = {"reload": start + args.reload_every, "kill": start + args.kill_every,
                   "reset": start + args.reset_every / 2, "stall": start + args.stall_every / 2,
                   "sample": start}
        restarts: List[tuple] = []  # (when, backend, fault)
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if not client.proc.running():
                raise RuntimeError(f"wsload exited early: {client.proc.stderr_text()[-2000:]}")
            if not gate.proc.running():
                raise RuntimeError("wsgate exited during the run")
            for when, b, fault in list(restarts):
                if now >= when:
                    backends[b].start()
                    fault.until = time.monotonic()
                    restarts.remove((when, b, fault))
            if now >= next_at["sample"]:
                during.add(gate.pid)
                next_at["sample"] = now + 1
            if now < faults_end:
                if now >= next_at["reload"]:
                    old = gate.members
                    new = CONFIG_B if old == CONFIG_A else CONFIG_A
                    removed = next(b for b in old if b not in new)
                    added = next(b for b in new if b not in old)
                    affects = gate.active_on().get(removed, 0)
                    via = "SIGHUP" if reloads % 2 == 0 else "POST /reload"
                    t = time.monotonic()
                    answer = gate.reload(new, via)
                    if via != "SIGHUP" and '"result":"ok"' not in answer.replace(" ", ""):
                        violations.append(f"reload refused: {answer}")
                    faults.append(Fault("reload", t, removed, added, via, affects))
                    reloads += 1
                    next_at["reload"] = now + args.reload_every
                if now >= next_at["kill"]:
                    alive = [b for b in BACKENDS if backends[b].running()]
                    victim = rng.choice(alive)
                    affects = gate.active_on().get(victim, 0)
                    t = time.monotonic()
                    backends[victim].kill()
                    fault = Fault("kill", t, victim, affects=affects)
                    faults.append(fault)
                    restarts.append((t + args.down, victim, fault))
                    next_at["kill"] = now + args.kill_every
                if now >= next_at["reset"] and args.resets > 0:
                    client.command(f"reset {args.resets}")
                    next_at["reset"] = now + args.reset_every
                if now >= next_at["stall"] and args.stalls > 0:
                    client.command(f"stall {args.stalls} {args.stall_seconds}")
                    next_at["stall"] = now + args.stall_every
            time.sleep(0.05)
        for when, b, fault in restarts:
            backends[b].start()
            fault.until = time.monotonic()

        results.append(client.finish(120))
        if client.proc.proc.returncode != 0:
            violations.append(f"wsload exited with {client.proc.proc.returncode}")
        for e in client.snapshot():
            e["round"] = rnd
            events.append(e)
        return reloads
    finally:
        if client is not None and client.proc.running():
            client.proc.stop(signal.SIGKILL)


def run(args) -> int:
    rng = random.Random(args.seed)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.iterdir():
        if old.is_file():
            old.unlink()
    print(f"soak: work directory {workdir}", flush=True)
    ports = dict(zip(BACKENDS, free_ports(len(BACKENDS))))
    backends = {name: Backend(name, port, args.wsload, workdir) for name, port in ports.items()}
    gate: Optional[Gateway] = None
    violations: List[str] = []
    try:
        for b in backends.values():
            b.start()
        gate = Gateway(args.wsgate, workdir, ports)
        print(f"soak: wsgate pid {gate.pid} port {gate.port} admin {gate.admin}", flush=True)

        # Warm-up: a short echo run and a reload there and back, then nothing open: the
        # baseline is a process that has done everything once.
        warm = subprocess.run([args.wsload, "echo", "--url", f"ws://{LOOPBACK}:{gate.port}/warm",
                               "--connections", "200", "--rate", "2000", "--duration", "3",
                               "--warmup", "0"], capture_output=True, text=True, timeout=120)
        if warm.returncode != 0:
            raise RuntimeError(f"warm-up echo failed: {warm.stdout} {warm.stderr}")
        gate.reload(CONFIG_B, "POST")
        gate.reload(CONFIG_A, "POST")
        settle(gate, "the warm-up to end")
        time.sleep(RELEASE_WAIT_S)
        base = steady_sample(gate.pid)
        base_fds, base_rss = min(base.fds), base.rss[-1]
        m0 = gate.metrics()
        cpu0 = proc_cpu(gate.pid)
        print(f"soak: baseline fds={base_fds} rss={base_rss / 2**20:.1f} MiB", flush=True)

        faults: List[Fault] = []
        during = Samples()
        events: List[dict] = []
        results: List[dict] = []
        round_end: List[tuple] = []  # (fds, rss) after each round
        reloads = 0
        seconds = args.seconds / args.rounds
        for rnd in range(1, args.rounds + 1):
            reloads = soak_round(args, rnd, seconds, rng, gate, backends, faults, during,
                                 events, results, violations, reloads)
            settle(gate, "every session to end after the clients stopped")
            time.sleep(RELEASE_WAIT_S)
            after = steady_sample(gate.pid)
            round_end.append((min(after.fds), after.rss[-1]))
            print(f"soak: round {rnd} done: fds={round_end[-1][0]} "
                  f"rss={round_end[-1][1] / 2**20:.1f} MiB", flush=True)
        end_fds, end_rss = round_end[-1]
        result = {k: sum(r[k] for r in results) for k in
                  ("messages", "reopened", "resets", "stalls", "stalls_done", "stall_echoes",
                   "open_at_start", "seconds")}
        result["msgs_per_s"] = round(result["messages"] / result["seconds"], 1)
        result["p50_us"] = max(r["p50_us"] for r in results)
        result["p99_us"] = max(r["p99_us"] for r in results)
        m1 = gate.metrics()
        cpu1 = proc_cpu(gate.pid)

        # SIGTERM: drain (nothing is open) and exit 0.
        rc = gate.proc.stop(signal.SIGTERM, timeout=DRAIN_S + 60)
        stderr = gate.proc.stderr_text()
        for b in backends.values():
            if b.running():
                b.proc.stop(signal.SIGTERM)

        # --- checks ---
        for e in events:
            if e.get("event") in ("reset", "stall"):
                faults.append(Fault(e["event"], e["t"], e.get("backend", ""), affects=1))
        stalls: Dict[int, List[float]] = {}
        for e in events:
            if e.get("event") == "stall":
                stalls.setdefault((e["round"], e["conn"]), []).append(e["t"])
        failures = [e for e in events if e.get("event") == "fail"]
        by_cause: Dict[str, int] = {}
        by_fault: Dict[str, int] = {}
        unexplained = []
        for e in failures:
            cause = classify(e)
            by_cause[cause] = by_cause.get(cause, 0) + 1
            f = explain(e, faults, stalls, args.stall_seconds)
            if f is None:
                unexplained.append(e)
            else:
                f.explained += 1
                by_fault[f.kind] = by_fault.get(f.kind, 0) + 1
        if unexplained:
            violations.append(f"{len(unexplained)} client failure(s) no injected fault explains; "
                              f"first: {unexplained[:5]}")
        if result["stalls"] != result["stalls_done"]:
            # A stalled session a fault ended did not get its burst back: that is explained.
            ended = {(e["round"], e["conn"]) for e in failures if (e["round"], e["conn"]) in stalls}
            if result["stalls"] - result["stalls_done"] > len(ended):
                violations.append(f"stalls: {result['stalls']} started, {result['stalls_done']} "
                                  f"got their whole burst back, {len(ended)} ended by a fault")
        if rc != 0:
            violations.append(f"wsgate exited with {rc} after SIGTERM")
        reports = [line for line in stderr.splitlines() if any(k in line for k in SANITIZER_MARKERS)]
        if reports:
            violations.append(f"sanitizer report(s) in wsgate's stderr: {reports[:3]}")
        if end_fds != base_fds:
            violations.append(f"descriptors: {end_fds} at the end, {base_fds} at the baseline")
        for i, (fds, _) in enumerate(round_end):
            if fds != base_fds:
                violations.append(f"descriptors: {fds} after round {i + 1}, {base_fds} at the "
                                  f"baseline")
        rss_growth = end_rss - base_rss
        if rss_growth > args.rss_tolerance_mb * 2**20:
            violations.append(f"RSS grew by {rss_growth / 2**20:.1f} MiB "
                              f"(tolerance {args.rss_tolerance_mb} MiB)")
        # A leak grows with every round; an allocator's retained high-water (ASan's quarantine
        # and size-class caches, glibc's arenas) flattens out after the first ones.
        round_growth = end_rss - round_end[-2][1] if len(round_end) > 1 else 0
        if round_growth > args.round_growth_mb * 2**20:
            violations.append(f"RSS after the last round is {round_growth / 2**20:.1f} MiB above "
                              f"the round before (tolerance {args.round_growth_mb} MiB): it "
                              f"grows with the work done, as a leak would")

        # /metrics against what the client saw (deltas from the baseline).
        def delta(name: str, **labels) -> int:
            return int(metric_sum(m1, name, **labels) - metric_sum(m0, name, **labels))
        opened_by_client = result["open_at_start"] + result["reopened"]
        ws_total = delta("wsgate_websocket_sessions_total")
        drained = delta("wsgate_drained_sessions_total")
        got_1012 = sum(1 for e in failures if close_code(e.get("why", "")) == 1012)
        # wsgate's own account, one access line per session: every way a session ended must be
        # one the faults cause (a 'close timeout' or 'idle timeout' here is a bug, even when the
        # client saw nothing wrong), and it must have seen every injected reset.
        # Upgrades refused (no 101) must be the client's failed handshakes, one for one.
        reasons: Dict[str, int] = {}
        refused = 0
        for r in gate.access_log():
            if r.get("kind") == "websocket":
                key = r.get("reason", "?")
                if r.get("status") != 101:
                    refused += 1
                    key = f"{key} ({r.get('status')})"
                reasons[key] = reasons.get(key, 0) + 1
        unexpected = {k: v for k, v in reasons.items()
                      if k not in EXPECTED_REASONS and k.rsplit(" (", 1)[0] not in REFUSED_REASONS}
        handshake_failures = sum(1 for e in failures if not e.get("opened") and
                                 "status" in e.get("why", ""))
        if refused != handshake_failures:
            violations.append(f"access log: {refused} upgrades answered without a 101, the "
                              f"clients saw {handshake_failures}")
        if unexpected:
            violations.append(f"access log: sessions ended for reasons no fault causes: "
                              f"{unexpected}")
        resets_seen = reasons.get("client reset", 0)
        # A reset can be overtaken: the session's backend was killed or drained just before.
        overtaken = sum(1 for e in events if e.get("event") == "reset" and any(
            f.backend == e.get("backend") and f.kind in ("kill", "reload") and
            f.t - SLACK_S <= e["t"] <= f.t + DRAIN_S + SLACK_S for f in faults))
        if not result["resets"] - overtaken <= resets_seen <= result["resets"]:
            violations.append(f"access log: {resets_seen} 'client reset' lines for "
                              f"{result['resets']} injected resets ({overtaken} may have been "
                              f"overtaken by a kill or a drain)")
        if ws_total < opened_by_client:
            violations.append(f"/metrics: {ws_total} sessions ended, the client opened "
                              f"{opened_by_client}")

        # --- summary ---
        kinds = ["reload", "kill", "reset", "stall"]
        count = {k: sum(1 for f in faults if f.kind == k) for k in kinds}
        affects = {k: sum(f.affects for f in faults if f.kind == k) for k in kinds}
        summary = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": round(result["seconds"], 1), "sessions": args.sessions,
            "rate": args.rate, "size": args.size,
            "messages": result["messages"], "msgs_per_s": result["msgs_per_s"],
            "p50_us": result["p50_us"], "p99_us": result["p99_us"],
            "stall_echoes": result["stall_echoes"], "reconnects": result["reopened"],
            "faults": count, "could_affect": affects, "explained_by": by_fault,
            "failures": len(failures), "failures_by_cause": by_cause,
            "unexplained": len(unexplained),
            "stalls": [result["stalls"], result["stalls_done"]],
            "fds": {"baseline": base_fds, "peak": max(during.fds or [0]), "end": end_fds},
            "rss_mib": {"baseline": round(base_rss / 2**20, 1),
                        "peak": round(max(during.rss or [0]) / 2**20, 1),
                        "end": round(end_rss / 2**20, 1),
                        "after_each_round": [round(r / 2**20, 1) for _, r in round_end]},
            "rounds": args.rounds,
            "wsgate_cpu_s": round(cpu1 - cpu0, 1),
            "metrics": {"ws_sessions_ended": ws_total, "client_opened": opened_by_client,
                        "drained": drained, "client_got_1012": got_1012,
                        "access_log_client_reset": resets_seen,
                        "injected_resets": result["resets"]},
            "access_log_reasons": reasons,
            "exit_status": rc, "sanitizer_reports": len(reports),
            "violations": violations,
        }
        print_summary(summary)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return 1 if violations else 0
    finally:
        if gate is not None and gate.proc.running():
            gate.proc.stop(signal.SIGKILL)
        for b in backends.values():
            if b.running():
                b.proc.stop(signal.SIGKILL)


def print_summary(s: dict) -> None:
    rows = [
        ("duration", f"{s['seconds']} s"),
        ("sessions", f"{s['sessions']} (reconnects {s['reconnects']})"),
        ("echoes", f"{s['messages']} ({s['msgs_per_s']}/s, {s['size']} B; p50 {s['p50_us']} us, "
                   f"p99 {s['p99_us']} us) + {s['stall_echoes']} stall-burst echoes"),
        ("faults", ", ".join(f"{k} {v} (could affect {s['could_affect'][k]})"
                             for k, v in s["faults"].items())),
        ("failures", f"{s['failures']}: " + ", ".join(f"{k} {v}" for k, v in
                                                      sorted(s["failures_by_cause"].items()))),
        ("explained by", ", ".join(f"{k} {v}" for k, v in s["explained_by"].items()) +
         f"; unexplained {s['unexplained']}"),
        ("stalls", f"{s['stalls'][0]} started, {s['stalls'][1]} got the whole burst back"),
        ("fds", "baseline {baseline}, peak {peak}, end {end}".format(**s["fds"])),
        ("RSS MiB", "baseline {baseline}, peak {peak}, end {end}; after each of the {n} rounds "
                    "{after}".format(n=s["rounds"], after=s["rss_mib"]["after_each_round"],
                                     **s["rss_mib"])),
        ("wsgate CPU", f"{s['wsgate_cpu_s']} s"),
        ("/metrics", ", ".join(f"{k} {v}" for k, v in s["metrics"].items())),
        ("access log", ", ".join(f"{k} {v}" for k, v in sorted(s["access_log_reasons"].items()))),
        ("exit", f"status {s['exit_status']}, sanitizer reports {s['sanitizer_reports']}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n== soak summary ==")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if s["violations"]:
        print("\nFAILED:")
        for v in s["violations"]:
            print(f"  - {v}")
    else:
        print("\nPASSED")


def main() -> int:
    args = parse_args()
    # Ctrl-C and SIGTERM end the run through run()'s cleanup.
    def interrupted(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
