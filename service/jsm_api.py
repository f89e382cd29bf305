"""A thin client for the alerts of Jira Service Management (JSM) Operations, Opsgenie's successor.

It has ``OpsgenieAPI``'s surface (``alert_api.AlertAPI``), so enrichment, backfill and links
read a JSM site as they read an Opsgenie account. Atlassian's documentation
(developer.atlassian.com, "Jira Service Management ops REST API", Alerts):

- reads go to ``https://api.atlassian.com/jsm/ops/api/{cloudId}/v1/alerts[/{id}]`` with
  HTTP Basic auth, an Atlassian account's email and API token: a GenieKey integration
  key reaches only ``/jsm/ops/integration/v2/alerts`` and cannot read alerts;
- a site's ``cloudId`` is ``GET https://<site>.atlassian.net/_edge/tenant_info``
  (``{"cloudId": ...}``), asked without credentials: the key goes to api.atlassian.com
  only, and both requests go through the caller's client, the guarded one;
- a listing answers ``{"values": [...], "links": {"next": ...}, "count": n}`` with
  ``offset`` and ``size`` (1-100), and ``offset + size`` must stay below 20,000.

A site's ``cloudId`` belongs to the site, not to the credentials, so ``CloudIds`` caches it
by site URL: a service object that moves to another site asks again by itself.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from service.alert_api import AlertPage, read_json
from service.errors import OpsgenieAuthError, OpsgeniePermanent

#: Where every JSM Cloud site's REST APIs answer (read when a client is made).
API_BASE = "https://api.atlassian.com"
#: ``offset + size`` must be lower than 20,000: one query lists at most 19,999 alerts.
LIST_WINDOW = 19_999
#: How long a site's learned cloudId is trusted; it changes only if the site is replaced.
CLOUD_ID_TTL_SECONDS = 3600.0
#: Sites remembered at most: one per service object, so a bound that is never reached.
MAX_SITES = 1024
#: What a cloudId looks like (a UUID); anything else would be pasted into a URL path.
_CLOUD_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
#: The product's name in errors and logs.
PRODUCT = "JSM"


@dataclass(frozen=True, slots=True)
class _Known:
    cloud_id: str
    expires_at: float


class CloudIds:
    """Each site's cloudId, asked once per ``ttl`` however many requests wait for it."""

    def __init__(
        self, *, ttl: float = CLOUD_ID_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, client: httpx.AsyncClient, site: str) -> str:
        """The site's cloudId; an ``OpsgenieAPIError`` when it cannot be learned (not cached:
        the next request asks again)."""
        known = self._known.get(site)
        if known is not None and known.expires_at > self._clock():
            return known.cloud_id
        async with self._locks.setdefault(site, asyncio.Lock()):
            known = self._known.get(site)
            if known is not None and known.expires_at > self._clock():
                return known.cloud_id
            cloud_id = await _tenant_cloud_id(client, site)
            if len(self._known) >= MAX_SITES:
                self._known.pop(next(iter(self._known)))
            self._known[site] = _Known(cloud_id, self._clock() + self._ttl)
            return cloud_id

    def forget(self, site: str) -> None:
        self._known.pop(site, None)


#: The process's cache; a client per request shares it.
CLOUD_IDS = CloudIds()


async def _tenant_cloud_id(client: httpx.AsyncClient, site: str) -> str:
    """``GET <site>/_edge/tenant_info``'s ``cloudId``, without credentials."""
    try:
        document = await read_json(
            client,
            f"{site}/_edge/tenant_info",
            product=f"JSM site {site}",
            headers={"Accept": "application/json"},
        )
    except OpsgeniePermanent as error:
        raise OpsgeniePermanent(
            f"no cloudId for {site} ({error.message}); is custom_url the JSM site?",
            http_status=error.http_status,
        ) from None
    cloud_id = document.get("cloudId")
    if not isinstance(cloud_id, str) or not _CLOUD_ID.fullmatch(cloud_id):
        raise OpsgeniePermanent(f"JSM site {site} answered tenant_info without a cloudId")
    return cloud_id


class JsmAPI:
    """Reads one JSM site's alerts with an Atlassian account's ``<email>:<API token>``."""

    list_window = LIST_WINDOW

    def __init__(
        self,
        client: httpx.AsyncClient,
        site: str,
        credentials: str,
        *,
        api_base: str | None = None,
        cloud_ids: CloudIds | None = None,
    ) -> None:
        self._client = client
        self._site = site.rstrip("/")
        self._api_base = (api_base if api_base is not None else API_BASE).rstrip("/")
        self._cloud_ids = cloud_ids if cloud_ids is not None else CLOUD_IDS
        token = base64.b64encode(credentials.encode("ascii")).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}

    @property
    def site(self) -> str:
        return self._site

    async def get_alert(self, alert_id: str) -> dict[str, Any]:
        """The full alert (``GET .../v1/alerts/{id}``) as Opsgenie's Alert API shapes it;
        404 once it is deleted."""
        document = await self._get(f"/v1/alerts/{quote(alert_id, safe='')}", None)
        data = document.get("data", document)  # the alert itself; ``data`` if ever wrapped
        if not isinstance(data, dict):
            raise OpsgeniePermanent("JSM alert answer is not an alert object")
        return as_opsgenie_alert(data)

    async def get_account(self) -> str:
        """The site (``https://<site>.atlassian.net``), where the alert pages live: JSM has
        no account name to ask for, and the site is what links need."""
        return self._site

    async def list_alerts(self, query: str, *, limit: int = 100, offset: int = 0) -> AlertPage:
        """One page of alerts matching ``query``, oldest first; ``has_more`` follows
        ``links.next``. ``size`` is 1-100 and ``offset + size`` below 20,000."""
        params: dict[str, str | int] = {
            "query": query,
            "size": limit,
            "offset": offset,
            "sort": "createdAt",
            "order": "asc",
        }
        document = await self._get("/v1/alerts", params)
        values = document.get("values")
        if not isinstance(values, list) or not all(isinstance(item, dict) for item in values):
            raise OpsgeniePermanent("JSM alert list has no values list")
        links = document.get("links")
        has_more = isinstance(links, dict) and bool(links.get("next"))
        return AlertPage(alerts=[as_opsgenie_alert(item) for item in values], has_more=has_more)

    def created_after(self, epoch_ms: int) -> str:
        """JSM's alert search is Opsgenie's (``createdAt`` in epoch ms, with ``>``), as far as
        Atlassian's pages show it; kept here so a difference is fixed in one place."""
        return f"createdAt>{epoch_ms}"

    async def _get(self, path: str, params: dict[str, str | int] | None) -> dict[str, Any]:
        cloud_id = await self._cloud_ids.get(self._client, self._site)
        url = f"{self._api_base}/jsm/ops/api/{quote(cloud_id, safe='')}{path}"
        try:
            return await read_json(
                self._client, url, product=PRODUCT, params=params, headers=self._headers
            )
        except OpsgenieAuthError as error:
            raise OpsgenieAuthError(
                _refusal(error.http_status), http_status=error.http_status
            ) from None


def _refusal(status: int | None) -> str:
    """What a 401/403 means for JSM, in words an operator can act on (never the key)."""
    if status == 401:
        return (
            "JSM refused the credentials (401): opsgenie_api_key must be <email>:<API token>"
            " of an Atlassian account (a GenieKey integration key cannot read alerts)"
        )
    return (
        f"JSM refused to show alerts ({status}): the Atlassian account needs access to"
        " this site's Operations alerts"
    )


def as_opsgenie_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """A JSM alert in the shape ``opsgenie.event_from_api_alert`` reads.

    JSM documents the Opsgenie alert fields (``id``, ``tinyId``, ``message``, ``status``,
    ``acknowledged``, ``tags``, ``priority``, ``createdAt``, ``updatedAt``, ``report``...);
    its custom key/value pairs are ``extraProperties`` where Opsgenie says ``details``.
    """
    if "details" in alert or not isinstance(alert.get("extraProperties"), dict):
        return alert
    return {**alert, "details": alert["extraProperties"]}


__all__ = ["API_BASE", "CLOUD_IDS", "LIST_WINDOW", "CloudIds", "JsmAPI", "as_opsgenie_alert"]
