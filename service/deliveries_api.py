"""Deliveries for operators: what happened to an alert, why DX shows what it shows, retry.

``/api/v1/deliveries[/{reference_id}[/retry]]`` and ``/api/v1/deliveries/retry-failed``,
behind the same admin keys as the service-object API: the read-only application key may
read, only the full key may retry. An operator paged at night answers everything from
here (or the ``deliveries``/``retry`` commands, which call these routes) and never opens
the database.

Retrying a reference that is ``failed`` or ``pending`` makes it due now and wakes the
worker. A ``delivered`` or ``filtered`` reference has nothing to send: 409, so a script
retrying the wrong id hears about it instead of being told everything is fine.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.admin_route import (
    Handler,
    RateLimiter,
    admin_route,
    authenticated,
    count_from_zero,
    serve,
)
from service.auth import Access, AdminKeys
from service.backfill_api import BACKFILL_PATH, NDJSON
from service.delivery_views import detail, raw_event, summary
from service.errors import Conflict, NotFound, PayloadError
from service.store import Attempt, Delivery, Status, StoredEvent

log = logging.getLogger("service.deliveries_api")

PATH = "/api/v1/deliveries"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: How many attempts one ``GET /{reference_id}`` shows; enough for any night's story.
HISTORY_LIMIT = 200
#: Raw events per page of the detail (each cut to a preview): the answer stays bounded
#: however large the events; ``events_next`` pages back, ``/events/{id}`` shows one whole.
EVENTS_PAGE = 50
ROUTES = ("deliveries", "delivery", "delivery_event", "delivery_retry", "delivery_retry_failed")
#: The admin API's answers, counted from 0 for these routes and the backfill's.
STATUSES = ("200", "400", "403", "404", "405", "409", "413", "429", "500", "502", "503")


class Deliveries(Protocol):
    """The part of the store these routes need."""

    async def deliveries(
        self, *, status: Status | None, limit: int, after: str | None
    ) -> list[Delivery]: ...
    async def get(self, reference_id: str) -> Delivery | None: ...
    async def attempts(self, reference_id: str, *, limit: int) -> list[Attempt]: ...
    async def events(
        self, alert_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]: ...
    async def event(self, alert_id: str, event_id: int) -> StoredEvent | None: ...
    async def retry(self, reference_id: str, *, now: float) -> bool: ...
    async def retry_all_failed(self, *, now: float) -> int: ...


class DeliveriesAPI:
    """The deliveries routes; ``wake`` tells the worker after every successful retry,
    ``requests`` counts every answer, ``limiter`` holds the callers' windows (shared with
    the other admin APIs: one budget per API key)."""

    def __init__(
        self,
        *,
        deliveries: Deliveries,
        wake: Callable[[], None],
        requests: Counter,
        keys: AdminKeys,
        limiter: RateLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = deliveries
        self._wake = wake
        self._requests = requests
        self._keys = keys
        self._limiter = limiter
        self._clock = clock
        count_from_zero(requests, ROUTES, STATUSES)

    def routes(self) -> list[Route]:
        # ``retry-failed`` before ``{reference_id}``: a GET of that name still reaches ``show``.
        table = (
            (PATH, self.index, "deliveries"),
            (PATH + "/retry-failed", self.retry_failed, "delivery_retry_failed"),
            (PATH + "/{reference_id}", self.show, "delivery"),
            (PATH + "/{reference_id}/events/{event_id}", self.event, "delivery_event"),
            (PATH + "/{reference_id}/retry", self.retry, "delivery_retry"),
        )
        return [
            admin_route(path, endpoint, route=route, requests=self._requests)
            for path, endpoint, route in table
        ]

    async def index(self, request: Request) -> Response:
        return await self._serve(request, "deliveries", {"GET": self._list, "HEAD": self._list})

    async def show(self, request: Request) -> Response:
        return await self._serve(request, "delivery", {"GET": self._show, "HEAD": self._show})

    async def event(self, request: Request) -> Response:
        handlers = {"GET": self._event, "HEAD": self._event}
        return await self._serve(request, "delivery_event", handlers)

    async def retry(self, request: Request) -> Response:
        return await self._serve(request, "delivery_retry", {"POST": self._retry})

    async def retry_failed(self, request: Request) -> Response:
        return await self._serve(request, "delivery_retry_failed", {"POST": self._retry_failed})

    async def _serve(
        self, request: Request, route: str, handlers: Mapping[str, Handler]
    ) -> Response:
        limited = authenticated(self._keys, self._limiter, handlers)
        return await serve(request, limited, route=route, log=log)

    async def _list(self, request: Request, access: Access) -> Response:
        status = _status(request.query_params.get("status"))
        limit = _limit(request.query_params.get("limit"))
        after = _after(request.query_params.get("cursor"), request.query_params.get("after"))
        # One more than asked says whether a next page exists without a count query.
        found = await self._store.deliveries(status=status, limit=limit + 1, after=after)
        page = found[:limit]
        more = len(found) > limit
        return JSONResponse(
            {
                "data": [summary(d) for d in page],
                "next": encode_cursor(page[-1].reference_id) if more else None,
            }
        )

    async def _show(self, request: Request, access: Access) -> Response:
        store = self._store
        reference_id = request.path_params["reference_id"]
        delivery = await store.get(reference_id)
        if delivery is None:
            raise NotFound(unknown(reference_id))
        before = _events_before(request.query_params.get("events_cursor"))
        attempts = await store.attempts(delivery.reference_id, limit=HISTORY_LIMIT)
        found = await store.events(delivery.alert_id, limit=EVENTS_PAGE + 1, before=before)
        events = found[-EVENTS_PAGE:]
        shown = detail(delivery, attempts, events)
        older = len(found) > EVENTS_PAGE
        shown["events_next"] = encode_cursor(str(events[0].id)) if older else None
        return JSONResponse({"data": shown})

    async def _event(self, request: Request, access: Access) -> Response:
        """One raw event whole, as stored (parsed when it is strict JSON)."""
        reference_id = request.path_params["reference_id"]
        delivery = await self._store.get(reference_id)
        if delivery is None:
            raise NotFound(unknown(reference_id))
        text = request.path_params["event_id"]
        event_id = _event_id(text)
        found = None if event_id is None else await self._store.event(delivery.alert_id, event_id)
        if found is None:
            raise NotFound(f"no event {text} of delivery {reference_id}")
        return JSONResponse({"data": raw_event(found, preview=False)})

    async def _retry(self, request: Request, access: Access) -> Response:
        store = self._store
        reference_id = request.path_params["reference_id"]
        if not await store.retry(reference_id, now=self._clock()):
            delivery = await store.get(reference_id)
            if delivery is None:
                raise NotFound(unknown(reference_id))
            log.info(
                "delivery retry refused",
                extra={"reference_id": reference_id, "outcome": "conflict"},
            )
            raise Conflict(f"Nothing to retry: the delivery is {delivery.status}")
        self._wake()
        log.info("delivery retry requested", extra={"reference_id": reference_id, "outcome": "ok"})
        retried = await store.get(reference_id)
        assert retried is not None  # alert rows are never deleted
        return JSONResponse({"data": summary(retried)})

    async def _retry_failed(self, request: Request, access: Access) -> Response:
        count = await self._store.retry_all_failed(now=self._clock())
        if count:
            self._wake()
        log.info("retry of all failed deliveries requested", extra={"retried": count})
        return JSONResponse({"retried": count})


def unknown(reference_id: str) -> str:
    """A 404 that names what is missing: a bare "Not Found" is also what a wrong path or
    a wrong ``--url`` gets, and an operator must tell the two apart."""
    return f"no delivery {reference_id}"


def encode_cursor(reference_id: str) -> str:
    """Opaque to clients, so the paging key may change without breaking them."""
    return base64.urlsafe_b64encode(reference_id.encode()).decode().rstrip("=")


def _after(cursor: str | None, after: str | None) -> str | None:
    """``cursor`` is what ``next`` returned; ``after`` is the same thing (an alias)."""
    return _decode(cursor if cursor is not None else after, "cursor")


def _decode(token: str | None, field: str) -> str | None:
    if token is None or token == "":
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise PayloadError(f"{field}: not a cursor this API returned", field=field) from None


def _events_before(cursor: str | None) -> int | None:
    """``events_cursor`` is what ``events_next`` returned: the oldest event id shown."""
    before = _decode(cursor, "events_cursor")
    if before is not None and _event_id(before) is None:
        raise PayloadError("events_cursor: not a cursor this API returned", field="events_cursor")
    return _event_id(before)


def _event_id(text: str | None) -> int | None:
    """An event id as ids are (digits), or ``None``."""
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def _status(text: str | None) -> Status | None:
    if text is None or text == "":
        return None
    try:
        return Status(text)
    except ValueError:
        allowed = "|".join(s.value for s in Status)
        raise PayloadError(f"status: must be one of {allowed}", field="status") from None


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise PayloadError(f"limit: must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return limit


def openapi_paths() -> dict[str, Any]:
    """The routes above and the backfill's (``backfill_api``) for ``/openapi.json``."""
    security: list[dict[str, list[str]]] = [{"apiKeyAuth": [], "appKeyAuth": []}]
    errors = {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}

    def responses(codes: dict[str, str] | None = None) -> dict[str, Any]:
        answers: dict[str, Any] = {"200": {"description": "OK"}}
        refusals = {"403": "Missing or wrong admin keys, or a read-only key on a write"}
        for code, text in {**refusals, **(codes or {})}.items():
            answers[code] = {"description": text, "content": errors}
        return answers

    reference = {
        "name": "reference_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    event = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    events_cursor = {"name": "events_cursor", "in": "query", "schema": {"type": "string"}}
    query = [
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(Status)}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": MAX_LIMIT}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    ]
    common = {"tags": ["Deliveries"], "security": security}
    return {
        PATH: {
            "get": {
                **common,
                "summary": "List deliveries ({data, next}; pass next as cursor)",
                "parameters": query,
                "responses": responses({"400": "Bad status, limit or cursor"}),
            }
        },
        BACKFILL_PATH: {
            "post": {
                **common,
                "summary": "Fold a service object's alerts since a time into the outbox",
                "description": (
                    'Body: {"service": NAME, "since": "7d", "dry_run": false}. With'
                    f" Accept: {NDJSON} the 200 streams one line per page"
                    ' ({"progress": {page, alerts_seen, counts, retries}}), then'
                    ' {"data": report}, or {"errors": [...], "status": 502} if Opsgenie'
                    " fails after streaming began."
                ),
                "responses": {
                    **responses(
                        {
                            "400": "Bad body, or since further back than 365d",
                            "404": "Unknown service object",
                            "409": (
                                "The service object has no Opsgenie API key, or"
                                " RELAY_SECRET_KEY no longer decrypts it"
                            ),
                            "502": "Opsgenie did not list the alerts",
                        }
                    ),
                    "200": {
                        "description": "The report, or (NDJSON) progress lines then the report",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            NDJSON: {"schema": {"type": "string"}},
                        },
                    },
                },
            }
        },
        PATH + "/retry-failed": {
            "post": {**common, "summary": "Retry every failed delivery", "responses": responses()}
        },
        PATH + "/{reference_id}": {
            "parameters": [reference],
            "get": {
                **common,
                "summary": "One delivery: state, DX request and answer, attempts, raw events",
                "description": (
                    f"The latest {EVENTS_PAGE} raw events, each cut to a preview"
                    " (truncated, raw_bytes, raw_format json or text); events_next, passed"
                    " as events_cursor, pages to older ones."
                ),
                "parameters": [events_cursor],
                "responses": responses({"400": "Bad events_cursor", "404": "Unknown reference id"}),
            },
        },
        PATH + "/{reference_id}/events/{event_id}": {
            "parameters": [reference, event],
            "get": {
                **common,
                "summary": "One raw event whole (raw parsed if it is JSON, else its text)",
                "responses": responses({"404": "Unknown reference id or event id"}),
            },
        },
        PATH + "/{reference_id}/retry": {
            "parameters": [reference],
            "post": {
                **common,
                "summary": "Make a failed or pending delivery due now",
                "responses": responses(
                    {
                        "404": "Unknown reference id",
                        "409": "Delivered or filtered: nothing to retry",
                    }
                ),
            },
        },
    }
