"""SQLite plumbing: the connection settings and the group-commit writer.

Durability is the point. Every write commits with ``synchronous=FULL``, so the commit
reaches disk before any caller hears "done", and each writer takes all writes queued while
its previous commit was syncing and commits them together: under load that turns N fsyncs
into one without giving up the promise behind a 202. Intake's appends go through a process
of their own (``intake_process.py``); every other write runs on a single writer thread, and
the two take turns at the file (``Turn``). Reads run on their own connection and thread;
WAL lets them proceed while a commit syncs. WAL checkpoints run on a thread of their own
too (``_Checkpointer``), off the commit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from service.errors import StoreUnavailable
from service.store.sqlite.intake import Row
from service.store.sqlite.intake_process import IntakeProcess, Turn
from service.store.sqlite.schema import migrate

#: How often the checkpointer copies the WAL back into the database file. Each round ends
#: with an fsync of the database file, which the commits of that moment wait behind: under
#: intake load, rounds every 0.5 s stalled one or two batches each for tens of ms (wrk p99
#: 18-31 ms), rounds every 0.1 s copy a fifth as much and stall less (17-20 ms).
CHECKPOINT_EVERY = 0.1
#: WAL pages past which a commit checkpoints by itself after all (SQLite's default is 1,000).
#: Only reached if the checkpointer falls behind or fails: it bounds the WAL file's growth.
WRITER_AUTOCHECKPOINT = 10_000

R = TypeVar("R")
log = logging.getLogger("service.store")


def owner_only(path: Path) -> None:
    """Make the database file readable by its owner alone (it holds raw alerts and DX
    requests), creating it if need be; SQLite gives the ``-wal`` and ``-shm`` files it
    creates the database file's mode, and those that exist already are narrowed too."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the settings every connection to the file must share."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


@dataclass(slots=True)
class _Job:
    """One write that succeeds or fails as a whole (in its own savepoint when it
    shares the batch with other writes)."""

    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


_Outcomes = list[tuple[asyncio.Future[Any], Any, BaseException | None]]


def _settle(outcomes: _Outcomes) -> None:
    """Runs on the event loop: hands each caller its result (skipping callers that left)."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _store_error(error: BaseException) -> BaseException:
    if isinstance(error, sqlite3.Error):
        return StoreUnavailable(f"database write failed: {error}")
    return error


class _Writer(threading.Thread):
    """Owns the writing connection for everything but intake; commits queued jobs in
    batches, each in its turn at the file, and answers all callers of a batch with a
    single loop callback."""

    def __init__(
        self, path: Path, max_batch: int, loop: asyncio.AbstractEventLoop, turn: Turn
    ) -> None:
        super().__init__(name="store-writer", daemon=True)
        self._path = path
        self._turn = turn
        self._max_batch = max_batch
        self._loop = loop
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.ready: Future[None] = Future()
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._stopped:
                raise StoreUnavailable("store is closed")
            self.jobs.put(job)

    def _answer(self, outcomes: _Outcomes) -> None:
        if outcomes:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                self._loop.call_soon_threadsafe(_settle, outcomes)

    def _refuse_rest(self) -> None:
        """Stop taking jobs; fail those queued behind the stop instead of leaving them hanging."""
        with self._lock:
            self._stopped = True
        refused: _Outcomes = []
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                refused.append((job.future, None, StoreUnavailable("store is closed")))
        self._answer(refused)

    def run(self) -> None:
        try:
            conn = connect(self._path)
            conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT}")
            migrate(conn)
        except (sqlite3.Error, StoreUnavailable, OSError) as exc:
            self.ready.set_exception(StoreUnavailable(f"cannot open database: {exc}"))
            self._refuse_rest()
            return
        self.ready.set_result(None)
        try:
            while (batch := self._next_batch()) is not None:
                # A caller that gave up (its request was cancelled) gets nothing written.
                # Reading ``cancelled()`` here races with the loop, harmlessly: a write
                # whose caller leaves a moment later is kept, and only ever stored twice
                # over (a retried webhook is a duplicate), never lost.
                live = [job for job in batch if not job.future.cancelled()]
                if live:
                    with self._turn.writer():
                        outcomes = self._commit(conn, live)
                    self._answer(outcomes)
        finally:
            conn.close()
            self._refuse_rest()

    def _next_batch(self) -> list[_Job] | None:
        first = self.jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self.jobs.put(None)  # finish this batch, then stop
                break
            batch.append(job)
        return batch

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> _Outcomes:
        isolate = len(batch) > 1  # a savepoint is two more calls; a lone write needs none
        outcomes: _Outcomes = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if isolate:
                    conn.execute("SAVEPOINT unit")
                try:
                    outcomes.append((job.future, job.run(conn), None))
                except Exception as exc:  # one bad write must not sink the batch
                    conn.execute("ROLLBACK TO unit" if isolate else "ROLLBACK")
                    outcomes.append((job.future, None, _store_error(exc)))
                if isolate:
                    conn.execute("RELEASE unit")
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store commit failed", extra={"error": str(exc)})
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"database write failed: {exc}")
            return [(job.future, None, failure) for job in batch]
        return outcomes


class _Checkpointer(threading.Thread):
    """Copies committed WAL pages back into the database file, every ``every`` seconds.

    SQLite's default is that the commit which takes the WAL past 1,000 pages does it, so
    under intake load every tenth or so commit also wrote and synced the database file,
    and the webhooks waiting on that commit waited for it (a commit of 32 webhooks: p50
    4 ms, p99 18 ms; with this thread: p99 6 ms). A PASSIVE checkpoint takes no lock that
    writers or readers wait for; it copies what it can and leaves the rest for the next round.
    """

    def __init__(self, path: Path, every: float) -> None:
        super().__init__(name="store-checkpointer", daemon=True)
        self._path = path
        self._every = every
        self.stopping = threading.Event()

    def run(self) -> None:
        failing = False
        conn: sqlite3.Connection | None = None
        try:
            while not self.stopping.wait(self._every):
                try:
                    conn = conn or connect(self._path)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    if not failing:  # once per spell of failures, not every round
                        log.warning("WAL checkpoint failed", extra={"error": str(exc)})
                    failing = True
                else:
                    if failing:
                        log.info("WAL checkpoint works again")
                    failing = False
        finally:
            if conn is not None:
                conn.close()


class SQLiteEngine:
    """One SQLite file (local disk, never NFS: WAL needs shared memory that works):
    ``append`` goes to the intake process, ``write`` jobs run on the writer thread,
    ``read`` jobs on a reader thread. The halves
    of ``SQLiteStore`` share one engine, so all their writes share its commits."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 512,
        checkpoint_every: float = CHECKPOINT_EVERY,
    ) -> None:
        self.path = path
        self._max_batch = max_batch
        self._checkpoint_every = checkpoint_every
        self._writer: _Writer | None = None
        self._turn = Turn()
        self._intake = IntakeProcess(path, self._turn, max_batch=max_batch)
        self._checkpointer: _Checkpointer | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._reader_conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            owner_only(self.path)
        except OSError as error:
            raise StoreUnavailable(f"cannot open database: {error.strerror}") from None
        self._writer = _Writer(self.path, self._max_batch, asyncio.get_running_loop(), self._turn)
        self._writer.start()
        await asyncio.wrap_future(self._writer.ready)  # the schema is migrated
        try:
            await self._intake.open()
        except StoreUnavailable:
            await self.close()
            raise
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._checkpointer = _Checkpointer(self.path, self._checkpoint_every)
        self._checkpointer.start()

    async def close(self) -> None:
        await self._intake.close()
        if self._writer is not None:
            self._writer.jobs.put(None)  # at once: a write queued after the close is refused
        if self._checkpointer is not None:
            self._checkpointer.stopping.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader is not None:
            if self._reader_conn is not None:
                self._reader.submit(self._reader_conn.close).result()
                self._reader_conn = None  # a later open() connects afresh
            self._reader.shutdown(wait=True)
            self._reader = None

    async def write(self, run: Callable[[sqlite3.Connection], R]) -> R:
        if self._writer is None or not self._writer.is_alive():
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._writer.submit(_Job(run, future))
        return await future

    async def append(self, row: Row) -> bool:
        """Store an intake row (``intake.append``), through the intake writer process;
        ``False`` for a duplicate."""
        return await self._intake.append(row)

    async def read(self, run: Callable[[sqlite3.Connection], R]) -> R:
        if self._reader is None:
            raise StoreUnavailable("store is not open")

        def call() -> R:
            if self._reader_conn is None:
                self._reader_conn = connect(self.path)
                self._reader_conn.execute("PRAGMA query_only=ON")
            return run(self._reader_conn)

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reader, call)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database read failed: {exc}") from None

    async def ping(self) -> None:
        await self.write(lambda conn: None)
