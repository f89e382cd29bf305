"""The migrations: how they are split into statements, and what an upgrade keeps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.store.schema import MIGRATIONS, migrate, statements
from service.store.sqlite_engine import connect


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
        version = upgraded.execute(
            "SELECT version FROM alerts WHERE reference_id = 'opsgenie-a3'"
        ).fetchone()[0]
    finally:
        upgraded.close()
    assert new_id == 4
    assert version == 2  # the trigger came back with the rebuilt table
