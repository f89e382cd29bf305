"""The client bounds uvicorn lacks, against hostile clients on a real socket.

Each test serves a tiny app through the bounded protocol on a real uvicorn server on
127.0.0.1 and plays the hostile client with raw sockets: what matters happens in the
HTTP parser and the transport, which in-process transports skip.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.http_protocol import ClientLimits, bounded_protocol
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread

REQUEST = b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n"


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def serve(**limits: float) -> UvicornThread:
    bounds = {
        "max_head_bytes": 4096,
        "head_timeout": 1.0,
        "max_connections": 50,
        "body_timeout": 1.0,
        **limits,
    }
    protocol = bounded_protocol(ClientLimits(**bounds))  # type: ignore[arg-type]
    app = Starlette(routes=[Route("/", hello)])
    return UvicornThread(app, http=protocol, timeout_keep_alive=30)


@pytest.fixture
def server() -> Iterator[UvicornThread]:
    with serve() as running:
        yield running


def connect(server: UvicornThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def is_closed(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (its answer, if any, is drained)."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def test_a_plain_request_is_answered(server: UvicornThread) -> None:
    with connect(server) as sock:
        sock.sendall(REQUEST)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def send_until_closed(sock: socket.socket, limit: int) -> int:
    """Stream header bytes until ``limit`` or until the server closes; the bytes sent."""
    chunk = b"a" * 1024
    sent = 0
    try:
        while sent < limit:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def test_a_head_over_the_limit_gets_431_and_is_closed(server: UvicornThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: relay\r\nX-Big: ")
        sent = send_until_closed(sock, 64 * 1024 * 1024)
        try:
            answer = sock.recv(65536)
        except OSError:
            answer = b""
    assert sent < 64 * 1024 * 1024, "the server read a 64 MB header to the end"
    # An RST may overtake the 431 when unread bytes are left; then there is no answer.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")


def test_a_head_just_under_the_limit_is_served(server: UvicornThread) -> None:
    with connect(server) as sock:
        filler = b"a" * 3500
        sock.sendall(b"GET / HTTP/1.1\r\nHost: relay\r\nX-Filler: " + filler + b"\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_a_431_names_the_problem_in_the_relays_error_shape() -> None:
    with serve(max_head_bytes=100) as server, connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: relay\r\nX-Big: " + b"a" * 200)
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b'{"errors": ["request line and headers too large"]}')


async def echo_size(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


def test_bodies_far_past_the_head_limit_are_read_whole_also_pipelined() -> None:
    """Only the head counts: a body in the same packets as its head, or a pipelined
    request's head behind a big body, is no oversized head."""
    app = Starlette(routes=[Route("/", echo_size, methods=["POST"])])
    limits = ClientLimits(
        max_head_bytes=4096, head_timeout=5.0, max_connections=10, body_timeout=30.0
    )
    body = b"x" * 600_000
    post = b"POST / HTTP/1.1\r\nHost: relay\r\nContent-Length: 600000\r\n\r\n" + body
    with (
        UvicornThread(app, http=bounded_protocol(limits)) as server,
        connect(server) as sock,
    ):
        sock.sendall(post + post)
        answers = b""
        while answers.count(b"\r\n\r\n600000") < 2:
            chunk = sock.recv(65536)
            assert chunk, answers
            answers += chunk


def test_idle_connections_that_never_send_a_request_are_closed(server: UvicornThread) -> None:
    idle = [connect(server) for _ in range(30)]
    try:
        wait_for(lambda: all(is_closed(sock) for sock in idle), timeout=15.0)
    finally:
        for sock in idle:
            sock.close()


def test_a_slowloris_head_gets_408_and_is_closed(server: UvicornThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: relay\r\n")
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 15.0:  # a byte now and then, as slowloris does
            try:
                sock.sendall(b"X")
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer


def test_keep_alive_between_requests_outlasts_the_head_timeout(server: UvicornThread) -> None:
    """Behind an ingress, idle pooled connections live for the keep-alive time: the head
    deadline must not cut them at one second."""
    with connect(server) as sock:
        sock.sendall(REQUEST)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        time.sleep(2.0)  # twice the head timeout, idle between requests
        assert not is_closed(sock)
        sock.sendall(REQUEST)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_pipelined_requests_are_both_answered(server: UvicornThread) -> None:
    with connect(server) as sock:
        sock.sendall(REQUEST + REQUEST)
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 2:
            chunk = sock.recv(65536)
            assert chunk, answers
            answers += chunk


def test_connections_past_the_cap_are_closed_and_the_others_still_served() -> None:
    with serve(max_connections=5, head_timeout=30.0) as server:
        held = [connect(server) for _ in range(5)]
        try:
            wait_for(lambda: len(server.server.server_state.connections) == 5)
            with connect(server) as extra:
                wait_for(lambda: is_closed(extra), timeout=10.0)
            held[0].sendall(REQUEST)
            assert held[0].recv(65536).startswith(b"HTTP/1.1 200 OK")
        finally:
            for sock in held:
                sock.close()


def test_a_body_that_does_not_arrive_in_time_gets_408_and_is_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The app waits for the body; the deadline answers for it and closes, and the app
    reads a disconnect (nothing stored, nothing logged as an error)."""
    app = Starlette(routes=[Route("/", echo_size, methods=["POST"])])
    with (
        UvicornThread(
            app,
            http=bounded_protocol(
                ClientLimits(
                    max_head_bytes=4096, head_timeout=5.0, max_connections=10, body_timeout=1.0
                )
            ),
        ) as server,
        connect(server) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n0123456789")
        answer = read_answer(sock)  # until the server closes; the socket's own timeout is 10 s
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b'{"errors": ["request body took too long"]}')
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_slow_but_steady_body_within_the_deadline_is_read_whole() -> None:
    app = Starlette(routes=[Route("/", echo_size, methods=["POST"])])
    with (
        UvicornThread(
            app,
            http=bounded_protocol(
                ClientLimits(
                    max_head_bytes=4096, head_timeout=5.0, max_connections=10, body_timeout=30.0
                )
            ),
        ) as server,
        connect(server) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: relay\r\nContent-Length: 30\r\n\r\n")
        for _ in range(3):
            sock.sendall(b"0123456789")
        assert sock.recv(65536).endswith(b"\r\n\r\n30")
