"""Operator rules: parsing every key, naming every bad one, services and the filter."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from service.mapping import Filter, Rules, ServiceRef, parse_rules, services_for, wanted
from service.opsgenie import parse_event
from service.translate import AlertState, Stamped, StampedSet, fold
from tests.conftest import payload, sample

STAMP = 1420452191104000000


def state(
    *,
    tags: tuple[str, ...] | None = None,
    teams: tuple[str, ...] | None = None,
    details: dict[str, str] | None = None,
    priority: str | None = None,
) -> AlertState:
    return AlertState(
        alert_id="a-1",
        first_seen_ns=STAMP,
        tags=StampedSet(None if tags is None else Stamped(STAMP, tags)),
        teams=StampedSet(None if teams is None else Stamped(STAMP, teams)),
        details=None if details is None else Stamped(STAMP, tuple(sorted(details.items()))),
        priority=None if priority is None else Stamped(STAMP, priority),
    )


def folded(*documents: dict[str, Any]) -> AlertState:
    result: AlertState | None = None
    for document in documents:
        result = fold(result, parse_event(json.dumps(document).encode(), received_ns=STAMP))
    assert result is not None
    return result


def ids(refs: list[ServiceRef]) -> list[str]:
    return [ref.identifier for ref in refs]


# -- parse_rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("document", [{}, {"filter": {}, "services": {}}])
def test_defaults(document: dict[str, Any]) -> None:
    rules = parse_rules(document)
    assert rules == Rules()
    assert rules.reference_prefix == "opsgenie-"
    assert rules.priority_map == {}
    assert rules.filter == Filter()
    assert rules.tag_prefix == "service:"
    assert rules.detail_keys == ("service", "services")
    assert rules.team_services == {}
    assert rules.service_map == {}
    assert rules.fallback == ()
    assert rules.delete_incidents is False


def test_every_key() -> None:
    rules = parse_rules(
        {
            "reference_prefix": "og-",
            "priorities": {"P1": "SEV1", "P2": "SEV2"},
            "filter": {"priorities": ["P1", "P2"], "tags": ["prod"], "teams": ["ops", "db"]},
            "services": {
                "tag_prefix": "svc/",
                "detail_keys": ["component"],
                "teams": {"ops": "ops-svc", "db": ["db-svc", "storage"]},
                "map": {
                    "pay": "payments-svc",
                    "auth": {"identifier": "auth-svc", "name": "Authentication"},
                    "web": {"identifier": "web-svc"},
                },
                "fallback": ["catch-all", {"identifier": "unknown", "name": "Unknown"}],
            },
            "delete_incidents": True,
        }
    )
    assert rules == Rules(
        reference_prefix="og-",
        priority_map={"P1": "SEV1", "P2": "SEV2"},
        filter=Filter(
            priorities=frozenset({"P1", "P2"}),
            tags=frozenset({"prod"}),
            teams=frozenset({"ops", "db"}),
        ),
        tag_prefix="svc/",
        detail_keys=("component",),
        team_services={"ops": ("ops-svc",), "db": ("db-svc", "storage")},
        service_map={
            "pay": ServiceRef(identifier="payments-svc"),
            "auth": ServiceRef(identifier="auth-svc", name="Authentication"),
            "web": ServiceRef(identifier="web-svc"),
        },
        fallback=(
            ServiceRef(identifier="catch-all"),
            ServiceRef(identifier="unknown", name="Unknown"),
        ),
        delete_incidents=True,
    )


def test_empty_tag_prefix_and_detail_keys_turn_those_sources_off() -> None:
    rules = parse_rules({"services": {"tag_prefix": "", "detail_keys": []}})
    alert = state(tags=("service:a",), details={"service": "b"})
    assert services_for(alert, rules) == []


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (["a"], "the file"),
        ("text", "the file"),
        (3, "the file"),
        ({"unknown": 1}, "unknown"),
        ({"reference_prefix": "og-", "colour": "red"}, "colour"),
        ({"filter": {"severity": ["P1"]}}, "severity"),
        ({"services": {"tags": ["x"]}}, "tags"),
        ({"reference_prefix": 5}, "reference_prefix"),
        ({"reference_prefix": None}, "reference_prefix"),
        ({"priorities": ["P1"]}, "priorities"),
        ({"priorities": {"P1": 1}}, "priorities.P1"),
        ({"priorities": {"P1": None}}, "priorities.P1"),
        ({"priorities": {1: "SEV1"}}, "priorities"),
        ({"filter": ["P1"]}, "filter"),
        ({"filter": None}, "filter"),
        ({"filter": {"priorities": "P1"}}, "filter.priorities"),
        ({"filter": {"priorities": [1]}}, "filter.priorities"),
        ({"filter": {"tags": "prod"}}, "filter.tags"),
        ({"filter": {"tags": [True]}}, "filter.tags"),
        ({"filter": {"teams": {"ops": 1}}}, "filter.teams"),
        ({"services": []}, "services"),
        ({"services": {"tag_prefix": 1}}, "services.tag_prefix"),
        ({"services": {"tag_prefix": None}}, "services.tag_prefix"),
        ({"services": {"detail_keys": "service"}}, "services.detail_keys"),
        ({"services": {"detail_keys": [1]}}, "services.detail_keys"),
        ({"services": {"teams": ["ops"]}}, "services.teams"),
        ({"services": {"teams": {"ops": 1}}}, "services.teams.ops"),
        ({"services": {"teams": {"ops": ["a", 2]}}}, "services.teams.ops"),
        ({"services": {"teams": {1: ["a"]}}}, "services.teams"),
        ({"services": {"map": ["a"]}}, "services.map"),
        ({"services": {"map": {"pay": 1}}}, "services.map.pay"),
        ({"services": {"map": {"pay": {"name": "Payments"}}}}, "services.map.pay.identifier"),
        ({"services": {"map": {"pay": {"identifier": 3}}}}, "services.map.pay.identifier"),
        ({"services": {"map": {"pay": {"identifier": "p", "name": 3}}}}, "services.map.pay.name"),
        ({"services": {"map": {"pay": {"identifier": "p", "id": "x"}}}}, "id"),
        ({"services": {"fallback": "catch-all"}}, "services.fallback"),
        ({"services": {"fallback": [1]}}, "services.fallback[0]"),
        ({"services": {"fallback": ["ok", {"name": "x"}]}}, "services.fallback[1].identifier"),
        ({"delete_incidents": "yes"}, "delete_incidents"),
        ({"delete_incidents": 1}, "delete_incidents"),
        ({"delete_incidents": None}, "delete_incidents"),
    ],
)
def test_parse_rules_names_the_key(document: object, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_rules(document)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"services": {"map": {"pay": ""}}}, "services.map.pay"),
        ({"services": {"map": {"pay": " "}}}, "services.map.pay"),
        ({"services": {"map": {"pay": {"identifier": ""}}}}, "services.map.pay.identifier"),
        ({"services": {"map": {"pay": {"identifier": "  "}}}}, "services.map.pay.identifier"),
        ({"services": {"fallback": [""]}}, "services.fallback[0]"),
        ({"services": {"fallback": [{"identifier": ""}]}}, "services.fallback[0].identifier"),
        ({"services": {"teams": {"ops": ""}}}, "services.teams.ops"),
        ({"services": {"teams": {"ops": ["db-svc", ""]}}}, "services.teams.ops"),
        ({"services": {"teams": {"ops": ["\t"]}}}, "services.teams.ops"),
    ],
)
def test_empty_service_identifiers_are_refused_naming_the_key(document: object, named: str) -> None:
    with pytest.raises(ValueError, match="empty") as caught:
        parse_rules(document)
    assert named in str(caught.value)


# -- services_for --------------------------------------------------------------------------


def test_services_from_the_tag_prefix() -> None:
    alert = state(tags=("service:payments", "prod", "service:auth", "services:x", "Service:y"))
    assert ids(services_for(alert, Rules())) == ["payments", "auth"]


def test_a_bare_prefix_tag_names_no_service() -> None:
    assert services_for(state(tags=("service:", "service: ")), Rules()) == []


def test_custom_tag_prefix() -> None:
    alert = state(tags=("svc/payments", "service:auth"))
    assert ids(services_for(alert, Rules(tag_prefix="svc/"))) == ["payments"]


def test_services_from_detail_keys_with_comma_separated_values() -> None:
    alert = state(details={"service": "payments, auth", "services": "db,,cache ", "other": "x"})
    assert ids(services_for(alert, Rules())) == ["payments", "auth", "db", "cache"]


def test_detail_keys_are_read_in_configured_order() -> None:
    alert = state(details={"a": "one", "b": "two"})
    assert ids(services_for(alert, Rules(detail_keys=("b", "a")))) == ["two", "one"]


def test_services_from_the_team_map() -> None:
    rules = Rules(team_services={"ops": ("ops-svc",), "db": ("db-svc", "storage")})
    alert = state(teams=("db", "unmapped", "ops"))
    assert ids(services_for(alert, rules)) == ["db-svc", "storage", "ops-svc"]


def test_explicit_map_with_display_name() -> None:
    rules = Rules(
        service_map={
            "payments": ServiceRef(identifier="payments-svc", name="Payments"),
            "auth": ServiceRef(identifier="auth-svc"),
        }
    )
    alert = state(tags=("service:payments", "service:auth", "service:web"))
    assert services_for(alert, rules) == [
        ServiceRef(identifier="payments-svc", name="Payments"),
        ServiceRef(identifier="auth-svc"),
        ServiceRef(identifier="web"),
    ]


def test_the_map_applies_to_team_services_and_details_too() -> None:
    rules = Rules(
        team_services={"ops": ("ops",)},
        service_map={"ops": ServiceRef(identifier="ops-svc", name="Operations")},
    )
    alert = state(teams=("ops",), details={"service": "ops"})
    assert services_for(alert, rules) == [ServiceRef(identifier="ops-svc", name="Operations")]


def test_dedup_keeps_the_first_occurrence_in_stable_order() -> None:
    rules = Rules(
        team_services={"ops": ("auth", "payments", "ops-svc")},
        service_map={"pay": ServiceRef(identifier="payments")},
    )
    alert = state(
        tags=("service:payments", "service:auth", "service:payments"),
        details={"service": "auth,pay, payments", "services": "db"},
        teams=("ops",),
    )
    assert ids(services_for(alert, rules)) == ["payments", "auth", "db", "ops-svc"]


def test_fallback_only_when_nothing_matched() -> None:
    fallback = (ServiceRef(identifier="unknown", name="Unknown"), ServiceRef(identifier="other"))
    rules = Rules(fallback=fallback)
    assert services_for(state(tags=("prod",)), rules) == list(fallback)
    assert services_for(state(), rules) == list(fallback)
    assert ids(services_for(state(tags=("service:payments",)), rules)) == ["payments"]
    assert ids(services_for(state(teams=("ops",)), rules)) == ["unknown", "other"]


def test_no_fallback_no_services() -> None:
    assert services_for(state(tags=("prod",)), Rules()) == []


def test_services_from_a_real_create_with_details() -> None:
    rules = Rules(team_services={"payments-team": ("payments", "billing")})
    alert = folded(payload("create-with-details"))
    assert ids(services_for(alert, rules)) == ["checkout", "payments", "auth", "billing"]


def test_services_follow_tag_changes_from_real_payloads() -> None:
    alert = folded(sample("Acknowledge"), payload("addtags-no-tags-array"))
    assert ids(services_for(alert, Rules())) == ["payments"]


# -- wanted --------------------------------------------------------------------------------


def test_no_filter_wants_everything() -> None:
    assert wanted(state(), Rules())
    assert wanted(state(priority="P5"), Rules())


@pytest.mark.parametrize(
    ("priority", "expected"), [("P1", True), ("P2", True), ("P3", False), (None, False)]
)
def test_priorities(priority: str | None, expected: bool) -> None:
    rules = Rules(filter=Filter(priorities=frozenset({"P1", "P2"})))
    assert wanted(state(priority=priority), rules) is expected


def test_the_filter_sees_the_opsgenie_priority_not_the_renamed_one() -> None:
    rules = Rules(priority_map={"P1": "SEV1"}, filter=Filter(priorities=frozenset({"P1"})))
    assert wanted(state(priority="P1"), rules)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (("prod", "db", "x"), True),
        (("prod", "db"), True),
        (("prod",), False),
        ((), False),
        (None, False),
    ],
)
def test_tags_are_all_required(tags: tuple[str, ...] | None, expected: bool) -> None:
    rules = Rules(filter=Filter(tags=frozenset({"prod", "db"})))
    assert wanted(state(tags=tags), rules) is expected


@pytest.mark.parametrize(
    ("teams", "expected"),
    [(("ops",), True), (("db", "web"), True), (("web",), False), ((), False), (None, False)],
)
def test_teams_any(teams: tuple[str, ...] | None, expected: bool) -> None:
    rules = Rules(filter=Filter(teams=frozenset({"ops", "db"})))
    assert wanted(state(teams=teams), rules) is expected


def test_all_criteria_together() -> None:
    rules = Rules(
        filter=Filter(
            priorities=frozenset({"P1"}), tags=frozenset({"prod"}), teams=frozenset({"ops"})
        )
    )
    assert wanted(state(priority="P1", tags=("prod",), teams=("ops",)), rules)
    assert not wanted(state(priority="P2", tags=("prod",), teams=("ops",)), rules)
    assert not wanted(state(priority="P1", tags=(), teams=("ops",)), rules)
    assert not wanted(state(priority="P1", tags=("prod",), teams=("db",)), rules)


def test_a_raised_priority_makes_the_alert_wanted_later() -> None:
    rules = Rules(filter=Filter(priorities=frozenset({"P1"})))
    created = folded(payload("create-int-priority"))
    assert not wanted(created, rules)
    assert wanted(folded(payload("create-int-priority"), payload("update-priority")), rules)


def test_an_escalate_only_alert_waits_for_its_priority() -> None:
    rules = Rules(filter=Filter(priorities=frozenset({"P3"})))
    assert not wanted(folded(payload("escalate")), rules)
    assert wanted(folded(payload("escalate"), payload("create-int-priority")), rules)


def test_tags_added_later_satisfy_the_tag_filter() -> None:
    rules = Rules(filter=Filter(tags=frozenset({"tag1", "tag4"})))
    assert not wanted(folded(sample("Acknowledge")), rules)
    assert wanted(folded(sample("Acknowledge"), payload("addtags-no-tags-array")), rules)


def test_team_added_later_satisfies_the_team_filter() -> None:
    rules = Rules(filter=Filter(teams=frozenset({"team2"})))
    assert not wanted(folded(payload("create-int-priority")), rules)
    assert wanted(folded(payload("create-int-priority"), sample("AddTeam")), rules)


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"filter": {"priorities": ["P6"]}}, "filter.priorities"),
        ({"filter": {"priorities": ["urgent"]}}, "filter.priorities"),
        ({"priorities": {"P9": "SEV9"}}, "priorities"),
        ({"priorities": {"P1": "  "}}, "priorities.P1"),
    ],
)
def test_priorities_that_could_never_match_are_refused(
    document: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValueError, match=where):
        parse_rules(document)


def test_priorities_are_normalised_to_opsgenie_case() -> None:
    rules = parse_rules({"filter": {"priorities": ["p1"]}, "priorities": {"p2": "SEV2"}})
    assert rules.filter.priorities == frozenset({"P1"})
    assert rules.priority_map == {"P2": "SEV2"}
