"""The admin endpoint: drain a backend (no new sessions; its tunnels get close 1012 spread
over drain_spread, the others are untouched) and enable it again; status, metrics, errors;
the bearer token (admin.token / token_file) checked before routing, and re-read by a reload;
what /status says about the process, the config file, the listeners and passive health."""

import base64
import datetime
import hashlib
import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import harness
import tls_certs
from harness import admin_request as admin
import wsproto
from harness import gateway_config, route, to_yaml, wait_for

TOKEN = "admin-token-0123456789abcdef"
OTHER_TOKEN = "other-token-fedcba9876543210"


def start_gateway(start_wsgate, backends, **timeouts):
    cfg = gateway_config([route("app", path_prefix="/")], {"app": harness.pool(*backends)},
                         timeouts={"drain": "5s", "drain_spread": "1s", **timeouts})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    return gate, harness.admin_port(gate)


def open_session(gate, connect):
    conn = connect(gate.port)
    response = conn.upgrade("/ws")
    assert response.status == 101
    return conn, response.header("x-backend")


def test_drain_closes_the_backends_sessions_with_1012_and_sends_new_ones_elsewhere(
        start_wsgate, echo_backend, connect):
    a, b = echo_backend("a"), echo_backend("b")
    gate, port = start_gateway(start_wsgate, [a, b])
    sessions = [open_session(gate, connect) for _ in range(6)]
    on_a = [conn for conn, name in sessions if name == "a"]
    on_b = [conn for conn, name in sessions if name == "b"]
    assert (len(on_a), len(on_b)) == (3, 3), sessions  # round robin

    status, body = admin(port, "POST", "/pools/app/backends/a/drain")
    assert status == 200 and json.loads(body)["state"] == "draining"
    started = time.monotonic()
    for conn in on_a:
        close = conn.recv_frame(timeout=5)
        assert close.opcode == wsproto.OP_CLOSE
        assert wsproto.parse_close(close.payload)[0] == 1012
        assert time.monotonic() - started < 3.0  # within drain_spread (1s), with slack
        conn.send_frame(wsproto.OP_CLOSE, close.payload)
        assert conn.frames_until_eof(timeout=5) == []
    for conn in on_b:  # untouched: still echoing
        conn.send_frame(wsproto.OP_TEXT, b"still here")
        assert conn.recv_message() == (wsproto.OP_TEXT, b"still here")
    assert {open_session(gate, connect)[1] for _ in range(4)} == {"b"}

    _, body = admin(port, "GET", "/status")
    backends = {x["name"]: x for x in json.loads(body)["pools"]["app"]["backends"]}
    assert backends["a"]["draining"] and not backends["b"]["draining"]

    status, body = admin(port, "POST", "/pools/app/backends/a/enable")
    assert status == 200 and json.loads(body)["state"] == "enabled"
    assert "a" in {open_session(gate, connect)[1] for _ in range(6)}


def test_admin_answers_errors_status_and_metrics(start_wsgate, echo_backend):
    a = echo_backend("a")
    gate, port = start_gateway(start_wsgate, [a])
    assert admin(port, "POST", "/pools/nope/backends/a/drain")[0] == 404
    assert admin(port, "POST", "/pools/app/backends/nope/drain")[0] == 404
    assert admin(port, "GET", "/pools/app/backends/a/drain")[0] == 405
    assert admin(port, "GET", "/reload")[0] == 405
    # A 405 says what the endpoint takes (RFC 9110 15.5.6), whatever the method.
    for method, path, allow in (("GET", "/reload", "POST"), ("PUT", "/status", "GET"),
                                ("DELETE", "/metrics", "GET"),
                                ("PATCH", "/pools/app/backends/a/enable", "POST")):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert (refused.value.code, refused.value.headers.get("Allow")) == (405, allow), path
    assert admin(port, "DELETE", "/nothing")[0] == 404
    assert admin(port, "GET", "/nothing")[0] == 404
    status, body = admin(port, "GET", "/metrics")
    assert status == 200
    assert 'wsgate_backend_active{pool="app",backend="a"} 0' in body
    assert 'wsgate_backend_available{pool="app",backend="a"} 1' in body


def test_status_shows_a_backend_without_checks_as_passive_and_ejected_after_a_failed_connect(
        start_wsgate, echo_backend, refused_address):
    a = echo_backend("a")
    gone = ("gone", refused_address())
    cfg = gateway_config([route("app", path_prefix="/")],
                         {"app": harness.pool(gone, a, retries=1)})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)

    def backends():
        _, body = admin(port, "GET", "/status")
        return {x["name"]: x for x in json.loads(body)["pools"]["app"]["backends"]}

    assert {n: (b["check"], b["passive"]) for n, b in backends().items()} == {
        "gone": ("none", "up"), "a": ("none", "up")}
    # Round robin tries `gone` first (refused), then retries on `a`.
    for _ in range(2):
        conn = harness.Conn.open(gate.port)
        assert conn.request("GET", "/x").status == 200
        conn.close()
    state = backends()
    assert (state["gone"]["check"], state["gone"]["passive"], state["gone"]["available"]) == (
        "none", "ejected", False), state
    assert state["gone"]["health_up"] is True  # no active check: never down by one
    assert state["a"]["passive"] == "up", state


# --- the token ------------------------------------------------------------------------------


def call(port, method, path, authorization=None):
    """(status, headers, body) of one admin request, with `authorization` as its
    Authorization header when given."""
    headers = {} if authorization is None else {"Authorization": authorization}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


def bearer(token):
    return f"Bearer {token}"


def assert_refused(port, method, path, authorization=None):
    status, headers, body = call(port, method, path, authorization)
    assert status == 401, (method, path, authorization, status, body)
    assert headers.get("WWW-Authenticate") == 'Bearer realm="wsgate"', headers
    assert headers.get("Allow") is None, "a 401 says nothing about the endpoint"
    assert "Authorization: Bearer" in json.loads(body)["error"]


def status_with(port, token):
    status, _, body = call(port, "GET", "/status", bearer(token))
    assert status == 200, body
    return json.loads(body)


def gateway_with_admin(start_wsgate, backends, admin_cfg, **kwargs):
    cfg = gateway_config([route("app", path_prefix="/")], {"app": harness.pool(*backends)},
                         **kwargs)
    cfg["admin"] = {"listen": "127.0.0.1:0", **admin_cfg}
    gate = start_wsgate(cfg)
    return gate, harness.admin_port(gate), cfg


def test_a_token_is_asked_of_every_request_before_routing(start_wsgate, echo_backend):
    gate, port, _ = gateway_with_admin(start_wsgate, [echo_backend("a")], {"token": TOKEN})
    assert_refused(port, "GET", "/status")
    assert_refused(port, "GET", "/status", bearer("wrong-token-0123456789abcdef"))
    assert_refused(port, "GET", "/status", bearer(TOKEN[:-1]))  # a prefix
    assert_refused(port, "GET", "/status", bearer(TOKEN[:4]))  # a short one
    assert_refused(port, "GET", "/status", bearer("x"))
    assert_refused(port, "GET", "/status", bearer(TOKEN + "x"))  # longer
    assert_refused(port, "GET", "/status", "Bearer")
    assert_refused(port, "GET", "/status", f"Basic {TOKEN}")  # the right token, wrong scheme
    basic = base64.b64encode(f"admin:{TOKEN}".encode()).decode()
    assert_refused(port, "GET", "/status", f"Basic {basic}")
    assert_refused(port, "GET", "/metrics")
    # Unknown paths and wrong methods are refused too: a 404 or a 405 would say what exists.
    assert_refused(port, "GET", "/nothing")
    assert_refused(port, "PUT", "/status")
    assert_refused(port, "GET", "/reload")
    # A refused drain does nothing.
    assert_refused(port, "POST", "/pools/app/backends/a/drain", bearer(OTHER_TOKEN))
    backends = status_with(port, TOKEN)["pools"]["app"]["backends"]
    assert [b["draining"] for b in backends] == [False]

    assert call(port, "GET", "/status", bearer(TOKEN))[0] == 200
    assert call(port, "GET", "/status", f"bearer  {TOKEN}")[0] == 200  # RFC 9110: any case
    status, _, body = call(port, "GET", "/metrics", bearer(TOKEN))
    assert status == 200 and 'wsgate_backend_active{pool="app",backend="a"} 0' in body
    assert call(port, "GET", "/nothing", bearer(TOKEN))[0] == 404
    status, headers, _ = call(port, "PUT", "/status", bearer(TOKEN))
    assert (status, headers.get("Allow")) == (405, "GET")
    assert call(port, "POST", "/pools/app/backends/a/drain", bearer(TOKEN))[0] == 200

    # Refusals are logged with the client's address, one line per second at most: a burst
    # gets one line, and the next line says how many were left out.
    gate.wait_line(r"\[admin\] refused client=127\.0\.0\.1:\d+ reason=no Authorization header")

    def refusal_lines():
        return re.findall(r"\[admin\] refused .*", gate.stderr())

    before = len(refusal_lines())
    started = time.monotonic()
    for _ in range(20):
        assert call(port, "GET", "/status", bearer("a-guess-0123456789abcdef"))[0] == 401
    burst = time.monotonic() - started
    assert len(refusal_lines()) - before <= int(burst) + 1, (burst, refusal_lines())

    def counted():
        call(port, "GET", "/status")
        return re.search(r"\[admin\] refused client=\S+ reason=no Authorization header "
                         r"\((\d+) more refused since the last line\)", gate.stderr())

    assert int(wait_for(counted, timeout=5, what="a refusal line with a count").group(1)) >= 1


def test_a_token_file_is_read_at_start_and_again_by_a_reload(
        start_wsgate, echo_backend, tmp_path):
    first = tmp_path / "first.token"
    first.write_text(TOKEN + "\n")  # the newline an editor adds is not part of the token
    gate, port, cfg = gateway_with_admin(start_wsgate, [echo_backend("a")],
                                         {"token_file": str(first)})
    assert call(port, "GET", "/status", bearer(TOKEN))[0] == 200
    assert_refused(port, "GET", "/status", bearer(OTHER_TOKEN))

    # Another file: the reload (authorised by the old token) makes its token the valid one.
    second = tmp_path / "second.token"
    second.write_text(OTHER_TOKEN + "\r\n")
    cfg["admin"]["token_file"] = str(second)
    gate.config_path.write_text(to_yaml(cfg))
    status, _, body = call(port, "POST", "/reload", bearer(TOKEN))
    assert (status, json.loads(body)["result"]) == (200, "ok"), body
    assert_refused(port, "GET", "/status", bearer(TOKEN))
    assert status_with(port, OTHER_TOKEN)["config"]["reloads_succeeded"] == 1

    # The same file with a new content: read again by the next reload (SIGHUP here).
    third = "third-token-0123456789abcdef"
    second.write_text(third)
    gate.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: call(port, "GET", "/status", bearer(third))[0] == 200, timeout=5,
             what="the reload to take the new content")
    assert_refused(port, "GET", "/status", bearer(OTHER_TOKEN))

    # A reload whose token file is gone is refused, and the running token stays.
    second.unlink()
    status, _, body = call(port, "POST", "/reload", bearer(third))
    assert status == 400, body
    assert f"cannot read token file '{second}'" in json.loads(body)["errors"][0]
    assert call(port, "GET", "/status", bearer(third))[0] == 200


def test_an_admin_off_loopback_without_a_token_is_warned_about(wsgate_bin, tmp_path):
    cfg = gateway_config([route(respond=(200, "ok"))])
    cfg["admin"] = {"listen": "0.0.0.0:9900"}
    path = tmp_path / "open.yaml"
    path.write_text(to_yaml(cfg))
    done = subprocess.run([str(wsgate_bin), "--check", "-c", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    line = next(l for l in done.stderr.splitlines() if "admin" in l)
    assert re.fullmatch(re.escape(str(path)) + r":\d+:\d+: warning: admin listens on "
                        r"0\.0\.0\.0:9900 without a token: .*open to the network.*", line), line

    cfg["admin"]["token"] = TOKEN
    path.write_text(to_yaml(cfg))
    done = subprocess.run([str(wsgate_bin), "--check", "-c", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    assert "warning" not in done.stderr, done.stderr


# --- /status ---------------------------------------------------------------------------------


def test_status_says_how_long_the_process_runs_which_file_and_where_it_listens(
        start_wsgate, echo_backend, tmp_path_factory):
    pki = tls_certs.session_pki(tmp_path_factory)
    listeners = [{"name": "public", "listen": "127.0.0.1:0"},
                 {"name": "secure", "listen": "127.0.0.1:0",
                  "tls": {"certificates": [pki.localhost.listener_entry()]}}]
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    gate, port, cfg = gateway_with_admin(start_wsgate, [echo_backend("a")], {"token": TOKEN},
                                         listeners=listeners)
    first = status_with(port, TOKEN)

    started = datetime.datetime.strptime(first["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    assert before <= started <= datetime.datetime.now(datetime.timezone.utc)
    assert 0 <= first["uptime_seconds"] < 60
    wait_for(lambda: status_with(port, TOKEN)["uptime_seconds"] > first["uptime_seconds"],
             timeout=5, what="the uptime to grow")
    assert status_with(port, TOKEN)["started_at"] == first["started_at"]

    assert first["listeners"] == [
        {"name": "public", "address": f"127.0.0.1:{gate.ports['public']}", "tls": False},
        {"name": "secure", "address": f"127.0.0.1:{gate.ports['secure']}", "tls": True}]
    assert 0 not in gate.ports.values()

    config = first["config"]
    assert config["sha256"] == hashlib.sha256(gate.config_path.read_bytes()).hexdigest()
    assert (config["reloads"], config["reloads_succeeded"], config["reloads_failed"],
            config["generation"]) == (0, 0, 0, 1)

    # A reload of a changed file: the digest follows the file.
    cfg["timeouts"]["idle"] = "45s"
    gate.config_path.write_text(to_yaml(cfg))
    assert call(port, "POST", "/reload", bearer(TOKEN))[0] == 200
    config = status_with(port, TOKEN)["config"]
    assert config["sha256"] == hashlib.sha256(gate.config_path.read_bytes()).hexdigest()
    assert config["sha256"] != first["config"]["sha256"]
    assert (config["reloads"], config["reloads_succeeded"], config["reloads_failed"]) == (1, 1, 0)
    running = config["sha256"]

    # A refused reload: the digest stays the running snapshot's, not the file's.
    gate.config_path.write_text(to_yaml(cfg) + "unknown_key: 1\n")
    assert call(port, "POST", "/reload", bearer(TOKEN))[0] == 400
    config = status_with(port, TOKEN)["config"]
    assert config["sha256"] == running
    assert (config["reloads"], config["reloads_succeeded"], config["reloads_failed"]) == (2, 1, 1)


def test_status_says_when_a_backend_last_failed_and_for_how_long_it_stays_out(
        start_wsgate, echo_backend, refused_address):
    a = echo_backend("a")
    gone = ("gone", refused_address())
    cfg = gateway_config([route("app", path_prefix="/")],
                         {"app": harness.pool(gone, a, retries=1)})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)

    def backends():
        _, body = admin(port, "GET", "/status")
        return {x["name"]: x for x in json.loads(body)["pools"]["app"]["backends"]}

    assert {n: (b["last_failure_ago_seconds"], b["ejected_for_seconds"])
            for n, b in backends().items()} == {"gone": (None, None), "a": (None, None)}

    def ejected():
        # Round robin tries `gone` (refused, ejected for 1 s, then 2 s ...), then `a`.
        for _ in range(2):
            conn = harness.Conn.open(gate.port)
            assert conn.request("GET", "/x").status == 200
            conn.close()
        state = backends()
        return state if state["gone"]["ejected_for_seconds"] is not None else None

    state = wait_for(ejected, timeout=10, what="gone to be ejected")
    gone_state = state["gone"]
    assert gone_state["passive"] == "ejected", gone_state
    assert 0 < gone_state["ejected_for_seconds"] <= 30
    assert 0 <= gone_state["last_failure_ago_seconds"] < 10
    assert (state["a"]["last_failure_ago_seconds"], state["a"]["ejected_for_seconds"]) == (
        None, None)

    # Once the ejection is over the failure is still reported, and it grows older.
    def ejection_over():
        state = backends()
        return state if state["gone"]["ejected_for_seconds"] is None else None

    later = wait_for(ejection_over, timeout=40, what="the ejection to end")
    assert later["gone"]["last_failure_ago_seconds"] >= gone_state["last_failure_ago_seconds"]


def test_an_oversized_request_is_refused_before_it_is_read_whole(start_wsgate, echo_backend):
    """evhttp reads a request whole before the token check: a body or a head past the
    admin's bounds is refused at once instead of being held in memory."""
    _, port, _ = gateway_with_admin(start_wsgate, [echo_backend("a")], {"token": TOKEN})

    def send(raw):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            answer = b""
            while b"\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            return answer.split(b"\r\n", 1)[0]

    huge_body = (b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000000\r\n\r\n" +
                 b"x" * 1024)
    assert send(huge_body).startswith(b"HTTP/1.1 413"), "a body past 4 KiB"
    huge_head = (b"GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"y" * 20000 + b"\r\n\r\n")
    status_line = send(huge_head)
    assert status_line == b"" or status_line.split(b" ")[1] in (b"400", b"413", b"431"), status_line
    assert call(port, "GET", "/status", bearer(TOKEN))[0] == 200  # and it serves on
