"""The echo backend on its own, driven by an independent client (python3-websockets) and
by the harness's raw client: when a wsgate test fails, this says the backend is not why."""

import asyncio
import os

import pytest
import websockets

import harness
import wsproto


@pytest.fixture
def echo(echo_backend):
    return echo_backend("solo")


def websockets_echo(port, messages, path="/ws"):
    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None,
                                      compression=None, open_timeout=5, close_timeout=5) as ws:
            echoed = []
            for message in messages:
                await ws.send(message)
                echoed.append(await asyncio.wait_for(ws.recv(), 20))
            return echoed
    return asyncio.run(run())


def test_get_describes_the_request_it_received(echo, connect):
    conn = connect(echo.port)
    response = conn.request("GET", "/hello?x=1", headers=(("X-Probe", "42"),))
    assert response.status == 200
    assert response.header("x-backend") == "solo"
    described = response.json()
    assert (described["backend"], described["method"], described["path"]) == \
        ("solo", "GET", "/hello?x=1")
    assert ["X-Probe", "42"] in described["headers"]


def test_keep_alive_and_pipelining_answer_in_order(echo, connect):
    conn = connect(echo.port)
    conn.send(b"".join(harness.build_request("GET", f"/p{i}") for i in range(3)))
    assert [conn.read_response().json()["path"] for _ in range(3)] == ["/p0", "/p1", "/p2"]


def test_head_has_no_body(echo, connect):
    conn = connect(echo.port)
    response = conn.request("HEAD", "/")
    assert response.status == 200 and response.body == b""
    assert int(response.header("content-length")) > 0
    assert conn.request("GET", "/after-head").json()["path"] == "/after-head"


def test_post_echoes_content_length_and_chunked_bodies(echo, connect):
    conn = connect(echo.port)
    body = os.urandom(300_000)
    assert conn.request("POST", "/cl", body=body).body == body
    conn.send(harness.build_request("POST", "/te", (("Transfer-Encoding", "chunked"),))
              + harness.http11.encode_chunked(body, 7000))
    assert conn.read_response().body == body


def test_chunked_path_answers_chunked(echo, connect):
    conn = connect(echo.port)
    response = conn.request("POST", "/chunked/x", body=b"abc" * 10000)
    assert response.header("transfer-encoding") == "chunked"
    assert response.body == b"abc" * 10000


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 16 << 20])
def test_websocket_echoes_binary_messages(echo, size):
    payload = os.urandom(size)
    assert websockets_echo(echo.port, [payload]) == [payload]


def test_websocket_echoes_text_messages(echo):
    assert websockets_echo(echo.port, ["h\u00e9llo \u2603", ""]) == ["h\u00e9llo \u2603", ""]


def test_websocket_reassembles_fragments_and_answers_pings_between_them(echo, connect):
    conn = connect(echo.port)
    assert conn.upgrade("/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"frag", fin=False)
    conn.send_frame(wsproto.OP_PING, b"p1")
    conn.send_frame(wsproto.OP_CONT, b"ment", fin=False)
    conn.send_frame(wsproto.OP_CONT, b"ed", fin=True)
    assert conn.recv_message() == (wsproto.OP_PONG, b"p1")
    assert conn.recv_message() == (wsproto.OP_TEXT, b"fragmented")
    conn.send_close(1000, "bye")
    assert conn.recv_message() == (wsproto.OP_CLOSE, wsproto.close_payload(1000, "bye"))
    assert conn.is_closed_within(5)


def test_websocket_frames_pipelined_behind_the_upgrade_are_echoed(echo, connect):
    conn = connect(echo.port)
    frame = wsproto.encode_frame(wsproto.OP_BINARY, b"early", mask=True)
    assert conn.upgrade("/ws", trailing=frame).status == 101
    assert conn.recv_message() == (wsproto.OP_BINARY, b"early")


def test_websocket_unmasked_client_frame_is_a_protocol_error(echo, connect):
    conn = connect(echo.port)
    assert conn.upgrade("/ws").status == 101
    conn.send_frame(wsproto.OP_TEXT, b"x", mask=False)
    opcode, payload = conn.recv_message()
    assert opcode == wsproto.OP_CLOSE
    assert wsproto.parse_close(payload)[0] == wsproto.CLOSE_PROTOCOL_ERROR


def test_upgrade_with_a_bad_key_is_refused(echo, connect):
    conn = connect(echo.port)
    conn.send(wsproto.upgrade_request("/ws", key="c2hvcnQ="))
    assert conn.read_response().status == 400


def test_accept_matches_the_rfc_example():
    assert wsproto.accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_sigterm_stops_the_backend(echo):
    assert echo.stop() == 0


def test_raw_conn_and_independent_client_agree_on_framing(echo, connect):
    conn = connect(echo.port)
    assert conn.upgrade("/ws").status == 101
    for size in (0, 125, 126, 65535, 65536, 70000):
        payload = os.urandom(size)
        conn.send_frame(wsproto.OP_BINARY, payload)
        assert conn.recv_message() == (wsproto.OP_BINARY, payload)
