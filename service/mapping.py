"""Operator rules: which alerts become incidents, and which DX services they touch.

The defaults send every alert and take services from ``service:`` tags and
``service``/``services`` details; ``rules_file`` reads the operator's YAML into ``Rules``.
Everything here is pure.

The rules read an alert through ``Alert``, the few facts they match on, rather than the
folded state itself: the state is ``translate``'s, which renders with these rules, so the
rules sit below it on the data path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T_co = TypeVar("T_co", covariant=True)


class Known(Protocol[T_co]):
    """A fact the relay has learned (``translate.Stamped``)."""

    @property
    def value(self) -> T_co: ...


class Members(Protocol):
    """A set the relay follows member by member (``translate.StampedSet``)."""

    def members(self) -> tuple[str, ...]: ...


class Alert(Protocol):
    """What the rules match on in an alert's state (``translate.AlertState``)."""

    @property
    def priority(self) -> Known[str] | None: ...
    @property
    def details(self) -> Known[tuple[tuple[str, str], ...]] | None: ...
    @property
    def tags(self) -> Members: ...
    @property
    def teams(self) -> Members: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRef:
    """A DX service: its identifier, and optionally the display name DX shows."""

    identifier: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """Which alerts become incidents. Empty criteria match everything."""

    priorities: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    reference_prefix: str = "opsgenie-"
    priority_map: Mapping[str, str] = field(default_factory=dict)
    filter: Filter = Filter()
    tag_prefix: str = "service:"
    detail_keys: tuple[str, ...] = ("service", "services")
    team_services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    service_map: Mapping[str, ServiceRef] = field(default_factory=dict)
    fallback: tuple[ServiceRef, ...] = ()
    delete_incidents: bool = False


def wanted(state: Alert, rules: Rules) -> bool:
    """Whether the alert passes the filter with what is known of it now.

    Unknown facts do not match: an alert whose priority is not known yet waits, and is
    sent once a later event (or a fetch) shows it matches.
    """
    criteria = rules.filter
    priority = state.priority.value if state.priority else None
    if criteria.priorities and priority not in criteria.priorities:
        return False
    if criteria.tags and not criteria.tags <= set(state.tags.members()):
        return False
    return not criteria.teams or bool(criteria.teams & set(state.teams.members()))


def services_for(state: Alert, rules: Rules) -> list[ServiceRef]:
    """DX services for the alert: tags, details, teams, mapped; de-duplicated, stable order."""
    raw: list[str] = []
    if rules.tag_prefix:
        raw += [
            t[len(rules.tag_prefix) :]
            for t in state.tags.members()
            if t.startswith(rules.tag_prefix)
        ]
    details = dict(state.details.value) if state.details else {}
    for key in rules.detail_keys:
        raw += details.get(key, "").split(",")
    for team in state.teams.members():
        raw += rules.team_services.get(team, ())
    refs: dict[str, ServiceRef] = {}
    for value in (v.strip() for v in raw):
        if value:
            ref = rules.service_map.get(value, ServiceRef(identifier=value))
            refs.setdefault(ref.identifier, ref)
    return list(refs.values()) or list(rules.fallback)


_TOP_KEYS = {"reference_prefix", "priorities", "filter", "services", "delete_incidents"}
_FILTER_KEYS = {"priorities", "tags", "teams"}
_SERVICE_KEYS = {"tag_prefix", "detail_keys", "teams", "map", "fallback"}


def parse_rules(document: object) -> Rules:
    """Rules from the parsed YAML document; ``ValueError`` names the offending key."""
    top = _mapping(document, "the file", _TOP_KEYS)
    filters = _mapping(top.get("filter", {}), "filter", _FILTER_KEYS)
    services = _mapping(top.get("services", {}), "services", _SERVICE_KEYS)
    delete = top.get("delete_incidents", False)
    if not isinstance(delete, bool):
        raise ValueError("delete_incidents: expected true or false")
    return Rules(
        reference_prefix=_string(top.get("reference_prefix", "opsgenie-"), "reference_prefix"),
        priority_map={
            _priority(k, "priorities"): _nonempty(v, f"priorities.{k}")
            for k, v in _mapping(top.get("priorities", {}), "priorities").items()
        },
        filter=Filter(
            priorities=frozenset(
                _priority(p, "filter.priorities")
                for p in _list(filters.get("priorities", []), "filter.priorities")
            ),
            tags=frozenset(_strings(filters.get("tags", []), "filter.tags")),
            teams=frozenset(_strings(filters.get("teams", []), "filter.teams")),
        ),
        tag_prefix=_string(services.get("tag_prefix", "service:"), "services.tag_prefix"),
        detail_keys=_strings(
            services.get("detail_keys", ["service", "services"]), "services.detail_keys"
        ),
        team_services={
            _string(team, "services.teams"): _identifiers(
                [ids] if isinstance(ids, str) else ids, f"services.teams.{team}"
            )
            for team, ids in _mapping(services.get("teams", {}), "services.teams").items()
        },
        service_map={
            _string(value, "services.map"): _service_ref(ref, f"services.map.{value}")
            for value, ref in _mapping(services.get("map", {}), "services.map").items()
        },
        fallback=tuple(
            _service_ref(ref, f"services.fallback[{i}]")
            for i, ref in enumerate(_list(services.get("fallback", []), "services.fallback"))
        ),
        delete_incidents=delete,
    )


def _mapping(value: object, where: str, allowed: set[str] | None = None) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping")
    if allowed is not None and (unknown := set(value) - allowed):
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    return tuple(_string(item, where) for item in _list(value, where))


def _identifier(value: object, where: str) -> str:
    """A DX service identifier. A blank one names no service: say so at start-up, not never."""
    identifier = _string(value, where)
    if not identifier.strip():
        raise ValueError(f"{where}: must not be empty")
    return identifier


def _identifiers(value: object, where: str) -> tuple[str, ...]:
    return tuple(_identifier(item, where) for item in _list(value, where))


def _service_ref(value: object, where: str) -> ServiceRef:
    if isinstance(value, str):
        return ServiceRef(identifier=_identifier(value, where))
    ref = _mapping(value, where, {"identifier", "name"})
    name = ref.get("name")
    return ServiceRef(
        identifier=_identifier(ref.get("identifier"), f"{where}.identifier"),
        name=None if name is None else _string(name, f"{where}.name"),
    )


def _priority(value: object, where: str) -> str:
    """Opsgenie's P1..P5, any case; anything else could never match and would drop alerts."""
    text = _string(value, where).strip().upper()
    if text not in ("P1", "P2", "P3", "P4", "P5"):
        raise ValueError(f"{where}: expected one of P1..P5, got {value!r}")
    return text


def _nonempty(value: object, where: str) -> str:
    text = _string(value, where)
    if not text.strip():
        raise ValueError(f"{where}: must not be empty")
    return text
