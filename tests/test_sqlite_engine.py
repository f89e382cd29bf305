"""The SQLite writer thread: group commit, isolation of bad jobs, cancelled callers; and the
WAL checkpointer thread that keeps checkpoints off the commit path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.errors import StoreUnavailable
from service.store.sqlite import engine as sqlite_engine
from service.store.sqlite.engine import SQLiteEngine, connect
from tests.fakes.polling import wait_for_async


def test_a_cancelled_caller_does_not_kill_the_writer(tmp_path: Path) -> None:
    """A webhook whose client hung up cancels its write; the next write must still work."""
    started, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    async def scenario() -> int:
        engine = SQLiteEngine(tmp_path / "x.db")
        await engine.open()
        try:
            await engine.write(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
            blocker = asyncio.ensure_future(engine.write(block))
            await asyncio.to_thread(started.wait, 10)  # the writer is busy with the blocker
            queued = asyncio.ensure_future(
                engine.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
            )
            await asyncio.sleep(0)  # queued behind the blocker...
            queued.cancel()  # ...and cancelled there, as by a client hanging up
            with pytest.raises(asyncio.CancelledError):
                await queued
            release.set()
            await blocker
            await engine.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)"))
            return await engine.read(
                lambda conn: conn.execute("SELECT sum(v) FROM t").fetchone()[0]
            )
        finally:
            await engine.close()

    # Without the fix the writer thread dies and the next write waits forever.
    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 2  # the cancelled insert: unwritten


def test_a_failing_job_does_not_sink_its_batch(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[object], int]:
        engine = SQLiteEngine(tmp_path / "x.db")
        await engine.open()
        try:
            await engine.write(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))

            def bad(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO t VALUES (100)")
                raise ValueError("bug in one job")

            results = await asyncio.gather(
                engine.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)").rowcount),
                engine.write(bad),
                engine.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)").rowcount),
                return_exceptions=True,
            )
            total = await engine.read(
                lambda conn: conn.execute("SELECT sum(v) FROM t").fetchone()[0]
            )
            return list(results), total
        finally:
            await engine.close()

    results, total = asyncio.run(scenario())
    assert results[0] == 1
    assert isinstance(results[1], ValueError)
    assert results[2] == 1
    assert total == 3  # the bad job's own insert was rolled back, the others committed


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = SQLiteEngine(tmp_path / "x.db")
        await engine.open()
        await engine.close()
        with pytest.raises(StoreUnavailable):
            await engine.ping()

    asyncio.run(scenario())


def test_a_lone_failing_write_is_rolled_back_and_the_writer_goes_on(tmp_path: Path) -> None:
    """A batch of one write runs without a savepoint: its failure rolls back the batch."""

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (100)")
        raise ValueError("bug")

    async def scenario() -> int:
        engine = SQLiteEngine(tmp_path / "x.db")
        await engine.open()
        try:
            await engine.write(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
            with pytest.raises(ValueError, match="bug"):
                await engine.write(bad)
            await engine.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
            return int(
                await engine.read(lambda conn: conn.execute("SELECT sum(v) FROM t").fetchone()[0])
            )
        finally:
            await engine.close()

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 1


BLOB = 100_000  # bytes per written row: a few rows make megabytes of WAL pages


async def write_blobs(engine: SQLiteEngine, rows: int) -> None:
    """``rows`` commits of one ``BLOB``-sized row each, as intake's commits follow each other."""
    await engine.write(lambda conn: conn.execute("CREATE TABLE IF NOT EXISTS t (b BLOB)"))
    insert = "INSERT INTO t VALUES (zeroblob(?))"
    for _ in range(rows):
        await engine.write(lambda conn: conn.execute(insert, (BLOB,)))


def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    """Six megabytes of commits, past SQLite's own 1,000-page (4 MiB) checkpoint point: no
    commit copies them into the database file; the WAL holds them until the checkpointer runs."""
    path = tmp_path / "x.db"

    async def scenario() -> tuple[int, int]:
        engine = SQLiteEngine(path, checkpoint_every=3600.0)  # never, here
        await engine.open()
        try:
            await write_blobs(engine, 60)
            return path.stat().st_size, Path(f"{path}-wal").stat().st_size
        finally:
            await engine.close()

    database, wal = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert wal > 60 * BLOB
    assert database < 1_000_000  # a commit that checkpointed would have copied them here
    with other_connection(path) as conn:  # and closing the store left nothing behind
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 60


def test_the_checkpointer_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    """One megabyte, well below any commit's checkpoint point, reaches the database file
    on the checkpointer's next round."""
    path = tmp_path / "x.db"

    async def scenario() -> None:
        engine = SQLiteEngine(path, checkpoint_every=0.02)
        await engine.open()
        try:
            await write_blobs(engine, 10)
            await wait_for_async(
                lambda: path.stat().st_size > 10 * BLOB, 20, message="a checkpoint"
            )
        finally:
            await engine.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_failing_checkpoint_is_logged_once_and_its_recovery_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_connect = sqlite_engine.connect
    broken = threading.Event()
    broken.set()
    attempts = 0

    def connect(path: Path) -> sqlite3.Connection:
        nonlocal attempts
        if threading.current_thread().name == "store-checkpointer" and broken.is_set():
            attempts += 1
            raise sqlite3.OperationalError("disk I/O error")
        return real_connect(path)

    monkeypatch.setattr(sqlite_engine, "connect", connect)

    def lines(message: str) -> int:
        return sum(record.getMessage() == message for record in caplog.records)

    async def scenario() -> None:
        engine = SQLiteEngine(tmp_path / "x.db", checkpoint_every=0.01)
        await engine.open()
        try:
            await wait_for_async(lambda: attempts >= 5, 20, message="five failed rounds")
            assert lines("WAL checkpoint failed") == 1
            broken.clear()
            await wait_for_async(
                lambda: lines("WAL checkpoint works again") == 1, 20, message="the recovery line"
            )
            await engine.ping()  # the writer never noticed
        finally:
            await engine.close()

    with caplog.at_level(logging.INFO, logger="service.store"):
        asyncio.run(asyncio.wait_for(scenario(), 60))
    failed = next(r for r in caplog.records if r.getMessage() == "WAL checkpoint failed")
    assert failed.levelno == logging.WARNING
    assert failed.__dict__["error"] == "disk I/O error"


def test_close_stops_the_checkpointer(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = SQLiteEngine(tmp_path / "x.db")
        await engine.open()
        assert any(t.name == "store-checkpointer" for t in threading.enumerate())
        await engine.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))  # a checkpointer that ignored close: timeout
    assert not any(t.name == "store-checkpointer" for t in threading.enumerate())


@contextlib.contextmanager
def other_connection(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def test_wal_mode_and_synchronous_full(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def scenario() -> None:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            await engine.ping()
        finally:
            await engine.close()

    asyncio.run(scenario())
    with other_connection(path) as conn:
        # journal_mode is a property of the file: every process sees WAL.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: the one the store's connections are made with.
    conn = connect(path)
    try:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        conn.close()


def test_open_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "relay.db"

    async def scenario() -> None:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            await engine.ping()
        finally:
            await engine.close()

    asyncio.run(scenario())
    assert path.exists()


def modes(path: Path) -> dict[str, int]:
    """The permission bits of the database and its ``-wal``/``-shm`` files, as they are."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return {file.name: file.stat().st_mode & 0o777 for file in files if file.exists()}


def test_database_wal_and_shm_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    """They hold raw alerts and DX requests; the umask of whoever starts the relay (022
    gives 0644) must not decide who else reads them."""
    path = tmp_path / "relay.db"

    async def scenario() -> dict[str, int]:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            await engine.write(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
            return modes(path)  # while open: -wal and -shm exist
        finally:
            await engine.close()

    seen = asyncio.run(scenario())
    assert set(seen) == {"relay.db", "relay.db-wal", "relay.db-shm"}
    assert set(seen.values()) == {0o600}


def test_a_database_created_readable_by_all_is_narrowed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (v INTEGER)")
    for file in (path, path.with_name("relay.db-wal"), path.with_name("relay.db-shm")):
        file.touch()
        file.chmod(0o644)

    async def scenario() -> None:
        engine = SQLiteEngine(path)
        await engine.open()
        await engine.close()

    asyncio.run(scenario())
    assert set(modes(path).values()) == {0o600}


def test_a_batch_answers_all_its_callers_with_one_call_into_the_loop(tmp_path: Path) -> None:
    """Each call from the writer thread into the event loop makes both wait for the GIL
    (issue 17 measured 136 us per webhook when every caller got one): a commit of 32
    writes wakes the loop once, and every caller still gets its own result."""
    into_loop: list[str] = []
    started, release = threading.Event(), threading.Event()

    def insert(value: int) -> Any:
        def run(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            return value * 10

        return run

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    async def scenario() -> list[int]:
        engine = SQLiteEngine(tmp_path / "x.db")
        await engine.open()
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            into_loop.append(threading.current_thread().name)
            return original(callback, *args, **kwargs)

        try:
            await engine.write(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
            blocker = asyncio.ensure_future(engine.write(block))
            await asyncio.to_thread(started.wait, 10)  # what follows queues as one batch
            loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
            queued = [asyncio.ensure_future(engine.write(insert(v))) for v in range(32)]
            await asyncio.sleep(0)
            release.set()
            await blocker
            return list(await asyncio.gather(*queued))
        finally:
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
            await engine.close()

    results = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert results == [v * 10 for v in range(32)]
    # One for the blocker's batch, one for the 32 writes' batch.
    assert into_loop.count("store-writer") == 2
