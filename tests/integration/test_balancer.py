"""How a pool spreads clients over its backends: policies and weights, stickiness by cookie,
header, query and source address, passive ejection of a dead backend, and the per-backend
connection limit with its queue. Each backend is an echo backend that names itself in an
`X-Backend` header (on the 101 of a WebSocket upgrade too), so every pick is visible to the
client; "separate connections" matter because wsgate reuses a kept-alive backend connection."""

import re
import socket
import time
from collections import Counter
from typing import Dict, List, Optional, Tuple

import harness
import wsproto
from harness import Conn, gateway_config, pool, route

Headers = Tuple[Tuple[str, str], ...]
COOKIE_RE = re.compile(r"^WSGATE=([0-9a-f]{16}); Path=/; HttpOnly$")


# --- helpers ------------------------------------------------------------------------------


def balanced_pool(*backends, policy: str = "round_robin", sticky: Optional[dict] = None,
                  weights: Optional[List[int]] = None,
                  max_connections: Optional[List[int]] = None, **kwargs) -> dict:
    cfg = pool(*backends, **kwargs)
    cfg["policy"] = policy
    if sticky is not None:
        cfg["sticky"] = sticky
    for i, entry in enumerate(cfg["backends"]):
        if weights is not None:
            entry["weight"] = weights[i]
        if max_connections is not None:
            entry["max_connections"] = max_connections[i]
    return cfg


def balancer_config(app_pool: dict, **kwargs) -> dict:
    return gateway_config([route("app", path_prefix="/")], {"app": app_pool}, **kwargs)


def open_conn(port: int, source_ip: Optional[str] = None) -> Conn:
    """A client connection, from `source_ip` (any 127.0.0.0/8 address) when given."""
    if source_ip is None:
        return Conn.open(port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(harness.DEFAULT_TIMEOUT)
    sock.bind((source_ip, 0))
    sock.connect((harness.LOOPBACK, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Conn(sock)


def get_once(port: int, path: str = "/", headers: Headers = (),
             source_ip: Optional[str] = None) -> harness.Response:
    """One GET on a connection of its own, closed afterwards: a fresh backend pick."""
    conn = open_conn(port, source_ip)
    try:
        return conn.request("GET", path, headers)
    finally:
        conn.close()


def ws_open(port: int, path: str = "/ws", headers: Headers = (),
            source_ip: Optional[str] = None) -> Tuple[Conn, harness.Response]:
    """An upgrade on a connection of its own; checks the 101 and that a message echoes."""
    conn = open_conn(port, source_ip)
    return conn, harness.upgrade_and_echo(conn, path, headers)


def ws_close(conn: Conn) -> None:
    """A clean close handshake, then waits for wsgate to end the stream."""
    conn.send_close()
    frames = conn.frames_until_eof(timeout=5)
    assert frames and frames[-1].opcode == wsproto.OP_CLOSE, frames
    conn.close()


def ws_once(port: int, path: str = "/ws", headers: Headers = (),
            source_ip: Optional[str] = None) -> harness.Response:
    conn, response = ws_open(port, path, headers, source_ip)
    ws_close(conn)
    return response


def backend_of(response: harness.Response) -> str:
    name = response.header("x-backend")
    assert name, f"no X-Backend in {response.head.headers}"
    return name


def set_cookies(response: harness.Response) -> List[str]:
    return response.head.get_all("set-cookie")


def pinned_cookie(response: harness.Response) -> str:
    """The WSGATE value of the response's one Set-Cookie, checking its form."""
    cookies = set_cookies(response)
    assert len(cookies) == 1, cookies
    m = COOKIE_RE.match(cookies[0])
    assert m, f"unexpected Set-Cookie {cookies[0]!r}"
    return m.group(1)


def assert_503_full(response: harness.Response) -> None:
    assert response.status == 503, (response.status, response.body)
    assert response.reason == "Service Unavailable", response.reason
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.body.startswith(b"503 Service Unavailable: "), response.body
    assert b"max_connections" in response.body, response.body


def send_upgrade(conn: Conn, path: str = "/ws") -> str:
    """Sends an upgrade request without reading the answer; returns its key."""
    key = wsproto.new_key()
    conn.send(wsproto.upgrade_request(path, "localhost", key, ()))
    return key


# --- policies -------------------------------------------------------------------------------


def test_least_conn_evens_out_websockets_and_refills_the_emptier_backend(
        start_wsgate, echo_backend):
    a, b = echo_backend("a"), echo_backend("b")
    gate = start_wsgate(balancer_config(balanced_pool(a, b, policy="least_conn"), workers=2))
    sessions: Dict[str, List[Conn]] = {"a": [], "b": []}
    for _ in range(40):
        conn, response = ws_open(gate.port)
        sessions[backend_of(response)].append(conn)
    assert {k: len(v) for k, v in sessions.items()} == {"a": 20, "b": 20}

    closed = sessions["a"][:10]
    ports = {f":{c.local_port}" for c in closed}
    for conn in closed:
        ws_close(conn)
    gate.wait_access(lambda r: r.get("status") == 101 and r.get("kind") == "websocket"
                     and any(str(r.get("client", "")).endswith(p) for p in ports), count=10)

    refill = [ws_open(gate.port) for _ in range(10)]
    assert [backend_of(r) for _, r in refill] == ["a"] * 10
    for conn, _ in refill:
        ws_close(conn)
    for conn in sessions["a"][10:] + sessions["b"]:
        ws_close(conn)


def test_round_robin_weights_3_to_1_split_400_requests_within_5_percent(
        start_wsgate, echo_backend):
    heavy, light = echo_backend("heavy"), echo_backend("light")
    gate = start_wsgate(balancer_config(balanced_pool(heavy, light, weights=[3, 1]),
                                        workers=2))
    counts = Counter()
    for i in range(400):
        response = get_once(gate.port, f"/w/{i}")
        assert response.status == 200, response.body
        counts[backend_of(response)] += 1
    assert set(counts) == {"heavy", "light"}, counts
    assert abs(counts["heavy"] / 400 - 0.75) <= 0.05, counts
    assert abs(counts["light"] / 400 - 0.25) <= 0.05, counts


# --- cookie stickiness ------------------------------------------------------------------------


def test_cookie_keeps_a_client_on_its_backend_over_30_reconnects(start_wsgate, echo_backend):
    a, b = echo_backend("a"), echo_backend("b")
    gate = start_wsgate(balancer_config(
        balanced_pool(a, b, sticky={"cookie": {"name": "WSGATE", "insert": True}})))
    first = ws_once(gate.port)
    home = backend_of(first)
    cookie = pinned_cookie(first)

    for i in range(30):
        # Alternate WebSocket and plain HTTP, and carry the cookie among others half the time.
        jar = f"WSGATE={cookie}" if i % 4 < 2 else f"theme=dark; WSGATE={cookie}; lang=en"
        headers = (("Cookie", jar),)
        response = ws_once(gate.port, headers=headers) if i % 2 == 0 else \
            get_once(gate.port, f"/r/{i}", headers)
        assert response.status in (101, 200), response.status
        assert backend_of(response) == home, f"reconnect {i} went elsewhere"
        assert set_cookies(response) == [], f"reconnect {i} was re-pinned"


def test_a_bogus_cookie_gets_a_fresh_one(start_wsgate, echo_backend):
    a, b = echo_backend("a"), echo_backend("b")
    gate = start_wsgate(balancer_config(
        balanced_pool(a, b, sticky={"cookie": {"name": "WSGATE", "insert": True}})))
    valid = {}
    for value in ("nonsense", "0123456789abcdef", "", "ffffffffffffffffff"):
        response = get_once(gate.port, "/", (("Cookie", f"WSGATE={value}"),))
        assert response.status == 200, response.body
        fresh = pinned_cookie(response)
        assert fresh != value
        valid.setdefault(backend_of(response), fresh)
    # Round robin put the four bogus cookies on both backends...
    assert sorted(valid) == ["a", "b"], valid
    # ...and each fresh cookie then does pin: it names the backend that set it.
    for name, cookie in valid.items():
        response = get_once(gate.port, "/", (("Cookie", f"WSGATE={cookie}"),))
        assert backend_of(response) == name
        assert set_cookies(response) == []


def test_a_cookie_for_a_stopped_backend_is_repinned_to_a_live_one(start_wsgate, echo_backend):
    backends = {"a": echo_backend("a"), "b": echo_backend("b")}
    gate = start_wsgate(balancer_config(
        balanced_pool(*backends.values(), sticky={"cookie": {"name": "WSGATE"}})))
    first = ws_once(gate.port)
    home = backend_of(first)
    old = pinned_cookie(first)
    other = "b" if home == "a" else "a"

    backends[home].stop()
    response = ws_once(gate.port, headers=(("Cookie", f"WSGATE={old}"),))
    assert backend_of(response) == other
    new = pinned_cookie(response)
    assert new != old

    for i in range(5):
        response = get_once(gate.port, f"/after/{i}", (("Cookie", f"WSGATE={new}"),))
        assert response.status == 200, response.body
        assert backend_of(response) == other
        assert set_cookies(response) == []


# --- hashed stickiness -------------------------------------------------------------------------


def assert_consistent(placements: Dict[str, List[str]]) -> Dict[str, str]:
    """Each key always on one backend, and the keys spread over more than one backend."""
    mapping = {}
    for key, seen in placements.items():
        assert len(set(seen)) == 1, f"{key} landed on {seen}"
        mapping[key] = seen[0]
    assert len(set(mapping.values())) > 1, f"every key on one backend: {mapping}"
    return mapping


def test_header_stickiness_is_stable_and_identical_on_a_second_instance(
        start_wsgate, echo_backend):
    a, b = echo_backend("a"), echo_backend("b")
    config = balancer_config(balanced_pool(a, b, sticky={"header": "X-User"}), workers=2)
    gate = start_wsgate(config)
    spellings = ("X-User", "x-user", "X-USER", "X-User", "x-User")  # names are case-blind
    placements: Dict[str, List[str]] = {}
    for i in range(20):
        user = f"user-{i}"
        for name in spellings:
            response = get_once(gate.port, f"/u/{i}", ((name, user),))
            assert response.status == 200, response.body
            placements.setdefault(user, []).append(backend_of(response))
    mapping = assert_consistent(placements)

    second = start_wsgate(config, label="second")
    elsewhere = {user: backend_of(get_once(second.port, "/", (("X-User", user),)))
                 for user in mapping}
    assert elsewhere == mapping


def test_query_stickiness_is_stable_and_identical_on_a_second_instance(
        start_wsgate, echo_backend):
    a, b = echo_backend("a"), echo_backend("b")
    config = balancer_config(balanced_pool(a, b, sticky={"query": "room"}))
    gate = start_wsgate(config)
    placements: Dict[str, List[str]] = {}
    for i in range(10):
        room = f"r{i}"
        for path in (f"/ws?room={room}", f"/ws?x=1&room={room}", f"/ws?room={room}&y=2"):
            placements.setdefault(room, []).append(backend_of(ws_once(gate.port, path)))
    mapping = assert_consistent(placements)

    second = start_wsgate(config, label="second")
    assert {room: backend_of(ws_once(second.port, f"/ws?room={room}"))
            for room in mapping} == mapping


def test_source_ip_stickiness_keeps_each_address_on_one_backend(start_wsgate, echo_backend):
    a, b = echo_backend("a"), echo_backend("b")
    config = balancer_config(balanced_pool(a, b, sticky={"source_ip": True}))
    gate = start_wsgate(config)
    local = {backend_of(get_once(gate.port, f"/{i}")) for i in range(10)}
    assert len(local) == 1, f"127.0.0.1 spread over {local}"

    placements: Dict[str, List[str]] = {}
    for host in range(2, 18):
        ip = f"127.0.0.{host}"
        for i in range(3):
            placements.setdefault(ip, []).append(
                backend_of(get_once(gate.port, f"/{i}", source_ip=ip)))
    mapping = assert_consistent(placements)

    second = start_wsgate(config, label="second")
    assert {ip: backend_of(get_once(second.port, "/", source_ip=ip))
            for ip in mapping} == mapping


# --- passive health ------------------------------------------------------------------------------


def test_a_killed_backend_costs_no_failed_request_and_is_then_skipped(
        start_wsgate, echo_backend):
    live, doomed = echo_backend("live"), echo_backend("doomed")
    gate = start_wsgate(balancer_config(balanced_pool(live, doomed), workers=2))
    assert {backend_of(get_once(gate.port, f"/warm/{i}")) for i in range(4)} == \
        {"live", "doomed"}
    doomed.stop()

    started = time.monotonic()
    ports = []
    for i in range(50):
        conn = Conn.open(gate.port)
        ports.append(f":{conn.local_port}")
        try:
            response = conn.request("GET", f"/after/{i}")
        finally:
            conn.close()
        assert response.status == 200, (i, response.status, response.body)
        assert backend_of(response) == "live"
    elapsed = time.monotonic() - started

    records = gate.wait_access(
        lambda r: any(str(r.get("client", "")).endswith(p) for p in ports), count=50)
    assert {r["backend"] for r in records} == {"app/live"}
    # Ejected for 1s after the first refused connect, then 2s, 4s... after each failed retry:
    # only the retries whose backoff ran out during the loop may touch it again.
    failed = len(re.findall(r"connect b=app/doomed\] failed", gate.stderr()))
    allowed = 1 + sum(1 for t in (1, 3, 7, 15, 31) if t < elapsed + 0.5)
    assert 1 <= failed <= allowed, (failed, f"{elapsed:.2f}s", gate.stderr()[-2000:])


# --- max_connections and the queue ------------------------------------------------------------------


def test_a_full_backend_queues_an_upgrade_until_a_session_closes(start_wsgate, echo_backend):
    echo = echo_backend("solo")
    gate = start_wsgate(balancer_config(balanced_pool(echo, max_connections=[2]),
                                        timeouts={"queue": "20s"}))
    first, _ = ws_open(gate.port)
    second, _ = ws_open(gate.port)

    waiting = Conn.open(gate.port)
    key = send_upgrade(waiting)
    assert waiting.received_within(0.7) == b"", "answered while the backend was full"

    ws_close(first)
    closed_at = time.monotonic()
    response = waiting.read_response(timeout=10)
    assert response.status == 101, (response.status, response.body)
    assert response.header("sec-websocket-accept") == wsproto.accept_for(key)
    assert time.monotonic() - closed_at < 5
    waiting.send_frame(wsproto.OP_TEXT, b"got in")
    assert waiting.recv_message() == (wsproto.OP_TEXT, b"got in")
    ws_close(waiting)
    ws_close(second)


def test_a_queued_post_whose_body_and_fin_came_together_is_still_answered(
        start_wsgate, echo_backend, connect):
    """A client that sends its request and body, then shuts down its write side (curl
    with a file body, `nc -N`), while the request waits for a place: the FIN is no reason to
    drop it; it goes to the backend once a place frees up, and the answer comes back."""
    echo = echo_backend("solo")
    gate = start_wsgate(balancer_config(balanced_pool(echo, max_connections=[1]),
                                        timeouts={"queue": "20s"}))
    session, _ = ws_open(gate.port)
    poster = connect(gate.port)
    poster.send(harness.build_request("POST", "/upload", body=b"x" * 5000))
    poster.shutdown_write()
    assert not poster.is_closed_within(0.5), "dropped (or answered) while it waited"
    ws_close(session)
    response = poster.read_response(method="POST", timeout=10)
    assert response.status == 200, (response.status, response.body)
    assert response.body == b"x" * 5000  # the echo backend answers a POST with its body
    assert gate.access_for(poster)[0]["status"] == 200


def test_a_queued_post_cut_short_by_the_clients_fin_is_dropped_without_reaching_a_backend(
        start_wsgate, echo_backend, connect):
    echo = echo_backend("solo")
    gate = start_wsgate(balancer_config(balanced_pool(echo, max_connections=[1]),
                                        timeouts={"queue": "20s"}))
    session, _ = ws_open(gate.port)
    poster = connect(gate.port)
    poster.send(harness.build_request("POST", "/upload", body=b"x" * 5000)[:-1000])
    poster.shutdown_write()
    assert poster.read_until_eof(timeout=5) == b""  # while the backend is still full
    assert gate.access_for(poster)[0]["reason"] == "client closed mid-request"
    ws_close(session)
    # A request after it reaches the backend; the cut-short POST never did.
    assert connect(gate.port).request("GET", "/after").status == 200
    wait_for_line = harness.wait_for(lambda: "GET /after" in echo.stderr(), what="the GET")
    assert wait_for_line
    assert "POST /upload" not in echo.stderr()


def request_to_a_full_backend(start_wsgate, echo_backend, connect, **limits):
    """One backend with max_connections 2, both taken by WebSockets; a GET then waits for a
    slot. Returns (gate, the GET's connection, its response, seconds it took)."""
    echo = echo_backend("solo")
    gate = start_wsgate(balancer_config(balanced_pool(echo, max_connections=[2]), **limits))
    sessions = [ws_open(gate.port)[0] for _ in range(2)]
    conn = connect(gate.port)
    started = time.monotonic()
    response = conn.request("GET", "/full", timeout=10)
    elapsed = time.monotonic() - started
    for s in sessions:
        ws_close(s)
    return gate, conn, response, elapsed


def test_a_full_backend_answers_503_after_timeouts_queue(start_wsgate, echo_backend, connect):
    gate, conn, response, elapsed = request_to_a_full_backend(
        start_wsgate, echo_backend, connect, timeouts={"queue": "300ms"})
    assert_503_full(response)
    assert 0.25 <= elapsed <= 3.0, f"503 after {elapsed:.2f}s with timeouts.queue: 300ms"
    assert gate.access_for(conn)[0]["status"] == 503


def test_max_queue_zero_answers_503_at_once(start_wsgate, echo_backend, connect):
    _, _, response, elapsed = request_to_a_full_backend(
        start_wsgate, echo_backend, connect, timeouts={"queue": "20s"}, limits={"max_queue": 0})
    assert_503_full(response)
    assert elapsed < 1.5, f"503 after {elapsed:.2f}s with max_queue: 0"


def test_a_full_queue_answers_503_at_once_while_the_queued_request_still_waits(
        start_wsgate, echo_backend, connect):
    echo = echo_backend("solo")
    gate = start_wsgate(balancer_config(balanced_pool(echo, max_connections=[1]),
                                        timeouts={"queue": "20s"}, limits={"max_queue": 1}))
    session, _ = ws_open(gate.port)
    queued = connect(gate.port)
    queued.send(harness.build_request("GET", "/queued"))
    # Deliberate window: no answer while it waits. Nothing tells from outside that it is
    # queued by now; if it were not, the overflow below would queue and never get its 503.
    assert queued.received_within(0.5) == b""

    started = time.monotonic()
    overflow = connect(gate.port).request("GET", "/overflow", timeout=10)
    assert_503_full(overflow)
    assert time.monotonic() - started < 1.5

    ws_close(session)
    response = queued.read_response(timeout=10)
    assert response.status == 200, response.body
    assert backend_of(response) == "solo"
