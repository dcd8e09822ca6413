#!/usr/bin/python3
"""`make soak-idle`: one wsgate process holding as many idle WebSockets as its open-files limit
allows (two descriptors each), all still echoing at the end. docs/reliability.md.

    /usr/bin/python3 tests/soak/max_idle.py --wsgate build/wsgate \
        --wsload build/tests/bench/wsload [--hold 60] [--tls]

This process raises its soft open-files limit to the hard one; every child inherits it
(wsgate, one `wsload serve` echo backend, one `wsload idle` client: each process has a limit
of its own, and at 20,000 one client process holds the ~10,000 connections). wsgate is
started without `limits.max_connections`, so it derives it from the limit
((limit - 100) / 2: 9,950 at 20,000) and logs it; the client opens exactly that many
WebSockets, one more connection must get no answer while they are open (it waits in the
accept queue), they sit idle for --hold seconds with wsgate pinging every client
(timeouts.ping_interval, so keepalive is part of what is held), then every one must echo a
message. Figures: wsgate's RSS above its baseline per session, its descriptors, the time and
wsgate CPU to open them. --tls runs the same over wss:// (an ECDSA P-256 certificate made
with the openssl CLI); both by default with --both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

SOURCE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import Proc, free_ports, proc_cpu, proc_fds, proc_rss, wait_for  # noqa: E402

LOOPBACK = "127.0.0.1"
PING_INTERVAL_S = 20


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_cert(workdir: Path) -> tuple:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def config(backend_port: int, tls: Optional[tuple], workers: int) -> str:
    listener = f"  - {{ name: public, listen: {LOOPBACK}:0 }}"
    if tls:
        listener = (f"  - name: public\n    listen: {LOOPBACK}:0\n    tls:\n"
                    f"      certificates:\n        - {{ cert: {tls[0]}, key: {tls[1]} }}")
    return f"""# written by tests/soak/max_idle.py; limits.max_connections left to the open-files limit
workers: {workers}
log: {{ level: info, access: "off" }}
listeners:
{listener}
routes:
  - match: {{ path_prefix: / }}
    pool: app
pools:
  app:
    policy: round_robin
    backends:
      - {{ name: b1, address: {LOOPBACK}:{backend_port} }}
timeouts:
  handshake: 30s
  backend_response: 30s
  idle: 10m
  ping_interval: {PING_INTERVAL_S}s
"""


def one_more_refused(port: int, tls: bool) -> bool:
    """A connection past max_connections: accepted by the kernel (the backlog), never served
    by wsgate while the others are open: no byte within 3 s (for wss, not even a ServerHello)."""
    s = socket.create_connection((LOOPBACK, port), timeout=5)
    try:
        if tls:
            s.sendall(bytes.fromhex("16030100"))  # the start of a ClientHello: any answer counts
        else:
            s.sendall(b"GET /one-more HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
        s.settimeout(3)
        try:
            s.recv(1)  # an answer, or the end of the stream: it was served
            return False
        except socket.timeout:
            return True
        except ConnectionResetError:
            return False
    finally:
        s.close()


def run_one(args, workdir: Path, tls: bool) -> dict:
    label = "wss" if tls else "ws"
    workdir = workdir / label
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.iterdir():
        if old.is_file():
            old.unlink()
    procs: List[Proc] = []
    try:
        (port,) = free_ports(1)
        backend = Proc("backend", [args.wsload, "serve", "--listen", f"{LOOPBACK}:{port}",
                                   "--threads", "1"], workdir)
        procs.append(backend)
        wait_for(lambda: "listening" in backend.stdout_path.read_text(), 10, "the backend")
        cert = make_cert(workdir) if tls else None
        (workdir / "wsgate.yaml").write_text(config(port, cert, args.workers))
        gate = Proc("wsgate", [args.wsgate, "-c", str(workdir / "wsgate.yaml")], workdir)
        procs.append(gate)
        text = wait_for(lambda: (t := gate.stderr_text()) and re.search(r"\bready\b", t) and t,
                        30, "wsgate ready")
        gport = int(re.search(r"listening listener=public address=\S+:(\d+)", text).group(1))
        m = re.search(r"limits\.max_connections (\d+)", text)
        if not m:
            raise RuntimeError(f"wsgate did not log limits.max_connections:\n{text}")
        n = int(m.group(1)) if args.connections == 0 else args.connections
        url = f"{'wss' if tls else 'ws'}://{LOOPBACK}:{gport}/idle"

        # Warm-up (every code path once, the allocator's arenas made), then the baseline.
        warm = subprocess.run([args.wsload, "echo", "--url", url, "--connections", "100",
                               "--duration", "1", "--warmup", "0", "--rate", "1000"],
                              capture_output=True, text=True, timeout=60)
        if warm.returncode != 0:
            raise RuntimeError(f"warm-up failed: {warm.stdout}{warm.stderr}")
        time.sleep(2)
        base_rss, base_fds, cpu0 = proc_rss(gate.pid), proc_fds(gate.pid), proc_cpu(gate.pid)

        client = Proc("client", [args.wsload, "idle", "--url", url, "--connections", str(n)],
                      workdir, stdin=subprocess.PIPE)
        procs.append(client)

        def ready():
            if not client.running():
                raise RuntimeError(f"wsload idle exited: {client.stdout_path.read_text()}"
                                   f"{client.stderr_text()[-2000:]}")
            for line in client.stdout_path.read_text().splitlines():
                if '"event":"ready"' in line:
                    return json.loads(line)
            return None
        opened = wait_for(ready, 600, "the idle connections to open", interval=0.2)
        cpu_open = proc_cpu(gate.pid) - cpu0
        open_rss, open_fds = proc_rss(gate.pid), proc_fds(gate.pid)
        refused = one_more_refused(gport, tls)
        time.sleep(args.hold)
        held_rss, held_fds = proc_rss(gate.pid), proc_fds(gate.pid)
        client.proc.stdin.write(b"\n")  # probe: every connection echoes once, then closes
        client.proc.stdin.close()
        client.proc.wait(300)
        result = None
        for line in client.stdout_path.read_text().splitlines():
            if '"mode":"idle"' in line:
                result = json.loads(line)
        if result is None:
            raise RuntimeError(f"wsload idle printed no result: {client.stderr_text()[-2000:]}")
        gate_rc = gate.stop(signal.SIGTERM, timeout=60)
        summary = {
            "transport": label, "workers": args.workers, "open_files_limit": args.nofile,
            "max_connections": n,
            "open": opened["open"], "failed_to_open": opened["failed"],
            "open_seconds": opened["setup_s"], "wsgate_cpu_s_to_open": round(cpu_open, 2),
            "one_more_waited": refused,
            "hold_s": args.hold, "ping_interval_s": PING_INTERVAL_S,
            "echoed": result["echoed"], "errors": result["errors"],
            "wsgate_fds": {"baseline": base_fds, "open": open_fds, "held": held_fds},
            "wsgate_rss_mib": {"baseline": round(base_rss / 2**20, 1),
                               "open": round(open_rss / 2**20, 1),
                               "held": round(held_rss / 2**20, 1)},
            "rss_bytes_per_session_open": round((open_rss - base_rss) / n),
            "rss_bytes_per_session_held": round((held_rss - base_rss) / n),
            "wsgate_exit": gate_rc,
        }
        if "tls" in result:
            summary["tls"] = result["tls"] + " " + result.get("cert", "")
        return summary
    finally:
        for p in reversed(procs):
            if p.running():
                p.stop(signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wsgate", default=str(SOURCE_DIR / "build" / "wsgate"))
    p.add_argument("--wsload", default=str(SOURCE_DIR / "build" / "tests" / "bench" / "wsload"))
    p.add_argument("--workdir", default=str(SOURCE_DIR / "build" / "soak-idle"))
    p.add_argument("--hold", type=float, default=float(os.environ.get("SOAK_IDLE_HOLD", 60)))
    p.add_argument("--connections", type=int, default=0,
                   help="0 (default): wsgate's max_connections")
    p.add_argument("--tls", action="store_true", help="wss:// only")
    p.add_argument("--workers", type=int, default=int(os.environ.get("SOAK_IDLE_WORKERS", 1)),
                   help="wsgate's workers (1: max_connections is split evenly across workers, "
                        "and SO_REUSEPORT's hash does not fill them evenly, docs/reliability.md)")
    p.add_argument("--both", action="store_true", help="ws:// then wss://")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    args.wsgate, args.wsload, args.workdir = (str(Path(x).resolve()) for x in
                                               (args.wsgate, args.wsload, args.workdir))
    args.nofile = raise_nofile()
    workdir = Path(args.workdir)
    runs = [False, True] if args.both else [args.tls]
    results, failed = [], False
    for tls in runs:
        try:
            r = run_one(args, workdir, tls)
        except RuntimeError as e:
            print(f"max_idle: {e}", file=sys.stderr)
            return 2
        results.append(r)
        ok = (r["open"] == r["max_connections"] and r["failed_to_open"] == 0 and
              r["echoed"] == r["max_connections"] and r["errors"] == 0 and
              r["one_more_waited"] and r["wsgate_exit"] == 0)
        failed |= not ok
        print(json.dumps(r))
        print(f"{r['transport']}: {r['open']} of {r['max_connections']} idle WebSockets open in "
              f"{r['open_seconds']} s (wsgate CPU {r['wsgate_cpu_s_to_open']} s), "
              f"{r['echoed']} echoed after {r['hold_s']:.0f} s idle; wsgate fds "
              f"{r['wsgate_fds']['held']} of {r['open_files_limit']}; RSS "
              f"{r['rss_bytes_per_session_held']} B per session "
              f"({r['wsgate_rss_mib']['baseline']} -> {r['wsgate_rss_mib']['held']} MiB); "
              f"one more connection {'waited' if r['one_more_waited'] else 'WAS SERVED'}: "
              f"{'ok' if ok else 'FAILED'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
