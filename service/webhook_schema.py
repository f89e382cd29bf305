"""The webhook body in ``/openapi.json``, written from what reads it.

``webhook_wire.Alert``'s own types (``msgspec`` writes their JSON Schema), and on top
what decoding alone does not check, per action as ``opsgenie._checked`` checks it:
timestamps, priorities, the alert id's characters, and the fields only some actions
read. An action the relay ignores needs only a sound envelope, so the rules apply
``if`` the action is one it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from service import characters
from service.opsgenie import Action
from service.webhook_wire import Alert

#: Space as ``str.strip`` sees it: ``characters.WHITESPACE`` and U+001C..U+001F.
_STRIPPED = f"[{characters.WHITESPACE}\\x1c-\\x1f]*"
#: ``timestamps.parse_timestamp_ns``: a positive epoch number below 10**20, or its digits
#: (up to 19, so that no rounding reaches the bound) with an optional fraction.
_TIMESTAMP = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10**20},
        {
            "type": "string",
            "pattern": f"^{_STRIPPED}0*[1-9][0-9]{{0,18}}(?:\\.[0-9]+)?{_STRIPPED}$",
        },
        {"type": "null"},
    ]
}
_NULLABLE_STRING = {"type": ["string", "null"]}


def json_schema(*, delete_incidents: bool) -> dict[str, Any]:
    """The body's schema; a ``Delete`` is read only where the rules act on it."""
    checked = [
        action.value
        for action in Action
        if action is not Action.FETCHED and (action is not Action.DELETE or delete_incidents)
    ]
    alert = msgspec.json.schema(Alert)["$defs"]["Alert"]
    typed = dict(alert["properties"])
    for name in ("team", "responders", "owner", "username"):
        del typed[name]  # ``Any``: read (and typed) by one action or another
    typed.update(
        alertId={"type": "string", "pattern": characters.ALERT_ID},
        updatedAt=_TIMESTAMP,
        createdAt=_TIMESTAMP,
        tinyId={"type": ["string", "integer", "null"]},
        priority={
            "anyOf": [
                {"type": "string", "pattern": f"^{_STRIPPED}[Pp][1-5]{_STRIPPED}$"},
                {"type": "integer", "minimum": 1, "maximum": 5},
                {"type": "null"},
            ]
        },
    )

    def when(actions: Sequence[Action], properties: dict[str, Any]) -> dict[str, Any]:
        return {
            "if": {"properties": {"action": {"enum": [a.value for a in actions]}}},
            "then": {"properties": {"alert": {"properties": properties}}},
        }

    responders = {"anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "null"}]}
    return {
        "type": "object",
        "description": (
            "Opsgenie's webhook body; members the relay does not read are ignored, and an"
            f" action other than {', '.join(checked)} is ignored once action and"
            " alert.alertId are sound."
        ),
        "required": ["action", "alert"],
        "properties": {
            "action": {"type": "string", "pattern": characters.NOT_BLANK},
            "alert": {
                "type": "object",
                "required": ["alertId"],
                "properties": {"alertId": typed["alertId"]},
            },
        },
        "allOf": [
            {
                "if": {"properties": {"action": {"enum": list(checked)}}},
                "then": {
                    "properties": {
                        "alert": {"properties": typed},
                        "integrationName": _NULLABLE_STRING,
                    }
                },
            },
            when([Action.CREATE], {"team": _NULLABLE_STRING, "responders": responders}),
            when([Action.ADD_TEAM], {"team": _NULLABLE_STRING}),
            when([Action.ASSIGN_OWNERSHIP, Action.TAKE_OWNERSHIP], {"owner": _NULLABLE_STRING}),
            when([Action.TAKE_OWNERSHIP], {"username": _NULLABLE_STRING}),
        ],
    }
