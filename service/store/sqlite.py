"""The embedded store: the outbox and the event log, on top of SQLite's group-commit writer.

Every method is one short job on the writer (``sqlite_engine.py``) or the reader thread, so
intake, the worker and operators never hold the database for long.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from service.store import (
    Attempt,
    Delivery,
    Incoming,
    OutboxStats,
    Outcome,
    Pending,
    Status,
    StoredEvent,
)
from service.store.sqlite_engine import MIGRATIONS, SQLiteEngine, connect, migrate
from service.store.sqlite_services import SQLiteServiceObjects
from service.translate import AlertState, dump_state, load_state

__all__ = ["MIGRATIONS", "SQLiteEngine", "SQLiteStore", "connect", "migrate"]


class SQLiteStore(SQLiteServiceObjects):
    """``Store`` on a local SQLite file."""

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
        self,
        pending: Pending,
        *,
        request: dict[str, Any] | None,
        next_attempt_at: float,
        attempt: Attempt,
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            _insert_attempt(conn, pending.reference_id, attempt)
            conn.execute(
                "UPDATE alerts SET attempts = attempts + 1,"
                " next_attempt_at = CASE WHEN version = :v THEN :next ELSE :now END,"
                " last_error_code = :code, last_error = :detail,"
                " last_request = coalesce(:req, last_request),"
                " updated_at = :now WHERE reference_id = :ref AND status = 'pending'",
                {
                    "v": pending.version,
                    "next": next_attempt_at,
                    "now": attempt.at,
                    "code": attempt.error_code,
                    "detail": attempt.detail,
                    "req": None if request is None else json.dumps(request),
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
                " pending_since = coalesce(pending_since, ?), updated_at = ?"
                " WHERE status = 'failed'",
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
