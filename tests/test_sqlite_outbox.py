"""The SQLite outbox against a real file: what only SQLite can show.

The rows as another process sees them (``other_process``), the one-statement intake
batch and its place in the writer's commits, the fold budget, locks, and rows planted
that no longer parse. Tests that need the writer thread busy block it inside a write job
(which runs on the writer) and release it with a ``threading.Event``: no sleeps, no
timing assumptions. What every backend must do is in ``test_store.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from service.errors import StoreUnavailable
from service.store import Delivery, Outcome, Pending, Status
from service.store.rows import state_of
from service.store.sqlite import SQLiteStore
from tests.store_backends import T0, Clock, body, put

T = TypeVar("T")


def run_store(
    path: Path,
    scenario: Callable[[SQLiteStore], Awaitable[T]],
    *,
    clock: Clock | None = None,
    **options: Any,
) -> T:
    async def main() -> T:
        store = SQLiteStore(path, clock=clock or Clock(), **options)
        await store.open()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


@contextlib.contextmanager
def other_process(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to the file, as another process (or an operator) would open."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        yield conn
    finally:
        conn.close()


def count(path: Path, table: str, where: str = "1", *args: object) -> int:
    with other_process(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", args).fetchone()[0])


def plant_event(
    path: Path, *, reference_id: str, alert_id: str, received_at: float, raw: str
) -> None:
    """An event row as a build that read events differently could have stored it: written
    past intake, which stores only what parses today; the trigger still puts it in the inbox."""
    with other_process(path) as conn:
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES (?, ?, ?, 'Create', ?, ?)",
            (f"planted-{reference_id}-{received_at}", reference_id, alert_id, received_at, raw),
        )


class Gate:
    """Holds the writer thread inside a write job until released."""

    def __init__(self) -> None:
        self._entered = threading.Event()
        self._release = threading.Event()

    def hold(self, store: SQLiteStore) -> asyncio.Future[None]:
        def blocked(conn: sqlite3.Connection) -> None:
            self._entered.set()
            if not self._release.wait(10):
                raise AssertionError("gate never released")

        return asyncio.ensure_future(store.engine.write(blocked))

    async def entered(self) -> None:
        if not await asyncio.to_thread(self._entered.wait, 10):
            raise AssertionError("the writer never reached the gate")

    async def release(self) -> None:
        self._release.set()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "relay.db"


# ---- accept --------------------------------------------------------------------------------


def test_accept_writes_only_the_raw_event(db: Path) -> None:
    """Intake appends the event (and its id to the inbox): no alert row, no folding."""
    run_store(db, lambda store: put(store, body("a1")))
    assert count(db, "alerts") == 0
    with other_process(db) as conn:
        assert conn.execute("SELECT event_id FROM inbox").fetchall() == [(1,)]
        assert conn.execute("SELECT id, alert_id FROM events").fetchall() == [(1, "a1")]


def test_one_batch_with_many_events_for_one_alert(db: Path) -> None:
    """A commit's multi-row insert stores each event once, and the same body twice in one
    batch is stored once; the alert's version counts each stored event. A body stored
    before, amid new ones, is the only one answered as a duplicate (the ignored row uses
    up an AUTOINCREMENT id, so the new rows' ids do not say which rows are new)."""

    async def scenario(store: SQLiteStore) -> tuple[list[Outcome], Delivery | None]:
        earlier = body("a1", 1000, action="Close")
        await put(store, earlier)
        gate = Gate()
        held = gate.hold(store)
        await gate.entered()  # everything below queues into one batch
        documents = [body("a1", i, action="AddNote", message=f"m{i}") for i in range(100)]
        accepts = [asyncio.ensure_future(put(store, d)) for d in documents[:50]]
        accepts.append(asyncio.ensure_future(put(store, earlier)))  # stored before
        accepts += [asyncio.ensure_future(put(store, d)) for d in documents[50:]]
        accepts.append(asyncio.ensure_future(put(store, documents[7])))  # in this batch
        await asyncio.sleep(0)
        await gate.release()
        await held
        return list(await asyncio.gather(*accepts)), await store.get("opsgenie-a1")

    outcomes, delivery = run_store(db, scenario)
    accepted, duplicate = Outcome.ACCEPTED, Outcome.DUPLICATE
    assert outcomes == [accepted] * 50 + [duplicate] + [accepted] * 50 + [duplicate]
    assert delivery is not None
    assert delivery.version == 101
    assert count(db, "events") == 101


def test_a_duplicate_writes_nothing(db: Path) -> None:
    run_store(db, lambda store: put(store, body("a1")))
    with other_process(db) as conn:
        before = conn.execute("SELECT * FROM events").fetchall()
    assert run_store(db, lambda store: put(store, body("a1"), at=T0 + 500)) is Outcome.DUPLICATE
    with other_process(db) as conn:
        assert conn.execute("SELECT * FROM events").fetchall() == before
    assert count(db, "inbox") == 1
    assert count(db, "alerts") == 0


def test_an_accepted_event_is_on_disk_when_accept_returns(db: Path) -> None:
    """The promise behind a 202: another process sees the row as soon as accept returns."""

    async def scenario(store: SQLiteStore) -> list[tuple[Any, ...]]:
        document = body("a1")
        assert await put(store, document) is Outcome.ACCEPTED
        with other_process(db) as conn:  # while the store is still open
            return conn.execute(
                "SELECT e.raw, i.event_id FROM events e JOIN inbox i ON i.event_id = e.id"
            ).fetchall()

    rows = run_store(db, scenario)
    assert len(rows) == 1
    raw, event_id = rows[0]
    assert json.loads(raw)["alert"]["alertId"] == "a1"
    assert event_id == 1  # and it is not folded yet


def test_a_failing_job_does_not_sink_the_intake_in_its_batch(db: Path) -> None:
    class Bug(Exception):
        pass

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES ('k', 'opsgenie-bad', 'bad', 'Create', 0, '{}')"
        )
        raise Bug("bug in a write job")

    async def scenario(store: SQLiteStore) -> list[object]:
        gate = Gate()
        held = gate.hold(store)
        await gate.entered()  # the writer is busy: what follows queues up as one batch
        results: list[object] = list(
            await asyncio.gather(
                store.engine.write(broken),
                put(store, body("good-1")),
                put(store, body("good-2")),
                gate.release(),  # runs after the three writes have queued their jobs
                return_exceptions=True,
            )
        )
        await held
        return results[:3]

    bad, good_1, good_2 = run_store(db, scenario)
    assert isinstance(bad, Bug)
    assert [good_1, good_2] == [Outcome.ACCEPTED] * 2
    assert count(db, "events", "alert_id = 'bad'") == 0  # its insert was rolled back
    assert count(db, "events", "alert_id IN ('good-1', 'good-2')") == 2
    assert count(db, "inbox") == 2  # the bad job's inbox row went with its event


def test_a_claim_empties_the_inbox_into_the_alert_row(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> list[Pending]:
        await put(store, body("a1"))
        await put(store, body("a1", 5, action="AddNote", message="two"), at=T0 + 5)
        return await store.due(now=T0 + 5, limit=10, exclude=())

    [pending] = run_store(db, scenario)
    assert pending.version == 2
    assert pending.state.message is not None
    assert pending.state.message.value == "two"
    assert count(db, "inbox") == 0  # the claim folded both, and recorded that
    with other_process(db) as conn:
        version, state = conn.execute("SELECT version, state FROM alerts").fetchone()
    assert version == 2
    assert state_of(state) == pending.state


def test_an_event_committed_after_a_higher_id_was_folded_is_still_folded(db: Path) -> None:
    """What PostgreSQL does (ids are taken in one order and committed in another),
    planted by hand: an event with a lower id than one already folded arrives later.
    The inbox, not an id mark, says what is left to fold."""

    async def fold_first(store: SQLiteStore) -> None:
        await put(store, body("a1", 0, priority="P3"))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        assert pending.version == 1

    run_store(db, lambda store: store.ping())
    with other_process(db) as conn:  # the first event takes id 10; id 5 stays free
        conn.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'events'")
    run_store(db, fold_first)
    late = body("a1", 5, action="AddNote", message="committed late")
    with other_process(db) as conn:  # the late commit, with its lower id
        conn.execute(
            "INSERT INTO events (id, dedup_key, reference_id, alert_id, action, received_at,"
            " raw) VALUES (5, 'late', 'opsgenie-a1', 'a1', 'AddNote', ?, ?)",
            (T0 + 5, json.dumps(late)),
        )
        ids = [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")]
    assert ids == [5, 10]

    async def claim(store: SQLiteStore) -> list[Pending]:
        return await store.due(now=T0 + 5, limit=10, exclude=())

    [pending] = run_store(db, claim)
    assert pending.version == 2
    assert pending.state.message is not None
    assert pending.state.message.value == "committed late"
    assert count(db, "inbox") == 0


def test_a_claim_folds_a_huge_backlog_over_several_rounds(db: Path) -> None:
    """One claim folds at most ``fold_budget`` events, so one alert with a long backlog
    cannot hold the writer (and intake behind it) for long; later claims go on from there."""

    async def scenario(store: SQLiteStore) -> list[list[Pending]]:
        await asyncio.gather(
            *(put(store, body("a1", i, action="AddNote", message=f"m{i}")) for i in range(25))
        )
        await put(store, body("a2"), at=T0 + 1)  # due after a1
        return [await store.due(now=T0 + 1, limit=10, exclude=()) for _ in range(4)]

    rounds = run_store(db, scenario, fold_budget=10)
    assert [[p.reference_id for p in claimed] for claimed in rounds] == [
        [],  # 10 of a1's 25 events folded
        [],  # 20
        ["opsgenie-a1", "opsgenie-a2"],  # all 25, then a2's one
        ["opsgenie-a1", "opsgenie-a2"],  # nothing left to fold: claimed at once
    ]
    final = rounds[2][0].state.message
    assert final is not None
    assert final.value == "m24"


def test_a_reference_whose_events_cannot_be_read_fails_instead_of_spinning(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Intake only stores what parses; should a stored row still not parse (a build that
    reads it differently), the claim marks the reference failed and says why."""
    run_store(db, lambda store: store.ping())  # the schema, inbox trigger included
    plant_event(
        db, reference_id="opsgenie-a1", alert_id="a1", received_at=T0, raw='{"not": "a webhook"}'
    )

    async def scenario(store: SQLiteStore) -> tuple[list[Pending], Delivery | None]:
        return await store.due(now=T0, limit=10, exclude=()), await store.get("opsgenie-a1")

    with caplog.at_level(logging.ERROR, logger="service.store"):
        claimed, delivery = run_store(db, scenario)
    assert claimed == []
    assert delivery is not None
    assert delivery.status is Status.FAILED
    assert delivery.last_error_code == "unreadable_events"
    assert delivery.state is None
    # The skipped row is named in the log, once: the claim folded it, the read reads that.
    skipped = [
        r for r in caplog.records if r.getMessage() == "stored event could not be folded; skipped"
    ]
    assert len(skipped) == 1
    assert all(r.levelno == logging.ERROR for r in skipped)
    assert all(r.__dict__["reference_id"] == "opsgenie-a1" for r in skipped)
    assert all(r.__dict__["event_id"] == 1 for r in skipped)


# ---- failure -------------------------------------------------------------------------------


def test_a_write_queued_while_closing_fails_instead_of_hanging(db: Path) -> None:
    """Shutdown closes the store while a late webhook or worker write may still arrive."""

    async def scenario() -> tuple[Outcome, BaseException | Outcome]:
        store = SQLiteStore(db, clock=Clock())
        await store.open()
        gate = Gate()
        held = gate.hold(store)
        first = asyncio.ensure_future(put(store, body("first")))
        await gate.entered()
        closing = asyncio.ensure_future(store.close())
        late = asyncio.ensure_future(put(store, body("late")))
        # Tasks start in order: the close queues its stop, then the late write queues its
        # job, both while the writer is still held; only then does the gate open.
        await asyncio.ensure_future(gate.release())
        await held
        outcome = await first
        await closing
        try:
            late_outcome: BaseException | Outcome = await asyncio.wait_for(late, 3)
        except (StoreUnavailable, TimeoutError) as exc:
            late_outcome = exc
        return outcome, late_outcome

    first, late = asyncio.run(scenario())
    assert first is Outcome.ACCEPTED  # queued before the close: committed
    assert isinstance(late, StoreUnavailable), late


def test_a_locked_database_is_reported_as_store_unavailable(db: Path) -> None:
    """Another writer holds the lock past the busy timeout (5 s): refuse, don't hang, and
    write nothing; reads keep working (WAL), and the store recovers once the lock goes."""

    async def scenario(store: SQLiteStore) -> tuple[float, Outcome]:
        await put(store, body("a1"))
        with other_process(db) as locker:
            locker.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="database write failed"):
                await asyncio.wait_for(put(store, body("a2")), 15)
            elapsed = time.monotonic() - started
            assert (await store.stats()).pending == 1
            locker.execute("ROLLBACK")
        # Nothing of the refused event was kept, so Opsgenie's retry is accepted.
        return elapsed, await put(store, body("a2"))

    elapsed, outcome = run_store(db, scenario)
    assert outcome is Outcome.ACCEPTED
    assert elapsed < 10  # the busy timeout, not forever
    assert count(db, "events") == 2
