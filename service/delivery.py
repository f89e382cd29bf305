"""The delivery worker: makes DX hold the latest state of every pending reference.

The schedule lives in the store (``next_attempt_at``), so a restart resumes where the
last process stopped; tenacity drives only the few quick in-process attempts of one
request. Per reference there is at most one request in flight, and it always carries
the newest state, so events that pile up while DX is slow coalesce into one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from service.dx import DXClient
from service.errors import (
    DeliveryError,
    DXAuthError,
    DXRedirected,
    DXUnusable,
    PermanentError,
    RetryableError,
)
from service.mapping import Rules, wanted
from service.metrics import Metrics, code_label
from service.store import Attempt, Pending, Store
from service.translate import Account, render

log = logging.getLogger("service.delivery")

#: Longest ``Retry-After`` worth waiting for inside one attempt; longer goes to the store.
IN_PROCESS_WAIT_LIMIT = 5.0
IN_PROCESS_ATTEMPTS = 3


def next_attempt_delay(
    attempt: int, retry_after: float | None, *, cap: float, rng: Callable[[], float]
) -> float:
    """Seconds until the next stored attempt: ``Retry-After`` if DX gave one, else
    exponential backoff with full jitter (tenacity's ``wait_random_exponential``)."""
    if retry_after is not None:
        return max(retry_after, 0.0)
    ceiling = min(cap, 2.0 ** min(attempt, 30))
    return max(0.5, rng() * ceiling)


class RateLimiter:
    """A token bucket toward DX; a 429 holds every sender back for ``Retry-After``."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rate = rate
        self._sleep = sleep
        self._burst = max(1.0, rate)
        self._tokens = self._burst
        self._clock = clock
        self._stamp = clock()
        self._hold_until = 0.0
        self._lock = asyncio.Lock()

    def hold(self, seconds: float) -> None:
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._hold_until:
                    await self._sleep(self._hold_until - now)
                    continue
                self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self._rate)


AccountLookup = Callable[[str | None], Awaitable[Account]]


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
        enrich: Callable[[Pending], Awaitable[bool]] | None = None,
    ) -> None:
        self._enrich = enrich
        self._store = store
        self._dx = dx
        self._rules = rules
        self._accounts = accounts
        self._metrics = metrics
        self._sending = asyncio.Semaphore(concurrency)
        # References in hand: twice the requests DX may have open, so a slot freed by
        # an answer is taken at once, not after that delivery's record and the next
        # claim have each waited for a commit.
        self._claim_limit = 2 * concurrency
        self._limiter = RateLimiter(rate_limit)
        self._max_backoff = max_backoff
        self._clock = clock
        self._rng = rng
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._pause: DXUnusable | None = None  # why delivery is paused, until _paused_until
        self._pauses = 0  # in a row, for the backoff
        self._paused_until = 0.0
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Task[None] | None = None
        metrics.paused.labels("not_configured").set(0 if dx else 1)

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def paused_reason(self) -> str | None:
        if self._dx is None:
            return "DX is not configured (RELAY_DX_BASE_URL and RELAY_DX_TOKEN)"
        if self._pause is not None and self._clock() < self._paused_until:
            return f"{self._pause.message}; retrying with backoff"
        return None

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
        if now < self._paused_until:
            return self._paused_until - now
        free = self._free_slots()
        if free > 0:
            for pending in await self._store.due(
                now=now, limit=free, exclude=tuple(self._inflight)
            ):
                self._launch(pending)
        if self._free_slots() <= 0:
            return 1.0  # a finishing delivery sets the wakeup
        next_due = await self._store.next_due_at()
        if next_due is None:
            return 1.0
        return min(1.0, max(next_due - self._clock(), 0.0)) or 0.05

    def _launch(self, pending: Pending) -> None:
        task = asyncio.create_task(self._guarded(pending), name=f"deliver {pending.reference_id}")
        self._inflight[pending.reference_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(pending.reference_id, None)
            self._wakeup.set()

        task.add_done_callback(done)

    async def _guarded(self, pending: Pending) -> None:
        """A bug or a store hiccup in one delivery must not stop the others, nor leave the
        reference due at once (the worker would spin on it): schedule it with backoff."""
        try:
            await self._deliver(pending)
        except Exception as exc:
            log.exception(
                "delivery failed unexpectedly",
                extra={"reference_id": pending.reference_id, "outcome": "error"},
            )
            now = self._clock()
            delay = next_attempt_delay(
                pending.attempts + 1, None, cap=self._max_backoff, rng=self._rng
            )
            with contextlib.suppress(Exception):
                await self._store.record_retry(
                    pending,
                    request=None,
                    next_attempt_at=now + delay,
                    attempt=Attempt(
                        at=now,
                        version=pending.version,
                        outcome="error",
                        http_status=None,
                        error_code="internal_error",
                        detail=type(exc).__name__,
                        duration_seconds=0.0,
                    ),
                )

    async def _deliver(self, pending: Pending) -> None:
        assert self._dx is not None
        dx = self._dx
        state = pending.state
        ref = pending.reference_id
        body: dict[str, Any]
        send: Callable[[], Awaitable[Any]]
        if self._enrich is not None and not await self._enrich(pending):
            return  # enrichment stored a newer version (due now) or waits for Opsgenie
        if state.deleted:
            body, method = {"reference_id": ref}, "delete"
            send = lambda: dx.delete(ref)  # noqa: E731
            if body == pending.delivered_request:
                # DX confirmed this delete already; an event that arrived after it (a late
                # note, a re-sent Delete) would only ask DX to delete nothing.
                await self._record_unchanged(pending, body)
                return
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
                await self._record_unchanged(pending, body)
                return

        started = time.monotonic()
        try:
            answer = await self._with_retries(send, ref, method)
        except DeliveryError as error:
            await self._record_error(pending, body, method, error, time.monotonic() - started)
            return
        now = self._clock()
        if self._pause is not None:
            self._metrics.paused.labels(self._pause.code).set(0)
            self._pause, self._pauses = None, 0
        await self._store.record_delivered(
            pending,
            request=body,
            response=answer.body,
            attempt=Attempt(
                at=now,
                version=pending.version,
                outcome="delivered",
                http_status=answer.status_code,
                error_code=None,
                detail=None,
                duration_seconds=time.monotonic() - started,
            ),
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

    async def _record_unchanged(self, pending: Pending, body: dict[str, Any]) -> None:
        """The new version asks for what DX already holds (a note, a replay, a second
        delete): no request."""
        await self._store.record_delivered(
            pending,
            request=body,
            response="",
            attempt=Attempt(
                at=self._clock(),
                version=pending.version,
                outcome="unchanged",
                http_status=None,
                error_code=None,
                detail="DX already holds this state",
                duration_seconds=0.0,
            ),
        )
        log.info(
            "DX already holds this state",
            extra={"reference_id": pending.reference_id, "outcome": "unchanged"},
        )

    async def _with_retries(self, send: Callable[[], Awaitable[Any]], ref: str, method: str) -> Any:
        async def attempt() -> Any:
            try:
                async with self._sending:  # at most ``concurrency`` requests open at DX
                    await self._limiter.acquire()
                    started = time.monotonic()
                    result = await send()
            except DeliveryError as error:
                self._observe(method, error, time.monotonic() - started)
                if isinstance(error, RetryableError) and error.retry_after:
                    self._limiter.hold(error.retry_after)
                log.warning(
                    "DX attempt failed",
                    extra={
                        "reference_id": ref,
                        "action": method,
                        "outcome": _outcome(error),
                        "code": _code(error),
                    },
                )
                raise
            self._observe(method, None, time.monotonic() - started)
            return result

        retrying = AsyncRetrying(
            stop=stop_any(stop_after_attempt(IN_PROCESS_ATTEMPTS), _LongRetryAfter()),
            wait=_retry_after_or(wait_random_exponential(multiplier=0.2, max=2.0)),
            retry=retry_if_exception_type(RetryableError),
            before_sleep=lambda _: self._metrics.retries.inc(),
            reraise=True,
        )
        return await retrying(attempt)

    def _observe(self, method: str, error: DeliveryError | None, seconds: float) -> None:
        self._metrics.dx_duration.observe(seconds)
        outcome = "success" if error is None else _outcome(error)
        code = code_label(_code(error), None if error is None else error.http_status)
        self._metrics.dx_requests.labels(method, outcome, code).inc()

    async def _record_error(
        self, pending: Pending, body: dict[str, Any], method: str, error: DeliveryError, took: float
    ) -> None:
        now = self._clock()
        attempt = Attempt(
            at=now,
            version=pending.version,
            outcome=_outcome(error),
            http_status=error.http_status,
            error_code=_code(error),
            detail=error.message[:1000],
            duration_seconds=took,
        )
        ref = pending.reference_id
        if isinstance(error, PermanentError):
            await self._store.record_failed(
                pending, request=body, response=error.body, attempt=attempt
            )
            log.error(
                "DX rejected the incident; marked failed",
                extra={
                    "reference_id": ref,
                    "action": method,
                    "outcome": "failed",
                    "code": error.code,
                },
            )
            return
        if isinstance(error, DXUnusable):
            self._pauses += 1
            pause = min(self._max_backoff, 5.0 * 2 ** min(self._pauses - 1, 10))
            self._paused_until = now + pause
            if self._pause is not None and self._pause.code != error.code:
                self._metrics.paused.labels(self._pause.code).set(0)
            self._pause = error
            self._metrics.paused.labels(error.code).set(1)
            log.error(
                f"{error.message}: all deliveries paused",
                extra={
                    "reference_id": ref,
                    "action": method,
                    "outcome": "paused",
                    "code": error.code,
                    "pause_seconds": pause,
                },
            )
            next_at = self._paused_until
        else:
            retry_after = error.retry_after if isinstance(error, RetryableError) else None
            next_at = now + next_attempt_delay(
                pending.attempts + 1, retry_after, cap=self._max_backoff, rng=self._rng
            )
        self._metrics.retries.inc()
        await self._store.record_retry(
            pending, request=body, response=error.body, next_attempt_at=next_at, attempt=attempt
        )
        log.warning(
            "DX delivery will be retried",
            extra={
                "reference_id": ref,
                "action": method,
                "outcome": "retry",
                "next_attempt_at": next_at,
            },
        )


def _outcome(error: DeliveryError) -> str:
    if isinstance(error, PermanentError):
        return "permanent"
    if isinstance(error, DXAuthError):
        return "auth"
    if isinstance(error, DXRedirected):
        return "redirected"
    return "retryable"


def _code(error: DeliveryError | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, PermanentError | RetryableError | DXUnusable):
        return error.code
    return "other"


class _LongRetryAfter(stop_base):
    """Stop in-process retries when DX asks for a long pause: the store waits instead."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome else None
        return (
            isinstance(error, RetryableError)
            and error.retry_after is not None
            and error.retry_after > IN_PROCESS_WAIT_LIMIT
        )


def _retry_after_or(
    fallback: Callable[[RetryCallState], float],
) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return error.retry_after
        return fallback(state)

    return wait
