"""What only the PostgreSQL store can show: several stores (replicas) on one database.

Events committed out of id order, claims with leases and fencing between two stores,
migrations raced by stores opening together, wake-ups through LISTEN/NOTIFY, and the
time limits every connection carries. The interface itself is ``test_store.py``'s,
which runs against this backend too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from starlette.datastructures import Secret

from service.errors import LeaseLost, StoreUnavailable
from service.store import Incoming, Pending, Status
from service.store.postgres import PostgresStore
from service.store.postgres.intake import accept_all
from service.store.postgres.schema import MIGRATIONS, WORK_CHANNEL, Conn
from tests.store_backends import (
    T0,
    TEST_CIPHER,
    Clock,
    ScratchPostgresStore,
    attempt,
    body,
    create_database,
    database_for,
    database_url,
    event,
    put,
    require_postgres,
)

T = TypeVar("T")


class Database:
    """A fresh database of the test's own, and stores on it as separate replicas."""

    def __init__(self, place: Path) -> None:
        self.name = database_for(place)
        self.url = database_url(self.name)

    def store(self, *, lease: float = 120.0, clock: Clock | None = None) -> PostgresStore:
        return ScratchPostgresStore(self.name, clock=clock or Clock(), lease=lease)

    def run(self, scenario: Callable[[], Awaitable[T]]) -> T:
        async def main() -> T:
            await create_database(self.name)
            return await scenario()

        return asyncio.run(main())


@pytest.fixture
def db(tmp_path: Path) -> Database:
    require_postgres()
    return Database(tmp_path)


def noted(alert: str, n: int) -> Incoming:
    """An event of ``alert`` that adds a tag of its own, so one left out of a fold shows."""
    document = body(alert, n, action="AddNote", addedTags=f"t{n}")
    del document["alert"]["tags"]
    return event(document, received_at=T0 + n)


def tags(pending: Pending) -> set[str]:
    return set(pending.state.tags.members())


async def until(probe: Callable[[], Awaitable[T]], what: str, timeout: float = 10.0) -> T:
    """Await ``probe`` until it answers something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := await probe()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return found


# ---- folding does not depend on commit order ------------------------------------------------


def test_an_event_whose_lower_id_commits_late_is_still_folded(db: Database) -> None:
    async def scenario() -> None:
        store = db.store()
        await store.open()
        early = await asyncpg.connect(db.url)
        late = await asyncpg.connect(db.url)
        try:
            await put(store, body("a1"), at=T0)  # the alert exists and is folded
            assert [p.version for p in await store.due(now=T0, limit=10, exclude=())] == [1]
            slow = early.transaction()
            await slow.start()
            await accept_all(early, [noted("a1", 1)])  # takes the lower id, commits last
            async with late.transaction():
                await accept_all(late, [noted("a1", 2)])
            ids = await late.fetch("SELECT id, raw FROM events ORDER BY id")
            assert len(ids) == 2  # the uncommitted one is not visible yet
            [first] = await store.due(now=T0 + 10, limit=10, exclude=())
            assert (first.version, tags(first) >= {"t2"}, "t1" in tags(first)) == (2, True, False)
            await slow.commit()
            [second] = await store.due(now=T0 + 10, limit=10, exclude=())
            assert second.version == 3
            assert {"t1", "t2"} <= tags(second)
            lower, higher = await late.fetch(
                "SELECT id FROM events WHERE raw LIKE '%addedTags%' ORDER BY received_at"
            )
            assert lower["id"] < higher["id"]  # t1 did take the lower id
        finally:
            await early.close()
            await late.close()
            await store.close()

    db.run(scenario)


def test_two_stores_folding_one_alert_together_count_every_event_once(db: Database) -> None:
    async def scenario() -> None:
        a, b = db.store(), db.store()
        await a.open()
        await b.open()
        try:
            claims: list[Pending] = []
            for wave in range(6):
                events = [noted("a1", wave * 8 + i) for i in range(8)]
                got = await asyncio.gather(
                    *(s.accept(e) for s, e in zip([a, b] * 4, events, strict=True)),
                    a.due(now=T0 + 99, limit=10, exclude=()),
                    b.due(now=T0 + 99, limit=10, exclude=()),
                )
                for claimed in got[-2:]:
                    assert isinstance(claimed, list)
                    claims.extend(claimed)
            # Whichever store claimed the alert first holds it; the other gets nothing.
            [last] = [
                *await a.due(now=T0 + 99, limit=10, exclude=()),
                *await b.due(now=T0 + 99, limit=10, exclude=()),
            ]
            for pending in [*claims, last]:  # each claim holds exactly what its version counts
                assert len(tags(pending)) == pending.version
            assert last.version == 48
        finally:
            await a.close()
            await b.close()

    db.run(scenario)


# ---- claims, leases and fencing ---------------------------------------------------------------


def test_a_leased_reference_is_not_claimed_by_another_store(db: Database) -> None:
    async def scenario() -> None:
        a, b = db.store(), db.store()
        await a.open()
        await b.open()
        try:
            for i in range(6):
                await put(a, body(f"a{i}"))
            mine = await a.due(now=T0, limit=3, exclude=())
            theirs = await b.due(now=T0, limit=10, exclude=())
            assert len(mine) == len(theirs) == 3
            assert not {p.reference_id for p in mine} & {p.reference_id for p in theirs}
            assert await b.due(now=T0, limit=10, exclude=()) == theirs  # its own, again
            assert await b.next_due_at() == T0  # its own; a's are a's
            # The owner records while it holds the lease; that ends the lease.
            await a.record_delivered(
                mine[0], request={}, response="", attempt=attempt(mine[0], T0, "delivered")
            )
            await a.record_retry(
                mine[1],
                request=None,
                next_attempt_at=T0,
                attempt=attempt(mine[1], T0, "retry"),
            )
            again = await b.due(now=T0, limit=10, exclude=[p.reference_id for p in theirs])
            assert [p.reference_id for p in again] == [mine[1].reference_id]
            with pytest.raises(LeaseLost):  # the retried one passed to b
                await a.record_failed(
                    mine[1], request={}, response=None, attempt=attempt(mine[1], T0, "failed")
                )
        finally:
            await a.close()
            await b.close()

    db.run(scenario)


def test_an_expired_lease_passes_the_reference_on_and_fences_the_old_owner(db: Database) -> None:
    async def scenario() -> None:
        a, b = db.store(lease=0.2), db.store()
        await a.open()
        await b.open()
        try:
            await put(a, body("a1"))
            [late] = await a.due(now=T0, limit=10, exclude=())

            async def taken() -> list[Pending]:
                return await b.due(now=T0, limit=10, exclude=())

            [current] = await until(taken, "b to claim once a's lease ran out")
            assert current.claim != late.claim
            with pytest.raises(LeaseLost):
                await a.record_delivered(
                    late, request={"v": "a"}, response="a", attempt=attempt(late, T0, "delivered")
                )
            with pytest.raises(LeaseLost):
                await a.record_filtered(late)
            untouched = await b.get("opsgenie-a1")
            assert untouched is not None
            assert (untouched.status, untouched.last_request) == (Status.PENDING, None)
            assert await b.attempts("opsgenie-a1", limit=10) == []  # not even the attempt
            await b.record_delivered(
                current,
                request={"v": "b"},
                response="b",
                attempt=attempt(current, T0, "delivered"),
            )
            delivered = await a.get("opsgenie-a1")
            assert delivered is not None
            assert (delivered.status, delivered.last_request) == (Status.DELIVERED, {"v": "b"})
        finally:
            await a.close()
            await b.close()

    db.run(scenario)


def test_concurrent_claims_from_several_stores_never_share_a_reference(db: Database) -> None:
    async def scenario() -> None:
        stores = [db.store() for _ in range(3)]
        for store in stores:
            await store.open()
        try:
            await asyncio.gather(*(put(stores[0], body(f"a{i}")) for i in range(60)))
            await stores[0].deliveries(status=None, limit=1, after=None)  # all folded
            owners: dict[str, int] = {}
            for _ in range(2):  # the second round: each store gets back its own, no more
                rounds = await asyncio.gather(
                    *(s.due(now=T0, limit=25, exclude=()) for s in stores)
                )
                for n, claimed in enumerate(rounds):
                    for pending in claimed:
                        owner = owners.setdefault(pending.reference_id, n)
                        assert owner == n, f"{pending.reference_id} claimed by two stores"
            assert len(owners) == 60
        finally:
            for store in stores:
                await store.close()

    db.run(scenario)


# ---- migrations -------------------------------------------------------------------------------


def test_stores_opening_together_on_a_fresh_database_migrate_it_once(db: Database) -> None:
    async def scenario() -> list[int]:
        stores = [db.store() for _ in range(4)]
        await asyncio.gather(*(store.open() for store in stores))
        for store in stores:
            await store.close()
        conn = await asyncpg.connect(db.url)
        try:
            return [r["version"] for r in await conn.fetch("SELECT version FROM schema_version")]
        finally:
            await conn.close()

    assert db.run(scenario) == list(range(1, len(MIGRATIONS) + 1))


def test_a_database_newer_than_the_build_is_refused_once_it_no_longer_works_with_it(
    db: Database,
) -> None:
    async def scenario() -> None:
        store = db.store()
        await store.open()
        await store.close()
        conn = await asyncpg.connect(db.url)
        await conn.execute("INSERT INTO schema_version VALUES (999, 999)")
        await conn.close()
        with pytest.raises(StoreUnavailable, match="newer than this build"):
            await store.open()

    db.run(scenario)


def test_the_previous_release_keeps_working_on_the_next_ones_additions(db: Database) -> None:
    """A rolling deploy: the next release has added a migration that says this build
    still works with it; this build starts, leaves the schema alone, and delivers."""

    async def scenario() -> list[int]:
        store = db.store()
        await store.open()
        await store.close()
        conn = await asyncpg.connect(db.url)
        newer = len(MIGRATIONS) + 1
        await conn.execute("ALTER TABLE alerts ADD COLUMN next_release_column text")
        await conn.execute("INSERT INTO schema_version VALUES ($1, $2)", newer, len(MIGRATIONS))
        await store.open()
        try:
            await put(store, body("kept"))
            claimed = await store.due(now=T0 + 1, limit=5, exclude=())
            assert [p.reference_id for p in claimed] == ["opsgenie-kept"]
        finally:
            await store.close()
        try:
            return [r["version"] for r in await conn.fetch("SELECT version FROM schema_version")]
        finally:
            await conn.close()

    assert db.run(scenario) == [*range(1, len(MIGRATIONS) + 1), len(MIGRATIONS) + 1]


def test_a_database_not_in_utf8_is_refused(db: Database) -> None:
    """In ``SQL_ASCII`` text columns take any bytes unchecked, so a raw event stored by
    another client could fail to decode on every read; UTF8 makes each one readable."""

    async def scenario() -> None:
        await create_database(db.name, encoding="SQL_ASCII")
        store = db.store()
        with pytest.raises(StoreUnavailable, match="encoding is SQL_ASCII, not UTF8"):
            await store.open()
        conn = await asyncpg.connect(db.url)
        try:  # refused before anything was written
            assert await conn.fetchval("SELECT to_regclass('schema_version')") is None
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_an_unreachable_server_is_store_unavailable() -> None:
    async def scenario() -> None:
        store = PostgresStore(
            "postgresql://postgres@127.0.0.1:1/none", clock=Clock(), cipher=TEST_CIPHER
        )
        with pytest.raises(StoreUnavailable, match="cannot open database"):
            await store.open()
        with pytest.raises(StoreUnavailable):
            await store.stats()

    asyncio.run(scenario())


# ---- wake-ups and limits ----------------------------------------------------------------------


def test_work_stored_anywhere_wakes_a_waiting_store(db: Database) -> None:
    async def scenario() -> None:
        worker, intake = db.store(), db.store()
        await worker.open()
        await intake.open()
        try:
            assert await worker.wait_for_work(0.05) is False  # nothing stored yet
            waiting = asyncio.create_task(worker.wait_for_work(30))
            await asyncio.sleep(0)
            await put(intake, body("a1"))  # another replica's webhook
            assert await asyncio.wait_for(waiting, 10) is True
            # A notification from any connection counts, and one that came before the
            # wait is not slept through.
            conn = await asyncpg.connect(db.url)
            await conn.execute(f"NOTIFY {WORK_CHANNEL}")
            await conn.close()
            await until(lambda: worker.wait_for_work(0.1), "the NOTIFY to wake the worker")
            assert await worker.wait_for_work(0.05) is False
        finally:
            await worker.close()
            await intake.close()

    db.run(scenario)


def test_a_cancelled_wait_ends_even_when_work_arrives_at_that_moment(db: Database) -> None:
    """Shutdown cancels the wait while other replicas keep notifying: the cancellation must
    win. (``asyncio.wait_for`` on Python 3.11 returns the result instead when both happen
    in one turn of the loop, and the waiting task then never stops.)"""

    async def scenario() -> None:
        store = db.store()
        await store.open()
        try:
            for turns in range(4):
                await store.wait_for_work(0.01)  # takes a notification left by the last turn
                waiting = asyncio.create_task(store.wait_for_work(30))
                for _ in range(turns):
                    await asyncio.sleep(0)
                store.engine._notified()  # as a NOTIFY from another replica does
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
        finally:
            await store.close()

    db.run(scenario)


def test_every_connection_is_bounded_in_time(db: Database) -> None:
    async def scenario() -> dict[str, str]:
        store = db.store()
        await store.open()
        try:
            names = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
            return await store.engine.run(lambda conn: _settings(conn, names), "read")
        finally:
            await store.close()

    assert db.run(scenario) == {
        "statement_timeout": "10s",
        "lock_timeout": "5s",
        "idle_in_transaction_session_timeout": "30s",
    }


async def _settings(conn: Conn, names: tuple[str, ...]) -> dict[str, str]:
    return {name: await conn.fetchval(f"SHOW {name}") for name in names}


def test_keys_are_stored_sealed(db: Database) -> None:
    async def scenario() -> str:
        store = db.store()
        await store.open()
        try:
            await store.create_service_object(
                id="6f1c2b4e-3a5d-4e7f-8a9b-0c1d2e3f4a5b",
                name="ops",
                region="us",
                custom_url=None,
                api_key=Secret("plain-opsgenie-key"),
            )
        finally:
            await store.close()
        conn = await asyncpg.connect(db.url)
        try:
            return json.dumps([list(r) for r in await conn.fetch("SELECT * FROM service_objects")])
        finally:
            await conn.close()

    assert "plain-opsgenie-key" not in db.run(scenario)
