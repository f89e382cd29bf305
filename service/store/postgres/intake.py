"""Intake's write: a commit's worth of webhooks stored with one PostgreSQL statement."""

from __future__ import annotations

from service.store import Incoming, Outcome
from service.store.postgres.schema import Conn

#: One statement, so one round trip and one commit whatever the batch size: the events
#: go in as one array per column (``unnest``), each new one's id into ``inbox`` in the
#: same statement (whose trigger notifies the workers), and the dedup keys of the rows
#: actually written come back. A key already stored, or twice in the batch, writes nothing.
_INSERT_EVENTS = (
    "WITH fresh AS (INSERT INTO events (dedup_key, reference_id, alert_id, action,"
    " service_id, received_at, raw) SELECT * FROM unnest($1::text[], $2::text[], $3::text[],"
    " $4::text[], $5::text[], $6::float8[], $7::text[])"
    " ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key),"
    " queued AS (INSERT INTO inbox (event_id) SELECT id FROM fresh)"
    " SELECT dedup_key FROM fresh"
)


async def accept_all(conn: Conn, batch: list[Incoming]) -> list[Outcome]:
    """Store a commit's worth of webhooks; one outcome per webhook, in order.

    Only the first of equal bodies in one batch is accepted, as if they had come one
    after the other.
    """
    rows = await conn.fetch(
        _INSERT_EVENTS,
        [i.dedup_key for i in batch],
        [i.reference_id for i in batch],
        [i.alert_id for i in batch],
        [i.action for i in batch],
        [i.service_id for i in batch],
        [i.received_at for i in batch],
        [i.raw for i in batch],
    )
    fresh = {row["dedup_key"] for row in rows}
    outcomes = []
    for incoming in batch:
        if incoming.dedup_key in fresh:
            fresh.discard(incoming.dedup_key)  # the same body again in this batch: duplicate
            outcomes.append(Outcome.ACCEPTED)
        else:
            outcomes.append(Outcome.DUPLICATE)
    return outcomes
