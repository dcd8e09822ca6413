"""Lua scripting through the real binary. First the six scripts of conf/examples/, each run
as its example config with only the addresses and the script's path rewritten (so the
examples themselves are what is tested), from python3-websockets and from Node.js's `ws`
(node_ws_client.js, on Debian's node-ws). Then what scripts do to the process: a reload that
swaps the script under open sessions, a broken script refused, a route naming a function the
script lacks, hook failures (an error, an endless loop, a memory bomb, a CR/LF header value,
an error in on_message), the code on_close gets, and permessage-deflate on routes whose
script reads messages.

Node.js and node-ws are test dependencies (packaging/install-deps.sh): without them the node
variants fail, they do not skip.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import websockets

import harness
import wsproto
from harness import (Conn, admin_port, admin_request, assert_error_response,
                     gateway_config, route, switching_protocols, to_yaml, wait_for)

EXAMPLES = harness.SOURCE_DIR / "conf" / "examples"
NODE_CLIENT = harness.SOURCE_DIR / "tests" / "integration" / "node_ws_client.js"
DEBIAN_NODE_MODULES = "/usr/share/nodejs"  # where Debian's node-ws installs `ws`


# --- configs ---------------------------------------------------------------------------------


def example_config(name: str, addresses: Dict[str, str]) -> str:
    """conf/examples/NAME.yaml with its listener on port 0, each backend address it names
    replaced by addresses[that address], and the script's path made absolute (wsgate runs in
    the test's directory). Nothing else changes."""
    text = (EXAMPLES / f"{name}.yaml").read_text()
    named = set(re.findall(r"127\.0\.0\.1:\d+", text)) - {"127.0.0.1:8080"}
    assert named == set(addresses), f"{name}.yaml names {sorted(named)}: update the test"
    text = re.sub(r"127\.0\.0\.1:\d+",
                  lambda m: "127.0.0.1:0" if m.group(0) == "127.0.0.1:8080"
                  else addresses[m.group(0)], text)
    assert "file: conf/examples/" in text, f"{name}.yaml: scripting.file moved"
    return text.replace("file: conf/examples/", f"file: {EXAMPLES}/")


def start_example(start_wsgate, name: str, addresses: Dict[str, str]):
    return start_wsgate(example_config(name, addresses), label=name)


def lua_route(pool_name: str, function: str, path_prefix: str = "/") -> dict:
    entry = route(pool_name, path_prefix=path_prefix)
    entry["lua"] = function
    return entry


def scripted_config(script: Path, routes: List[dict], pools: Dict[str, dict], *,
                    admin: bool = False, **scripting) -> dict:
    """One worker (so wsgate.shared is one table), the script, optionally an admin listener.
    The script is named by its file name: it sits in the test's directory, wsgate's working
    directory, and Lua shortens a chunk name over 60 bytes in its messages (see
    test_a_long_script_path_is_named_whole_in_errors)."""
    cfg = gateway_config(routes, pools)
    cfg["scripting"] = {"file": script.name, **scripting}
    if admin:
        cfg["admin"] = {"listen": "127.0.0.1:0"}
    return cfg


def one_pool(*backends) -> Dict[str, dict]:
    return {"app": harness.pool(*backends)}


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def ws_url(gate, path: str) -> str:
    return f"ws://127.0.0.1:{gate.port}{path}"


# --- backends --------------------------------------------------------------------------------


def named_backend(conn: Conn, backend: harness.FakeBackend) -> None:
    """A backend answering as `backend.name`: a plain request gets 200 and JSON {"backend",
    "path", "headers": [[name, value]...]} (kept alive); an upgrade gets a 101 with
    X-Backend: NAME, then every frame is echoed until a Close. Requests are noted under
    "requests", frames under "frames" (all sessions) and "sessions" (a list per session)."""
    for request in backend.requests(conn):
        backend.append("requests", request)
        if request.head.has_token("upgrade", "websocket"):
            conn.send(switching_protocols(request, extra=(("X-Backend", backend.name),)))
            echo_frames(conn, backend)
            return
        body = json.dumps({"backend": backend.name, "path": request.target,
                           "headers": [[k, v] for k, v in request.head.headers]}).encode()
        conn.send(harness.response_bytes(200, body, (("X-Backend", backend.name),)))


def echo_frames(conn: Conn, backend: harness.FakeBackend) -> None:
    frames: list = []
    backend.append("sessions", frames)
    for frame in backend.frames(conn):
        frames.append(frame)
        backend.append("frames", frame)
        if frame.opcode == wsproto.OP_CLOSE:
            try:  # wsgate may close as soon as the client's side is done
                conn.send(wsproto.encode_frame(frame.opcode, frame.payload))
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        conn.send(wsproto.encode_frame(frame.opcode, frame.payload, fin=frame.fin))


def backends(fake_backend, *names) -> List[harness.FakeBackend]:
    return [fake_backend(named_backend, name) for name in names]


# --- clients ---------------------------------------------------------------------------------


def session(url: str, headers: Optional[Dict[str, str]] = None, send=(),
            expect: Optional[int] = None, close: int = 1000, deflate: bool = False) -> dict:
    """One WebSocket session for a client: open `url` with `headers` (offering
    permessage-deflate only if `deflate`), send every message of `send` at once, then read
    `expect` messages and close with `close`, or with expect=None read until the server
    closes."""
    return {"url": url, "headers": headers or {}, "send": list(send), "expect": expect,
            "close": close, "deflate": deflate}


def run_python(sessions: List[dict], timeout: float = 10.0) -> List[dict]:
    """The sessions from python3-websockets, one after the other; each result as
    node_ws_client.js prints it, except that `body` is None for a refusal (websockets keeps
    the body of a refused upgrade to itself)."""
    async def one(spec):
        out = {"status": None, "headers": {}, "body": None, "extensions": "", "received": [],
               "close_code": None, "close_reason": ""}
        try:
            ws = await websockets.connect(
                spec["url"], extra_headers=list(spec["headers"].items()),
                compression="deflate" if spec["deflate"] else None, open_timeout=timeout,
                close_timeout=timeout, ping_interval=None, max_size=None)
        except websockets.exceptions.InvalidStatusCode as e:
            out["status"] = e.status_code
            out["headers"] = {k.lower(): v for k, v in e.headers.raw_items()}
            return out
        out["status"] = 101
        out["headers"] = {k.lower(): v for k, v in ws.response_headers.raw_items()}
        out["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        try:
            for message in spec["send"]:
                await ws.send(message)
            while spec["expect"] is None or len(out["received"]) < spec["expect"]:
                out["received"].append(await asyncio.wait_for(ws.recv(), timeout))
            await ws.close(spec["close"])
        except websockets.exceptions.ConnectionClosed:
            pass
        await ws.wait_closed()
        out["close_code"], out["close_reason"] = ws.close_code, ws.close_reason
        return out

    async def all_of():
        return [await one(spec) for spec in sessions]

    return asyncio.run(all_of())


def run_node(env, sessions: List[dict], timeout: float = 10.0) -> List[dict]:
    """The sessions from node_ws_client.js (Node.js `ws`), one process for all of them."""
    done = subprocess.run(["node", str(NODE_CLIENT)], input=json.dumps(sessions),
                          env={**env, "NODE_WS_DEADLINE_MS": str(int(timeout * 1000))},
                          capture_output=True, text=True, timeout=timeout * len(sessions) + 10)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert done.returncode == 0 and lines, (f"node_ws_client.js exited {done.returncode}:\n"
                                            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


@pytest.fixture(scope="session")
def node_env():
    """The environment under which `node` finds `ws` (Debian's node-ws lives outside Node's
    default search path when Node.js itself does not come from Debian)."""
    if shutil.which("node") is None:
        pytest.fail("the node variants need Node.js ('node' is not on PATH): run "
                    "packaging/install-deps.sh (Debian packages nodejs and node-ws)",
                    pytrace=False)
    env = dict(os.environ)
    paths = [p for p in env.get("NODE_PATH", "").split(os.pathsep) if p]
    env["NODE_PATH"] = os.pathsep.join(paths + [DEBIAN_NODE_MODULES])
    probe = subprocess.run(["node", "-e", "require.resolve('ws')"], env=env,
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail("node cannot find the 'ws' package: install node-ws "
                    f"(packaging/install-deps.sh)\n{probe.stderr}", pytrace=False)
    return env


@pytest.fixture(params=["python", "node"])
def client(request):
    """client(sessions) -> results: the sessions run by python3-websockets or Node.js `ws`."""
    if request.param == "python":
        return run_python
    env = request.getfixturevalue("node_env")
    return lambda sessions, **kw: run_node(env, sessions, **kw)


def refusal_body(gate, result: dict, path: str, headers: Dict[str, str]) -> str:
    """A refused upgrade's body: node's, or (python3-websockets does not show it) the body of
    the same upgrade sent again from a raw socket."""
    if result["body"] is not None:
        return result["body"]
    conn = Conn.open(gate.port)
    try:
        response = conn.upgrade(path, extra_headers=tuple(headers.items()))
        assert response.status == result["status"], (response.status, result)
        return response.body.decode()
    finally:
        conn.close()


def echoed(result: dict, *messages: str) -> dict:
    """The session opened, echoed `messages` in order and closed cleanly; returns it."""
    assert result["status"] == 101, result
    assert result["received"] == list(messages), result
    assert result["close_code"] == 1000, result
    return result


def get(conn: Conn, path: str, headers: Optional[Dict[str, str]] = None) -> harness.Response:
    return conn.request("GET", path, tuple((headers or {}).items()))


def fresh_get(gate, path: str, headers: Optional[Dict[str, str]] = None) -> harness.Response:
    """A GET on a connection of its own, closed after it."""
    conn = Conn.open(gate.port)
    try:
        return conn.request("GET", path,
                            tuple((headers or {}).items()) + (("Connection", "close"),))
    finally:
        conn.close()


def open_raw(gate, path: str) -> Conn:
    conn = Conn.open(gate.port)
    response = conn.upgrade(path)
    assert response.status == 101, (response.status, response.body)
    return conn


def echoes(conn: Conn, payload: bytes) -> bytes:
    """Sends a text message on a raw session; returns the message that comes back."""
    conn.send_frame(wsproto.OP_TEXT, payload)
    opcode, data = conn.recv_message()
    assert opcode == wsproto.OP_TEXT, (opcode, data)
    return data


def close_raw(conn: Conn) -> None:
    conn.send_close()
    assert [f.opcode for f in conn.frames_until_eof()] == [wsproto.OP_CLOSE]
    conn.close()


# === the examples ============================================================================

EXAMPLE_NAMES = ["tenant", "canary", "token", "rate_limit", "rooms", "json_stamp"]


def test_every_example_passes_check_from_the_repository_root_and_is_listed(wsgate_bin):
    assert sorted(p.stem for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_NAMES)
    readme = (EXAMPLES / "README.md").read_text()
    for name in EXAMPLE_NAMES:
        check = subprocess.run([str(wsgate_bin), "--check", "-c", f"conf/examples/{name}.yaml"],
                               capture_output=True, text=True, timeout=30,
                               cwd=harness.SOURCE_DIR)
        assert (check.returncode, check.stdout.strip()) == (0, "ok"), (name, check)
        assert f"{name}.yaml" in readme and f"{name}.lua" in readme, name


# --- tenant.lua: tenant routing by header -----------------------------------------------------


@pytest.fixture
def tenant_gate(start_wsgate, fake_backend):
    shared, acme, globex = backends(fake_backend, "shared1", "acme1", "globex1")
    return start_example(start_wsgate, "tenant", {"127.0.0.1:9001": shared.address,
                                                  "127.0.0.1:9002": acme.address,
                                                  "127.0.0.1:9003": globex.address})


def test_tenant_header_picks_the_websockets_pool_and_an_unknown_tenant_gets_403(
        tenant_gate, client):
    cases = [("acme", "acme1"), ("GLOBEX", "globex1"), (None, "shared1")]
    results = client([session(ws_url(tenant_gate, "/ws"), {"X-Tenant": t} if t else {},
                              send=[f"hi {t}"], expect=1) for t, _ in cases]
                     + [session(ws_url(tenant_gate, "/ws"), {"X-Tenant": "initech"},
                                send=["never"], expect=1)])
    for (tenant, backend), result in zip(cases, results):
        assert echoed(result, f"hi {tenant}")["headers"]["x-backend"] == backend, result
    refused = results[-1]
    assert refused["status"] == 403, refused
    assert refusal_body(tenant_gate, refused, "/ws", {"X-Tenant": "initech"}) == \
        "unknown tenant\n"
    assert tenant_gate.wait_access(lambda r: r.get("status") == 403)[0]["reason"] == \
        "lua respond"


def test_tenant_backends_see_only_the_tenant_header_wsgate_set(tenant_gate):
    conn = Conn.open(tenant_gate.port)
    forged = {"X-Wsgate-Tenant": "globex"}
    for headers, backend, seen in (
            ({"X-Tenant": "Acme", **forged}, "acme1", ["acme"]),  # replaced
            (forged, "shared1", None),  # no X-Tenant: removed
            ({"X-Tenant": "globex"}, "globex1", ["globex"])):
        response = get(conn, "/page", headers)
        assert response.status == 200, response
        assert response.json()["backend"] == backend
        assert harness.headers_seen(response).get("x-wsgate-tenant") == seen, response.json()
    conn.close()


# --- canary.lua: canary by cookie percentage ---------------------------------------------------


def on_canary(session_cookie: str) -> bool:
    """canary.lua's decision, computed the same way: 32-bit FNV-1a, bucket below 10 (%)."""
    h = 2166136261
    for byte in session_cookie.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h % 100 < 10


@pytest.fixture
def canary_gate(start_wsgate, fake_backend):
    s1, s2, canary = backends(fake_backend, "stable1", "stable2", "canary1")
    return start_example(start_wsgate, "canary", {"127.0.0.1:9001": s1.address,
                                                  "127.0.0.1:9002": s2.address,
                                                  "127.0.0.1:9003": canary.address})


def test_canary_gets_ten_percent_of_session_cookies_and_the_same_ones_each_time(canary_gate):
    users = [f"user-{n:04d}" for n in range(300)]
    expected = {u for u in users if on_canary(u)}
    assert 20 <= len(expected) <= 40, len(expected)  # the hash spreads them: ~10% of 300
    conn = Conn.open(canary_gate.port)
    for attempt in range(2):
        seen = set()
        for user in users:
            backend = get(conn, "/", {"Cookie": f"theme=dark; session={user}"}).json()["backend"]
            if backend == "canary1":
                seen.add(user)
        assert seen == expected, (attempt, sorted(seen ^ expected))
    for cookie in ({}, {"Cookie": "session="}, {"Cookie": "other=user-0001"}):
        for _ in range(3):
            assert get(conn, "/", cookie).json()["backend"] in ("stable1", "stable2")
    conn.close()


def test_canary_cookie_decides_the_pool_of_a_websocket(canary_gate, client):
    canary_user = next(f"u{n}" for n in range(1000) if on_canary(f"u{n}"))
    stable_user = next(f"u{n}" for n in range(1000) if not on_canary(f"u{n}"))
    users = [canary_user, stable_user, canary_user, stable_user]
    results = client([session(ws_url(canary_gate, "/ws"), {"Cookie": f"session={u}"},
                              send=[u], expect=1) for u in users])
    for user, result in zip(users, results):
        backend = echoed(result, user)["headers"]["x-backend"]
        assert (backend == "canary1") == (user == canary_user), (user, result)


# --- token.lua: token shape on the upgrade -----------------------------------------------------


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
LONG_JWT = "eyJhbGciOiJSUzI1NiJ9." + "QUJD" * 700 + "." + "b-_" * 300  # an RS256-sized one
REFUSED = [  # (what, path, headers)
    ("no token", "/ws", {}),
    ("two segments", "/ws", {"Authorization": "Bearer abc.def"}),
    ("four segments", "/ws", {"Authorization": "Bearer a.b.c.d"}),
    ("empty signature", "/ws", {"Authorization": "Bearer abc.def."}),
    ("not base64url", "/ws", {"Authorization": "Bearer abc.d+f.ghi"}),
    ("basic scheme", "/ws", {"Authorization": "Basic YWxpY2U6c2VjcmV0"}),
    ("over 4096 bytes", "/ws", {"Authorization": "Bearer a." + "b" * 5000 + ".c"}),
    ("query token", "/ws?token=not.a-jwt", {}),
]
UNAUTHORIZED_BODY = "a bearer token (header Authorization or parameter token) is required\n"


def test_token_shaped_bearer_opens_the_websocket_and_anything_else_gets_401(
        start_wsgate, fake_backend, refused_address, client):
    app1 = fake_backend(named_backend, "app1")
    # app2 refuses connections: an upgrade round robin sends there fails over to app1
    # (retries), so every upgrade that passes the check ends at the recording backend.
    gate = start_example(start_wsgate, "token", {"127.0.0.1:9001": app1.address,
                                                 "127.0.0.1:9002": refused_address()})
    accepted = [("/ws", {"Authorization": f"Bearer {JWT}"}),
                ("/ws", {"Authorization": f"bearer {LONG_JWT}"}),
                (f"/ws?room=1&token={JWT}", {})]
    results = client([session(ws_url(gate, path), headers, send=["hello"], expect=1)
                      for path, headers in accepted]
                     + [session(ws_url(gate, path), headers, send=["never"], expect=1)
                        for _, path, headers in REFUSED])
    for result in results[:len(accepted)]:
        echoed(result, "hello")
    for (what, path, headers), result in zip(REFUSED, results[len(accepted):]):
        assert result["status"] == 401, (what, result)
        assert result["headers"]["www-authenticate"] == 'Bearer realm="ws"', (what, result)
        assert refusal_body(gate, result, path, headers) == UNAUTHORIZED_BODY, what

    # The backend saw the accepted upgrades only, each with the token in Authorization (the
    # query's put there by the script).
    assert [r.header("authorization") for r in app1.notes["requests"]] == [
        f"Bearer {JWT}", f"bearer {LONG_JWT}", f"Bearer {JWT}"]
    assert app1.accepted == 3
    # Plain HTTP on the route is not checked.
    assert fresh_get(gate, "/ws/info").json()["backend"] == "app1"


# --- rate_limit.lua: per-connection message rate limit -----------------------------------------


def test_rate_limit_closes_a_connection_with_4008_at_its_21st_message_in_a_second(
        start_wsgate, fake_backend, client):
    app1 = fake_backend(named_backend, "app1")
    gate = start_example(start_wsgate, "rate_limit", {"127.0.0.1:9001": app1.address})
    # A calm session alongside, with its own conn.vars: the other's burst does not count.
    calm = open_raw(gate, "/calm")
    for n in range(10):
        assert echoes(calm, f"calm {n}".encode()) == f"calm {n}".encode()

    burst = [f"m{n}" for n in range(30)]  # sent at once: well within a second
    result = client([session(ws_url(gate, "/burst"), send=burst, expect=None)])[0]
    assert result["status"] == 101, result
    assert (result["close_code"], result["close_reason"]) == (
        4008, "rate limit: at most 20 messages in 1 s"), result
    # Echoes still on their way when wsgate sent its Close are not relayed after it.
    assert result["received"] == burst[:len(result["received"])], result
    assert len(result["received"]) <= 20, result
    # The backend got exactly the 20 allowed messages, then wsgate's Close 1001.
    burst_frames = wait_for(lambda: next((s for s in app1.notes.get("sessions", [])[1:]
                                          if s and s[-1].opcode == wsproto.OP_CLOSE), None),
                            what="the burst session's Close at the backend")
    assert [f.payload.decode() for f in burst_frames[:-1]] == burst[:20]
    assert wsproto.parse_close(burst_frames[-1].payload)[0] == 1001
    gate.wait_line(r"lua: conn \d+ from 127\.0\.0\.1 closed: rate limit: at most 20 messages")

    for n in range(10, 20):  # the calm session's messages all pass
        assert echoes(calm, f"calm {n}".encode()) == f"calm {n}".encode()
    close_raw(calm)


# --- rooms.lua: room stickiness through sticky_key ---------------------------------------------


ROOMS = [f"room-{n}" for n in range(8)]


@pytest.fixture
def chat(start_wsgate, fake_backend):
    """The rooms example over three backends: (gate, {name: backend})."""
    chat1, chat2, chat3 = backends(fake_backend, "chat1", "chat2", "chat3")
    gate = start_example(start_wsgate, "rooms", {"127.0.0.1:9001": chat1.address,
                                                 "127.0.0.1:9002": chat2.address,
                                                 "127.0.0.1:9003": chat3.address})
    return gate, {"chat1": chat1, "chat2": chat2, "chat3": chat3}


def homes(gate, rooms) -> Dict[str, str]:
    """The backend each room's upgrade reaches (raw sessions, closed at once)."""
    found = {}
    for room in rooms:
        conn = Conn.open(gate.port)
        response = conn.upgrade(f"/chat?room={room}")
        assert response.status == 101, response
        found[room] = response.header("x-backend")
        close_raw(conn)
    return found


def test_every_connection_to_a_room_reaches_the_rooms_backend_whatever_least_conn_says(
        chat, client):
    gate, _ = chat
    home = homes(gate, ROOMS)
    assert len(set(home.values())) >= 2, home  # rooms spread over the pool
    # Load the lobby's backend well past the others: least_conn alone would avoid it.
    lobby = homes(gate, ["lobby"])["lobby"]
    held = [open_raw(gate, "/chat?room=lobby") for _ in range(3)]
    sessions = [session(ws_url(gate, f"/chat?room={room}"), send=[room], expect=1)
                for room in ROOMS + ["lobby", "lobby"]]
    sessions.append(session(ws_url(gate, "/chat"), send=["no room"], expect=1))
    results = client(sessions)
    for room, result in zip(ROOMS + ["lobby", "lobby"], results):
        assert echoed(result, room)["headers"]["x-backend"] == {**home, "lobby": lobby}[room]
    # Without a room the policy decides: least_conn keeps away from the loaded backend.
    assert echoed(results[-1], "no room")["headers"]["x-backend"] != lobby, results[-1]

    bad = client([session(ws_url(gate, "/chat?room=a%20b"), send=["x"], expect=1)])[0]
    assert bad["status"] == 400, bad
    assert refusal_body(gate, bad, "/chat?room=a%20b", {}) == \
        "room must be 1-64 letters, digits, '-' or '_'\n"
    for conn in held:
        close_raw(conn)


def test_a_room_whose_backend_is_down_moves_whole_to_one_substitute_and_other_rooms_stay(chat):
    gate, named = chat
    home = homes(gate, ROOMS)
    gone = home[ROOMS[0]]
    named[gone].stop()  # refuses connections from now on
    moved = [r for r in ROOMS if home[r] == gone]
    stayed = [r for r in ROOMS if home[r] != gone]
    # The first connection to a moved room finds its backend refusing and is retried on the
    # room's substitute; later ones skip the ejected backend and reach the same substitute.
    first, later = homes(gate, moved + stayed), homes(gate, moved)
    for room in moved:
        assert first[room] == later[room] != gone, (room, first, later)
    assert {r: first[r] for r in stayed} == {r: home[r] for r in stayed}


def test_room_affinity_holds_for_every_request_of_a_kept_alive_connection(chat):
    # PRODUCT BUG (proxy/session/session.cpp, Session::execute, the reuse of an idle kept-alive
    # backend connection, `if (idleBackend && backendPool_ == pool && sticky)`): the backend
    # connection is reused for the next request of the same pool unless the pool has a
    # `sticky:` block, so Lua's `sticky_key` (and `backend =`) is ignored for every request
    # after the first on a client connection, a WebSocket upgrade included: it goes to the
    # backend the previous request went to. Expected: each request reaches its room's backend,
    # as it does on a connection of its own.
    gate, _ = chat
    home = homes(gate, ROOMS)
    first = ROOMS[0]
    other = next(r for r in ROOMS if home[r] != home[first])
    misrouted = []
    for upgrade in (False, True):
        conn = Conn.open(gate.port)
        assert get(conn, f"/chat?room={first}").json()["backend"] == home[first]
        if upgrade:
            response = conn.upgrade(f"/chat?room={other}")
            assert response.status == 101, response
            reached = response.header("x-backend")
        else:
            reached = get(conn, f"/chat?room={other}").json()["backend"]
        if reached != home[other]:
            misrouted.append(f"{'upgrade' if upgrade else 'GET'} ?room={other} reached "
                             f"{reached}, the backend of the previous request, not {home[other]}")
        conn.close()
    assert not misrouted, "\n".join(misrouted)


# --- json_stamp.lua: rewriting one JSON field ---------------------------------------------------


def stamped_ok(original: str, stamped: str, before_ms: int, after_ms: int) -> None:
    """`stamped` is `original` with "received_at" first (or in place) and a time in range."""
    obj = json.loads(stamped)
    assert before_ms <= obj["received_at"] <= after_ms, (obj["received_at"], before_ms, after_ms)
    expected = json.loads(original)
    expected["received_at"] = obj["received_at"]
    assert obj == expected
    if '"received_at"' not in original:
        assert stamped.startswith('{"received_at":'), stamped[:60]


def test_json_stamp_adds_or_overwrites_received_at_in_client_messages(
        start_wsgate, fake_backend, client):
    app1 = fake_backend(named_backend, "app1")
    gate = start_example(start_wsgate, "json_stamp", {"127.0.0.1:9001": app1.address})
    pad = "p" * (64 * 1024)
    messages = ['{"type":"chat","text":"hi"}',
                "{}",
                '{"received_at":1,"text":"forged"}',
                '{"received_at": -42, "nested": {"a": [1, 2]}}',
                json.dumps({"pad": pad, "text": "a 64 KiB message, the key at its end",
                            "received_at": 7}, separators=(",", ":")),
                json.dumps({"pad": pad, "text": 'quotes \\" and "received_at" in a string'})]
    dropped = '{"received_at":"not a number"}'
    passed = ["[1,2,3]", "not json at all"]
    before = int(time.time() * 1000) - 1
    result = client([session(ws_url(gate, "/ws"), send=messages + [dropped] + passed,
                             expect=len(messages) + len(passed))])[0]
    after = int(time.time() * 1000) + 1
    assert result["status"] == 101 and result["close_code"] == 1000, result["status"]
    received = result["received"]
    assert len(received) == len(messages) + len(passed)
    for original, stamped in zip(messages, received):
        stamped_ok(original, stamped, before, after)
    assert received[len(messages):] == passed  # not objects: untouched; the forged string: dropped
    # What the backend sent back was not stamped again (from the backend: untouched), and the
    # backend itself got the stamped messages.
    texts = [f.payload.decode() for f in app1.notes["frames"] if f.opcode == wsproto.OP_TEXT]
    assert texts == received


def test_json_stamp_rewrites_a_one_mebibyte_message_with_the_key_at_its_end(
        start_wsgate, fake_backend):
    app1 = fake_backend(named_backend, "app1")
    gate = start_example(start_wsgate, "json_stamp", {"127.0.0.1:9001": app1.address})
    conn = open_raw(gate, "/ws")
    big = json.dumps({"pad": "x" * (1 << 20), "received_at": 123}, separators=(",", ":"))
    for message in (big, big.replace(',"received_at":123', "")):
        before = int(time.time() * 1000) - 1
        reply = echoes(conn, message.encode()).decode()
        stamped_ok(message, reply, before, int(time.time() * 1000) + 1)
    close_raw(conn)
    assert "lua on_message failed" not in gate.stderr()


# === scripts and the process =================================================================

# --- reloads ------------------------------------------------------------------------------------


VERSIONED = """\
VERSION = "{version}"
function hook(req)
  if req.path == "/version" then
    return {{ status = 200, body = VERSION .. "\\n" }}
  end
  return nil
end
function on_message(conn, dir, msg)
  if dir == "client" then
    return VERSION .. ":" .. msg.data
  end
  return nil
end
"""


def write_script(path: Path, text: str) -> None:
    """Replaces the script the way a deploy does: a new file renamed over it."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def versioned_gate(start_wsgate, fake_backend, tmp_path):
    script = tmp_path / "versioned.lua"
    script.write_text(VERSIONED.format(version="v1"))
    app1 = fake_backend(named_backend, "app1")
    gate = start_wsgate(scripted_config(script, [lua_route("app", "hook")], one_pool(app1),
                                        admin=True))
    return gate, script, admin_port(gate)


def version_of(gate) -> str:
    response = fresh_get(gate, "/version")
    assert response.status == 200, response
    return response.body.decode().strip()


def test_a_reload_swaps_the_script_for_new_sessions_while_open_ones_keep_theirs(
        start_wsgate, fake_backend, tmp_path):
    gate, script, port = versioned_gate(start_wsgate, fake_backend, tmp_path)
    old = open_raw(gate, "/ws")
    assert echoes(old, b"a") == b"v1:a"
    kept_alive = Conn.open(gate.port)
    assert get(kept_alive, "/version").body == b"v1\n"

    write_script(script, VERSIONED.format(version="v2"))
    status, body = admin_request(port, "POST", "/reload")
    assert status == 200 and json.loads(body)["result"] == "ok", (status, body)
    # An open session keeps the script of the config it started under (its snapshot's Lua
    # state); new sessions, new requests and the kept-alive connection's next request use the
    # new one.
    new = open_raw(gate, "/ws")
    assert echoes(new, b"b") == b"v2:b"
    assert echoes(old, b"c") == b"v1:c"
    assert version_of(gate) == "v2"
    assert get(kept_alive, "/version").body == b"v2\n"
    assert echoes(old, b"d") == b"v1:d"
    for conn in (old, new):
        close_raw(conn)
    kept_alive.close()


BROKEN = """\
VERSION = "v3"
function hook(req)
  return nil
end
function on_message(conn, dir, msg
  return nil
end
"""


def test_a_script_with_a_syntax_error_is_refused_on_reload_and_the_old_one_keeps_serving(
        start_wsgate, fake_backend, tmp_path, wsgate_bin):
    gate, script, port = versioned_gate(start_wsgate, fake_backend, tmp_path)
    session_before = open_raw(gate, "/ws")
    write_script(script, BROKEN)
    # FILE:LINE, the line after the unclosed parameter list (the config's path comes first).
    where = re.escape(f": {script.name}:6:")

    status, body = admin_request(port, "POST", "/reload")
    answer = json.loads(body)
    assert status == 400 and answer["result"] == "failed", (status, answer)
    assert re.search(where, answer["errors"][0]), answer
    gate.proc.send_signal(signal.SIGHUP)
    gate.wait_line(r"reload failed, the running config stays: .*" + where)
    assert echoes(session_before, b"a") == b"v1:a"
    session_after = open_raw(gate, "/ws")
    assert echoes(session_after, b"b") == b"v1:b"
    assert version_of(gate) == "v1"

    check = subprocess.run([str(wsgate_bin), "--check", "-c", str(gate.config_path)],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert check.returncode == 1, check
    assert re.search(where + r" '\)' expected near 'return'", check.stdout + check.stderr), check
    close_raw(session_before)
    close_raw(session_after)


def test_check_refuses_a_route_naming_a_function_the_script_does_not_define(
        tmp_path, wsgate_bin):
    script = tmp_path / "hooks.lua"
    script.write_text("function present(req) return nil end\n")
    cfg = scripted_config(script, [lua_route("app", "present", "/a"),
                                   lua_route("app", "absent", "/b")],
                          one_pool(("a1", "127.0.0.1:9")))
    text = to_yaml(cfg)
    config = tmp_path / "missing.yaml"
    config.write_text(text)
    line = line_of(text, '"absent"')
    column = text.splitlines()[line - 1].index('"absent"') + 1
    check = subprocess.run([str(wsgate_bin), "--check", "-c", str(config)],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert check.returncode == 1, check
    assert f"{config}:{line}:{column}: route's lua 'absent' is not a function" in \
        check.stdout + check.stderr, (check, line, column)
    assert "'present'" not in check.stdout + check.stderr


def test_a_long_script_path_is_named_whole_in_errors(tmp_path, wsgate_bin):
    # PRODUCT BUG (scripting/engine.cpp, Glue::boot: the chunk name "@FILE"): Lua shortens a
    # chunk name over LUA_IDSIZE (60) bytes to "..." and its last 56 bytes in every error
    # message (luaO_chunkid), so with a script path of 60 bytes or more `wsgate --check`, a
    # refused reload and the hook-failure log lines say "...ripts/route.lua:2:" instead of
    # FILE:LINE (script.h: "the chunk name, so errors read FILE:LINE"). Expected: the whole
    # path, as configured.
    folder = tmp_path / "deployments" / "production" / "wsgate" / "scripts"
    folder.mkdir(parents=True)
    script = folder / "tenant_routing.lua"
    script.write_text("function route(req)\n  return nil +\nend\n")
    assert len(str(script)) > 60
    config = tmp_path / "long.yaml"
    config.write_text(to_yaml(scripted_config(script, [lua_route("app", "route")],
                                              one_pool(("a1", "127.0.0.1:9")))
                              ).replace(f'"{script.name}"', f'"{script}"'))
    check = subprocess.run([str(wsgate_bin), "--check", "-c", str(config)],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert check.returncode == 1, check
    assert f"{script}:3: unexpected symbol near 'end'" in check.stdout + check.stderr, check


# --- hook failures ------------------------------------------------------------------------------


FAULTS = """\
function fine(req)
  return nil
end
function raise(req)
  error("raised on purpose")
end
function spin(req)
  while true do end
end
function bomb(req)
  local s = string.rep("x", 64 * 1024 * 1024)
  return { status = 200, body = tostring(#s) }
end
function crlf(req)
  return { set_headers = { ["x-note"] = "a\\r\\nX-Smuggled: 1" } }
end
function on_message(conn, dir, msg)
  if msg.data == "boom" then
    error("on_message failed on purpose")
  end
  return nil
end
"""


@pytest.fixture
def faults(start_wsgate, fake_backend, tmp_path):
    """(gate, backend, script): routes /raise, /spin, /bomb, /crlf to the failing hooks
    (memory_limit 16 MiB, the default instruction limit) and / to `fine`."""
    script = tmp_path / "faults.lua"
    script.write_text(FAULTS)
    app1 = fake_backend(named_backend, "app1")
    routes = [lua_route("app", name, f"/{name}") for name in ("raise", "spin", "bomb", "crlf")]
    gate = start_wsgate(scripted_config(script, routes + [lua_route("app", "fine")],
                                        one_pool(app1), memory_limit="16MiB"))
    return gate, app1, script


def still_serves(gate, backend) -> None:
    """The next request, on another connection, is served."""
    response = fresh_get(gate, "/after")
    assert response.status == 200 and response.json()["backend"] == backend.name, response


def test_an_error_in_on_request_answers_500_and_the_next_request_is_served(faults):
    gate, app1, script = faults
    response = fresh_get(gate, "/raise")
    assert_error_response(response, 500)
    assert app1.accepted == 0
    gate.wait_line(r"lua on_request failed: " + re.escape(f"{script.name}:5: raised on purpose"))
    assert gate.wait_access(lambda r: r.get("status") == 500)[0]["reason"] == "lua error"
    still_serves(gate, app1)


def test_an_endless_loop_answers_500_at_the_instruction_limit_and_the_worker_goes_on(faults):
    gate, app1, script = faults
    started = time.monotonic()
    response = fresh_get(gate, "/spin")
    elapsed = time.monotonic() - started
    assert_error_response(response, 500)
    assert elapsed < 2.0, elapsed  # a million instructions: milliseconds, not a hang
    gate.wait_line(r"lua on_request failed: " + re.escape(f"{script.name}:8: instruction limit "
                                                          "(1000000) exceeded"))
    still_serves(gate, app1)
    assert_error_response(fresh_get(gate, "/spin"), 500)  # and again: the state is intact
    still_serves(gate, app1)


def test_a_string_rep_bomb_answers_500_at_the_memory_limit(faults):
    gate, app1, script = faults
    assert_error_response(fresh_get(gate, "/bomb"), 500)
    gate.wait_line(r"lua on_request failed: " + re.escape(f"{script.name}: memory limit "
                                                          f"({16 << 20} bytes) reached"))
    still_serves(gate, app1)
    assert app1.accepted == 1  # the bomb's request never reached it


def test_a_set_header_value_with_cr_lf_answers_500_and_nothing_reaches_the_backend(faults):
    gate, app1, script = faults
    assert_error_response(fresh_get(gate, "/crlf"), 500)
    gate.wait_line(r"lua on_request failed: .*x-note.* control character")
    assert app1.accepted == 0
    still_serves(gate, app1)
    assert [r.target for r in app1.notes["requests"]] == ["/after"]
    assert all(r.header("x-smuggled") is None for r in app1.notes["requests"])


def test_an_error_in_on_message_closes_that_session_1011_and_the_others_go_on(faults):
    gate, app1, script = faults
    other = open_raw(gate, "/ws")
    failing = open_raw(gate, "/ws")
    assert echoes(failing, b"fine") == b"fine"
    failing.send_frame(wsproto.OP_TEXT, b"boom")
    frames = failing.frames_until_eof()
    assert [f.opcode for f in frames] == [wsproto.OP_CLOSE], frames
    assert wsproto.parse_close(frames[0].payload) == (1011, "lua error")
    gate.wait_line(r"lua on_message failed: " + re.escape(f"{script.name}:19: on_message failed"))
    # The backend never got "boom"; it got a Close 1001.
    sessions = wait_for(lambda: [s for s in app1.notes.get("sessions", [])
                                 if s and s[-1].opcode == wsproto.OP_CLOSE],
                        what="the failed session's Close at the backend")
    assert [f.payload for f in sessions[0][:-1]] == [b"fine"]
    assert wsproto.parse_close(sessions[0][-1].payload)[0] == 1001
    assert echoes(other, b"still here") == b"still here"
    close_raw(other)


def test_invalid_utf8_text_on_an_on_message_route_is_the_senders_1007_not_a_hook_error(faults):
    # websocket.validate_utf8 is off (the default), but a script reads text as a string: the
    # message is the client's protocol error, never handed to Lua.
    gate, app1, script = faults
    conn = open_raw(gate, "/ws")
    assert echoes(conn, b"fine") == b"fine"
    conn.send_frame(wsproto.OP_TEXT, b"caf\xc3")  # ends inside a UTF-8 sequence
    frames = conn.frames_until_eof()
    assert [f.opcode for f in frames] == [wsproto.OP_CLOSE], frames
    assert wsproto.parse_close(frames[0].payload)[0] == 1007
    sessions = wait_for(lambda: [s for s in app1.notes.get("sessions", [])
                                 if s and s[-1].opcode == wsproto.OP_CLOSE],
                        what="the session's Close at the backend")
    assert [f.payload for f in sessions[0][:-1]] == [b"fine"]
    assert wsproto.parse_close(sessions[0][-1].payload)[0] == 1001
    assert "lua on_message failed" not in gate.stderr()


# --- on_close --------------------------------------------------------------------------------


CLOSES = """\
function track(req)
  if req.path == "/closes" then
    return { status = 200, body = table.concat(wsgate.shared.closes or {}, ",") }
  end
  return nil
end
function on_message(conn, dir, msg)
  if msg.data == "close me" then
    return { close = 4321, reason = "asked to" }
  end
  if msg.data == "fail" then
    error("failing on purpose")
  end
  return nil
end
function on_close(conn, code)
  wsgate.shared.closes = wsgate.shared.closes or {}
  table.insert(wsgate.shared.closes, tostring(code))
  wsgate.log("info", "on_close", conn.id, code)
end
"""


def test_on_close_gets_the_sessions_close_code(start_wsgate, fake_backend, tmp_path):
    script = tmp_path / "closes.lua"
    script.write_text(CLOSES)
    app1 = fake_backend(named_backend, "app1")
    gate = start_wsgate(scripted_config(script, [lua_route("app", "track")], one_pool(app1)))

    def closes():
        return fresh_get(gate, "/closes").body.decode()

    def ended(expected):
        wait_for(lambda: closes() == expected, what=f"on_close codes {expected!r}")

    conn = open_raw(gate, "/ws")
    close_raw(conn)  # the client's Close 1000
    ended("1000")

    conn = open_raw(gate, "/ws")
    conn.send_close(4001, "bye")
    assert [f.opcode for f in conn.frames_until_eof()] == [wsproto.OP_CLOSE]
    ended("1000,4001")

    conn = open_raw(gate, "/ws")
    conn.close()  # gone without a Close
    ended("1000,4001,1006")

    for message, code in ((b"close me", 4321), (b"fail", 1011)):  # the script's own ends
        conn = open_raw(gate, "/ws")
        conn.send_frame(wsproto.OP_TEXT, message)
        frames = conn.frames_until_eof()
        assert wsproto.parse_close(frames[-1].payload)[0] == code, frames
        conn.close()
    ended("1000,4001,1006,4321,1011")
    gate.wait_line(r"lua: on_close \d+ 1011")


# --- permessage-deflate ------------------------------------------------------------------------


def test_a_route_whose_script_reads_messages_negotiates_no_deflate_and_messages_pass(
        start_wsgate, websockets_echo, client):
    """python3-websockets offers permessage-deflate; the backend would accept it (the control
    route without a script shows it does). On the json_stamp route the offer is not passed
    on: the 101 has no extension, and the script reads (and stamps) every message."""
    cfg = example_config("json_stamp", {"127.0.0.1:9001": websockets_echo.address})
    cfg = cfg.replace("routes:\n", "routes:\n  - match: { path_prefix: /plain }\n"
                                   "    pool: app\n", 1)
    gate = start_wsgate(cfg, label="json_stamp_deflate")
    text = json.dumps({"text": "compressible " * 200})
    stamped, plain = client([session(ws_url(gate, "/ws"), send=[text], expect=1, deflate=True),
                             session(ws_url(gate, "/plain"), send=[text], expect=1,
                                     deflate=True)])
    assert stamped["status"] == 101 and stamped["extensions"] == "", stamped["headers"]
    assert "sec-websocket-extensions" not in stamped["headers"]
    assert stamped["close_code"] == 1000
    assert json.loads(stamped["received"][0])["text"] == json.loads(text)["text"]
    assert stamped["received"][0].startswith('{"received_at":')
    assert plain["extensions"].startswith("permessage-deflate"), plain["headers"]
    assert echoed(plain, text)
    assert "sec-websocket-extensions" not in websockets_echo.requests[0]
    assert websockets_echo.extensions == [[], ["permessage-deflate"]]
