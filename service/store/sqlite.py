"""The embedded store: one SQLite file in WAL mode, written by one thread with group commit.

Durability is the point. Every write runs on a single writer thread, which takes all
writes queued while the previous commit was syncing and commits them together, with
``synchronous=FULL`` so the commit reaches disk before any caller hears "done". Under
load that turns N fsyncs into one without giving up the promise behind a 202. Reads run
on their own connection and thread; WAL lets them proceed while a commit syncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

from starlette.datastructures import Secret

from service.crypto import KeyCipher
from service.errors import Conflict, PayloadError, StoreUnavailable
from service.store import (
    Attempt,
    Delivery,
    Incoming,
    OutboxStats,
    Outcome,
    Pending,
    Region,
    ServiceObject,
    ServiceObjectChanges,
    Status,
    StoredEvent,
)
from service.translate import AlertState, dump_state, load_state

R = TypeVar("R")
log = logging.getLogger("service.store")

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
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the settings every connection to the file must share."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns it."""
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
        for statement in filter(str.strip, script.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    return len(MIGRATIONS)


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


class _Writer(threading.Thread):
    """Owns the only writing connection; commits queued jobs in batches."""

    def __init__(self, path: Path, max_batch: int) -> None:
        super().__init__(name="store-writer", daemon=True)
        self._path = path
        self._max_batch = max_batch
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.ready: Future[None] = Future()

    def run(self) -> None:
        try:
            conn = connect(self._path)
            migrate(conn)
        except (sqlite3.Error, StoreUnavailable, OSError) as exc:
            self.ready.set_exception(StoreUnavailable(f"cannot open database: {exc}"))
            return
        self.ready.set_result(None)
        try:
            while (batch := self._next_batch()) is not None:
                self._commit(conn, batch)
        finally:
            conn.close()

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

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.run(conn)
                except Exception as exc:  # one bad job must not sink the batch
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((job, None, exc))
                else:
                    outcomes.append((job, result, None))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store commit failed", extra={"error": str(exc)})
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"database write failed: {exc}")
            for job in batch:
                job.future.set_exception(failure)
            return
        for job, result, error in outcomes:
            if error is None:
                job.future.set_result(result)
            elif isinstance(error, sqlite3.Error):
                job.future.set_exception(StoreUnavailable(f"database write failed: {error}"))
            else:
                job.future.set_exception(error)


class SQLiteStore:
    """``Store`` on a local SQLite file (never NFS: WAL needs shared memory that works)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float],
        max_batch: int = 512,
        cipher: KeyCipher | None = None,
    ) -> None:
        self.path = path
        #: Encrypts service objects' Opsgenie keys; the key file beside the database if None.
        self._cipher = cipher
        self._clock = clock
        self._max_batch = max_batch
        self._writer: _Writer | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._reader_conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _Writer(self.path, self._max_batch)
        self._writer.start()
        await asyncio.wrap_future(self._writer.ready)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader is not None:
            if self._reader_conn is not None:
                self._reader.submit(self._reader_conn.close).result()
            self._reader.shutdown(wait=True)
            self._reader = None

    async def _write(self, run: Callable[[sqlite3.Connection], R]) -> R:
        if self._writer is None or not self._writer.is_alive():
            raise StoreUnavailable("store is not open")
        future: Future[R] = Future()
        self._writer.jobs.put(_Job(run, future))
        return await asyncio.wrap_future(future)

    async def _read(self, run: Callable[[sqlite3.Connection], R]) -> R:
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
        await self._write(lambda conn: None)

    async def accept(
        self, incoming: Incoming, fold: Callable[[AlertState | None], AlertState]
    ) -> Outcome:
        def run(conn: sqlite3.Connection) -> Outcome:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO events (dedup_key, reference_id, alert_id, action,"
                " service_id, received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    incoming.dedup_key,
                    incoming.reference_id,
                    incoming.alert_id,
                    incoming.action,
                    incoming.service_id,
                    incoming.received_at,
                    incoming.raw,
                ),
            ).rowcount
            if not inserted:
                return Outcome.DUPLICATE
            row = conn.execute(
                "SELECT state FROM alerts WHERE reference_id = ?", (incoming.reference_id,)
            ).fetchone()
            old = None if row is None else load_state(json.loads(row["state"]))
            new = fold(old)
            if new == old:
                return Outcome.UNCHANGED
            now = incoming.received_at
            state = json.dumps(dump_state(new), separators=(",", ":"))
            conn.execute(
                "INSERT INTO alerts (reference_id, alert_id, service_id, state, version, status,"
                " next_attempt_at, pending_since, changed_at, updated_at)"
                " VALUES (:ref, :alert, :service, :state, 1, 'pending', :now, :now, :now, :now)"
                " ON CONFLICT (reference_id) DO UPDATE SET state = :state,"
                " version = version + 1, status = 'pending', attempts = 0,"
                " service_id = coalesce(:service, service_id),"
                " next_attempt_at = :now, pending_since = coalesce(pending_since, :now),"
                " changed_at = :now, updated_at = :now",
                {
                    "ref": incoming.reference_id,
                    "alert": incoming.alert_id,
                    "service": incoming.service_id,
                    "state": state,
                    "now": now,
                },
            )
            return Outcome.ACCEPTED

        return await self._write(run)

    async def due(self, *, now: float, limit: int, exclude: Sequence[str]) -> list[Pending]:
        skip = frozenset(exclude)

        def run(conn: sqlite3.Connection) -> list[Pending]:
            rows = conn.execute(
                "SELECT reference_id, service_id, state, version, attempts, delivered_version,"
                " pending_since, delivered_request FROM alerts"
                " WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at LIMIT ?",
                (now, limit + len(skip)),
            ).fetchall()
            rows = [row for row in rows if row["reference_id"] not in skip][:limit]
            return [
                Pending(
                    reference_id=row["reference_id"],
                    service_id=row["service_id"],
                    state=load_state(json.loads(row["state"])),
                    version=row["version"],
                    attempts=row["attempts"],
                    ever_delivered=row["delivered_version"] > 0,
                    pending_since=row["pending_since"],
                    delivered_request=_json_or_none(row["delivered_request"]),
                )
                for row in rows
            ]

        return await self._read(run)

    async def next_due_at(self) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(next_attempt_at) FROM alerts WHERE status = 'pending'"
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._read(run)

    async def record_delivered(
        self, pending: Pending, *, request: dict[str, Any], response: str, attempt: Attempt
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            _insert_attempt(conn, pending.reference_id, attempt)
            conn.execute(
                "UPDATE alerts SET delivered_version = max(delivered_version, :v), attempts = 0,"
                " status = CASE WHEN version = :v THEN 'delivered' ELSE 'pending' END,"
                " next_attempt_at = CASE WHEN version = :v THEN NULL ELSE :now END,"
                " pending_since = CASE WHEN version = :v THEN NULL ELSE changed_at END,"
                " last_error_code = NULL, last_error = NULL, last_request = :req,"
                " delivered_request = :req, last_response = :resp, updated_at = :now"
                " WHERE reference_id = :ref",
                {
                    "v": pending.version,
                    "now": attempt.at,
                    "req": json.dumps(request),
                    "resp": response,
                    "ref": pending.reference_id,
                },
            )

        await self._write(run)

    async def record_retry(
        self, pending: Pending, *, request: dict[str, Any], next_attempt_at: float, attempt: Attempt
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            _insert_attempt(conn, pending.reference_id, attempt)
            conn.execute(
                "UPDATE alerts SET attempts = attempts + 1,"
                " next_attempt_at = CASE WHEN version = :v THEN :next ELSE :now END,"
                " last_error_code = :code, last_error = :detail, last_request = :req,"
                " updated_at = :now WHERE reference_id = :ref AND status = 'pending'",
                {
                    "v": pending.version,
                    "next": next_attempt_at,
                    "now": attempt.at,
                    "code": attempt.error_code,
                    "detail": attempt.detail,
                    "req": json.dumps(request),
                    "ref": pending.reference_id,
                },
            )

        await self._write(run)

    async def record_failed(
        self, pending: Pending, *, request: dict[str, Any], attempt: Attempt
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            _insert_attempt(conn, pending.reference_id, attempt)
            conn.execute(
                "UPDATE alerts SET attempts = attempts + 1,"
                " status = CASE WHEN version = :v THEN 'failed' ELSE 'pending' END,"
                " next_attempt_at = CASE WHEN version = :v THEN NULL ELSE :now END,"
                " last_error_code = :code, last_error = :detail, last_request = :req,"
                " last_response = :detail, updated_at = :now WHERE reference_id = :ref",
                {
                    "v": pending.version,
                    "now": attempt.at,
                    "code": attempt.error_code,
                    "detail": attempt.detail,
                    "req": json.dumps(request),
                    "ref": pending.reference_id,
                },
            )

        await self._write(run)

    async def record_filtered(self, pending: Pending) -> None:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE alerts SET status = 'filtered', next_attempt_at = NULL,"
                " pending_since = NULL, updated_at = ? WHERE reference_id = ? AND version = ?",
                (now, pending.reference_id, pending.version),
            )

        await self._write(run)

    async def retry(self, reference_id: str, *, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute(
                    "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                    " pending_since = coalesce(pending_since, ?), updated_at = ?"
                    " WHERE reference_id = ? AND status IN ('failed', 'pending')",
                    (now, now, now, reference_id),
                ).rowcount
            )

        return await self._write(run)

    async def retry_all_failed(self, *, now: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                " pending_since = ?, updated_at = ? WHERE status = 'failed'",
                (now, now, now),
            ).rowcount

        return await self._write(run)

    async def stats(self) -> OutboxStats:
        def run(conn: sqlite3.Connection) -> OutboxStats:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'pending'),"
                " count(*) FILTER (WHERE status = 'failed'),"
                " min(pending_since) FILTER (WHERE status = 'pending') FROM alerts"
            ).fetchone()
            return OutboxStats(pending=row[0], failed=row[1], oldest_pending_since=row[2])

        return await self._read(run)

    async def get(self, reference_id: str) -> Delivery | None:
        def run(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(
                "SELECT * FROM alerts WHERE reference_id = ?", (reference_id,)
            ).fetchone()
            return None if row is None else _delivery(row)

        return await self._read(run)

    async def deliveries(
        self, *, status: Status | None, limit: int, after: str | None
    ) -> list[Delivery]:
        def run(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE (:status IS NULL OR status = :status)"
                " AND (:after IS NULL OR reference_id > :after)"
                " ORDER BY reference_id LIMIT :limit",
                {"status": status, "after": after, "limit": limit},
            ).fetchall()
            return [_delivery(row) for row in rows]

        return await self._read(run)

    async def attempts(self, reference_id: str, *, limit: int) -> list[Attempt]:
        def run(conn: sqlite3.Connection) -> list[Attempt]:
            rows = conn.execute(
                "SELECT * FROM attempts WHERE reference_id = ? ORDER BY id DESC LIMIT ?",
                (reference_id, limit),
            ).fetchall()
            return [
                Attempt(
                    at=row["at"],
                    version=row["version"],
                    outcome=row["outcome"],
                    http_status=row["http_status"],
                    error_code=row["error_code"],
                    detail=row["detail"],
                    duration_seconds=row["duration_seconds"],
                )
                for row in reversed(rows)
            ]

        return await self._read(run)

    async def events(self, alert_id: str, *, limit: int) -> list[StoredEvent]:
        def run(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT received_at, action, raw FROM events WHERE alert_id = ?"
                " ORDER BY id DESC LIMIT ?",
                (alert_id, limit),
            ).fetchall()
            return [
                StoredEvent(received_at=row[0], action=row[1], raw=row[2]) for row in reversed(rows)
            ]

        return await self._read(run)

    async def prune_events(self, *, before: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM events WHERE id IN"
                " (SELECT id FROM events WHERE received_at < ? LIMIT 1000)",
                (before,),
            ).rowcount

        return await self._write(run)

    # ---- Service objects -------------------------------------------------------------
    # Opsgenie keys enter and leave as ``Secret`` plaintext; only Fernet tokens are written.

    def _key_cipher(self) -> KeyCipher:
        if self._cipher is None:
            self._cipher = KeyCipher.for_database(self.path, None)
        return self._cipher

    def _service_object(self, row: sqlite3.Row) -> ServiceObject:
        token = row["api_key"]
        return ServiceObject(
            id=row["id"],
            name=row["name"],
            region=cast(Region, row["region"]),
            custom_url=row["custom_url"],
            api_key=None if token is None else Secret(self._key_cipher().decrypt(token)),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def create_service_object(
        self, *, id: str, name: str, region: Region, custom_url: str | None, api_key: Secret
    ) -> ServiceObject:
        token = self._key_cipher().encrypt(str(api_key))
        now = self._clock()

        def run(conn: sqlite3.Connection) -> sqlite3.Row:
            try:
                conn.execute(
                    "INSERT INTO service_objects (id, name, name_key, region, custom_url,"
                    " api_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (id, name, _name_key(name), region, custom_url, token, now, now),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a service object named {name!r} already exists") from None
            return _service_row(conn, id)

        return self._service_object(await self._write(run))

    async def list_service_objects(self) -> list[ServiceObject]:
        def run(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute("SELECT * FROM service_objects ORDER BY created_at, id").fetchall()

        return [self._service_object(row) for row in await self._read(run)]

    async def get_service_object(self, id: str) -> ServiceObject | None:
        def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM service_objects WHERE id = ?", (id,)
            ).fetchone()
            return row

        row = await self._read(run)
        return None if row is None else self._service_object(row)

    async def find_service_object(self, id_or_name: str) -> ServiceObject | None:
        canonical = _canonical_uuid(id_or_name)
        if canonical is not None and (found := await self.get_service_object(canonical)):
            return found

        def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM service_objects WHERE name_key = ?", (_name_key(id_or_name),)
            ).fetchone()
            return row

        row = await self._read(run)
        return None if row is None else self._service_object(row)

    async def update_service_object(
        self, id: str, changes: ServiceObjectChanges
    ) -> ServiceObject | None:
        api_key = changes.get("api_key")
        token = None if api_key is None else self._key_cipher().encrypt(str(api_key))
        now = self._clock()

        def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row = conn.execute("SELECT * FROM service_objects WHERE id = ?", (id,)).fetchone()
            if row is None:
                return None
            name = changes.get("name", row["name"])
            region = changes.get("region", row["region"])
            custom_url = changes.get("custom_url", row["custom_url"])
            if region == "custom" and custom_url is None:
                raise PayloadError(
                    "data.attributes.custom_url: required when region is custom",
                    field="data.attributes.custom_url",
                )
            try:
                conn.execute(
                    "UPDATE service_objects SET name = ?, name_key = ?, region = ?,"
                    " custom_url = ?, api_key = coalesce(?, api_key), updated_at = ?"
                    " WHERE id = ?",
                    (name, _name_key(name), region, custom_url, token, now, id),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a service object named {name!r} already exists") from None
            return _service_row(conn, id)

        row = await self._write(run)
        return None if row is None else self._service_object(row)

    async def delete_service_object(self, id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM service_objects WHERE id = ?", (id,)).rowcount > 0

        return await self._write(run)


def _name_key(name: str) -> str:
    """Names are unique case-insensitively; casefold also folds non-ASCII letters."""
    return name.casefold()


def _canonical_uuid(text: str) -> str | None:
    try:
        return str(UUID(text))
    except ValueError:
        return None


def _service_row(conn: sqlite3.Connection, id: str) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute("SELECT * FROM service_objects WHERE id = ?", (id,)).fetchone()
    return row


def _insert_attempt(conn: sqlite3.Connection, reference_id: str, attempt: Attempt) -> None:
    conn.execute(
        "INSERT INTO attempts (reference_id, version, at, outcome, http_status, error_code,"
        " detail, duration_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            reference_id,
            attempt.version,
            attempt.at,
            attempt.outcome,
            attempt.http_status,
            attempt.error_code,
            attempt.detail,
            attempt.duration_seconds,
        ),
    )


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        reference_id=row["reference_id"],
        alert_id=row["alert_id"],
        service_id=row["service_id"],
        status=Status(row["status"]),
        version=row["version"],
        delivered_version=row["delivered_version"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error_code=row["last_error_code"],
        last_error=row["last_error"],
        last_request=_json_or_none(row["last_request"]),
        last_response=row["last_response"],
        updated_at=row["updated_at"],
        state=load_state(json.loads(row["state"])),
    )
