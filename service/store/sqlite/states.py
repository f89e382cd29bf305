"""Alert states in SQLite: the ``alerts.state`` column, caught up with the events stored
after its ``folded_through`` (an ``events.id``) whenever something needs the state.

The folding itself is ``service.folding``'s, handed in as ``replay``; what is SQLite's
here is which rows are read, what is written back, and the log line for a skipped row.
"""

from __future__ import annotations

import json
import logging
import sqlite3

from service.folding import Replay, StoredRow
from service.translate import AlertState, dump_state, load_state

log = logging.getLogger("service.store")


def catch_up(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    *,
    replay: Replay,
    budget: int | None,
    persist: bool,
) -> tuple[AlertState | None, int, bool]:
    """The reference's state with up to ``budget`` not yet folded events folded in, how
    many that took, and whether none are left. With ``persist`` the result is written
    back, so no event is folded twice; an operator's read folds without writing."""
    events = [
        StoredRow(id, reference_id, alert_id, action, received_at, raw_text(raw))
        for id, reference_id, alert_id, action, received_at, raw in conn.execute(
            "SELECT id, reference_id, alert_id, action, received_at, CAST(raw AS BLOB) FROM events"
            " WHERE reference_id = ? AND id > ? ORDER BY id LIMIT ?",
            (row["reference_id"], row["folded_through"], -1 if budget is None else budget + 1),
        )
    ]
    complete = budget is None or len(events) <= budget
    if not complete:
        events = events[:budget]
    state = load_state_text(row["state"])
    if events:
        replayed = replay(state, events)
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
        if persist and state is not None:
            conn.execute(
                "UPDATE alerts SET state = ?, folded_through = ? WHERE reference_id = ?",
                (
                    json.dumps(dump_state(state), separators=(",", ":")),
                    events[-1].id,
                    row["reference_id"],
                ),
            )
    return state, len(events), complete


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


def load_state_text(text: str) -> AlertState | None:
    """A stored state column (JSON ``null`` until the first fold)."""
    data = json.loads(text)
    return None if data is None else load_state(data)


def raw_text(stored: bytes) -> str:
    """A stored raw event, read as bytes: a database written by an earlier build may hold
    bytes that are not UTF-8, which SQLite's text reader refuses for the whole query.
    Undecodable bytes stay as lone surrogates, so folding refuses that one event (it
    cannot be encoded again) and a view can show it with replacement characters."""
    return stored.decode("utf-8", "surrogateescape")
