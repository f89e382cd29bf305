"""PostgreSQL plumbing: the pool, time limits on every statement, intake's group commit and
the wake-up channel.

Several replicas share one database, so nothing here may assume it is the only writer:
every limit is on the server's side as well as the client's (a statement that outlives
the client's patience is cancelled by the server too), and errors of every kind come out
as ``StoreUnavailable``, as SQLite's do, so callers need no second family of exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from service.errors import StoreUnavailable
from service.store.postgres.schema import (
    DX_GATE_CHANNEL,
    SERVICE_OBJECTS_CHANNEL,
    WORK_CHANNEL,
    Conn,
    migrate,
)

R = TypeVar("R")
log = logging.getLogger("service.store")

#: What every connection's session carries: the server cancels a statement, a lock wait or
#: an abandoned transaction itself, even when the client is gone (a SIGKILLed pod).
SERVER_SETTINGS = {
    "application_name": "opsgenie-dx-relay",
    "statement_timeout": "10s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "30s",
}
#: The client's own bound on a statement: a little over the server's, so the server's
#: cancellation (with its clear error) normally comes first.
COMMAND_TIMEOUT = 12.0
#: How long a caller waits for a free connection, or for one to be made.
ACQUIRE_TIMEOUT = 10.0
#: How long a lost listening connection waits before connecting again.
RELISTEN_SECONDS = 1.0
#: Errors the driver and the network raise; all mean "the database did not do it".
#: InternalClientError too: a connection the server terminated mid-statement can surface
#: as one ("another operation is in progress") on its next use.
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolLimits:
    """The pool's size and its prepared-statement cache per connection (0 behind a
    PgBouncer in transaction mode, which cannot keep prepared statements)."""

    min_size: int = 1
    max_size: int = 10
    statement_cache_size: int = 256
    max_inactive_connection_lifetime: float = 300.0


def unavailable(action: str, error: BaseException) -> StoreUnavailable:
    """The error a caller sees; the driver's message names the server's reason."""
    return StoreUnavailable(f"database {action} failed: {type(error).__name__}: {error}")


class PostgresEngine:
    """One pool on one database, and a listening connection for wake-ups.

    ``open`` connects and migrates; ``close`` waits for intake's batch in flight, then
    closes every connection. After ``close`` every call raises ``StoreUnavailable``.
    """

    def __init__(self, url: str, *, limits: PoolLimits, max_batch: int = 256) -> None:
        self._url = url
        self._limits = limits
        self._max_batch = max_batch
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Lock()
        self._relisten: asyncio.Task[None] | None = None
        #: Who hears each channel other than the work channel (``watch``).
        self._watchers: dict[str, list[Callable[[str | None], None]]] = {
            SERVICE_OBJECTS_CHANNEL: [],
            DX_GATE_CHANNEL: [],
        }
        self._work = asyncio.Event()
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._batch_run: Callable[[Conn, list[Any]], Awaitable[list[Any]]] | None
        self._batch_run = None
        self._closing = False

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=self._limits.min_size,
                max_size=self._limits.max_size,
                statement_cache_size=self._limits.statement_cache_size,
                max_inactive_connection_lifetime=self._limits.max_inactive_connection_lifetime,
                command_timeout=COMMAND_TIMEOUT,
                timeout=ACQUIRE_TIMEOUT,
                server_settings=SERVER_SETTINGS,
            )
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                await migrate(conn)
        except (*DRIVER_ERRORS, ValueError) as error:  # ValueError: a URL asyncpg cannot read
            await self._close_pool()
            reason = f"{type(error).__name__}: {error}"
            raise StoreUnavailable(f"cannot open database: {reason}") from None
        except BaseException:
            await self._close_pool()
            raise
        await self._listen()

    async def close(self) -> None:
        self._closing = True  # new calls are refused; the batch in flight finishes
        try:
            if self._relisten is not None:
                self._relisten.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._relisten
                self._relisten = None
            if self._flusher is not None:
                with contextlib.suppress(Exception):
                    await self._flusher
                self._flusher = None
            if self._listener is not None:
                listener, self._listener = self._listener, None
                with contextlib.suppress(*DRIVER_ERRORS):
                    await listener.close(timeout=ACQUIRE_TIMEOUT)
            await self._close_pool()
        finally:
            self._closing = False

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), ACQUIRE_TIMEOUT)
            except (*DRIVER_ERRORS, TimeoutError):
                pool.terminate()

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None or self._closing:
            raise StoreUnavailable("store is not open")
        return self._pool

    # ---- statements ------------------------------------------------------------------

    async def run(self, job: Callable[[Conn], Awaitable[R]], action: str) -> R:
        """``job`` on a pooled connection, outside any transaction (each statement commits
        on its own); every driver error becomes ``StoreUnavailable``."""
        return await self._run(self._open_pool(), job, action)

    @staticmethod
    async def _run(pool: asyncpg.Pool, job: Callable[[Conn], Awaitable[R]], action: str) -> R:
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                return await job(conn)
        except DRIVER_ERRORS as error:
            raise unavailable(action, error) from None

    async def transaction(self, job: Callable[[Conn], Awaitable[R]], action: str) -> R:
        """``job`` in one transaction: committed if it returns, rolled back if it raises."""

        async def inside(conn: Conn) -> R:
            async with conn.transaction():
                return await job(conn)

        return await self.run(inside, action)

    # ---- intake's group commit -------------------------------------------------------

    async def write_row(self, run: Callable[[Conn, list[Any]], Awaitable[list[R]]], item: Any) -> R:
        """Queue ``item``; ``run`` writes every item queued meanwhile in one statement.

        While one batch commits, the next gathers, so under load N webhooks share one
        commit (and one WAL flush: ``synchronous_commit`` stays on) and each caller still
        hears back only once its own row is durable. A caller that leaves before its batch
        starts gets nothing written. One ``run`` per engine: intake's.
        """
        self._open_pool()
        self._batch_run = run
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="store-intake")
        return await future

    async def _flush(self) -> None:
        run, pool = self._batch_run, self._pool
        assert run is not None
        assert pool is not None
        while self._queue:
            batch = [(i, f) for i, f in self._queue[: self._max_batch] if not f.cancelled()]
            del self._queue[: self._max_batch]
            if not batch:
                continue
            try:
                results = await self._run(
                    pool, functools.partial(_bulk, run, [item for item, _ in batch]), "write"
                )
            except Exception as error:  # every caller in the batch hears it
                if not isinstance(error, StoreUnavailable):
                    error = unavailable("write", error)
                log.error("store commit failed", extra={"error": str(error)})
                outcomes: list[tuple[Any, BaseException | None]] = [(None, error)] * len(batch)
            else:
                outcomes = [(result, None) for result in results]
            for (_, future), (result, failure) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if failure is None:
                    future.set_result(result)
                else:
                    future.set_exception(failure)

    # ---- wake-ups --------------------------------------------------------------------

    def watch(self, channel: str, changed: Callable[[str | None], None]) -> None:
        """Call ``changed(payload)`` on each notification on ``channel`` (a service
        object's id; nothing for DX's gate), and ``changed(None)`` when notifications may
        have been missed (the listening connection dropped, and again once it is back)."""
        self._watchers[channel].append(changed)

    async def _listen(self) -> None:
        """A connection of its own (a pooled one would be handed to others) listening on
        the work and service-object channels; if it drops, the waiter is woken, every
        watcher told, and a new one is made in the background."""
        async with self._listening:
            if self._listener is not None and not self._listener.is_closed():
                return
            try:
                conn = await asyncpg.connect(
                    self._url,
                    timeout=ACQUIRE_TIMEOUT,
                    command_timeout=COMMAND_TIMEOUT,
                    server_settings=SERVER_SETTINGS,
                )
                await conn.add_listener(WORK_CHANNEL, self._notified)
                for channel in self._watchers:
                    await conn.add_listener(channel, self._heard)
            except DRIVER_ERRORS as error:
                log.warning("cannot listen for work; polling", extra={"error": str(error)})
                self._listen_later()
                return
            conn.add_termination_listener(self._listener_lost)
            self._listener = conn

    def _notified(self, *_: Any) -> None:
        self._work.set()

    def _heard(self, _conn: Any, _pid: int, channel: str, payload: object) -> None:
        self._tell_watchers(str(payload), channels=(channel,))

    def _tell_watchers(self, payload: str | None, channels: tuple[str, ...] = ()) -> None:
        """Tell the watchers of ``channels`` (all, when none are named)."""
        for channel in channels or tuple(self._watchers):
            for changed in self._watchers.get(channel, ()):
                try:
                    changed(payload)
                except Exception:  # one cache's bug must not stop the others hearing it
                    log.exception("notification watcher failed", extra={"channel": channel})

    def _listener_lost(self, _conn: Any) -> None:
        self._listener = None
        self._work.set()  # whatever was notified meanwhile is lost: look now
        self._tell_watchers(None)
        self._listen_later()

    def _listen_later(self) -> None:
        if self._closing or self._pool is None:
            return
        if self._relisten is None or self._relisten.done():
            self._relisten = asyncio.get_running_loop().create_task(
                self._listen_again(), name="store-listen"
            )

    async def _listen_again(self) -> None:
        while not self._closing and self._pool is not None:
            await asyncio.sleep(RELISTEN_SECONDS)
            await self._listen()
            if self._listener is not None:
                self._tell_watchers(None)  # changes made while nobody listened
                return

    async def wait_for_work(self, seconds: float) -> bool:
        """Returns True as soon as work was stored (by any replica) since the last call that
        returned True, False after ``seconds`` without any. A notification that
        came before the call counts, so work stored between a claim and this wait is not
        slept through."""
        self._open_pool()
        try:
            # Not ``asyncio.wait_for``: on Python 3.11 it returns the result when a
            # cancellation and a notification land in one turn, and the cancellation is
            # lost; with other replicas notifying all the time, shutdown then never ends.
            async with asyncio.timeout(seconds):
                await self._work.wait()
        except TimeoutError:
            return False
        self._work.clear()
        return True

    async def ping(self) -> None:
        """A primary that answers: a standby (during a failover) takes no writes."""

        async def job(conn: Conn) -> None:
            if await conn.fetchval("SELECT pg_is_in_recovery()"):
                raise StoreUnavailable("database is a read-only standby")

        await self.run(job, "ping")


async def _bulk(
    run: Callable[[Conn, list[Any]], Awaitable[list[R]]], items: list[Any], conn: Conn
) -> list[R]:
    return await run(conn, items)
