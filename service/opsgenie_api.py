"""A thin client for the parts of Opsgenie's REST API the relay reads.

Webhook payloads are partial; the Alert API has the whole alert (enrichment, backfill)
and the Account API has the account name (alert links). The client rides on the app's
one pooled ``httpx.AsyncClient`` and only classifies answers into the named
``OpsgenieAPIError`` family: when to retry is the caller's policy, as with DX.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
from starlette.datastructures import Secret

from service import upstream
from service.account_keys import parse_api_key
from service.backoff import retry_after_seconds
from service.destinations import parse_custom_url
from service.errors import (
    AnswerTooLarge,
    DestinationRefused,
    MalformedAnswer,
    OpsgenieAPIError,
    OpsgenieAuthError,
    OpsgenieNotFound,
    OpsgeniePermanent,
    OpsgenieRetryable,
    PayloadError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

Region = Literal["us", "eu", "custom"]

API_BASES: dict[str, str] = {
    "us": "https://api.opsgenie.com",
    "eu": "https://api.eu.opsgenie.com",
}
#: Opsgenie's rate-limit windows are 1 s and 60 s; a longer "window" is none of them, and
#: a minute is already as long as enrichment holds an incident back for one answer.
MAX_RATE_LIMIT_PERIOD = 60.0


def api_base(region: str, custom_url: str | None) -> str:
    """The API base for a service object: fixed per region, or its ``custom_url``."""
    if region == "custom":
        if not custom_url:
            raise OpsgeniePermanent("region custom needs a custom_url")
        return custom_url.rstrip("/")
    try:
        return API_BASES[region]
    except KeyError:
        raise OpsgeniePermanent(f"unknown Opsgenie region {region!r}") from None


def web_url(region: str, account: str | None = None) -> str:
    """The web UI of an account, where alert pages live; without the account's name, its
    region's host, which at least keeps an EU alert's link on the EU side."""
    domain = "app.eu.opsgenie.com" if region == "eu" else "app.opsgenie.com"
    return f"https://{domain}" if account is None else f"https://{account}.{domain}"


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of ``GET /v2/alerts``: the alerts, and whether Opsgenie has more."""

    alerts: list[dict[str, Any]]
    has_more: bool


class OpsgenieAPI:
    """Reads one Opsgenie account with its API key (``Authorization: GenieKey ...``)."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, api_key: str) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"GenieKey {api_key}", "Accept": "application/json"}

    async def get_alert(self, alert_id: str) -> dict[str, Any]:
        """The full alert (``data`` of ``GET /v2/alerts/{id}``); 404 once it is deleted."""
        document = await self._get(
            f"/v2/alerts/{quote(alert_id, safe='')}", {"identifierType": "id"}
        )
        data = document.get("data")
        if not isinstance(data, dict):
            raise OpsgeniePermanent("Opsgenie alert answer has no data object")
        return data

    async def get_account(self) -> str:
        """The account name (``data.name`` of ``GET /v2/account``), for alert links."""
        document = await self._get("/v2/account", None)
        data = document.get("data")
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise OpsgeniePermanent("Opsgenie account answer has no data.name")
        return name.strip()

    async def list_alerts(self, query: str, *, limit: int = 100, offset: int = 0) -> AlertPage:
        """One page of alerts matching ``query`` (Opsgenie's search syntax), oldest first.

        ``has_more`` follows Opsgenie's ``paging.next`` link; the caller moves ``offset``
        by ``limit``. Opsgenie caps ``limit`` at 100.
        """
        params: dict[str, str | int] = {
            "query": query,
            "limit": limit,
            "offset": offset,
            "sort": "createdAt",
            "order": "asc",
        }
        document = await self._get("/v2/alerts", params)
        data = document.get("data")
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise OpsgeniePermanent("Opsgenie alert list has no data list")
        paging = document.get("paging")
        has_more = isinstance(paging, dict) and bool(paging.get("next"))
        return AlertPage(alerts=data, has_more=has_more)

    async def _get(self, path: str, params: dict[str, str | int] | None) -> dict[str, Any]:
        """One read within the client's bounds. An answer too large or undecodable is a bad
        answer like invalid JSON (``OpsgeniePermanent``): callers carry on without it."""
        try:
            reply = await upstream.fetch(
                self._client, "GET", f"{self._base_url}{path}", params=params, headers=self._headers
            )
        except UpstreamTimeout as error:
            raise OpsgenieRetryable(f"Opsgenie timed out: {error.message}") from None
        except UpstreamUnreachable as error:
            raise OpsgenieRetryable(f"Opsgenie unreachable: {error.message}") from None
        except (AnswerTooLarge, MalformedAnswer) as error:
            raise OpsgeniePermanent(
                f"unusable Opsgenie answer: {error.message}", http_status=error.http_status
            ) from None
        except DestinationRefused as error:  # asking again reaches the same address
            raise OpsgeniePermanent(error.message) from None
        return classify(reply.status_code, reply.headers, reply.body)


def classify(status: int, headers: httpx.Headers, body: bytes) -> dict[str, Any]:
    """The JSON document of a 2xx, or the ``OpsgenieAPIError`` that says what to do."""
    if status == 429 or 500 <= status <= 599:
        raise OpsgenieRetryable(
            f"Opsgenie answered {status}",
            http_status=status,
            retry_after=_retry_after(status, headers),
        )
    if status in (401, 403):
        raise OpsgenieAuthError(f"Opsgenie refused the API key ({status})", http_status=status)
    if status == 404:
        raise OpsgenieNotFound("Opsgenie has no such alert (404)", http_status=status)
    if not 200 <= status <= 299:
        raise OpsgeniePermanent(f"Opsgenie answered {status}", http_status=status)
    try:
        return upstream.load_object(body)
    except MalformedAnswer as error:
        raise OpsgeniePermanent(
            f"Opsgenie answered with invalid JSON: {error.message}", http_status=status
        ) from None


def _retry_after(status: int, headers: httpx.Headers) -> float | None:
    """Seconds to wait before asking again, ``None`` when the answer does not say.

    Opsgenie's 429 carries no ``Retry-After`` (a proxy in front of it may add one, which
    wins), only ``X-RateLimit-Period-In-Sec``: the window, 1 or 60 s, whose bucket is
    empty. Its buckets refill within that window, so waiting it out is the wait; without
    it, callers backed off for a few seconds and gave up inside a 60 s window.
    """
    explicit = retry_after_seconds(headers.get("retry-after"), now=time.time())
    if explicit is not None or status != 429:
        return explicit
    try:
        period = float(headers.get("x-ratelimit-period-in-sec", ""))
    except ValueError:
        return None
    if not period > 0:  # zero, negative or NaN: no window worth waiting for
        return None
    return min(period, MAX_RATE_LIMIT_PERIOD)


__all__ = [
    "API_BASES",
    "AlertPage",
    "OpsgenieAPI",
    "OpsgenieAPIError",
    "OpsgenieAuthError",
    "OpsgenieNotFound",
    "OpsgeniePermanent",
    "OpsgenieRetryable",
    "Region",
    "ServiceAccount",
    "ServiceObjects",
    "api_base",
    "api_for",
    "classify",
    "web_url",
]


class ServiceAccount(Protocol):
    """What the client needs from a service object (``service.store.ServiceObject``)."""

    @property
    def id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def custom_url(self) -> str | None: ...
    @property
    def api_key(self) -> Secret | None: ...


class ServiceObjects(Protocol):
    """The store's read side for service objects."""

    async def get_service_object(self, id: str) -> ServiceAccount | None: ...


def api_for(client: httpx.AsyncClient, service: ServiceAccount) -> OpsgenieAPI | None:
    """A client for the service object's account, or ``None`` without an API key;
    ``OpsgeniePermanent`` when the stored key or URL is one the services API now refuses."""
    if service.api_key is None or not str(service.api_key):
        return None
    try:  # values stored before the services API checked them are checked at use
        key = parse_api_key(str(service.api_key))
        if service.region == "custom" and service.custom_url:
            parse_custom_url(service.custom_url, allow_private=True)  # egress checks addresses
    except PayloadError as error:
        raise OpsgeniePermanent(f"stored {error.message}; PATCH the service object") from None
    return OpsgenieAPI(client, api_base(service.region, service.custom_url), str(key))
