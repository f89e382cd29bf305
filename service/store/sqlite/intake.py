"""Intake's write: a commit's worth of webhooks stored with one SQLite statement."""

from __future__ import annotations

import json
import sqlite3

from service.store import Incoming, Outcome


def accept_all(conn: sqlite3.Connection, batch: list[Incoming]) -> list[Outcome]:
    """Store a commit's worth of webhooks with one statement.

    Each SQLite call makes the writer win the GIL back from the event loop, which under
    load can take a whole switch interval, so the batch goes in as one JSON parameter,
    and the ``event_into_inbox`` trigger records each stored event as not folded yet:
    nothing else is written here (the alert rows are the worker's, ``states.ingest``).
    Duplicates (the same body stored before, or twice in this batch) are ignored.
    """
    rows = [
        [i.dedup_key, i.reference_id, i.alert_id, i.action, i.service_id, i.received_at, i.raw]
        for i in batch
    ]
    cursor = conn.execute(_INSERT_EVENTS, (json.dumps(rows),))
    if cursor.rowcount == len(batch):
        return [Outcome.ACCEPTED] * len(batch)
    fresh: set[str] = set()
    if cursor.rowcount:  # some were duplicates: the new rows are the last ``rowcount`` ids
        fresh.update(
            json.loads(
                conn.execute(
                    "SELECT json_group_array(dedup_key) FROM events WHERE id > ?",
                    ((cursor.lastrowid or 0) - cursor.rowcount,),
                ).fetchone()[0]
            )
        )
    outcomes = []
    for incoming in batch:
        if incoming.dedup_key in fresh:
            fresh.discard(incoming.dedup_key)  # the same body again in this batch: duplicate
            outcomes.append(Outcome.ACCEPTED)
        else:
            outcomes.append(Outcome.DUPLICATE)
    return outcomes


_INSERT_EVENTS = (
    "INSERT OR IGNORE INTO events (dedup_key, reference_id, alert_id, action, service_id,"
    " received_at, raw) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),"
    " json_extract(value, '$[5]'), json_extract(value, '$[6]') FROM json_each(?)"
)
