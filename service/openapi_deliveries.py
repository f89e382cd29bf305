"""The deliveries and backfill routes in ``/openapi.json`` (``openapi_admin``'s rules:
built from the constants the handlers check with)."""

from __future__ import annotations

from typing import Any

from service import characters
from service.backfill import MAX_SINCE_SECONDS
from service.backfill_api import BACKFILL_FIELDS, BACKFILL_PATH, NDJSON
from service.deliveries_api import (
    CURSOR_PATTERN,
    EVENT_ID_PATTERN,
    EVENTS_PAGE,
    MAX_LIMIT,
    PATH,
)
from service.openapi_admin import SECURITY, body, responses
from service.store import Status

SCHEMAS: dict[str, Any] = {
    "BackfillRequest": {
        "type": "object",
        "required": ["service", "since"],
        "properties": {
            "service": {
                "type": "string",
                "pattern": characters.NOT_BLANK,
                "description": "A service object's name or id",
            },
            "since": {
                "oneOf": [
                    {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": MAX_SINCE_SECONDS,
                        "description": "Seconds",
                    },
                    {
                        "type": "string",
                        # Whole numbers of a unit, up to 365d: a pattern cannot weigh
                        # "1.5h" against the limit, though the relay takes it.
                        "pattern": (
                            "^(?:[1-9][0-9]{0,2}(?:ms|s|m|h)|[1-9][0-9]?d"
                            "|[12][0-9]{2}d|3[0-5][0-9]d|36[0-5]d)$"
                        ),
                        "description": "A duration: 30m, 12h, 7d",
                    },
                ]
            },
            "dry_run": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
    },
}
assert set(SCHEMAS["BackfillRequest"]["properties"]) == set(BACKFILL_FIELDS)


def paths() -> dict[str, Any]:
    """``deliveries_api`` and ``backfill_api``'s routes."""
    common = {"tags": ["Deliveries"], "security": SECURITY}
    reference = {
        "name": "reference_id",
        "in": "path",
        "required": True,
        "description": "What the webhook's 202 answered as reference_id",
        "schema": {"type": "string"},
    }
    event = {
        "name": "event_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
    events_cursor = {
        "name": "events_cursor",
        "in": "query",
        "description": "events_next of the page before",
        "schema": {"type": "string", "pattern": EVENT_ID_PATTERN},
    }
    query = [
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(Status)}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        },
        {
            "name": "cursor",
            "in": "query",
            "description": "next of the page before",
            "schema": {"type": "string", "pattern": CURSOR_PATTERN},
        },
    ]
    return {
        PATH: {
            "get": {
                **common,
                "operationId": "ListDeliveries",
                "summary": "List deliveries ({data, next}; pass next as cursor)",
                "parameters": query,
                "responses": responses("200", None, **{"400": "Bad status, limit or cursor"}),
            }
        },
        BACKFILL_PATH: {
            "post": {
                **common,
                "operationId": "Backfill",
                "summary": "Fold a service object's alerts since a time into the outbox",
                "description": (
                    f"With Accept: {NDJSON} the 200 streams one line per page"
                    ' ({"progress": {page, alerts_seen, counts, retries}}), then'
                    ' {"data": report}, or {"errors": [...], "status": 502} if Opsgenie'
                    " fails after streaming began."
                ),
                "requestBody": body(
                    "BackfillRequest", {"service": "payments", "since": "7d", "dry_run": True}
                ),
                "responses": {
                    **responses(
                        "200",
                        {
                            "application/json": {"schema": {"type": "object"}},
                            NDJSON: {"schema": {"type": "string"}},
                        },
                        **{
                            "400": "Bad body, or since further back than 365d",
                            "404": "Unknown service object",
                            "409": (
                                "The service object has no Opsgenie API key, or"
                                " RELAY_SECRET_KEY no longer decrypts it"
                            ),
                            "502": "Opsgenie did not list the alerts",
                        },
                    ),
                },
            }
        },
        PATH + "/retry-failed": {
            "post": {
                **common,
                "operationId": "RetryFailedDeliveries",
                "summary": "Retry every failed delivery",
                "responses": responses("200", None),
            }
        },
        PATH + "/{reference_id}": {
            "parameters": [reference],
            "get": {
                **common,
                "operationId": "GetDelivery",
                "summary": "One delivery: state, DX request and answer, attempts, raw events",
                "description": (
                    f"The latest {EVENTS_PAGE} raw events, each cut to a preview"
                    " (truncated, raw_bytes, raw_format json or text); events_next, passed"
                    " as events_cursor, pages to older ones."
                ),
                "parameters": [events_cursor],
                "responses": responses(
                    "200",
                    None,
                    **{"400": "Bad events_cursor", "404": "Unknown reference id"},
                ),
            },
        },
        PATH + "/{reference_id}/events/{event_id}": {
            "parameters": [reference, event],
            "get": {
                **common,
                "operationId": "GetDeliveryEvent",
                "summary": "One raw event whole (raw parsed if it is JSON, else its text)",
                "responses": responses("200", None, **{"404": "Unknown reference id or event id"}),
            },
        },
        PATH + "/{reference_id}/retry": {
            "parameters": [reference],
            "post": {
                **common,
                "operationId": "RetryDelivery",
                "summary": "Make a failed or pending delivery due now",
                "responses": responses(
                    "200",
                    None,
                    **{
                        "404": "Unknown reference id",
                        "409": "Delivered or filtered: nothing to retry",
                    },
                ),
            },
        },
    }
