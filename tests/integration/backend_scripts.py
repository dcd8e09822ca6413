"""Building blocks for FakeBackend scripts in test_backend_paths.py.

A script runs once per backend connection, on its own thread. These never raise when the
peer closes or resets (wsgate closing a backend connection is often what a test expects);
a script that waits for the test does so in short steps and gives up when the backend
stops, so no thread outlives the test.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

import harness
from harness import Conn, ConnectionClosed, FakeBackend, Request

Script = Callable[[Conn, FakeBackend], None]


def per_connection(*scripts: Script) -> Script:
    """Backend connection i (counting from 0, in accept order) runs scripts[i]; connections
    past the last script run the last one. The connection's number is noted under
    notes["order"], so a test can tell which connection saw what."""
    lock = threading.Lock()
    count = [0]

    def script(conn: Conn, backend: FakeBackend) -> None:
        with lock:
            index = count[0]
            count[0] += 1
        scripts[min(index, len(scripts) - 1)](conn, backend)

    return script


def wait_for_test(event: threading.Event, backend: FakeBackend, timeout: float = 10) -> bool:
    """Waits until the test sets `event`; False if the backend stops or `timeout` passes."""
    deadline = harness.Deadline(timeout)
    while not event.wait(0.02):
        if backend.stopping.is_set() or deadline.expired():
            return False
    return True


def next_request(conn: Conn, timeout: float = 10) -> Optional[Request]:
    """The next request on the connection, or None when wsgate closed or reset it first."""
    try:
        return conn.read_request(timeout=timeout)
    except ConnectionClosed:
        return None


def bytes_until_eof(conn: Conn, timeout: float = 10) -> Optional[bytes]:
    """Everything the peer sends until it ends the stream (FIN or RST); None if it keeps the
    connection open past `timeout`."""
    try:
        return conn.read_until_eof(timeout=timeout)
    except TimeoutError:
        return None


def keep_alive_answers(label: str, body: bytes) -> Script:
    """Answers every request on the connection with 200 and `body`, keeping it alive;
    records each request's target under notes[label]."""
    def script(conn: Conn, backend: FakeBackend) -> None:
        while not backend.stopping.is_set():
            request = next_request(conn, timeout=60)
            if request is None:
                return
            backend.append(label, request.target)
            conn.send(harness.response_bytes(200, body))
    return script
