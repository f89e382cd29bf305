"""Which Opsgenie account an alert belongs to, and so where its web pages live.

Payloads carry no account name, yet alert links need it
(``https://<account>.app.opsgenie.com``). A service object's API key can ask
``GET /v2/account``; the answer is cached. When it cannot (a team integration's key reads
alerts but gets 403 there), the link falls back to the service object's region host
(``https://app.eu.opsgenie.com``), not to the default web URL (``RELAY_OPSGENIE_WEB_URL``),
which is another account's and may be in the other region. Without a region to go by
(no service object, ``custom``), the default it is: a link that is less precise is better
than a delivery held back for it. A JSM site (``account_keys.jsm_site``) is its own web
host: its alerts link to ``<site>/jira/ops/alerts/<id>`` without asking anything.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from service.account_keys import jsm_site
from service.errors import OpsgenieAPIError, SecretKeyError
from service.opsgenie_api import ServiceObjects, api_for, web_url
from service.settings import Settings
from service.translate import JSM_ALERT_PAGE, Account

log = logging.getLogger("service.accounts")

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: How long a learned account name is trusted; renames are rare.
ACCOUNT_TTL_SECONDS = 3600.0
#: How long a failed lookup is remembered, so a bad key does not cost a request per alert.
FAILURE_TTL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Cached:
    account: Account
    expires_at: float


class Accounts:
    """Resolves a service object id to its account; ``None`` is the default account."""

    def __init__(
        self,
        settings: Settings,
        store: ServiceObjects | None = None,
        http: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = Account(web_url=settings.opsgenie_web_url)
        self._store = store
        self._http = http
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._changes = 0  # a lookup under way across a change must not cache what it read

    def forget(self, service_id: str) -> None:
        """Drop what is cached for a service object (after it changed or was deleted,
        here or, through the store's notifications, on another replica)."""
        self._changes += 1
        self._cache.pop(service_id, None)

    def forget_all(self) -> None:
        """Drop everything: changes may have been missed (the store's notifications)."""
        self._changes += 1
        self._cache.clear()

    async def account(self, service_id: str | None) -> Account:
        if service_id is None or self._store is None or self._http is None:
            return self._default
        cached = self._cache.get(service_id)
        if cached is not None and cached.expires_at > self._clock():
            return cached.account
        lock = self._locks.setdefault(service_id, asyncio.Lock())
        async with lock:  # one lookup per account, however many deliveries wait for it
            cached = self._cache.get(service_id)
            if cached is not None and cached.expires_at > self._clock():
                return cached.account
            changes = self._changes
            account, ttl = await self._lookup(service_id)
            if changes == self._changes:
                self._cache[service_id] = _Cached(account, self._clock() + ttl)
            return account

    async def _lookup(self, service_id: str) -> tuple[Account, float]:
        assert self._store is not None
        assert self._http is not None
        try:
            service = await self._store.get_service_object(service_id)
        except Exception:  # the store's trouble must not hold a delivery back
            log.warning("service object lookup failed", extra={"service_id": service_id})
            return self._default, FAILURE_TTL_SECONDS
        site = None if service is None else jsm_site(service.region, service.custom_url)
        if site is not None:
            return Account(web_url=site, alert_page=JSM_ALERT_PAGE), ACCOUNT_TTL_SECONDS
        if service is None or service.region == "custom":
            # custom: the API base (a proxy, an on-premises gateway) says nothing reliable
            # about the web UI's address; the operator's default is the only word on it.
            return self._default, ACCOUNT_TTL_SECONDS
        regional = Account(web_url=web_url(service.region))
        try:
            api = api_for(self._http, service)
            if api is None:
                return regional, ACCOUNT_TTL_SECONDS
            name = await api.get_account()
        except (OpsgenieAPIError, SecretKeyError) as error:  # refused, or the key does not decrypt
            log.warning(
                "Opsgenie account name unavailable; linking to the region's web host",
                extra={"service_id": service_id, "error": error.message},
            )
            return regional, FAILURE_TTL_SECONDS
        except Exception:  # a link is never worth a failed delivery
            log.exception("Opsgenie account lookup failed", extra={"service_id": service_id})
            return regional, FAILURE_TTL_SECONDS
        if not _HOST_LABEL.fullmatch(name):
            log.warning(
                "Opsgenie account name is not a host name", extra={"service_id": service_id}
            )
            return regional, ACCOUNT_TTL_SECONDS
        return Account(web_url=web_url(service.region, name.lower())), ACCOUNT_TTL_SECONDS
