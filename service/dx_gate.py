"""What every sender toward DX shares, behind one small interface: ``Gate``.

Three things hold all deliveries back, not one reference: DX's rate limit (a token
bucket), a 429's ``Retry-After`` (DX limits the token, so the others would be refused in
turn), and the pause after a refused token or a redirect (``service.pause``). One
process keeps them in memory (``LocalGate``, SQLite). Several replicas on one database
must share them, or N replicas send N times the rate and go on sending with a token DX
refused: ``SharedGate`` keeps them in the database (``DXBoard``, on its clock). The
worker holds a ``Gate`` and does not know which.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from service.errors import DXAuthError, DXRedirected, DXUnusable, StoreUnavailable
from service.pause import Pause
from service.rate_limit import RateLimiter
from service.store import DXBoard

log = logging.getLogger("service.delivery")

#: How long a replica trusts what it last read of the shared pause: a pause another
#: replica began reaches this one's worker within this long.
PAUSE_REFRESH_SECONDS = 1.0
#: Longest single wait for a shared token before asking again (the bucket may refill
#: sooner than the answer said, if other replicas' senders stop).
MAX_TOKEN_WAIT_SECONDS = 1.0
_UNUSABLE: dict[str, type[DXUnusable]] = {kind.code: kind for kind in (DXAuthError, DXRedirected)}


class Gate(Protocol):
    """DX's pace, 429 hold and pause, as the delivery worker uses them."""

    async def acquire(self) -> None:
        """Wait for a request's turn (a token, and the end of any hold), then take it."""
        ...

    async def hold(self, seconds: float) -> None:
        """DX said 429 with ``Retry-After: seconds``: nobody sends until then."""
        ...

    async def pause(self, error: DXUnusable, *, now: float) -> float:
        """Pause every delivery because of ``error``; returns the pause in seconds."""
        ...

    async def resume(self) -> None:
        """DX took a request: whatever paused delivery is over."""
        ...

    async def paused_until(self, now: float) -> float:
        """When the pause in force ends, on the worker's clock (``now`` or before: none)."""
        ...

    def reason(self, now: float) -> str | None:
        """Why deliveries wait, for ``/readyz``; ``None`` while they go out."""
        ...


class LocalGate:
    """``Gate`` in this process's memory: the relay alone on its database."""

    def __init__(self, limiter: RateLimiter, pause: Pause) -> None:
        self._limiter = limiter
        self._pause = pause

    async def acquire(self) -> None:
        await self._limiter.acquire()

    async def hold(self, seconds: float) -> None:
        self._limiter.hold(seconds)

    async def pause(self, error: DXUnusable, *, now: float) -> float:
        return self._pause.begin(error, now=now)

    async def resume(self) -> None:
        self._pause.end()

    async def paused_until(self, now: float) -> float:
        return self._pause.until

    def reason(self, now: float) -> str | None:
        return self._pause.reason(now)


class SharedGate:
    """``Gate`` in the database every replica shares (``board``).

    ``pause`` mirrors the shared pause in this replica's gauge and ``/readyz``; it is read
    again when another replica notifies a change, else at most every
    ``PAUSE_REFRESH_SECONDS``, so a worker's every turn does not cost a read. A success
    lifts the pause only when this replica knows of one, so a delivery does not cost a
    write either.
    """

    def __init__(
        self,
        board: DXBoard,
        pause: Pause,
        *,
        rate: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._board = board
        self._pause = pause
        self._rate = rate
        self._burst = max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._asking = asyncio.Lock()  # one local sender asks the database at a time
        self._read_at: float | None = None
        board.watch(self._stale)

    def _stale(self) -> None:
        """Another replica began or ended a pause: read it before the next claim."""
        self._read_at = None

    async def acquire(self) -> None:
        async with self._asking:
            while (wait := await self._board.take(self._rate, self._burst)) > 0:
                await self._sleep(min(wait, MAX_TOKEN_WAIT_SECONDS))

    async def hold(self, seconds: float) -> None:
        try:
            await self._board.hold(seconds)
        except StoreUnavailable as error:  # DX's next answer will say 429 again
            log.warning("could not share DX's 429 hold", extra={"error": error.message})

    async def pause(self, error: DXUnusable, *, now: float) -> float:
        seconds = await self._board.pause(error.code, error.message, self._pause.length)
        self._pause.show(error, until=now + seconds)
        self._read_at = now
        return seconds

    async def resume(self) -> None:
        if self._pause.shown:
            try:
                await self._board.resume()
            except StoreUnavailable as error:  # the pause runs out on its own
                log.warning("could not lift the shared pause", extra={"error": error.message})
                return
            self._pause.end()

    async def paused_until(self, now: float) -> float:
        if self._read_at is not None and 0 <= now - self._read_at < PAUSE_REFRESH_SECONDS:
            return self._pause.until
        shared = await self._board.paused()
        self._read_at = now
        if shared.seconds_left > 0 and shared.code is not None:
            kind = _UNUSABLE.get(shared.code, DXAuthError)
            self._pause.show(kind(shared.message or shared.code), until=now + shared.seconds_left)
        elif shared.in_a_row == 0:
            self._pause.end()  # another replica's delivery went through
        return self._pause.until

    def reason(self, now: float) -> str | None:
        return self._pause.reason(now)


__all__ = ["Gate", "LocalGate", "SharedGate"]
