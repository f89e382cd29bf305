"""The PostgreSQL schema, as numbered migrations, and the code that applies them once.

Replicas that start together all call ``migrate``: the first takes a transaction-level
advisory lock and applies what is missing in the same transaction; the others wait on the
lock and then find nothing to do. PostgreSQL's DDL is transactional, so a migration that
fails leaves nothing half done. A migration is never edited once released.

A rolling deploy runs the previous release against the new schema for a while (and may
restart one of its pods meanwhile), so each migration says which releases still work on
it: ``Migration.oldest_reader``, the oldest schema version whose code it keeps working.
The rule (README, "Several replicas on PostgreSQL"): a migration only adds (a table, a
column that is nullable or has a default, an index, a trigger the old code does not
notice) and keeps ``oldest_reader`` at the version before it; whatever the previous
release would trip over (a drop, a rename, a new type, a new NOT NULL without a default,
a new meaning for a stored value) waits for the release after the one that stopped
using it, and only then raises ``oldest_reader``, which makes older builds refuse to
start rather than misread the data.

The model is SQLite's (``service.store.sqlite.schema``): intake appends to ``events`` and
``inbox``; the worker's side drains ``inbox`` into ``alerts``. Texts compared or ordered
by the relay (references, ids) use the "C" collation, so order is by code point, as in
SQLite, whatever the database's locale. Times the relay passes in are seconds since the
epoch (``double precision``); leases are read on the database's clock
(``clock_timestamp()``), the one clock every replica shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.errors import StoreUnavailable

#: A connection as the pool lends it (or one of its own): what every statement runs on.
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]"
#: Intake notifies this channel when it stores events (``inbox_notifies``).
WORK_CHANNEL = "relay_work"
#: A changed or deleted service object's id is notified here (``service_objects_notify``),
#: so every replica drops what it cached about it.
SERVICE_OBJECTS_CHANNEL = "relay_service_objects"
#: DX's pause began or ended (``dx_board``): every replica reads it again at once.
DX_GATE_CHANNEL = "relay_dx_gate"
#: The advisory lock migrations hold ("relay" in ASCII); only this code takes it.
MIGRATION_LOCK = 0x72656C6179
#: How long a replica waits for another one's migrations before giving up (seconds).
MIGRATION_TIMEOUT = 120


@dataclass(frozen=True, slots=True)
class Migration:
    sql: str
    #: The oldest schema version whose code still works once this one is applied.
    oldest_reader: int


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        """
    CREATE TABLE events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        dedup_key text NOT NULL UNIQUE,
        reference_id text COLLATE "C" NOT NULL,
        alert_id text COLLATE "C" NOT NULL,
        action text NOT NULL,
        service_id text,
        received_at double precision NOT NULL,
        raw text NOT NULL
    );
    CREATE INDEX events_by_alert ON events (alert_id, id);
    CREATE INDEX events_by_time ON events (received_at);
    CREATE TABLE inbox (event_id bigint PRIMARY KEY);
    CREATE TABLE alerts (
        reference_id text COLLATE "C" PRIMARY KEY,
        alert_id text COLLATE "C" NOT NULL,
        service_id text,
        state text NOT NULL,
        version bigint NOT NULL,
        status text NOT NULL,
        delivered_version bigint NOT NULL DEFAULT 0,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision,
        pending_since double precision,
        changed_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        last_error_code text,
        last_error text,
        last_request text,
        last_response text,
        delivered_request text,
        lease_owner uuid,
        lease_until double precision,
        claim bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX alerts_due ON alerts (status, next_attempt_at);
    CREATE SEQUENCE claims;
    CREATE TABLE attempts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        reference_id text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        at double precision NOT NULL,
        outcome text NOT NULL,
        http_status integer,
        error_code text,
        detail text,
        duration_seconds double precision NOT NULL
    );
    CREATE INDEX attempts_by_reference ON attempts (reference_id, id);
    CREATE TABLE service_objects (
        id text COLLATE "C" PRIMARY KEY,
        name text NOT NULL,
        name_key text NOT NULL UNIQUE,
        region text NOT NULL,
        custom_url text,
        api_key text,
        created_at double precision,
        updated_at double precision
    );
    CREATE FUNCTION relay_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM added) THEN
            PERFORM pg_notify('relay_work', '');
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER inbox_notifies AFTER INSERT ON inbox REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION relay_notify_work();
    """,
        oldest_reader=1,
    ),
    # What several replicas share besides the outbox: when a reconcile last read an open
    # alert back (``checked_at``; the partial index holds open alerts only, as SQLite's
    # migration 7 does; ``is_open`` is written by the fold, since a state holding an
    # escaped NUL cannot be read as JSON by PostgreSQL), DX's pace and pause (``dx_gate``,
    # one row), and a notification when a service object changes, so no replica keeps
    # serving what it cached.
    Migration(
        """
    ALTER TABLE alerts ADD COLUMN checked_at double precision;
    ALTER TABLE alerts ADD COLUMN is_open boolean NOT NULL DEFAULT false;
    UPDATE alerts SET is_open = (state::json ->> 'closed_at_ns') IS NULL
        AND (state::json ->> 'deleted') = 'false'
        WHERE position('\\u0000' in state) = 0;
    CREATE INDEX alerts_open_by_check ON alerts (service_id, checked_at) WHERE is_open;
    CREATE TABLE dx_gate (
        id integer PRIMARY KEY CHECK (id = 1),
        tokens double precision NOT NULL DEFAULT 0,
        stamp double precision NOT NULL DEFAULT 0,
        hold_until double precision NOT NULL DEFAULT 0,
        pause_until double precision NOT NULL DEFAULT 0,
        pause_code text,
        pause_message text,
        pauses_in_a_row integer NOT NULL DEFAULT 0
    );
    INSERT INTO dx_gate (id) VALUES (1);
    CREATE FUNCTION relay_notify_service_object() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('relay_service_objects', OLD.id);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER service_objects_notify AFTER UPDATE OR DELETE ON service_objects
        FOR EACH ROW EXECUTE FUNCTION relay_notify_service_object();
    """,
        oldest_reader=1,
    ),
)


async def migrate(conn: Conn) -> int:
    """Bring the schema to the newest version, once however many replicas call it at
    the same time; returns the version.

    The database must be UTF8: then every text column holds valid UTF-8 (and no NUL), so
    raw events always read back, where SQLite has to read bytes and decode them leniently.
    In ``SQL_ASCII`` any bytes would go in unchecked and fail to decode when read.
    """
    encoding = await conn.fetchval("SHOW server_encoding")
    if encoding != "UTF8":
        raise StoreUnavailable(f"database encoding is {encoding}, not UTF8; create it with UTF8")
    async with conn.transaction():
        await conn.execute(
            f"SET LOCAL lock_timeout = '{MIGRATION_TIMEOUT}s';"
            f" SET LOCAL statement_timeout = '{MIGRATION_TIMEOUT}s'"
        )
        wait = MIGRATION_TIMEOUT + 5  # the client's bound, past the server's
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=wait)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
            " oldest_reader integer NOT NULL DEFAULT 1)"
        )
        row = await conn.fetchrow(
            "SELECT coalesce(max(version), 0) AS current,"
            " coalesce(max(oldest_reader), 0) AS needs FROM schema_version"
        )
        assert row is not None  # an aggregate always has its one row
        current, needs = int(row["current"]), int(row["needs"])
        if current > len(MIGRATIONS):
            if needs > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"database schema version {current} is newer than this build knows "
                    f"({len(MIGRATIONS)}) and no longer works with it; refusing to touch it"
                )
            return current  # a newer release's additions, which this build ignores
        for version, migration in enumerate(MIGRATIONS[current:], start=current + 1):
            await conn.execute(migration.sql, timeout=wait)
            await conn.execute(
                "INSERT INTO schema_version (version, oldest_reader) VALUES ($1, $2)",
                version,
                migration.oldest_reader,
            )
    return len(MIGRATIONS)
