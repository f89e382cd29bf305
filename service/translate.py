"""Fold Opsgenie events into an alert's state, and render that state as a DX request.

Pure functions over frozen values: no I/O, no clock, no globals.

Opsgenie delivers events out of order and more than once, and each payload is partial.
So the state is built from last-writer-wins registers keyed by the event's ``updatedAt``
(ties broken by value), plus sets whose members carry their own stamps. That makes
``fold`` commutative, associative and idempotent: any order or repetition of the same
events yields the same state, which the tests check with hypothesis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, NotRequired, TypedDict, TypeVar
from urllib.parse import quote

from service.mapping import Rules, ServiceRef, services_for
from service.opsgenie import Action, OpsgenieEvent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stamped(Generic[T]):
    """A value and the event time that set it."""

    stamp: int
    value: T


def _later(current: Stamped[T] | None, incoming: Stamped[T] | None) -> Stamped[T] | None:
    """Last writer wins; equal stamps pick the larger value so the order never matters."""
    if current is None:
        return incoming
    if incoming is None:
        return current
    if incoming.stamp != current.stamp:
        return incoming if incoming.stamp > current.stamp else current
    return incoming if _key(incoming.value) > _key(current.value) else current


def _key(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _stamped(stamp: int, value: T | None) -> Stamped[T] | None:
    return None if value is None else Stamped(stamp, value)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True, slots=True)
class StampedSet:
    """A set known in full at ``base.stamp`` plus later single-member changes.

    A payload with ``tags`` states the whole set; ``addedTags`` without ``tags`` or
    ``AddTeam`` changes one member. Members changed after the base are kept as
    ``(member, stamp, present)``; older changes are dropped as the base covers them.
    """

    base: Stamped[tuple[str, ...]] | None = None
    changes: tuple[tuple[str, int, bool], ...] = ()

    @property
    def known(self) -> bool:
        return self.base is not None

    def members(self) -> tuple[str, ...]:
        base_stamp = self.base.stamp if self.base else -1
        result = dict.fromkeys(self.base.value if self.base else ())
        for member, stamp, present in sorted(self.changes, key=lambda c: (c[1], c[0])):
            if stamp <= base_stamp:
                continue
            if present:
                result[member] = None
            else:
                result.pop(member, None)
        return tuple(result)

    def merge(
        self,
        base: Stamped[tuple[str, ...]] | None,
        changes: tuple[tuple[str, int, bool], ...] = (),
    ) -> StampedSet:
        new_base = _later(self.base, base)
        floor = new_base.stamp if new_base else -1
        latest: dict[str, tuple[str, int, bool]] = {}
        for change in (*self.changes, *changes):
            member, stamp, present = change
            if stamp <= floor:
                continue
            held = latest.get(member)
            if held is None or (stamp, present) > (held[1], held[2]):
                latest[member] = change
        return StampedSet(new_base, tuple(sorted(latest.values())))


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertState:
    """Everything the relay knows about one alert; ``None`` means not known yet."""

    alert_id: str
    first_seen_ns: int
    created_at_ns: int | None = None
    closed_at_ns: int | None = None
    deleted: bool = False
    message: Stamped[str] | None = None
    alias: Stamped[str] | None = None
    entity: Stamped[str] | None = None
    source: Stamped[str] | None = None
    tiny_id: Stamped[str] | None = None
    integration_name: Stamped[str] | None = None
    priority: Stamped[str] | None = None
    owner: Stamped[str] | None = None
    acknowledged: Stamped[bool] | None = None
    details: Stamped[tuple[tuple[str, str], ...]] | None = None
    tags: StampedSet = StampedSet()
    teams: StampedSet = StampedSet()

    @property
    def closed(self) -> bool:
        return self.closed_at_ns is not None


def fold(state: AlertState | None, event: OpsgenieEvent) -> AlertState:
    """The state after ``event``; callers fold ``Delete`` only when configured to act on it."""
    if state is not None and state.alert_id != event.alert_id:
        raise ValueError(f"event for alert {event.alert_id} folded into {state.alert_id}")
    s = event.stamp_ns
    if state is None:
        state = AlertState(alert_id=event.alert_id, first_seen_ns=s)
    tag_changes = tuple((tag, s, True) for tag in event.added_tags) + tuple(
        (tag, s, False) for tag in event.removed_tags
    )
    team_changes = ((event.added_team, s, True),) if event.added_team else ()
    created_at = _min(state.created_at_ns, event.created_at_ns)
    return replace(
        state,
        # Only a stand-in for an unknown createdAt; once that is known it is the answer,
        # so an older replay of known facts leaves the state equal.
        first_seen_ns=created_at if created_at is not None else min(state.first_seen_ns, s),
        created_at_ns=created_at,
        # Opsgenie never reopens an alert: the earliest close stands.
        closed_at_ns=_min(state.closed_at_ns, event.closed_at_ns),
        deleted=state.deleted or event.action == Action.DELETE,
        message=_later(state.message, _stamped(s, event.message)),
        alias=_later(state.alias, _stamped(s, event.alias)),
        entity=_later(state.entity, _stamped(s, event.entity)),
        source=_later(state.source, _stamped(s, event.source)),
        tiny_id=_later(state.tiny_id, _stamped(s, event.tiny_id)),
        integration_name=_later(state.integration_name, _stamped(s, event.integration_name)),
        priority=_later(state.priority, _stamped(s, event.priority)),
        owner=_later(state.owner, _stamped(s, event.owner)),
        acknowledged=_later(state.acknowledged, _stamped(s, event.acknowledged)),
        details=_later(state.details, _stamped(s, event.details)),
        tags=state.tags.merge(_stamped(s, event.tags), tag_changes),
        teams=state.teams.merge(_stamped(s, event.teams), team_changes),
    )


class DXService(TypedDict):
    identifier: str
    name: NotRequired[str]


class IncidentUpsert(TypedDict):
    """The body of DX's ``incidents.upsert``.

    ``services`` and ``metadata`` are ``NotRequired``: DX leaves them alone when the key
    is absent and replaces them wholesale when present, so omitted is not the same as null.
    """

    reference_id: str
    started_at: str
    resolved_at: str | None
    name: NotRequired[str]
    priority: NotRequired[str]
    source_url: NotRequired[str]
    services: NotRequired[list[DXService]]
    metadata: NotRequired[dict[str, object]]


OPSGENIE_ALERT_PAGE = "/alert/detail/{alert_id}/details"
#: Seen in public apps linking to JSM alerts; JSM's API answers carry no page URL.
JSM_ALERT_PAGE = "/jira/ops/alerts/{alert_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """Where an alert's page lives: the web URL of the account it came from, and the page's
    path there (Opsgenie's by default; a JSM site's is ``JSM_ALERT_PAGE``)."""

    web_url: str
    alert_page: str = OPSGENIE_ALERT_PAGE

    def alert_url(self, alert_id: str) -> str:
        return self.web_url + self.alert_page.format(alert_id=quote(alert_id, safe=""))


def iso8601(ns: int) -> str:
    """Epoch ns to ISO-8601 UTC with millisecond precision and a ``Z``."""
    moment = datetime.fromtimestamp(ns // 10**6 / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reference_id(alert_id: str, rules: Rules) -> str:
    return f"{rules.reference_prefix}{alert_id}"


def render(state: AlertState, rules: Rules, account: Account) -> IncidentUpsert:
    """The DX request that makes DX hold this state.

    Services and metadata go out only when the relay has seen the alert's full tag set
    (a payload carrying ``tags``, or a fetch from the Alert API); otherwise the keys are
    omitted so DX keeps what it has instead of being wiped by a partial view.
    """
    body = IncidentUpsert(
        reference_id=reference_id(state.alert_id, rules),
        started_at=iso8601(state.created_at_ns or state.first_seen_ns),
        resolved_at=iso8601(state.closed_at_ns) if state.closed_at_ns is not None else None,
        source_url=account.alert_url(state.alert_id),
    )
    if state.message is not None:
        body["name"] = state.message.value
    if state.priority is not None:
        body["priority"] = rules.priority_map.get(state.priority.value, state.priority.value)
    if state.tags.known:
        body["metadata"] = metadata(state)
        # Team rules need the full team list too (a Create or a fetch), or the services
        # would be a partial view that DX takes as the whole.
        if state.teams.known or not rules.team_services:
            body["services"] = [_dx_service(ref) for ref in services_for(state, rules)]
    return body


def _dx_service(ref: ServiceRef) -> DXService:
    service = DXService(identifier=ref.identifier)
    if ref.name is not None:
        service["name"] = ref.name
    return service


def metadata(state: AlertState) -> dict[str, object]:
    """Opsgenie facts DX has no field for. Keys stay within DX's ``[A-Za-z0-9_-]``."""
    data: dict[str, object] = {
        "opsgenie_alert_id": state.alert_id,
        "opsgenie_status": "closed" if state.closed else "open",
        "tags": list(state.tags.members()),
    }
    if state.teams.known:
        data["teams"] = list(state.teams.members())
    registers = {
        "alias": state.alias,
        "entity": state.entity,
        "source": state.source,
        "tiny_id": state.tiny_id,
        "owner": state.owner,
        "acknowledged": state.acknowledged,
        "integration_name": state.integration_name,
    }
    for key, register in registers.items():
        if register is not None and register.value != "":
            data[key] = register.value
    return data


def dump_state(state: AlertState) -> dict[str, object]:
    """The state as JSON-ready data, for the store."""

    def register(value: Stamped[T] | None) -> list[object] | None:
        return None if value is None else [value.stamp, value.value]

    def stamped_set(value: StampedSet) -> dict[str, object]:
        return {"base": register(value.base), "changes": [list(c) for c in value.changes]}

    return {
        "alert_id": state.alert_id,
        "first_seen_ns": state.first_seen_ns,
        "created_at_ns": state.created_at_ns,
        "closed_at_ns": state.closed_at_ns,
        "deleted": state.deleted,
        **{name: register(getattr(state, name)) for name in _REGISTERS},
        "details": register(state.details),
        "tags": stamped_set(state.tags),
        "teams": stamped_set(state.teams),
    }


def load_state(data: dict[str, Any]) -> AlertState:
    """The inverse of ``dump_state``."""

    def register(value: list[Any] | None) -> Stamped[Any] | None:
        return None if value is None else Stamped(int(value[0]), value[1])

    def stamped_set(value: dict[str, Any]) -> StampedSet:
        base = value["base"]
        return StampedSet(
            None if base is None else Stamped(int(base[0]), tuple(base[1])),
            tuple((str(m), int(s), bool(p)) for m, s, p in value["changes"]),
        )

    details = data["details"]
    return AlertState(
        alert_id=data["alert_id"],
        first_seen_ns=data["first_seen_ns"],
        created_at_ns=data["created_at_ns"],
        closed_at_ns=data["closed_at_ns"],
        deleted=data["deleted"],
        details=None
        if details is None
        else Stamped(int(details[0]), tuple((str(k), str(v)) for k, v in details[1])),
        tags=stamped_set(data["tags"]),
        teams=stamped_set(data["teams"]),
        **{name: register(data[name]) for name in _REGISTERS},
    )


_REGISTERS = (
    "message",
    "alias",
    "entity",
    "source",
    "tiny_id",
    "integration_name",
    "priority",
    "owner",
    "acknowledged",
)
