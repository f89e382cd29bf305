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
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client import Counter
from starlette.convertors import PathConvertor, register_url_convertor
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


class ReferenceConvertor(PathConvertor):
    """Any text, line breaks too: Starlette's ``path`` (``.*``) stops at one, and a
    reference with a ``%0A`` would miss these routes for a bare 404 without the admin
    API's answer (its rate-limit headers, its count)."""

    regex = "[\\s\\S]*"


register_url_convertor("reference", ReferenceConvertor())


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
        # A reference id is the alert's, which may hold a "/": the server decodes %2F
        # before routing, so the id spans segments (``path``), and the routes with a
        # suffix come first (so an id ending in "/retry" or "/events/<n>" reads as that
        # route's; Opsgenie's ids are UUIDs). ``retry-failed`` before them all.
        table = (
            (PATH, self.index, "deliveries"),
            (PATH + "/retry-failed", self.retry_failed, "delivery_retry_failed"),
            (PATH + "/{reference_id:reference}/events/{event_id}", self.event, "delivery_event"),
            (PATH + "/{reference_id:reference}/retry", self.retry, "delivery_retry"),
            (PATH + "/{reference_id:reference}", self.show, "delivery"),
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
        shown["events_next"] = str(events[0].id) if older else None
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


#: What a ``cursor`` may be (``/openapi.json`` states it): unpadded base64url text.
CURSOR_PATTERN = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
#: What an ``events_cursor`` may be: an event id, as ``events_next`` gives it (``_event_id``).
EVENT_ID_PATTERN = "^[0-9]{1,18}$"


def _after(cursor: str | None, after: str | None) -> str | None:
    """``cursor`` is what ``next`` returned; ``after`` is the same thing (an alias)."""
    token = cursor if cursor is not None else after
    if token is None or token == "":
        return None
    if re.fullmatch(CURSOR_PATTERN, token) is None:
        raise PayloadError("cursor: not a cursor this API returned", field="cursor")
    padded = token + "=" * (-len(token) % 4)
    # Any such text is a place in the order, also one this API never returned: decoded
    # leniently, without the NUL PostgreSQL's text cannot hold.
    decoded = base64.urlsafe_b64decode(padded).decode("utf-8", "replace")
    return decoded.replace("\x00", "\ufffd")


def _events_before(cursor: str | None) -> int | None:
    """``events_cursor`` is what ``events_next`` returned: the oldest event id shown."""
    if cursor is None:
        return None
    before = _event_id(cursor)
    if before is None:
        raise PayloadError("events_cursor: not a cursor this API returned", field="events_cursor")
    return before


def _event_id(text: str | None) -> int | None:
    """An event id as ids are (digits), or ``None``."""
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def _status(text: str | None) -> Status | None:
    if text is None:
        return None
    try:
        return Status(text)
    except ValueError:
        allowed = "|".join(s.value for s in Status)
        raise PayloadError(f"status: must be one of {allowed}", field="status") from None


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    # Digits only: ``int`` also reads " 5", "+5" and "5_0", which no document promises.
    limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else 0
    if not 1 <= limit <= MAX_LIMIT:
        raise PayloadError(f"limit: must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return limit
