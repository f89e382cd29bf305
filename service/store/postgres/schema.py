"""The PostgreSQL schema, as numbered migrations, and the code that applies them once.

Replicas that start together all call ``migrate``: the first takes a transaction-level
advisory lock and applies what is missing in the same transaction; the others wait on the
lock and then find nothing to do. PostgreSQL's DDL is transactional, so a migration that
fails leaves nothing half done. A migration is never edited once released.

The model is SQLite's (``service.store.sqlite.schema``): intake appends to ``events`` and
``inbox``; the worker's side drains ``inbox`` into ``alerts``. Texts compared or ordered
by the relay (references, ids) use the "C" collation, so order is by code point, as in
SQLite, whatever the database's locale. Times the relay passes in are seconds since the
epoch (``double precision``); leases are read on the database's clock
(``clock_timestamp()``), the one clock every replica shares.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.errors import StoreUnavailable

#: A connection as the pool lends it (or one of its own): what every statement runs on.
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]"
#: Intake notifies this channel when it stores events (``inbox_notifies``).
WORK_CHANNEL = "relay_work"
#: The advisory lock migrations hold ("relay" in ASCII); only this code takes it.
MIGRATION_LOCK = 0x72656C6179
#: How long a replica waits for another one's migrations before giving up (seconds).
MIGRATION_TIMEOUT = 120

MIGRATIONS: tuple[str, ...] = (
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
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY)"
        )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        if current > len(MIGRATIONS):
            raise StoreUnavailable(
                f"database schema version {current} is newer than this build knows "
                f"({len(MIGRATIONS)}); refusing to touch it"
            )
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            await conn.execute(script, timeout=wait)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
    return len(MIGRATIONS)
