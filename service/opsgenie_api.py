"""A thin client for the parts of Opsgenie's REST API the relay reads.

Webhook payloads are partial; the Alert API has the whole alert (enrichment, backfill)
and the Account API has the account name (alert links). The client rides on the app's
one pooled ``httpx.AsyncClient`` and only classifies answers into the named
``OpsgenieAPIError`` family: when to retry is the caller's policy, as with DX.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
from starlette.datastructures import Secret

from service.account_keys import jsm_site, key_kind, parse_api_key
from service.alert_api import AlertAPI, AlertPage, classify, read_json
from service.destinations import parse_custom_url
from service.errors import (
    OpsgenieAPIError,
    OpsgenieAuthError,
    OpsgenieNotFound,
    OpsgeniePermanent,
    OpsgenieRetryable,
    PayloadError,
)
from service.jsm_api import JsmAPI

Region = Literal["us", "eu", "custom"]

API_BASES: dict[str, str] = {
    "us": "https://api.opsgenie.com",
    "eu": "https://api.eu.opsgenie.com",
}
#: Opsgenie answers 422 when ``offset + limit`` passes this: one query lists 20,000 alerts.
LIST_WINDOW = 20_000


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


class OpsgenieAPI:
    """Reads one Opsgenie account with its API key (``Authorization: GenieKey ...``)."""

    list_window = LIST_WINDOW

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

    def created_after(self, epoch_ms: int) -> str:
        """Opsgenie's search syntax: "createdAt : Unix timestamp in milliseconds", with >."""
        return f"createdAt>{epoch_ms}"

    async def _get(self, path: str, params: dict[str, str | int] | None) -> dict[str, Any]:
        url = f"{self._base_url}{path}"
        return await read_json(
            self._client, url, product="Opsgenie", params=params, headers=self._headers
        )


__all__ = [
    "API_BASES",
    "AlertAPI",
    "AlertPage",
    "JsmAPI",
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


def api_for(client: httpx.AsyncClient, service: ServiceAccount) -> AlertAPI | None:
    """A client for the service object's account (``JsmAPI`` for a JSM site, see
    ``account_keys.jsm_site``), or ``None`` without an API key; ``OpsgeniePermanent`` when
    the stored key or URL is one the services API now refuses."""
    if service.api_key is None or not str(service.api_key):
        return None
    kind = key_kind(service.region, service.custom_url)
    try:  # values stored before the services API checked them are checked at use
        key = parse_api_key(str(service.api_key), kind=kind)
        if service.region == "custom" and service.custom_url:
            parse_custom_url(service.custom_url, allow_private=True)  # egress checks addresses
    except PayloadError as error:
        raise OpsgeniePermanent(f"stored {error.message}; PATCH the service object") from None
    site = jsm_site(service.region, service.custom_url)
    if site is not None:
        return JsmAPI(client, site, str(key))
    return OpsgenieAPI(client, api_base(service.region, service.custom_url), str(key))
