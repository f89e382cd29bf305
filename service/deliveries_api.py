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
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.admin_route import Handler, admin_route, authenticated, count_from_zero, serve
from service.auth import Access, AdminKeys
from service.backfill_api import BACKFILL_PATH, NDJSON
from service.errors import Conflict, NotFound, PayloadError
from service.store import Attempt, Delivery, Status, StoredEvent
from service.translate import AlertState, iso8601

log = logging.getLogger("service.deliveries_api")

PATH = "/api/v1/deliveries"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: How much history one ``GET /{reference_id}`` shows; enough for any night's story.
HISTORY_LIMIT = 200
ROUTES = ("deliveries", "delivery", "delivery_retry", "delivery_retry_failed")
#: The admin API's answers, counted from 0 for these routes and the backfill's.
STATUSES = ("200", "400", "403", "404", "405", "409", "413", "500", "502", "503")


class Deliveries(Protocol):
    """The part of the store these routes need."""

    async def deliveries(
        self, *, status: Status | None, limit: int, after: str | None
    ) -> list[Delivery]: ...
    async def get(self, reference_id: str) -> Delivery | None: ...
    async def attempts(self, reference_id: str, *, limit: int) -> list[Attempt]: ...
    async def events(self, alert_id: str, *, limit: int) -> list[StoredEvent]: ...
    async def retry(self, reference_id: str, *, now: float) -> bool: ...
    async def retry_all_failed(self, *, now: float) -> int: ...


class DeliveriesAPI:
    """The four deliveries routes; ``wake`` tells the worker after every successful retry,
    ``requests`` counts every answer."""

    def __init__(
        self,
        *,
        deliveries: Deliveries,
        wake: Callable[[], None],
        requests: Counter,
        keys: AdminKeys,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = deliveries
        self._wake = wake
        self._requests = requests
        self._keys = keys
        self._clock = clock
        count_from_zero(requests, ROUTES, STATUSES)

    def routes(self) -> list[Route]:
        # ``retry-failed`` before ``{reference_id}``: a GET of that name still reaches ``show``.
        table = (
            (PATH, self.index, "deliveries"),
            (PATH + "/retry-failed", self.retry_failed, "delivery_retry_failed"),
            (PATH + "/{reference_id}", self.show, "delivery"),
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

    async def retry(self, request: Request) -> Response:
        return await self._serve(request, "delivery_retry", {"POST": self._retry})

    async def retry_failed(self, request: Request) -> Response:
        return await self._serve(request, "delivery_retry_failed", {"POST": self._retry_failed})

    async def _serve(
        self, request: Request, route: str, handlers: Mapping[str, Handler]
    ) -> Response:
        return await serve(request, authenticated(self._keys, handlers), route=route, log=log)

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
        attempts = await store.attempts(delivery.reference_id, limit=HISTORY_LIMIT)
        events = await store.events(delivery.alert_id, limit=HISTORY_LIMIT)
        return JSONResponse({"data": detail(delivery, attempts, events)})

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
    token = cursor if cursor is not None else after
    if token is None or token == "":
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise PayloadError("cursor: not a cursor this API returned", field="cursor") from None


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


def _time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ns(ns: int | None) -> str | None:
    return None if ns is None else iso8601(ns)


def alert_summary(state: AlertState) -> dict[str, Any]:
    """What the relay believes about the alert: the facts DX's incident is built from."""
    return {
        "alert_id": state.alert_id,
        "message": state.message.value if state.message else None,
        "priority": state.priority.value if state.priority else None,
        "alias": state.alias.value if state.alias else None,
        "entity": state.entity.value if state.entity else None,
        "source": state.source.value if state.source else None,
        "tiny_id": state.tiny_id.value if state.tiny_id else None,
        "owner": state.owner.value if state.owner else None,
        "acknowledged": state.acknowledged.value if state.acknowledged else None,
        "created_at": _ns(state.created_at_ns),
        "closed_at": _ns(state.closed_at_ns),
        "deleted": state.deleted,
        "tags": list(state.tags.members()) if state.tags.known else None,
        "teams": list(state.teams.members()) if state.teams.known else None,
    }


def summary(delivery: Delivery) -> dict[str, Any]:
    return {
        "reference_id": delivery.reference_id,
        "alert_id": delivery.alert_id,
        "service_id": delivery.service_id,
        "status": delivery.status.value,
        "version": delivery.version,
        "delivered_version": delivery.delivered_version,
        "attempts": delivery.attempts,
        "next_attempt_at": _time(delivery.next_attempt_at),
        "last_error_code": delivery.last_error_code,
        "last_error": delivery.last_error,
        "updated_at": _time(delivery.updated_at),
        "message": (
            delivery.state.message.value if delivery.state and delivery.state.message else None
        ),
    }


def _json_or_text(text: str | None) -> Any:
    """DX's answer or a raw event as JSON when it parses, else as the text received."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def detail(
    delivery: Delivery, attempts: list[Attempt], events: list[StoredEvent]
) -> dict[str, Any]:
    return {
        **summary(delivery),
        "alert": alert_summary(delivery.state) if delivery.state else None,
        "last_request": delivery.last_request,
        "last_response": _json_or_text(delivery.last_response),
        "history": [
            {
                "at": _time(a.at),
                "version": a.version,
                "outcome": a.outcome,
                "http_status": a.http_status,
                "error_code": a.error_code,
                "detail": a.detail,
                "duration_seconds": a.duration_seconds,
            }
            for a in attempts
        ],
        "events": [
            {"action": e.action, "received_at": _time(e.received_at), "raw": _json_or_text(e.raw)}
            for e in events
        ],
    }


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
                "responses": responses({"404": "Unknown reference id"}),
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
