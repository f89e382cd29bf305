"""Raw events are kept for ``RELAY_EVENT_RETENTION``, then pruned in the background.

The raw events only explain history to operators; the alert state rows they were folded
into are never pruned, so a late event still folds correctly. Deleting runs as many small
write jobs (each ``prune_events`` call removes at most ``BATCH`` rows) with a yield
between them, so webhook intake, which shares the single writer, never waits long behind
a big delete. With several replicas on one database one prunes at a time (``lease``):
the others would only race it for the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import Counter

from service.errors import StoreUnavailable
from service.singleton import Lease, sole_runner
from service.store import Outbox

log = logging.getLogger("service.retention")

#: The most rows one ``prune_events`` call deletes; a smaller count means nothing is left.
BATCH = 1000
DEFAULT_INTERVAL_SECONDS = 300.0


class Pruner:
    """Prunes expired raw events every ``interval_seconds``; started and stopped by the app."""

    def __init__(
        self,
        store: Outbox,
        *,
        retention_seconds: float,
        pruned: Counter,
        clock: Callable[[], float],
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        lease: Lease = sole_runner,
    ) -> None:
        self._lease = lease
        self._store = store
        self._retention = retention_seconds
        self._pruned = pruned
        self._clock = clock
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def prune_once(self) -> int:
        """Delete every event older than the retention, one batch per write job."""
        before = self._clock() - self._retention
        total = 0
        while True:
            deleted = await self._store.prune_events(before=before, limit=BATCH)
            total += deleted
            self._pruned.inc(deleted)
            if deleted < BATCH or self._stopping.is_set():
                break
            await asyncio.sleep(0)  # let queued intake writes go first
        if total:
            log.info("pruned raw events past retention", extra={"pruned": total})
        return total

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-pruner")

    async def stop(self) -> None:
        """Stop after the batch in flight, never cancelling it: a write job abandoned
        mid-way leaves the store's writer answering a future nobody awaits."""
        if self._task is None:
            return
        self._stopping.set()
        await self._task
        self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._lease() as held:
                    if held:
                        await self.prune_once()
            except StoreUnavailable as exc:
                # Pruning can wait for the next round; intake and delivery matter more.
                log.warning("pruning raw events failed", extra={"error": exc.message})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
