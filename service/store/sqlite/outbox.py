"""The outbox in SQLite: the event log, and the delivery queue folded from it.

Every method is one short job on the engine's writer or reader thread (``engine.py``), so
intake, the worker and operators never hold the database for long. Intake appends events
(``intake.py``); the alert rows are made from them on the worker's side (``states.py``):
by the claim, and, before they read alert rows, by operators' reads and the pruner.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from service.folding import Replay
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
from service.store.rows import delivery_of, json_or_none, state_of
from service.store.sqlite import event_log
from service.store.sqlite.engine import SQLiteEngine
from service.store.sqlite.states import (
    first_unfolded_at,
    has_unfolded,
    ingest,
    mark_unreadable,
)

#: Stored events one write job folds at most, so a huge backlog of events holds the writer
#: (and with it intake) for milliseconds at a time, not seconds.
FOLD_BUDGET = 2000


class SQLiteOutbox:
    """``Outbox`` in the ``events``, ``alerts`` and ``attempts`` tables of ``engine``'s file.

    ``replay`` folds stored events into a state (``service.folding.replay``); one write
    job folds at most ``fold_budget`` events.
    """

    def __init__(
        self,
        engine: SQLiteEngine,
        *,
        clock: Callable[[], float],
        replay: Replay,
        fold_budget: int = FOLD_BUDGET,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._replay = replay
        self._fold_budget = fold_budget

    async def ping(self) -> None:
        await self._engine.ping()

    async def accept(self, incoming: Incoming) -> Outcome:
        i = incoming
        row = (
            i.dedup_key,
            i.reference_id,
            i.alert_id,
            i.action,
            i.service_id,
            i.received_at,
            i.raw,
        )
        return Outcome.ACCEPTED if await self._engine.append(row) else Outcome.DUPLICATE

    async def _ingested(self) -> None:
        """Returns once every event accepted before the call is in its alert's row, for a
        caller about to read or change alert rows: one small write job per ``fold_budget``
        events, and none at all (a read only) when the worker has kept up."""
        if await self._engine.read(has_unfolded):
            while not await self._engine.write(self._ingest):
                pass

    def _ingest(self, conn: sqlite3.Connection) -> bool:
        return ingest(conn, replay=self._replay, budget=self._fold_budget)

    async def due(self, *, now: float, limit: int, exclude: Sequence[str]) -> list[Pending]:
        skip = frozenset(exclude)

        def run(conn: sqlite3.Connection) -> list[Pending]:
            if not self._ingest(conn):
                # Some alert may have events still in the inbox: claiming it now would
                # send a state without them. The next round folds on from here.
                return []
            rows = conn.execute(
                "SELECT reference_id, service_id, state, version, attempts,"
                " delivered_version, pending_since, delivered_request FROM alerts"
                " WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at LIMIT ?",
                (now, limit + len(skip)),
            ).fetchall()
            claimed = []
            for row in [row for row in rows if row["reference_id"] not in skip][:limit]:
                state = state_of(row["state"])
                if state is None:
                    mark_unreadable(conn, row["reference_id"], now)
                    continue
                claimed.append(
                    Pending(
                        reference_id=row["reference_id"],
                        service_id=row["service_id"],
                        state=state,
                        version=row["version"],
                        attempts=row["attempts"],
                        ever_delivered=row["delivered_version"] > 0,
                        pending_since=row["pending_since"],
                        delivered_request=json_or_none(row["delivered_request"]),
                    )
                )
            return claimed

        return await self._engine.write(run)

    async def next_due_at(self) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(next_attempt_at) FROM alerts WHERE status = 'pending'"
            ).fetchone()
            # An event still in the inbox makes its alert due once the claim ingests it.
            found = [t for t in (row[0], first_unfolded_at(conn)) if t is not None]
            return float(min(found)) if found else None

        return await self._engine.read(run)

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

        await self._engine.write(run)

    async def record_retry(
        self,
        pending: Pending,
        *,
        request: dict[str, Any] | None,
        response: str | None = None,
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
                " last_response = CASE WHEN :req IS NULL THEN last_response ELSE :resp END,"
                " updated_at = :now WHERE reference_id = :ref AND status = 'pending'",
                {
                    "v": pending.version,
                    "next": next_attempt_at,
                    "now": attempt.at,
                    "code": attempt.error_code,
                    "detail": attempt.detail,
                    "req": None if request is None else json.dumps(request),
                    "resp": response,
                    "ref": pending.reference_id,
                },
            )

        await self._engine.write(run)

    async def record_failed(
        self, pending: Pending, *, request: dict[str, Any], response: str | None, attempt: Attempt
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            _insert_attempt(conn, pending.reference_id, attempt)
            conn.execute(
                "UPDATE alerts SET attempts = attempts + 1,"
                " status = CASE WHEN version = :v THEN 'failed' ELSE 'pending' END,"
                " next_attempt_at = CASE WHEN version = :v THEN NULL ELSE :now END,"
                " last_error_code = :code, last_error = :detail, last_request = :req,"
                " last_response = :resp, updated_at = :now WHERE reference_id = :ref",
                {
                    "v": pending.version,
                    "now": attempt.at,
                    "code": attempt.error_code,
                    "detail": attempt.detail,
                    "req": json.dumps(request),
                    "resp": response,
                    "ref": pending.reference_id,
                },
            )

        await self._engine.write(run)

    async def record_filtered(self, pending: Pending) -> None:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE alerts SET status = 'filtered', next_attempt_at = NULL,"
                " pending_since = NULL, updated_at = ? WHERE reference_id = ? AND version = ?",
                (now, pending.reference_id, pending.version),
            )

        await self._engine.write(run)

    async def retry(self, reference_id: str, *, now: float) -> bool:
        await self._ingested()

        def run(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute(
                    "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                    " pending_since = coalesce(pending_since, ?), updated_at = ?"
                    " WHERE reference_id = ? AND status IN ('failed', 'pending')",
                    (now, now, now, reference_id),
                ).rowcount
            )

        return await self._engine.write(run)

    async def retry_all_failed(self, *, now: float) -> int:
        await self._ingested()

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                " pending_since = coalesce(pending_since, ?), updated_at = ?"
                " WHERE status = 'failed'",
                (now, now, now),
            ).rowcount

        return await self._engine.write(run)

    async def stats(self) -> OutboxStats:
        def run(conn: sqlite3.Connection) -> OutboxStats:
            # Through the alerts_due index: every scrape runs this, and the table keeps
            # every alert ever seen, so a scan would grow slower forever.
            rows = {
                status: (count, oldest)
                for status, count, oldest in conn.execute(
                    "SELECT status, count(*), min(pending_since) FROM alerts"
                    " WHERE status IN ('pending', 'failed') GROUP BY status"
                )
            }
            pending, oldest = rows.get("pending", (0, None))
            failed = rows.get("failed", (0, None))[0]
            # Alerts with events still in the inbox are pending as the claim will find
            # them; counted here without ingesting, so a scrape stays a read (and works
            # while another process holds the write lock).
            for status, since in conn.execute(_UNFOLDED_ALERTS):
                if status != "pending":
                    pending += 1
                    failed -= status == "failed"
                    oldest = since if oldest is None else min(oldest, since)
            return OutboxStats(pending=pending, failed=failed, oldest_pending_since=oldest)

        return await self._engine.read(run)

    async def get(self, reference_id: str) -> Delivery | None:
        await self._ingested()

        def run(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(
                "SELECT * FROM alerts WHERE reference_id = ?", (reference_id,)
            ).fetchone()
            return None if row is None else delivery_of(row)

        return await self._engine.read(run)

    async def deliveries(
        self, *, status: Status | None, limit: int, after: str | None
    ) -> list[Delivery]:
        await self._ingested()

        def run(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE (:status IS NULL OR status = :status)"
                " AND (:after IS NULL OR reference_id > :after)"
                " ORDER BY reference_id LIMIT :limit",
                {"status": status, "after": after, "limit": limit},
            ).fetchall()
            return [delivery_of(row) for row in rows]

        return await self._engine.read(run)

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

        return await self._engine.read(run)

    async def events(
        self, alert_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        return await self._engine.read(
            functools.partial(event_log.latest, alert_id=alert_id, limit=limit, before=before)
        )

    async def event(self, alert_id: str, event_id: int) -> StoredEvent | None:
        return await self._engine.read(
            functools.partial(event_log.one, alert_id=alert_id, event_id=event_id)
        )

    async def prune_events(self, *, before: float, limit: int) -> int:
        # The state must have learnt from an event before the event may go: every event
        # accepted so far is ingested first, and one still in the inbox is never deleted.
        await self._ingested()

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE received_at < ?"
                " AND id NOT IN (SELECT event_id FROM inbox) LIMIT ?)",
                (before, limit),
            ).rowcount

        return await self._engine.write(run)


#: Each alert with events in the inbox: its status (None: no row yet) and its oldest
#: such event's arrival. The inbox holds what arrived since the worker's last claim.
_UNFOLDED_ALERTS = (
    "SELECT a.status, u.since FROM (SELECT e.reference_id, min(e.received_at) AS since"
    " FROM inbox i JOIN events e ON e.id = i.event_id GROUP BY e.reference_id) u"
    " LEFT JOIN alerts a ON a.reference_id = u.reference_id"
)


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
