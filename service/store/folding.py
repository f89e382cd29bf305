"""Turning stored events back into an alert's state.

Intake stores the raw event and nothing else, so a webhook costs one row in a multi-row
insert. The state is folded from the stored events when something needs it: the worker
just before it delivers (which also folds every event since the last delivery in one
go), an operator reading a delivery, or the pruner before the events it deletes are gone.
Folding is commutative and idempotent (``translate.fold``), so when and in which batches
that happens cannot change the result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

from service.errors import PayloadError
from service.opsgenie import Action, OpsgenieEvent, event_from_api_alert, parse_event
from service.translate import AlertState, fold

log = logging.getLogger("service.store")


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An event as the events table holds it."""

    id: int
    reference_id: str
    alert_id: str
    action: str
    received_at: float
    raw: str


def event_of(row: StoredRow) -> OpsgenieEvent:
    """The event a stored row was accepted as: webhooks are re-parsed exactly as intake
    parsed them, Alert API reads (``Fetched``) as the API's alert."""
    received_ns = int(row.received_at * 1e9)
    if row.action == Action.FETCHED.value:
        event = event_from_api_alert(json.loads(row.raw), received_ns=received_ns)
        return replace(event, alert_id=row.alert_id)
    return parse_event(row.raw.encode(), received_ns=received_ns)


def replay(state: AlertState | None, rows: Iterable[StoredRow]) -> AlertState | None:
    """``state`` with ``rows`` folded in, in order.

    A row that no longer parses (stored by a build that read it differently) is logged
    and skipped rather than holding back every later event of its alert.
    """
    for row in rows:
        try:
            state = fold(state, event_of(row))
        except (PayloadError, ValueError) as error:
            log.error(
                "stored event could not be folded; skipped",
                extra={"reference_id": row.reference_id, "event_id": row.id, "error": str(error)},
            )
    return state
