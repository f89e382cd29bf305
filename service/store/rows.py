"""What a backend's stored row means, the same for every backend.

A row is whatever the driver hands back that reads by column name (``sqlite3.Row``,
``asyncpg.Record``); the columns are the same in both schemas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from service.store import Delivery, OpenReference, Status
from service.translate import AlertState, load_state


class Row(Protocol):
    """A stored row, read by column name."""

    def __getitem__(self, column: str, /) -> Any: ...


def state_of(text: str) -> AlertState | None:
    """A stored state column (JSON ``null`` until the first fold)."""
    data = json.loads(text)
    return None if data is None else load_state(data)


def open_references_of(rows: Iterable[Row]) -> list[OpenReference]:
    """Rows of open alerts as a reconcile reads them; a row not yet folded has no state
    to compare with Opsgenie's, so it waits for a later round."""
    found = []
    for row in rows:
        state = state_of(row["state"])
        if state is not None:
            found.append(
                OpenReference(
                    reference_id=row["reference_id"],
                    alert_id=row["alert_id"],
                    state=state,
                    checked_at=row["checked_at"],
                )
            )
    return found


def json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def delivery_of(row: Row) -> Delivery:
    return Delivery(
        reference_id=row["reference_id"],
        alert_id=row["alert_id"],
        service_id=row["service_id"],
        status=Status(row["status"]),
        version=row["version"],
        delivered_version=row["delivered_version"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error_code=row["last_error_code"],
        last_error=row["last_error"],
        last_request=json_or_none(row["last_request"]),
        last_response=row["last_response"],
        updated_at=row["updated_at"],
        state=state_of(row["state"]),
    )
