"""Alert rows in SQLite, made from the events intake appended: the worker's side of intake.

Intake appends an event and its id to ``inbox`` and does nothing else. ``ingest`` takes
events out of the inbox and into their alerts: each alert's row is created or marked due,
its version counts the new events, and its state has them folded in, all in the write
transaction that removes them from the inbox. Which events are folded is what the inbox
says, never how far ids go, so an event whose id is lower than one already folded (it
committed later) is folded all the same; and since folding is commutative and idempotent
(``service.folding``), the order in which events are ingested cannot change a state.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence

from service.folding import Replay, StoredRow
from service.store.rows import state_of
from service.translate import dump_state

log = logging.getLogger("service.store")


def ingest(conn: sqlite3.Connection, *, replay: Replay, budget: int) -> bool:
    """Move up to ``budget`` events from the inbox into their alerts; returns whether the
    inbox is empty now. Bounded, so one big backlog holds the writer (and intake behind
    it) for milliseconds at a time, not seconds."""
    rows = conn.execute(
        "SELECT i.event_id, e.reference_id, e.alert_id, e.action, e.received_at,"
        " CAST(e.raw AS BLOB) AS raw,"
        " e.service_id FROM inbox i LEFT JOIN events e ON e.id = i.event_id"
        " ORDER BY i.event_id LIMIT ?",
        (budget + 1,),
    ).fetchall()
    drained = len(rows) <= budget
    taken = rows[:budget]
    by_reference: dict[str, list[sqlite3.Row]] = {}
    for row in taken:
        if row["reference_id"] is not None:  # an inbox id with no event left folds nothing
            by_reference.setdefault(row["reference_id"], []).append(row)
    for reference_id, events in by_reference.items():
        _into_alert(conn, reference_id, events, replay)
    if taken:
        conn.execute(
            "DELETE FROM inbox WHERE event_id IN (SELECT value FROM json_each(?))",
            (json.dumps([row["event_id"] for row in taken]),),
        )
    return drained


def _into_alert(
    conn: sqlite3.Connection, reference_id: str, events: Sequence[sqlite3.Row], replay: Replay
) -> None:
    """One alert's new events: folded into its state, counted in its version, and due at
    once (an alert waiting out a backoff has news to deliver)."""
    found = conn.execute("SELECT state FROM alerts WHERE reference_id = ?", (reference_id,))
    row = found.fetchone()
    replayed = replay(
        None if row is None else state_of(row["state"]),
        [
            StoredRow(
                e["event_id"],
                reference_id,
                e["alert_id"],
                e["action"],
                e["received_at"],
                raw_text(e["raw"]),
            )
            for e in events
        ],
    )
    for skipped in replayed.skipped:
        log.error(
            "stored event could not be folded; skipped",
            extra={
                "reference_id": skipped.row.reference_id,
                "event_id": skipped.row.id,
                "error": skipped.error,
            },
        )
    state = replayed.state
    received = [e["received_at"] for e in events]
    service_ids = [e["service_id"] for e in events if e["service_id"] is not None]
    conn.execute(
        "INSERT INTO alerts (reference_id, alert_id, service_id, state, version, status,"
        " next_attempt_at, pending_since, changed_at, updated_at)"
        " VALUES (:ref, :alert, :service, :state, :count, 'pending', :last, :first, :last, :last)"
        " ON CONFLICT (reference_id) DO UPDATE SET version = version + :count,"
        " state = excluded.state, status = 'pending', attempts = 0,"
        " service_id = coalesce(excluded.service_id, service_id),"
        " next_attempt_at = excluded.next_attempt_at,"
        " pending_since = coalesce(pending_since, excluded.pending_since),"
        " changed_at = excluded.changed_at, updated_at = excluded.updated_at",
        {
            "ref": reference_id,
            "alert": events[0]["alert_id"],
            "service": service_ids[-1] if service_ids else None,
            "state": "null"
            if state is None
            else json.dumps(dump_state(state), separators=(",", ":")),
            "count": len(events),
            "first": min(received),
            "last": max(received),
        },
    )


def has_unfolded(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM inbox LIMIT 1").fetchone() is not None


def first_unfolded_at(conn: sqlite3.Connection) -> float | None:
    """When the oldest event still in the inbox came in: its alert is due from then."""
    row = conn.execute(
        "SELECT e.received_at FROM inbox i JOIN events e ON e.id = i.event_id"
        " ORDER BY i.event_id LIMIT 1"
    ).fetchone()
    return None if row is None else float(row[0])


def mark_unreadable(conn: sqlite3.Connection, reference_id: str, now: float) -> None:
    """Fail a reference none of whose events can be read, rather than claim it forever."""
    conn.execute(
        "UPDATE alerts SET status = 'failed', next_attempt_at = NULL, last_error_code = ?,"
        " last_error = ?, updated_at = ? WHERE reference_id = ?",
        (
            "unreadable_events",
            "none of the alert's stored events could be read; see the relay's log",
            now,
            reference_id,
        ),
    )


def raw_text(stored: bytes) -> str:
    """A stored raw event, read as bytes: a database written by an earlier build may hold
    bytes that are not UTF-8, which SQLite's text reader refuses for the whole query.
    Undecodable bytes stay as lone surrogates, so folding refuses that one event (it
    cannot be encoded again) and a view can show it with replacement characters."""
    return stored.decode("utf-8", "surrogateescape")
