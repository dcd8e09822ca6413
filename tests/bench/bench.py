#!/usr/bin/python3
"""`make bench`: wsgate against HAProxy and nginx, same backends, same load, one run.

Starts two `wsload serve` echo backends, then wsgate, HAProxy and nginx with one worker
and with two (configs in tests/bench/peers/), and runs the same loads against each in
alternation, round after round:

- echo at full speed: N connections, one 64-byte message in flight each -> msgs/s.
- echo at a fixed rate (the same offered load for every proxy) -> p50/p99 latency and the
         proxy's CPU time per relayed message (utime+stime from /proc/PID/stat, summed over
         the proxy's processes, sampled when wsload starts and stops counting; an echo is
         two relayed messages, one each way), with its user-space part.
- churn: connect, handshake, one echo, close -> sessions/s and CPU per session.
- bulk:  4 connections, two 256 KiB messages in flight each -> MB/s and the proxy's CPU
         time per relayed MB (large messages: streamed AI answers, file transfers).
- idle:  5,000 WebSockets opened and held -> (VmRSS after - VmRSS before) / 5,000, then
         every one must still echo. Measured in the first round only, after that round's
         echo and churn loads (so every proxy is warm, and no round re-uses memory that the
         previous round's idle connections left behind).

A direct-to-backend row shows the machine's limit. Each figure is the median over the
rounds; the ratios compare wsgate with HAProxy at the same worker count. Results also go
to BUILD/bench/results.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {seconds}s")


def children(pid: int) -> List[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def process_tree(pid: int) -> List[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children(p)
    return tree


def cpu_times(pids: List[int]) -> tuple:
    """(user, system) seconds, summed over the processes."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime (field 14)
            system += int(fields[12])  # stime (field 15)
        except OSError:
            pass
    return user / TICKS, system / TICKS


def rss_bytes(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


@dataclass
class Target:
    name: str
    workers: int
    port: int
    proc: Optional[subprocess.Popen] = None  # None: direct to a backend

    def pids(self) -> List[int]:
        return process_tree(self.proc.pid) if self.proc else []

    @property
    def label(self) -> str:
        return self.name if self.proc is None else f"{self.name} ({self.workers}w)"


@dataclass
class Samples:
    values: Dict[str, List[float]] = field(default_factory=dict)

    def add(self, key: str, value: Optional[float]) -> None:
        if value is not None:
            self.values.setdefault(key, []).append(value)

    def median(self, key: str) -> Optional[float]:
        v = self.values.get(key)
        return statistics.median(v) if v else None


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.build = Path(args.build).resolve()
        self.wsload = self.build / "tests" / "bench" / "wsload"
        self.dir = Path(tempfile.mkdtemp(prefix="wsgate-bench-"))
        self.procs: List[subprocess.Popen] = []
        self.backends: List[int] = []

    # --- processes ------------------------------------------------------------

    def spawn(self, argv: List[str], log: str) -> subprocess.Popen:
        out = open(self.dir / log, "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def start_backends(self) -> None:
        for i in (1, 2):
            port = free_port()
            proc = self.spawn([str(self.wsload), "serve", "--listen", f"127.0.0.1:{port}"], f"backend{i}.log")
            wait_listening(port, proc)
            self.backends.append(port)

    def render(self, template: str, workers: int, port: int) -> Path:
        text = (PEERS / template).read_text()
        for key, value in {"WORKERS": workers, "PORT": port, "DIR": self.dir,
                           "BACKEND1": self.backends[0], "BACKEND2": self.backends[1]}.items():
            text = text.replace(f"@{key}@", str(value))
        path = self.dir / f"{workers}-{template}"
        path.write_text(text)
        return path

    def start_proxy(self, name: str, workers: int) -> Target:
        port = free_port()
        if name == "wsgate":
            conf = self.render("wsgate.yaml", workers, port)
            argv = [str(self.build / "wsgate"), "-c", str(conf)]
        elif name == "haproxy":
            conf = self.render("haproxy.cfg", workers, port)
            argv = ["haproxy", "-db", "-f", str(conf)]
        else:
            conf = self.render("nginx.conf", workers, port)
            argv = ["nginx", "-p", str(self.dir), "-e", str(self.dir / f"nginx-{workers}.log"), "-c", str(conf)]
        proc = self.spawn(argv, f"{name}-{workers}.log")
        wait_listening(port, proc)
        time.sleep(0.3)  # nginx forks its workers after the master listens
        return Target(name, workers, port, proc)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- loads ----------------------------------------------------------------

    def run_load(self, target: Target, argv: List[str]) -> tuple:
        """Runs wsload; returns (result JSON, proxy (user, system) CPU seconds between its
        start line, or its launch, and its result line)."""
        url = f"ws://127.0.0.1:{target.port}/bench"
        pids = target.pids()
        cpu0, result = cpu_times(pids), None  # loads without a start line count it all
        proc = subprocess.Popen([str(self.wsload)] + argv[:1] + ["--url", url] + argv[1:],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # loads without a start line count it all
        for line in proc.stdout:
            msg = json.loads(line)
            if msg.get("event") == "start":
                cpu0 = cpu_times(pids)
            elif "mode" in msg:
                now = cpu_times(pids)
                cpu = (now[0] - cpu0[0], now[1] - cpu0[1])
                result = (msg, cpu)
        proc.wait(timeout=60)
        if proc.returncode != 0 or result is None:
            raise RuntimeError(f"{target.label}: wsload {argv[0]} failed ({proc.returncode}): "
                               f"{proc.stderr.read().strip()[:500]} {result}")
        return result

    def echo_args(self) -> List[str]:
        a = self.args
        return ["--connections", str(a.connections), "--size", str(a.size), "--pipeline", "1",
                "--duration", str(a.seconds), "--warmup", "1"]

    def echo_max(self, target: Target, samples: Samples) -> None:
        res, _ = self.run_load(target, ["echo"] + self.echo_args())
        samples.add("msgs_per_s", res["msgs_per_s"])

    def echo_rated(self, target: Target, samples: Samples) -> None:
        a = self.args
        res, (user, system) = self.run_load(target, ["echo", "--rate", str(a.rate)] + self.echo_args())
        samples.add("p50_us", res["p50_us"])
        samples.add("p99_us", res["p99_us"])
        if target.proc and res["messages"]:
            relayed = 2 * res["messages"]  # each echo crosses the proxy twice
            samples.add("cpu_us_per_msg", (user + system) * 1e6 / relayed)
            samples.add("user_us_per_msg", user * 1e6 / relayed)

    def churn(self, target: Target, samples: Samples) -> None:
        a = self.args
        res, cpu = self.run_load(target, ["churn", "--concurrency", str(a.churn), "--duration", str(a.seconds)])
        samples.add("sessions_per_s", res["sessions_per_s"])
        if target.proc and res["sessions"]:
            samples.add("cpu_us_per_session", sum(cpu) * 1e6 / res["sessions"])

    def bulk(self, target: Target, samples: Samples) -> None:
        a = self.args
        size = 256 * 1024
        res, cpu = self.run_load(target, ["echo", "--connections", "4", "--size", str(size),
                                          "--pipeline", "2", "--duration", str(a.seconds),
                                          "--warmup", "1"])
        samples.add("bulk_mb_per_s", res["msgs_per_s"] * size / 1e6)
        if target.proc and res["messages"]:
            relayed_mb = 2 * res["messages"] * size / 1e6  # each echo crosses the proxy twice
            samples.add("cpu_ms_per_mb", sum(cpu) * 1e3 / relayed_mb)

    def idle(self, target: Target, samples: Samples) -> None:
        n = self.args.idle
        url = f"ws://127.0.0.1:{target.port}/bench"
        pids = target.pids()
        before = rss_bytes(pids)
        proc = subprocess.Popen([str(self.wsload), "idle", "--url", url, "--connections", str(n)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = json.loads(proc.stdout.readline() or "{}")
        time.sleep(1.0)  # let the proxy settle (deferred frees, worker timers)
        after = rss_bytes(target.pids())
        proc.stdin.write("\n")
        proc.stdin.close()
        final = proc.stdout.readline()
        proc.wait(timeout=60)
        if proc.returncode != 0 or ready.get("open") != n:
            raise RuntimeError(f"{target.label}: idle failed: {ready} {final} {proc.stderr.read()[:500]}")
        if target.proc:
            samples.add("rss_per_idle", (after - before) / n)
        time.sleep(1.0)  # closed connections leave the proxy before the next load

    # --- the run --------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        self.start_backends()
        targets = [Target("direct", 1, self.backends[0])]
        for workers in a.workers:
            for name in a.proxies:
                targets.append(self.start_proxy(name, workers))
        results = {t.label: Samples() for t in targets}
        # Each load runs against every target back to back, so the figures compared with
        # each other are seconds apart, not minutes (this machine's background load drifts).
        for r in range(a.rounds):
            for load in (self.echo_max, self.echo_rated, self.churn, self.bulk):
                print(f"round {r + 1}/{a.rounds}: {load.__name__}", file=sys.stderr, flush=True)
                for t in targets:
                    load(t, results[t.label])
            if r == 0:
                for t in targets:
                    self.idle(t, results[t.label])
        self.report(targets, results)
        return 0

    def report(self, targets: List[Target], results: Dict[str, Samples]) -> None:
        a = self.args
        cols = [("msgs_per_s", "echo msgs/s (max)", "{:.0f}"), ("p50_us", "p50 us", "{:.0f}"),
                ("p99_us", "p99 us", "{:.0f}"), ("cpu_us_per_msg", "CPU us/relayed msg", "{:.2f}"),
                ("user_us_per_msg", "of which user", "{:.2f}"),
                ("rss_per_idle", f"RSS B/idle conn ({a.idle})", "{:.0f}"),
                ("sessions_per_s", "sessions/s", "{:.0f}"), ("cpu_us_per_session", "CPU us/session", "{:.1f}"),
                ("bulk_mb_per_s", "bulk MB/s", "{:.0f}"), ("cpu_ms_per_mb", "CPU ms/relayed MB", "{:.2f}")]
        lines = ["| target | " + " | ".join(c[1] for c in cols) + " |",
                 "|---|" + "---:|" * len(cols)]
        for t in targets:
            s = results[t.label]
            cells = [(fmt.format(s.median(k)) if s.median(k) is not None else "-") for k, _, fmt in cols]
            lines.append(f"| {t.label} | " + " | ".join(cells) + " |")
        ratios = ["", "Ratios: the median over rounds of wsgate's figure over HAProxy's in the same round.",
                  "", "| wsgate / HAProxy | CPU us/msg (<= 0.8) | user CPU us/msg | RSS/idle (<= 0.5) "
                  "| sessions/s (>= 1.1) | p99 (<= 1.0) | bulk MB/s | CPU/MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for workers in a.workers:
            w, h = results.get(f"wsgate ({workers}w)"), results.get(f"haproxy ({workers}w)")
            if not w or not h:
                continue

            def ratio(key: str) -> str:
                # The median of the rounds' ratios: each pair was measured seconds apart.
                pairs = list(zip(w.values.get(key, []), h.values.get(key, [])))
                pairs = [x / y for x, y in pairs if y]
                return f"{statistics.median(pairs):.2f}" if pairs else "-"

            ratios.append(f"| {workers} worker(s) | {ratio('cpu_us_per_msg')} | {ratio('user_us_per_msg')} "
                          f"| {ratio('rss_per_idle')} "
                          f"| {ratio('sessions_per_s')} | {ratio('p99_us')} "
                          f"| {ratio('bulk_mb_per_s')} | {ratio('cpu_ms_per_mb')} |")
        machine = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((l.split(":", 1)[1].strip() for l in machine.splitlines() if l.startswith("Model name")), "?")
        header = (f"machine: {model}, {os.cpu_count()} cores; rounds: {a.rounds} (medians); echo: "
                  f"{a.connections} connections x 1 message of {a.size} B in flight, {a.seconds}s, "
                  f"at full speed (msgs/s) and at {a.rate} msgs/s (latency, CPU); churn: "
                  f"{a.churn} concurrent; bulk: 4 connections x 2 messages of 256 KiB in flight; "
                  f"idle: {a.idle} connections (first round)")
        text = "\n".join([header, ""] + lines + (ratios if len(ratios) > 5 else [])) + "\n"
        print(text)
        out = self.build / "bench"
        out.mkdir(exist_ok=True)
        (out / "results.md").write_text(text)
        (out / "results.json").write_text(json.dumps({k: v.values for k, v in results.items()}, indent=1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 5)))
    p.add_argument("--connections", type=int, default=100, help="echo connections")
    p.add_argument("--size", type=int, default=64, help="echo message bytes")
    p.add_argument("--churn", type=int, default=8, help="concurrent churn sessions")
    p.add_argument("--idle", type=int, default=int(os.environ.get("BENCH_IDLE", 5000)))
    p.add_argument("--rate", type=int, default=int(os.environ.get("BENCH_RATE", 20000)),
                   help="offered echo load (msgs/s) for latency and CPU per message")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--proxies", nargs="+", default=["wsgate", "haproxy", "nginx"])
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    args = p.parse_args()
    bench = Bench(args)
    try:
        return bench.run()
    finally:
        bench.stop()


if __name__ == "__main__":
    sys.exit(main())
