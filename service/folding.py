"""Turning stored events back into an alert's state.

Intake stores the raw event and nothing else, so a webhook costs one row in a multi-row
insert. The state is folded from the stored events on the worker's side: by the claim
(which folds every event accepted since the last one), and by an operator's read or the
pruner when they come first. Folding is commutative and idempotent (``translate.fold``),
so when, in which batches and in which order of commit that happens cannot change the
result. Pure: a store hands its rows in and gets the state
back, with the rows that could not be read, for it to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from service import strict_json
from service.errors import PayloadError
from service.opsgenie import Action, OpsgenieEvent, event_from_api_alert, parse_event
from service.translate import AlertState, fold


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An event as a store holds it."""

    id: int
    reference_id: str
    alert_id: str
    action: str
    received_at: float
    raw: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A stored row that no longer parses, and why."""

    row: StoredRow
    error: str


@dataclass(frozen=True, slots=True)
class Replayed:
    state: AlertState | None
    skipped: list[Skipped]


#: What a store calls to fold its rows: ``replay`` unless a test or another build says otherwise.
Replay = Callable[[AlertState | None, Iterable[StoredRow]], Replayed]


def event_of(row: StoredRow) -> OpsgenieEvent:
    """The event a stored row was accepted as: webhooks are re-parsed exactly as intake
    parsed them, Alert API reads (``Fetched``) as the API's alert."""
    received_ns = int(row.received_at * 1e9)
    if row.action == Action.FETCHED.value:
        # As strictly as a webhook: an earlier build may have stored what JSON forbids.
        data = strict_json.loads(row.raw)
        if not isinstance(data, dict):
            raise PayloadError("stored alert is not a JSON object", field="raw")
        event = event_from_api_alert(data, received_ns=received_ns)
        return replace(event, alert_id=row.alert_id)
    return parse_event(row.raw.encode(), received_ns=received_ns)


def replay(state: AlertState | None, rows: Iterable[StoredRow]) -> Replayed:
    """``state`` with ``rows`` folded in, in order.

    A row that no longer parses (stored by a build that read it differently) is skipped
    rather than holding back every later event of its alert, and returned among
    ``skipped`` so that the store can say so.
    """
    skipped = []
    for row in rows:
        try:
            state = fold(state, event_of(row))
        except (PayloadError, ValueError) as error:
            skipped.append(Skipped(row, str(error)))
    return Replayed(state, skipped)
