"""A hostile upstream: a DX or Opsgenie that answers slowly, hugely, or with bad JSON.

It runs on a real socket (``tests.fakes.servers.UvicornThread``) because the faults it
plays live there: a body dripped a byte at a time, 100 MB streamed lazily, a gzip bomb
whose compressed bytes are what crosses the wire. Each ``answer`` is built per request,
so nothing big is held in memory on the server side (the bomb's compressed form, a few
hundred KB, is built once).

Requests whose body names a ``reference_id`` in ``drip_references`` get ``drip()``; every
other request gets ``answer``. ``answered`` records the reference ids (or paths) answered
whole, so a test can see which requests got through while others hung.
"""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from functools import cache

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = ["HostileUpstream", "drip", "gzip_bomb", "huge", "raw"]

Answer = Callable[[], Response]
JSON = "application/json"
CHUNK = 64 * 1024


def raw(body: bytes, status: int = 200) -> Answer:
    """Exactly these bytes, as JSON: for ``NaN``, ``[[[[...``, invalid UTF-8."""
    return lambda: Response(body, status_code=status, media_type=JSON)


def drip(body: bytes = b'{"ok": true}', *, every: float = 0.2, then: float = 60.0) -> Answer:
    """Headers at once, then one byte every ``every`` seconds; after the body, silence
    until ``then`` seconds have passed (a chunked body never says it is over)."""

    async def slowly() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        until = loop.time() + then
        for byte in body:
            yield bytes([byte])
            await asyncio.sleep(every)
        while loop.time() < until:
            yield b" "  # JSON allows trailing whitespace: the answer just never ends
            await asyncio.sleep(every)

    return lambda: StreamingResponse(slowly(), media_type=JSON)


def huge(size: int) -> Answer:
    """``size`` bytes of a JSON string, streamed lazily: never more than a chunk in memory."""

    async def lazily() -> AsyncIterator[bytes]:
        yield b'{"ok": true, "padding": "'
        for start in range(0, size, CHUNK):
            yield b"x" * min(CHUNK, size - start)
        yield b'"}'

    return lambda: StreamingResponse(lazily(), media_type=JSON)


@cache
def bomb(expanded: int) -> bytes:
    """gzip of ``expanded`` zero bytes, compressed from a stream of 1 MiB chunks (about
    1,000:1, so 300 MB is about 300 KB); built once per size."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(expanded // len(zeros))]
    return b"".join([*parts, compressor.flush()])


def gzip_bomb(expanded: int) -> Answer:
    """A gzip body that inflates to ``expanded`` bytes, sent with ``Content-Encoding: gzip``."""
    compressed = bomb(expanded)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(compressed), CHUNK):
            yield compressed[start : start + CHUNK]

    return lambda: StreamingResponse(
        chunks(), media_type=JSON, headers={"Content-Encoding": "gzip"}
    )


class HostileUpstream:
    """One app for every path: DX's ``/api/incidents.upsert`` and Opsgenie's ``/v2/...``."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer: Answer = answer or raw(b'{"ok": true, "data": {"name": "acme"}}')
        self.drip_references: set[str] = set()
        self._lock = threading.Lock()
        self._started: list[str] = []
        self._answered: list[str] = []
        self.app = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])]
        )

    @property
    def started(self) -> list[str]:
        with self._lock:
            return list(self._started)

    @property
    def answered(self) -> list[str]:
        with self._lock:
            return list(self._answered)

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        try:
            reference = json.loads(body).get("reference_id") if body else None
        except ValueError:
            reference = None
        name = reference if isinstance(reference, str) else request.url.path
        with self._lock:
            self._started.append(name)
            dripping = name in self.drip_references
            answer = drip() if dripping else self.answer
        if not dripping:
            with self._lock:
                self._answered.append(name)
        return answer()
