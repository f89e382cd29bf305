"""A fake Opsgenie REST API: the Alert and Account endpoints the relay reads.

It enforces ``Authorization: GenieKey <key>`` like the real one, answers in Opsgenie's
shape (ISO timestamps, ``data``, ``paging.next``), records every request, and has
switches for the failures a client must survive: 5xx, 429 as Opsgenie sends it
(``X-RateLimit-*`` headers, no ``Retry-After``), and a team key's 403 on the account.
Serve it in-process (``httpx.ASGITransport``) or on a socket (``UvicornThread``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

JSONObject = dict[str, Any]
#: The part of Opsgenie's search syntax the relay uses: ``createdAt>MS [AND createdAt<MS]``.
CREATED_TERM = re.compile(r"^createdAt\s*([<>])\s*(\d+)$")
#: What ``GET /v2/alerts`` leaves out of each alert that ``GET /v2/alerts/{id}`` has.
NOT_LISTED = frozenset({"details", "description", "entity", "actions", "teams"})
#: Opsgenie answers 422 when ``offset + limit`` passes this: a listing sees 20,000 alerts
#: (a fake's ``list_window`` by default).
LIST_WINDOW = 20_000


def iso(ms: int) -> str:
    """Epoch ms as the Alert API writes times: ``2026-11-23T09:00:00.123Z``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_alert(
    alert_id: str,
    *,
    created_ms: int,
    updated_ms: int | None = None,
    message: str = "disk full on db-1",
    priority: str = "P2",
    tags: list[str] | None = None,
    status: str = "open",
    close_after_ms: int | None = None,
    **extra: Any,
) -> JSONObject:
    """An alert as ``GET /v2/alerts/{id}`` returns it in ``data``."""
    alert: JSONObject = {
        "id": alert_id,
        "tinyId": "42",
        "alias": f"alias-{alert_id}",
        "message": message,
        "status": status,
        "acknowledged": False,
        "isSeen": True,
        "tags": tags if tags is not None else ["service:payments", "env:prod"],
        "snoozed": False,
        "count": 1,
        "lastOccurredAt": iso(created_ms),
        "createdAt": iso(created_ms),
        "updatedAt": iso(updated_ms if updated_ms is not None else created_ms),
        "source": "datadog",
        "owner": "",
        "priority": priority,
        "responders": [{"type": "team", "id": "team-1"}],
        "teams": [{"id": "team-1"}],
        "integration": {"id": "int-1", "name": "Datadog", "type": "Datadog"},
        "report": {"ackTime": 0, "closeTime": close_after_ms or 0, "acknowledgedBy": ""},
        "actions": [],
        "entity": "db-1",
        "description": "",
        "details": {"service": "payments"},
    }
    if close_after_ms is None:
        del alert["report"]["closeTime"]
    alert.update(extra)
    return alert


@dataclass(frozen=True, slots=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


class FakeOpsgenie:
    """An in-memory Opsgenie account. Thread-safe: tests read it while uvicorn serves."""

    def __init__(
        self, api_key: str = "genie-key-123", account: str = "acme", list_window: int = LIST_WINDOW
    ) -> None:
        self.api_key = api_key
        self.account = account
        #: How far ``offset + limit`` may reach (422 past it): small in tests of paging.
        self.list_window = list_window
        self.alerts: dict[str, JSONObject] = {}
        self.requests: list[SeenRequest] = []
        #: A team integration's key: it reads alerts, but ``GET /v2/account`` answers 403.
        self.team_key = False
        #: Queued ``(status, headers, path)``; a ``path`` failure waits for that path.
        self._failures: list[tuple[int, dict[str, str], str | None]] = []
        #: ``throttle``: every request before this ``time.monotonic()`` answers 429.
        self._throttled_until = 0.0
        self._throttle_period = 1
        #: Awaited with the offset before each list page is answered (not for failures):
        #: lets a test change the account, or post webhooks, between pages.
        self.before_list: Callable[[int], Awaitable[None]] | None = None
        #: Awaited with the alert id before ``GET /v2/alerts/{id}`` reads the alert (not
        #: for failures): lets a test race a webhook against a read in flight.
        self.before_alert: Callable[[str], Awaitable[None]] | None = None
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v2/account", self._account, methods=["GET"]),
                Route("/v2/alerts", self._list, methods=["GET"]),
                Route("/v2/alerts/{alert_id}", self._alert, methods=["GET"]),
            ]
        )

    def add(self, alert: JSONObject) -> None:
        with self._lock:
            self.alerts[alert["id"]] = alert

    def fail_next(self, n: int, status: int = 503, *, path: str | None = None) -> None:
        """The next ``n`` requests (to ``path`` only, if given) answer ``status`` (a 5xx)."""
        with self._lock:
            self._failures.extend([(status, {}, path)] * n)

    def rate_limit_next(
        self,
        n: int,
        period: int = 1,
        *,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next ``n`` requests (to ``path`` only, if given) answer 429 as Opsgenie does,
        naming the ``period`` (1 or 60 s) of the window it throttled. ``retry_after``: a
        429 with only ``Retry-After`` instead, for tests that want an exact wait (Opsgenie
        never sends one; a proxy in front of it could)."""
        headers = _throttled(period) if retry_after is None else {"Retry-After": str(retry_after)}
        with self._lock:
            self._failures.extend([(429, headers, path)] * n)

    def throttle(self, period: int = 1) -> None:
        """Empty the key's rate-limit bucket for one window: every request in the next
        ``period`` seconds answers 429 as Opsgenie does, whatever it asks for."""
        with self._lock:
            self._throttled_until = time.monotonic() + period
            self._throttle_period = period

    def seen(self, path: str) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _begin(self, request: Request) -> JSONResponse | None:
        """Record the request; answer auth failures and queued failures."""
        authorization = request.headers.get("authorization")
        with self._lock:
            self.requests.append(
                SeenRequest(
                    request.method, request.url.path, dict(request.query_params), authorization
                )
            )
            failure = next((f for f in self._failures if f[2] in (None, request.url.path)), None)
            if failure is not None:
                self._failures.remove(failure)
            throttled = time.monotonic() < self._throttled_until
        if authorization != f"GenieKey {self.api_key}":
            return _error(401, "Could not authenticate")
        if failure is not None:
            status, headers, _ = failure
            return _error(status, "TooManyRequests" if status == 429 else "Server error", headers)
        if throttled:
            return _error(429, "TooManyRequests", _throttled(self._throttle_period))
        return None

    async def _account(self, request: Request) -> JSONResponse:
        if (refused := self._begin(request)) is not None:
            return refused
        if self.team_key:
            return _error(403, "You are not authorized for this operation")
        return _ok({"name": self.account, "userCount": 12, "plan": {"name": "Enterprise"}})

    async def _alert(self, request: Request) -> JSONResponse:
        if (refused := self._begin(request)) is not None:
            return refused
        if request.query_params.get("identifierType", "id") != "id":
            return _error(422, "only identifierType=id is faked")
        if self.before_alert is not None:
            await self.before_alert(request.path_params["alert_id"])
        with self._lock:
            alert = self.alerts.get(request.path_params["alert_id"])
        if alert is None:
            return _error(404, "Alert with id does not exist")
        return _ok(alert)

    async def _list(self, request: Request) -> JSONResponse:
        if (refused := self._begin(request)) is not None:
            return refused
        try:
            limit = int(request.query_params.get("limit", "20"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return _error(422, "limit and offset must be integers")
        if not 0 < limit <= 100 or offset < 0:
            return _error(422, "limit must be 1..100 and offset >= 0")
        if offset + limit > self.list_window:
            return _error(422, f"offset + limit must be at most {self.list_window}")
        if request.query_params.get("sort", "createdAt") != "createdAt":
            return _error(422, "only sort=createdAt is faked")
        bounds = _created_bounds(request.query_params.get("query", ""))
        if bounds is None:
            return _error(422, "only createdAt>MS and createdAt<MS terms are faked")
        if self.before_list is not None:
            await self.before_list(offset)
        low, high = bounds
        with self._lock:
            everything = sorted(
                (a for a in self.alerts.values() if low < _created_ms(a) < high),
                key=lambda a: (a["createdAt"], a["id"]),
                reverse=request.query_params.get("order", "desc") == "desc",
            )
        # Opsgenie lists reduced alerts (its SDKs' BaseAlert, ListAlertResult): the whole
        # alert, with details, entity and teams, only comes from GET /v2/alerts/{id}.
        page = [
            {key: value for key, value in alert.items() if key not in NOT_LISTED}
            for alert in everything[offset : offset + limit]
        ]
        paging: JSONObject = {"first": str(request.url.include_query_params(offset=0))}
        if offset + limit < len(everything):
            paging["next"] = str(request.url.include_query_params(offset=offset + limit))
        return JSONResponse({"data": page, "paging": paging, "took": 0.01, "requestId": "r"})


def _created_bounds(query: str) -> tuple[int, int] | None:
    """``(after, before)`` epoch ms of an ``AND`` of createdAt terms; ``None``: unfaked."""
    low, high = -1, 2**63
    for term in filter(None, (t.strip() for t in query.split(" AND "))):
        match = CREATED_TERM.match(term)
        if match is None:
            return None
        if match[1] == ">":
            low = max(low, int(match[2]))
        else:
            high = min(high, int(match[2]))
    return low, high


def _created_ms(alert: JSONObject) -> int:
    moment = datetime.fromisoformat(alert["createdAt"].replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def _throttled(period: int) -> dict[str, str]:
    """Opsgenie's 429 headers (as its Go SDK's client tests show them): no ``Retry-After``;
    ``X-RateLimit-Period-In-Sec`` says which bucket, the per-second or the per-minute one."""
    return {
        "X-RateLimit-State": "THROTTLED",
        "X-RateLimit-Reason": "ACCOUNT",
        "X-RateLimit-Period-In-Sec": str(period),
    }


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"data": data, "took": 0.01, "requestId": "fake-request"})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"message": message, "took": 0.0, "requestId": "fake-request"},
        status_code=status,
        headers=headers,
    )
