"""A fake Jira Service Management Operations: a site's ``tenant_info`` and the alerts REST API.

One app answers both hosts the relay asks (``<site>.atlassian.net`` for the cloudId,
``api.atlassian.com`` for alerts): tests route both names to it (an injected resolver, or
an in-process transport) and ``requests`` records the host of each. Like the real API it
wants HTTP Basic with an Atlassian account's email and API token (a GenieKey is refused),
answers lists as ``{values, links.next, count}``, refuses ``offset + size`` of 20,000 or
more (400), and can answer 429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.opsgenie import NOT_LISTED, JSONObject, _created_bounds, _created_ms, api_alert

#: ``offset + size`` must be lower than this (Atlassian: "lower than 20K"); a fake's
#: ``list_window`` by default.
LIST_WINDOW = 20_000
CLOUD_ID = "2f0c9a4e-5b1d-4c3e-9a8f-0123456789ab"


def jsm_alert(alert_id: str, *, created_ms: int, **fields: Any) -> JSONObject:
    """An alert as JSM's ``GET /v1/alerts/{id}`` answers: Opsgenie's fields, its custom
    pairs as ``extraProperties``, responders but no ``teams``."""
    alert = api_alert(alert_id, created_ms=created_ms, **fields)
    alert["extraProperties"] = alert.pop("details")
    del alert["teams"]
    return alert


@dataclass(frozen=True, slots=True)
class SeenRequest:
    host: str
    path: str
    query: dict[str, str]
    authorization: str | None


class FakeJsm:
    """One JSM site's alerts. Thread-safe: tests read it while uvicorn serves."""

    def __init__(
        self,
        email: str = "ops@acme.example",
        token: str = "atlassian-api-token-0001",
        cloud_id: str = CLOUD_ID,
        list_window: int = LIST_WINDOW,
    ) -> None:
        self.credentials = f"{email}:{token}"
        self.cloud_id = cloud_id
        #: ``offset + size`` must be lower than this (400 otherwise).
        self.list_window = list_window
        self.alerts: dict[str, JSONObject] = {}
        self.requests: list[SeenRequest] = []
        self._failures: list[tuple[int, dict[str, str], str | None]] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/_edge/tenant_info", self._tenant_info, methods=["GET"]),
                Route("/jsm/ops/api/{cloud_id}/v1/alerts", self._list, methods=["GET"]),
                Route("/jsm/ops/api/{cloud_id}/v1/alerts/{alert_id}", self._get, methods=["GET"]),
            ]
        )

    @property
    def authorization(self) -> str:
        return "Basic " + base64.b64encode(self.credentials.encode()).decode()

    def add(self, alert: JSONObject) -> None:
        with self._lock:
            self.alerts[alert["id"]] = alert

    def fail_next(self, n: int, status: int = 503, *, path: str | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, {}, path)] * n)

    def rate_limit_next(self, n: int, retry_after: float = 1.0, *, path: str | None = None) -> None:
        """The next ``n`` requests answer 429 with ``Retry-After``, as Atlassian's APIs do."""
        with self._lock:
            self._failures.extend([(429, {"Retry-After": str(retry_after)}, path)] * n)

    def seen(self, suffix: str) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    def _record(self, request: Request) -> JSONResponse | None:
        authorization = request.headers.get("authorization")
        with self._lock:
            self.requests.append(
                SeenRequest(
                    request.url.hostname or "",
                    request.url.path,
                    dict(request.query_params),
                    authorization,
                )
            )
            failure = next((f for f in self._failures if f[2] in (None, request.url.path)), None)
            if failure is not None:
                self._failures.remove(failure)
        if failure is not None:
            status, headers, _ = failure
            return _error(status, "Too many requests" if status == 429 else "oops", headers)
        return None

    def _begin(self, request: Request) -> JSONResponse | None:
        if (refused := self._record(request)) is not None:
            return refused
        if request.headers.get("authorization") != self.authorization:
            return _error(401, "Client must be authenticated to access this resource.")
        if request.path_params["cloud_id"] != self.cloud_id:
            return _error(404, "Not Found")
        return None

    async def _tenant_info(self, request: Request) -> JSONResponse:
        if (refused := self._record(request)) is not None:
            return refused
        return JSONResponse({"cloudId": self.cloud_id})

    async def _get(self, request: Request) -> JSONResponse:
        if (refused := self._begin(request)) is not None:
            return refused
        with self._lock:
            alert = self.alerts.get(request.path_params["alert_id"])
        if alert is None:
            return _error(404, "Alert does not exist")
        return JSONResponse(alert)

    async def _list(self, request: Request) -> JSONResponse:
        if (refused := self._begin(request)) is not None:
            return refused
        try:
            size = int(request.query_params.get("size", "20"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return _error(400, "size and offset must be integers")
        if not 0 < size <= 100 or offset < 0:
            return _error(400, "size must be 1..100 and offset >= 0")
        if offset + size >= self.list_window:
            return _error(400, "Sum of offset and size should be lower than 20K")
        bounds = _created_bounds(request.query_params.get("query", ""))
        if bounds is None or request.query_params.get("sort", "createdAt") != "createdAt":
            return _error(400, "only createdAt terms and sort=createdAt are faked")
        low, high = bounds
        with self._lock:
            everything = sorted(
                (a for a in self.alerts.values() if low < _created_ms(a) < high),
                key=lambda a: (a["createdAt"], a["id"]),
                reverse=request.query_params.get("order", "desc") == "desc",
            )
        hidden = {*NOT_LISTED, "extraProperties"}
        page = [
            {key: value for key, value in alert.items() if key not in hidden}
            for alert in everything[offset : offset + size]
        ]
        links: JSONObject = {}
        if offset + size < len(everything):
            links["next"] = f"/v1/alerts?offset={offset + size}&size={size}"
        return JSONResponse({"values": page, "links": links, "count": len(everything)})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)
