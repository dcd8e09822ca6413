"""Several wsgate instances behind an L4 balancer, one config, no shared state: a client lands
on the same backend whichever instance it reaches. Two instances start from the same config
text (each on its own port 0); 1,000 clients with random user ids upgrade alternately through
each. `policy: hash` on a header gives every id one backend on both, spread over all four;
the cookie one instance sets takes the client to the same backend on the other, and with
`sticky.cookie.indirect` the backends never see that cookie (plain HTTP or upgrade) while the
application's cookies reach them as sent. When a backend leaves (or joins) both configs, only
the ids that were on it (or now go to it) move, and the instances still agree."""

import json
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import harness
import wsproto
from harness import Conn, ConnectionClosed, admin_port, admin_request, to_yaml

CLIENTS = 1000
THREADS = 16  # concurrent clients: the whole test stays at a few seconds on two cores
NAMES = ["e1", "e2", "e3", "e4"]


def user_ids(seed):
    rng = random.Random(seed)  # random ids, the same on every run (a failure replays)
    return [f"user-{rng.getrandbits(64):016x}" for _ in range(CLIENTS)]


def gateway(backends, recorders=()):
    """The one config both instances run: /hash (policy hash on X-User), /cookie (round robin
    with an inserted, indirect cookie), /recorded (the same cookie, over backends that record
    what they receive), each over its own pool."""
    cfg = harness.gateway_config(
        [harness.route("recorded", path_prefix="/recorded"),
         harness.route("cookied", path_prefix="/cookie"),
         harness.route("hashed", path_prefix="/")],
        {"hashed": {**harness.pool(*backends), "policy": "hash",
                    "sticky": {"header": "X-User"}},
         "cookied": {**harness.pool(*backends),
                     "sticky": {"cookie": {"name": "WSGATE", "indirect": True}}},
         "recorded": {**harness.pool(*recorders),
                      "sticky": {"cookie": {"name": "WSGATE", "indirect": True}}}},
        workers=2)
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    return cfg


def upgrade(port, path, headers=()):
    """One WebSocket upgrade through wsgate: (backend, [Set-Cookie values]) of its 101."""
    conn = Conn.open(port)
    try:
        response = conn.upgrade(path, extra_headers=tuple(headers))
        assert response.status == 101, (response.status, response.body)
        return response.header("x-backend"), response.head.get_all("set-cookie")
    finally:
        conn.close()


def wsgate_cookie(set_cookies):
    """The value of the WSGATE cookie among Set-Cookie lines (None: none set)."""
    for line in set_cookies:
        name, _, rest = line.partition("=")
        if name == "WSGATE":
            return rest.split(";", 1)[0]
    return None


def in_parallel(fn, items):
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(fn, items))


def placements(gates, ids):
    """Each id upgraded on /hash through both instances, the first one alternating:
    {id: (backend via gates[0], backend via gates[1])}."""
    def both(item):
        i, user = item
        first, second = (gates[0], gates[1]) if i % 2 == 0 else (gates[1], gates[0])
        a, _ = upgrade(first.port, "/hash", [("X-User", user)])
        b, _ = upgrade(second.port, "/hash", [("X-User", user)])
        return (a, b) if i % 2 == 0 else (b, a)

    return dict(zip(ids, in_parallel(both, enumerate(ids))))


def agreed(gates, ids):
    """{id: backend}, after checking that both instances placed every id on one backend."""
    seen = placements(gates, ids)
    disagree = {u: p for u, p in seen.items() if p[0] != p[1]}
    assert not disagree, f"{len(disagree)} ids differ between the instances, e.g. " \
        f"{list(disagree.items())[:3]}"
    return {u: p[0] for u, p in seen.items()}


def reload_both(gates, cfg, generation):
    text = to_yaml(cfg)
    for gate in gates:
        gate.config_path.write_text(text)
        status, body = admin_request(admin_port(gate), "POST", "/reload")
        assert status == 200 and json.loads(body)["generation"] == generation, (status, body)


def record_upgrade(conn, backend):
    """A recording backend: answers an upgrade with its name and notes the Cookie fields."""
    request = conn.read_request(timeout=10)
    if request is None:
        return
    backend.append("cookies", request.head.get_all("cookie"))
    conn.send(harness.switching_protocols(request, extra=(("X-Backend", backend.name),)))
    try:
        conn.frames_until_eof(timeout=10)
    except (ConnectionClosed, TimeoutError, OSError):
        pass


def test_two_instances_place_every_client_alike_and_only_a_changed_backends_clients_move(
        start_wsgate, echo_backend, fake_backend):
    backends = [echo_backend(name) for name in NAMES]
    recorders = [fake_backend(record_upgrade, name) for name in ("r1", "r2")]
    text = to_yaml(gateway(backends, recorders))
    gates = [start_wsgate(text, label="a"), start_wsgate(text, label="b")]
    assert gates[0].config_path.read_text() == gates[1].config_path.read_text()
    assert gates[0].port != gates[1].port
    ids = user_ids(17)

    # (a) hash: one backend per id on both instances, every backend with a share.
    home = agreed(gates, ids)
    shares = Counter(home.values())
    assert set(shares) == set(NAMES), shares
    assert min(shares.values()) >= CLIENTS / len(NAMES) * 0.6, shares

    # (b) cookie: the Set-Cookie of one instance, sent to the other, lands on the same backend,
    # which sends it no Set-Cookie again (the cookie names it already). The backends never see
    # WSGATE; the application's cookies reach them byte for byte.
    def cookie_round(item):
        i, user = item
        first, second = (gates[0], gates[1]) if i % 2 == 0 else (gates[1], gates[0])
        served, set_cookies = upgrade(first.port, "/cookie", [("Cookie", f"uid={user}")])
        value = wsgate_cookie(set_cookies)
        assert value is not None, set_cookies
        again, set_again = upgrade(second.port, "/cookie",
                                   [("Cookie", f"uid={user}; WSGATE={value}")])
        conn = Conn.open(second.port)
        try:
            app_cookies = f'pre=1;WSGATE={value}; uid="{user}"; WSGATE2=x'
            response = conn.request("GET", "/cookie/page", [("Cookie", app_cookies)])
        finally:
            conn.close()
        seen = harness.headers_seen(response)
        return (served, again, wsgate_cookie(set_again), response.json()["backend"],
                seen.get("cookie"))

    for user, (served, again, set_again, by_get, cookies) in zip(
            ids, in_parallel(cookie_round, enumerate(ids))):
        assert again == served == by_get, (user, served, again, by_get)
        assert set_again is None, (user, set_again)
        assert cookies == [f'pre=1; uid="{user}"; WSGATE2=x'], (user, cookies)

    # Upgrades too: the recording backends get the other cookies only, or no Cookie field.
    for i in range(20):
        _, set_cookies = upgrade(gates[i % 2].port, "/recorded")
        value = wsgate_cookie(set_cookies)
        upgrade(gates[(i + 1) % 2].port, "/recorded",
                [("Cookie", f"WSGATE={value}"), ("Cookie", f"n={i}; WSGATE={value}")])
    recorded = [c for r in recorders for c in r.notes.get("cookies", [])]
    assert len(recorded) == 40, recorded
    assert all(c == [] or (len(c) == 1 and c[0].startswith("n=") and "WSGATE" not in c[0])
               for c in recorded), recorded
    assert sum(c != [] for c in recorded) == 20

    # (c) e3 leaves both configs (the second instance lists the rest in another order): only
    # the ids that were on e3 move, and the instances agree on where.
    fewer = [b for b in backends if b.name != "e3"]
    reload_both(gates[:1], gateway(fewer, recorders), 2)
    reload_both(gates[1:], gateway(list(reversed(fewer)), recorders), 2)
    after = agreed(gates, ids)
    moved = {u for u in ids if after[u] != home[u]}
    assert moved == {u for u in ids if home[u] == "e3"}, \
        f"{len(moved - {u for u in ids if home[u] == 'e3'})} ids moved off a backend that stayed"
    assert "e3" not in after.values()

    # A fifth joins: only the ids that now map to it move.
    fifth = echo_backend("e5")
    reload_both(gates, gateway(fewer + [fifth], recorders), 3)
    final = agreed(gates, ids)
    moved = {u for u in ids if final[u] != after[u]}
    assert moved == {u for u in ids if final[u] == "e5"}
    assert len(moved) >= CLIENTS / 5 * 0.6, len(moved)
