"""Fill gaps in an alert's state from Opsgenie's Alert API before DX sees the incident.

Webhooks are partial: an ``Escalate`` carries only ``alertId``, and a ``Close`` whose
``Create`` never arrived has no ``createdAt`` and no priority. When a pending reference
lacks what the incident needs and its service object has an API key, the worker fetches
``GET /v2/alerts/{id}``, stores the answer *durably* (``store.accept`` of a ``Fetched``
event) so the event log and every later delivery agree, and folds it into the pending
state, so the same turn of the worker delivers the enriched incident.

This runs in the delivery worker, never at intake: Opsgenie being slow or down delays
nothing but the enrichment itself, and only a bounded number of times, after which the
relay sends what it has.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

import httpx

from service.backoff import Backoff
from service.errors import (
    OpsgeniePermanent,
    OpsgenieRetryable,
    PayloadError,
    RelayError,
    StoreUnavailable,
)
from service.metrics import Metrics
from service.opsgenie import OpsgenieEvent, event_from_api_alert
from service.opsgenie_api import AlertAPI, ServiceObjects, api_for
from service.store import Attempt, Incoming, Pending, Store
from service.translate import AlertState, fold

log = logging.getLogger("service.enrichment")

#: Rounds a reference may wait for Opsgenie (429, 5xx, network) before it goes out as is.
MAX_ATTEMPTS = 3
#: Longest wait for Opsgenie worth holding an incident back; longer: send what we have.
MAX_WAIT_SECONDS = 60.0


def needs_enrichment(state: AlertState) -> bool:
    """True when the incident would go out without a start time, a priority or services.

    ``started_at`` would fall back to first sight, ``priority`` would be missing, and
    without a known tag set the relay must omit ``services`` and ``metadata``.
    """
    if state.deleted:
        return False
    return state.created_at_ns is None or state.priority is None or not state.tags.known


class Enricher:
    """Called by the worker before rendering; says what to deliver now, if anything."""

    def __init__(
        self,
        *,
        store: Store,
        objects: ServiceObjects,
        http: httpx.AsyncClient,
        metrics: Metrics,
        max_backoff: float,
        max_attempts: int = MAX_ATTEMPTS,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._objects = objects
        self._http = http
        self._metrics = metrics
        # 2 s doubling, at least 0.5 s; never longer than an incident is worth holding.
        self._backoff = Backoff(
            base=1.0,
            cap=min(max_backoff, MAX_WAIT_SECONDS),
            floor=0.5,
            retry_after_cap=MAX_WAIT_SECONDS,
        )
        self._max_attempts = max_attempts
        self._clock = clock
        self._rng = rng

    async def __call__(self, pending: Pending) -> Pending | None:
        """The reference to deliver now: ``pending`` with the alert Opsgenie gave folded
        in, or as it is when enrichment cannot help. ``None``: do not send it yet; it
        waits for Opsgenie, and the store holds it until then.

        Never raises: an exception here would leave the reference due and unrecorded,
        and the worker would claim it again at once, forever.
        """
        try:
            return await self._enrich(pending)
        except Exception:
            self._metrics.enrichment.labels("permanent").inc()
            log.exception(
                "enrichment failed unexpectedly; delivering what the relay has",
                extra={"reference_id": pending.reference_id, "outcome": "permanent"},
            )
            return pending

    async def _enrich(self, pending: Pending) -> Pending | None:
        state = pending.state
        if not needs_enrichment(state):
            return pending
        api = await self._api(pending)
        if api is None:
            return self._skip(pending, "no service object with a usable Opsgenie API key")
        if pending.attempts >= self._max_attempts:
            return self._skip(pending, "attempts exhausted")
        try:
            data = await api.get_alert(state.alert_id)
            received_at = self._clock()
            # Read now, so an unusable answer fails here and is never stored. Read as the
            # store reads it back: the same receipt time and the reference's alert id.
            event = replace(
                event_from_api_alert(data, received_ns=int(received_at * 1e9)),
                alert_id=state.alert_id,
            )
        except OpsgenieRetryable as error:
            return await self._retry_later(pending, error)
        except (OpsgeniePermanent, PayloadError) as error:
            # 404: deleted in Opsgenie; 401/403: the key is wrong. Neither gets better.
            self._metrics.enrichment.labels("permanent").inc()
            log.warning(
                "enrichment failed; delivering what the relay has",
                extra={
                    "reference_id": pending.reference_id,
                    "outcome": "permanent",
                    "http_status": getattr(error, "http_status", None),
                    "error": error.message,
                },
            )
            return pending
        incoming = Incoming.fetched(
            data,
            reference_id=pending.reference_id,
            alert_id=state.alert_id,
            service_id=pending.service_id,
            received_at=received_at,
        )
        try:
            outcome = await self._store.accept(incoming)
        except StoreUnavailable as error:
            # Unstored, the enriched state would be one DX holds and the relay cannot
            # rebuild: later events would fold without it and take it back from DX.
            log.warning(
                "enriched state not stored; delivering what the relay has",
                extra={"reference_id": pending.reference_id, "error": error.message},
            )
            return pending
        self._metrics.enrichment.labels("success").inc()
        log.info(
            "alert enriched from the Opsgenie API",
            extra={"reference_id": pending.reference_id, "outcome": outcome.value},
        )
        return _folded(pending, event)

    async def _api(self, pending: Pending) -> AlertAPI | None:
        """A client for the alert's account; ``None`` without a service object or a key."""
        if pending.service_id is None:
            return None
        try:
            service = await self._objects.get_service_object(pending.service_id)
            return None if service is None else api_for(self._http, service)
        except RelayError as error:  # the store is down, or the key no longer decrypts
            log.warning(
                "service object unusable for enrichment",
                extra={
                    "reference_id": pending.reference_id,
                    "service_id": pending.service_id,
                    "error": error.message,
                },
            )
            return None

    def _skip(self, pending: Pending, why: str) -> Pending:
        self._metrics.enrichment.labels("skipped").inc()
        log.info(
            "enrichment skipped",
            extra={"reference_id": pending.reference_id, "outcome": "skipped", "reason": why},
        )
        return pending

    async def _retry_later(self, pending: Pending, error: OpsgenieRetryable) -> Pending | None:
        """Hold the reference until Opsgenie can answer (``None``), or send it as is.

        A 429 names the window to wait out (``retry_after``, at most a minute), and the
        store holds the reference that long: asked again inside the window, Opsgenie only
        refuses again, and each refusal spends one of the few attempts before DX gets an
        incident started at receipt, without priority. The attempts bound the hold.
        """
        self._metrics.enrichment.labels("retryable").inc()
        retry_after = error.retry_after
        attempt_no = pending.attempts + 1
        if attempt_no >= self._max_attempts or (retry_after or 0.0) > MAX_WAIT_SECONDS:
            log.warning(
                "Opsgenie unavailable; delivering what the relay has",
                extra={"reference_id": pending.reference_id, "error": error.message},
            )
            return pending
        delay = self._backoff.delay(attempt_no, retry_after, rng=self._rng)
        now = self._clock()
        status = error.http_status
        await self._store.record_retry(
            pending,
            request=None,
            next_attempt_at=now + delay,
            attempt=Attempt(
                at=now,
                version=pending.version,
                outcome="enrichment_retry",
                http_status=status,
                error_code=f"opsgenie_{status}" if status else "opsgenie_network",
                detail=error.message[:1000],
                duration_seconds=0.0,
            ),
        )
        log.warning(
            "enrichment will be retried",
            extra={"reference_id": pending.reference_id, "outcome": "retry", "delay": delay},
        )
        return None


def _folded(pending: Pending, event: OpsgenieEvent) -> Pending:
    """``pending`` with the fetched alert folded in, still at the version it was claimed as.

    The stored copy of the alert reaches the store's own state when the store next folds
    its new events (commit order does not matter there); the claim after that renders the
    same body, which DX already holds, so it costs no request.
    """
    return replace(pending, state=fold(pending.state, event))


__all__ = ["MAX_ATTEMPTS", "Enricher", "needs_enrichment"]
