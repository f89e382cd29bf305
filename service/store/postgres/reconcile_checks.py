"""Which open alerts a reconcile reads back next, in PostgreSQL (``Reconcilable``).

As in SQLite (``service.store.sqlite.reconcile_checks``): ``alerts.checked_at`` says when
a reconcile last read an alert back, and the partial index ``alerts_open_by_check``
(migration 2) holds only open alerts, by service object and that time. Whether an alert
is open is the fold's to say (``is_open``, written with its state), not a JSON path read
in SQL: a state holding an escaped NUL is valid for the relay but not for PostgreSQL's
JSON functions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from service.store import OpenReference
from service.store.postgres.engine import PostgresEngine
from service.store.rows import open_references_of


class PostgresReconcileChecks:
    """``Reconcilable`` over ``engine``'s database. ``ingested`` is the outbox's "fold the
    inbox first", so an alert a reconcile has just stored is open or closed as its events
    say, and its row is there to be marked."""

    def __init__(self, engine: PostgresEngine, *, ingested: Callable[[], Awaitable[None]]) -> None:
        self._engine = engine
        self._ingested = ingested

    async def open_references(self, service_id: str, *, limit: int) -> list[OpenReference]:
        await self._ingested()
        rows = await self._engine.run(
            lambda conn: conn.fetch(
                "SELECT reference_id, alert_id, state, checked_at FROM alerts"
                " WHERE service_id = $1 AND is_open"
                " ORDER BY checked_at NULLS FIRST, reference_id LIMIT $2",
                service_id,
                limit,
            ),
            "read",
        )
        return open_references_of(rows)

    async def mark_checked(self, reference_ids: Sequence[str], *, at: float) -> None:
        if not reference_ids:
            return
        await self._ingested()
        await self._engine.run(
            lambda conn: conn.execute(
                "UPDATE alerts SET checked_at = $1 WHERE reference_id = ANY($2::text[])",
                at,
                list(reference_ids),
            ),
            "write",
        )
