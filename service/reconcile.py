"""Catch up on webhooks that never arrived, without an operator: the automatic reconcile.

A webhook can be lost for good (the relay down, the network, a sender that does not
retry). Every ``RELAY_RECONCILE_INTERVAL`` the relay asks each service object's account,
within a request budget, about two kinds of gap:

- alerts created since its previous run (with an overlap, within a bounded window) that
  it never saw, or holds older than listed: each is read whole (the list leaves out
  details) and stored as a ``Fetched`` event;
- alerts it holds as open, whose close or acknowledge it may have missed: read back
  with ``GET /v2/alerts/{id}``, the longest unchecked first.

What it reads folds like any fetched alert: stored by content hash (the same answer is
stored once) and folded by ``updatedAt``, so an older copy read after a webhook's newer
news changes nothing, and a close is never taken back. The delivery worker sends it.

A ``429`` stops that account's run until the next interval, or until Opsgenie's window
(``Retry-After``, else ``X-RateLimit-Period-In-Sec``) is over if that is later; a ``5xx``
or a network error stops it until the next interval. Nothing is retried within a run.

With several replicas on one database, one runs it at a time: ``lease`` says whether this
process may run now (SQLite has one process, so its lease always holds; a PostgreSQL
backend plugs an advisory lock in there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import httpx

from service.alert_api import AlertAPI
from service.errors import (
    OpsgenieAuthError,
    OpsgenieNotFound,
    OpsgeniePermanent,
    OpsgenieRetryable,
    PayloadError,
    SecretKeyError,
    StoreUnavailable,
)
from service.mapping import Rules
from service.metrics import Metrics
from service.opsgenie import OpsgenieEvent, event_from_api_alert
from service.opsgenie_api import api_for
from service.singleton import Lease, sole_runner
from service.store import (
    Delivery,
    Incoming,
    Outcome,
    Reconcilable,
    ServiceObject,
)
from service.translate import AlertState, fold, reference_id

log = logging.getLogger("service.reconcile")

#: The listing never reaches further back than this many intervals (or the first run's
#: lookback, if longer): a relay down for a day is the operator's ``backfill`` to repair.
WINDOW_INTERVALS = 3
#: Each listing starts this long before the previous one did: Opsgenie's search index
#: can lag behind an alert's creation, and an alert listed twice costs nothing.
OVERLAP_SECONDS = 60.0
#: Opsgenie's largest page; and the alerts one query can list (offset + limit).
PAGE_SIZE = 100


def created_since(api: AlertAPI, since: float) -> str:
    """The account's search for alerts created after ``since`` (epoch seconds): times are
    in milliseconds and ``>`` is strict, so the millisecond of ``since`` itself counts."""
    return api.created_after(math.floor(since * 1000) - 1)


class Ledger(Reconcilable, Protocol):
    """The part of the store a reconcile needs."""

    async def list_service_objects(self) -> list[ServiceObject]: ...
    async def get(self, reference_id: str) -> Delivery | None: ...
    async def accept(self, incoming: Incoming) -> Outcome: ...


@dataclass(slots=True)
class Tally:
    """One account's run, as its log line reports it."""

    requests: int = 0
    listed: int = 0
    missing: int = 0
    changed: int = 0
    checked: int = 0
    gone: int = 0
    checked_refs: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: value for name, value in asdict(self).items() if isinstance(value, int)}


class Reconciler:
    """Reconciles every service object with a key each ``interval_seconds``; started and
    stopped by the app. ``budget`` bounds the Opsgenie requests of one account's run
    (list pages and whole reads alike)."""

    def __init__(
        self,
        *,
        store: Ledger,
        http: httpx.AsyncClient,
        rules: Rules,
        metrics: Metrics,
        wake: Callable[[], None],
        interval_seconds: float,
        budget: int,
        lookback_seconds: float,
        clock: Callable[[], float] = time.time,
        lease: Lease = sole_runner,
    ) -> None:
        self._store = store
        self._http = http
        self._rules = rules
        self._metrics = metrics
        self._wake = wake
        self._interval = interval_seconds
        self._budget = budget
        self._lookback = lookback_seconds
        self._clock = clock
        self._lease = lease
        #: Per service object: when its last complete listing started.
        self._listed_from: dict[str, float] = {}
        #: Per service object: not before then (Opsgenie asked to wait).
        self._resume_at: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconcile")

    async def stop(self) -> None:
        """Stop before the next Opsgenie request, never cancelling a store write mid-way
        (its future would be answered to nobody)."""
        if self._task is None:
            return
        self._stopping.set()
        await self._task
        self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
            if self._stopping.is_set():
                break
            try:
                await self.run_once()
            except Exception:  # the next interval tries again; a dead task never would
                log.exception("reconcile failed unexpectedly")

    async def run_once(self) -> None:
        """Reconcile every service object with a key, one after the other, if this
        process holds the lease."""
        async with self._lease() as held:
            if not held:
                log.debug("reconcile skipped: another replica holds the lease")
                return
            try:
                services = await self._store.list_service_objects()
            except StoreUnavailable as error:
                log.warning("reconcile skipped: store unavailable", extra={"error": error.message})
                return
            for service in services:
                if self._stopping.is_set():
                    return
                if service.sealed_key is not None:
                    await self.reconcile(service)

    async def reconcile(self, service: ServiceObject) -> str | None:
        """One account's run; its outcome, or ``None`` when it did not run (no key, or
        Opsgenie's window not over yet)."""
        now = self._clock()
        if self._resume_at.get(service.id, 0.0) > now:
            return None
        tally = Tally()
        outcome = "refused"
        error_text: str | None = None
        try:
            api = api_for(self._http, service)
            if api is None:
                return None
            done = await self._missing(api, service, tally, now)
            done = done and await self._open(api, service, tally, now)
            outcome = "complete" if done else "budget_spent"
        except (SecretKeyError, OpsgeniePermanent) as error:  # a key to fix, or a bad answer
            if not isinstance(error, SecretKeyError):
                self._count_error(error)
            error_text = error.message
        except OpsgenieRetryable as error:
            self._count_error(error)
            outcome = "rate_limited" if error.http_status == 429 else "unavailable"
            self._resume_at[service.id] = now + (error.retry_after or 0.0)
            error_text = error.message
        except StoreUnavailable as error:
            outcome, error_text = "failed", error.message
        finally:
            with contextlib.suppress(StoreUnavailable):  # the next run checks them again
                await self._store.mark_checked(tally.checked_refs, at=now)
        self._metrics.reconcile_runs.labels(outcome).inc()
        log.log(
            logging.INFO if outcome in ("complete", "budget_spent") else logging.WARNING,
            "reconcile finished",
            extra={
                "service_id": service.id,
                "outcome": outcome,
                **tally.counts(),
                **({"error": error_text} if error_text is not None else {}),
            },
        )
        return outcome

    def _window_start(self, service_id: str, now: float) -> float:
        """Where this run's listing starts: the previous complete listing's start, less
        the overlap; never further back than the bounded window."""
        furthest = now - max(self._lookback, self._interval * WINDOW_INTERVALS)
        previous = self._listed_from.get(service_id)
        if previous is None:
            return now - self._lookback
        return max(previous - OVERLAP_SECONDS, furthest)

    def _spend(self, tally: Tally) -> bool:
        """Take one request from the budget; ``False`` when it is spent, or the relay stops."""
        if tally.requests >= self._budget or self._stopping.is_set():
            return False
        tally.requests += 1
        return True

    async def _missing(
        self, api: AlertAPI, service: ServiceObject, tally: Tally, now: float
    ) -> bool:
        """List the alerts created in the window, and fold in each one the relay does not
        hold as listed; ``True`` once the whole window was listed."""
        query = created_since(api, self._window_start(service.id, now))
        offset = 0
        while True:
            if offset + PAGE_SIZE > api.list_window or not self._spend(tally):
                return False
            page = await api.list_alerts(query, limit=PAGE_SIZE, offset=offset)
            tally.listed += len(page.alerts)
            for listed in page.alerts:
                if not await self._listed(api, service, listed, tally):
                    return False
            if not page.alerts or not (page.has_more or len(page.alerts) >= PAGE_SIZE):
                self._listed_from[service.id] = now
                return True
            offset += PAGE_SIZE

    async def _listed(
        self, api: AlertAPI, service: ServiceObject, listed: dict[str, Any], tally: Tally
    ) -> bool:
        """Read one listed alert whole if the relay lacks what it says; ``False`` when
        the budget ran out before it could."""
        try:
            event = event_from_api_alert(listed, received_ns=int(self._clock() * 1e9))
        except PayloadError as error:
            log.warning(
                "reconcile skipped an unusable listed alert",
                extra={"service_id": service.id, "error": error.message},
            )
            return True
        ref = reference_id(event.alert_id, self._rules)
        held = await self._store.get(ref)
        if held is not None and held.state is not None and _holds(held.state, event):
            return True
        if not self._spend(tally):
            return False
        try:
            whole = await api.get_alert(event.alert_id)
        except OpsgenieNotFound:  # deleted since it was listed: nothing to recover
            return True
        tally.checked_refs.append(ref)
        state = None if held is None else held.state
        if not await self._fold(whole, ref, event.alert_id, service, state):
            return True
        if held is None:
            tally.missing += 1
        else:
            tally.changed += 1
        self._metrics.reconcile_alerts.labels("missing" if held is None else "changed").inc()
        return True

    async def _open(self, api: AlertAPI, service: ServiceObject, tally: Tally, now: float) -> bool:
        """Read back the open alerts checked longest ago, as many as the budget leaves;
        ``True`` when every open alert fit in it."""
        left = self._budget - tally.requests
        if left <= 0:
            return False
        read = set(tally.checked_refs)  # read whole by this run's listing already
        found = await self._store.open_references(service.id, limit=left + len(read) + 1)
        refs = [ref for ref in found if ref.reference_id not in read]
        for ref in refs[:left]:
            if not self._spend(tally):
                return False
            try:
                whole = await api.get_alert(ref.alert_id)
            except OpsgenieNotFound:  # deleted in Opsgenie: nothing more will come
                tally.gone += 1
            else:
                if await self._fold(whole, ref.reference_id, ref.alert_id, service, ref.state):
                    tally.changed += 1
                    self._metrics.reconcile_alerts.labels("changed").inc()
            tally.checked += 1
            tally.checked_refs.append(ref.reference_id)
        return len(refs) <= left

    async def _fold(
        self,
        whole: dict[str, Any],
        ref: str,
        alert_id: str,
        service: ServiceObject,
        held: AlertState | None,
    ) -> bool:
        """Store an alert read whole, unless it tells nothing the relay does not hold;
        ``True`` when it did tell something.

        Folding is monotone: an answer that changes nothing in the state ``held`` (read
        from the store, perhaps before its latest events were folded) changes nothing in
        any later state either, so it need not be stored: a run over unchanged alerts
        writes nothing.
        """
        received_at = self._clock()
        try:
            read = event_from_api_alert(whole, received_ns=int(received_at * 1e9))
            event = replace(read, alert_id=alert_id)  # as the store reads it back
        except PayloadError as error:
            log.warning(
                "reconcile skipped an unusable alert",
                extra={"reference_id": ref, "error": error.message},
            )
            return False
        if held is not None and fold(held, event) == held:
            return False
        incoming = Incoming.fetched(
            whole,
            reference_id=ref,
            alert_id=alert_id,
            service_id=service.id,
            received_at=received_at,
        )
        if await self._store.accept(incoming) is not Outcome.ACCEPTED:
            return False  # the same answer was stored before
        self._wake()
        return True

    def _count_error(self, error: OpsgenieRetryable | OpsgeniePermanent) -> None:
        self._metrics.reconcile_errors.labels(error_kind(error)).inc()


def error_kind(error: OpsgenieRetryable | OpsgeniePermanent) -> str:
    """The ``kind`` label of a failed request: by status, whatever the message says."""
    status = error.http_status
    if status == 429:
        return "http_429"
    if status is not None and 500 <= status <= 599:
        return "http_5xx"
    if isinstance(error, OpsgenieAuthError):
        return "auth"
    if isinstance(error, OpsgenieRetryable):
        return "network"  # a timeout or no connection: no answer at all
    return "other"


def _holds(state: AlertState, listed: OpsgenieEvent) -> bool:
    """True when the listed copy changes nothing and the details the list leaves out were
    learned (a state from webhooks without details is read whole once)."""
    return state.details is not None and fold(state, listed) == state
