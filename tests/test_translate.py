"""Folding Opsgenie events into an alert's state and rendering it for DX, over real payloads.

Examples pin what DX receives for the documented action set; hypothesis checks that any
order and any repetition of one alert's events fold to the same state.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.mapping import Rules, ServiceRef
from service.opsgenie import Action, OpsgenieEvent, parse_event
from service.translate import (
    Account,
    AlertState,
    Stamped,
    StampedSet,
    dump_state,
    fold,
    iso8601,
    load_state,
    metadata,
    render,
)
from tests.conftest import PAYLOADS, SAMPLES, payload, sample

RECEIVED = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123Z
ALERT = "052652ac-5d1c-464a-812a-7dd18bbfba8c"  # the alert of Opsgenie's documented set
STARTED = "2015-01-05T10:03:11.104Z"  # its createdAt, 1420452191104 ms
CLOSED = "2015-01-05T10:06:14.669Z"  # Close.json's updatedAt, 1420452374669001603 ns
ACCOUNT = Account(web_url="https://acme.app.opsgenie.com")
RULES = Rules()
METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

#: Documented samples of one alert (``Create.json`` is a different, real alert).
DOC_SAMPLES = sorted(
    p.stem for p in SAMPLES.glob("*.json") if json.loads(p.read_text())["alert"]["alertId"] == ALERT
)
PAYLOAD_NAMES = sorted(p.stem for p in PAYLOADS.glob("*.json"))


def event(document: dict[str, Any], *, received_ns: int = RECEIVED) -> OpsgenieEvent:
    return parse_event(json.dumps(document).encode(), received_ns=received_ns)


def s(name: str) -> OpsgenieEvent:
    return event(sample(name))


def p(name: str) -> OpsgenieEvent:
    return event(payload(name))


def fold_all(events: Iterable[OpsgenieEvent], state: AlertState | None = None) -> AlertState:
    result = reduce(fold, events, state)
    assert result is not None
    return result


def same_alert(single: OpsgenieEvent) -> list[OpsgenieEvent]:
    """The pool's events about ``single``'s alert: fold never mixes two alerts."""
    return [e for e in all_events() if e.alert_id == single.alert_id]


def body(events: Iterable[OpsgenieEvent], rules: Rules = RULES) -> dict[str, Any]:
    return dict(render(fold_all(events), rules, ACCOUNT))


def at(document: dict[str, Any], updated_at: int | None, **alert: Any) -> dict[str, Any]:
    """``document`` moved to another ``updatedAt`` (``None``: without one), fields changed."""
    moved: dict[str, Any] = json.loads(json.dumps(document))
    if updated_at is None:
        moved["alert"].pop("updatedAt", None)
    else:
        moved["alert"]["updatedAt"] = updated_at
    moved["alert"].update(alert)
    return moved


def all_events() -> list[OpsgenieEvent]:
    """Every payload we hold for the documented alert, samples and hand-made variants."""
    return [s(name) for name in DOC_SAMPLES] + [p(name) for name in PAYLOAD_NAMES]


def round_trip(state: AlertState) -> AlertState:
    return load_state(json.loads(json.dumps(dump_state(state))))


# -- the whole documented timeline ---------------------------------------------------------


def test_the_documented_timeline_renders_completely() -> None:
    events = [p("create-int-priority")] + [s(n) for n in DOC_SAMPLES if n != "Delete"]
    assert body(events) == {
        "reference_id": f"opsgenie-{ALERT}",
        "started_at": STARTED,
        "resolved_at": CLOSED,
        "source_url": f"https://acme.app.opsgenie.com/alert/detail/{ALERT}/details",
        "name": "test alert",
        "priority": "P3",
        # No service tag, detail or rule: the relay knows the set, and it is empty.
        "services": [],
        "metadata": {
            "opsgenie_alert_id": ALERT,
            "opsgenie_status": "closed",
            # Close.json (at the latest stamp) carries an empty tags array.
            "tags": [],
            "teams": ["operations", "team2"],
            "alias": "aliastest",
            "source": "fili@ifountain.com",
            "tiny_id": "23",
            "owner": "user2@ifountain.com",
            "acknowledged": True,
            "integration_name": "Integration1",
        },
    }


def test_create_sample_renders() -> None:
    rendered = body([s("Create")])
    alert_id = "7ec331d7-f5f3-4f78-a49c-2ad886df69fe-1593475564295"
    assert rendered == {
        "reference_id": f"opsgenie-{alert_id}",
        "started_at": "2020-06-30T00:06:04.295Z",
        "resolved_at": None,
        "source_url": f"https://acme.app.opsgenie.com/alert/detail/{alert_id}/details",
        "name": "asdf",
        "priority": "P3",
        "services": [],
        "metadata": {
            "opsgenie_alert_id": alert_id,
            "opsgenie_status": "open",
            "tags": [],
            "teams": ["operations"],
            "alias": alert_id,
            "source": "kenaz@puppet.com",
            "tiny_id": "8",
            "integration_name": "operations_Webhook_2",
        },
    }


# -- order, duplicates, closing ------------------------------------------------------------


def test_create_then_close_is_resolved_at_the_close() -> None:
    rendered = body([p("create-int-priority"), s("Close")])
    assert rendered["started_at"] == STARTED
    assert rendered["resolved_at"] == CLOSED
    assert rendered["metadata"]["opsgenie_status"] == "closed"


def test_close_before_create_is_the_same_state_and_still_resolved() -> None:
    create, close = p("create-int-priority"), s("Close")
    assert fold_all([close, create]) == fold_all([create, close])
    assert body([close, create])["resolved_at"] == CLOSED
    assert body([close, create])["priority"] == "P3"


def test_close_alone_is_resolved_and_started_at_created_at() -> None:
    rendered = body([s("Close")])
    assert rendered["started_at"] == STARTED
    assert rendered["resolved_at"] == CLOSED


def test_close_without_updated_at_is_resolved_at_receipt() -> None:
    close = event(at(sample("Close"), None))
    assert body([p("create-int-priority"), close])["resolved_at"] == "2023-11-14T22:13:20.123Z"


@pytest.mark.parametrize("name", DOC_SAMPLES + PAYLOAD_NAMES)
def test_a_replayed_event_changes_nothing(name: str) -> None:
    state = fold_all(all_events())
    again = s(name) if name in DOC_SAMPLES else p(name)
    assert fold(state, again) == state
    single = fold(None, again)
    assert fold(single, again) == single


def test_an_older_message_never_overwrites_a_newer_one() -> None:
    newer = event(at(sample("AddNote"), 1420452275002000962, message="database down"))
    older = event(at(sample("Acknowledge"), 1420452224764002246, message="database slow"))
    assert body([newer, older])["name"] == "database down"
    assert body([older, newer])["name"] == "database down"


def test_an_older_create_never_overwrites_a_newer_priority() -> None:
    create, raised = p("create-int-priority"), p("update-priority")
    assert body([raised, create])["priority"] == "P1"
    assert body([create, raised])["priority"] == "P1"


def test_an_older_tag_set_never_overwrites_a_newer_one() -> None:
    newer = event(at(sample("AddNote"), 1420452275002000962, tags=["b"]))
    older = event(at(sample("Acknowledge"), 1420452224764002246, tags=["a"]))
    assert body([newer, older])["metadata"]["tags"] == ["b"]
    assert body([older, newer])["metadata"]["tags"] == ["b"]


def test_closed_stays_closed() -> None:
    closed = fold_all([p("create-int-priority"), s("Close")])
    later_ack = event(at(sample("Acknowledge"), 1420452400000000000))
    ack_at_receipt = event(at(sample("Acknowledge"), None))
    later_close = event(at(sample("Close"), 1420452500000000000))
    for after in (later_ack, ack_at_receipt, s("UnAcknowledge"), later_close, p("escalate")):
        rendered = render(fold(closed, after), RULES, ACCOUNT)
        assert rendered["resolved_at"] == CLOSED
        assert rendered["metadata"]["opsgenie_status"] == "closed"
    assert fold(closed, later_ack).acknowledged == Stamped(1420452400000000000, True)


def test_the_earliest_close_stands() -> None:
    early = event(at(sample("Close"), 1420452300000000000))
    state = fold_all([s("Close"), early])
    assert state.closed_at_ns == 1420452300000000000


def test_escalate_only_renders_a_valid_body_started_at_receipt() -> None:
    rendered = body([p("escalate")])
    assert rendered == {
        "reference_id": f"opsgenie-{ALERT}",
        "started_at": "2023-11-14T22:13:20.123Z",
        "resolved_at": None,
        "source_url": f"https://acme.app.opsgenie.com/alert/detail/{ALERT}/details",
    }


def test_escalate_after_create_changes_nothing_dx_sees() -> None:
    create = p("create-int-priority")
    assert body([create, p("escalate")]) == body([create])


def test_created_at_replaces_a_receipt_stand_in() -> None:
    state = fold_all([p("escalate"), p("create-updatedat-ms")])
    assert render(state, RULES, ACCOUNT)["started_at"] == STARTED
    assert state == fold_all([p("create-updatedat-ms"), p("escalate")])


def test_without_created_at_the_earliest_stamp_is_the_start() -> None:
    later = event(
        {"action": "AddNote", "alert": {"alertId": "x", "updatedAt": 1420452300000000000}}
    )
    earlier = event(
        {"action": "AddNote", "alert": {"alertId": "x", "updatedAt": 1420452200000000000}}
    )
    assert body([later, earlier])["started_at"] == "2015-01-05T10:03:20.000Z"
    assert body([earlier, later])["started_at"] == "2015-01-05T10:03:20.000Z"


def test_ack_unack_flip_by_stamp() -> None:
    ack = event(at(sample("Acknowledge"), 1420452224764002246))
    unack = event(at(sample("UnAcknowledge"), 1420452230000000000))
    assert body([unack, ack])["metadata"]["acknowledged"] is False
    reack = event(at(sample("Acknowledge"), 1420452240000000000))
    assert body([reack, unack, ack])["metadata"]["acknowledged"] is True


def test_ownership_is_the_latest_assignment_or_taking() -> None:
    assert body([s("AssignOwnership")])["metadata"]["owner"] == "user2@ifountain.com"
    assert body([p("take-ownership")])["metadata"]["owner"] == "user3@ifountain.com"
    # TakeOwnership at ...310, AssignOwnership at ...374: the assignment is the latest.
    for order in (
        [p("take-ownership"), s("AssignOwnership")],
        [s("AssignOwnership"), p("take-ownership")],
    ):
        assert body(order)["metadata"]["owner"] == "user2@ifountain.com"
    taken_later = event(at(payload("take-ownership"), 1420452400000000000))
    assert body([taken_later, s("AssignOwnership")])["metadata"]["owner"] == "user3@ifountain.com"


def test_delete_marks_the_state_deleted() -> None:
    assert fold_all([p("create-int-priority"), s("Delete")]).deleted
    assert not fold_all([p("create-int-priority"), s("Close")]).deleted


# -- tags and teams ------------------------------------------------------------------------


def test_add_tags_without_a_tags_array_keeps_services_and_metadata_omitted() -> None:
    rendered = body([p("addtags-no-tags-array")])
    assert "services" not in rendered
    assert "metadata" not in rendered
    assert rendered["name"] == "test alert"


def test_add_tags_without_a_tags_array_then_a_full_tags_array_later() -> None:
    add = p("addtags-no-tags-array")  # at ...280: service:payments, tag4
    later_full = s("AssignOwnership")  # at ...374: tags [tag1, tag2], which already says all
    for order in ([add, later_full], [later_full, add]):
        rendered = body(order)
        assert rendered["metadata"]["tags"] == ["tag1", "tag2"]
        assert rendered["services"] == []


def test_add_tags_after_a_full_tags_array_adds_to_it() -> None:
    full = s("Acknowledge")  # at ...224: tags [tag1, tag2]
    add = p("addtags-no-tags-array")  # at ...280
    for order in ([full, add], [add, full]):
        rendered = body(order)
        assert rendered["metadata"]["tags"] == ["tag1", "tag2", "service:payments", "tag4"]
        assert rendered["services"] == [{"identifier": "payments"}]


def test_remove_tags_without_a_tags_array_after_a_full_tags_array() -> None:
    events = [s("Acknowledge"), p("addtags-no-tags-array"), p("removetags-no-tags-array")]
    expected = ["tag1", "service:payments", "tag4"]
    assert body(events)["metadata"]["tags"] == expected
    assert body(list(reversed(events)))["metadata"]["tags"] == expected


def test_a_removal_older_than_the_add_does_not_remove() -> None:
    remove = event(at(payload("removetags-no-tags-array"), 1420452250000000000, removedTags="tag4"))
    events = [s("Acknowledge"), p("addtags-no-tags-array"), remove]
    assert "tag4" in body(events)["metadata"]["tags"]


def test_add_tags_sample_with_its_tags_array() -> None:
    assert body([s("Acknowledge"), s("AddTags")])["metadata"]["tags"] == ["tag1", "tag2", "tag3"]


def test_add_team_adds_to_the_create_teams() -> None:
    rendered = body([s("AddTeam"), p("create-int-priority")])
    assert rendered["metadata"]["teams"] == ["operations", "team2"]


def test_add_team_alone_does_not_claim_to_know_the_teams() -> None:
    state = fold_all([s("AddTeam")])
    assert not state.teams.known
    assert "teams" not in metadata(state)


def test_add_team_feeds_team_services() -> None:
    rules = Rules(team_services={"team2": ("team2-svc",), "operations": ("ops-svc",)})
    rendered = body([p("create-int-priority"), s("AddTeam")], rules)
    assert rendered["services"] == [{"identifier": "ops-svc"}, {"identifier": "team2-svc"}]


def test_create_for_an_existing_alert_upserts_teams_and_integration() -> None:
    first, again = p("create-int-priority"), p("create-for-existing-alert")
    for order in ([first, again], [again, first], [first, s("AddTeam"), again]):
        rendered = body(order)
        assert rendered["metadata"]["teams"] == ["operations", "team2"]
        assert rendered["metadata"]["integration_name"] == "team2_Webhook"
        assert rendered["started_at"] == STARTED


# -- services and metadata: omitted until known, then complete -----------------------------


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(["p:escalate"], id="escalate"),
        pytest.param(["s:Delete"], id="delete"),
        pytest.param(["p:addtags-no-tags-array"], id="addtags"),
        pytest.param(["p:removetags-no-tags-array", "p:escalate"], id="removetags+escalate"),
        pytest.param(["p:escalate", "s:Delete", "p:addtags-no-tags-array"], id="all"),
    ],
)
def test_services_and_metadata_keys_are_absent_until_tags_are_seen(events: list[str]) -> None:
    folded = [s(n[2:]) if n.startswith("s:") else p(n[2:]) for n in events]
    rendered = body(folded)
    assert "services" not in rendered
    assert "metadata" not in rendered
    # Absent, not null: DX would wipe what it holds on null.
    assert None not in (rendered.get("services", 0), rendered.get("metadata", 0))


def test_services_and_metadata_are_present_and_complete_once_tags_are_seen() -> None:
    rendered = body([p("addtags-no-tags-array"), p("escalate"), p("create-with-details")])
    assert rendered["services"] == [
        {"identifier": "checkout"},
        {"identifier": "payments"},
        {"identifier": "auth"},
    ]
    assert rendered["metadata"] == {
        "opsgenie_alert_id": ALERT,
        "opsgenie_status": "open",
        "tags": ["service:checkout", "prod", "service:payments", "tag4"],
        "teams": ["payments-team", "operations"],
        "alias": "aliastest",
        "source": "fili@ifountain.com",
        "tiny_id": "23",
        "integration_name": "Integration1",
    }


def test_service_map_gives_display_names() -> None:
    rules = Rules(service_map={"payments": ServiceRef(identifier="pay-svc", name="Payments")})
    rendered = body([p("create-with-details")], rules)
    assert rendered["services"] == [
        {"identifier": "checkout"},
        {"identifier": "pay-svc", "name": "Payments"},
        {"identifier": "auth"},
    ]


def test_fallback_services_when_nothing_matches() -> None:
    rules = Rules(fallback=(ServiceRef(identifier="unknown-svc"),))
    assert body([s("Acknowledge")], rules)["services"] == [{"identifier": "unknown-svc"}]
    assert body([p("create-with-details")], rules)["services"][0] == {"identifier": "checkout"}


def test_custom_action_details_feed_services() -> None:
    rendered = body([s("Acknowledge"), p("custom-action")])
    assert rendered["services"] == [{"identifier": "payments"}]


def test_empty_entity_is_left_out_of_metadata() -> None:
    assert "entity" not in body([s("Acknowledge")])["metadata"]
    with_entity = event(at(sample("Acknowledge"), 1420452224764002246, entity="db-1"))
    assert body([with_entity])["metadata"]["entity"] == "db-1"


@pytest.mark.parametrize("name", DOC_SAMPLES + PAYLOAD_NAMES + ["Create"])
def test_metadata_keys_are_what_dx_accepts(name: str) -> None:
    single = s(name) if name in DOC_SAMPLES or name == "Create" else p(name)
    for state in (fold_all([single]), fold_all([*same_alert(single), single])):
        assert all(METADATA_KEY.match(key) for key in metadata(state))
        rendered = render(state, RULES, ACCOUNT)
        assert all(METADATA_KEY.match(key) for key in rendered.get("metadata", {}))
        json.dumps(rendered, allow_nan=False)  # what DX will be sent is plain JSON


# -- timestamps, priorities, reference -----------------------------------------------------


@pytest.mark.parametrize("name", DOC_SAMPLES + PAYLOAD_NAMES + ["Create"])
def test_started_and_resolved_are_iso8601_with_z(name: str) -> None:
    single = s(name) if name in DOC_SAMPLES or name == "Create" else p(name)
    for state in (fold_all([single]), fold_all([*same_alert(single), single])):
        rendered = render(state, RULES, ACCOUNT)
        stamps = [rendered["started_at"]]
        if rendered["resolved_at"] is not None:
            stamps.append(rendered["resolved_at"])
        for stamp in stamps:
            assert ISO_Z.match(stamp), stamp
            assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1420452191104 * 10**6, STARTED),
        (1420452374669001603, CLOSED),
        (1420452374669999999, CLOSED),  # truncated to ms, never rounded up
        (RECEIVED, "2023-11-14T22:13:20.123Z"),
        (1593475564295 * 10**6, "2020-06-30T00:06:04.295Z"),
    ],
)
def test_iso8601(ns: int, text: str) -> None:
    assert iso8601(ns) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4102444800 * 10**9 - 1))
def test_iso8601_is_exact_to_the_millisecond(ns: int) -> None:
    text = iso8601(ns)
    assert ISO_Z.match(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    whole = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000 + 0.5)
    assert whole == ns // 10**6


def test_priority_map_renames() -> None:
    rules = Rules(priority_map={"P3": "SEV3", "P1": "SEV1"})
    assert body([p("create-int-priority")], rules)["priority"] == "SEV3"
    assert body([p("create-int-priority"), p("update-priority")], rules)["priority"] == "SEV1"
    unmapped = Rules(priority_map={"P1": "SEV1"})
    assert body([p("create-int-priority")], unmapped)["priority"] == "P3"


def test_priority_from_an_integer_renders_as_p_n() -> None:
    assert body([p("create-int-priority")])["priority"] == "P3"


def test_no_priority_no_key() -> None:
    assert "priority" not in body([s("Acknowledge")])


def test_reference_prefix() -> None:
    assert body([s("Close")], Rules(reference_prefix="og-"))["reference_id"] == f"og-{ALERT}"
    assert body([s("Close")], Rules(reference_prefix=""))["reference_id"] == ALERT
    assert body([s("Close")])["reference_id"] == f"opsgenie-{ALERT}"


# -- dump/load -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOC_SAMPLES + PAYLOAD_NAMES + ["Create"])
def test_dump_load_round_trips_through_json(name: str) -> None:
    single = s(name) if name in DOC_SAMPLES or name == "Create" else p(name)
    for state in (fold_all([single]), fold_all([*same_alert(single), single])):
        assert round_trip(state) == state
        # A loaded state folds on exactly like the original.
        for more in same_alert(single):
            assert fold(round_trip(state), more) == fold(state, more)


def test_dump_is_plain_json() -> None:
    state = fold_all(all_events())
    text = json.dumps(dump_state(state), allow_nan=False, sort_keys=True)
    assert json.dumps(dump_state(load_state(json.loads(text))), sort_keys=True) == text


# -- StampedSet ----------------------------------------------------------------------------


def test_stamped_set_unknown_until_a_base() -> None:
    changes = StampedSet().merge(None, (("a", 5, True),))
    assert not changes.known
    assert changes.members() == ("a",)
    based = changes.merge(Stamped(3, ("b",)))
    assert based.known
    assert based.members() == ("b", "a")
    assert changes.merge(Stamped(7, ("b",))).members() == ("b",)


def test_stamped_set_base_covers_changes_at_its_own_stamp() -> None:
    merged = StampedSet().merge(Stamped(5, ("a",)), (("b", 5, True), ("a", 5, False)))
    assert merged.members() == ("a",)
    assert merged.changes == ()


# -- commutative and idempotent: hypothesis ------------------------------------------------

STAMPS = sorted(
    {
        1420452191104000000,
        1420452224764002246,
        1420452256147001924,
        1420452275002000962,
        1420452280000000000,
        1420452374669001603,
        1420452400000000000,
    }
)
TAGS = ["tag1", "tag2", "tag3", "service:payments", "service:auth", "prod", "team:x"]
ACTIONS = [a.value for a in Action if a is not Action.FETCHED] + ["TestAction", "Future"]


_NS = st.one_of(
    st.sampled_from(STAMPS), st.integers(min_value=STAMPS[0], max_value=STAMPS[-1] + 10**12)
)
_TAG_LIST = st.lists(st.sampled_from(TAGS), max_size=3)
_TEAM = st.sampled_from(["operations", "team2", "team3"])

#: A payload for the documented alert with random facts; any key may be missing.
_ALERTS = st.fixed_dictionaries(
    {"alertId": st.just(ALERT)},
    optional={
        "updatedAt": st.one_of(
            _NS, _NS.map(str), st.sampled_from(STAMPS).map(lambda v: v // 10**6)
        ),
        "createdAt": st.sampled_from([1420452191104, 1420452191000, 1420452100000]),
        "message": st.sampled_from(["test alert", "db down", "db slow", ""]),
        "priority": st.sampled_from(["P1", "P2", "P3", "P4", "P5", 1, 3, 5, "p2"]),
        "tags": _TAG_LIST,
        "addedTags": _TAG_LIST.map(", ".join),
        "removedTags": _TAG_LIST.map(", ".join),
        "owner": st.sampled_from(["a@example.com", "b@example.com"]),
        "username": st.sampled_from(["a@example.com", "c@example.com"]),
        "team": _TEAM,
        "responders": st.lists(
            st.fixed_dictionaries({"type": st.sampled_from(["team", "user"]), "name": _TEAM}),
            max_size=2,
        ),
        "details": st.dictionaries(
            st.sampled_from(["service", "services", "runbook"]),
            st.sampled_from(["payments", "auth,payments", ""]),
            max_size=2,
        ),
        "alias": st.sampled_from(["aliastest", "other"]),
        "entity": st.sampled_from(["", "db-1"]),
        "tinyId": st.sampled_from(["23", 23, "24"]),
    },
)
_DOCUMENTS = st.fixed_dictionaries(
    {"action": st.sampled_from(ACTIONS), "alert": _ALERTS},
    optional={"integrationName": st.sampled_from(["Integration1", "team2_Webhook"])},
)
#: Parsed like a real webhook; the receipt time matters to those without ``updatedAt``.
GENERATED = st.builds(
    lambda document, received: event(document, received_ns=received),
    _DOCUMENTS,
    st.sampled_from([RECEIVED, RECEIVED + 1, STAMPS[2], STAMPS[-1]]),
)

POOL = all_events()


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[OpsgenieEvent], list[OpsgenieEvent]]:
    """One alert's events, and the same events reordered with some delivered again."""
    chosen = draw(st.lists(st.sampled_from(POOL), max_size=10))
    extra = draw(st.lists(GENERATED, min_size=0 if chosen else 1, max_size=6))
    events = chosen + extra
    replays = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    shuffled = draw(st.permutations(events + replays))
    return events, list(shuffled)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_fold_is_commutative_and_idempotent(
    history: tuple[list[OpsgenieEvent], list[OpsgenieEvent]],
) -> None:
    events, delivered = history
    state = fold_all(events)
    assert fold_all(delivered) == state
    # Every event is already in the state: folding any of them again changes nothing.
    for again in events:
        assert fold(state, again) == state
    rendered = render(state, RULES, ACCOUNT)
    assert rendered == render(fold_all(delivered), RULES, ACCOUNT)
    assert all(METADATA_KEY.match(key) for key in rendered.get("metadata", {}))
    assert ("services" in rendered) == ("metadata" in rendered) == state.tags.known
    assert round_trip(state) == state


@settings(max_examples=200, deadline=None)
@given(histories(), histories())
def test_folding_two_histories_in_either_order_is_one_state(
    first: tuple[list[OpsgenieEvent], list[OpsgenieEvent]],
    second: tuple[list[OpsgenieEvent], list[OpsgenieEvent]],
) -> None:
    """What was stored (dumped and loaded) and what arrives later fold like one history."""
    a, b = first[0], second[0]
    stored = round_trip(fold_all(a))
    assert fold_all(b, stored) == fold_all(b + a) == fold_all(a + b)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_a_closed_alert_stays_resolved_whatever_follows(
    history: tuple[list[OpsgenieEvent], list[OpsgenieEvent]],
) -> None:
    events, _ = history
    closed = fold_all([s("Close")])
    state = fold_all(events, closed)
    assert state.closed_at_ns is not None
    assert state.closed_at_ns <= 1420452374669001603
    assert render(state, RULES, ACCOUNT)["resolved_at"] is not None


# -- purity --------------------------------------------------------------------------------

SERVICE = Path(__file__).resolve().parents[1] / "service"
IO_MODULES = {"httpx", "starlette", "sqlite3", "asyncio"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "service":
        return None
    for candidate in (SERVICE.joinpath(*parts[1:]).with_suffix(".py"),):
        if candidate.is_file():
            return candidate
    package = SERVICE.joinpath(*parts[1:], "__init__.py")
    return package if package.is_file() else None


@pytest.mark.parametrize("module", ["translate", "opsgenie", "mapping"])
def test_pure_modules_import_no_io(module: str) -> None:
    """Direct imports, and those of the service modules they reach, parsed not imported."""
    seen: set[Path] = set()
    todo = [SERVICE / f"{module}.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            root = name.split(".")[0]
            assert root not in IO_MODULES, f"{path.name} imports {name}"
            if (found := _module_path(name)) is not None:
                todo.append(found)
    assert SERVICE / f"{module}.py" in seen


def test_fold_refuses_an_event_of_another_alert() -> None:
    with pytest.raises(ValueError, match="folded into"):
        fold(fold_all([s("Acknowledge")]), s("Create"))


def test_services_wait_for_the_team_list_when_team_rules_exist() -> None:
    rules = Rules(team_services={"ops": ("ops-service",)})
    partial = render(fold_all([s("AddTeam")]), rules, ACCOUNT)  # teams only partly known
    assert "services" not in partial
    assert "metadata" in partial
    full = render(fold_all([s("Create")]), rules, ACCOUNT)
    assert "services" in full


def test_source_url_escapes_the_alert_id() -> None:
    odd = at(sample("Create"), 1593475564636000000, alertId="a/b?c")
    url = render(fold_all([event(odd)]), RULES, ACCOUNT)["source_url"]
    assert url.endswith("/alert/detail/a%2Fb%3Fc/details")
