"""Raw events as the deliveries API shows them: parsed only when strict JSON, else text,
and a preview never larger than its budget whatever the characters."""

from __future__ import annotations

import json

import pytest

from service.delivery_views import PREVIEW_BYTES, json_or_text, raw_event
from service.store import StoredEvent


def stored(raw: str) -> StoredEvent:
    return StoredEvent(id=7, received_at=0.0, action="Create", raw=raw)


@pytest.mark.parametrize(
    "raw",
    ['{"a": NaN}', '{"a": -Infinity}', "[" * 5000 + "]" * 5000, '{"a": "\\ud800"}', "{{"],
)
def test_what_is_not_strict_json_is_shown_as_its_text(raw: str) -> None:
    shown = raw_event(stored(raw), preview=False)
    assert shown["raw_format"] == "text"
    assert shown["raw"] == raw
    json.dumps(shown, ensure_ascii=False, allow_nan=False).encode()  # an answer can carry it
    assert json_or_text(raw) == raw


def test_undecodable_bytes_kept_by_the_store_are_replaced() -> None:
    raw = b'{"a": "\xff\xfe"}'.decode("utf-8", "surrogateescape")
    shown = raw_event(stored(raw), preview=True)
    assert shown["raw"] == '{"a": "\ufffd\ufffd"}'
    assert shown["raw_bytes"] == 11


@pytest.mark.parametrize("filler", ["x", '"', "\x01", "é", "😀"])
def test_a_preview_stays_within_its_budget(filler: str) -> None:
    raw = '{"a": "' + filler * 10_000 + '"}'
    shown = raw_event(stored(raw), preview=True)
    assert shown["truncated"] is True
    assert shown["raw_bytes"] == len(raw.encode())
    encoded = len(json.dumps(shown["raw"], ensure_ascii=False).encode()) - 2
    assert PREVIEW_BYTES - 64 <= encoded <= PREVIEW_BYTES
    assert raw.startswith(shown["raw"])


def test_a_small_event_is_shown_parsed_and_whole() -> None:
    shown = raw_event(stored('{"action": "Create"}'), preview=True)
    assert shown == {
        "id": 7,
        "action": "Create",
        "received_at": "1970-01-01T00:00:00.000Z",
        "raw": {"action": "Create"},
        "raw_format": "json",
        "raw_bytes": 20,
        "truncated": False,
    }
