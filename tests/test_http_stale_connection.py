"""A kept-alive connection the server closed after its answer: the next request is sent again
once on a new connection (as Go's and urllib3's clients do); a server that drops the request
itself is still unreachable."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from servegate.errors import Unreachable
from servegate.protocols.http import HttpSession
from servegate.targets import Connection

ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
    b"connection: keep-alive\r\n\r\n{}"
)


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


@contextmanager
def raw_server(behaviour: str) -> Iterator[str]:
    """``one-answer-per-connection``: answer a connection's first request (saying keep-alive),
    then read its next one and close without answering, as a server whose connection state
    broke after its previous answer does; ``drop``: close every connection unanswered."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                if _read_request(conn) and behaviour == "one-answer-per-connection":
                    conn.sendall(ANSWER)
                    _read_request(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


def test_a_request_on_a_connection_the_server_closed_is_sent_again() -> None:
    server = raw_server("one-answer-per-connection")
    with server as url, HttpSession(url, Connection(timeout=5)) as http:
        # each answer says keep-alive, so each next request goes out on a dead connection
        for _ in range(5):
            assert http.get("/v2").status == 200


def test_a_server_that_drops_every_request_is_unreachable() -> None:
    with (
        raw_server("drop") as url,
        HttpSession(url, Connection(timeout=5)) as http,
        pytest.raises(Unreachable, match="GET .*/v2"),
    ):
        http.get("/v2")
