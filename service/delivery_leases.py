"""The delivery worker's side of a store several replicas share (``SharedClaims``).

Two background loops beside the worker's own: one sleeps on the store's notifications
(LISTEN/NOTIFY), so work any replica stores wakes this worker at once instead of a poll
finding it; the other renews the leases of the deliveries in flight well before they run
out (enrichment, a slow DX and the in-process retries may take longer than one lease),
and stops a delivery whose claim is gone, so two replicas do not keep one reference in
flight. Neither writes a result: the worker's fenced records do that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from service.errors import StoreUnavailable
from service.store import Pending, SharedClaims

log = logging.getLogger("service.delivery")

#: How long one wait on the store's notifications lasts before it is asked again.
LISTEN_SECONDS = 60.0
#: After the store failed a wait or a renewal, before the next one (seconds).
RETRY_SECONDS = 1.0

InFlight = Callable[[], dict[str, tuple[Pending, "asyncio.Task[None]"]]]


class Leases:
    """Wake-ups and lease renewals for one worker; started and stopped by it.

    ``in_flight`` lists the worker's deliveries (claim and task) by reference; ``lost``
    counts and logs one whose claim passed to another replica.
    """

    def __init__(
        self,
        shared: SharedClaims,
        *,
        wake: Callable[[], None],
        in_flight: InFlight,
        lost: Callable[[str, str], None],
    ) -> None:
        self._shared = shared
        self._wake = wake
        self._in_flight = in_flight
        self._lost = lost
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="delivery-wakeups"),
            asyncio.create_task(self._renew(), name="delivery-leases"),
        ]

    async def stop(self) -> None:
        """They only wait and renew: nothing of theirs is left half done."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _listen(self) -> None:
        while True:
            try:
                if await self._shared.wait_for_work(LISTEN_SECONDS):
                    self._wake()
            except StoreUnavailable:
                await asyncio.sleep(RETRY_SECONDS)  # the worker's own polling covers it

    async def _renew(self) -> None:
        every = self._shared.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            await self.renew_once()

    async def renew_once(self) -> None:
        """Renew every claim in flight; stop the deliveries whose claim is gone."""
        in_flight = self._in_flight()
        if not in_flight:
            return
        try:
            gone = await self._shared.renew([claim for claim, _ in in_flight.values()])
        except StoreUnavailable as error:
            log.warning("lease renewal failed", extra={"error": error.message})
            return
        for ref in gone:
            task = in_flight[ref][1]
            if not task.done():
                task.cancel()
                self._lost(ref, "its delivery in flight was stopped")
