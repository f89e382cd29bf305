"""Stored rows fold back into exactly the state their events would have made at intake."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from service.folding import Replayed, StoredRow, event_of, replay
from service.opsgenie import Action, event_from_api_alert, parse_event
from service.translate import fold
from tests.conftest import sample
from tests.fakes.opsgenie import api_alert

RECEIVED = 1_700_000_000.25


def row(n: int, action: str, raw: str, alert_id: str = "a1") -> StoredRow:
    return StoredRow(
        id=n,
        reference_id=f"opsgenie-{alert_id}",
        alert_id=alert_id,
        action=action,
        received_at=RECEIVED,
        raw=raw,
    )


def webhook(name: str, alert_id: str = "a1") -> str:
    document = sample(name)
    document["alert"]["alertId"] = alert_id
    return json.dumps(document)


@pytest.mark.parametrize("name", ["Create", "Acknowledge", "AddNote", "Close", "AddTags"])
def test_a_webhook_row_is_the_event_intake_parsed(name: str) -> None:
    raw = webhook(name)
    assert event_of(row(1, name, raw)) == parse_event(raw.encode(), received_ns=int(RECEIVED * 1e9))


def test_a_fetched_row_is_the_api_alert_under_the_stored_alert_id() -> None:
    """The Alert API names the alert by ``id``; the row keeps the id intake used."""
    data = api_alert("api-id", created_ms=1_700_000_000_000)
    event = event_of(row(1, Action.FETCHED.value, json.dumps(data), alert_id="a1"))
    expected = event_from_api_alert(data, received_ns=int(RECEIVED * 1e9))
    assert event == replace(expected, alert_id="a1")


def test_replay_is_fold_over_the_rows_in_order() -> None:
    rows = [row(i, name, webhook(name)) for i, name in enumerate(["Create", "AddNote", "Close"])]
    expected = None
    for stored in rows:
        expected = fold(expected, event_of(stored))
    assert replay(None, rows) == Replayed(expected, [])
    # Folding in two rounds (the worker's claims) ends in the same state.
    assert replay(replay(None, rows[:1]).state, rows[1:]) == Replayed(expected, [])


def test_replay_skips_an_unreadable_row_and_says_which() -> None:
    """The store logs what is skipped (see test_sqlite_outbox); folding only reports it."""
    good = row(2, "Create", webhook("Create"))
    unreadable = row(1, "Create", "{not json")
    replayed = replay(None, [unreadable, good])
    assert replayed.state == fold(None, event_of(good))
    [skipped] = replayed.skipped
    assert skipped.row == unreadable
    assert skipped.error  # the parser's words, for the log line


def test_replay_of_nothing_keeps_the_state() -> None:
    assert replay(None, []) == Replayed(None, [])
