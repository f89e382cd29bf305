"""The migrations: how they are split into statements, what an upgrade keeps, and a
database from a newer build left alone."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from service.errors import Conflict, StoreUnavailable
from service.opsgenie import parse_event
from service.store import Outcome, Pending
from service.store.sqlite import SQLiteStore
from service.store.sqlite.engine import connect
from service.store.sqlite.schema import MIGRATIONS, migrate, statements
from service.translate import dump_state, fold
from tests.store_backends import T0, Clock, body, put
from tests.test_sqlite_outbox import count, other_process, run_store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "relay.db"


def test_migration_scripts_split_where_sqlite_says_a_statement_ends() -> None:
    script = """
    CREATE TABLE t (v INTEGER);
    CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN
        UPDATE t SET v = v + 1 WHERE rowid = NEW.rowid;
    END;
    """
    assert [s.split()[:2] for s in statements(script)] == [
        ["CREATE", "TABLE"],
        ["CREATE", "TRIGGER"],
    ]
    with pytest.raises(ValueError, match="incomplete"):
        statements("CREATE TABLE t (v INTEGER)")


def test_event_ids_are_never_reused_after_the_upgrade(tmp_path: Path) -> None:
    """A schema 3 database whose newest events were pruned: the upgrade keeps every stored
    id and starts the sequence above the highest id any alert was folded through."""
    conn = sqlite3.connect(tmp_path / "relay.db", isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, script in enumerate(MIGRATIONS[:3], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    for n in (1, 2, 3):
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES (?, ?, ?, 'Create', 0, '{}')",
            (f"k{n}", f"opsgenie-a{n}", f"a{n}"),
        )
    conn.execute("UPDATE alerts SET folded_through = 3 WHERE reference_id = 'opsgenie-a3'")
    conn.execute("DELETE FROM events WHERE id = 3")  # pruned: SQLite alone would reuse 3
    conn.close()

    upgraded = connect(tmp_path / "relay.db")
    try:
        assert migrate(upgraded) == len(MIGRATIONS)
        kept = upgraded.execute("SELECT id, dedup_key FROM events ORDER BY id").fetchall()
        assert [tuple(row) for row in kept] == [(1, "k1"), (2, "k2")]
        upgraded.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES ('k4', 'opsgenie-a3', 'a3', 'Close', 1, '{}')"
        )
        new_id = upgraded.execute("SELECT id FROM events WHERE dedup_key = 'k4'").fetchone()[0]
        inbox = [row[0] for row in upgraded.execute("SELECT event_id FROM inbox ORDER BY 1")]
    finally:
        upgraded.close()
    assert new_id == 4
    assert inbox == [1, 2, 4]  # the unfolded events, and the new one: each still to fold


def test_schema_version_is_recorded_and_reopening_runs_no_migration_twice(db: Path) -> None:
    assert run_store(db, lambda store: put(store, body("a1"))) is Outcome.ACCEPTED
    expected = list(range(1, len(MIGRATIONS) + 1))
    with other_process(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == expected

    assert run_store(db, lambda store: put(store, body("a1"))) is Outcome.DUPLICATE
    with other_process(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == expected  # no migration ran twice


def test_a_database_from_a_newer_build_is_refused(db: Path) -> None:
    run_store(db, lambda store: put(store, body("a1")))
    newer = len(MIGRATIONS) + 1
    with other_process(db) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (newer,))

    async def scenario() -> None:
        store = SQLiteStore(db, clock=Clock())
        try:
            with pytest.raises(StoreUnavailable, match=f"schema version {newer} is newer"):
                await store.open()
            with pytest.raises(StoreUnavailable):
                await put(store, body("a2"))
        finally:
            await store.close()

    asyncio.run(scenario())
    with other_process(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == newer
    assert count(db, "events") == 1  # nothing was touched


def test_a_database_from_the_fold_at_intake_build_is_upgraded(db: Path) -> None:
    """Builds before schema 3 folded at intake: their states already hold every stored
    event, so the upgrade marks those folded and a claim does not fold them again."""
    create = body("a1")
    parsed = parse_event(json.dumps(create).encode(), received_ns=int(T0 * 1e9))
    old_state = fold(None, parsed)
    with other_process(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, script in enumerate(MIGRATIONS[:2], start=1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES ('k1', 'opsgenie-a1', 'a1', 'Create', ?, ?)",
            (T0, json.dumps(create)),
        )
        conn.execute(
            "INSERT INTO alerts (reference_id, alert_id, state, version, status,"
            " next_attempt_at, pending_since, changed_at, updated_at)"
            " VALUES ('opsgenie-a1', 'a1', ?, 1, 'pending', ?, ?, ?, ?)",
            (json.dumps(dump_state(old_state)), T0, T0, T0, T0),
        )

    async def scenario(store: SQLiteStore) -> Pending:
        [pending] = await store.due(now=T0, limit=10, exclude=())
        return pending

    pending = run_store(db, scenario)
    assert pending.state == old_state
    assert pending.version == 1  # not counted, nor folded, a second time
    assert count(db, "inbox") == 0


def at_schema(db: Path, version: int) -> sqlite3.Connection:
    """A database as the build at schema ``version`` left it."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
    return conn


def test_a_database_from_the_fold_at_claim_build_keeps_its_unfolded_events(db: Path) -> None:
    """Schema 4 folded events above each alert's ``folded_through`` at the claim, and its
    trigger had counted them in the alert's version at intake. The upgrade keeps every
    accepted event not folded yet: each is folded, and counted, exactly once."""
    create, note = body("a1"), body("a1", 5, action="AddNote", message="unfolded")
    conn = at_schema(db, 4)
    try:
        for key, document, at in (("k1", create, T0), ("k2", note, T0 + 5)):
            conn.execute(
                "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at,"
                " raw) VALUES (?, 'opsgenie-a1', 'a1', ?, ?, ?)",
                (key, document["action"], at, json.dumps(document)),
            )
        # The old claim folded the Create, then the note came in: the trigger counted it.
        folded = fold(None, parse_event(json.dumps(create).encode(), received_ns=int(T0 * 1e9)))
        conn.execute(
            "UPDATE alerts SET state = ?, folded_through = 1", (json.dumps(dump_state(folded)),)
        )
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES ('k3', 'opsgenie-a2', 'a2', 'Create', ?, ?)",
            (T0 + 6, json.dumps(body("a2"))),
        )
        versions = dict(conn.execute("SELECT reference_id, version FROM alerts").fetchall())
        assert versions == {"opsgenie-a1": 2, "opsgenie-a2": 1}
    finally:
        conn.close()

    async def scenario(store: SQLiteStore) -> list[Pending]:
        return await store.due(now=T0 + 6, limit=10, exclude=())

    claimed = {pending.reference_id: pending for pending in run_store(db, scenario)}
    assert {ref: pending.version for ref, pending in claimed.items()} == versions
    # The Create as the old claim folded it, with the note folded on top, once.
    noted = parse_event(json.dumps(note).encode(), received_ns=int((T0 + 5) * 1e9))
    assert claimed["opsgenie-a1"].state == fold(folded, noted)
    assert claimed["opsgenie-a2"].state.alert_id == "a2"
    assert count(db, "inbox") == 0


def test_name_keys_are_recomputed_and_old_twins_never_stop_start_up(db: Path) -> None:
    """Before schema 5 names were keyed by ``casefold``, so ``café`` in NFC and NFD (or
    in fullwidth letters) were three names. The upgrade keys them by ``names.name_key``:
    the oldest keeps the name, a later twin stays reachable by id and editable, and is
    freed by a rename."""
    nfc, nfd, wide = "caf\u00e9", "cafe\u0301", "\uff43\uff41\uff46\u00e9"
    ids = [f"6f1c2a4e-0000-4000-8000-00000000000{n}" for n in range(4)]
    with other_process(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, script in enumerate(MIGRATIONS[:4], start=1):
            for statement in statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        rows = [(ids[0], nfd, T0 + 1), (ids[1], nfc, T0), (ids[2], wide, T0 + 2)]
        rows.append((ids[3], "Payments", T0 + 3))
        for id, name, at in rows:
            conn.execute(
                "INSERT INTO service_objects (id, name, name_key, region, created_at,"
                " updated_at) VALUES (?, ?, ?, 'us', ?, ?)",
                (id, name, name.casefold(), at, at),
            )

    async def scenario(store: SQLiteStore) -> list[str | None]:
        found = [await store.find_service_object(name) for name in (nfd, nfc, wide, "PAYMENTS")]
        assert len(await store.list_service_objects()) == 4  # no row lost
        later = await store.get_service_object(ids[0])
        assert later is not None
        assert later.name == nfd  # names are not rewritten
        edited = await store.update_service_object(ids[0], {"name": nfd, "region": "eu"})
        assert edited is not None
        with pytest.raises(Conflict):  # the name is still the oldest one's
            await store.update_service_object(ids[3], {"name": "CAF\u00c9"})
        await store.update_service_object(ids[1], {"name": "cafe-old"})
        freed = await store.update_service_object(ids[0], {"name": nfc})
        assert freed is not None
        return [None if f is None else f.id for f in found]

    assert run_store(db, scenario) == [ids[1], ids[1], ids[1], ids[3]]
    with other_process(db) as conn:
        keys = dict(conn.execute("SELECT id, name_key FROM service_objects").fetchall())
    assert keys[ids[0]] == nfc  # renamed into the freed name: the plain key
    assert keys[ids[2]] == f"{nfc}\x00{ids[2]}"  # still set apart until renamed
