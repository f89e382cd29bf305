"""``GET /openapi.json``: the relay's routes, described for humans and API tooling."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from service import __version__, deliveries_api

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


# ---- Service objects (Datadog v2 "Opsgenie Integration" shapes) -----------------------

_SERVICES = "/api/v2/integration/opsgenie/services"
_ADMIN_SECURITY: list[dict[str, list[str]]] = [{"apiKeyAuth": [], "appKeyAuth": []}]
_RATE_HEADERS = {
    name: {"description": text, "schema": {"type": "integer"}}
    for name, text in (
        ("X-RateLimit-Limit", "Requests allowed per period and API key"),
        ("X-RateLimit-Period", "Length of the period in seconds"),
        ("X-RateLimit-Remaining", "Requests left in this period"),
        ("X-RateLimit-Reset", "Seconds until the period ends"),
    )
}
_REGION = {"type": "string", "enum": ["us", "eu", "custom"]}
_TYPE = {"type": "string", "enum": ["opsgenie-service"]}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_URL = {"type": ["string", "null"], "format": "uri", "pattern": "^https://"}
_KEY = {"type": "string", "writeOnly": True, "minLength": 1}


def _service_data(attributes: dict[str, Any], *, with_id: bool) -> dict[str, Any]:
    properties = {"type": _TYPE, "attributes": attributes}
    if with_id:
        properties["id"] = {"type": "string", "format": "uuid"}
    required = ["type", "attributes", *(["id"] if with_id else [])]
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "object", "required": required, "properties": properties}},
    }


_SERVICE_SCHEMAS: dict[str, Any] = {
    "OpsgenieServiceCreateRequest": _service_data(
        {
            "type": "object",
            "required": ["name", "region", "opsgenie_api_key"],
            "properties": {
                "name": _NAME,
                "region": _REGION,
                "custom_url": _URL,
                "opsgenie_api_key": _KEY,
            },
        },
        with_id=False,
    ),
    "OpsgenieServiceUpdateRequest": _service_data(
        {
            "type": "object",
            "properties": {
                "name": _NAME,
                "region": _REGION,
                "custom_url": _URL,
                "opsgenie_api_key": _KEY,
            },
        },
        with_id=True,
    ),
    "OpsgenieServiceResponseData": {
        "type": "object",
        "required": ["type", "id", "attributes"],
        "properties": {
            "type": _TYPE,
            "id": {"type": "string", "format": "uuid"},
            "attributes": {
                "type": "object",
                "properties": {"name": _NAME, "region": _REGION, "custom_url": _URL},
            },
        },
    },
    "OpsgenieServiceResponse": {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"$ref": "#/components/schemas/OpsgenieServiceResponseData"}},
    },
    "OpsgenieServicesResponse": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/OpsgenieServiceResponseData"},
            }
        },
    },
}


def _admin_responses(ok: str, schema: str | None, *codes: str) -> dict[str, Any]:
    reasons = {
        "400": (
            "Malformed body, wrong type, bad enum, custom without custom_url, id mismatch,"
            " a custom_url that is not an allowed https origin, a key that cannot go into a"
            " header, a name with bidirectional or invisible characters"
        ),
        "403": "Missing or wrong DD-API-KEY / DD-APPLICATION-KEY, or a read-only key on a write",
        "404": "No service object with this id",
        "409": "A service object with this name (case and Unicode form aside) exists",
        "429": "Too many requests for this API key",
    }
    success: dict[str, Any] = {"description": "OK", "headers": _RATE_HEADERS}
    if schema is not None:
        ref = {"$ref": f"#/components/schemas/{schema}"}
        success["content"] = {"application/json": {"schema": ref}}
    responses = {ok: success}
    for code in ("403", "429", *codes):
        responses[code] = {**_error(reasons[code]), "headers": _RATE_HEADERS}
    return responses


def _body(schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


def _service_paths() -> dict[str, Any]:
    item_id = {
        "name": "integration_service_id",
        "in": "path",
        "required": True,
        "description": "The UUID of the service.",
        "schema": {"type": "string"},
    }
    common = {"tags": ["Opsgenie Integration"], "security": _ADMIN_SECURITY}
    return {
        _SERVICES: {
            "get": {
                **common,
                "summary": "Get all service objects",
                "responses": _admin_responses("200", "OpsgenieServicesResponse"),
            },
            "post": {
                **common,
                "summary": "Create a new service object",
                "requestBody": _body("OpsgenieServiceCreateRequest"),
                "responses": _admin_responses("201", "OpsgenieServiceResponse", "400", "409"),
            },
        },
        _SERVICES + "/{integration_service_id}": {
            "parameters": [item_id],
            "get": {
                **common,
                "summary": "Get a single service object",
                "responses": _admin_responses("200", "OpsgenieServiceResponse", "404"),
            },
            "patch": {
                **common,
                "summary": "Update a single service object",
                "description": (
                    "Only the attributes sent change. Setting region to us or eu without"
                    " custom_url clears the stored custom_url. Changing where requests go"
                    " (region, custom_url) needs opsgenie_api_key in the same request."
                ),
                "requestBody": _body("OpsgenieServiceUpdateRequest"),
                "responses": _admin_responses(
                    "200", "OpsgenieServiceResponse", "400", "404", "409"
                ),
            },
            "delete": {
                **common,
                "summary": "Delete a single service object",
                "responses": _admin_responses("204", None, "404"),
            },
        },
    }


def _rate_limited(paths: dict[str, Any]) -> dict[str, Any]:
    """``paths`` behind the admin rate limit: a 429, and the window's headers on every
    answer (the limiter is the services API's, one window per API key)."""
    for item in paths.values():
        for name, operation in item.items():
            if name == "parameters":
                continue
            responses = operation["responses"]
            responses["429"] = _error("Too many requests for this API key")
            for answer in responses.values():
                answer["headers"] = _RATE_HEADERS
    return paths


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
            "/webhooks/opsgenie/{service}": {
                "parameters": [
                    {
                        "name": "service",
                        "in": "path",
                        "required": True,
                        "description": "Service object id or name (case-insensitive)",
                        "schema": {"type": "string"},
                    }
                ],
                "post": {
                    **webhook,
                    "summary": "Receive one Opsgenie alert action for a service object's account",
                    "responses": {
                        **webhook["responses"],  # type: ignore[dict-item]
                        "404": _error("No service object with that id or name"),
                    },
                },
            },
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
            **_service_paths(),
            **_rate_limited(deliveries_api.openapi_paths()),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "DD-API-KEY"},
                "appKeyAuth": {"type": "apiKey", "in": "header", "name": "DD-APPLICATION-KEY"},
            },
            "schemas": {
                "Errors": _ERRORS,
                **_SERVICE_SCHEMAS,
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "outcome": {
                            "type": "string",
                            "enum": ["accepted", "duplicate", "ignored"],
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
