"""The operator's views survive any event an earlier build may have stored.

Rows are planted straight into the relay's SQLite file, as an older build (or a hand)
could have written them, then read through the API and the CLI of a running relay.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

import pytest

from tests.conftest import sample
from tests.e2e.conftest import RelayProcess
from tests.e2e.test_cli import KEYS, cli

pytestmark = pytest.mark.e2e

HEADERS = {"DD-API-KEY": KEYS["RELAY_API_KEY"], "DD-APPLICATION-KEY": KEYS["RELAY_APP_KEY"]}
CREATE = json.dumps(sample("Create"))


def _with_junk(junk: str) -> str:
    """The sample Create with one field the relay ignores set to ``junk`` (raw JSON text)."""
    return CREATE.replace('"source":', f'"junk": {junk}, "source":', 1)


#: Name, action and raw text (``bytes``: stored as they are, not UTF-8).
POISON: list[tuple[str, str, str | bytes]] = [
    ("nan", "Create", _with_junk("NaN")),
    ("infinity", "Create", _with_junk("-Infinity")),
    ("deep", "Create", _with_junk("[" * 5000 + "]" * 5000)),
    ("surrogate-escape", "Create", _with_junk('"\\ud800"')),
    (
        "surrogate-bytes",
        "Create",
        _with_junk('"\xff"').encode().replace(b"\xc3\xbf", b"\xed\xa0\x80"),
    ),
    ("not-object", "Create", "[1, 2, 3]"),
    ("not-json", "Create", "{{{"),
    ("fetched-not-object", "Fetched", "[1, 2, 3]"),
    ("fetched-deep", "Fetched", "[" * 5000 + "]" * 5000),
    ("fetched-nan", "Fetched", '{"id": "fetched-nan", "message": NaN}'),
]


def plant(database: str) -> None:
    """One alert per poison, its only event the poison (its alert row follows by trigger)."""
    with sqlite3.connect(database, timeout=10.0) as conn:
        for n, (name, action, raw) in enumerate(POISON):
            conn.execute(
                "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at,"
                " raw) VALUES (?, ?, ?, ?, ?, CAST(? AS TEXT))",
                (f"planted-{n}", f"opsgenie-{name}", name, action, time.time(), raw),
            )
    conn.close()  # the context manager only commits


def test_every_view_survives_any_stored_event(relay: Callable[..., RelayProcess]) -> None:
    started = relay(**KEYS, RELAY_ADMIN_RATE_LIMIT="100000")
    plant(started.env["RELAY_DATABASE_URL"].removeprefix("sqlite:///"))
    client = started.client

    listed = client.get("/api/v1/deliveries", params={"limit": 500}, headers=HEADERS)
    assert listed.status_code == 200, listed.text
    references = {d["reference_id"] for d in listed.json()["data"]}
    assert {f"opsgenie-{name}" for name, _, _ in POISON} <= references
    listing = cli(started, "deliveries", "--limit", "500")
    assert listing.returncode == 0, listing.stderr
    for name, _, raw in POISON:
        reference = f"opsgenie-{name}"
        shown = client.get(f"/api/v1/deliveries/{reference}", headers=HEADERS)
        assert shown.status_code == 200, (name, shown.text)
        [event] = shown.json()["data"]["events"]
        # Only strict JSON is shown parsed (a list is JSON, if no webhook); the rest as text.
        parsed = name.endswith("not-object")
        assert event["raw_format"] == ("json" if parsed else "text"), name
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
        assert event["raw_bytes"] == size
        assert event["truncated"] is (size > 4096)
        whole = client.get(f"/api/v1/deliveries/{reference}/events/{event['id']}", headers=HEADERS)
        assert whole.status_code == 200, (name, whole.text)
        expected = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        expected = json.loads(expected) if parsed else expected
        assert whole.json()["data"]["raw"] == expected  # undecodable: one U+FFFD a byte

        text = cli(started, "delivery", reference)
        assert text.returncode == 0, (name, text.stderr)
        assert f"delivery {reference} --event ID" in text.stdout
        as_json = cli(started, "delivery", reference, "--json")
        assert as_json.returncode == 0, (name, as_json.stderr)
        assert json.loads(as_json.stdout)["events"][0]["id"] == event["id"]
        one = cli(started, "delivery", reference, "--event", str(event["id"]))
        assert one.returncode == 0, (name, one.stderr)
        assert one.stdout.startswith(f"event {event['id']}: {event['action']} received ")
    assert "Traceback" not in started.logs()
