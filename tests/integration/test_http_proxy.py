"""Plain HTTP/1.1 through wsgate: keep-alive, bodies both ways, pipelining, forwarded and
hop-by-hop headers, routes answered by wsgate itself."""

import os
import time

import pytest

import harness
from harness import build_request, gateway_config, headers_seen, pool, route, wait_for


@pytest.fixture
def echo(echo_backend):
    return echo_backend("echo1")


@pytest.fixture
def gate(start_wsgate, echo):
    return start_wsgate(gateway_config(
        [route(path_prefix="/internal", respond=(403, "forbidden\n")),
         route("app", path_prefix="/")],
        {"app": pool(echo)}))


def test_one_client_connection_carries_several_requests(gate, connect):
    conn = connect(gate.port)
    for i in range(3):
        response = conn.request("GET", f"/page/{i}")
        assert response.status == 200
        assert response.json()["path"] == f"/page/{i}"
        assert response.header("x-backend") == "echo1"
    records = gate.access_for(conn, count=3)
    assert [r["path"] for r in records] == ["/page/0", "/page/1", "/page/2"]
    assert all(r["kind"] == "http" and r["status"] == 200 and r["backend"] == "app/echo1"
               for r in records)


def test_backend_sees_x_forwarded_headers(gate, connect):
    response = connect(gate.port).request(
        "GET", "/whoami", host="app.example.test:8443",
        headers=(("X-Forwarded-For", "203.0.113.7"),))
    seen = headers_seen(response)
    forwarded_for = [t.strip() for v in seen["x-forwarded-for"] for t in v.split(",")]
    assert forwarded_for == ["203.0.113.7", "127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["app.example.test:8443"]
    assert seen["host"] == ["app.example.test:8443"]


def test_hop_by_hop_headers_are_not_forwarded(gate, connect):
    response = connect(gate.port).request("GET", "/hop", headers=(
        ("Connection", "keep-alive, X-Session-Secret"),
        ("X-Session-Secret", "s3cret"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("X-End-To-End", "kept"),
    ))
    assert response.status == 200
    seen = headers_seen(response)
    for name in ("x-session-secret", "keep-alive", "proxy-connection", "te", "trailer",
                 "upgrade"):
        assert name not in seen, f"{name} was forwarded: {seen[name]}"
    for value in seen.get("connection", []):
        assert "x-session-secret" not in value.lower()
    assert seen["x-end-to-end"] == ["kept"]


def test_connection_naming_x_forwarded_for_does_not_strip_wsgates_own(gate, connect):
    conn = connect(gate.port)
    response = conn.request("GET", "/trick", headers=(
        ("Connection", "close, X-Forwarded-For"), ("X-Forwarded-For", "198.51.100.9")))
    assert response.status == 200
    seen = headers_seen(response)
    assert "x-forwarded-for" in seen, "the proxy's X-Forwarded-For was stripped"
    assert seen["x-forwarded-for"][-1].split(",")[-1].strip() == "127.0.0.1"
    assert conn.is_closed_within(2), "Connection: close was not honoured"


def test_upgrade_to_h2c_is_never_forwarded(gate, connect):
    response = connect(gate.port).request("GET", "/h2c", headers=(
        ("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")))
    assert response.status == 200
    seen = headers_seen(response)
    assert "upgrade" not in seen
    assert "http2-settings" not in seen
    assert all("upgrade" not in v.lower() for v in seen.get("connection", []))


def test_content_length_body_is_echoed(gate, connect):
    body = os.urandom(1 << 20)
    response = connect(gate.port).request("POST", "/upload", body=body,
                                          headers=(("Content-Type", "application/x-test"),))
    assert response.status == 200
    assert response.body == body
    assert response.header("content-type") == "application/x-test"


def test_chunked_request_body_is_echoed(gate, connect):
    body = os.urandom(200_000)
    conn = connect(gate.port)
    conn.send(build_request("POST", "/upload", (("Transfer-Encoding", "chunked"),))
              + harness.http11.encode_chunked(body, 6000))
    response = conn.read_response()
    assert (response.status, response.body) == (200, body)
    assert conn.request("GET", "/after").json()["path"] == "/after"


def test_chunked_response_reaches_the_client_intact(gate, connect):
    body = os.urandom(100_000)
    conn = connect(gate.port)
    response = conn.request("POST", "/chunked/stream", body=body)
    assert (response.status, response.body) == (200, body)
    assert conn.request("GET", "/after").json()["path"] == "/after"


def test_pipelined_requests_are_answered_in_order(gate, connect):
    conn = connect(gate.port)
    conn.send(build_request("GET", "/first")
              + build_request("POST", "/second", body=b"second body")
              + build_request("GET", "/internal/third")
              + build_request("GET", "/fourth"))
    assert conn.read_response().json()["path"] == "/first"
    assert conn.read_response().body == b"second body"
    assert conn.read_response().status == 403
    assert conn.read_response().json()["path"] == "/fourth"


def test_thousands_of_pipelined_requests_in_one_packet_are_all_answered(gate, connect):
    # 3000 tiny requests arrive together; wsgate must answer each, in order, without
    # nesting one call per request (a deep stack would crash the worker).
    conn = connect(gate.port)
    count = 3000
    conn.send(b"".join(build_request("GET", f"/internal/{i}") for i in range(count)))
    for _ in range(count):
        assert conn.read_response().status == 403
    assert conn.request("GET", "/after").json()["path"] == "/after"


def test_respond_route_is_answered_without_the_backend(start_wsgate, fake_backend, connect):
    backend = fake_backend(harness.answer_http(200))
    gate = start_wsgate(gateway_config(
        [route(path_prefix="/internal", respond=(403, "forbidden\n")),
         route("app", path_prefix="/")], {"app": pool(backend)}))
    conn = connect(gate.port)
    response = conn.request("GET", "/internal/admin")
    assert (response.status, response.body) == (403, b"forbidden\n")
    assert response.header("content-length") == "10"
    assert conn.request("GET", "/internal").status == 403  # connection still usable
    assert backend.accepted == 0
    record = gate.access_for(conn)[0]
    assert (record["status"], record["backend"]) == (403, None)


def test_head_response_has_no_body_and_the_connection_stays_usable(gate, connect):
    conn = connect(gate.port)
    response = conn.request("HEAD", "/resource")
    assert response.status == 200
    assert response.body == b""
    assert int(response.header("content-length")) > 0
    assert conn.request("GET", "/next").json()["path"] == "/next"


def test_routes_pick_the_pool_by_host(start_wsgate, echo_backend, connect):
    a, b = echo_backend("alpha"), echo_backend("beta")
    gate = start_wsgate(gateway_config(
        [route("a", host="a.example.test", path_prefix="/"), route("b", path_prefix="/")],
        {"a": pool(a), "b": pool(b)}))
    conn = connect(gate.port)
    assert conn.request("GET", "/", host="a.example.test").json()["backend"] == "alpha"
    assert conn.request("GET", "/", host="A.Example.Test:80").json()["backend"] == "alpha"
    assert conn.request("GET", "/", host="other.example.test").json()["backend"] == "beta"


def test_routes_pick_the_pool_by_header(start_wsgate, echo_backend, connect):
    a, b = echo_backend("alpha"), echo_backend("beta")
    gate = start_wsgate(gateway_config(
        [route("a", path_prefix="/", header={"x-tenant": "beta"}), route("b", path_prefix="/")],
        {"a": pool(a), "b": pool(b)}))
    conn = connect(gate.port)
    assert conn.request("GET", "/", headers=(("X-Tenant", "beta"),)).json()["backend"] == "alpha"
    assert conn.request("GET", "/").json()["backend"] == "beta"


def test_round_robin_spreads_requests_over_the_pool(start_wsgate, echo_backend, connect):
    a, b = echo_backend("alpha"), echo_backend("beta")
    gate = start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": pool(a, b)}))
    answered = [connect(gate.port).request("GET", "/").json()["backend"] for _ in range(6)]
    assert answered.count("alpha") == 3 and answered.count("beta") == 3


def test_idle_keep_alive_connection_is_closed_after_http_keepalive(start_wsgate, echo,
                                                                   connect):
    gate = start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": pool(echo)},
                                       timeouts={"http_keepalive": "1s"}))
    conn = connect(gate.port)
    assert conn.request("GET", "/").status == 200
    idle_since = time.monotonic()
    assert conn.is_closed_within(4), "idle keep-alive connection never closed"
    elapsed = time.monotonic() - idle_since
    assert 0.8 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s idle with http_keepalive: 1s"


def test_backend_closing_after_its_response_does_not_break_the_client(start_wsgate,
                                                                      fake_backend, connect):
    def one_response_per_connection(conn, backend):
        conn.read_request()
        conn.send(harness.response_bytes(200, b"bye\n", (("Connection", "close"),)))

    backend = fake_backend(one_response_per_connection)
    gate = start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": pool(backend)}))
    conn = connect(gate.port)
    assert conn.request("GET", "/one").body == b"bye\n"
    assert conn.request("GET", "/two").body == b"bye\n"
    wait_for(lambda: backend.accepted == 2, 5, "a second backend connection")
