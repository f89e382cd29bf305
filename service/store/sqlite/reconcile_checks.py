"""Which open alerts a reconcile reads back next, in SQLite (``Reconcilable``).

``alerts.checked_at`` says when a reconcile last read an alert back from Opsgenie; the
partial index ``alerts_open_by_check`` (schema migration 7) holds only open alerts, by
service object and that time, so the next ones to check come straight off it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence

from service.store import OpenReference
from service.store.rows import open_references_of
from service.store.sqlite.engine import SQLiteEngine

#: A service object's open alerts, longest unchecked first. The condition after
#: ``service_id`` is the index's, word for word: SQLite uses a partial index only for a
#: query whose WHERE contains the index's own.
OPEN_ALERTS = (
    "SELECT reference_id, alert_id, state, checked_at FROM alerts WHERE service_id = ?"
    " AND CASE WHEN json_valid(state) THEN json_type(state, '$.closed_at_ns') = 'null'"
    " AND json_extract(state, '$.deleted') = 0 ELSE 0 END"
    " ORDER BY checked_at LIMIT ?"
)


class SQLiteReconcileChecks:
    """``Reconcilable`` over ``engine``'s file: reads on the reader, marks on the writer.

    ``ingested`` returns once every accepted event is in its alert's row (the outbox's):
    both methods go through it first, so an alert a reconcile has just stored is open or
    closed as its events say, and its row is there to be marked checked.
    """

    def __init__(self, engine: SQLiteEngine, *, ingested: Callable[[], Awaitable[None]]) -> None:
        self._engine = engine
        self._ingested = ingested

    async def open_references(self, service_id: str, *, limit: int) -> list[OpenReference]:
        await self._ingested()

        def run(conn: sqlite3.Connection) -> list[OpenReference]:
            return open_references_of(conn.execute(OPEN_ALERTS, (service_id, limit)))

        return await self._engine.read(run)

    async def mark_checked(self, reference_ids: Sequence[str], *, at: float) -> None:
        if not reference_ids:
            return
        await self._ingested()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE alerts SET checked_at = ?"
                " WHERE reference_id IN (SELECT value FROM json_each(?))",
                (at, json.dumps(list(reference_ids))),
            )

        await self._engine.write(run)
