"""``GET /openapi.json``: the relay's routes, described for humans and API tooling."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from service import __version__

_ERRORS = {
    "type": "object",
    "required": ["errors"],
    "properties": {"errors": {"type": "array", "items": {"type": "string"}}},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
    }


def document() -> dict[str, Any]:
    webhook = {
        "summary": "Receive one Opsgenie alert action",
        "description": "Answers 202 only after the event is durably stored.",
        "security": [{"bearer": []}, {"basic": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Webhook"}}},
        },
        "responses": {
            "202": {
                "description": "Stored (or ignored: an action the relay does not act on)",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                },
            },
            "400": _error("Not JSON, not an object, a missing or wrongly typed field"),
            "401": _error("Missing or wrong webhook token"),
            "413": _error("Body larger than the limit"),
            "503": _error("Could not store the event; Opsgenie may retry"),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "opsgenie-dx-relay", "version": __version__},
        "paths": {
            "/webhooks/opsgenie": {"post": webhook},
            "/healthz": {
                "get": {"summary": "Process alive", "responses": {"200": {"description": "OK"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Store writable and worker running (not tied to DX)",
                    "responses": {
                        "200": {"description": "Ready"},
                        "503": {"description": "Not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Text format"}},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
            "schemas": {
                "Errors": _ERRORS,
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "outcome": {
                            "type": "string",
                            "enum": ["accepted", "unchanged", "duplicate", "ignored"],
                        },
                        "reference_id": {"type": "string"},
                    },
                },
                "Webhook": {
                    "type": "object",
                    "required": ["action", "alert"],
                    "properties": {
                        "action": {"type": "string"},
                        "alert": {
                            "type": "object",
                            "required": ["alertId"],
                            "properties": {"alertId": {"type": "string"}},
                        },
                    },
                },
            },
        },
    }


async def endpoint(request: Request) -> JSONResponse:
    return JSONResponse(document())
