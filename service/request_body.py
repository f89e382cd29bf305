"""Request bodies at the HTTP edges: read within a size limit, and parsed as one JSON object.

Every route that takes a body (webhooks, service objects, backfill) reads it the same
way, so the 413 and the 400 messages are the same everywhere.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from service import strict_json
from service.errors import BodyTooLarge, ClientGone, PayloadError


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ``BodyTooLarge`` as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut off by the server's body deadline
        raise ClientGone("the client went away before its body arrived") from None
    return b"".join(chunks)


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
