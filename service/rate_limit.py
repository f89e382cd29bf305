"""The pace of requests toward DX, shared by every delivery in flight.

A token bucket: ``rate`` requests a second with a burst of one second's worth, so a
backlog drains at the configured pace instead of all at once. A 429 ``Retry-After``
holds every sender back, not only the one refused: DX's limit is per token, not per
reference, and the others would only be refused in turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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
        """No request for ``seconds`` from now; an earlier hold's longer end stands."""
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    async def acquire(self) -> None:
        """Wait for a token (and for any hold to end), then take it."""
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


__all__ = ["RateLimiter"]
