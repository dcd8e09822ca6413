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

TLS (wss) rows: the same proxies terminating TLS (configs *-tls.* in tests/bench/peers/, one
ECDSA P-256 self-signed certificate generated at run time for all three) in front of the same
plain backends, in processes of their own, so the plain rows are untouched:

- wss echo at the fixed rate -> p50/p99 and CPU per relayed message, as the plain row.
- full handshakes: wsload handshakes (TCP connect, TLS handshake, close_notify, the
         server's close as proof it finished; no HTTP) -> handshakes/s and the proxy's CPU
         per handshake.
- resumed handshakes: the same, every connection offering the latest ticket (TLS 1.3 PSK).
         Both also give the share of handshakes the server followed with a session ticket.
- wss idle: 5,000 wss connections, measured 2 s after the last opened (so that idle-time
         buffer releases have happened) -> RSS per idle connection. First round only.

Lua rows (issue 14; tests/bench/lua/: configs, bench.lua, and httpload.c, a small plain-HTTP
keep-alive load generator compiled at run time, since wsload speaks WebSocket only). wsgate with
1 worker pinned to one CPU, fresh processes every round (wsgate-lua.yaml with a `scripting:`
section, wsgate-none.yaml without, and a second wsgate-none.yaml as a control for how far two
processes of one config differ), warmed alike; each row runs twice per round, in the order
A B C C B A; CPU is the threads' run time from schedstat:

- (a) HTTP at full speed, 20 keep-alive connections, through /lua/ (on_request `pick_pool`
         chooses the pool by the x-pool header) and /plain/ (the same without `lua:`) ->
         requests/s and the proxy's CPU per request; the hook's cost is the same-round difference.
- (b) WebSocket echo at the fixed rate through /ws-lua (on_message returning nil) and / ->
         CPU per relayed message.
- (c) the same echo through / (a route without `lua:`) with the scripting section loaded and
         without one -> CPU per message, and RSS per idle WebSocket: ratios with their spread
         over the rounds, beside the control's.
- callgrind (valgrind --tool=callgrind, 1 worker): instructions per HTTP request and per relayed
         message on each of those routes, the repeatable figures (`--no-lua-callgrind` skips).

`--only tls` runs only the TLS rows, `--only lua` only the Lua rows, `--only plain` only the
first ones. Each Lua row runs `--lua-seconds` (2 s) per round, so they add about 2 minutes to a
full run.
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
LUA = HERE / "lua"  # the Lua rows: configs, the script, the HTTP load generator
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


def run_seconds(pids: List[int]) -> float:
    """CPU time in seconds, summed over the processes' threads, to the nanosecond
    (/proc/PID/task/*/schedstat: utime and stime come in 10 ms ticks)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    return total / 1e9


def rss_bytes(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def libssl_of(pid: int) -> str:
    """The libssl a running process mapped (its path), or "?"."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "/libssl" in path:
                    return path
    except OSError:
        pass
    return "?"


@dataclass
class Target:
    name: str
    workers: int
    port: int
    proc: Optional[subprocess.Popen] = None  # None: direct to a backend
    tls: bool = False  # terminates TLS (wss://)
    path: str = "/bench"  # what the loads ask for (the Lua rows use several routes of one proxy)
    tag: str = ""  # the Lua rows: the row's label

    def pids(self) -> List[int]:
        return process_tree(self.proc.pid) if self.proc else []

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{self.path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def label(self) -> str:
        if self.tag:
            return self.tag
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
        self.httpload = self.build / "bench" / "httpload"  # the Lua rows' plain HTTP load (built at run time)
        self.dir = Path(tempfile.mkdtemp(prefix="wsgate-bench-"))
        self.procs: List[subprocess.Popen] = []
        self.backends: List[int] = []
        self.cert: Dict[str, str] = {}  # TLS: file paths and what the certificate is
        self.tls_seen: Dict[str, set] = {}  # TLS: per target, what wsload saw negotiated
        self.wsload_openssl = "?"  # the OpenSSL version wsload runs on (it reports it)
        self.cg_out: Optional[Path] = None  # the Lua rows: the callgrind output file of the wsgate under it

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

    def make_certificate(self) -> None:
        """One ECDSA P-256 self-signed certificate (localhost, 127.0.0.1) for every proxy:
        cert.pem and key.pem, and both in one file for HAProxy's `crt`."""
        cert, key, both = self.dir / "cert.pem", self.dir / "key.pem", self.dir / "cert+key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-sha256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        both.write_text(cert.read_text() + key.read_text())
        text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"],
                              check=True, capture_output=True, text=True).stdout
        curve = next((l.split(":", 1)[1].strip() for l in text.splitlines() if "NIST CURVE" in l), "?")
        self.cert = {"cert": str(cert), "key": str(key), "pem": str(both),
                     "type": f"ECDSA {curve} (prime256v1), self-signed, ecdsa-with-SHA256, CN/SAN localhost",
                     "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()}

    def render(self, template: str, workers: int, port: int, src: Path = PEERS) -> Path:
        text = (src / template).read_text()
        for key, value in {"WORKERS": workers, "PORT": port, "DIR": self.dir, "LUA": LUA / "bench.lua",
                           "BACKEND1": self.backends[0], "BACKEND2": self.backends[1],
                           "CERT": self.cert.get("cert", ""), "KEY": self.cert.get("key", ""),
                           "CERT_PEM": self.cert.get("pem", "")}.items():
            text = text.replace(f"@{key}@", str(value))
        path = self.dir / f"{workers}-{template}"
        path.write_text(text)
        return path

    def start_proxy(self, name: str, workers: int, tls: bool = False) -> Target:
        port = free_port()
        suffix = "-tls" if tls else ""
        if name == "wsgate":
            conf = self.render(f"wsgate{suffix}.yaml", workers, port)
            argv = [str(self.build / "wsgate"), "-c", str(conf)]
        elif name == "haproxy":
            conf = self.render(f"haproxy{suffix}.cfg", workers, port)
            argv = ["haproxy", "-db", "-f", str(conf)]
        else:
            conf = self.render(f"nginx{suffix}.conf", workers, port)
            argv = ["nginx", "-p", str(self.dir), "-e", str(self.dir / f"nginx{suffix}-{workers}.log"), "-c", str(conf)]
        proc = self.spawn(argv, f"{name}{suffix}-{workers}.log")
        wait_listening(port, proc)
        time.sleep(0.3)  # nginx forks its workers after the master listens
        return Target(name, workers, port, proc, tls)

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

    def run_load(self, target: Target, argv: List[str], http: bool = False, precise: bool = False) -> tuple:
        """Runs wsload (or, with `http`, httpload: argv without a command); returns (result JSON,
        proxy (user, system) CPU seconds between its start line, or its launch, and its result
        line). With `precise`, user + system is the threads' run time to the nanosecond
        (schedstat), split in the ratio of the ticks (short windows: a tick is 10 ms)."""
        url = target.http_url if http else target.url
        if target.tls:
            argv = argv[:1] + ["--sni", "localhost"] + argv[1:]
        pids = target.pids()
        cpu0, result = cpu_times(pids), None  # loads without a start line count it all
        run0 = run_seconds(pids)
        command = [str(self.httpload), "--url", url] + argv if http else \
            [str(self.wsload)] + argv[:1] + ["--url", url] + argv[1:]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            msg = json.loads(line)
            if msg.get("event") == "start":
                cpu0, run0 = cpu_times(pids), run_seconds(pids)
            elif "mode" in msg:
                now, run = cpu_times(pids), run_seconds(pids)
                cpu = (now[0] - cpu0[0], now[1] - cpu0[1])
                if precise:
                    ticks, total = cpu[0] + cpu[1], run - run0
                    cpu = (total * cpu[0] / ticks, total * cpu[1] / ticks) if ticks > 0 else (0.0, total)
                result = (msg, cpu)
        proc.wait(timeout=60)
        if proc.returncode != 0 or result is None:
            where = f" (the proxy's log: {self.dir})" if target.proc else ""
            raise RuntimeError(f"{target.label}{' wss' if target.tls else ''}: wsload {argv[0]} failed "
                               f"({proc.returncode}): {proc.stderr.read().strip()[:500]} {result}{where}")
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
        url = target.url
        tls = ["--sni", "localhost"] if target.tls else []
        pids = target.pids()
        before = rss_bytes(pids)
        proc = subprocess.Popen([str(self.wsload), "idle", "--url", url, "--connections", str(n)] + tls,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = json.loads(proc.stdout.readline() or "{}")
        # Let the proxy settle (deferred frees, worker timers); over TLS 2 s, so that buffers a
        # proxy releases after a second of idleness (wsgate) are released.
        time.sleep(2.0 if target.tls else 1.0)
        after = rss_bytes(target.pids())
        proc.stdin.write("\n")
        proc.stdin.close()
        final = proc.stdout.readline()
        proc.wait(timeout=60)
        if proc.returncode != 0 or ready.get("open") != n:
            raise RuntimeError(f"{target.label}{' wss' if target.tls else ''}: idle failed: {ready} {final} "
                               f"{proc.stderr.read()[:500]} (logs: {self.dir})")
        if target.proc:
            samples.add("rss_per_idle", (after - before) / n)
        if target.tls:
            self.note_tls(target, json.loads(final))
        time.sleep(1.0)  # closed connections leave the proxy before the next load

    # --- TLS (wss) loads ------------------------------------------------------

    def note_tls(self, target: Target, res: dict) -> None:
        """What each TLS figure was measured with: negotiated parameters, certificate, OpenSSL."""
        seen = self.tls_seen.setdefault(target.label, set())
        seen.add(f"{res.get('tls', '?')}, cert {res.get('cert', '?')}")
        self.wsload_openssl = res.get("openssl", self.wsload_openssl)

    def wss_echo_rated(self, target: Target, samples: Samples) -> None:
        a = self.args
        res, (user, system) = self.run_load(target, ["echo", "--rate", str(a.rate)] + self.echo_args())
        self.note_tls(target, res)
        samples.add("p50_us", res["p50_us"])
        samples.add("p99_us", res["p99_us"])
        if res["messages"]:
            relayed = 2 * res["messages"]  # each echo crosses the proxy twice
            samples.add("cpu_us_per_msg", (user + system) * 1e6 / relayed)
            samples.add("user_us_per_msg", user * 1e6 / relayed)

    def handshakes(self, target: Target, samples: Samples, resume: bool) -> None:
        a = self.args
        kind = "resumed" if resume else "full"
        res, cpu = self.run_load(target, ["handshakes", "--concurrency", str(a.handshake_concurrency),
                                          "--threads", str(a.handshake_threads), "--duration", str(a.seconds)]
                                 + (["--resume"] if resume else []))
        self.note_tls(target, res)
        samples.add(f"{kind}_hs_per_s", res["handshakes_per_s"])
        if res["handshakes"]:
            samples.add(f"cpu_us_per_{kind}_hs", sum(cpu) * 1e6 / res["handshakes"])
            # Handshakes after which the server sent a session ticket (before it closed).
            samples.add(f"{kind}_ticket_share", res["tickets"] / res["handshakes"])
            if resume:
                samples.add("resumed_share", res["resumed"] / res["handshakes"])

    def full_handshakes(self, target: Target, samples: Samples) -> None:
        self.handshakes(target, samples, resume=False)

    def resumed_handshakes(self, target: Target, samples: Samples) -> None:
        self.handshakes(target, samples, resume=True)

    # --- Lua hooks (issue 14; configs, script and HTTP load in tests/bench/lua/) ---------

    def build_httpload(self) -> None:
        """Compiles tests/bench/lua/httpload.c (wsload speaks WebSocket only) unless up to date."""
        src = LUA / "httpload.c"
        if self.httpload.exists() and self.httpload.stat().st_mtime >= src.stat().st_mtime:
            return
        self.httpload.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(self.httpload), str(src)], check=True)

    def start_lua_wsgate(self, config: str, wrapper: Optional[List[str]] = None, wait: float = 10.0) -> Target:
        """wsgate, 1 worker, with tests/bench/lua/CONFIG (wsgate-lua.yaml or wsgate-none.yaml).
        Pinned to the last CPU unless run under `wrapper`: the rows compare different processes,
        and unpinned, where the scheduler happened to put a process (beside the load generator or
        not) moved its CPU per message by up to 30 % between two processes of one config."""
        if wrapper is None:
            cpus = sorted(os.sched_getaffinity(0))
            wrapper = ["taskset", "-c", str(cpus[-1])] if len(cpus) > 1 and shutil.which("taskset") else []
        port = free_port()
        conf = self.render(config, 1, port, src=LUA)
        proc = self.spawn(list(wrapper) + [str(self.build / "wsgate"), "-c", str(conf)], f"{config}-{port}.log")
        wait_listening(port, proc, wait)
        return Target("wsgate", 1, port, proc, tag=config)

    def stop_proc(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.procs.remove(proc)

    @staticmethod
    def route(t: Target, path: str, tag: str) -> Target:
        """Another route of the same running proxy."""
        return Target(t.name, t.workers, t.port, t.proc, path=path, tag=tag)

    def http_max(self, target: Target, seconds: float) -> dict:
        """httpload at full speed -> responses, the proxy's CPU over the window, rate, latency."""
        a = self.args
        res, (user, system) = self.run_load(target, ["--connections", str(a.lua_http_connections),
                                                     "--header", "X-Pool: b", "--duration", str(seconds),
                                                     "--warmup", "0.5"], http=True, precise=True)
        return {"n": res["requests"], "cpu": user + system, "user": user, "rate": res["requests_per_s"],
                "p50_us": res["p50_us"], "p99_us": res["p99_us"]}

    def lua_echo(self, target: Target, seconds: float) -> dict:
        """echo_rated over a shorter window -> relayed messages, the proxy's CPU, latency."""
        a = self.args
        res, (user, system) = self.run_load(target, ["echo", "--rate", str(a.rate), "--connections",
                                                     str(a.connections), "--size", str(a.size), "--pipeline", "1",
                                                     "--duration", str(seconds), "--warmup", "0.5"],
                                            precise=True)
        return {"n": 2 * res["messages"],  # each echo crosses the proxy twice
                "cpu": user + system, "user": user, "rate": res["msgs_per_s"],
                "p50_us": res["p50_us"], "p99_us": res["p99_us"]}

    @staticmethod
    def add_parts(samples: Samples, parts: List[dict], unit: str) -> None:
        """One round's figure for a row from its windows: CPU summed over them / units summed."""
        n, cpu, user = (sum(p[k] for p in parts) for k in ("n", "cpu", "user"))
        if n:
            samples.add(f"cpu_us_per_{unit}", cpu * 1e6 / n)
            samples.add(f"user_us_per_{unit}", user * 1e6 / n)
        for key in ("rate", "p50_us", "p99_us"):
            samples.add(key if key != "rate" else f"{unit}_per_s", statistics.mean(p[key] for p in parts))

    def lua_warm(self, t: Target) -> None:
        """The same history for every fresh process: HTTP and WebSocket code paged in, pools and
        buffers grown, and (with the scripting section) the worker's Lua state made by the first
        /lua/ request, as when a config's Lua routes are in use."""
        self.run_load(self.route(t, "/lua/x", ""), ["--connections", str(self.args.lua_http_connections),
                                                    "--header", "X-Pool: b", "--duration", "1", "--warmup", "0"],
                      http=True)
        self.run_load(self.route(t, "/bench", ""), ["echo", "--connections", str(self.args.connections),
                                                    "--rate", str(self.args.rate), "--duration", "1", "--warmup", "0"])

    def callgrind_window(self, t: Target, out: Path, load) -> int:
        """Instructions wsgate (under callgrind) executed while `load()` ran: counters zeroed
        before, dumped after (callgrind_control)."""
        pid = str(t.proc.pid)
        subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True, timeout=60)
        load()
        time.sleep(0.3)  # the last responses' closes reach the proxy
        before = set(out.parent.glob(out.name + ".*"))
        subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True, timeout=60)
        dumps = sorted(set(out.parent.glob(out.name + ".*")) - before)
        if not dumps:
            raise RuntimeError(f"callgrind wrote no dump ({self.dir})")
        for line in dumps[-1].read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no summary in {dumps[-1]}")

    def callgrind_per_request(self, t: Target) -> float:
        """Instructions per HTTP request: one keep-alive connection, one request after the other
        (one request per loop turn: no batching, so the count repeats to 0.1 %), two windows of
        different sizes, and the difference (connection set-up and close cancel out)."""
        def run(n: int):
            return lambda: subprocess.run([str(self.httpload), "--url", t.http_url, "--connections", "1",
                                           "--header", "X-Pool: b", "--requests", str(n)],
                                          check=True, capture_output=True, timeout=300)
        n1, n2 = self.args.lua_callgrind_requests // 4, self.args.lua_callgrind_requests
        i1 = self.callgrind_window(t, self.cg_out, run(n1))
        i2 = self.callgrind_window(t, self.cg_out, run(n2))
        return (i2 - i1) / (n2 - n1)

    def callgrind_per_message(self, t: Target) -> float:
        """Instructions per relayed WebSocket message: echo over one connection, one message in
        flight (one message per loop turn: the count repeats to 0.1 %; at 1,000 msgs/s over 20
        connections it moved by 3 % with how many messages shared a turn), 0.5 s and 2 s windows,
        and the difference (session set-up, on_request and close cancel out)."""
        counted = []

        def run(seconds: float):
            def load():
                out = subprocess.run([str(self.wsload), "echo", "--url", t.url, "--connections", "1",
                                      "--duration", str(seconds), "--warmup", "0"],
                                     check=True, capture_output=True, text=True, timeout=300).stdout
                counted.append(json.loads(out.strip().splitlines()[-1])["messages"])
            return load
        i1 = self.callgrind_window(t, self.cg_out, run(0.5))
        i2 = self.callgrind_window(t, self.cg_out, run(2))
        return (i2 - i1) / (2 * (counted[1] - counted[0]))  # each echo crosses the proxy twice

    def lua_callgrind(self) -> Dict[str, float]:
        """The repeatable figures: wsgate (1 worker) under valgrind --tool=callgrind."""
        if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
            print("lua: valgrind not installed, no instruction counts", file=sys.stderr)
            return {}
        found: Dict[str, float] = {}
        for config in ("wsgate-lua.yaml", "wsgate-none.yaml"):
            self.cg_out = self.dir / f"callgrind-{config}.out"
            t = self.start_lua_wsgate(config, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.cg_out}"],
                                      wait=120)
            try:
                ws = self.route(t, "/bench", "")
                # Warm every path first: the worker's Lua state is made on first use.
                subprocess.run([str(self.httpload), "--url", self.route(t, "/lua/x", "").http_url, "--connections",
                                "4", "--header", "X-Pool: b", "--requests", "100"], check=True, capture_output=True)
                for path in ("/bench", "/ws-lua"):
                    subprocess.run([str(self.wsload), "echo", "--url", self.route(t, path, "").url, "--connections",
                                    "4", "--rate", "200", "--duration", "0.5", "--warmup", "0"],
                                   check=True, capture_output=True)
                if config == "wsgate-lua.yaml":
                    found["req_plain"] = self.callgrind_per_request(self.route(t, "/plain/x", ""))
                    found["req_lua"] = self.callgrind_per_request(self.route(t, "/lua/x", ""))
                    found["msg_lua_loaded"] = self.callgrind_per_message(ws)
                    found["msg_on_message"] = self.callgrind_per_message(self.route(t, "/ws-lua", ""))
                else:
                    found["req_none"] = self.callgrind_per_request(self.route(t, "/plain/x", ""))
                    found["msg_none"] = self.callgrind_per_message(ws)
            finally:
                self.stop_proc(t.proc)
        return found

    def perf_share(self, t: Target, load_argv: List[str], http: bool, symbol: str, seconds: float = 2.0) -> tuple:
        """perf record (cpu-clock, DWARF call graphs) on wsgate for `seconds` inside a load ->
        (CPU seconds spent under `symbol`, units served meanwhile): the time per call, counted
        in samples inside the call itself, so the machine's background load does not blur it
        as it blurs a difference between two runs."""
        data = self.dir / "perf.data"
        cmd = [str(self.httpload), "--url", t.http_url] + load_argv if http else \
            [str(self.wsload), load_argv[0], "--url", t.url] + load_argv[1:]
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rate = None
        try:
            json.loads(load.stdout.readline())  # {"event": "start"}: the warm-up is over
            freq = 2000
            subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(freq), "--call-graph", "dwarf,8192",
                            "-p", str(t.proc.pid), "-o", str(data), "--", "sleep", str(seconds)],
                           check=True, capture_output=True, timeout=60)
            for line in load.stdout:
                msg = json.loads(line)
                if "mode" in msg:
                    rate = msg["requests_per_s"] if http else 2 * msg["msgs_per_s"]
        finally:
            load.wait(timeout=60)
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym"], capture_output=True,
                                text=True, timeout=300).stdout
        samples = [b for b in script.split("\n\n") if b.strip()]
        inside = sum(1 for b in samples if symbol in b)
        if not samples or not rate:
            raise RuntimeError(f"perf recorded nothing ({self.dir})")
        return inside / freq, rate * seconds

    def lua_perf(self) -> Dict[str, float]:
        """Microseconds per on_request and per on_message call, from perf samples."""
        if not shutil.which("perf"):
            print("lua: perf not installed, no per-call times", file=sys.stderr)
            return {}
        a = self.args
        t = self.start_lua_wsgate("wsgate-lua.yaml")
        found: Dict[str, float] = {}
        try:
            self.lua_warm(t)
            hook, requests = self.perf_share(self.route(t, "/lua/x", ""),
                                             ["--connections", str(a.lua_http_connections), "--header", "X-Pool: b",
                                              "--duration", "3", "--warmup", "0.5"], True, "runOnRequest")
            found["us_per_on_request"] = hook * 1e6 / requests
            hook, msgs = self.perf_share(self.route(t, "/ws-lua", ""),
                                         ["echo", "--rate", str(a.rate), "--connections", str(a.connections),
                                          "--size", str(a.size), "--duration", "3", "--warmup", "0.5"],
                                         False, "onScriptMessage")
            found["us_per_on_message"] = hook * 1e6 / msgs
        except (subprocess.SubprocessError, RuntimeError, OSError, ValueError) as e:
            print(f"lua: perf failed ({e}), no per-call times", file=sys.stderr)
        finally:
            self.stop_proc(t.proc)
        return found

    def run_lua(self) -> tuple:
        """The Lua rows: (report text, JSON data). Each round starts fresh wsgates (1 worker):
        tests/bench/lua/wsgate-lua.yaml, wsgate-none.yaml (no scripting section) and a second
        wsgate-none.yaml (the control), warms them alike, runs every load against them back to
        back, measures idle memory last and stops them: fresh processes every round, so that
        neither a process's memory layout nor its history favours one side in every round."""
        a = self.args
        self.build_httpload()
        rows = [("lua", "/plain/x", "http /plain/ (no lua)"),
                ("lua", "/lua/x", "http /lua/ (on_request picks the pool by header)"),
                ("none", "/bench", "ws /, no scripting section"),
                ("lua", "/bench", "ws /, scripting loaded, route without lua"),
                ("lua", "/ws-lua", "ws /ws-lua, on_message returning nil"),
                ("none2", "/bench", "ws /, no scripting section, a second process (control)")]
        labels = [tag for _, _, tag in rows]
        http, ws = labels[:2], labels[2:]
        results = {tag: Samples() for tag in labels}
        idle = {"none": Samples(), "lua": Samples()}
        for r in range(a.rounds):
            # The order alternates between rounds, so that a drift in the machine's load does
            # not always favour the same row.
            order = (lambda xs: list(xs)) if r % 2 == 0 else (lambda xs: list(reversed(xs)))
            # none2, a second wsgate-none.yaml, is the control: how far two processes of one
            # config differ in the same round.
            procs = {"none": self.start_lua_wsgate("wsgate-none.yaml"),
                     "lua": self.start_lua_wsgate("wsgate-lua.yaml"),
                     "none2": self.start_lua_wsgate("wsgate-none.yaml")}
            try:
                print(f"round {r + 1}/{a.rounds}: lua warm-up", file=sys.stderr, flush=True)
                for key in order(procs):
                    self.lua_warm(procs[key])
                targets = {tag: self.route(procs[key], path, tag) for key, path, tag in rows}
                # Each row runs twice, in the order A B C C B A, half the window each time, so
                # that a drift during the round weighs on every row alike.
                for name, tags, load, unit in (("http", http, self.http_max, "req"),
                                               ("ws echo", ws, self.lua_echo, "msg")):
                    print(f"round {r + 1}/{a.rounds}: lua {name}", file=sys.stderr, flush=True)
                    parts = {tag: [] for tag in tags}
                    for tag in order(tags) + list(reversed(order(tags))):
                        parts[tag].append(load(targets[tag], a.lua_seconds / 2))
                    for tag in tags:
                        self.add_parts(results[tag], parts[tag], unit)
                print(f"round {r + 1}/{a.rounds}: lua idle", file=sys.stderr, flush=True)
                for key in order(["none", "lua"]):
                    self.idle(self.route(procs[key], "/bench", f"{key}: idle"), idle[key])
            finally:
                for t in procs.values():
                    self.stop_proc(t.proc)
        print("lua: perf", file=sys.stderr, flush=True)
        per_call = self.lua_perf()
        cg = {}
        if a.lua_callgrind:
            print("lua: callgrind", file=sys.stderr, flush=True)
            try:
                cg = self.lua_callgrind()
            except (subprocess.SubprocessError, RuntimeError, OSError, ValueError) as e:
                # The rows measured so far still get reported.
                print(f"lua: callgrind failed ({e}), no instruction counts", file=sys.stderr)
        text = self.report_lua(http, ws, results, idle, cg, per_call)
        data = {"results": {k: v.values for k, v in results.items()},
                "idle": {k: v.values for k, v in idle.items()}, "callgrind": cg, "perf": per_call}
        return text, data

    def report_lua(self, http: List[str], ws: List[str], results: Dict[str, Samples],
                   idle: Dict[str, Samples], cg: Dict[str, float], per_call: Dict[str, float]) -> str:
        a = self.args

        def med(s: Samples, key: str, fmt: str) -> str:
            v = s.median(key)
            return fmt.format(v) if v is not None else "-"

        def paired(x: Samples, y: Samples, key: str, op) -> List[float]:
            return [op(p, q) for p, q in zip(x.values.get(key, []), y.values.get(key, [])) if q]

        def spread(values: List[float], fmt: str) -> str:
            if not values:
                return "-"
            return (f"{fmt.format(statistics.median(values))} "
                    f"({fmt.format(min(values))} .. {fmt.format(max(values))})")

        out = [f"Lua hooks (tests/bench/lua/): wsgate, 1 worker, pinned to one CPU; rounds: {a.rounds} (medians; "
               f"in brackets the lowest and highest of the rounds), each with fresh wsgates (wsgate-lua.yaml, "
               f"wsgate-none.yaml and a second wsgate-none.yaml as a control) warmed alike. HTTP: httpload, "
               f"{a.lua_http_connections} keep-alive connections x 1 request in flight, at full speed. WebSocket: "
               f"echo, {a.connections} connections at {a.rate} msgs/s, {a.size} B. Each row {a.lua_seconds}s per "
               f"round, in two halves run in the order A B C C B A. CPU: the threads' run time (schedstat), the "
               f"user-space share from the ticks of /proc/PID/stat. Idle: {a.idle} WebSockets on the route "
               f"without lua.", "",
               "| HTTP route | requests/s | CPU us/request | of which user | p50 us | p99 us |",
               "|---|---:|---:|---:|---:|---:|"]
        for label in http:
            s = results[label]
            out.append(f"| {label} | {med(s, 'req_per_s', '{:.0f}')} | {med(s, 'cpu_us_per_req', '{:.2f}')} "
                       f"| {med(s, 'user_us_per_req', '{:.2f}')} | {med(s, 'p50_us', '{:.0f}')} "
                       f"| {med(s, 'p99_us', '{:.0f}')} |")
        out += ["", "| WebSocket row | CPU us/relayed msg | of which user | p99 us | RSS B/idle conn |",
                "|---|---:|---:|---:|---:|"]
        idle_of = {ws[0]: idle["none"], ws[1]: idle["lua"]}
        for label in ws:
            s = results[label]
            rss = med(idle_of[label], "rss_per_idle", "{:.0f}") if label in idle_of else "-"
            out.append(f"| {label} | {med(s, 'cpu_us_per_msg', '{:.2f}')} | {med(s, 'user_us_per_msg', '{:.2f}')} "
                       f"| {med(s, 'p99_us', '{:.0f}')} | {rss} |")

        def own_spread(x: Samples, key: str) -> str:
            v = x.values.get(key, [])
            return f"{max(v) / min(v):.3f}" if v and min(v) > 0 else "-"

        plain, hook = results[http[0]], results[http[1]]
        none, loaded, onmsg, control = (results[label] for label in ws)
        hook_cost = paired(hook, plain, "cpu_us_per_req", lambda p, q: p - q)
        hook_user = paired(hook, plain, "user_us_per_req", lambda p, q: p - q)
        # The hook makes no system call (strace: the same calls per request on both routes), so
        # its cost shows in user-space CPU; the total carries the kernel's noise as well. The
        # target counts as met when both medians are under 2 us.
        verdict = "-"
        if hook_cost and hook_user:
            verdict = "met" if max(statistics.median(hook_cost), statistics.median(hook_user)) < 2.0 else "NOT met"
        out += ["", "Same-round differences and ratios:", "",
                "| figure | median (range over rounds) |", "|---|---:|",
                f"| (a) on_request hook: CPU us/request, /lua/ - /plain/ (target < 2 us: {verdict}) "
                f"| {spread(hook_cost, '{:+.2f}')} |",
                f"| (a) of which user-space | {spread(hook_user, '{:+.2f}')} |",
                f"| (a) requests/s, /lua/ / /plain/ | {spread(paired(hook, plain, 'req_per_s', lambda p, q: p / q), '{:.3f}')} |",
                f"| (b) on_message: CPU us/relayed msg, /ws-lua - / | "
                f"{spread(paired(onmsg, loaded, 'cpu_us_per_msg', lambda p, q: p - q), '{:+.2f}')} |",
                f"| (b) of which user-space | "
                f"{spread(paired(onmsg, loaded, 'user_us_per_msg', lambda p, q: p - q), '{:+.2f}')} |",
                f"| (b) CPU per relayed msg, /ws-lua / / | "
                f"{spread(paired(onmsg, loaded, 'cpu_us_per_msg', lambda p, q: p / q), '{:.3f}')} |",
                f"| (c) route without lua, scripting loaded / no scripting section: CPU per relayed msg | "
                f"{spread(paired(loaded, none, 'cpu_us_per_msg', lambda p, q: p / q), '{:.3f}')} |",
                f"| (c) the same, user-space CPU per relayed msg | "
                f"{spread(paired(loaded, none, 'user_us_per_msg', lambda p, q: p / q), '{:.3f}')} |",
                f"| (c) the same, RSS per idle WebSocket | "
                f"{spread(paired(idle['lua'], idle['none'], 'rss_per_idle', lambda p, q: p / q), '{:.3f}')} |",
                f"| (c) noise, for scale: a second process without scripting / the first, CPU per relayed msg | "
                f"{spread(paired(control, none, 'cpu_us_per_msg', lambda p, q: p / q), '{:.3f}')} |",
                f"| (c) noise, for scale: the first one's highest / lowest over rounds, CPU per msg; RSS per idle | "
                f"{own_spread(none, 'cpu_us_per_msg')}; {own_spread(idle['none'], 'rss_per_idle')} |"]
        if per_call:
            out += ["", "perf (cpu-clock samples with call graphs, 2 s inside a load on a fresh wsgate-lua.yaml "
                    "wsgate): CPU time inside the hook per call", "",
                    "| per call | us |", "|---|---:|",
                    f"| (a) on_request (Session::runOnRequest), HTTP /lua/ at full speed (target < 2 us) "
                    f"| {per_call.get('us_per_on_request', float('nan')):.2f} |",
                    f"| (b) on_message (Session::onScriptMessage), /ws-lua echo at {a.rate} msgs/s "
                    f"| {per_call.get('us_per_on_message', float('nan')):.2f} |"]
        if cg:
            def row(name: str, key: str) -> str:
                return f"| {name} | {cg[key]:,.0f} |" if key in cg else f"| {name} | - |"
            out += ["", "callgrind (wsgate, 1 worker, valgrind --tool=callgrind; each figure the difference "
                    "between two windows of different lengths, so set-up and close cancel out):", "",
                    "| instructions | per unit |", "|---|---:|",
                    row(f"per HTTP request, /plain/ (no lua; {a.lua_callgrind_requests} - "
                        f"{a.lua_callgrind_requests // 4} requests, 1 connection)", "req_plain"),
                    row("per HTTP request, /lua/ (on_request picks the pool)", "req_lua")]
            if "req_plain" in cg and "req_lua" in cg:
                out.append(f"| (a) the on_request hook, per request | {cg['req_lua'] - cg['req_plain']:+,.0f} |")
            out.append(row("per HTTP request, /plain/ with no scripting section", "req_none"))
            if "req_plain" in cg and "req_none" in cg:
                out.append(f"| route without lua, scripting loaded / none, per HTTP request | "
                           f"{cg['req_plain'] / cg['req_none']:.4f} |")
            out += [row("per relayed msg, no scripting section, / (echo, 1 connection, 1 message in flight, 2 s - 0.5 s)",
                        "msg_none"),
                    row("per relayed msg, scripting loaded, / (route without lua)", "msg_lua_loaded"),
                    row("per relayed msg, /ws-lua (on_message returning nil)", "msg_on_message")]
            if "msg_on_message" in cg and "msg_lua_loaded" in cg:
                out.append(f"| (b) on_message, per relayed msg | {cg['msg_on_message'] - cg['msg_lua_loaded']:+,.0f} |")
            if "msg_none" in cg and "msg_lua_loaded" in cg:
                out.append(f"| (c) route without lua, scripting loaded / none | "
                           f"{cg['msg_lua_loaded'] / cg['msg_none']:.4f} |")
        return "\n".join(out) + "\n"

    # --- the run --------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        plain, tls, lua = a.only in (None, "plain"), a.only in (None, "tls"), a.only in (None, "lua")
        self.start_backends()
        targets, tls_targets = [], []
        if plain:
            targets = [Target("direct", 1, self.backends[0])]
            for workers in a.workers:
                for name in a.proxies:
                    targets.append(self.start_proxy(name, workers))
        if tls:
            self.make_certificate()
            for workers in a.workers:
                for name in a.proxies:
                    tls_targets.append(self.start_proxy(name, workers, tls=True))
        results = {t.label: Samples() for t in targets}
        tls_results = {t.label: Samples() for t in tls_targets}
        # Each load runs against every target back to back, so the figures compared with
        # each other are seconds apart, not minutes (this machine's background load drifts).
        for r in range(a.rounds):
            if plain:
                for load in (self.echo_max, self.echo_rated, self.churn, self.bulk):
                    print(f"round {r + 1}/{a.rounds}: {load.__name__}", file=sys.stderr, flush=True)
                    for t in targets:
                        load(t, results[t.label])
                if r == 0:
                    for t in targets:
                        self.idle(t, results[t.label])
            if tls:
                for load in (self.wss_echo_rated, self.full_handshakes, self.resumed_handshakes):
                    print(f"round {r + 1}/{a.rounds}: {load.__name__}", file=sys.stderr, flush=True)
                    for t in tls_targets:
                        load(t, tls_results[t.label])
                if r == 0:
                    print(f"round {r + 1}/{a.rounds}: wss idle", file=sys.stderr, flush=True)
                    for t in tls_targets:
                        self.idle(t, tls_results[t.label])
        text = self.report(targets, results) if plain else ""
        if tls:
            text += ("\n" if text else "") + self.report_tls(tls_targets, tls_results)
        lua_data = None
        if lua:
            lua_text, lua_data = self.run_lua()
            text += ("\n" if text else "") + lua_text
        print(text)
        out = self.build / "bench"
        out.mkdir(exist_ok=True)
        (out / "results.md").write_text(text)
        data = {k: v.values for k, v in results.items()}
        if tls:
            data["tls"] = {"certificate": self.cert["type"], "openssl": self.cert["openssl"],
                           "proxies": self.tls_libraries(tls_targets),
                           "negotiated": {k: sorted(v) for k, v in self.tls_seen.items()},
                           "results": {k: v.values for k, v in tls_results.items()}}
        if lua_data is not None:
            data["lua"] = lua_data
        (out / "results.json").write_text(json.dumps(data, indent=1))
        return 0

    def report(self, targets: List[Target], results: Dict[str, Samples]) -> str:
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
        return "\n".join([header, ""] + lines + (ratios if len(ratios) > 5 else [])) + "\n"

    def tls_libraries(self, targets: List[Target]) -> Dict[str, str]:
        """The OpenSSL each TLS proxy runs on: the libssl it mapped, and the version it reports."""
        haproxy = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True).stdout
        nginx = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
        ldd = subprocess.run(["ldd", str(self.wsload)], capture_output=True, text=True).stdout
        wsload_lib = next((l.split("=>", 1)[1].split("(")[0].strip() for l in ldd.splitlines()
                           if "libssl" in l and "=>" in l), "?")
        running = {
            "haproxy": next((l.split(":", 1)[1].strip() for l in haproxy.splitlines()
                             if l.startswith("Running on OpenSSL version")), "?"),
            "nginx": next((l.split("running with", 1)[1].strip(" )") for l in nginx.splitlines()
                           if "running with" in l), "?"),
        }
        found = {}
        for t in targets:
            lib = libssl_of(t.proc.pid)
            version = running.get(t.name)
            if version is None:  # wsgate reports none: the library wsload runs on, if the same file
                same = Path(lib).resolve() == Path(wsload_lib).resolve()
                version = self.wsload_openssl if same else "?"
            found.setdefault(t.name, f"{version} ({lib})")
        return found

    def report_tls(self, targets: List[Target], results: Dict[str, Samples]) -> str:
        a = self.args
        cols = [("cpu_us_per_msg", "wss CPU us/relayed msg", "{:.2f}"), ("user_us_per_msg", "of which user", "{:.2f}"),
                ("p50_us", "p50 us", "{:.0f}"), ("p99_us", "p99 us", "{:.0f}"),
                ("rss_per_idle", f"RSS B/idle wss ({a.idle})", "{:.0f}"),
                ("full_hs_per_s", "full hs/s", "{:.0f}"), ("cpu_us_per_full_hs", "CPU us/full hs", "{:.1f}"),
                ("resumed_hs_per_s", "resumed hs/s", "{:.0f}"), ("cpu_us_per_resumed_hs", "CPU us/resumed hs", "{:.1f}"),
                ("resumed_share", "resumed %", "{:.1%}"), ("full_ticket_share", "ticket % (full)", "{:.1%}"),
                ("resumed_ticket_share", "ticket % (resumed)", "{:.1%}")]
        lines = ["| target (wss) | " + " | ".join(c[1] for c in cols) + " | negotiated (client's view) |",
                 "|---|" + "---:|" * len(cols) + "---|"]
        for t in targets:
            s = results[t.label]
            cells = [(fmt.format(s.median(k)) if s.median(k) is not None else "-") for k, _, fmt in cols]
            seen = "; ".join(sorted(self.tls_seen.get(t.label, []))) or "-"
            lines.append(f"| {t.label} | " + " | ".join(cells) + f" | {seen} |")
        ratios = ["", "Ratios: the median over rounds of wsgate's figure over the peer's in the same round.", "",
                  "| wsgate / peer (wss) | CPU us/msg (<= 0.8) | RSS/idle wss (<= 0.5) | full hs/s (>= 1.0) "
                  "| CPU/full hs | resumed hs/s | CPU/resumed hs | p99 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for workers in a.workers:
            w = results.get(f"wsgate ({workers}w)")
            for peer in ("haproxy", "nginx"):
                h = results.get(f"{peer} ({workers}w)")
                if not w or not h:
                    continue

                def ratio(key: str) -> str:
                    pairs = [x / y for x, y in zip(w.values.get(key, []), h.values.get(key, [])) if y]
                    return f"{statistics.median(pairs):.2f}" if pairs else "-"

                ratios.append(f"| / {peer} ({workers}w) | {ratio('cpu_us_per_msg')} | {ratio('rss_per_idle')} "
                              f"| {ratio('full_hs_per_s')} | {ratio('cpu_us_per_full_hs')} "
                              f"| {ratio('resumed_hs_per_s')} | {ratio('cpu_us_per_resumed_hs')} | {ratio('p99_us')} |")
        for t in targets:
            share = results[t.label].median("resumed_share")
            if share is not None and share < 0.99:
                ratios.append(f"\nWarning: {t.label} resumed only {share:.1%} of the handshakes offering a "
                              "ticket; its resumed figures are mostly full handshakes.")
        libs = self.tls_libraries(targets)
        header = (f"TLS (wss) rows. Certificate: {self.cert['type']}, generated at run time, the same for every proxy. "
                  f"OpenSSL: `openssl version`: {self.cert['openssl']}; "
                  + "; ".join(f"{name}: {lib}" for name, lib in libs.items())
                  + f". Rounds: {a.rounds} (medians); wss echo: {a.connections} connections at {a.rate} msgs/s, "
                  f"{a.size} B, {a.seconds}s; handshakes: {a.handshake_concurrency} concurrent over "
                  f"{a.handshake_threads} client thread(s), {a.seconds}s (connect, TLS handshake, "
                  f"close_notify, the server's close; CPU per handshake over the window); idle: {a.idle} wss "
                  f"connections, RSS 2 s after the last opened (first round)")
        return "\n".join([header, ""] + lines + (ratios if len(ratios) > 4 else [])) + "\n"


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
    p.add_argument("--only", choices=["plain", "tls", "lua"], default=os.environ.get("BENCH_ONLY") or None,
                   help="run only the plain (ws) rows, only the TLS (wss) rows or only the Lua hook rows")
    p.add_argument("--lua-seconds", type=float, default=float(os.environ.get("BENCH_LUA_SECONDS", 2)),
                   help="each Lua row's measured time per round, in two halves (shorter than --seconds: "
                        "they add to every make bench)")
    p.add_argument("--lua-http-connections", type=int, default=20, help="the Lua rows' HTTP connections")
    p.add_argument("--lua-callgrind-requests", type=int, default=2000,
                   help="HTTP requests in the longer callgrind window (the shorter has a quarter)")
    p.add_argument("--no-lua-callgrind", dest="lua_callgrind", action="store_false",
                   help="skip the Lua rows' callgrind instruction counts")
    p.add_argument("--handshake-concurrency", type=int, default=16, help="TLS handshakes in flight")
    p.add_argument("--handshake-threads", type=int, default=2,
                   help="wsload threads making handshakes (a client's full handshake costs more CPU "
                        "than a server's: one thread would cap every proxy at the client's rate)")
    args = p.parse_args()
    bench = Bench(args)
    try:
        return bench.run()
    finally:
        bench.stop()


if __name__ == "__main__":
    sys.exit(main())
