"""What the deliveries API shows of a delivery, its attempts and its raw events.

A raw event is shown as whatever was stored, by any build: an earlier one may have
stored ``NaN``, nesting thousands deep, lone surrogates or bytes that are not UTF-8. So
an event is shown parsed only when it is JSON as RFC 8259 has it and renders back as
UTF-8; otherwise as its text, unreadable characters replaced. The detail shows at most a
preview of each (``PREVIEW_BYTES``); the whole event has a route of its own.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from service import strict_json
from service.store import Attempt, Delivery, StoredEvent
from service.translate import AlertState, iso8601

#: The most of one raw event the detail shows (as encoded in the answer, about).
PREVIEW_BYTES = 4096
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def time_of(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ns(ns: int | None) -> str | None:
    return None if ns is None else iso8601(ns)


def alert_summary(state: AlertState) -> dict[str, Any]:
    """What the relay believes about the alert: the facts DX's incident is built from."""
    return {
        "alert_id": state.alert_id,
        "message": state.message.value if state.message else None,
        "priority": state.priority.value if state.priority else None,
        "alias": state.alias.value if state.alias else None,
        "entity": state.entity.value if state.entity else None,
        "source": state.source.value if state.source else None,
        "tiny_id": state.tiny_id.value if state.tiny_id else None,
        "owner": state.owner.value if state.owner else None,
        "acknowledged": state.acknowledged.value if state.acknowledged else None,
        "created_at": _ns(state.created_at_ns),
        "closed_at": _ns(state.closed_at_ns),
        "deleted": state.deleted,
        "tags": list(state.tags.members()) if state.tags.known else None,
        "teams": list(state.teams.members()) if state.teams.known else None,
    }


def summary(delivery: Delivery) -> dict[str, Any]:
    return {
        "reference_id": delivery.reference_id,
        "alert_id": delivery.alert_id,
        "service_id": delivery.service_id,
        "status": delivery.status.value,
        "version": delivery.version,
        "delivered_version": delivery.delivered_version,
        "attempts": delivery.attempts,
        "next_attempt_at": time_of(delivery.next_attempt_at),
        "last_error_code": delivery.last_error_code,
        "last_error": delivery.last_error,
        "updated_at": time_of(delivery.updated_at),
        "message": (
            delivery.state.message.value if delivery.state and delivery.state.message else None
        ),
    }


def readable(text: str) -> str:
    """``text`` as an answer can carry it: lone surrogates (undecodable bytes kept by the
    store, or ``\\ud800`` escapes) become U+FFFD, one each."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def parsed(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is strict JSON whose value renders back as UTF-8
    (a ``\\ud800`` escape parses into a string no answer can carry), else ``(False, None)``."""
    try:
        value = strict_json.loads(text)
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except ValueError:  # UnicodeEncodeError too
        return False, None
    return True, value


def json_or_text(text: str | None) -> Any:
    """DX's answer as JSON when it parses, else as the text received."""
    if text is None:
        return None
    ok, value = parsed(text)
    return value if ok else readable(text)


def _size(text: str) -> int:
    """Bytes as stored: undecodable bytes the store kept as surrogates count one each."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def _prefix(text: str, budget: int) -> str:
    """The longest start of ``text`` (or about) whose JSON string takes ``budget`` bytes."""
    cut = text[:budget]
    while True:
        encoded = len(json.dumps(cut, ensure_ascii=False).encode()) - 2
        if encoded <= budget:
            return cut
        cut = cut[: min(len(cut) - 1, len(cut) * budget // encoded)]


def raw_event(event: StoredEvent, *, preview: bool) -> dict[str, Any]:
    """One stored event: ``raw`` parsed (``raw_format: json``) or as text (``text``), and
    with ``preview`` cut to ``PREVIEW_BYTES`` (``truncated``); ``raw_bytes`` is its size."""
    size = _size(event.raw)
    ok, value = (False, None) if preview and size > PREVIEW_BYTES else parsed(event.raw)
    text = "" if ok else readable(event.raw)
    shown = _prefix(text, PREVIEW_BYTES) if preview else text
    return {
        "id": event.id,
        "action": event.action,
        "received_at": time_of(event.received_at),
        "raw": value if ok else shown,
        "raw_format": "json" if ok else "text",
        "raw_bytes": size,
        "truncated": not ok and len(shown) < len(text),
    }


def detail(
    delivery: Delivery, attempts: list[Attempt], events: list[StoredEvent]
) -> dict[str, Any]:
    return {
        **summary(delivery),
        "alert": alert_summary(delivery.state) if delivery.state else None,
        "last_request": delivery.last_request,
        "last_response": json_or_text(delivery.last_response),
        "history": [
            {
                "at": time_of(a.at),
                "version": a.version,
                "outcome": a.outcome,
                "http_status": a.http_status,
                "error_code": a.error_code,
                "detail": a.detail,
                "duration_seconds": a.duration_seconds,
            }
            for a in attempts
        ],
        "events": [raw_event(e, preview=True) for e in events],
    }
