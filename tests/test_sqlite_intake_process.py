"""Intake through its writer process, as the engine runs it: answers only after the commit,
a killed process loses nothing it answered and fails what it held, the writer thread still
gets its turns under intake load, and close commits what was handed in."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from service.errors import StoreUnavailable
from service.store.sqlite.engine import SQLiteEngine
from service.store.sqlite.intake import Row
from tests.fakes.polling import wait_for_async


def row(key: str, alert: str = "a1") -> Row:
    return (key, f"opsgenie-{alert}", alert, "Create", None, 1_700_000_000.5, '{"x": 1}')


def insert(conn: sqlite3.Connection, value: int) -> None:
    conn.execute("INSERT INTO t VALUES (?)", (value,))


def stored(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT dedup_key FROM events ORDER BY id")]


def writer_pid(engine: SQLiteEngine) -> int:
    child = engine._intake._child
    assert child is not None
    assert child.process is not None
    pid = child.process.get_pid()
    assert isinstance(pid, int)
    return pid


def test_each_answer_follows_a_commit_another_connection_sees(tmp_path: Path) -> None:
    path = tmp_path / "x.db"

    async def scenario() -> list[bool]:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            first = await engine.append(row("k1"))
            assert stored(path) == ["k1"]  # on disk before the answer
            rest = await asyncio.gather(*(engine.append(row(f"k{n % 40}")) for n in range(80)))
            return [first, *rest]
        finally:
            await engine.close()

    answers = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answers[0] is True
    assert answers[1:].count(True) == 39  # k0, k2..k39 once each; k1 and every repeat not
    assert sorted(stored(path)) == sorted(f"k{n}" for n in range(40))


def test_a_killed_writer_fails_what_it_held_and_the_next_append_starts_another(
    tmp_path: Path,
) -> None:
    """SIGKILL at any moment: an append answered True is on disk; one that failed may or may
    not be (the sender retries it, and it is then a duplicate); the next appends work."""
    path = tmp_path / "x.db"

    async def scenario() -> tuple[list[str], list[str]]:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            pid = writer_pid(engine)
            appends = [asyncio.ensure_future(engine.append(row(f"k{n}"))) for n in range(300)]
            await asyncio.sleep(0)  # the first batch is handed over
            os.kill(pid, signal.SIGKILL)
            results = await asyncio.gather(*appends, return_exceptions=True)
            answered = [f"k{n}" for n, result in enumerate(results) if result is True]
            failed = [r for r in results if isinstance(r, BaseException)]
            assert failed, "the kill came after every append: nothing was tested"
            assert all(isinstance(r, StoreUnavailable) for r in failed)
            assert await engine.append(row("after")) is True
            assert writer_pid(engine) != pid
            return answered, stored(path)
        finally:
            await engine.close()

    answered, on_disk = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert set(answered) <= set(on_disk)
    assert "after" in on_disk


def test_the_writer_thread_gets_its_turns_under_intake_load(tmp_path: Path) -> None:
    """Both write the one file: SQLite alone would make the writer thread poll for the lock
    while intake commits back to back. Every write and every append completes."""
    path = tmp_path / "x.db"

    async def scenario() -> int:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            await engine.write(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
            stop = asyncio.Event()

            async def intake(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    await engine.append(row(f"w{worker}-{n}"))
                    n += 1

            loads = [asyncio.ensure_future(intake(w)) for w in range(16)]
            for v in range(30):
                await engine.write(functools.partial(insert, value=v))
            stop.set()
            await asyncio.gather(*loads)
            return int(
                await engine.read(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0])
            )
        finally:
            await engine.close()

    assert asyncio.run(asyncio.wait_for(scenario(), 120)) == 30


def test_a_refused_batch_fails_its_appends_and_the_next_batch_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "x.db"

    async def scenario() -> None:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            await engine.write(
                lambda conn: conn.execute(
                    "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.alert_id = 'bad'"
                    " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
            with pytest.raises(StoreUnavailable, match="database write failed"):
                await engine.append(row("k1", "bad"))
            assert await engine.append(row("k2")) is True
        finally:
            await engine.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert stored(path) == ["k2"]
    assert any(r.getMessage() == "store commit failed" for r in caplog.records)


def test_close_commits_what_was_handed_in_then_ends_the_process(tmp_path: Path) -> None:
    path = tmp_path / "x.db"

    async def scenario() -> tuple[list[object], int]:
        engine = SQLiteEngine(path)
        await engine.open()
        pid = writer_pid(engine)
        appends = [asyncio.ensure_future(engine.append(row(f"k{n}"))) for n in range(50)]
        await asyncio.sleep(0)
        await engine.close()
        results = await asyncio.gather(*appends, return_exceptions=True)
        with pytest.raises(StoreUnavailable):
            await engine.append(row("late"))
        return list(results), pid

    results, pid = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert results == [True] * 50
    assert len(stored(path)) == 50
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped


def test_a_writer_that_cannot_open_the_file_fails_open(tmp_path: Path) -> None:
    """The engine migrates the file first; a writer refused by it fails ``open`` as a whole."""
    path = tmp_path / "x.db"

    async def scenario() -> None:
        engine = SQLiteEngine(path)
        engine._intake._path = tmp_path / "missing" / "x.db"
        with pytest.raises(StoreUnavailable, match="cannot open database"):
            await engine.open()
        with pytest.raises(StoreUnavailable):
            await engine.write(lambda conn: None)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_cancelled_append_still_queued_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    started, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    async def scenario() -> None:
        engine = SQLiteEngine(path)
        await engine.open()
        try:
            blocker = asyncio.ensure_future(engine.write(block))  # the writer thread's turn
            await asyncio.to_thread(started.wait, 10)
            gone = asyncio.ensure_future(engine.append(row("gone")))
            kept = asyncio.ensure_future(engine.append(row("kept")))
            await asyncio.sleep(0)
            gone.cancel()
            release.set()
            await blocker
            assert await kept is True
            await wait_for_async(lambda: stored(path) == ["kept"], 10)
        finally:
            await engine.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
