"""The deliveries and backfill routes in ``/openapi.json`` (``openapi_admin``'s rules:
built from the constants the handlers check with).

Their answers are described member by member, every member required and no other
allowed: a view (``delivery_views``, ``backfill_report``) that gains, loses or retypes a
member then fails ``tests/test_openapi.py``, which validates real answers against these
schemas, and the fuzzer's conformance check.
"""

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
from service.openapi_admin import SECURITY, body, path_parameter, responses
from service.store import Outcome, Status

_STRING = {"type": "string"}
_TEXT = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
#: ``delivery_views.time_of``: the relay's own clock, to the millisecond, in UTC.
_TIME = {"type": "string", "format": "date-time"}
#: A time the alert states (``translate.iso8601``): Opsgenie's, so no format is promised.
_ALERT_TIME = {"type": ["string", "null"]}
_MEMBERS = {"type": ["array", "null"], "items": _STRING, "description": "null: never stated"}
#: What a backfill did with a listed alert (``Backfill._fold``): ``accept``'s outcomes too.
_BACKFILL_OUTCOMES = ("new", "known", "deleted", "invalid", *(o.value for o in Outcome))
_COUNTS = {
    "type": "object",
    "propertyNames": {"enum": list(_BACKFILL_OUTCOMES)},
    "additionalProperties": _COUNT,
    "description": "Alerts by outcome",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _closed(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An object with exactly ``properties``, each always present (maybe null)."""
    return {
        "type": "object",
        **({"description": description} if description else {}),
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }


def _data(name: str) -> dict[str, Any]:
    return _closed({"data": _ref(name)})


_SUMMARY = {
    "reference_id": _STRING,
    "alert_id": _STRING,
    "service_id": _TEXT,
    "status": {"type": "string", "enum": list(Status)},
    "version": _COUNT,
    "delivered_version": _COUNT,
    "attempts": _COUNT,
    "next_attempt_at": {**_TIME, "type": ["string", "null"]},
    "last_error_code": _TEXT,
    "last_error": _TEXT,
    "updated_at": _TIME,
    "message": _TEXT,
}
_RAW_EVENT = {
    "id": {"type": "integer", "minimum": 1},
    "action": _STRING,
    "received_at": _TIME,
    "raw": {"description": "The event parsed (raw_format json), or its text (text)"},
    "raw_format": {"type": "string", "enum": ["json", "text"]},
    "raw_bytes": _COUNT,
    "truncated": {"type": "boolean", "description": "Only a preview's text is cut"},
}
_ALERT = {
    "alert_id": _STRING,
    **{n: _TEXT for n in ("message", "priority", "alias", "entity", "source", "tiny_id", "owner")},
    "acknowledged": {"type": ["boolean", "null"]},
    "created_at": _ALERT_TIME,
    "closed_at": _ALERT_TIME,
    "deleted": {"type": "boolean"},
    "tags": _MEMBERS,
    "teams": _MEMBERS,
}
_ATTEMPT = {
    "at": _TIME,
    "version": _COUNT,
    "outcome": _STRING,
    "http_status": {"type": ["integer", "null"]},
    "error_code": _TEXT,
    "detail": _TEXT,
    "duration_seconds": {"type": "number", "minimum": 0},
}
_PROGRESS = {"page": _COUNT, "alerts_seen": _COUNT, "counts": _COUNTS, "retries": _COUNT}
_BACKFILLED = {
    "reference_id": _TEXT,
    "alert_id": {"description": "As Opsgenie listed it (an invalid alert's may be any value)"},
    "outcome": {"type": "string", "enum": list(_BACKFILL_OUTCOMES)},
}
_REPORT = {
    "service": _STRING,
    "since": _STRING,
    "dry_run": {"type": "boolean"},
    "complete": {"type": "boolean", "description": "False when there are warnings"},
    "warnings": {"type": "array", "items": _STRING},
    "counts": _COUNTS,
    "alerts": {"type": "array", "items": _closed(_BACKFILLED)},
}

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
SCHEMAS.update(
    {
        "DeliverySummary": _closed(_SUMMARY),
        "DeliveryList": _closed(
            {
                "data": {"type": "array", "items": _ref("DeliverySummary")},
                "next": {**_TEXT, "description": "Pass as cursor; null on the last page"},
            }
        ),
        "Delivery": _closed(
            {
                **_SUMMARY,
                "alert": {
                    "oneOf": [_closed(_ALERT), {"type": "null"}],
                    "description": "null if no stored event could be read",
                },
                "last_request": {
                    "type": ["object", "null"],
                    "description": "The incidents.upsert body last sent to DX",
                },
                "last_response": {"description": "DX's answer: JSON if it parsed, else text"},
                "history": {"type": "array", "items": _closed(_ATTEMPT)},
                "events": {"type": "array", "items": _ref("RawEvent")},
                "events_next": {
                    "type": ["string", "null"],
                    "pattern": EVENT_ID_PATTERN,
                    "description": "Pass as events_cursor; null when no older events",
                },
            }
        ),
        "RawEvent": _closed(_RAW_EVENT),
        "DeliveryAnswer": _data("Delivery"),
        "DeliverySummaryAnswer": _data("DeliverySummary"),
        "RawEventAnswer": _data("RawEvent"),
        "Retried": _closed({"retried": _COUNT}),
        "BackfillReport": _closed(_REPORT),
        "BackfillAnswer": _data("BackfillReport"),
        "BackfillLine": {
            "description": f"One line of a backfill's {NDJSON} stream",
            "oneOf": [
                _closed({"progress": _closed(_PROGRESS)}, "After each page"),
                _closed({"data": _ref("BackfillReport")}, "The last line, if it succeeded"),
                _closed(
                    {
                        "errors": {"type": "array", "items": _STRING},
                        "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    },
                    "The last line, if it failed after the 200 was sent",
                ),
            ],
        },
    }
)


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def paths() -> dict[str, Any]:
    """``deliveries_api`` and ``backfill_api``'s routes."""
    common = {"tags": ["Deliveries"], "security": SECURITY}
    reference = path_parameter(
        "reference_id", {"type": "string"}, "What the webhook's 202 answered as reference_id"
    )
    event = path_parameter("event_id", {"type": "integer", "minimum": 1})
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
                "responses": responses(
                    "200", _json("DeliveryList"), **{"400": "Bad status, limit or cursor"}
                ),
            }
        },
        BACKFILL_PATH: {
            "post": {
                **common,
                "operationId": "Backfill",
                "summary": "Fold a service object's alerts since a time into the outbox",
                "description": (
                    f"With Accept: {NDJSON} the 200 streams one JSON document per line"
                    " (components/schemas/BackfillLine): a progress line per page"
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
                            **_json("BackfillAnswer"),
                            NDJSON: {
                                "schema": {
                                    "type": "string",
                                    "description": "Lines, each a BackfillLine",
                                },
                                "x-itemSchema": _ref("BackfillLine"),
                            },
                        },
                        **{
                            "400": "Bad body, or since further back than 365d",
                            "413": "Body larger than the limit",
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
                "responses": responses("200", _json("Retried")),
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
                    _json("DeliveryAnswer"),
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
                "responses": responses(
                    "200", _json("RawEventAnswer"), **{"404": "Unknown reference id or event id"}
                ),
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
                    _json("DeliverySummaryAnswer"),
                    **{
                        "404": "Unknown reference id",
                        "409": "Delivered or filtered: nothing to retry",
                    },
                ),
            },
        },
    }
