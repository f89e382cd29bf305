"""Opsgenie's webhook payloads, parsed strictly where the relay uses them and leniently elsewhere.

Opsgenie sends partial, loosely typed JSON (see ``tests/payloads/README.md``): only
``alertId`` is always there, ``updatedAt`` comes in ns, ms or as a numeric string, old
payloads carry integer priorities, and tag deltas are comma-separated strings. This module
turns all of that into one typed ``OpsgenieEvent`` and names the field when it cannot.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from service import strict_json
from service.errors import PayloadError
from service.timestamps import parse_iso_ns, parse_timestamp_ns


class Action(StrEnum):
    """The actions Opsgenie documents; a custom action arrives under its own name."""

    CREATE = "Create"
    ACKNOWLEDGE = "Acknowledge"
    UNACKNOWLEDGE = "UnAcknowledge"
    CLOSE = "Close"
    ADD_NOTE = "AddNote"
    DELETE = "Delete"
    ADD_TAGS = "AddTags"
    REMOVE_TAGS = "RemoveTags"
    ASSIGN_OWNERSHIP = "AssignOwnership"
    TAKE_OWNERSHIP = "TakeOwnership"
    ADD_RECIPIENT = "AddRecipient"
    ADD_TEAM = "AddTeam"
    ESCALATE = "Escalate"
    SNOOZE = "Snooze"
    SNOOZE_ENDED = "SnoozeEnded"
    UPDATE_PRIORITY = "UpdatePriority"
    #: Not a webhook action: the alert as Opsgenie's Alert API returned it (enrichment).
    FETCHED = "Fetched"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsgenieEvent:
    """One alert action, reduced to what the relay folds into an alert's state.

    ``None`` means "this payload did not say", never "empty". ``stamp_ns`` orders events:
    the alert's ``updatedAt`` in nanoseconds, or the receipt time when it is missing.
    """

    action: str
    alert_id: str
    stamp_ns: int
    message: str | None = None
    alias: str | None = None
    entity: str | None = None
    source: str | None = None
    tiny_id: str | None = None
    created_at_ns: int | None = None
    priority: str | None = None
    tags: tuple[str, ...] | None = None
    added_tags: tuple[str, ...] = ()
    removed_tags: tuple[str, ...] = ()
    teams: tuple[str, ...] | None = None
    added_team: str | None = None
    owner: str | None = None
    acknowledged: bool | None = None
    closed_at_ns: int | None = None
    details: tuple[tuple[str, str], ...] | None = None
    integration_name: str | None = None

    @property
    def known_action(self) -> Action | None:
        return known_action(self.action)


#: Every ``Action`` by its exact (case-sensitive) name: one dict lookup, where ``Action(x)``
#: raises and catches ``ValueError`` for every custom or unknown action.
_ACTIONS: dict[str, Action] = {action.value: action for action in Action}


def known_action(action: str) -> Action | None:
    """The ``Action`` named exactly ``action``, or None for a custom or unknown one."""
    return _ACTIONS.get(action)


class Envelope(NamedTuple):
    """What every webhook must carry, checked before anything else: a JSON
    object with an ``action`` and an ``alert.alertId``.

    Intake decides from ``action`` alone whether the relay acts on a webhook; one it
    ignores is never read further, so a field it would never use cannot make it a 400.
    """

    action: str
    alert_id: str
    alert: dict[str, Any]
    document: dict[str, Any]

    @property
    def known_action(self) -> Action | None:
        return known_action(self.action)


#: ``P1``..``P5`` as written (either case), to the form the relay stores.
_PRIORITIES = {f"{p}{n}": f"P{n}" for p in "Pp" for n in range(1, 6)}

#: The actions that are an ownership change, and those that set the acknowledged flag:
#: one lookup per webhook, where comparing with each ``Action`` member took one per member.
_OWNERSHIP = frozenset({Action.ASSIGN_OWNERSHIP.value, Action.TAKE_OWNERSHIP.value})
_ACKNOWLEDGED = {Action.ACKNOWLEDGE.value: True, Action.UNACKNOWLEDGE.value: False}


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _utf8_encodable(document: object) -> bool:
    """False when a decoded string holds a lone surrogate (checked only if one may be there)."""
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def parse_event(body: bytes, *, received_ns: int) -> OpsgenieEvent:
    """Parse one webhook body. Raises ``PayloadError`` naming the problem."""
    return event_from_envelope(read_envelope(body), received_ns=received_ns)


# The id names the DX incident and keys every stored row; Opsgenie's are plain text, and a
# control character (NUL above all) would not survive every layer below unchanged.
_UNPRINTABLE_ID = "{}: control or other unprintable characters are not allowed"


def read_envelope(body: bytes) -> Envelope:
    """Decode a webhook body and check only what every webhook must carry.

    Raises ``PayloadError`` naming the problem; ``event_from_envelope`` reads the rest.
    """
    try:
        # Strict UTF-8 (a BOM allowed): ``json.loads(bytes)`` decodes with "surrogatepass",
        # which would let UTF-8-encoded surrogates through as lone surrogates. This is what
        # the "utf-8-sig" codec does, without its pure-Python wrapper.
        document = strict_json.loads(body.removeprefix(codecs.BOM_UTF8).decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError is a ValueError too
        # json's own messages quote no input; ours say which rule was broken.
        why = f": {error}" if isinstance(error, strict_json.NotStrictJSON) else ""
        raise PayloadError(f"body is not valid JSON{why}", field="body") from None
    if _SURROGATE_ESCAPE.search(body) and not _utf8_encodable(document):
        # "\ud800" is valid JSON but no UTF-8 text: SQLite and DX could never take it.
        raise PayloadError("body has an unpaired UTF-16 surrogate escape", field="body")
    if not isinstance(document, dict):
        raise PayloadError("body must be a JSON object", field="body")
    action = document.get("action")
    if action is None:
        raise PayloadError("action is required", field="action")
    if not isinstance(action, str) or not action.strip():
        raise PayloadError("action: expected a non-empty string", field="action")
    alert = document.get("alert")
    if alert is None:
        raise PayloadError("alert.alertId is required", field="alert.alertId")
    if not isinstance(alert, dict):
        raise PayloadError("alert: expected an object", field="alert")
    alert_id = _text(alert, "alertId")
    if alert_id is None or not alert_id.strip():
        raise PayloadError("alert.alertId is required", field="alert.alertId")
    if not alert_id.isprintable():
        raise PayloadError(_UNPRINTABLE_ID.format("alert.alertId"), field="alert.alertId")
    return Envelope(action, alert_id, alert, document)


def event_from_envelope(envelope: Envelope, *, received_ns: int) -> OpsgenieEvent:
    """The whole event, every field the relay uses checked. Raises ``PayloadError``
    naming the first field that is wrong."""
    action, alert_id, alert, document = envelope
    updated = alert.get("updatedAt")
    stamp = received_ns if updated is None else parse_timestamp_ns(updated, field="alert.updatedAt")
    created = alert.get("createdAt")
    # Read only where they mean an ownership change: a stray type in them on any other
    # action is in a field the relay does not use, so it is not the sender's error.
    owner = None
    if action in _OWNERSHIP:
        owner = _text(alert, "owner")
        if action == Action.TAKE_OWNERSHIP and owner is None:
            owner = _text(alert, "username")
    return OpsgenieEvent(
        action=action,
        alert_id=alert_id,
        stamp_ns=stamp,
        message=_text(alert, "message"),
        alias=_text(alert, "alias"),
        entity=_text(alert, "entity"),
        source=_text(alert, "source"),
        tiny_id=_text(alert, "tinyId", allow_int=True),
        created_at_ns=None
        if created is None
        else parse_timestamp_ns(created, field="alert.createdAt"),
        priority=_priority(alert.get("priority")),
        tags=_string_list(alert, "tags"),
        added_tags=_comma_list(alert, "addedTags"),
        removed_tags=_comma_list(alert, "removedTags"),
        teams=_teams(alert) if action == Action.CREATE else None,
        added_team=_text(alert, "team") if action == Action.ADD_TEAM else None,
        owner=owner,
        acknowledged=_ACKNOWLEDGED.get(action),
        closed_at_ns=stamp if action == Action.CLOSE else None,
        details=_details(alert.get("details")),
        integration_name=_text(document, "integrationName", prefix=""),
    )


def _text(
    mapping: Mapping[str, Any], key: str, *, allow_int: bool = False, prefix: str = "alert."
) -> str | None:
    value = mapping.get(key)
    if value is None or isinstance(value, str):
        return value
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(f"{prefix}{key}: expected a string", field=f"{prefix}{key}")


def _priority(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and (priority := _PRIORITIES.get(value.strip())):
        return priority
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
        return f"P{value}"
    raise PayloadError("alert.priority: expected P1..P5 or 1..5", field="alert.priority")


def _string_list(alert: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = alert.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise PayloadError(f"alert.{key}: expected a list of strings", field=f"alert.{key}")
    # One pass checks, strips and deduplicates (first occurrence first): nearly every
    # webhook carries its tags, so this is on the hot path.
    names: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):
            raise PayloadError(f"alert.{key}: expected a list of strings", field=f"alert.{key}")
        if name := item.strip():
            names[name] = None
    return tuple(names)


def _comma_list(alert: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """``addedTags``/``removedTags`` are one comma-separated string, not an array."""
    value = alert.get(key)
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise PayloadError(f"alert.{key}: expected a comma-separated string", field=f"alert.{key}")
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def _teams(alert: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Team names on ``Create``: from team responders, else the ``team`` field."""
    responders = alert.get("responders")
    names: dict[str, None] = {}  # non-empty, first occurrence first
    if responders is not None:
        if not isinstance(responders, list):
            raise PayloadError("alert.responders: expected a list", field="alert.responders")
        for responder in responders:
            if not isinstance(responder, dict):
                raise PayloadError(
                    "alert.responders: expected a list of objects", field="alert.responders"
                )
            name = responder.get("name")
            if responder.get("type") == "team" and isinstance(name, str) and name:
                names[name] = None
    team = _text(alert, "team")
    if team:
        names[team] = None
    if responders is None and team is None:
        return None
    return tuple(names)


def _details(value: object) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PayloadError("alert.details: expected an object", field="alert.details")
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(
                f"alert.details.{key}: expected a string", field=f"alert.details.{key}"
            )
    # Keys are unique, so sorting the pairs never compares two values.
    return tuple(sorted(value.items()))


def event_from_api_alert(data: Mapping[str, Any], *, received_ns: int) -> OpsgenieEvent:
    """An alert from the Alert API (``GET /v2/alerts/{id}``'s ``data``) as a ``Fetched`` event.

    It states the whole alert at its ``updatedAt`` (ISO here, unlike webhooks), so folding
    it fills every gap without overriding newer webhook facts. ``report.closeTime`` is
    the milliseconds from creation to close (Opsgenie's Alert API docs); without it a
    closed alert counts as closed at ``updatedAt``.
    """
    alert_id = data.get("id")
    if not isinstance(alert_id, str) or not alert_id.strip():
        raise PayloadError("data.id is required", field="data.id")
    if not alert_id.isprintable():
        raise PayloadError(_UNPRINTABLE_ID.format("data.id"), field="data.id")
    updated = data.get("updatedAt")
    stamp = received_ns if updated is None else parse_iso_ns(updated, field="data.updatedAt")
    created = data.get("createdAt")
    created_ns = None if created is None else parse_iso_ns(created, field="data.createdAt")
    closed_ns = None
    if data.get("status") == "closed":
        report = data.get("report")
        close_ms = report.get("closeTime") if isinstance(report, dict) else None
        if isinstance(close_ms, int) and not isinstance(close_ms, bool) and created_ns is not None:
            closed_ns = created_ns + close_ms * 10**6
        else:
            closed_ns = stamp
    acknowledged = data.get("acknowledged")
    if acknowledged is not None and not isinstance(acknowledged, bool):
        raise PayloadError("data.acknowledged: expected a boolean", field="data.acknowledged")
    owner = _text(data, "owner", prefix="data.")
    return OpsgenieEvent(
        action=Action.FETCHED.value,
        alert_id=alert_id,
        stamp_ns=stamp,
        message=_text(data, "message", prefix="data."),
        alias=_text(data, "alias", prefix="data."),
        entity=_text(data, "entity", prefix="data."),
        source=_text(data, "source", prefix="data."),
        tiny_id=_text(data, "tinyId", allow_int=True, prefix="data."),
        created_at_ns=created_ns,
        priority=_priority(data.get("priority")),
        tags=_string_list(data, "tags") if data.get("tags") is not None else (),
        teams=_api_teams(data.get("teams")),
        owner=owner or None,
        acknowledged=acknowledged,
        closed_at_ns=closed_ns,
        details=_details(data.get("details")),
        integration_name=_text(integration, "name", prefix="data.integration.")
        if isinstance(integration := data.get("integration"), dict)
        else None,
    )


def _api_teams(value: object) -> tuple[str, ...] | None:
    """``teams`` of the Alert API: ``[{"id": ..., "name": ...}]``.

    The API often returns ids only, while webhooks name teams. A set of ids would replace
    the names learned from webhooks and break team-to-service rules, so without a name
    for every team the fetch says nothing about teams.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise PayloadError("data.teams: expected a list", field="data.teams")
    names: list[str] = []
    for team in value:
        if not isinstance(team, dict):
            raise PayloadError("data.teams: expected a list of objects", field="data.teams")
        name = team.get("name")
        if not isinstance(name, str) or not name.strip():
            return None
        names.append(name.strip())
    return tuple(dict.fromkeys(names))
