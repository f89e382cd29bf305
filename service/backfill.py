"""Recover webhooks Opsgenie never delivered: read a service object's recent alerts, fold them in.

Runs inside the relay (``POST /api/v1/backfill``, called by ``opsgenie-dx-relay
backfill``): only the relay can decrypt the service object's Opsgenie key, and only its
single writer may write the database. Each listed alert is folded into the outbox as a
``Fetched`` event, exactly as enrichment does, so the delivery worker sends it with the
usual filter, coalescing and retries; alerts DX already holds unchanged cost no request.
A dry run only lists what it would fold, and whether the relay knew each alert.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from service.errors import Conflict, NotFound, OpsgenieAPIError, PayloadError, RelayError
from service.opsgenie import Action, event_from_api_alert
from service.opsgenie_api import OpsgenieAPI, api_for
from service.relay import Relay
from service.store import Incoming
from service.translate import fold, iso8601, reference_id

log = logging.getLogger("service.backfill")

PAGE_SIZE = 100  # Opsgenie's maximum
#: Opsgenie refuses offsets past 20,000; a week that busy needs a narrower --since.
MAX_ALERTS = 20_000


class OpsgenieUnavailable(RelayError):
    """Opsgenie did not list the alerts (key, region, outage): 502, nothing half-done hidden."""

    status_code = 502


@dataclass(slots=True)
class Report:
    service: str
    since: str
    dry_run: bool
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        counts = Counter(a["outcome"] for a in self.alerts)
        return {
            "service": self.service,
            "since": self.since,
            "dry_run": self.dry_run,
            "counts": dict(sorted(counts.items())),
            "alerts": self.alerts,
        }


async def backfill(relay: Relay, *, service: str, since_seconds: float, dry_run: bool) -> Report:
    """Fold every alert created in the last ``since_seconds`` into the outbox (or list them)."""
    found = await relay.store.find_service_object(service)
    if found is None:
        raise NotFound(f"unknown service object: {service}")
    api = api_for(relay.http, found)
    if api is None:
        raise Conflict(f"service object {found.name} has no Opsgenie API key")
    now = relay.clock()
    since_ns = int((now - since_seconds) * 1e9)
    report = Report(service=found.name, since=iso8601(since_ns), dry_run=dry_run)
    # Opsgenie's search syntax takes epoch milliseconds for createdAt.
    query = f"createdAt >= {since_ns // 1_000_000}"
    async for data in _alerts(api, query):
        report.alerts.append(await _fold(relay, data, service_id=found.id, dry_run=dry_run))
    if not dry_run and any(a["outcome"] == "accepted" for a in report.alerts):
        relay.worker.wake()
    log.info(
        "backfill finished",
        extra={"service_id": found.id, "dry_run": dry_run, **report.as_json()["counts"]},
    )
    return report


async def _alerts(api: OpsgenieAPI, query: str) -> AsyncIterator[dict[str, Any]]:
    offset = 0
    while offset < MAX_ALERTS:
        try:
            page = await api.list_alerts(query, limit=PAGE_SIZE, offset=offset)
        except OpsgenieAPIError as error:
            raise OpsgenieUnavailable(f"Opsgenie alert list failed: {error.message}") from None
        for data in page.alerts:
            yield data
        if not page.has_more or not page.alerts:
            return
        offset += PAGE_SIZE


async def _fold(
    relay: Relay, data: dict[str, Any], *, service_id: str, dry_run: bool
) -> dict[str, Any]:
    received = relay.clock()
    try:
        event = event_from_api_alert(data, received_ns=int(received * 1e9))
    except PayloadError as error:
        log.warning(
            "backfill skipped an unusable alert",
            extra={"action": Action.FETCHED.value, "outcome": "invalid", "error": error.message},
        )
        return {"reference_id": None, "alert_id": data.get("id"), "outcome": "invalid"}
    ref = reference_id(event.alert_id, relay.rules)
    if dry_run:
        outcome = "known" if await relay.store.get(ref) is not None else "new"
    else:
        raw = json.dumps(data, sort_keys=True, separators=(",", ":"))
        incoming = Incoming(
            reference_id=ref,
            alert_id=event.alert_id,
            action=Action.FETCHED.value,
            service_id=service_id,
            dedup_key=hashlib.sha256(raw.encode()).hexdigest(),
            raw=raw,
            received_at=received,
        )
        outcome = (await relay.store.accept(incoming, lambda old: fold(old, event))).value
    log.info(
        "alert backfilled",
        extra={
            "reference_id": ref,
            "action": Action.FETCHED.value,
            "outcome": outcome,
            "dry_run": dry_run,
        },
    )
    return {"reference_id": ref, "alert_id": event.alert_id, "outcome": outcome}
