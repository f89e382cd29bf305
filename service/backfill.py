"""Recover webhooks Opsgenie never delivered: read a service object's recent alerts, fold them in.

Runs inside the relay (``POST /api/v1/backfill``, called by ``opsgenie-dx-relay
backfill``): only the relay can decrypt the service object's Opsgenie key, and only its
single writer may write the database. ``GET /v2/alerts`` lists reduced alerts (no
``details``, ``entity`` or ``teams``), so each listed alert the relay does not already
hold as listed is read whole (``GET /v2/alerts/{id}``) and folded into the outbox as a
``Fetched`` event, exactly as enrichment does; the delivery worker sends it with the
usual filter, coalescing and retries, and alerts DX already holds unchanged cost no
request. A dry run only lists what it would fold, and whether the relay knew each alert.

Opsgenie rate-limits the Alert API: a 429 (or a 5xx, or a network error) is waited out
(``Retry-After``, else jittered backoff) and the same request made again a few times
before the run fails with 502; rerunning is always safe. A ``Progress`` after each page
lets the route stream a progress line to the ``backfill`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import httpx

from service.backfill_report import Progress, Report
from service.backoff import Backoff
from service.errors import (
    Conflict,
    NotFound,
    OpsgenieAPIError,
    OpsgenieNotFound,
    OpsgeniePermanent,
    OpsgenieRetryable,
    OpsgenieUnavailable,
    PayloadError,
    SecretKeyError,
)
from service.mapping import Rules
from service.opsgenie import Action, OpsgenieEvent, event_from_api_alert
from service.opsgenie_api import AlertAPI, api_for
from service.settings import parse_duration
from service.store import Delivery, Incoming, Outcome, ServiceObject
from service.timestamps import parse_iso_ns
from service.translate import AlertState, fold, iso8601, reference_id

log = logging.getLogger("service.backfill")

T = TypeVar("T")

#: Attempts per request (a page, an alert) before a 429/5xx/network error becomes a 502;
#: an operator reruns.
ATTEMPTS = 5
#: Backoff ceiling when Opsgenie gives no ``Retry-After``; and the longest it may ask for
#: (an operator is watching the progress line, and the run is safe to repeat later).
#: All waits of one request stay under the CLI's 300 s read timeout between lines.
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 60.0
#: The furthest back a backfill reaches. It recovers webhooks lost in an outage (days,
#: weeks); a year is past any such gap.
#: Without a bound, a huge ``since`` overflowed the date arithmetic into a 500.
MAX_SINCE = "365d"
MAX_SINCE_SECONDS = parse_duration(MAX_SINCE)


class Outbox(Protocol):
    """The part of the store a backfill needs."""

    async def find_service_object(self, id_or_name: str) -> ServiceObject | None: ...
    async def get(self, reference_id: str) -> Delivery | None: ...
    async def accept(self, incoming: Incoming) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Target:
    """The service object to backfill and a client for its Opsgenie account."""

    id: str
    name: str
    api: AlertAPI


def since_seconds(since: object) -> float:
    """A backfill's ``since`` (``"7d"`` or seconds) in seconds, or ``PayloadError``
    naming the field: the route checks the request with it, the CLI its ``--since``."""
    seconds = 0.0
    if isinstance(since, str):
        with contextlib.suppress(ValueError):
            seconds = parse_duration(since)
    elif isinstance(since, int | float) and not isinstance(since, bool):
        try:
            seconds = float(since)
        except OverflowError:  # an integer past any float: far more than a year
            seconds = math.inf
    if not seconds > 0:
        raise PayloadError("since: required, a positive duration (e.g. 7d)", field="since")
    if seconds > MAX_SINCE_SECONDS:
        raise PayloadError(f"since: at most {MAX_SINCE} back", field="since")
    return seconds


def retry_delay(attempt: int, retry_after: float | None, rng: Callable[[], float]) -> float:
    """Seconds before asking for the same page again (``attempt`` counts from 0).

    Opsgenie's ``Retry-After`` is honoured (bounded, so a bogus hour does not hang the
    command); without one, exponential backoff with full jitter so parallel runs spread.
    """
    return Backoff(base=0.5, cap=MAX_BACKOFF, retry_after_cap=MAX_RETRY_AFTER).delay(
        attempt, retry_after, rng=rng
    )


class Backfill:
    """Backfills for one relay: reads through ``http`` with each service object's key,
    folds into ``outbox`` and calls ``wake`` as pages land.

    ``page_size`` is Opsgenie's maximum. Opsgenie answers 422 when ``offset + limit``
    passes ``list_window``, so one query lists at most that many alerts; the listing goes
    on with a new query from the last ``createdAt``. A progress line goes out at least
    every ``progress_every`` seconds while a page is read alert by alert: a page of 100
    full reads, each waiting out a throttled minute, would otherwise leave the stream
    silent past the CLI's read timeout.
    """

    def __init__(
        self,
        *,
        outbox: Outbox,
        http: httpx.AsyncClient,
        rules: Rules,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.time,
        page_size: int = 100,
        list_window: int = 20_000,
        progress_every: float = 10.0,
    ) -> None:
        self._outbox = outbox
        self._http = http
        self._rules = rules
        self._wake = wake
        self._clock = clock
        self._page_size = page_size
        self._list_window = list_window
        self._progress_every = progress_every

    async def resolve(self, service: str) -> Target:
        """The service object by name or id, with an API key: 404/409 before any work starts."""
        found = await self._outbox.find_service_object(service)
        if found is None:
            raise NotFound(f"unknown service object: {service}")
        try:
            api = api_for(self._http, found)
        except SecretKeyError as error:  # the operator's to fix, like a missing key
            log.warning("backfill refused", extra={"service_id": found.id, "error": error.message})
            raise Conflict(
                f"service object {found.name}: {error.message}; set that key back,"
                " or send the object's opsgenie_api_key again"
            ) from None
        except OpsgeniePermanent as error:  # a key or URL stored before they were checked
            log.warning("backfill refused", extra={"service_id": found.id, "error": error.message})
            raise Conflict(f"service object {found.name}: {error.message}") from None
        if api is None:
            raise Conflict(f"service object {found.name} has no Opsgenie API key")
        return Target(id=found.id, name=found.name, api=api)

    async def backfill(self, *, service: str, since_seconds: float, dry_run: bool) -> Report:
        """Fold every alert created in the last ``since_seconds`` into the outbox (or list them)."""
        target = await self.resolve(service)
        steps = self.backfill_steps(target, since_seconds=since_seconds, dry_run=dry_run)
        last = [step async for step in steps][-1]
        assert isinstance(last, Report)  # backfill_steps always ends with its report
        return last

    async def backfill_steps(
        self,
        target: Target,
        *,
        since_seconds: float,
        dry_run: bool,
    ) -> AsyncIterator[Progress | Report]:
        """A ``Progress`` after each page (and every ``progress_every`` seconds within one),
        then the ``Report``: streamed to a watching operator.

        Pages are asked oldest first from a fixed ``createdAt`` lower bound, so alerts created
        while it runs land after the last offset instead of shifting earlier pages; folding
        is idempotent, so a rerun or a webhook racing a page changes nothing twice.

        Opsgenie lists ``list_window`` alerts a query, and the newest come last: past that,
        the listing asks again from the newest ``createdAt`` listed (ms; alerts sharing it
        come again and are skipped by id). Only when one millisecond holds a whole window
        would that repeat itself; the rest of that millisecond is then reported unlisted.
        """
        now = self._clock()
        since_ns = int((now - since_seconds) * 1e9)
        report = Report(service=target.name, since=iso8601(since_ns), dry_run=dry_run)
        after_ms = since_ns // 1_000_000 - 1
        window: list[int] = []  # createdAt (ms) of what this query listed
        fresh = 0  # alerts this query listed that no query before it had
        seen: set[str] = set()
        counts: Counter[str] = Counter()
        retries = 0
        offset = 0
        page_number = 0
        last_progress = time.monotonic()
        list_window = min(self._list_window, target.api.list_window)
        while True:
            query = target.api.created_after(after_ms)
            ask = partial(target.api.list_alerts, query, limit=self._page_size, offset=offset)
            page, attempts = await _patiently(ask, "Opsgenie alert list", offset=offset)
            retries += attempts
            page_number += 1
            window += [ms for ms in map(_created_ms, page.alerts) if ms is not None]
            for data in page.alerts:
                if isinstance(alert_id := data.get("id"), str):
                    if alert_id in seen:
                        continue  # listed again by the query from its millisecond
                    seen.add(alert_id)
                    fresh += 1
                folded, attempts = await self._fold(
                    target.api, data, service_id=target.id, dry_run=dry_run
                )
                retries += attempts
                counts[folded["outcome"]] += 1
                report.alerts.append(folded)
                if time.monotonic() - last_progress >= self._progress_every:
                    yield Progress(page_number, len(report.alerts), dict(counts), retries)
                    last_progress = time.monotonic()
            if not dry_run and counts["accepted"]:
                self._wake()  # deliver as pages land, not only at the end
            yield Progress(page_number, len(report.alerts), dict(counts), retries)
            last_progress = time.monotonic()
            # ``paging.next`` is Opsgenie's word for more; a full page is the relay's own, so a
            # missing link costs at most one empty page instead of every alert after it.
            if not page.alerts or not (page.has_more or len(page.alerts) >= self._page_size):
                break
            offset += self._page_size
            if offset + self._page_size <= list_window:
                continue
            newest = max(window, default=None)
            if newest is None or not fresh:  # asking on could only repeat this window
                report.unlisted.append(
                    f"the listing ({query}) made no progress past"
                    f" {list_window} alerts; those after them were not listed"
                )
                break
            if min(window) == newest:  # asking from it would list the same window again
                window_size, at = list_window, iso8601(newest * 1_000_000)
                report.unlisted.append(
                    f"{window_size} alerts or more created at {at} (one millisecond):"
                    f" Opsgenie lists {window_size} a query, any more unread"
                )
                after_ms = newest
            else:
                after_ms = newest - 1
            window, fresh, offset = [], 0, 0
        result = report.as_json()
        log.info(
            "backfill finished",
            extra={
                "service_id": target.id,
                "dry_run": dry_run,
                "pages": page_number,
                "retries": retries,
                "complete": result["complete"],
                **result["counts"],
            },
        )
        yield report

    async def _fold(
        self, api: AlertAPI, listed: dict[str, Any], *, service_id: str, dry_run: bool
    ) -> tuple[dict[str, Any], int]:
        """What became of one listed alert, and how many retries reading it took.

        The list item only decides whether to read the alert: folded as it is, it would say
        nothing about ``details`` and the services they name would never reach DX. A dry
        run reads nothing more: a full read costs the rate limit the real run will need.
        """
        try:
            event = self._event(listed)
        except PayloadError as error:
            return _invalid(listed.get("id"), error), 0
        ref = reference_id(event.alert_id, self._rules)
        held = await self._outbox.get(ref)
        retries = 0
        if dry_run:
            outcome = "known" if held is not None else "new"
        elif held is not None and held.state is not None and _holds(held.state, event):
            outcome = Outcome.DUPLICATE.value
        else:
            whole, retries = await _patiently(
                partial(_read, api, event.alert_id),
                f"Opsgenie alert {event.alert_id}",
                reference_id=ref,
            )
            if whole is None:
                outcome = "deleted"  # between listing and reading: nothing left to recover
            else:
                try:
                    self._event(whole)
                except PayloadError as error:
                    return _invalid(event.alert_id, error), retries
                incoming = Incoming.fetched(
                    whole,
                    reference_id=ref,
                    alert_id=event.alert_id,
                    service_id=service_id,
                    received_at=self._clock(),
                )
                outcome = (await self._outbox.accept(incoming)).value
        log.info(
            "alert backfilled",
            extra={
                "reference_id": ref,
                "action": Action.FETCHED.value,
                "outcome": outcome,
                "dry_run": dry_run,
            },
        )
        return {"reference_id": ref, "alert_id": event.alert_id, "outcome": outcome}, retries

    def _event(self, data: dict[str, Any]) -> OpsgenieEvent:
        return event_from_api_alert(data, received_ns=int(self._clock() * 1e9))


async def _patiently(ask: Callable[[], Awaitable[T]], what: str, **context: Any) -> tuple[T, int]:
    """``ask()``'s answer and how many retries it took; a 429/5xx/network error is asked
    again, up to ``ATTEMPTS`` times, and any other refusal fails the run with a 502."""
    attempt = 0
    while True:
        try:
            return await ask(), attempt
        except OpsgenieRetryable as error:
            if attempt + 1 >= ATTEMPTS:
                raise OpsgenieUnavailable(
                    f"{what} failed {ATTEMPTS} times: {error.message}"
                ) from None
            delay = retry_delay(attempt, error.retry_after, random.random)
            log.warning(
                f"{what} failed, retrying",
                extra={**context, "error": error.message, "delay": delay},
            )
            await asyncio.sleep(delay)
            attempt += 1
        except OpsgenieAPIError as error:
            raise OpsgenieUnavailable(f"{what} failed: {error.message}") from None


def _created_ms(listed: dict[str, Any]) -> int | None:
    """A listed alert's ``createdAt`` in epoch ms (Opsgenie's query unit), if readable."""
    with contextlib.suppress(PayloadError):
        return parse_iso_ns(listed.get("createdAt"), field="createdAt") // 1_000_000
    return None


def _holds(state: AlertState, listed: OpsgenieEvent) -> bool:
    """True when the relay already knows all Opsgenie would tell: the listed copy changes
    nothing, and the details the list leaves out were learned (a state folded from a
    list item alone, by a backfill before full reads, lacks them and is read again)."""
    return state.details is not None and fold(state, listed) == state


async def _read(api: AlertAPI, alert_id: str) -> dict[str, Any] | None:
    """The whole alert, or ``None`` once Opsgenie no longer has it."""
    try:
        return await api.get_alert(alert_id)
    except OpsgenieNotFound:
        return None


def _invalid(alert_id: object, error: PayloadError) -> dict[str, Any]:
    log.warning(
        "backfill skipped an unusable alert",
        extra={"action": Action.FETCHED.value, "outcome": "invalid", "error": error.message},
    )
    return {"reference_id": None, "alert_id": alert_id, "outcome": "invalid"}
