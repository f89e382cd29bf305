"""Asking an upstream (DX, Opsgenie, any added later) and reading its answer within bounds.

An upstream is a peer the relay does not control, so its answer may be slow, huge, a
decompression bomb, or JSON that only Python accepts. httpx alone does not bound these:
its timeouts apply to each read (a server dripping a byte a second never trips one), and
it reads a body whole, decompressed without limit. So every upstream request goes through
``fetch``, which holds it to ``Bounds``:

- an overall deadline, connect to last byte, whatever the pace of the bytes;
- a byte cap on the answer *after* decompression, read as a stream and given up as soon
  as it is passed, so memory stays bounded whatever the answer claims;
- ``loads``: strict JSON read by ``strict_json``, the reader every byte from outside goes
  through (RFC 8259: UTF-8, no ``NaN``/``Infinity``, no lone surrogates), nesting at
  most ``MAX_DEPTH`` deep, so a hostile document is a bad answer, never a
  ``RecursionError`` in a later walk of it.

Failures are the ``UpstreamError`` family; each client maps it into its own (DX's
``DeliveryError``, Opsgenie's ``OpsgenieAPIError``) in one place, as httpx maps httpcore's.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from service import strict_json
from service.errors import AnswerTooLarge, MalformedAnswer, UpstreamTimeout, UpstreamUnreachable
from service.settings import Settings

#: Deepest nesting accepted in an upstream's JSON. DX and Opsgenie answers are a few levels
#: deep (an alert's ``details`` is the deepest); a bound far below Python's recursion limit
#: keeps every later walk of the document safe.
MAX_DEPTH = 64
#: The encodings ``fetch`` decodes itself, with a bound on the output of every step.
ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """What one upstream request may cost: the defaults are the settings' defaults."""

    deadline_seconds: float = 10.0
    max_bytes: int = 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        """``RELAY_DX_TIMEOUT`` bounds Opsgenie's requests too: they share the one client
        (and its per-read timeouts), and enrichment holds a delivery while it waits."""
        return cls(
            deadline_seconds=settings.dx_timeout_seconds, max_bytes=settings.upstream_max_bytes
        )


class UpstreamClient(httpx.AsyncClient):
    """The process's one outbound client, carrying the ``Bounds`` its answers are read in.

    The bounds ride on the client because every upstream client (``DXClient``, each
    account's ``OpsgenieAPI``) is handed this one object, so the settings reach them all.
    """

    def __init__(
        self,
        *,
        bounds: Bounds,
        transport: httpx.AsyncBaseTransport | None,
        timeout: httpx.Timeout,
        limits: httpx.Limits,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(
            transport=transport,
            timeout=timeout,
            limits=limits,
            follow_redirects=False,
            headers=headers,
        )
        self.bounds = bounds


def bounds_of(client: httpx.AsyncClient) -> Bounds:
    """The client's bounds; a plain ``httpx.AsyncClient`` (a test's) gets the defaults."""
    return client.bounds if isinstance(client, UpstreamClient) else Bounds()


@dataclass(frozen=True, slots=True)
class Reply:
    """An upstream's whole answer, decoded, within bounds; what it means is the caller's."""

    status_code: int
    headers: httpx.Headers
    body: bytes


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str | int] | None = None,
    json_body: Any = None,
) -> Reply:
    """Send one request and read its answer within the client's bounds, or raise the
    ``UpstreamError`` that says why not. Messages name exception types, never the request:
    its headers hold the upstream's credentials."""
    bounds = bounds_of(client)
    request = client.build_request(
        method,
        url,
        params=params,
        json=json_body,
        headers={**headers, "Accept-Encoding": ACCEPT_ENCODING},
    )
    try:
        async with asyncio.timeout(bounds.deadline_seconds):
            response = await client.send(request, stream=True)
            try:
                body = await _read(response, bounds.max_bytes)
            finally:
                await response.aclose()
    except TimeoutError:
        raise UpstreamTimeout(f"no whole answer within {bounds.deadline_seconds:g}s") from None
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(type(exc).__name__) from None
    except httpx.TransportError as exc:
        raise UpstreamUnreachable(type(exc).__name__) from None
    except httpx.RequestError as exc:
        raise MalformedAnswer(f"unusable answer: {type(exc).__name__}") from None
    return Reply(response.status_code, response.headers, body)


async def _read(response: httpx.Response, max_bytes: int) -> bytes:
    """The decoded body, stopping as soon as it passes ``max_bytes``: each raw chunk is
    inflated at most one byte past the room left, so a bomb costs ``max_bytes``, not its
    expansion (httpx would inflate a 64 KiB chunk of zeros to 64 MiB in one call)."""
    if response.is_stream_consumed:  # built in memory (httpx.MockTransport): already whole
        return _capped(response.content, max_bytes, response.status_code)
    decoder = _decoder(response)
    body = bytearray()
    async for raw in response.aiter_raw():
        body += decoder.feed(raw, max_bytes + 1 - len(body))
        if len(body) > max_bytes:
            break
    else:
        body += decoder.flush(max_bytes + 1 - len(body))
    return _capped(bytes(body), max_bytes, response.status_code)


def _capped(body: bytes, max_bytes: int, status_code: int) -> bytes:
    if len(body) > max_bytes:
        raise AnswerTooLarge(f"answer larger than {max_bytes} bytes", http_status=status_code)
    return body


class _Decoder(Protocol):
    def feed(self, data: bytes, room: int) -> bytes: ...
    def flush(self, room: int) -> bytes: ...


class _Identity:
    def feed(self, data: bytes, room: int) -> bytes:
        return data

    def flush(self, room: int) -> bytes:
        return b""


class _Inflate:
    """gzip or deflate, never more than ``room`` bytes out per call. Deflate is tried with
    the zlib wrapper RFC 9110 asks for, then raw, as some servers send (httpx does too)."""

    def __init__(self, *wbits: int, status_code: int) -> None:
        self._fallbacks = list(wbits[1:])
        self._zlib = zlib.decompressobj(wbits[0])
        self._status_code = status_code
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._zlib.decompress(data, room)
        except zlib.error:
            if self._started or not self._fallbacks:
                raise MalformedAnswer(
                    "answer is not what its Content-Encoding says", http_status=self._status_code
                ) from None
            self._zlib = zlib.decompressobj(self._fallbacks.pop(0))
            return self.feed(data, room)
        self._started = self._started or bool(data)
        return out

    def flush(self, room: int) -> bytes:
        try:
            return self._zlib.flush(room)
        except zlib.error:
            raise MalformedAnswer(
                "answer is not what its Content-Encoding says", http_status=self._status_code
            ) from None


def _decoder(response: httpx.Response) -> _Decoder:
    """Only what ``ACCEPT_ENCODING`` offered: anything else is a bad answer, not a guess."""
    codings = [
        coding.strip().lower()
        for coding in response.headers.get("content-encoding", "").split(",")
        if coding.strip() and coding.strip().lower() != "identity"
    ]
    if not codings:
        return _Identity()
    if codings in (["gzip"], ["x-gzip"]):
        return _Inflate(zlib.MAX_WBITS | 16, status_code=response.status_code)
    if codings == ["deflate"]:
        return _Inflate(zlib.MAX_WBITS, -zlib.MAX_WBITS, status_code=response.status_code)
    raise MalformedAnswer(
        f"answer encoded as {', '.join(codings)[:50]!r}", http_status=response.status_code
    )


def loads(body: bytes) -> Any:
    """Strict JSON, or ``MalformedAnswer``: what RFC 8259 allows and nothing Python adds."""
    try:
        return strict_json.loads(body, max_depth=MAX_DEPTH)
    except strict_json.NotStrictJSON as exc:
        raise MalformedAnswer(f"JSON {exc}") from None
    except ValueError as exc:  # invalid UTF-8, not JSON, a number no double holds
        raise MalformedAnswer(f"not JSON: {str(exc)[:200]}") from None


def load_object(body: bytes) -> dict[str, Any]:
    """A JSON object, as every DX and Opsgenie answer is; anything else is a bad answer."""
    document = loads(body)
    if not isinstance(document, dict):
        raise MalformedAnswer(f"JSON {type(document).__name__} where an object belongs")
    return document
