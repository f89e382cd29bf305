"""``POST /api/v1/backfill``: fold a service object's recent alerts into the outbox.

Behind the admin keys (only the full key may run one). The answer is the report, or with
``Accept: application/x-ndjson`` a progress line per page and then the report, which the
``backfill`` command draws as a progress bar.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from service import characters
from service.admin_route import RateLimiter, admin_route, authenticated, count_from_zero, serve
from service.auth import Access, AdminKeys
from service.backfill import Backfill, Target, since_seconds
from service.backfill_report import Progress
from service.errors import PayloadError, RelayError
from service.http_errors import error_line
from service.request_body import read_json_object

# The name operators' log queries have known the backfill route's lines by.
log = logging.getLogger("service.deliveries_api")

BACKFILL_PATH = "/api/v1/backfill"
#: ``Accept`` of a backfill that wants a progress line per page (the CLI's progress bar).
NDJSON = "application/x-ndjson"
ROUTE = "backfill"
#: The members of a backfill's body.
BACKFILL_FIELDS = ("service", "since", "dry_run")
#: Counted from 0: the deliveries routes' statuses, as when this route was one of them.
STATUSES = ("200", "400", "403", "404", "405", "409", "413", "429", "500", "502", "503")


class BackfillAPI:
    """The backfill route; ``requests`` counts every answer, ``limiter`` holds the callers'
    windows (shared with the other admin APIs)."""

    def __init__(
        self,
        *,
        backfill: Backfill,
        requests: Counter,
        keys: AdminKeys,
        limiter: RateLimiter,
        max_body_bytes: int,
    ) -> None:
        self._backfill = backfill
        self._requests = requests
        self._keys = keys
        self._limiter = limiter
        self._max_body_bytes = max_body_bytes
        count_from_zero(requests, (ROUTE,), STATUSES)

    def routes(self) -> list[Route]:
        return [admin_route(BACKFILL_PATH, self.run, route=ROUTE, requests=self._requests)]

    async def run(self, request: Request) -> Response:
        handlers = authenticated(self._keys, self._limiter, {"POST": self._run})
        return await serve(request, handlers, route=ROUTE, log=log)

    async def _run(self, request: Request, access: Access) -> Response:
        document = await read_json_object(request, self._max_body_bytes)
        service, since, dry_run = backfill_request(document)
        if NDJSON not in request.headers.get("accept", ""):
            report = await self._backfill.backfill(
                service=service, since_seconds=since, dry_run=dry_run
            )
            return JSONResponse({"data": report.as_json()})
        # Resolved before the 200 is sent, so an unknown service is still a plain 404.
        target = await self._backfill.resolve(service)
        lines = self._lines(target, since_seconds=since, dry_run=dry_run)
        return StreamingResponse(lines, media_type=NDJSON)

    async def _lines(
        self, target: Target, *, since_seconds: float, dry_run: bool
    ) -> AsyncIterator[str]:
        """``{"progress": ...}`` per page, then ``{"data": report}`` or ``{"errors": [...]}``:
        once the 200 is sent, a failure can only be told in the last line."""
        steps = self._backfill.backfill_steps(target, since_seconds=since_seconds, dry_run=dry_run)
        try:
            async for step in steps:
                key = "progress" if isinstance(step, Progress) else "data"
                yield json.dumps({key: step.as_json()}) + "\n"
        except RelayError as exc:
            log.error("backfill failed", extra={"route": ROUTE, "error": exc.message})
            yield error_line(exc)


def backfill_request(document: dict[str, Any]) -> tuple[str, float, bool]:
    """``{"service": NAME, "since": "7d" or seconds, "dry_run": false}``; another member is
    more likely a typo (``dryRun``) than something to ignore, and a typo'd dry run runs."""
    if any(member not in BACKFILL_FIELDS for member in document):
        allowed = ", ".join(BACKFILL_FIELDS)
        raise PayloadError(f"body: only {allowed} are allowed", field="body")
    service = document.get("service")
    if not isinstance(service, str) or characters.blank(service):
        raise PayloadError("service: required, a service object name or id", field="service")
    seconds = since_seconds(document.get("since"))
    dry_run = document.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise PayloadError("dry_run: must be a boolean", field="dry_run")
    return service.strip(), seconds, dry_run
