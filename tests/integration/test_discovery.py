"""Backends discovered by DNS (`{ discover: { dns, port, interval } }`): a DNS server of the
test's own (python3-dnslib on a loopback UDP port) answers records the test changes while
wsgate runs; echo backends listen on 127.0.0.2, 127.0.0.3, ... on one port, so the A records
carry only addresses. An address that appears takes new sessions; one that disappears has
its sessions closed with 1012 and nobody else's; a resolver that goes down changes nothing
but a counter and one log line; SRV records give target and port; a reload keeps the sets."""

import json
import re
import subprocess
import threading
import time

import pytest

dnslib = pytest.importorskip("dnslib", reason="python3-dnslib (packaging/install-deps.sh)")
from dnslib import QTYPE, RCODE, RR, SRV, A  # noqa: E402
from dnslib.server import BaseResolver, DNSLogger, DNSServer  # noqa: E402

import harness  # noqa: E402
import wsproto  # noqa: E402
from harness import Conn, admin_port, admin_request, wait_for  # noqa: E402

INTERVAL = "200ms"


# --- a DNS server the test steers -----------------------------------------------------------


class StubDns(BaseResolver):
    """Answers A and SRV questions from `a` and `srv` (name -> records), with `glue` in the
    additional section; NXDOMAIN for names it does not know; SERVFAIL to everything while
    `servfail` is set. stop() closes its socket (queries are then refused at once), start()
    opens it again on the same port."""

    def __init__(self):
        self.a = {}      # "chat.test" -> ["127.0.0.2", ...]
        self.srv = {}    # "_ws._tcp.chat.test" -> [(priority, weight, port, target), ...]
        self.glue = {}   # "b1.chat.test" -> ["127.0.0.2"]
        self.servfail = False
        self.queries = 0
        self.lock = threading.Lock()
        self.port = 0
        self.server = None
        self.start()

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries += 1
            if self.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            if qtype == "A" and name in self.a:
                for ip in self.a[name]:
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=1))
            elif qtype == "SRV" and name in self.srv:
                for priority, weight, port, target in self.srv[name]:
                    reply.add_answer(RR(request.q.qname, QTYPE.SRV, ttl=1,
                                        rdata=SRV(priority, weight, port, target + ".")))
                    for ip in self.glue.get(target, []):
                        reply.add_ar(RR(target + ".", QTYPE.A, rdata=A(ip), ttl=1))
            elif name not in self.a and name not in self.srv:
                reply.header.rcode = RCODE.NXDOMAIN
        return reply

    def start(self):
        quiet = DNSLogger(log="-request,-reply,-truncated,-error", logf=lambda *_: None)
        self.server = DNSServer(self, port=self.port, address="127.0.0.1", logger=quiet)
        self.server.start_thread()
        self.port = self.server.server.server_address[1]

    def stop(self):
        self.server.stop()
        self.server.server.server_close()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def dns():
    server = StubDns()
    yield server
    server.stop()


@pytest.fixture
def backend_at(tmp_path):
    """backend_at(host, port) -> an echo backend named after its address, on that address
    (port 0: any free port)."""
    started = []

    def start(host, port=0):
        b = harness.EchoBackend(f"{host}", tmp_path, host=host, port=port)
        started.append(b)
        return b.start()

    yield start
    failures = []
    for b in started:
        b.stop()
        print(b.report())
        failures.append(b.failure())
    failures = [f for f in failures if f]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def backends_on_one_port(backend_at, hosts):
    """Echo backends on `hosts`, all on the port the first one got."""
    first = backend_at(hosts[0])
    return [first] + [backend_at(h, first.port) for h in hosts[1:]]


def config(dns, discover, *, policy="round_robin", extra_pool="", drain_spread="500ms"):
    """A pool `chat` of the one discover entry `discover` (over the test's defaults: a short
    interval, the test's resolver, A records only), behind one plain listener."""
    settings = {"interval": INTERVAL, "resolvers": f'["{dns.address}"]', "family": "ipv4"}
    settings.update(discover)
    entry = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return f"""
listeners: [{{name: main, listen: "127.0.0.1:0"}}]
admin: {{listen: "127.0.0.1:0"}}
routes: [{{pool: chat}}]
timeouts: {{drain: 5s, drain_spread: {drain_spread}}}
pools:
  chat:
    policy: {policy}
    connect_timeout: 1s
    backends:
      - {{ discover: {{ {entry} }} }}
{extra_pool}"""


def status(port):
    code, body = admin_request(port, "GET", "/status")
    assert code == 200, (code, body)
    return json.loads(body)


def backend_names(port):
    return sorted(b["name"] for b in status(port)["pools"]["chat"]["backends"])


def wait_backends(port, names, timeout=5.0):
    want = sorted(names)
    wait_for(lambda: backend_names(port) == want, timeout, f"pool chat to hold {want}")


def metrics(port):
    code, body = admin_request(port, "GET", "/metrics")
    assert code == 200
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def resolutions(port, result, dns_name="chat.test"):
    return metrics(port).get(
        f'wsgate_discovery_resolutions_total{{pool="chat",dns="{dns_name}",result="{result}"}}', 0)


def open_session(gate):
    """A WebSocket through wsgate that echoes once; (conn, the backend's X-Backend)."""
    conn = Conn.open(gate.port)
    response = conn.upgrade("/ws")
    assert response.status == 101, (response.status, response.body)
    echoes(conn)
    return conn, response.header("x-backend")


def echoes(conn, payload=b"still here"):
    conn.send_frame(wsproto.OP_TEXT, payload)
    assert conn.recv_message() == (wsproto.OP_TEXT, payload)


def get_backend(gate, headers=()):
    """The X-Backend of one plain GET on a connection of its own."""
    conn = Conn.open(gate.port)
    try:
        response = conn.request("GET", "/", headers)
        assert response.status == 200, (response.status, response.body)
        return response.header("x-backend")
    finally:
        conn.close()


# --- scenarios ------------------------------------------------------------------------------


def test_an_address_that_appears_becomes_a_backend_named_after_it_and_takes_sessions(
        start_wsgate, dns, backend_at):
    b2, b3 = backends_on_one_port(backend_at, ["127.0.0.2", "127.0.0.3"])
    port = b2.port
    dns.a["chat.test"] = ["127.0.0.2"]
    gate = start_wsgate(config(dns, {"dns": "chat.test", "port": port}))
    admin = admin_port(gate)
    # Resolved before the listeners opened: the first session already has a backend.
    assert backend_names(admin) == [f"127.0.0.2:{port}"]
    conn, served = open_session(gate)
    assert served == "127.0.0.2"

    dns.a["chat.test"] = ["127.0.0.2", "127.0.0.3"]
    wait_backends(admin, [f"127.0.0.2:{port}", f"127.0.0.3:{port}"])
    seen = {open_session(gate)[1] for _ in range(4)}
    assert seen == {"127.0.0.2", "127.0.0.3"}, seen
    echoes(conn)  # the first session never noticed
    m = metrics(admin)
    assert m['wsgate_discovery_backends{pool="chat",dns="chat.test"}'] == 2
    assert m[f'wsgate_backend_available{{pool="chat",backend="127.0.0.3:{port}"}}'] == 1
    assert resolutions(admin, "changed") == 2  # the first answer, then the new address
    gate.wait_line(rf"discovery pool=chat dns=chat.test:{port}: 2 backend\(s\): "
                   rf"\+127\.0\.0\.3:{port}")
    # A snapshot of its own, not a reload.
    assert status(admin)["config"]["reloads_succeeded"] == 0
    assert status(admin)["config"]["generation"] == 2
    # The admin API names a discovered backend as /status does.
    code, body = admin_request(admin, "POST", f"/pools/chat/backends/127.0.0.3:{port}/drain")
    assert code == 200, body
    assert {open_session(gate)[1] for _ in range(3)} == {"127.0.0.2"}


def test_an_address_that_disappears_drains_its_sessions_with_1012_and_no_one_elses(
        start_wsgate, dns, backend_at):
    backends = backends_on_one_port(backend_at, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    port = backends[0].port
    dns.a["chat.test"] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    gate = start_wsgate(config(dns, {"dns": "chat.test", "port": port}))
    admin = admin_port(gate)
    sessions = [open_session(gate) for _ in range(6)]
    by_backend = {}
    for conn, name in sessions:
        by_backend.setdefault(name, []).append(conn)
    assert sorted(by_backend) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"], by_backend

    dns.a["chat.test"] = ["127.0.0.2", "127.0.0.4"]
    removed_at = time.monotonic()
    for conn in by_backend["127.0.0.3"]:
        close = conn.recv_frame(timeout=5)
        assert close.opcode == wsproto.OP_CLOSE, close
        assert wsproto.parse_close(close.payload)[0] == 1012, close.payload
        conn.send_frame(wsproto.OP_CLOSE, close.payload)
        assert conn.frames_until_eof(timeout=5) == []
    # One interval to see the change, then within drain_spread (500ms).
    assert time.monotonic() - removed_at < 0.2 + 0.5 + 1.0
    wait_backends(admin, [f"127.0.0.2:{port}", f"127.0.0.4:{port}"])
    # Past drain_spread: the others are still open and echo.
    time.sleep(0.6)
    for name in ("127.0.0.2", "127.0.0.4"):
        for conn in by_backend[name]:
            echoes(conn)
    assert {open_session(gate)[1] for _ in range(4)} == {"127.0.0.2", "127.0.0.4"}
    gate.wait_line(r"discovery: published generation=2 listeners kept=1 opened=0 closed=0 "
                   r"backends kept=2 added=0 removed=1 updated=0")


def test_with_the_hash_policy_only_keys_that_now_belong_to_the_new_backend_move(
        start_wsgate, dns, backend_at):
    backends = backends_on_one_port(backend_at, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    port = backends[0].port
    dns.a["chat.test"] = ["127.0.0.2", "127.0.0.3"]
    gate = start_wsgate(config(dns, {"dns": "chat.test", "port": port}, policy="hash",
                               extra_pool="    sticky: { header: X-User }\n"))
    admin = admin_port(gate)
    keys = [f"user-{i}" for i in range(100)]
    before = {k: get_backend(gate, (("X-User", k),)) for k in keys}
    assert set(before.values()) == {"127.0.0.2", "127.0.0.3"}

    dns.a["chat.test"] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    wait_backends(admin, [f"127.0.0.{i}:{port}" for i in (2, 3, 4)])
    after = {k: get_backend(gate, (("X-User", k),)) for k in keys}
    moved = [k for k in keys if after[k] != before[k]]
    elsewhere = [k for k in moved if after[k] != "127.0.0.4"]
    # About a third moves, to the new backend; Maglev trades a little disruption for even
    # shares (balancer's own test allows 2% of keys moving between old backends).
    assert 15 <= len(moved) <= 50, (len(moved), moved)
    assert len(elsewhere) <= 3, elsewhere
    # Every instance with the same records builds the same table: asking again changes nothing.
    assert {k: get_backend(gate, (("X-User", k),)) for k in keys[:20]} == \
        {k: after[k] for k in keys[:20]}


def test_a_resolver_that_goes_down_changes_nothing_but_a_counter_and_one_log_line(
        start_wsgate, dns, backend_at):
    b2, b3 = backends_on_one_port(backend_at, ["127.0.0.2", "127.0.0.3"])
    port = b2.port
    dns.a["chat.test"] = ["127.0.0.2"]
    gate = start_wsgate(config(dns, {"dns": "chat.test", "port": port}))
    admin = admin_port(gate)
    conn, _ = open_session(gate)

    dns.stop()  # the port is closed: each query is refused at once
    wait_for(lambda: resolutions(admin, "failed") >= 5, 5, "five failed resolutions")
    assert backend_names(admin) == [f"127.0.0.2:{port}"]
    echoes(conn)
    assert open_session(gate)[1] == "127.0.0.2"
    m = metrics(admin)
    assert m['wsgate_discovery_failing{pool="chat",dns="chat.test"}'] == 1
    failed_lines = re.findall(r"discovery pool=chat dns=chat\.test:\d+: resolution failed: "
                              r"([^\n]*)", gate.stderr())
    assert len(failed_lines) == 1, failed_lines
    assert f"for A chat.test from {dns.address}" in failed_lines[0], failed_lines[0]
    assert "keeping its last 1 backend(s)" in failed_lines[0]
    entry = status(admin)["discovery"][0]
    assert entry["failing"] and entry["backends"] == 1 and entry["last_error"], entry

    # SERVFAIL is a failure too, and counts the same.
    dns.servfail = True
    dns.start()
    failed = resolutions(admin, "failed")
    wait_for(lambda: resolutions(admin, "failed") >= failed + 2, 5, "SERVFAIL counted")
    assert dns.queries > 0

    dns.servfail = False
    dns.a["chat.test"] = ["127.0.0.2", "127.0.0.3"]
    wait_backends(admin, [f"127.0.0.2:{port}", f"127.0.0.3:{port}"])
    gate.wait_line(r"discovery pool=chat dns=chat\.test:\d+: answers again after \d+ failed")
    assert len(re.findall(r": answers again after", gate.stderr())) == 1
    assert len(re.findall(r": resolution failed:", gate.stderr())) == 1
    assert metrics(admin)['wsgate_discovery_failing{pool="chat",dns="chat.test"}'] == 0
    echoes(conn)


def test_srv_records_give_each_backend_its_target_and_port(start_wsgate, dns, backend_at):
    b2 = backend_at("127.0.0.2")
    b3 = backend_at("127.0.0.3")  # another port: the SRV record says which
    dns.srv["_ws._tcp.chat.test"] = [(10, 1, b2.port, "b2.chat.test"),
                                     (10, 1, b3.port, "b3.chat.test"),
                                     (20, 1, b3.port, "backup.chat.test")]
    dns.glue["b2.chat.test"] = ["127.0.0.2"]  # in the additional section
    dns.a["b3.chat.test"] = ["127.0.0.3"]     # asked for separately
    dns.a["backup.chat.test"] = ["127.0.0.4"]
    gate = start_wsgate(config(dns, {"dns": "_ws._tcp.chat.test"}))
    admin = admin_port(gate)
    assert backend_names(admin) == [f"127.0.0.2:{b2.port}", f"127.0.0.3:{b3.port}"]
    assert {open_session(gate)[1] for _ in range(4)} == {"127.0.0.2", "127.0.0.3"}
    entry = status(admin)["discovery"][0]
    assert (entry["dns"], entry["records"], entry["backends"]) == ("_ws._tcp.chat.test", "SRV", 2)

    dns.srv["_ws._tcp.chat.test"] = [(10, 1, b3.port, "b3.chat.test")]
    wait_backends(admin, [f"127.0.0.3:{b3.port}"])


def test_a_reload_keeps_the_discovered_backends_and_their_sessions(start_wsgate, dns,
                                                                   backend_at):
    b2, b3 = backends_on_one_port(backend_at, ["127.0.0.2", "127.0.0.3"])
    port = b2.port
    dns.a["chat.test"] = ["127.0.0.2", "127.0.0.3"]
    text = config(dns, {"dns": "chat.test", "port": port})
    gate = start_wsgate(text)
    admin = admin_port(gate)
    sessions = [open_session(gate) for _ in range(2)]
    # The resolver fails from now on: the reload must neither wait for it nor lose the set.
    dns.servfail = True
    gate.config_path.write_text(text.replace("interval: 200ms", "interval: 300ms"))
    code, body = admin_request(admin, "POST", "/reload")
    assert code == 200, body
    assert json.loads(body)["changes"].startswith(
        "listeners kept=1 opened=0 closed=0 backends kept=2 added=0 removed=0"), body
    wait_for(lambda: resolutions(admin, "failed") >= 2, 5, "failures after the reload")
    for conn, _ in sessions:
        echoes(conn)
        assert conn.received_within(0.7) == b""  # past drain_spread: no 1012 came
    assert backend_names(admin) == [f"127.0.0.2:{port}", f"127.0.0.3:{port}"]


def test_an_empty_answer_keeps_the_set_for_hold_empty_then_drains_it(start_wsgate, dns,
                                                                     backend_at):
    b2 = backend_at("127.0.0.2")
    dns.a["chat.test"] = ["127.0.0.2"]
    gate = start_wsgate(config(dns, {"dns": "chat.test", "port": b2.port, "hold_empty": "1s"}))
    admin = admin_port(gate)
    conn, _ = open_session(gate)
    del dns.a["chat.test"]  # NXDOMAIN
    wait_for(lambda: resolutions(admin, "held") >= 1, 5, "an empty answer held")
    held_at = time.monotonic()
    assert backend_names(admin) == [f"127.0.0.2:{b2.port}"]
    echoes(conn)
    close = conn.recv_frame(timeout=5)
    assert wsproto.parse_close(close.payload)[0] == 1012
    assert time.monotonic() - held_at > 0.6  # not before hold_empty
    assert backend_names(admin) == []
    assert get_status_code(gate) == 503


def get_status_code(gate):
    conn = Conn.open(gate.port)
    try:
        return conn.request("GET", "/").status
    finally:
        conn.close()


def test_check_validates_without_asking_dns(wsgate_bin, tmp_path, dns):
    path = tmp_path / "check.yaml"
    path.write_text(config(dns, {"dns": "chat.test", "port": 9001}))
    out = subprocess.run([str(wsgate_bin), "--check", "-c", str(path)], capture_output=True,
                         text=True, timeout=10)
    assert (out.returncode, out.stdout) == (0, "ok\n"), out.stderr
    assert dns.queries == 0
    path.write_text(config(dns, {"dns": "chat.test", "port": 9001, "interval": "10ms"}))
    out = subprocess.run([str(wsgate_bin), "--check", "-c", str(path)], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 1
    assert re.search(r"check\.yaml:\d+:\d+: 'interval' must be between 100ms and 1h",
                     out.stderr), out.stderr
