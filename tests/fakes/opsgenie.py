"""A fake Opsgenie REST API: the Alert and Account endpoints the relay reads.

It enforces ``Authorization: GenieKey <key>`` like the real one, answers in Opsgenie's
shape (ISO timestamps, ``data``, ``paging.next``), records every request, and has
switches for the failures a client must survive: 429 with ``Retry-After`` and 5xx.
Serve it in-process (``httpx.ASGITransport``) or on a socket (``UvicornThread``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

JSONObject = dict[str, Any]


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

    def __init__(self, api_key: str = "genie-key-123", account: str = "acme") -> None:
        self.api_key = api_key
        self.account = account
        self.alerts: dict[str, JSONObject] = {}
        self.requests: list[SeenRequest] = []
        self._failures: list[tuple[int, float | None]] = []
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

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` requests answer ``status`` (a 5xx)."""
        with self._lock:
            self._failures.extend([(status, None)] * n)

    def rate_limit_next(self, n: int, retry_after: float = 1.0) -> None:
        """The next ``n`` requests answer 429 with ``Retry-After``."""
        with self._lock:
            self._failures.extend([(429, retry_after)] * n)

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
            failure = self._failures.pop(0) if self._failures else None
        if authorization != f"GenieKey {self.api_key}":
            return _error(401, "Could not authenticate")
        if failure is not None:
            status, retry_after = failure
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            return _error(
                status, "Rate limit exceeded" if status == 429 else "Server error", headers
            )
        return None

    async def _account(self, request: Request) -> JSONResponse:
        if (refused := self._begin(request)) is not None:
            return refused
        return _ok({"name": self.account, "userCount": 12, "plan": {"name": "Enterprise"}})

    async def _alert(self, request: Request) -> JSONResponse:
        if (refused := self._begin(request)) is not None:
            return refused
        if request.query_params.get("identifierType", "id") != "id":
            return _error(422, "only identifierType=id is faked")
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
        with self._lock:
            everything = sorted(self.alerts.values(), key=lambda a: (a["createdAt"], a["id"]))
        page = everything[offset : offset + limit]
        paging: JSONObject = {"first": str(request.url.include_query_params(offset=0))}
        if offset + limit < len(everything):
            paging["next"] = str(request.url.include_query_params(offset=offset + limit))
        return JSONResponse({"data": page, "paging": paging, "took": 0.01, "requestId": "r"})


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"data": data, "took": 0.01, "requestId": "fake-request"})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"message": message, "took": 0.0, "requestId": "fake-request"},
        status_code=status,
        headers=headers,
    )
