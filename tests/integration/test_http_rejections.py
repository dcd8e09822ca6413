"""Requests wsgate's HTTP/1.1 parser must refuse itself, before any backend is contacted
(request smuggling and desync shapes from RFC 9112 and published proxy advisories)."""

import select
import socket
import time

import pytest

import harness
from harness import Deadline, assert_error_response, gateway_config, pool, route

LIMITS = {"max_uri_bytes": 1024, "max_header_bytes": 4096, "max_headers": 20}


@pytest.fixture
def backend(fake_backend):
    return fake_backend(harness.answer_http(200, b"from backend\n"), "app1")


@pytest.fixture
def gate(start_wsgate, backend):
    return start_wsgate(gateway_config([route("app", path_prefix="/")],
                                       {"app": pool(backend)}, limits=LIMITS))


def head(*lines):
    """Request head bytes from raw lines (each may hold any byte), CRLF-terminated."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n"


GET = b"GET / HTTP/1.1"
HOST = b"Host: example.test"

REJECTIONS = [
    ("bare-lf-in-head", 400, b"GET / HTTP/1.1\r\nHost: example.test\r\nX-A: 1\nX-B: 2\r\n\r\n"),
    ("bare-cr-in-head", 400, b"GET / HTTP/1.1\r\nHost: example.test\r\nX-A: 1\rX-B: 2\r\n\r\n"),
    ("obs-fold", 400, head(GET, HOST, b"X-Folded: first", b" second")),
    ("whitespace-before-colon", 400, head(GET, HOST, b"X-Spaced : value")),
    ("whitespace-before-colon-in-host", 400, head(GET, b"Host : example.test")),
    ("empty-field-name", 400, head(GET, HOST, b": value")),
    ("invalid-field-name", 400, head(GET, HOST, b"X(Bad): value")),
    ("nul-in-value", 400, head(GET, HOST, b"X-Nul: a\x00b")),
    ("control-char-in-value", 400, head(GET, HOST, b"X-Ctl: a\x01b")),
    ("del-in-value", 400, head(GET, HOST, b"X-Del: a\x7fb")),
    ("missing-host", 400, head(GET, b"X-A: 1")),
    ("duplicate-host", 400, head(GET, HOST, b"Host: other.test")),
    ("content-length-not-a-number", 400, head(b"POST / HTTP/1.1", HOST, b"Content-Length: abc")),
    ("content-length-negative", 400, head(b"POST / HTTP/1.1", HOST, b"Content-Length: -1")),
    ("content-length-with-sign", 400, head(b"POST / HTTP/1.1", HOST, b"Content-Length: +3")),
    ("content-length-list", 400, head(b"POST / HTTP/1.1", HOST, b"Content-Length: 3, 4")),
    ("duplicate-content-length", 400,
     head(b"POST / HTTP/1.1", HOST, b"Content-Length: 3", b"Content-Length: 4")),
    ("transfer-encoding-and-content-length", 400,
     head(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", b"Content-Length: 5")),
    ("chunked-not-last", 400, head(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked, gzip")),
    ("only-gzip-coding", 400, head(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: gzip")),
    ("unknown-transfer-coding", 501,
     head(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: x-custom, chunked")),
    ("uri-over-max-uri-bytes", 414, head(b"GET /" + b"a" * 2000 + b" HTTP/1.1", HOST)),
    ("head-over-max-header-bytes", 431, head(GET, HOST, b"X-Big: " + b"b" * 8000)),
    ("more-than-max-headers", 431,
     head(GET, HOST, *[b"X-Many-%d: v" % i for i in range(30)])),
]


@pytest.mark.parametrize("raw,status", [(raw, status) for _, status, raw in REJECTIONS],
                         ids=[name for name, _, _ in REJECTIONS])
def test_malformed_request_is_refused_and_the_connection_closed(gate, backend, connect, raw,
                                                                 status):
    conn = connect(gate.port)
    conn.send(raw)
    response = conn.read_response()
    assert_error_response(response, status)
    assert response.head.has_token("connection", "close")
    assert conn.is_closed_within(2), "connection left open after a parse error"
    record = gate.access_for(conn)[0]
    assert record["kind"] == "http"
    assert record["status"] == status
    assert record["backend"] is None
    assert isinstance(record["reason"], str) and record["reason"] not in ("", "ok")
    assert backend.accepted == 0, "a refused request reached the backend"


@pytest.mark.parametrize("path,status,body", [("/health", 200, b"ok\n"), ("/", 400, None)],
                         ids=["respond-route", "parse-error"])
def test_an_answer_reaches_a_client_whose_fin_came_with_its_request(start_wsgate, backend,
                                                                    connect, path, status,
                                                                    body):
    # `nc -N` and some health checkers send the request and half-close at once. The FIN
    # queued behind the request must not make wsgate drop the answer it just queued.
    gate = start_wsgate(gateway_config(
        [route(path_prefix="/health", respond=(200, "ok\n")), route("app", path_prefix="/")],
        {"app": pool(backend)}, limits=LIMITS))
    conn = connect(gate.port)
    raw = (b"GET %s HTTP/1.1\r\nHost: example.test\r\n\r\n" % path.encode() if status == 200
           else head(GET, HOST, b"X-Nul: a\x00b"))
    # TCP_CORK holds the request until the shutdown, which sends it with the FIN in one
    # segment: wsgate reads both in one go.
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    conn.send(raw)
    conn.sock.shutdown(socket.SHUT_WR)
    response = conn.read_response()
    assert response.status == status
    if body is not None:
        assert response.body == body
    assert conn.is_closed_within(2)
    assert gate.access_for(conn)[0]["status"] == status


def test_obs_fold_is_logged_with_its_reason(gate, connect):
    conn = connect(gate.port)
    conn.send(head(GET, HOST, b"X-Folded: first", b"\tsecond"))
    assert conn.read_response().status == 400
    assert gate.access_for(conn)[0]["reason"] == "obs-fold"


def test_the_same_requests_well_formed_reach_the_backend(gate, backend, connect):
    """Control for the table above: the gateway and backend do work."""
    conn = connect(gate.port)
    response = conn.request("GET", "/", headers=(("X-A", "1"),))
    assert (response.status, response.body) == (200, b"from backend\n")
    conn.send(b"POST / HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3\r\nabc\r\n0\r\n\r\n")
    assert conn.read_response().status == 200
    assert backend.accepted >= 1
    assert [r.body for r in backend.notes["requests"]] == [b"", b"abc"]


def test_a_malformed_second_request_on_a_keep_alive_connection_is_refused(gate, backend,
                                                                        connect):
    conn = connect(gate.port)
    assert conn.request("GET", "/first").status == 200
    conn.send(head(GET, HOST, b"X-Folded: first", b" second"))
    assert_error_response(conn.read_response(), 400)
    assert conn.is_closed_within(2)
    assert [r.target for r in backend.notes["requests"]] == ["/first"]


def test_a_bad_request_does_not_disturb_other_connections(gate, backend, connect):
    slow = connect(gate.port)
    slow.send(b"GET /slow HTTP/1.1\r\nHost: example.test\r\n")  # head not finished yet

    bad = connect(gate.port)
    bad.send(head(GET, HOST, b"X-Nul: a\x00b"))
    assert bad.read_response().status == 400

    good = connect(gate.port)
    assert good.request("GET", "/good").status == 200

    slow.send(b"X-Late: 1\r\n\r\n")
    response = slow.read_response()
    assert (response.status, response.body) == (200, b"from backend\n")
    assert sorted(r.target for r in backend.notes["requests"]) == ["/good", "/slow"]


def test_a_head_trickling_in_past_the_handshake_timeout_gets_408(start_wsgate, backend,
                                                                 connect):
    gate = start_wsgate(gateway_config([route("app", path_prefix="/")], {"app": pool(backend)},
                                       timeouts={"handshake": "1s"}))
    conn = connect(gate.port)
    started = time.monotonic()
    conn.send(b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
    deadline = Deadline(6)
    # One byte every 200 ms keeps the connection busy but never completes the head.
    while not deadline.expired():
        readable, _, _ = select.select([conn.sock], [], [], 0.2)
        if readable:
            break
        try:
            conn.send(b"z")
        except OSError:
            break
    elapsed = time.monotonic() - started
    response = conn.read_response(timeout=1)
    assert_error_response(response, 408)
    assert 0.8 <= elapsed <= 3.0, f"408 after {elapsed:.2f}s with handshake: 1s"
    assert conn.is_closed_within(2)
    assert gate.access_for(conn)[0]["status"] == 408
    assert backend.accepted == 0
