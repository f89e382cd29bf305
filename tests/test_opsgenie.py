"""Parsing Opsgenie webhooks: every documented example, every quirk we hold a payload for, and a
rejection naming its field for each wrong type the relay cannot work with."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service.errors import PayloadError
from service.opsgenie import (
    Action,
    OpsgenieEvent,
    event_from_api_alert,
    parse_event,
    read_webhook,
)
from tests.conftest import PAYLOADS, SAMPLES, payload, sample

RECEIVED = 1_700_000_000_123_456_789
DOC_ALERT = "052652ac-5d1c-464a-812a-7dd18bbfba8c"
CREATED_NS = 1_420_452_191_104 * 10**6

SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))
PAYLOAD_FILES = sorted(PAYLOADS.glob("*.json"))


def parse(document: Any, *, received_ns: int = RECEIVED) -> OpsgenieEvent:
    return parse_event(json.dumps(document).encode(), received_ns=received_ns)


def rejection(body: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_event(body, received_ns=RECEIVED)
    return caught.value


def minimal(**alert: Any) -> dict[str, Any]:
    return {"action": "Create", "alert": {"alertId": "a-1", **alert}}


# -- every real and hand-made payload parses ----------------------------------------------


def test_the_sample_and_payload_dirs_hold_what_the_tests_expect() -> None:
    assert len(SAMPLE_FILES) >= 11
    assert {p.stem for p in PAYLOAD_FILES} >= {
        "create-int-priority",
        "create-updatedat-ms",
        "create-updatedat-string",
        "escalate",
        "addtags-no-tags-array",
        "removetags-no-tags-array",
        "create-with-details",
        "create-old-envelope",
        "create-for-existing-alert",
        "update-priority",
        "take-ownership",
        "custom-action",
    }


@pytest.mark.parametrize(
    "path", SAMPLE_FILES + PAYLOAD_FILES, ids=lambda p: p.parent.name + "/" + p.stem
)
def test_every_payload_parses_to_what_it_says(path: Path) -> None:
    document = json.loads(path.read_bytes())
    event = parse_event(path.read_bytes(), received_ns=RECEIVED)
    alert = document["alert"]

    assert event.action == document["action"]
    assert event.alert_id == alert["alertId"]
    assert event.message == alert.get("message")
    assert event.alias == alert.get("alias")
    assert event.entity == alert.get("entity")
    assert event.source == alert.get("source")
    assert event.tiny_id == alert.get("tinyId")
    assert event.integration_name == document.get("integrationName")
    if "updatedAt" in alert:
        # Every payload we hold is from 2015 or 2020: in ns that is 19 digits.
        assert 10**18 <= event.stamp_ns < 2 * 10**18
    else:
        assert event.stamp_ns == RECEIVED
    if "createdAt" in alert:
        assert event.created_at_ns == alert["createdAt"] * 10**6
    if "tags" in alert:
        assert event.tags == tuple(alert["tags"])
    else:
        assert event.tags is None
    assert (event.closed_at_ns is not None) == (event.action == "Close")
    known = {a.value: a for a in Action}
    assert event.known_action is known.get(event.action)


@pytest.mark.parametrize(
    "path", SAMPLE_FILES + PAYLOAD_FILES, ids=lambda p: p.parent.name + "/" + p.stem
)
def test_parsing_is_deterministic_and_needs_nothing_but_the_bytes(path: Path) -> None:
    body = path.read_bytes()
    assert parse_event(body, received_ns=RECEIVED) == parse_event(body, received_ns=RECEIVED)


def test_create_sample_carries_teams_priority_and_details() -> None:
    event = parse(sample("Create"))
    assert event.known_action is Action.CREATE
    assert event.alert_id == "7ec331d7-f5f3-4f78-a49c-2ad886df69fe-1593475564295"
    assert event.stamp_ns == 1593475564636000000
    assert event.created_at_ns == 1593475564295 * 10**6
    assert event.priority == "P3"
    assert event.tags == ()
    # Team names from responders and ``team``; the ``teams`` ids are not names.
    assert event.teams == ("operations",)
    assert event.details == ()
    assert event.integration_name == "operations_Webhook_2"
    assert event.acknowledged is None
    assert event.owner is None
    assert event.closed_at_ns is None


def test_acknowledge_and_unacknowledge_set_the_flag() -> None:
    assert parse(sample("Acknowledge")).acknowledged is True
    assert parse(sample("UnAcknowledge")).acknowledged is False
    assert parse(sample("AddNote")).acknowledged is None


def test_close_is_closed_at_its_updated_at() -> None:
    event = parse(sample("Close"))
    assert event.closed_at_ns == event.stamp_ns == 1420452374669001603
    assert event.tags == ()


def test_close_without_updated_at_is_closed_at_receipt() -> None:
    document = sample("Close")
    del document["alert"]["updatedAt"]
    event = parse(document)
    assert event.closed_at_ns == event.stamp_ns == RECEIVED


def test_assign_ownership_names_the_owner() -> None:
    assert parse(sample("AssignOwnership")).owner == "user2@ifountain.com"


def test_take_ownership_owner_is_who_took_it() -> None:
    event = parse(payload("take-ownership"))
    assert event.known_action is Action.TAKE_OWNERSHIP
    assert event.owner == "user3@ifountain.com"


def test_owner_outside_ownership_actions_is_not_an_owner_change() -> None:
    document = sample("AddNote")
    document["alert"]["owner"] = "someone@example.com"
    assert parse(document).owner is None


def test_add_team_names_the_added_team_and_says_nothing_about_the_whole_set() -> None:
    event = parse(sample("AddTeam"))
    assert event.added_team == "team2"
    assert event.teams is None


def test_team_outside_create_and_add_team_is_ignored() -> None:
    document = sample("AddNote")
    document["alert"]["team"] = "team9"
    event = parse(document)
    assert event.added_team is None
    assert event.teams is None


def test_delete_has_no_tags() -> None:
    event = parse(sample("Delete"))
    assert event.known_action is Action.DELETE
    assert event.tags is None


def test_custom_action_sample_is_an_unknown_action_that_parses() -> None:
    event = parse(sample("CustomAction.TestAction"))
    assert event.action == "TestAction"
    assert event.known_action is None
    assert event.tags == ("tag1", "tag2")


def test_custom_action_payload_carries_details() -> None:
    event = parse(payload("custom-action"))
    assert event.known_action is None
    assert event.details == (
        ("runbook", "https://wiki.example.com/checkout"),
        ("service", "payments"),
    )


@pytest.mark.parametrize("action", ["Snooze", "SomethingNew", "addnote", "create"])
def test_unknown_or_miscased_action_parses_with_no_known_action(action: str) -> None:
    document = sample("AddNote")
    document["action"] = action
    event = parse(document)
    assert event.action == action
    if action == "Snooze":
        assert event.known_action is Action.SNOOZE
    else:
        assert event.known_action is None


def test_the_envelope_is_read_without_the_fields_only_an_event_needs() -> None:
    """Intake decides from the envelope whether to act; only then is the rest read."""
    document = sample("CustomAction.TestAction")
    document["alert"].update(priority="high", tags="x,y", updatedAt="soon")
    body = json.dumps(document).encode()
    webhook = read_webhook(body, received_ns=RECEIVED)
    assert (webhook.action, webhook.alert_id) == ("TestAction", document["alert"]["alertId"])
    assert webhook.known_action is None
    assert webhook.text == body.decode()
    with pytest.raises(PayloadError) as caught:
        webhook.event()
    # The one field of the three whose type is wrong: found in the same pass as the envelope.
    assert caught.value.field == "alert.tags"


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.stem)
def test_an_envelope_knows_the_action_its_event_does(path: Path) -> None:
    webhook = read_webhook(path.read_bytes(), received_ns=RECEIVED)
    event = webhook.event()
    assert (webhook.action, webhook.alert_id) == (event.action, event.alert_id)
    assert webhook.known_action is event.known_action
    assert event == parse_event(path.read_bytes(), received_ns=RECEIVED)


# -- the quirks ----------------------------------------------------------------------------


def test_integer_priority_becomes_p_n() -> None:
    assert parse(payload("create-int-priority")).priority == "P3"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "P1"),
        (5, "P5"),
        ("P2", "P2"),
        ("p4", "P4"),
        (" P1 ", "P1"),
        ("P3\n", "P3"),
        (None, None),
    ],
)
def test_priority_forms(value: object, expected: str | None) -> None:
    assert parse(minimal(priority=value)).priority == expected


def test_updated_at_in_ns_ms_and_string_land_on_the_same_ns_scale() -> None:
    stamps = {
        name: parse(payload(name)).stamp_ns
        for name in ("create-int-priority", "create-updatedat-ms", "create-updatedat-string")
    }
    assert set(stamps.values()) == {CREATED_NS}


def test_ms_and_string_variants_are_otherwise_the_same_event() -> None:
    ns = parse(payload("create-updatedat-ms"))
    text = parse(payload("create-updatedat-string"))
    assert ns == text


def test_update_priority_takes_the_new_priority_not_the_old() -> None:
    event = parse(payload("update-priority"))
    assert event.known_action is Action.UPDATE_PRIORITY
    assert event.priority == "P1"


def test_added_tags_are_a_comma_string() -> None:
    event = parse(sample("AddTags"))
    assert event.added_tags == ("tag1", "tag2", "tag3")
    assert event.tags == ("tag1", "tag2", "tag3")


def test_removed_tags_are_a_comma_string() -> None:
    event = parse(sample("RemoveTags"))
    assert event.removed_tags == ("tag3",)
    assert event.tags == ("tag1", "tag2")


def test_add_tags_without_a_tags_array_says_nothing_about_the_whole_set() -> None:
    event = parse(payload("addtags-no-tags-array"))
    assert event.tags is None
    assert event.added_tags == ("service:payments", "tag4")
    assert event.removed_tags == ()


def test_remove_tags_without_a_tags_array_says_nothing_about_the_whole_set() -> None:
    event = parse(payload("removetags-no-tags-array"))
    assert event.tags is None
    assert event.removed_tags == ("tag2",)
    assert event.added_tags == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a,b", ("a", "b")),
        (" a , b ,", ("a", "b")),
        ("a,a,b", ("a", "b")),
        ("", ()),
        (",,", ()),
        (["a", "b"], ("a", "b")),
    ],
)
def test_comma_tag_forms(value: object, expected: tuple[str, ...]) -> None:
    assert parse(minimal(addedTags=value)).added_tags == expected
    assert parse(minimal(removedTags=value)).removed_tags == expected


def test_tags_are_stripped_and_deduplicated_in_order() -> None:
    assert parse(minimal(tags=["b", " a ", "b", "", "  "])).tags == ("b", "a")


def test_escalate_holds_only_the_alert_id_and_a_receipt_stamp() -> None:
    event = parse(payload("escalate"))
    assert event.known_action is Action.ESCALATE
    assert event == OpsgenieEvent(
        action="Escalate",
        alert_id=DOC_ALERT,
        stamp_ns=RECEIVED,
        integration_name="Integration1",  # the envelope's, not the alert's
    )


def test_create_with_details_names_teams_from_responders() -> None:
    event = parse(payload("create-with-details"))
    assert event.details == (("service", "payments,auth"),)
    assert event.tags == ("service:checkout", "prod")
    # Team responders in order, the user responder left out, ``team`` deduplicated.
    assert event.teams == ("payments-team", "operations")


def test_team_names_are_deduplicated_in_order_and_empty_ones_dropped() -> None:
    responders = [
        {"type": "team", "name": ""},
        {"type": "team", "name": "ops"},
        {"type": "team", "name": 5},
        {"type": "team"},
        {"type": "user", "name": "fili"},
        {"type": "team", "name": "db"},
        {"type": "team", "name": "ops"},
    ]
    assert parse(minimal(responders=responders, team="db")).teams == ("ops", "db")
    assert parse(minimal(team="")).teams == ()


def test_details_are_sorted_by_key() -> None:
    details = {"b": "2", "a": "3", "c": "1"}
    assert parse(minimal(details=details)).details == (("a", "3"), ("b", "2"), ("c", "1"))


def test_create_with_only_user_responders_knows_there_are_no_teams() -> None:
    document = minimal(responders=[{"id": "u", "type": "user", "name": "fili"}])
    assert parse(document).teams == ()


def test_create_with_neither_responders_nor_team_knows_nothing_of_teams() -> None:
    assert parse(minimal()).teams is None


def test_old_envelope_parses_like_the_current_one() -> None:
    old = parse(payload("create-old-envelope"))
    current = parse(payload("create-int-priority"))
    assert old == current


def test_create_for_an_existing_alert_is_a_create_with_the_later_team_set() -> None:
    first = parse(payload("create-int-priority"))
    later = parse(payload("create-for-existing-alert"))
    assert later.known_action is Action.CREATE
    assert later.alert_id == first.alert_id
    assert later.stamp_ns > first.stamp_ns
    assert later.teams == ("operations", "team2")
    assert later.integration_name == "team2_Webhook"


def test_tiny_id_as_an_integer_is_its_digits() -> None:
    assert parse(minimal(tinyId=23)).tiny_id == "23"


def test_unknown_keys_anywhere_are_fine() -> None:
    document = sample("Acknowledge")
    reference = parse(document)
    document["futureKey"] = {"nested": [1, 2, 3]}
    document["alert"]["futureKey"] = None
    document["alert"]["anotherOne"] = [{"x": 1}]
    document["source"] = 42  # the envelope's source is not used
    assert parse(document) == reference


def test_fields_the_action_does_not_use_are_not_type_checked() -> None:
    """Lenient about the rest: a wrong type the relay never reads is not the sender's error."""
    document = sample("Acknowledge")
    reference = parse(document)
    document["alert"].update(
        username=7, owner=["x"], team=1, responders="ops", teams=3, note={}, userId=5
    )
    assert parse(document) == reference


def test_received_ns_only_matters_without_updated_at() -> None:
    body = json.dumps(sample("AddNote")).encode()
    assert parse_event(body, received_ns=1).stamp_ns == parse_event(body, received_ns=2).stamp_ns
    escalate = json.dumps(payload("escalate")).encode()
    assert parse_event(escalate, received_ns=1).stamp_ns == 1
    assert parse_event(escalate, received_ns=2).stamp_ns == 2


def test_utf8_text_and_a_bom_are_fine() -> None:
    document = minimal(message="Zahlung fehlgeschlagen \u2013 \u00e9\u00e8 \U0001f525")
    body = json.dumps(document, ensure_ascii=False).encode()
    assert parse_event(body, received_ns=RECEIVED).message == document["alert"]["message"]
    assert parse_event(b"\xef\xbb\xbf" + body, received_ns=RECEIVED).message is not None


# -- rejections, each naming its field -----------------------------------------------------


def body_of(document: object) -> bytes:
    return json.dumps(document).encode()


def with_alert(**alert: object) -> bytes:
    return body_of({"action": "Create", "alert": {"alertId": "a-1", **alert}})


REJECTIONS: list[tuple[str, bytes, str]] = [
    ("not json", b"{not json", "body"),
    ("empty body", b"", "body"),
    ("truncated", b'{"action": "Create", "alert": {"alertId": "a"', "body"),
    ("invalid utf-8 byte", b'{"action": "Create", "alert": {"alertId": "a\xff"}}', "body"),
    ("truncated utf-8 sequence", b'{"action": "Create", "alert": {"alertId": "a\xc3"}}', "body"),
    (
        "utf-8 encoded surrogate",
        b'{"action": "Create", "alert": {"alertId": "a\xed\xa0\x80"}}',
        "body",
    ),
    (
        "lone surrogate escape in alertId",
        b'{"action": "Create", "alert": {"alertId": "a\\ud800"}}',
        "body",
    ),
    (
        "lone surrogate escape in message",
        b'{"action": "Create", "alert": {"alertId": "a", "message": "\\udc00"}}',
        "body",
    ),
    ("two BOMs", b"\xef\xbb\xbf\xef\xbb\xbf" + body_of({"action": "Create"}), "body"),
    ("half a BOM", b"\xef\xbb" + body_of({"action": "Create"}), "body"),
    ("json array", b"[1, 2]", "body"),
    ("json string", b'"Create"', "body"),
    ("json null", b"null", "body"),
    ("missing action", body_of({"alert": {"alertId": "a"}}), "action"),
    ("null action", body_of({"action": None, "alert": {"alertId": "a"}}), "action"),
    ("action not a string", body_of({"action": 7, "alert": {"alertId": "a"}}), "action"),
    ("action a list", body_of({"action": ["Create"], "alert": {"alertId": "a"}}), "action"),
    ("empty action", body_of({"action": " ", "alert": {"alertId": "a"}}), "action"),
    ("missing alert", body_of({"action": "Create"}), "alert.alertId"),
    ("alert a list", body_of({"action": "Create", "alert": []}), "alert"),
    ("alert a string", body_of({"action": "Create", "alert": "a"}), "alert"),
    ("missing alertId", body_of({"action": "Create", "alert": {}}), "alert.alertId"),
    ("null alertId", body_of({"action": "Create", "alert": {"alertId": None}}), "alert.alertId"),
    ("empty alertId", body_of({"action": "Create", "alert": {"alertId": ""}}), "alert.alertId"),
    ("blank alertId", body_of({"action": "Create", "alert": {"alertId": "  "}}), "alert.alertId"),
    ("alertId a number", body_of({"action": "Create", "alert": {"alertId": 12}}), "alert.alertId"),
    ("alertId an object", body_of({"action": "Create", "alert": {"alertId": {}}}), "alert.alertId"),
    ("priority a word", with_alert(priority="urgent"), "alert.priority"),
    ("priority P0", with_alert(priority="P0"), "alert.priority"),
    ("priority P6", with_alert(priority="P6"), "alert.priority"),
    ("priority 0", with_alert(priority=0), "alert.priority"),
    ("priority 6", with_alert(priority=6), "alert.priority"),
    ("priority -1", with_alert(priority=-1), "alert.priority"),
    ("priority a fraction", with_alert(priority=2.5), "alert.priority"),
    ("tinyId a fraction", with_alert(tinyId=2.5), "alert.tinyId"),
    ("priority a digit string", with_alert(priority="3"), "alert.priority"),
    ("priority a bool", with_alert(priority=True), "alert.priority"),
    ("priority a list", with_alert(priority=["P1"]), "alert.priority"),
    ("tags a string", with_alert(tags="a,b"), "alert.tags"),
    ("tags an object", with_alert(tags={"a": "b"}), "alert.tags"),
    ("tags holding a number", with_alert(tags=["a", 1]), "alert.tags"),
    ("tags holding null", with_alert(tags=["a", None]), "alert.tags"),
    ("tags holding a list", with_alert(tags=[["a"]]), "alert.tags"),
    ("addedTags a number", with_alert(addedTags=5), "alert.addedTags"),
    ("addedTags a mixed list", with_alert(addedTags=["a", 1]), "alert.addedTags"),
    ("removedTags an object", with_alert(removedTags={}), "alert.removedTags"),
    ("updatedAt non-numeric", with_alert(updatedAt="soon"), "alert.updatedAt"),
    ("updatedAt negative", with_alert(updatedAt=-1420452224764002246), "alert.updatedAt"),
    ("updatedAt negative string", with_alert(updatedAt="-1420452224764"), "alert.updatedAt"),
    ("updatedAt zero", with_alert(updatedAt=0), "alert.updatedAt"),
    ("updatedAt true", with_alert(updatedAt=True), "alert.updatedAt"),
    ("updatedAt false", with_alert(updatedAt=False), "alert.updatedAt"),
    # Not JSON at all, wherever it stands: refused as the body, before any field is read.
    (
        "updatedAt NaN literal",
        b'{"action": "Create", "alert": {"alertId": "a", "updatedAt": NaN}}',
        "body",
    ),
    (
        "NaN in a field the relay ignores",
        b'{"action": "Create", "alert": {"alertId": "a"}, "extra": NaN}',
        "body",
    ),
    (
        "-Infinity in an ignored action's payload",
        b'{"action": "TestAction", "alert": {"alertId": "a", "x": [-Infinity]}}',
        "body",
    ),
    (
        "nesting past the limit in a field the relay ignores",
        b'{"action": "Create", "alert": {"alertId": "a", "details": {"x": '
        + b"[" * 40
        + b"]" * 40
        + b"}}}",
        "body",
    ),
    (
        "nesting near the recursion limit",
        b'{"action": "Create", "alert": {"alertId": "a"}, "x": ' + b"[" * 900 + b"]" * 900 + b"}",
        "body",
    ),
    (
        "updatedAt Infinity literal",
        b'{"action": "Create", "alert": {"alertId": "a", "updatedAt": Infinity}}',
        "body",
    ),
    ("updatedAt NaN string", with_alert(updatedAt="NaN"), "alert.updatedAt"),
    ("updatedAt too large", with_alert(updatedAt=10**25), "alert.updatedAt"),
    ("updatedAt past float's range", with_alert(updatedAt=10**400), "alert.updatedAt"),
    ("updatedAt a list", with_alert(updatedAt=[1]), "alert.updatedAt"),
    ("updatedAt an object", with_alert(updatedAt={}), "alert.updatedAt"),
    ("createdAt non-numeric", with_alert(createdAt="yesterday"), "alert.createdAt"),
    ("createdAt a bool", with_alert(createdAt=True), "alert.createdAt"),
    ("details a list", with_alert(details=["service", "payments"]), "alert.details"),
    ("details a string", with_alert(details="service=payments"), "alert.details"),
    ("details value a number", with_alert(details={"retries": 3}), "alert.details.retries"),
    ("details value null", with_alert(details={"service": None}), "alert.details.service"),
    ("details value an object", with_alert(details={"service": {}}), "alert.details.service"),
    ("message a number", with_alert(message=42), "alert.message"),
    ("message a list", with_alert(message=["down"]), "alert.message"),
    ("alias a number", with_alert(alias=1), "alert.alias"),
    ("entity an object", with_alert(entity={}), "alert.entity"),
    ("source a list", with_alert(source=[]), "alert.source"),
    ("tinyId a bool", with_alert(tinyId=True), "alert.tinyId"),
    ("tinyId a float", with_alert(tinyId=2.5), "alert.tinyId"),
    ("responders on Create not a list", with_alert(responders="ops"), "alert.responders"),
    ("responders on Create holding a string", with_alert(responders=["ops"]), "alert.responders"),
    ("team on Create a number", with_alert(team=3), "alert.team"),
    (
        "team on AddTeam a number",
        body_of({"action": "AddTeam", "alert": {"alertId": "a", "team": 3}}),
        "alert.team",
    ),
    (
        "owner on AssignOwnership a number",
        body_of({"action": "AssignOwnership", "alert": {"alertId": "a", "owner": 3}}),
        "alert.owner",
    ),
    (
        "username on TakeOwnership a number",
        body_of({"action": "TakeOwnership", "alert": {"alertId": "a", "username": 3}}),
        "alert.username",
    ),
    (
        "integrationName a number",
        body_of({"action": "Create", "alert": {"alertId": "a"}, "integrationName": 1}),
        "integrationName",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"),
    [(body, field) for _, body, field in REJECTIONS],
    ids=[r[0] for r in REJECTIONS],
)
def test_rejection_names_its_field(body: bytes, field: str) -> None:
    error = rejection(body)
    assert error.field == field
    assert error.status_code == 400
    # The message a sender reads names the field too (``body`` problems say "body").
    assert field in error.message


@pytest.mark.parametrize(
    "body", [body for _, body, _ in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_the_check_at_the_door_refuses_what_the_event_refuses(body: bytes) -> None:
    """Intake only checks (``Webhook.check``); the fold builds the event from the same body."""
    try:
        webhook = read_webhook(body, received_ns=RECEIVED)
    except PayloadError:
        return  # the envelope: refused before either
    with pytest.raises(PayloadError) as checked:
        webhook.check()
    assert checked.value.field == rejection(body).field
    assert checked.value.message == rejection(body).message


@pytest.mark.parametrize("path", [*SAMPLE_FILES, *PAYLOAD_FILES], ids=lambda path: path.stem)
def test_the_check_passes_every_body_that_makes_an_event(path: Path) -> None:
    webhook = read_webhook(path.read_bytes(), received_ns=RECEIVED)
    webhook.check()
    webhook.event()


@pytest.mark.parametrize("name", ["create-with-details", "custom-action", "update-priority"])
def test_a_real_payload_with_one_field_broken_names_that_field(name: str) -> None:
    document = payload(name)
    broken = copy.deepcopy(document)
    broken["alert"]["priority"] = "high"
    assert rejection(body_of(broken)).field == "alert.priority"
    broken = copy.deepcopy(document)
    broken["alert"]["updatedAt"] = "later"
    assert rejection(body_of(broken)).field == "alert.updatedAt"
    broken = copy.deepcopy(document)
    broken["alert"]["tags"] = "a,b"
    assert rejection(body_of(broken)).field == "alert.tags"


@pytest.mark.parametrize("alert_id", ["a\u0000b", "line\nbreak", "tab\there", "del\x7f"])
def test_an_alert_id_with_control_characters_is_refused(alert_id: str) -> None:
    document = json.loads(json.dumps(sample("Create")))
    document["alert"]["alertId"] = alert_id
    with pytest.raises(PayloadError, match="unprintable") as raised:
        parse_event(json.dumps(document).encode(), received_ns=1)
    assert raised.value.field == "alert.alertId"


def test_an_api_alert_id_with_control_characters_is_refused() -> None:
    data = {
        "id": "a\u0000b",
        "updatedAt": "2026-01-01T00:00:00Z",
        "createdAt": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(PayloadError, match="unprintable"):
        event_from_api_alert(data, received_ns=1)


@pytest.mark.parametrize(
    "body",
    [
        b'{"":"","alert":{"":null,"message":[',  # found by the fault suite's hypothesis run
        b'{"action": "Create", "alert": {"alertId": "a", "message": 1, "tags": [',
        b'{"action": "Create", "alert": {"alertId": "a", "priority": {}}, "x": NaN',
    ],
)
def test_a_wrong_type_before_a_truncation_is_still_a_body_error(body: bytes) -> None:
    """The typed pass stops at the wrong type; the envelope pass then meets the end."""
    error = rejection(body)
    assert (error.status_code, error.field) == (400, "body")


def test_a_whole_number_written_as_a_float_is_that_number() -> None:
    """JSON has one kind of number: to the document's schema 3.0 is the integer 3."""
    event = parse_event(with_alert(priority=3.0, tinyId=42.0), received_ns=1)
    assert (event.priority, event.tiny_id) == ("P3", "42")
