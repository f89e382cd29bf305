"""What a backend's stored row means, the same for every backend.

A row is whatever the driver hands back that reads by column name (``sqlite3.Row``,
``asyncpg.Record``); the columns are the same in both schemas.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from service.store import Delivery, Status
from service.translate import AlertState, load_state


class Row(Protocol):
    """A stored row, read by column name."""

    def __getitem__(self, column: str, /) -> Any: ...


def state_of(text: str) -> AlertState | None:
    """A stored state column (JSON ``null`` until the first fold)."""
    data = json.loads(text)
    return None if data is None else load_state(data)


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
