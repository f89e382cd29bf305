"""The outbox in PostgreSQL: the event log, and the delivery queue folded from it, shared by
every replica.

What SQLite's single writer gives for free is explicit here. A claim (``due``) takes alerts
``FOR UPDATE SKIP LOCKED`` and puts a lease on each: this store's owner id, an expiry on
the database's clock, and a fencing token (``claim``, from a sequence) that changes
whenever the reference passes to another owner. Another store claims a leased reference
only once the lease has run out; the owner itself may claim it again (its worker's
``exclude`` keeps it from doing so while a delivery is in flight, as with SQLite). Every
``record_*`` changes the alert only while its token is still the reference's, and
raises ``LeaseLost`` otherwise, having changed nothing; a recorded result ends the lease.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from service.errors import LeaseLost
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
from service.store.postgres import claims
from service.store.postgres.engine import PostgresEngine
from service.store.postgres.intake import accept_all
from service.store.postgres.schema import Conn
from service.store.postgres.states import first_unfolded_at, has_unfolded, ingest
from service.store.rows import delivery_of, json_or_none, state_of

#: Stored events one ingest folds at most: a big backlog holds its rows briefly, not long.
FOLD_BUDGET = 2000
#: How long a claim holds a reference before another replica may take it (seconds, on the
#: database's clock). Longer than any one delivery attempt may take.
LEASE = 120.0


#: Each alert with events in the inbox: its status (None: no row yet) and its oldest
#: such event's arrival, as in SQLite.
_UNFOLDED_ALERTS = (
    "SELECT a.status, u.since FROM (SELECT e.reference_id, min(e.received_at) AS since"
    " FROM inbox i JOIN events e ON e.id = i.event_id GROUP BY e.reference_id) u"
    " LEFT JOIN alerts a ON a.reference_id = u.reference_id"
)
_RETRY_WHERE = (
    "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = $1,"
    " pending_since = coalesce(pending_since, $1), updated_at = $1 WHERE "
)


class PostgresOutbox:
    """``Outbox`` in the ``events``, ``inbox``, ``alerts`` and ``attempts`` tables.

    ``owner`` names this store's claims (one per store object, so per replica); ``lease``
    is how long a claim holds.
    """

    def __init__(
        self,
        engine: PostgresEngine,
        *,
        clock: Callable[[], float],
        replay: Replay,
        fold_budget: int = FOLD_BUDGET,
        lease: float = LEASE,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._replay = replay
        self._fold_budget = fold_budget
        self._lease = lease
        self.owner = uuid.uuid4()

    async def ping(self) -> None:
        await self._engine.ping()

    async def accept(self, incoming: Incoming) -> Outcome:
        return await self._engine.write_row(accept_all, incoming)

    async def wait_for_work(self, seconds: float) -> bool:
        return await self._engine.wait_for_work(seconds)

    async def _ingest(self, *, skip_locked: bool) -> tuple[int, bool]:
        async def job(conn: Conn) -> tuple[int, bool]:
            return await ingest(
                conn, replay=self._replay, budget=self._fold_budget, skip_locked=skip_locked
            )

        return await self._engine.transaction(job, "fold")

    async def _ingested(self) -> None:
        """Returns once every event accepted before the call is in its alert's row (waiting
        for another replica's fold in flight, if need be), for a caller about to read or
        change alert rows; a read only, when the workers have kept up."""
        if await self._engine.run(has_unfolded, "read"):
            while not (await self._ingest(skip_locked=False))[1]:
                pass

    async def due(self, *, now: float, limit: int, exclude: Sequence[str]) -> list[Pending]:
        if not (await self._ingest(skip_locked=True))[1]:
            # Some alert may have events still in the inbox: claiming it now would send a
            # state without them. The next round folds on from here.
            return []

        async def job(conn: Conn) -> list[Pending]:
            rows = await conn.fetch(
                claims.CLAIM, now, list(exclude), self.owner, limit, self._lease
            )
            rows = sorted(rows, key=lambda row: (row["next_attempt_at"], row["reference_id"]))
            claimed, unreadable = [], []
            for row in rows:
                state = state_of(row["state"])
                if state is None:
                    unreadable.append(row["reference_id"])
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
                        claim=row["claim"],
                    )
                )
            if unreadable:  # fail a reference none of whose events can be read
                await conn.execute(
                    "UPDATE alerts SET status = 'failed', next_attempt_at = NULL,"
                    " lease_until = NULL, last_error_code = 'unreadable_events',"
                    " last_error = 'none of the alert''s stored events could be read;"
                    " see the relay''s log', updated_at = $1 WHERE reference_id = ANY($2)",
                    now,
                    unreadable,
                )
            return claimed

        return await self._engine.transaction(job, "claim")

    async def next_due_at(self) -> float | None:
        async def job(conn: Conn) -> float | None:
            # Leased by another replica: its work, until the lease runs out.
            due = await conn.fetchval(
                "SELECT min(next_attempt_at) FROM alerts WHERE status = 'pending'"
                " AND (lease_until IS NULL OR lease_owner = $1"
                " OR lease_until < extract(epoch FROM clock_timestamp()))",
                self.owner,
            )
            found = [t for t in (due, await first_unfolded_at(conn)) if t is not None]
            return float(min(found)) if found else None

        return await self._engine.run(job, "read")

    @property
    def lease_seconds(self) -> float:
        return self._lease

    async def renew(self, pendings: Sequence[Pending]) -> list[str]:
        """Extend the leases of claims in flight by ``lease`` from now (the database's
        clock); returns the references no longer this store's (recorded, or passed on)."""
        if not pendings:
            return []
        rows = await self._engine.run(
            lambda conn: conn.fetch(
                claims.RENEW,
                [p.reference_id for p in pendings],
                [p.claim for p in pendings],
                self.owner,
                self._lease,
            ),
            "renew",
        )
        held = {row["reference_id"] for row in rows}
        return [p.reference_id for p in pendings if p.reference_id not in held]

    async def _fenced(self, statement: str, pending: Pending, *args: Any) -> None:
        held = await self._engine.run(
            lambda conn: conn.fetchval(
                statement, pending.reference_id, pending.claim, self.owner, *args
            ),
            "write",
        )
        if not held:
            raise LeaseLost(
                f"{pending.reference_id}: the claim passed to another replica; not recorded"
            )

    async def record_delivered(
        self, pending: Pending, *, request: dict[str, Any], response: str, attempt: Attempt
    ) -> None:
        await self._fenced(
            claims.DELIVERED,
            pending,
            *_attempt(attempt),
            pending.version,
            attempt.at,
            json.dumps(request),
            response,
        )

    async def record_retry(
        self,
        pending: Pending,
        *,
        request: dict[str, Any] | None,
        response: str | None = None,
        next_attempt_at: float,
        attempt: Attempt,
    ) -> None:
        await self._fenced(
            claims.RETRY,
            pending,
            *_attempt(attempt),
            pending.version,
            attempt.at,
            None if request is None else json.dumps(request),
            response,
            next_attempt_at,
        )

    async def record_failed(
        self, pending: Pending, *, request: dict[str, Any], response: str | None, attempt: Attempt
    ) -> None:
        await self._fenced(
            claims.FAILED,
            pending,
            *_attempt(attempt),
            pending.version,
            attempt.at,
            json.dumps(request),
            response,
        )

    async def record_filtered(self, pending: Pending) -> None:
        await self._fenced(claims.FILTERED, pending, self._clock(), pending.version)

    async def _retry_where(self, where: str, *args: Any) -> int:
        """Make references due again; wakes every replica's worker if any is."""

        async def job(conn: Conn) -> int:
            status = await conn.execute(_RETRY_WHERE + where, *args)
            count = int(status.split()[-1])
            if count:
                await conn.execute("SELECT pg_notify('relay_work', '')")
            return count

        return await self._engine.run(job, "write")

    async def retry(self, reference_id: str, *, now: float) -> bool:
        await self._ingested()
        where = "reference_id = $2 AND status IN ('failed', 'pending')"
        return await self._retry_where(where, now, reference_id) > 0

    async def retry_all_failed(self, *, now: float) -> int:
        await self._ingested()
        return await self._retry_where("status = 'failed'", now)

    async def stats(self) -> OutboxStats:
        async def job(conn: Conn) -> OutboxStats:
            rows = {
                row["status"]: (row["count"], row["oldest"])
                for row in await conn.fetch(
                    "SELECT status, count(*) AS count, min(pending_since) AS oldest FROM alerts"
                    " WHERE status IN ('pending', 'failed') GROUP BY status"
                )
            }
            pending, oldest = rows.get("pending", (0, None))
            failed = rows.get("failed", (0, None))[0]
            # Alerts with events still in the inbox are pending as the claim will find them.
            for row in await conn.fetch(_UNFOLDED_ALERTS):
                if row["status"] != "pending":
                    pending += 1
                    failed -= row["status"] == "failed"
                    since = row["since"]
                    oldest = since if oldest is None else min(oldest, since)
            return OutboxStats(pending=pending, failed=failed, oldest_pending_since=oldest)

        return await self._engine.run(job, "read")

    async def get(self, reference_id: str) -> Delivery | None:
        await self._ingested()
        row = await self._engine.run(
            lambda conn: conn.fetchrow(
                "SELECT * FROM alerts WHERE reference_id = $1", reference_id
            ),
            "read",
        )
        return None if row is None else delivery_of(row)

    async def deliveries(
        self, *, status: Status | None, limit: int, after: str | None
    ) -> list[Delivery]:
        await self._ingested()
        rows = await self._engine.run(
            lambda conn: conn.fetch(
                "SELECT * FROM alerts WHERE ($1::text IS NULL OR status = $1)"
                " AND ($2::text IS NULL OR reference_id > $2) ORDER BY reference_id LIMIT $3",
                None if status is None else status.value,
                after,
                limit,
            ),
            "read",
        )
        return [delivery_of(row) for row in rows]

    async def attempts(self, reference_id: str, *, limit: int) -> list[Attempt]:
        rows = await self._engine.run(
            lambda conn: conn.fetch(
                "SELECT * FROM attempts WHERE reference_id = $1 ORDER BY id DESC LIMIT $2",
                reference_id,
                limit,
            ),
            "read",
        )
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

    async def events(
        self, alert_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        # ``raw`` is text in a UTF8 database (``schema.migrate``): it always decodes.
        rows = await self._engine.run(
            lambda conn: conn.fetch(
                "SELECT id, received_at, action, raw FROM events WHERE alert_id = $1"
                " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
                alert_id,
                before,
                limit,
            ),
            "read",
        )
        return [_stored_event(row) for row in reversed(rows)]

    async def event(self, alert_id: str, event_id: int) -> StoredEvent | None:
        row = await self._engine.run(
            lambda conn: conn.fetchrow(
                "SELECT id, received_at, action, raw FROM events WHERE alert_id = $1 AND id = $2",
                alert_id,
                event_id,
            ),
            "read",
        )
        return None if row is None else _stored_event(row)

    async def prune_events(self, *, before: float, limit: int) -> int:
        # Every event accepted so far is folded first, and one still in the inbox (an
        # ingest in flight has not committed its delete) is never deleted.
        await self._ingested()
        status = await self._engine.run(
            lambda conn: conn.execute(
                "DELETE FROM events WHERE id IN (SELECT e.id FROM events e"
                " WHERE e.received_at < $1 AND NOT EXISTS"
                " (SELECT 1 FROM inbox i WHERE i.event_id = e.id) LIMIT $2)",
                before,
                limit,
            ),
            "write",
        )
        return int(status.split()[-1])


def _attempt(attempt: Attempt) -> tuple[Any, ...]:
    return (
        attempt.version,
        attempt.at,
        attempt.outcome,
        attempt.http_status,
        attempt.error_code,
        attempt.detail,
        attempt.duration_seconds,
    )


def _stored_event(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        id=row["id"], received_at=row["received_at"], action=row["action"], raw=row["raw"]
    )
