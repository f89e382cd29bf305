"""One DX request as the worker sends it: within the gate, observed, and tried again a few
times in place when the policy says a quick retry is worth it.

The worker decides what to send and records the outcome; this is the part in between.
``concurrency`` (a semaphore shared by every delivery) bounds the requests open at DX,
the ``Gate`` paces them and holds them back after a 429, and every answer is counted in
``relay_dx_requests`` and timed in ``relay_dx_request_duration_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState

from service import delivery_policy as policy
from service.dx import Answer
from service.dx_gate import Gate
from service.errors import DeliveryError, RetryableError
from service.metrics import Metrics, code_label

log = logging.getLogger("service.delivery")


class Sender:
    """Sends one request to DX for a delivery, with the quick in-place retries."""

    def __init__(
        self,
        gate: Gate,
        *,
        sending: asyncio.Semaphore,
        metrics: Metrics,
        rng: Callable[[], float],
    ) -> None:
        self._gate = gate
        self._sending = sending
        self._metrics = metrics
        self._rng = rng

    async def send(self, send: Callable[[], Awaitable[Answer]], ref: str, method: str) -> Answer:
        """A few quick tries of one request, driven by tenacity; the policy says whether
        and how long to wait before each (``None``: this attempt ends, the store schedules)."""
        waits: dict[int, float] = {}

        def retry(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome is not None else None
            if not isinstance(error, DeliveryError):
                return False
            wait = policy.in_process_wait(state.attempt_number, error, rng=self._rng)
            if wait is None:
                return False
            waits[state.attempt_number] = wait
            return True

        retrying = AsyncRetrying(
            retry=retry,
            wait=lambda state: waits[state.attempt_number],
            before_sleep=lambda _: self._metrics.retries.inc(),
            reraise=True,
        )
        return await retrying(self._once, send, ref, method)

    async def _once(self, send: Callable[[], Awaitable[Answer]], ref: str, method: str) -> Answer:
        """One request to DX, within the concurrency and rate limits, observed."""
        try:
            async with self._sending:  # at most ``concurrency`` requests open at DX
                await self._gate.acquire()
                started = time.monotonic()
                answer = await send()
        except DeliveryError as error:
            self._observe(method, error, time.monotonic() - started)
            if isinstance(error, RetryableError) and error.retry_after:
                await self._gate.hold(error.retry_after)
            log.warning(
                "DX attempt failed",
                extra={
                    "reference_id": ref,
                    "action": method,
                    "outcome": policy.outcome_of(error),
                    "code": policy.code_of(error),
                },
            )
            raise
        self._observe(method, None, time.monotonic() - started)
        return answer

    def _observe(self, method: str, error: DeliveryError | None, seconds: float) -> None:
        self._metrics.dx_duration.observe(seconds)
        outcome = "success" if error is None else policy.outcome_of(error)
        code = code_label(policy.code_of(error), None if error is None else error.http_status)
        self._metrics.dx_requests.labels(method, outcome, code).inc()
