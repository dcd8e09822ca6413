"""What docs/configuration.md and docs/operations.md promise about a pool's backends coming
and going: a sticky cookie the application writes (`insert: false`) and the attributes of one
wsgate writes (`max_age`, `path`); `slow_start` after a backend comes back; 503 when every
backend is draining or down by health checks, and service again when one returns; WebSocket
sessions that outlive their backend's health. Backends name themselves in `X-Backend` (on a
101 too), so every pick is visible to the client; each request opens a connection of its own,
because wsgate keeps a kept-alive backend connection for the same client."""

import json
import re
import subprocess
import time
from collections import Counter
from typing import List, Tuple

import harness
import wsproto
from harness import admin_port, admin_request
from harness import Conn, ConnectionClosed, FakeBackend, gateway_config, route, wait_for

Headers = Tuple[Tuple[str, str], ...]

# Health checks quick enough to follow in a test, slow enough that a probe answered by a
# Python thread on a loaded machine does not time out: two failures take a backend out.
HEALTH = {"path": "/health", "interval": "300ms", "timeout": "250ms", "rise": 1, "fall": 2}
SLOW_START_SECONDS = 2.0
NO_BACKEND_BODY = b"503 Service Unavailable: no backend available\n"


# --- the backend ---------------------------------------------------------------------------------


def pool_member(conn: Conn, backend: FakeBackend) -> None:
    """A backend an application would run, controlled through its notes:
    - `GET /health`: 200, or 503 while notes["healthy"] is False; each probe is counted under
      notes["probes"];
    - a WebSocket upgrade: a 101, then every frame echoed until a Close (echoed) or the end of
      the stream; each data frame received is recorded under notes["frames"];
    - any other request: 200 `ok`, target recorded under notes["served"].
    Every answer but a probe's carries `X-Backend: NAME` and, when notes["set_cookie"] is
    set, that Set-Cookie line (the application writing its own sticky cookie).
    Returns quietly when wsgate closes or resets the connection, or the test stops it."""
    try:
        while not backend.stopping.is_set():
            request = conn.read_request(timeout=30)
            if request is None:
                return
            if request.target == "/health":
                healthy = backend.notes.get("healthy", True)
                backend.append("probes", healthy)
                conn.send(harness.response_bytes(200 if healthy else 503, b"health\n"))
                continue
            extra: Headers = (("X-Backend", backend.name),)
            if backend.notes.get("set_cookie"):
                extra += (("Set-Cookie", backend.notes["set_cookie"]),)
            if request.head.has_token("upgrade", "websocket"):
                conn.send(harness.switching_protocols(request, extra=extra))
                echo_frames(conn, backend)
                return
            backend.append("served", request.target)
            conn.send(harness.response_bytes(200, b"ok\n", extra))
    except (ConnectionClosed, TimeoutError, OSError):
        return


def echo_frames(conn: Conn, backend: FakeBackend) -> None:
    while not backend.stopping.is_set():
        frame = conn.recv_frame(timeout=30)
        if frame.opcode in (wsproto.OP_TEXT, wsproto.OP_BINARY):
            backend.append("frames", frame.payload)
        conn.send(wsproto.encode_frame(frame.opcode, frame.payload, fin=frame.fin, mask=False))
        if frame.opcode == wsproto.OP_CLOSE:
            return


# --- helpers -------------------------------------------------------------------------------------


def app_pool(*backends, policy: str = "round_robin", **keys) -> dict:
    cfg = harness.pool(*backends)
    cfg["policy"] = policy
    cfg.update(keys)
    return cfg


def start_app(start_wsgate, app: dict, admin: bool = False, label: str = "wsgate"):
    cfg = gateway_config([route("app", path_prefix="/")], {"app": app})
    if admin:
        cfg["admin"] = {"listen": "127.0.0.1:0"}
    return start_wsgate(cfg, label=label)


def admin_post(port: int, path: str) -> Tuple[int, dict]:
    status, body = admin_request(port, "POST", path)
    return status, json.loads(body) if status == 200 else {"state": None, "body": body}


def get(connect, port: int, path: str = "/", headers: Headers = ()) -> harness.Response:
    """One GET on a connection of its own: a fresh pick."""
    return connect(port).request("GET", path, headers)


def ws_open(connect, port: int, path: str = "/ws",
            headers: Headers = ()) -> Tuple[Conn, harness.Response]:
    """An upgrade on a connection of its own; checks the 101 and that a message echoes."""
    conn = connect(port)
    return conn, harness.upgrade_and_echo(conn, path, headers)


def ws_close(conn: Conn) -> None:
    """A clean closing handshake, then the end of the stream."""
    conn.send_close()
    frames = conn.frames_until_eof(timeout=5)
    assert frames and frames[-1].opcode == wsproto.OP_CLOSE, frames
    assert wsproto.parse_close(frames[-1].payload)[0] == wsproto.CLOSE_NORMAL, frames


def backend_of(response: harness.Response) -> str:
    name = response.header("x-backend")
    assert name, f"no X-Backend in {response.head.headers}"
    return name


def set_cookies(response: harness.Response) -> List[str]:
    return response.head.get_all("set-cookie")


def only_set_cookie(response: harness.Response) -> Tuple[str, str, List[str]]:
    """(name, value, attributes) of the response's one Set-Cookie; attributes as written."""
    lines = set_cookies(response)
    assert len(lines) == 1, f"expected one Set-Cookie, got {lines}"
    line = lines[0]
    first, *attributes = [part.strip() for part in line.split(";")]
    name, sep, value = first.partition("=")
    assert sep, f"no name=value in Set-Cookie {line!r}"
    return name, value, attributes


def assert_no_backend_available(response: harness.Response) -> None:
    assert response.status == 503, (response.status, response.body)
    assert response.reason == "Service Unavailable", response.reason
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.body == NO_BACKEND_BODY, response.body


def probes(backend: FakeBackend) -> int:
    return len(backend.notes.get("probes", []))


# --- sticky cookie -------------------------------------------------------------------------------


def test_with_insert_false_wsgate_sets_no_cookie_and_follows_the_one_the_application_set(
        start_wsgate, fake_backend, connect):
    a, b = fake_backend(pool_member, name="a"), fake_backend(pool_member, name="b")
    # The cookie's value is the backend's opaque name, the same on every instance with the
    # same pool and backend names: an instance that inserts it tells us what it is.
    inserting = start_app(start_wsgate, app_pool(a, b, sticky={"cookie": {"name": "WSGATE"}}),
                          label="inserting")
    value = {}
    for i in range(2):  # round robin: one request each
        response = get(connect, inserting.port, f"/learn/{i}")
        name, value[backend_of(response)], _ = only_set_cookie(response)
        assert name == "WSGATE", set_cookies(response)
    assert set(value) == {"a", "b"}, value
    inserting.stop()

    own = {}
    for backend in (a, b):
        own[backend.name] = f"WSGATE={value[backend.name]}; Path=/; Max-Age=600; Secure"
        backend.note("set_cookie", own[backend.name])
    gate = start_app(start_wsgate, app_pool(
        a, b, sticky={"cookie": {"name": "WSGATE", "insert": False}}))

    # Without a cookie: round robin, and only the application's Set-Cookie reaches the client.
    fresh = [get(connect, gate.port, f"/fresh/{i}") for i in range(4)]
    assert [backend_of(r) for r in fresh] in (["a", "b"] * 2, ["b", "a"] * 2), \
        [backend_of(r) for r in fresh]
    for response in fresh:
        assert set_cookies(response) == [own[backend_of(response)]], response.head.headers
    upgrade = ws_open(connect, gate.port)[1]
    assert set_cookies(upgrade) == [own[backend_of(upgrade)]], upgrade.head.headers

    # With the application's cookie: that backend every time, WebSocket or HTTP, alone in the
    # Cookie header or among others, and wsgate still adds no Set-Cookie of its own.
    for home in ("b", "a"):
        for i in range(8):
            jar = f"WSGATE={value[home]}" if i % 4 < 2 else \
                f"theme=dark; WSGATE={value[home]}; lang=en"
            headers = (("Cookie", jar),)
            response = ws_open(connect, gate.port, headers=headers)[1] if i % 2 == 0 else \
                get(connect, gate.port, f"/pinned/{i}", headers)
            assert backend_of(response) == home, f"request {i} with {home}'s cookie went elsewhere"
            assert set_cookies(response) == [own[home]], response.head.headers


def test_an_inserted_cookie_carries_the_configured_max_age_and_path(
        start_wsgate, fake_backend, connect):
    a, b = fake_backend(pool_member, name="a"), fake_backend(pool_member, name="b")
    gate = start_app(start_wsgate, app_pool(a, b, sticky={
        "cookie": {"name": "srv", "insert": True, "max_age": "1h", "path": "/app"}}))
    ports = {"a": a.port, "b": b.port}
    values = {}
    responses = [get(connect, gate.port, "/app/page"), ws_open(connect, gate.port, "/app/ws")[1]]
    for response in responses:
        name, value, attributes = only_set_cookie(response)
        line = set_cookies(response)[0]
        assert name == "srv", line
        # An opaque name of the backend: a cookie-octet string (RFC 6265 4.1.1) that does not
        # give its address away.
        assert re.fullmatch(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+", value), line
        assert str(ports[backend_of(response)]) not in value, line
        lowered = [attr.lower() for attr in attributes]
        assert [attr for attr in lowered if attr.startswith("max-age=")] == ["max-age=3600"], line
        assert [attr for attr in attributes if attr.lower().startswith("path=")] == \
            ["Path=/app"], line
        values[backend_of(response)] = value
    # Round robin: the page and the upgrade went to different backends, named differently.
    assert set(values) == {"a", "b"} and values["a"] != values["b"], values


# --- slow start ----------------------------------------------------------------------------------


def recovering_pool(start_wsgate, echo_backend, fake_backend):
    """least_conn over a (echo backend, always healthy) and b (health controlled), with
    health checks and a slow_start of SLOW_START_SECONDS."""
    a = echo_backend("a")
    b = fake_backend(pool_member, name="b")
    gate = start_app(start_wsgate, app_pool(a, b, policy="least_conn", health=dict(HEALTH),
                                            slow_start=f"{int(SLOW_START_SECONDS * 1000)}ms"))
    return gate, a, b


def bring_back(gate: harness.Wsgate, b: FakeBackend) -> float:
    """Lets b pass its probes again; returns the moment before, which its slow start cannot
    precede (the probe that brings it back is answered after it)."""
    flipped = time.monotonic()
    b.note("healthy", True)
    gate.wait_line(r"\[health b=app/b\] up after 1 good probes", timeout=5)
    return flipped


def test_a_backend_back_from_a_health_outage_is_not_handed_the_backlog_at_once(
        start_wsgate, echo_backend, fake_backend, connect):
    gate, _, b = recovering_pool(start_wsgate, echo_backend, fake_backend)
    b.note("healthy", False)
    gate.wait_line(r"\[health b=app/b\] down after 2 failed probes", timeout=5)
    backlog = [backend_of(ws_open(connect, gate.port)[1]) for _ in range(10)]
    assert backlog == ["a"] * 10

    flipped = bring_back(gate, b)
    new = Counter(backend_of(ws_open(connect, gate.port)[1]) for _ in range(10))
    elapsed = time.monotonic() - flipped
    # least_conn sends b a session only while b's sessions per unit of its weight are at most
    # a's, so b ends with at most weight_b/weight_a * a's + 1. At full weight b would take all
    # 10 (its 0 against a's 10); during the ramp its weight is at most a tenth plus the part
    # of the window that has passed.
    fraction = 0.1 + 0.9 * min(1.0, elapsed / SLOW_START_SECONDS)
    at_most = int((20 * fraction + 1) / (1 + fraction))
    assert 1 <= new["b"] <= at_most, \
        f"b took {new['b']} of 10 new sessions {elapsed:.2f}s after coming back (at most " \
        f"{at_most} with a weight of {fraction:.2f}); a took {new['a']}"


def test_a_recovered_backend_gets_its_full_share_only_once_slow_start_is_over(
        start_wsgate, echo_backend, fake_backend, connect):
    gate, _, b = recovering_pool(start_wsgate, echo_backend, fake_backend)
    sessions = Counter(backend_of(ws_open(connect, gate.port)[1]) for _ in range(20))
    assert sessions == {"a": 10, "b": 10}
    b.note("healthy", False)
    gate.wait_line(r"\[health b=app/b\] down after 2 failed probes", timeout=5)
    flipped = bring_back(gate, b)  # b's 10 sessions outlived the outage

    # Both hold 10 sessions: least_conn gives b a request only when its weight is back to
    # a's (a tie), never while it ramps. Each GET is a fresh pick that holds nothing.
    picks = []

    def b_picked() -> bool:
        picks.append(backend_of(get(connect, gate.port, f"/poll/{len(picks)}")))
        return picks[-1] == "b"

    wait_for(b_picked, timeout=SLOW_START_SECONDS + 5, what="a request to reach b")
    first_b = time.monotonic() - flipped
    assert first_b >= SLOW_START_SECONDS, \
        f"b got a request {first_b:.2f}s after coming back, inside its " \
        f"{SLOW_START_SECONDS}s slow start, after {len(picks) - 1} request(s) to a"


# --- no backend left -----------------------------------------------------------------------------


def test_every_backend_draining_gets_503_until_one_is_enabled(
        start_wsgate, fake_backend, connect):
    a, b = fake_backend(pool_member, name="a"), fake_backend(pool_member, name="b")
    gate = start_app(start_wsgate, app_pool(a, b), admin=True)
    port = admin_port(gate)
    assert {backend_of(get(connect, gate.port, f"/warm/{i}")) for i in range(2)} == {"a", "b"}
    for name in ("a", "b"):
        status, body = admin_post(port, f"/pools/app/backends/{name}/drain")
        assert (status, body["state"]) == (200, "draining"), body

    conn = connect(gate.port)
    assert_no_backend_available(conn.request("GET", "/drained"))
    # The client's body names no pool; the access line does.
    record = gate.access_for(conn)[0]
    assert (record["status"], record["pool"], record["backend"]) == (503, "app", None), record
    upgrading = connect(gate.port)
    assert_no_backend_available(upgrading.upgrade("/ws"))
    for client in (conn, upgrading):
        [record] = gate.access_for(client)
        assert (record["status"], record["reason"], record["backend"]) == \
            (503, "no backend available", None), record
    assert len(a.notes.get("served", [])) == 1 and len(b.notes.get("served", [])) == 1

    status, body = admin_post(port, "/pools/app/backends/b/enable")
    assert (status, body["state"]) == (200, "enabled"), body
    assert [backend_of(get(connect, gate.port, f"/back/{i}")) for i in range(4)] == ["b"] * 4
    assert backend_of(ws_open(connect, gate.port)[1]) == "b"


def test_every_backend_down_by_health_checks_gets_503_until_one_passes_again(
        start_wsgate, fake_backend, refused_address, connect):
    # One backend whose process is gone (connections refused), one that answers 503 to its
    # probes: both down by health checks, for either reason.
    gone = ("gone", refused_address())
    b = fake_backend(pool_member, name="b")
    gate = start_app(start_wsgate, app_pool(gone, b, health=dict(HEALTH)))
    gate.wait_line(r"\[health b=app/gone\] down after 2 failed probes: connect failed", timeout=5)
    assert backend_of(get(connect, gate.port, "/warm")) == "b"
    b.note("healthy", False)
    gate.wait_line(r"\[health b=app/b\] down after 2 failed probes: status not 2xx", timeout=5)

    # Unlike passive ejection, active checks are not second-guessed: no backend is tried.
    conn = connect(gate.port)
    assert_no_backend_available(conn.request("GET", "/down"))
    upgrading = connect(gate.port)
    assert_no_backend_available(upgrading.upgrade("/ws"))
    for client in (conn, upgrading):
        [record] = gate.access_for(client)
        assert (record["status"], record["reason"], record["backend"]) == \
            (503, "no backend available", None), record
    assert b.notes["served"] == ["/warm"]
    assert "connect b=app/gone" not in gate.stderr()

    b.note("healthy", True)
    gate.wait_line(r"\[health b=app/b\] up after 1 good probes", timeout=5)
    assert [backend_of(get(connect, gate.port, f"/back/{i}")) for i in range(4)] == ["b"] * 4
    assert backend_of(ws_open(connect, gate.port)[1]) == "b"


# --- sessions outlive their backend's health -----------------------------------------------------


def test_a_websocket_session_keeps_flowing_after_health_checks_take_its_backend_out(
        start_wsgate, fake_backend, connect):
    a, b = fake_backend(pool_member, name="a"), fake_backend(pool_member, name="b")
    gate = start_app(start_wsgate, app_pool(a, b, health=dict(HEALTH)))
    sessions = [ws_open(connect, gate.port) for _ in range(2)]  # round robin: one on each
    opened = {backend_of(response): conn for conn, response in sessions}
    assert set(opened) == {"a", "b"}, opened
    session = opened["b"]

    b.note("healthy", False)
    gate.wait_line(r"\[health b=app/b\] down after 2 failed probes", timeout=5)
    # Three more failed probes: b has been out for a while, not just for an instant.
    seen = probes(b)
    wait_for(lambda: probes(b) >= seen + 3, timeout=5, what="three more probes of b")

    for i in range(5):
        payload = f"still here {i}".encode()
        session.send_frame(wsproto.OP_TEXT, payload)
        assert session.recv_message() == (wsproto.OP_TEXT, payload)
        assert b.notes["frames"][-1] == payload  # it went through to b, not elsewhere
    assert [backend_of(ws_open(connect, gate.port)[1]) for _ in range(4)] == ["a"] * 4

    ws_close(session)
    [record] = gate.access_for(session)
    assert (record["status"], record["backend"], record["reason"]) == (101, "app/b", "closed"), \
        record


# --- source addresses ----------------------------------------------------------------------------


def test_backend_connections_take_the_source_addresses_in_turn(start_wsgate, fake_backend,
                                                               connect, wsgate_bin, tmp_path):
    """`source_addresses` spreads backend connections over local addresses (each with its own
    range of local ports per backend address): the backend sees them in turn. An address
    this host does not have is a FILE:LINE:COL error, from --check too."""
    def records_peer(conn, backend):
        backend.append("peers", conn.sock.getpeername()[0])
        pool_member(conn, backend)

    a = fake_backend(records_peer, name="a")
    gate = start_app(start_wsgate, app_pool(a, source_addresses=["127.0.0.2", "127.0.0.3"]))
    for _ in range(6):
        assert get(connect, gate.port).status == 200
    assert a.notes["peers"] == ["127.0.0.2", "127.0.0.3"] * 3
    for _ in range(2):  # WebSocket sessions too
        ws_close(ws_open(connect, gate.port)[0])
    assert a.notes["peers"][6:] == ["127.0.0.2", "127.0.0.3"]

    config = tmp_path / "foreign.yaml"
    config.write_text(harness.to_yaml(gateway_config(
        [route("app", path_prefix="/")],
        {"app": app_pool(a, source_addresses=["127.0.0.2", "192.0.2.77"])})))
    result = subprocess.run([str(wsgate_bin), "--check", "-c", str(config)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1)
                if "192.0.2.77" in text)
    assert re.search(rf"^{re.escape(str(config))}:{line}:\d+: pool app: source address "
                     r"192\.0\.2\.77 cannot be used: Cannot assign requested address \(not an "
                     r"address of this host\)$", result.stderr, re.MULTILINE), result.stderr
