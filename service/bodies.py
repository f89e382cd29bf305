"""Requests at the HTTP edges: bodies read within a size limit and parsed as one JSON
object, which methods a route lets through to its endpoint, and the 405 for the others.

Every route that takes a body (webhooks, service objects, backfill) reads it the same
way, so the 413 and the 400 messages are the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.errors import BodyTooLarge, PayloadError

#: Passed as a route's ``methods`` so every request reaches its endpoint, which answers a
#: method it does not take with a 405 itself (and counts it; Starlette's own 405 is not).
EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def method_not_allowed(allowed: Iterable[str]) -> JSONResponse:
    """The 405 such an endpoint answers, in the same shape as every other error."""
    return JSONResponse(
        {"errors": ["Method Not Allowed"]}, status_code=405, headers={"Allow": ", ".join(allowed)}
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ``BodyTooLarge`` as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or ``PayloadError`` (400) saying why not."""
    body = await read_body(request, limit)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("body: not valid JSON", field="body") from None
    if not isinstance(document, dict):
        raise PayloadError("body: must be a JSON object", field="body")
    return document
