"""Alert rows in PostgreSQL, made from the events intake appended, by any replica.

As in SQLite (``service.store.sqlite.states``), which events are folded is what ``inbox``
says, never how far ids go: PostgreSQL hands ids out when a transaction starts and they
commit in any order, so an event with a lower id than one already folded may still come.
An ingest takes inbox rows with ``FOR UPDATE`` (``SKIP LOCKED`` for the claim: rows
another replica is folding are its to fold) and deletes them in the transaction that
writes their alerts, so no two replicas fold one event, and none is folded zero times.
Alert rows are locked in reference order (no deadlock between two ingests), and the
state is read under that lock, so two replicas folding different events of one alert
both count: the second folds onto what the first committed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import asyncpg

from service.folding import Replay, StoredRow
from service.store.postgres.schema import Conn
from service.store.rows import state_of
from service.translate import AlertState, dump_state

log = logging.getLogger("service.store")


async def ingest(conn: Conn, *, replay: Replay, budget: int, skip_locked: bool) -> tuple[int, bool]:
    """Move up to ``budget`` events from the inbox into their alerts, inside the caller's
    transaction; returns how many were taken and whether none are left (none this
    transaction could take, with ``skip_locked``)."""
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    ids = await conn.fetch(
        f"SELECT event_id FROM inbox ORDER BY event_id LIMIT $1 {lock}",  # noqa: S608
        budget + 1,
    )
    drained = len(ids) <= budget
    taken = [row["event_id"] for row in ids[:budget]]
    if not taken:
        return 0, drained
    rows = await conn.fetch(
        "WITH gone AS (DELETE FROM inbox WHERE event_id = ANY($1::bigint[]) RETURNING event_id)"
        " SELECT g.event_id, e.reference_id, e.alert_id, e.action, e.received_at, e.raw,"
        " e.service_id FROM gone g LEFT JOIN events e ON e.id = g.event_id ORDER BY g.event_id",
        taken,
    )
    by_reference: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        if row["reference_id"] is not None:  # an inbox id with no event left folds nothing
            by_reference.setdefault(row["reference_id"], []).append(row)
    if by_reference:
        await _into_alerts(conn, by_reference, replay)
    return len(taken), drained


async def _into_alerts(
    conn: Conn, by_reference: dict[str, list[asyncpg.Record]], replay: Replay
) -> None:
    """Each alert's new events: folded into its state, counted in its version, and due at
    once. A new alert's row is made first (empty, version 0), so that every alert is then
    read and changed the same way, under its row lock."""
    refs = sorted(by_reference)
    await conn.execute(
        "INSERT INTO alerts (reference_id, alert_id, state, version, status, next_attempt_at,"
        " changed_at, updated_at) SELECT r, a, 'null', 0, 'pending', t, t, t"
        " FROM unnest($1::text[], $2::text[], $3::float8[]) AS u(r, a, t)"
        " ON CONFLICT (reference_id) DO NOTHING",
        refs,
        [by_reference[ref][0]["alert_id"] for ref in refs],
        [max(e["received_at"] for e in by_reference[ref]) for ref in refs],
    )
    states = {
        row["reference_id"]: row["state"]
        for row in await conn.fetch(
            "SELECT reference_id, state FROM alerts WHERE reference_id = ANY($1::text[])"
            " ORDER BY reference_id FOR UPDATE",
            refs,
        )
    }
    columns: tuple[list[object], ...] = ([], [], [], [], [], [], [])
    for ref in refs:
        events = by_reference[ref]
        state = _fold(ref, state_of(states[ref]), events, replay)
        received = [e["received_at"] for e in events]
        service_ids = [e["service_id"] for e in events if e["service_id"] is not None]
        values = (
            ref,
            "null" if state is None else json.dumps(dump_state(state), separators=(",", ":")),
            len(events),
            service_ids[-1] if service_ids else None,
            min(received),
            max(received),
            state is not None and not state.closed and not state.deleted,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await conn.execute(
        "UPDATE alerts a SET version = a.version + u.n, state = u.state, status = 'pending',"
        " attempts = 0, service_id = coalesce(u.service_id, a.service_id),"
        " next_attempt_at = u.last, pending_since = coalesce(a.pending_since, u.first),"
        " changed_at = u.last, updated_at = u.last, is_open = u.is_open"
        " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::float8[],"
        " $6::float8[], $7::bool[]) AS u(ref, state, n, service_id, first, last, is_open)"
        " WHERE a.reference_id = u.ref",
        *columns,
    )


def _fold(
    reference_id: str,
    state: AlertState | None,
    events: Sequence[asyncpg.Record],
    replay: Replay,
) -> AlertState | None:
    replayed = replay(
        state,
        [
            StoredRow(
                e["event_id"], reference_id, e["alert_id"], e["action"], e["received_at"], e["raw"]
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
    return replayed.state


async def has_unfolded(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM inbox)"))


async def first_unfolded_at(conn: Conn) -> float | None:
    """When the oldest event still in the inbox came in: its alert is due from then."""
    found = await conn.fetchval(
        "SELECT e.received_at FROM inbox i JOIN events e ON e.id = i.event_id"
        " ORDER BY i.event_id LIMIT 1"
    )
    return None if found is None else float(found)
