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

`--only tls` runs only these rows, `--only plain` only the others.
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

    def pids(self) -> List[int]:
        return process_tree(self.proc.pid) if self.proc else []

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/bench"

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
        self.cert: Dict[str, str] = {}  # TLS: file paths and what the certificate is
        self.tls_seen: Dict[str, set] = {}  # TLS: per target, what wsload saw negotiated
        self.wsload_openssl = "?"  # the OpenSSL version wsload runs on (it reports it)

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

    def render(self, template: str, workers: int, port: int) -> Path:
        text = (PEERS / template).read_text()
        for key, value in {"WORKERS": workers, "PORT": port, "DIR": self.dir,
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

    def run_load(self, target: Target, argv: List[str]) -> tuple:
        """Runs wsload; returns (result JSON, proxy (user, system) CPU seconds between its
        start line, or its launch, and its result line)."""
        url = target.url
        if target.tls:
            argv = argv[:1] + ["--sni", "localhost"] + argv[1:]
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

    # --- the run --------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        plain, tls = a.only in (None, "plain"), a.only in (None, "tls")
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
    p.add_argument("--only", choices=["plain", "tls"], default=os.environ.get("BENCH_ONLY") or None,
                   help="run only the plain (ws) rows or only the TLS (wss) rows")
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
