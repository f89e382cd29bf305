"""Request bodies at the HTTP edges: read within a size limit, and parsed as one JSON object.

Every route that takes a body (webhooks, service objects, backfill) reads it the same
way, so the 413 and the 400 messages are the same everywhere.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import Receive

from service import strict_json
from service.errors import BodyTooLarge, ClientGone, PayloadError


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ``BodyTooLarge`` as soon as it is known to exceed ``limit``."""
    return await receive_body(request.receive, request.headers.get("content-length"), limit)


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body from the ASGI ``receive`` channel, given the ``Content-Length`` header's
    value; ``BodyTooLarge`` as soon as it is known to exceed ``limit``, ``ClientGone`` when
    the client leaves first (or the server's body deadline cut it off)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone("the client went away before its body arrived")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds {limit} bytes")
        if not message.get("more_body", False):
            if not chunks:  # the whole body in one message, as a webhook's nearly always is
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or ``PayloadError`` (400) saying why not."""
    body = await read_body(request, limit)
    try:
        document = strict_json.loads(body)
    except ValueError:
        raise PayloadError("body: not valid JSON", field="body") from None
    if not isinstance(document, dict):
        raise PayloadError("body: must be a JSON object", field="body")
    return document
