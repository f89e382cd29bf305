"""Intake's write: a commit's worth of webhooks stored with one SQLite statement."""

from __future__ import annotations

import functools
import sqlite3

from service.store import Incoming, Outcome

_INSERT = (
    "INSERT OR IGNORE INTO events"
    " (dedup_key, reference_id, alert_id, action, service_id, received_at, raw) VALUES "
)
#: One webhook's values: placeholders only, so the statement holds no input.
_ROW = "(?, ?, ?, ?, ?, ?, ?)"


def accept_all(conn: sqlite3.Connection, batch: list[Incoming]) -> list[Outcome]:
    """Store a commit's worth of webhooks with one statement.

    Each SQLite call makes the writer win the GIL back from the event loop, which under
    load can take a whole switch interval, so the batch goes in as one multi-row INSERT
    (``executemany`` would hand the GIL back once per row, and a JSON parameter unpacked
    by ``json_each`` costs 8 us more per row than plain parameters), and the
    ``event_into_inbox`` trigger records each stored event as not folded yet: nothing
    else is written here (the alert rows are the worker's, ``states.ingest``).
    Duplicates (the same body stored before, or twice in this batch) are ignored, and
    ``RETURNING`` names the rows stored: their ids cannot, as an ignored row may use up an
    id of AUTOINCREMENT's.
    """
    params = [
        value
        for i in batch
        for value in (
            i.dedup_key,
            i.reference_id,
            i.alert_id,
            i.action,
            i.service_id,
            i.received_at,
            i.raw,
        )
    ]
    fresh = {key for (key,) in conn.execute(_insert(len(batch)), params)}
    if len(fresh) == len(batch):
        return [Outcome.ACCEPTED] * len(batch)
    outcomes = []
    for incoming in batch:
        if incoming.dedup_key in fresh:
            fresh.discard(incoming.dedup_key)  # the same body again in this batch: duplicate
            outcomes.append(Outcome.ACCEPTED)
        else:
            outcomes.append(Outcome.DUPLICATE)
    return outcomes


@functools.lru_cache(maxsize=64)
def _insert(rows: int) -> str:
    """The INSERT for ``rows`` webhooks, built once per batch size; SQLite prepares it once
    too (the connection's statement cache is keyed by the text). SQLite caps a statement's
    parameters (32,766 by default: 4,680 webhooks), far above the writer's batch size.
    """
    return _INSERT + ", ".join([_ROW] * rows) + " RETURNING dedup_key"
