"""A fake DX API that enforces the `incidents.upsert` contract (shared seed 004) to the letter.

The relay is only correct if DX accepts what it sends, so the fake is strict where DX's page
is strict (Bearer token, required `reference_id`/`started_at`, ISO-8601, metadata keys) and
models the omitted / null-or-[] / replace semantics of `services` and `metadata` exactly.
Switches make it misbehave on demand (5xx, 429 + Retry-After, permanent 422, HTTP 200 with
`ok: false`, latency, stalls), because those are the paths a relay gets wrong. It also keeps
what only DX can see when several relay replicas share its token: two requests for one
reference open at once (`.overlaps`), and when every request arrived (`arrivals`,
`most_within`), to check a rate limit that must hold in total, not per replica.

The same `FakeDX().app` runs in-process behind `httpx.ASGITransport` and on a real socket via
`tests.fakes.servers.UvicornThread`. Tests drive switches from their own thread while uvicorn
answers on its loop, so all shared state is guarded by one lock, never held across an await.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["FakeDX", "Overlap", "RecordedRequest", "most_within"]

JSONObject = dict[str, Any]

UPSERT_PATH = "/api/incidents.upsert"
DELETE_PATH = "/api/incidents.delete"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_METADATA_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TEXT_FIELDS = ("name", "priority", "source_url")
_SCALAR_FIELDS = ("name", "priority", "source_url", "started_at", "resolved_at")
_NOT_JSON = object()


@dataclass
class RecordedRequest:
    """One request as the fake saw it; `status`/`response` are filled in once answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, or None when it was not JSON (see `body`)
    received_at: float  # time.monotonic() on arrival, to measure gaps between retries
    client: str = ""  # "host:port" of the connection it came on
    status: int | None = None
    response: JSONObject | None = None
    answered_at: float | None = None  # time.monotonic() when the answer was ready


@dataclass(frozen=True, slots=True)
class Overlap:
    """A request for `reference_id` arrived while an earlier one for it was still open: the
    relay had two deliveries of one incident in flight, and DX may apply them in either order.
    Times are `time.monotonic()`; clients are "host:port" (which connection, so which relay)."""

    reference_id: str
    first_at: float
    second_at: float
    first_client: str
    second_client: str


def most_within(times: list[float], seconds: float) -> int:
    """The most of `times` that fall in any window `[t, t + seconds)`: a rate limit of r per
    second with a burst of b allows at most `b + r * seconds` in every such window."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


class _Refusal(Exception):
    """An error answer: DX's `{"ok": false, "error": code}` with an HTTP status."""

    def __init__(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.headers = headers or {}


def _retry_after(seconds: float) -> str:
    """Format Retry-After as DX-like servers do: "2" when whole, "0.5" otherwise."""
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are Python's JSON extensions, not JSON: DX cannot parse them."""
    raise ValueError(f"not JSON: {name}")


def _is_timestamp(value: object) -> bool:
    """True for a readable ISO-8601 string; a trailing "Z" means UTC."""
    if not isinstance(value, str):
        return False
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _validate_upsert(body: JSONObject) -> None:
    """Raise the first `_Refusal` DX's page implies for this body; return if it is valid."""
    reference_id = body.get("reference_id")
    if not isinstance(reference_id, str) or not reference_id:
        raise _Refusal(422, "invalid_arguments")
    if not _is_timestamp(body.get("started_at")):
        raise _Refusal(422, "invalid_timestamp")
    if body.get("resolved_at") is not None and not _is_timestamp(body["resolved_at"]):
        raise _Refusal(422, "invalid_timestamp")
    for field in _TEXT_FIELDS:
        if body.get(field) is not None and not isinstance(body[field], str):
            raise _Refusal(422, "invalid_arguments")
    metadata = body.get("metadata")
    if metadata is not None and metadata != []:
        if not isinstance(metadata, dict):
            raise _Refusal(422, "metadata_invalid")
        if not all(_METADATA_KEY.fullmatch(key) for key in metadata):
            raise _Refusal(422, "metadata_invalid")
    services = body.get("services")
    if services is not None and (
        not isinstance(services, list) or not all(map(_valid_service, services))
    ):
        raise _Refusal(422, "invalid_arguments")


def _valid_service(service: object) -> bool:
    if not isinstance(service, dict):
        return False
    identifier = service.get("identifier")
    if not isinstance(identifier, str) or not identifier:
        return False
    return "name" not in service or isinstance(service["name"], str)


def _new_incident(reference_id: str) -> JSONObject:
    return {
        "reference_id": reference_id,
        **dict.fromkeys(_SCALAR_FIELDS),
        "services": [],
        "metadata": {},
    }


class FakeDX:
    """The fake DX API: `.app` to serve, switches to misbehave, records to assert on.

    State (read it from tests; the fake only appends or replaces under its lock):
      `.incidents[reference_id]`: the stored incident, every field present (None, [] or {}
        when never set or cleared).
      `.history[reference_id]`: the bodies of successful upserts, in arrival order.
      `.requests`: every `RecordedRequest`, in arrival order.
      `.status_counts`: Counter of HTTP statuses answered.
      `.most_open`: the most requests that were open (received, not yet answered) at once.
      `.overlaps`: every `Overlap`, in arrival order; empty unless a reference's requests
        overlapped (an upsert or delete naming the same `reference_id`, well-formed or not).

    Plain attributes, safe to set from any thread: `.latency` (seconds slept before every
    answer), `.down` (answer every request 503) and `.moved_to` (answer every request 301
    with that `Location`, as a host that only serves https answers plain http).
    """

    def __init__(self, token: str = "test-dx-token") -> None:
        self.token = token
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=_METHODS)])
        self.reset()

    def reset(self) -> None:
        """Forget all incidents, records and switches; the token stays."""
        with self._lock:
            self.incidents: dict[str, JSONObject] = {}
            self.history: dict[str, list[JSONObject]] = {}
            self.requests: list[RecordedRequest] = []
            self.status_counts: Counter[int] = Counter()
            self.most_open = 0
            self._open = 0
            self.overlaps: list[Overlap] = []
            self._open_by_reference: dict[str, list[RecordedRequest]] = {}
            self._stalls: list[float] = []
            self.latency = 0.0
            self.down = False
            self.moved_to: str | None = None
            self._failures: list[tuple[int, str]] = []
            self._rate_limits: list[float] = []
            self._ok_false: list[str] = []
            self._rejected: dict[str, tuple[int, str]] = {}

    # -- switches ---------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503, error: str = "service_unavailable") -> None:
        """Answer the next `n` requests with `status` and `{"ok": false, "error": error}`."""
        with self._lock:
            self._failures.extend([(status, error)] * n)

    def rate_limit_next(self, n: int, retry_after: float = 1.0) -> None:
        """Answer the next `n` requests 429 with a `Retry-After: <seconds>` header."""
        with self._lock:
            self._rate_limits.extend([retry_after] * n)

    def stall_next(self, n: int, seconds: float) -> None:
        """Hold each of the next `n` requests `seconds` before answering it (on top of
        `.latency`), as a DX that has stopped answering for a while; it is answered after."""
        with self._lock:
            self._stalls.extend([seconds] * n)

    def ok_false_next(self, n: int, code: str) -> None:
        """Answer the next `n` requests HTTP 200 with `ok: false`: DX says callers check `ok`."""
        with self._lock:
            self._ok_false.extend([code] * n)

    def calm(self) -> None:
        """Switch every misbehaviour off, queued ones included; records and `reject` stay."""
        with self._lock:
            self.latency, self.down, self.moved_to = 0.0, False, None
            self._failures.clear()
            self._rate_limits.clear()
            self._ok_false.clear()
            self._stalls.clear()

    def reject(self, reference_id: str, code: str = "invalid_arguments", status: int = 422) -> None:
        """Refuse every valid upsert of `reference_id` from now on, as a permanent error."""
        with self._lock:
            self._rejected[reference_id] = (status, code)

    # -- reading ----------------------------------------------------------------------------

    def upserts(self, reference_id: str) -> list[JSONObject]:
        """A copy of the successful upsert bodies for `reference_id`, oldest first."""
        with self._lock:
            return copy.deepcopy(self.history.get(reference_id, []))

    def incident(self, reference_id: str) -> JSONObject | None:
        """A copy of the stored incident, or None if DX does not hold it."""
        with self._lock:
            stored = self.incidents.get(reference_id)
            return copy.deepcopy(stored) if stored is not None else None

    def arrivals(self, path: str = UPSERT_PATH) -> list[float]:
        """When each request to `path` arrived (`time.monotonic()`), oldest first, whatever
        its answer: what a rate limit on DX's side counts."""
        with self._lock:
            return [r.received_at for r in self.requests if r.path == path]

    # -- serving ----------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            parsed: Any = json.loads(raw, parse_constant=_refuse_constant)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
            parsed = _NOT_JSON
        client = request.client
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=raw,
            json=None if parsed is _NOT_JSON else parsed,
            received_at=time.monotonic(),
            client=f"{client.host}:{client.port}" if client else "",
        )
        reference = parsed.get("reference_id") if isinstance(parsed, dict) else None
        if not isinstance(reference, str):
            reference = None
        with self._lock:
            self.requests.append(record)
            self._open += 1
            self.most_open = max(self.most_open, self._open)
            if reference is not None:
                self._opened(reference, record)
        try:
            return await self._respond(request, parsed, record)
        finally:
            with self._lock:
                self._open -= 1
                if reference is not None:
                    self._closed(reference, record)

    def _opened(self, reference: str, record: RecordedRequest) -> None:
        """Record `record` as open for `reference`, and an overlap with each one still open
        (caller holds the lock)."""
        still_open = self._open_by_reference.setdefault(reference, [])
        for earlier in still_open:
            self.overlaps.append(
                Overlap(
                    reference,
                    earlier.received_at,
                    record.received_at,
                    earlier.client,
                    record.client,
                )
            )
        still_open.append(record)

    def _closed(self, reference: str, record: RecordedRequest) -> None:
        """`record` is answered: no longer open for `reference` (caller holds the lock)."""
        still_open = [r for r in self._open_by_reference.get(reference, []) if r is not record]
        if still_open:
            self._open_by_reference[reference] = still_open
        else:
            self._open_by_reference.pop(reference, None)

    async def _respond(
        self, request: Request, parsed: Any, record: RecordedRequest
    ) -> JSONResponse:
        with self._lock:
            hold = self.latency + (self._stalls.pop(0) if self._stalls else 0.0)
        if hold > 0:
            await asyncio.sleep(hold)
        headers: dict[str, str] = {}
        try:
            status, payload = self._answer(request, parsed)
        except _Refusal as refusal:
            status, payload = refusal.status, {"ok": False, "error": refusal.code}
            headers = refusal.headers
        with self._lock:
            record.status, record.response = status, payload
            record.answered_at = time.monotonic()
            self.status_counts[status] += 1
        return JSONResponse(payload, status_code=status, headers=headers)

    def _answer(self, request: Request, parsed: Any) -> tuple[int, JSONObject]:
        """Apply switches, then routing, auth and JSON checks, then the operation."""
        self._misbehave()
        path = request.url.path
        if path not in (UPSERT_PATH, DELETE_PATH):
            raise _Refusal(404, "unknown_method")
        if request.method != "POST":
            raise _Refusal(405, "method_not_allowed")
        expected = f"Bearer {self.token}".encode()
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            raise _Refusal(401, "not_authed")
        if not isinstance(parsed, dict):
            raise _Refusal(400, "invalid_json")
        if path == DELETE_PATH:
            return self._delete(parsed)
        return self._upsert(parsed)

    def _misbehave(self) -> None:
        """Raise the switched-on failure for this request, consuming one count, if any."""
        with self._lock:
            if self.moved_to is not None:
                raise _Refusal(301, "moved", {"Location": self.moved_to})
            if self.down:
                raise _Refusal(503, "service_unavailable")
            if self._failures:
                raise _Refusal(*self._failures.pop(0))
            if self._rate_limits:
                retry_after = _retry_after(self._rate_limits.pop(0))
                raise _Refusal(429, "rate_limited", {"Retry-After": retry_after})
            if self._ok_false:
                raise _Refusal(200, self._ok_false.pop(0))

    def _upsert(self, body: JSONObject) -> tuple[int, JSONObject]:
        _validate_upsert(body)
        reference_id: str = body["reference_id"]
        with self._lock:
            if reference_id in self._rejected:
                raise _Refusal(*self._rejected[reference_id])
            stored = self.incidents.setdefault(reference_id, _new_incident(reference_id))
            for field in _SCALAR_FIELDS:
                if field in body:
                    stored[field] = body[field]
            # Omitted: unchanged. null or []: cleared. Anything else: replaced, never merged.
            if "services" in body:
                stored["services"] = copy.deepcopy(body["services"] or [])
            if "metadata" in body:
                stored["metadata"] = copy.deepcopy(body["metadata"] or {})
            self.history.setdefault(reference_id, []).append(copy.deepcopy(body))
            return 200, {"ok": True, "incident": copy.deepcopy(stored)}

    def _delete(self, body: JSONObject) -> tuple[int, JSONObject]:
        reference_id = body.get("reference_id")
        if not isinstance(reference_id, str) or not reference_id:
            raise _Refusal(422, "invalid_arguments")
        with self._lock:
            if self.incidents.pop(reference_id, None) is None:
                raise _Refusal(422, "not_found")
        return 200, {"ok": True}
