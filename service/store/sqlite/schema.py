"""The SQLite schema, as the list of migrations that build it, and the code that applies them.

Each migration runs once, in its own transaction, and its number is recorded in
``schema_version``; a database newer than this build is refused rather than touched.
A migration is never edited once released: a change is a new one at the end.
"""

from __future__ import annotations

import sqlite3

from service.errors import StoreUnavailable
from service.names import name_key

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        dedup_key TEXT NOT NULL UNIQUE,
        reference_id TEXT NOT NULL,
        alert_id TEXT NOT NULL,
        action TEXT NOT NULL,
        service_id TEXT,
        received_at REAL NOT NULL,
        raw TEXT NOT NULL
    );
    CREATE INDEX events_by_alert ON events (alert_id, id);
    CREATE INDEX events_by_time ON events (received_at);
    CREATE TABLE alerts (
        reference_id TEXT PRIMARY KEY,
        alert_id TEXT NOT NULL,
        service_id TEXT,
        state TEXT NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        delivered_version INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        pending_since REAL,
        changed_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_error_code TEXT,
        last_error TEXT,
        last_request TEXT,
        last_response TEXT,
        delivered_request TEXT
    );
    CREATE INDEX alerts_due ON alerts (status, next_attempt_at);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        reference_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        at REAL NOT NULL,
        outcome TEXT NOT NULL,
        http_status INTEGER,
        error_code TEXT,
        detail TEXT,
        duration_seconds REAL NOT NULL
    );
    CREATE INDEX attempts_by_reference ON attempts (reference_id, id);
    """,
    """
    CREATE TABLE service_objects (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL UNIQUE,
        region TEXT NOT NULL,
        custom_url TEXT,
        api_key TEXT,
        created_at REAL,
        updated_at REAL
    );
    """,
    # Intake stores raw events only; states are folded later, up to ``folded_through``
    # (an events.id). Rows written by earlier builds were folded at intake. Storing an
    # event marks its alert due in the same statement (the trigger), so a whole batch of
    # webhooks is one INSERT: one SQLite call, whatever the batch size.
    """
    ALTER TABLE alerts ADD COLUMN folded_through INTEGER NOT NULL DEFAULT 0;
    UPDATE alerts SET folded_through = coalesce(
        (SELECT max(id) FROM events WHERE events.reference_id = alerts.reference_id), 0);
    CREATE INDEX events_by_reference ON events (reference_id, id);
    CREATE TRIGGER event_makes_alert_due AFTER INSERT ON events BEGIN
        INSERT INTO alerts (reference_id, alert_id, service_id, state, version, status,
            next_attempt_at, pending_since, changed_at, updated_at)
        VALUES (NEW.reference_id, NEW.alert_id, NEW.service_id, 'null', 1, 'pending',
            NEW.received_at, NEW.received_at, NEW.received_at, NEW.received_at)
        ON CONFLICT (reference_id) DO UPDATE SET version = version + 1,
            status = 'pending', attempts = 0,
            service_id = coalesce(excluded.service_id, service_id),
            next_attempt_at = excluded.next_attempt_at,
            pending_since = coalesce(pending_since, excluded.pending_since),
            changed_at = excluded.changed_at, updated_at = excluded.updated_at;
    END;
    """,
    # Event ids never come back. Without AUTOINCREMENT SQLite hands out max(id) + 1, so once
    # retention had pruned the newest events (a quiet week), a new event took an id at or
    # below its alert's ``folded_through`` and was never folded: a Close that never reached
    # DX. The table is rebuilt (SQLite cannot add AUTOINCREMENT in place), and the sequence
    # starts above every id stored or folded, pruned ones included.
    """
    CREATE TABLE events_autoincrement (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dedup_key TEXT NOT NULL UNIQUE,
        reference_id TEXT NOT NULL,
        alert_id TEXT NOT NULL,
        action TEXT NOT NULL,
        service_id TEXT,
        received_at REAL NOT NULL,
        raw TEXT NOT NULL
    );
    INSERT INTO events_autoincrement
        (id, dedup_key, reference_id, alert_id, action, service_id, received_at, raw)
        SELECT id, dedup_key, reference_id, alert_id, action, service_id, received_at, raw
        FROM events;
    DROP TABLE events;
    ALTER TABLE events_autoincrement RENAME TO events;
    DELETE FROM sqlite_sequence WHERE name IN ('events', 'events_autoincrement');
    INSERT INTO sqlite_sequence (name, seq) VALUES ('events', max(
        coalesce((SELECT max(id) FROM events), 0),
        coalesce((SELECT max(folded_through) FROM alerts), 0)));
    CREATE INDEX events_by_alert ON events (alert_id, id);
    CREATE INDEX events_by_time ON events (received_at);
    CREATE INDEX events_by_reference ON events (reference_id, id);
    CREATE TRIGGER event_makes_alert_due AFTER INSERT ON events BEGIN
        INSERT INTO alerts (reference_id, alert_id, service_id, state, version, status,
            next_attempt_at, pending_since, changed_at, updated_at)
        VALUES (NEW.reference_id, NEW.alert_id, NEW.service_id, 'null', 1, 'pending',
            NEW.received_at, NEW.received_at, NEW.received_at, NEW.received_at)
        ON CONFLICT (reference_id) DO UPDATE SET version = version + 1,
            status = 'pending', attempts = 0,
            service_id = coalesce(excluded.service_id, service_id),
            next_attempt_at = excluded.next_attempt_at,
            pending_since = coalesce(pending_since, excluded.pending_since),
            changed_at = excluded.changed_at, updated_at = excluded.updated_at;
    END;
    """,
    # Intake appends the event and nothing else: its id goes into ``inbox`` (a trigger, so a
    # batch of webhooks stays one statement), and the worker's side drains the inbox into
    # the alert rows and their states (``states.ingest``). Nothing depends on the order in
    # which events commit, only on which are still in the inbox, so a backend whose ids do
    # not commit in order (PostgreSQL) can keep the same model. Events an earlier build
    # stored but did not fold yet go into the inbox, and their alerts' versions, which the
    # old trigger had already counted them in, go back to what the folded events say, so
    # the ingest counts each event once. Gone: the alert-row trigger, ``events_by_reference``
    # (folding reads the inbox now) and ``folded_through``. ``events_by_time`` stays: an
    # append at the index's right end, it costs no measurable time per event, and keeps
    # pruning exact whatever order ids and clock readings come in.
    """
    CREATE TABLE inbox (event_id INTEGER PRIMARY KEY);
    INSERT INTO inbox (event_id) SELECT e.id FROM events e WHERE e.id > coalesce(
        (SELECT a.folded_through FROM alerts a WHERE a.reference_id = e.reference_id), 0);
    UPDATE alerts SET version = version - unfolded.events FROM (SELECT e.reference_id,
        count(*) AS events FROM inbox i JOIN events e ON e.id = i.event_id
        GROUP BY e.reference_id) AS unfolded WHERE alerts.reference_id = unfolded.reference_id;
    DROP TRIGGER event_makes_alert_due;
    DROP INDEX events_by_reference;
    ALTER TABLE alerts DROP COLUMN folded_through;
    CREATE TRIGGER event_into_inbox AFTER INSERT ON events BEGIN
        INSERT INTO inbox (event_id) VALUES (NEW.id);
    END;
    """,
    # Name keys become ``names.name_key`` (NFKC and case-folded) instead of ``casefold``,
    # so ``café`` in NFC and NFD is one name. Two stored names may now share a key: the
    # oldest keeps the name, each later one gets its key with NUL and its id appended (no
    # name holds NUL, so none collides with it), keeps working and stays reachable by id;
    # renamed, or once the name is free, it gets a plain key (service_objects.py).
    # Start-up never fails on names stored before.
    """
    UPDATE service_objects SET name_key = char(0) || id;
    UPDATE service_objects SET name_key = relay_name_key(name) || CASE WHEN EXISTS (
        SELECT 1 FROM service_objects AS older
        WHERE relay_name_key(older.name) = relay_name_key(service_objects.name)
            AND (coalesce(older.created_at, 0), older.id)
                < (coalesce(service_objects.created_at, 0), service_objects.id)
    ) THEN char(0) || id ELSE '' END;
    """,
    # The automatic reconcile reads open alerts back from Opsgenie, the longest unchecked
    # first (``checked_at``, NULL until the first check). The partial index holds open
    # alerts only (a folded state without a close or a delete), so finding the next ones
    # to check costs a walk of one service object's open alerts, however many closed
    # ones the table holds; ``reconcile_checks.OPEN_ALERTS`` repeats its condition word for word,
    # which is what lets SQLite use it. A state that is not JSON is never open.
    """
    ALTER TABLE alerts ADD COLUMN checked_at REAL;
    CREATE INDEX alerts_open_by_check ON alerts (service_id, checked_at) WHERE
        CASE WHEN json_valid(state) THEN json_type(state, '$.closed_at_ns') = 'null'
            AND json_extract(state, '$.deleted') = 0 ELSE 0 END;
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns it."""
    conn.create_function("relay_name_key", 1, name_key, deterministic=True)
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    if current > len(MIGRATIONS):
        raise StoreUnavailable(
            f"database schema version {current} is newer than this build knows "
            f"({len(MIGRATIONS)}); refusing to touch it"
        )
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        conn.execute("BEGIN IMMEDIATE")
        for statement in statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    return len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """A migration's statements, split where SQLite says one is complete (a trigger's
    body has semicolons of its own)."""
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:60]}")
    return found
