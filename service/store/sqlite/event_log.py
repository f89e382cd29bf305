"""The event log as operators read it: an alert's latest events, a page at a time, or one.

Raw events are read as bytes and decoded leniently (``states.raw_text``): a database an
earlier build wrote may hold text SQLite's own decoding refuses for the whole query.
"""

from __future__ import annotations

import sqlite3

from service.store import StoredEvent
from service.store.sqlite.states import raw_text


def latest(
    conn: sqlite3.Connection, *, alert_id: str, limit: int, before: int | None
) -> list[StoredEvent]:
    """The latest ``limit`` events of the alert (older than event ``before``), oldest first."""
    rows = conn.execute(
        "SELECT id, received_at, action, CAST(raw AS BLOB) FROM events"
        " WHERE alert_id = :alert AND (:before IS NULL OR id < :before)"
        " ORDER BY id DESC LIMIT :limit",
        {"alert": alert_id, "before": before, "limit": limit},
    ).fetchall()
    return [_stored_event(row) for row in reversed(rows)]


def one(conn: sqlite3.Connection, *, alert_id: str, event_id: int) -> StoredEvent | None:
    row = conn.execute(
        "SELECT id, received_at, action, CAST(raw AS BLOB) FROM events"
        " WHERE alert_id = ? AND id = ?",
        (alert_id, event_id),
    ).fetchone()
    return None if row is None else _stored_event(row)


def _stored_event(row: sqlite3.Row) -> StoredEvent:
    return StoredEvent(id=row[0], received_at=row[1], action=row[2], raw=raw_text(row[3]))
