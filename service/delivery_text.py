"""Deliveries as an operator reads them in a terminal: tables, one delivery's story, and
its raw events (``admin_client`` fetches them from the relay)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

#: Control characters but newline and tab, which a raw event's text may hold.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def deliveries_table(deliveries: list[dict[str, Any]]) -> str:
    if not deliveries:
        return "no deliveries"
    header = ("REFERENCE_ID", "STATUS", "VERSION", "DELIVERED", "ATTEMPTS", "NEXT", "LAST_ERROR")
    rows = [
        (
            d["reference_id"],
            d["status"],
            d["version"],
            d["delivered_version"],
            d["attempts"],
            d["next_attempt_at"],
            d["last_error_code"],
        )
        for d in deliveries
    ]
    return table(rows, header)


def delivery_text(d: dict[str, Any]) -> str:
    """One delivery as an operator reads it: where it stands, why, and how it got there;
    raw events listed, with the command that shows one whole."""
    fields = [
        "reference_id",
        "alert_id",
        "service_id",
        "status",
        "version",
        "delivered_version",
        "attempts",
        "next_attempt_at",
        "last_error_code",
        "last_error",
        "updated_at",
    ]
    lines = [f"{name + ':':<19}{'-' if d[name] is None else d[name]}" for name in fields]
    lines += ["", "alert: " + alert_text(d)]
    lines += ["last DX request: " + json.dumps(d["last_request"], sort_keys=True)]
    lines += ["last DX answer:  " + json.dumps(d["last_response"], sort_keys=True)]
    attempts = [
        (a["at"], a["version"], a["outcome"], a["http_status"], a["error_code"], a["detail"])
        for a in d["history"]
    ]
    header = ("AT", "VERSION", "OUTCOME", "HTTP", "CODE", "DETAIL")
    lines += ["", "attempts:", table(attempts, header) if attempts else "none"]
    lines += ["", "events:", events_text(d)]
    return "\n".join(lines)


def events_text(d: dict[str, Any]) -> str:
    """The raw events' table, and how to read one whole or older ones. A relay older than
    this CLI sends no ids or sizes: its events are listed as before."""
    events = d["events"]
    if not events:
        return "none"
    rows = [
        (e.get("id"), e["received_at"], e["action"], e.get("raw_bytes"), _shown(e)) for e in events
    ]
    lines = [table(rows, ("ID", "RECEIVED_AT", "ACTION", "BYTES", "SHOWN"))]
    command = f"opsgenie-dx-relay delivery {d['reference_id']}"
    if events[-1].get("id") is not None:
        lines += [f"one event whole: {command} --event ID"]
    if d.get("events_next"):
        lines += [f"older events: {command} --events-cursor {d['events_next']}"]
    return "\n".join(lines)


def _shown(event: dict[str, Any]) -> str | None:
    """How the preview stands for the event: parsed, as text (it is not JSON), or cut."""
    if "raw_format" not in event:
        return None
    if event["truncated"]:
        return "truncated"
    return "json" if event["raw_format"] == "json" else "text (not JSON)"


def event_text(event: dict[str, Any]) -> str:
    """One raw event whole: JSON indented, or the text stored when it is not JSON."""
    raw = event["raw"]
    if event["raw_format"] == "json":
        body = json.dumps(raw, indent=2, sort_keys=True)
    else:  # whatever was stored: no escape sequence of it may reach the terminal
        body = _CONTROL.sub("\ufffd", raw)
    head = f"event {event['id']}: {event['action']} received {event['received_at']}"
    return f"{head}, {event['raw_bytes']} bytes ({event['raw_format']})\n{body}"


def alert_text(d: dict[str, Any]) -> str:
    """The alert as the relay knows it. It knows nothing when none of the stored events
    parse (the reference is then ``failed`` with ``unreadable_events``): say so, since the
    raw events below are what the operator has to read instead."""
    if d["alert"] is None:
        if d["last_error_code"] == "unreadable_events":
            return "unknown (stored events unreadable)"
        return "unknown"
    alert = {k: v for k, v in d["alert"].items() if v not in (None, [], False)}
    return json.dumps(alert, sort_keys=True)
