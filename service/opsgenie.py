"""Opsgenie's webhook payloads, parsed strictly where the relay uses them and leniently elsewhere.

Opsgenie sends partial, loosely typed JSON (see ``tests/payloads/README.md``): only
``alertId`` is always there, ``updatedAt`` comes in ns, ms or as a numeric string, old
payloads carry integer priorities, and tag deltas are comma-separated strings. This module
turns all of that into one typed ``OpsgenieEvent`` and names the field when it cannot.

A webhook is decoded and type-checked in one pass by ``msgspec`` (``webhook_wire``), at
the door and again, identically, when the fold reads the stored body; the few checks no
type can say (a priority's range, a timestamp's unit) follow on the typed result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from service import characters
from service.errors import PayloadError
from service.timestamps import parse_iso_ns, parse_timestamp_ns
from service.webhook_wire import UNPRINTABLE_ID, Alert, decode_webhook


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


#: 1..5, as ``int`` or ``float`` (``2.0 in _NUMBERED``; ``2.5`` is not).
_NUMBERED = frozenset(range(1, 6))
#: ``P1``..``P5`` as written (either case), to the form the relay stores.
_PRIORITIES = {f"{p}{n}": f"P{n}" for p in "Pp" for n in range(1, 6)}

#: The actions that are an ownership change, and those that set the acknowledged flag:
#: one lookup per webhook, where comparing with each ``Action`` member took one per member.
_OWNERSHIP = frozenset({Action.ASSIGN_OWNERSHIP.value, Action.TAKE_OWNERSHIP.value})
_ACKNOWLEDGED = {Action.ACKNOWLEDGE.value: True, Action.UNACKNOWLEDGE.value: False}


class Webhook(NamedTuple):
    """A webhook decoded at the door: ``text`` is the body as stored, ``action`` and
    ``alert_id`` are all intake needs to decide whether to act on it.

    The rest is checked only by ``event()``, so an action intake ignores is never read
    further, and a field it would never use cannot make it a 400.
    """

    text: str
    action: str
    alert_id: str
    alert: Alert | PayloadError
    integration_name: str | None
    received_ns: int

    @property
    def known_action(self) -> Action | None:
        return known_action(self.action)

    def event(self) -> OpsgenieEvent:
        """The whole event. Raises ``PayloadError`` naming the first field that is wrong."""
        if isinstance(self.alert, PayloadError):
            raise self.alert
        return _event(self, self.alert)

    def check(self) -> None:
        """Raises what ``event()`` would, without building the event: intake stores the
        body and only checks it (the frozen event's construction was half of ``event()``)."""
        if isinstance(self.alert, PayloadError):
            raise self.alert
        _checked(self, self.alert)


def read_webhook(body: bytes, *, received_ns: int) -> Webhook:
    """Decode a webhook body (one pass). Raises ``PayloadError`` when it is not JSON or
    lacks what every webhook carries; ``Webhook.event`` says whether the rest is right."""
    return Webhook(*decode_webhook(body), received_ns)


def parse_event(body: bytes, *, received_ns: int) -> OpsgenieEvent:
    """Parse one webhook body. Raises ``PayloadError`` naming the problem."""
    return read_webhook(body, received_ns=received_ns).event()


class _Checked(NamedTuple):
    """The event's fields that can be wrong after decoding (a type cannot say so)."""

    stamp_ns: int
    owner: str | None
    created_at_ns: int | None
    priority: str | None
    teams: tuple[str, ...] | None
    added_team: str | None
    tiny_id: str | None


def _checked(webhook: Webhook, alert: Alert) -> _Checked:
    """The checks, in the order that decides which field a 400 names."""
    action = webhook.action
    updated = alert.updated_at
    stamp = (
        webhook.received_ns
        if updated is None
        else parse_timestamp_ns(updated, field="alert.updatedAt")
    )
    # Read only where they mean an ownership change: a stray type in them on any other
    # action is in a field the relay does not use, so it is not the sender's error.
    owner = None
    if action in _OWNERSHIP:
        owner = _string(alert.owner, "alert.owner")
        if action == Action.TAKE_OWNERSHIP and owner is None:
            owner = _string(alert.username, "alert.username")
    created = alert.created_at
    return _Checked(
        stamp,
        owner,
        None if created is None else parse_timestamp_ns(created, field="alert.createdAt"),
        _priority(alert.priority),
        _teams(alert.responders, alert.team) if action == Action.CREATE else None,
        _string(alert.team, "alert.team") if action == Action.ADD_TEAM else None,
        _tiny_id(alert.tiny_id),
    )


def _event(webhook: Webhook, alert: Alert) -> OpsgenieEvent:
    action = webhook.action
    checked = _checked(webhook, alert)
    return OpsgenieEvent(
        action=action,
        alert_id=webhook.alert_id,
        stamp_ns=checked.stamp_ns,
        message=alert.message,
        alias=alert.alias,
        entity=alert.entity,
        source=alert.source,
        tiny_id=checked.tiny_id,
        created_at_ns=checked.created_at_ns,
        priority=checked.priority,
        tags=None if alert.tags is None else _unique(alert.tags),
        added_tags=_comma_list(alert.added_tags),
        removed_tags=_comma_list(alert.removed_tags),
        teams=checked.teams,
        added_team=checked.added_team,
        owner=checked.owner,
        acknowledged=_ACKNOWLEDGED.get(action),
        closed_at_ns=checked.stamp_ns if action == Action.CLOSE else None,
        # Keys are unique, so sorting the pairs never compares two values.
        details=None if alert.details is None else tuple(sorted(alert.details.items())),
        integration_name=webhook.integration_name,
    )


def _string(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PayloadError(f"{field}: expected a string", field=field)


def _text(
    mapping: Mapping[str, Any], key: str, *, allow_int: bool = False, prefix: str = "alert."
) -> str | None:
    value = mapping.get(key)
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _string(value, f"{prefix}{key}")


def _priority(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and (priority := _PRIORITIES.get(value.strip())):
        return priority
    if isinstance(value, int | float) and not isinstance(value, bool) and value in _NUMBERED:
        return f"P{int(value)}"
    raise PayloadError("alert.priority: expected P1..P5 or 1..5", field="alert.priority")


def _tiny_id(value: str | int | float | None) -> str | None:
    """A string as sent; a number (``5``, ``5.0``) as its integer's digits."""
    if isinstance(value, float):
        if not value.is_integer():
            raise PayloadError(
                "alert.tinyId: expected a string or an integer", field="alert.tinyId"
            )
        return str(int(value))
    return str(value) if isinstance(value, int) else value


def _unique(names: list[str]) -> tuple[str, ...]:
    """Stripped, empty ones dropped, deduplicated (first occurrence first)."""
    return tuple(dict.fromkeys(name for item in names if (name := item.strip())))


def _string_list(mapping: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PayloadError(f"alert.{key}: expected a list of strings", field=f"alert.{key}")
    return _unique(value)


def _comma_list(value: str | list[str] | None) -> tuple[str, ...]:
    """``addedTags``/``removedTags`` are one comma-separated string (or, from some
    senders, an array of them)."""
    if value is None:
        return ()
    if isinstance(value, list):
        value = ",".join(value)
    return _unique(value.split(","))


def _teams(responders: object, team: object) -> tuple[str, ...] | None:
    """Team names on ``Create``: from team responders, else the ``team`` field."""
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
    name = _string(team, "alert.team")
    if name:
        names[name] = None
    if responders is None and name is None:
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
    return tuple(sorted(value.items()))


def event_from_api_alert(data: Mapping[str, Any], *, received_ns: int) -> OpsgenieEvent:
    """An alert from the Alert API (``GET /v2/alerts/{id}``'s ``data``) as a ``Fetched`` event.

    It states the whole alert at its ``updatedAt`` (ISO here, unlike webhooks), so folding
    it fills every gap without overriding newer webhook facts. ``report.closeTime`` is
    the milliseconds from creation to close (Opsgenie's Alert API docs); without it a
    closed alert counts as closed at ``updatedAt``.
    """
    alert_id = data.get("id")
    if not isinstance(alert_id, str) or characters.blank(alert_id):
        raise PayloadError("data.id is required", field="data.id")
    if not characters.alert_id_ok(alert_id):
        raise PayloadError(UNPRINTABLE_ID.format("data.id"), field="data.id")
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
