"""uvicorn's httptools protocol with the bounds it lacks toward hostile clients.

uvicorn's HTTP/1.1 protocol on httptools has no limit on the size of a request's head
(httptools buffers a header until it ends, so one 64 MB header costs 64 MB before any
route or credential check runs), no deadline for a request's head to arrive (a slowloris
client holds its connection open for ever by sending a byte now and then), no timeout for
a connection that never sends a request at all (the keep-alive timer starts only after a
response), and no cap on open connections. This subclass adds each, per connection,
before the app sees anything; the app's own limits (body size and read deadline,
credentials) then apply to what gets through.

The keep-alive timer between requests stays uvicorn's own (``RELAY_KEEP_ALIVE``, longer
than the ingress's, or the ingress sees 502s): the head deadline starts only when a
request's first byte arrives, or when a connection opens.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientLimits:
    #: Request line plus headers, in bytes; past it the answer is 431 and the connection closes.
    max_head_bytes: int
    #: Seconds from a connection's opening, or a request's first byte, to the end of its head.
    head_timeout: float
    #: Open connections; one more is closed as soon as it is accepted.
    max_connections: int
    #: Seconds from the end of a request's head to the end of its body.
    body_timeout: float


def _answer(status: bytes, message: str) -> bytes:
    """A complete JSON error response that closes the connection, in the relay's shape."""
    body = json.dumps({"errors": [message]}).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", "request line and headers too large")
_TOO_SLOW = _answer(b"408 Request Timeout", "request line and headers took too long")
_BODY_TOO_SLOW = _answer(b"408 Request Timeout", "request body took too long")


def bounded_protocol(limits: ClientLimits) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``, bound to ``limits``."""

    class BoundedHttpToolsProtocol(_Bounded):
        _limits = limits

    return BoundedHttpToolsProtocol


class _Bounded(HttpToolsProtocol):
    _limits: ClientLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: True from a request's first byte to the end of its head; only then do received
        #: bytes count toward the head's size.
        self._in_head = False
        self._head_bytes = 0
        #: Whether a request ended within the chunk being parsed: the bytes before a
        #: pipelined request's head in that chunk (the last one's body) are not its head.
        self._ended_in_chunk = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            self._refused = True
            self.logger.warning("connection refused: %d open", len(self.connections) - 1)
            transport.close()
            return
        self._arm_head_timer()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        head_under_way = self._in_head
        self._ended_in_chunk = False
        super().data_received(data)
        if self._refused or not self._in_head:
            return
        if head_under_way or not self._ended_in_chunk:
            self._head_bytes += len(data)
        if self._head_bytes > self._limits.max_head_bytes:
            self._refuse(_TOO_LARGE, "request head over %d bytes", self._limits.max_head_bytes)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refusal already answered and closed
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()
        self._body_timer = self.loop.call_later(self._limits.body_timeout, self._body_too_slow)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._ended_in_chunk = True
        self._disarm_body_timer()

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_too_slow(self) -> None:
        """The app is still waiting for the body: the 408 goes out from here, and the app
        then reads a disconnect, whose answer goes nowhere."""
        self._body_timer = None
        if self.transport.is_closing():
            return
        self._refused = True
        self._disarm_head_timer()
        limit = self._limits.body_timeout
        self.logger.warning("connection closed: request body not complete within %.0f s", limit)
        if self.cycle is not None and not self.cycle.response_started:
            self.transport.write(_BODY_TOO_SLOW)
        self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.head_timeout, self._too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if (self._in_head or self.cycle is None) and not self.transport.is_closing():
            limit = self._limits.head_timeout
            self._refuse(_TOO_SLOW, "request head not complete within %.0f s", limit)

    def _refuse(self, answer: bytes, why: str, *args: object) -> None:
        """Answer and close, unless a response is under way: then only close."""
        self._refused = True
        self._disarm_head_timer()
        self.logger.warning("connection closed: " + why, *args)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(answer)
        self.transport.close()
