"""The delivery worker: makes DX hold the latest state of every pending reference.

The loop claims due references from the store, launches one task per reference and
records what DX said, as ``delivery_policy`` decides. The schedule lives in the store
(``next_attempt_at``), so a restart resumes where the last process stopped. Per
reference there is at most one request in flight, and it always carries the newest
state, so events that pile up while DX is slow coalesce into one request.

Where several replicas share the store (``SharedClaims``: PostgreSQL), a claim is a lease:
the worker renews the leases of its deliveries in flight, and a result that comes after
the reference passed to another replica (``LeaseLost``) is dropped and counted, never
written over the newer delivery. It then sleeps on the store's notifications rather than
polling, and DX's pace and pause are the ``Gate`` the app hands it (``service.dx_gate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import delivery_policy as policy
from service.delivery_leases import Leases
from service.delivery_policy import Delivered, Failed, PauseAll, Retry
from service.delivery_send import Sender
from service.dx import Answer, DXClient
from service.dx_gate import Gate, LocalGate
from service.errors import DeliveryError, LeaseLost
from service.mapping import Rules, wanted
from service.metrics import Metrics
from service.pause import Pause
from service.rate_limit import RateLimiter
from service.store import Pending, SharedClaims, Store
from service.translate import Account, render

log = logging.getLogger("service.delivery")

AccountLookup = Callable[[str | None], Awaitable[Account]]
#: Before rendering: the reference to deliver (enriched, maybe), or ``None``: not now.
Enrich = Callable[[Pending], Awaitable[Pending | None]]
#: The longest the worker sleeps with nothing due. Alone on its store every change wakes
#: it; with a shared store, notifications do, and this bounds how late it sees what
#: none announces (another replica's lease running out).
IDLE_SECONDS = 1.0
SHARED_IDLE_SECONDS = 5.0


class Worker:
    """Claims due references, sends them, records what DX said."""

    def __init__(
        self,
        *,
        store: Store,
        dx: DXClient | None,
        rules: Rules,
        accounts: AccountLookup,
        metrics: Metrics,
        concurrency: int,
        rate_limit: float,
        max_backoff: float,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        enrich: Enrich | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._enrich = enrich
        self._store = store
        self._dx = dx
        self._rules = rules
        self._accounts = accounts
        self._metrics = metrics
        # References in hand: twice the requests DX may have open, so a slot freed by
        # an answer is taken at once, not after that delivery's record and the next
        # claim have each waited for a commit.
        self._claim_limit = 2 * concurrency
        self._backoff = policy.stored_backoff(max_backoff)
        self._gate = (
            gate
            if gate is not None
            else LocalGate(
                RateLimiter(rate_limit),
                Pause(metrics.paused, configured=dx is not None, max_backoff=max_backoff),
            )
        )
        self._sender = Sender(
            self._gate, sending=asyncio.Semaphore(concurrency), metrics=metrics, rng=rng
        )
        self._shared = store if isinstance(store, SharedClaims) else None
        self._idle = IDLE_SECONDS if self._shared is None else SHARED_IDLE_SECONDS
        self._clock = clock
        self._rng = rng
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._inflight: dict[str, asyncio.Task[None]] = {}
        #: Each delivery in flight's claim, for the lease renewals (``SharedClaims``).
        self._claims: dict[str, Pending] = {}
        self._leases: Leases | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def paused_reason(self) -> str | None:
        return self._gate.reason(self._clock())

    def wake(self) -> None:
        """New work may be due; called after intake commits a change.

        Intake calls this for every stored webhook, so a wake that cannot lead to a
        claim is dropped here rather than costing the loop a turn of the worker: with no
        DX there is nothing to deliver, and with every slot taken the next finished
        delivery wakes the worker anyway.
        """
        if self._dx is None or self._free_slots() <= 0:
            return
        self._wakeup.set()

    def _free_slots(self) -> int:
        """References the worker may still take on."""
        return self._claim_limit - len(self._inflight)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="delivery-worker")
        if self._shared is not None and self._dx is not None:
            self._leases = Leases(
                self._shared, wake=self.wake, in_flight=self._in_flight, lost=self._lost
            )
            self._leases.start()

    async def stop(self, deadline: float) -> None:
        """Stop claiming, give in-flight requests ``deadline`` seconds, leave the rest.

        A second call waits for the first instead of granting a second deadline: the
        server starts stopping the worker when shutdown begins, beside its own drain of
        open requests, and the app's lifespan stops it again once that drain is over.
        """
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop(deadline))
        await self._stopped

    async def _stop(self, deadline: float) -> None:
        self._stopping = True
        self._wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        tasks = list(self._inflight.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=deadline)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("shutdown left requests unfinished", extra={"count": len(late)})
        if self._leases is not None:  # last: the drain's deliveries keep their leases
            await self._leases.stop()

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()  # before looking, so a wake during the tick is not lost
            try:
                delay = await self._tick()
            except Exception:  # the worker must outlive any one bad row or store hiccup
                log.exception("delivery loop error")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    async def _tick(self) -> float:
        """Start what is due; return how long to wait for the next thing to do."""
        if self._dx is None:
            return 5.0
        now = self._clock()
        until = await self._gate.paused_until(now)
        if now < until:
            return until - now
        free = self._free_slots()
        if free > 0:
            for pending in await self._store.due(
                now=now, limit=free, exclude=tuple(self._inflight)
            ):
                self._launch(pending)
        if self._free_slots() <= 0:
            return self._idle  # a finishing delivery sets the wakeup
        next_due = await self._store.next_due_at()
        if next_due is None:
            return self._idle
        return min(self._idle, max(next_due - self._clock(), 0.0)) or 0.05

    def _launch(self, pending: Pending) -> None:
        task = asyncio.create_task(self._guarded(pending), name=f"deliver {pending.reference_id}")
        self._inflight[pending.reference_id] = task
        self._claims[pending.reference_id] = pending

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(pending.reference_id, None)
            self._claims.pop(pending.reference_id, None)
            self._wakeup.set()

        task.add_done_callback(done)

    async def _guarded(self, pending: Pending) -> None:
        """A bug or a store hiccup in one delivery must not stop the others, nor leave the
        reference due at once (the worker would spin on it): schedule it with backoff."""
        try:
            await self._deliver(pending)
        except LeaseLost:
            self._lost(pending.reference_id, "its result was not recorded")
        except Exception as exc:
            log.exception(
                "delivery failed unexpectedly",
                extra={"reference_id": pending.reference_id, "outcome": "error"},
            )
            retry = policy.after_crash(
                pending, exc, now=self._clock(), backoff=self._backoff, rng=self._rng
            )
            with contextlib.suppress(Exception):
                await self._store.record_retry(
                    pending,
                    request=None,
                    next_attempt_at=retry.next_attempt_at,
                    attempt=retry.attempt,
                )

    def _in_flight(self) -> dict[str, tuple[Pending, asyncio.Task[None]]]:
        return {ref: (self._claims[ref], task) for ref, task in self._inflight.items()}

    def _lost(self, ref: str, what: str) -> None:
        """The claim passed to another replica (this one stalled past its lease): that
        replica delivers the reference now, from the newest state."""
        self._metrics.lease_lost.inc()
        log.warning(
            f"claim passed to another replica; {what}",
            extra={"reference_id": ref, "outcome": "lease_lost"},
        )

    async def _deliver(self, pending: Pending) -> None:
        assert self._dx is not None
        dx = self._dx
        if self._enrich is not None:
            enriched = await self._enrich(pending)
            if enriched is None:
                return  # waits for Opsgenie; the store holds it until then
            pending = enriched
        state = pending.state
        ref = pending.reference_id
        body: dict[str, Any]
        send: Callable[[], Awaitable[Answer]]
        if state.deleted:
            body, method = {"reference_id": ref}, "delete"
            send = lambda: dx.delete(ref)  # noqa: E731
        elif not pending.ever_delivered and not wanted(state, self._rules):
            await self._store.record_filtered(pending)
            self._metrics.filtered.inc()
            log.info("alert filtered out", extra={"reference_id": ref, "outcome": "filtered"})
            return
        else:
            upsert = render(state, self._rules, await self._accounts(pending.service_id))
            body, method = dict(upsert), "upsert"
            send = lambda: dx.upsert(upsert)  # noqa: E731
        if body == pending.delivered_request:
            # DX confirmed this already: a note, a replay, or an event after a delete
            # (a late note, a re-sent Delete) that would only ask DX to delete nothing.
            await self._record_unchanged(pending, body)
            return

        started = time.monotonic()
        try:
            answer = await self._sender.send(send, ref, method)
        except DeliveryError as error:
            decision = self._decide(pending, error, None, time.monotonic() - started)
            await self._record(pending, body, method, decision, error.body)
        else:
            decision = self._decide(pending, None, answer, time.monotonic() - started)
            await self._record(pending, body, method, decision, answer.body)

    async def _record_unchanged(self, pending: Pending, body: dict[str, Any]) -> None:
        """The new version asks for what DX already holds: no request."""
        await self._store.record_delivered(
            pending,
            request=body,
            response="",
            attempt=policy.unchanged(pending, now=self._clock()),
        )
        log.info(
            "DX already holds this state",
            extra={"reference_id": pending.reference_id, "outcome": "unchanged"},
        )

    def _decide(
        self, pending: Pending, error: DeliveryError | None, answer: Answer | None, took: float
    ) -> policy.Decision:
        return policy.decide(
            pending,
            error,
            http_status=None if answer is None else answer.status_code,
            now=self._clock(),
            took=took,
            backoff=self._backoff,
            rng=self._rng,
        )

    async def _record(
        self,
        pending: Pending,
        body: dict[str, Any],
        method: str,
        decision: policy.Decision,
        response: str | None,
    ) -> None:
        """Write what the policy decided about DX's answer; say it in logs and metrics."""
        ref = pending.reference_id
        now = decision.attempt.at
        if isinstance(decision, Delivered):
            await self._gate.resume()
            await self._store.record_delivered(
                pending, request=body, response=response or "", attempt=decision.attempt
            )
            if pending.pending_since is not None:
                self._metrics.lag.observe(max(0.0, now - pending.pending_since))
            log.info(
                "delivered to DX",
                extra={
                    "reference_id": ref,
                    "action": method,
                    "version": pending.version,
                    "outcome": "delivered",
                },
            )
            return
        if isinstance(decision, Failed):
            await self._store.record_failed(
                pending, request=body, response=response, attempt=decision.attempt
            )
            log.error(
                "DX rejected the incident; marked failed",
                extra={
                    "reference_id": ref,
                    "action": method,
                    "outcome": "failed",
                    "code": decision.attempt.error_code,
                },
            )
            return
        if isinstance(decision, PauseAll):
            seconds = await self._gate.pause(decision.error, now=now)
            log.error(
                f"{decision.error.message}: all deliveries paused",
                extra={
                    "reference_id": ref,
                    "action": method,
                    "outcome": "paused",
                    "code": decision.error.code,
                    "pause_seconds": seconds,
                },
            )
            decision = Retry(decision.attempt, now + seconds)
        self._metrics.retries.inc()
        await self._store.record_retry(
            pending,
            request=body,
            response=response,
            next_attempt_at=decision.next_attempt_at,
            attempt=decision.attempt,
        )
        log.warning(
            "DX delivery will be retried",
            extra={
                "reference_id": ref,
                "action": method,
                "outcome": "retry",
                "next_attempt_at": decision.next_attempt_at,
            },
        )
