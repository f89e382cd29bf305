"""One replica at a time: the lease behind the retention pruner, the outbox gauges and the
automatic reconcile, as a PostgreSQL session advisory lock.

The lock is held on a connection of its own for as long as that connection lives, so the
holder keeps the work from one round to the next, and a holder that dies (SIGKILL, a
lost network) loses it with its session: the server ends the session and the next
replica to ask takes it. Each ask also checks the connection still answers, since a
holder whose connection broke holds nothing any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from service.store.postgres.engine import ACQUIRE_TIMEOUT, DRIVER_ERRORS, SERVER_SETTINGS
from service.store.postgres.schema import MIGRATION_LOCK

log = logging.getLogger("service.store")

#: The advisory lock of the singletons; only this code takes it (beside the migrations').
SINGLETON_LOCK = MIGRATION_LOCK + 1


class AdvisoryLease:
    """``Lease`` (``service.singleton``): yields whether this replica holds the lock now,
    taking it if it is free."""

    def __init__(self, url: str, *, key: int = SINGLETON_LOCK) -> None:
        self._url = url
        self._key = key
        self._conn: asyncpg.Connection | None = None
        self._held = False
        self._asking = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[bool]:
        yield await self.held()

    async def held(self) -> bool:
        async with self._asking:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._held = False
                    self._conn = await asyncpg.connect(
                        self._url, timeout=ACQUIRE_TIMEOUT, server_settings=SERVER_SETTINGS
                    )
                if self._held:
                    await self._conn.fetchval("SELECT 1", timeout=ACQUIRE_TIMEOUT)
                else:
                    self._held = bool(
                        await self._conn.fetchval(
                            "SELECT pg_try_advisory_lock($1)", self._key, timeout=ACQUIRE_TIMEOUT
                        )
                    )
                    if self._held:
                        log.info("this replica now runs the singletons (pruner, gauges, reconcile)")
            except DRIVER_ERRORS as error:
                log.warning("singleton lease unavailable", extra={"error": str(error)})
                await self._drop()
            return self._held

    async def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        """Give the lock up (closing its session), so another replica takes it at once."""
        async with self._asking:
            conn, self._conn, self._held = self._conn, None, False
            if conn is not None:
                try:
                    await conn.close(timeout=ACQUIRE_TIMEOUT)
                except DRIVER_ERRORS:
                    conn.terminate()
