"""``GET /openapi.json``: the relay's routes, described for humans, API tooling and fuzzers.

The document is a contract (issue 22), so it is built from the code that serves it and
checked against the app's own route table when the app is built: a route without a
description, or a description without a route, stops ``create_app`` rather than
drifting. The schemas come from the modules that check the requests
(``webhook_schema``, ``openapi_admin``), and ``links`` lead from what creates an id to
what takes it, so a stateful client (schemathesis) reaches past the 404s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service import __version__, deliveries_api, openapi_admin, openapi_deliveries, webhook_schema
from service.errors import ContractDrift
from service.mapping import Rules
from service.openapi_admin import ERRORS, SERVICES

PATH = "/openapi.json"
DELIVERY = deliveries_api.PATH + "/{reference_id}"
SERVICE = SERVICES + "/{integration_service_id}"


#: ``{name:convertor}`` in a route's path is ``{name}`` in the document.
_CONVERTOR = re.compile(r"{(\w+):\w+}")


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": ERRORS}


#: The README's smoke test.
_WEBHOOK_EXAMPLE = {
    "action": "Create",
    "alert": {
        "alertId": "relay-smoke-test",
        "message": "relay smoke test",
        "createdAt": 1767225600000,
        "priority": "P5",
        "tags": [],
    },
}


def _webhook(*, with_service: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": {
            "description": "Stored (or ignored: an action the relay does not act on)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
            "links": _delivery_links(),
        },
        "400": _error("Not JSON, not an object, a member the schema does not allow"),
        "401": _error("Missing or wrong webhook token"),
        "413": _error("Body larger than the limit"),
        "503": _error("Could not store the event; Opsgenie may retry"),
    }
    if with_service:
        responses["404"] = _error("No service object with that id or name")
    return {
        "operationId": "ReceiveServiceWebhook" if with_service else "ReceiveWebhook",
        "summary": "Receive one Opsgenie alert action"
        + (" for a service object's account" if with_service else ""),
        "description": "Answers 202 only after the event is durably stored.",
        "security": [{"bearer": []}, {"basic": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Webhook"},
                    "example": _WEBHOOK_EXAMPLE,
                }
            },
        },
        "responses": responses,
    }


def _delivery_links() -> dict[str, Any]:
    """A stored webhook's ``reference_id`` names its delivery (``translate.reference_id``:
    the rules' prefix and the alert id), which these operations take."""
    reference = {"reference_id": "$response.body#/reference_id"}
    return {
        "GetDelivery": {"operationId": "GetDelivery", "parameters": reference},
        "RetryDelivery": {"operationId": "RetryDelivery", "parameters": reference},
    }


def _service_links() -> dict[str, Any]:
    """A service object's id names it in its own routes; its id or name in a webhook URL."""
    by_id = {"integration_service_id": "$response.body#/data/id"}
    return {
        "GetOpsgenieService": {"operationId": "GetOpsgenieService", "parameters": by_id},
        "UpdateOpsgenieService": {
            "operationId": "UpdateOpsgenieService",
            "parameters": by_id,
            "requestBody": {"data": {"id": "$response.body#/data/id"}},
        },
        "DeleteOpsgenieService": {"operationId": "DeleteOpsgenieService", "parameters": by_id},
        "ServiceWebhookById": {
            "operationId": "ReceiveServiceWebhook",
            "parameters": {"service": "$response.body#/data/id"},
        },
        "ServiceWebhookByName": {
            "operationId": "ReceiveServiceWebhook",
            "parameters": {"service": "$response.body#/data/attributes/name"},
        },
        "Backfill": {
            "operationId": "Backfill",
            "requestBody": {"service": "$response.body#/data/id"},
        },
    }


def _linked(paths: dict[str, Any]) -> dict[str, Any]:
    services = paths[SERVICES]["post"]["responses"]["201"]
    services["links"] = _service_links()
    for method in ("get", "patch"):
        answer = paths[SERVICE][method]["responses"]["200"]
        answer["links"] = {k: v for k, v in _service_links().items() if k.startswith("Service")}
    paths[DELIVERY]["get"]["responses"]["200"]["links"] = {
        "GetDeliveryEvent": {
            "operationId": "GetDeliveryEvent",
            "parameters": {
                "reference_id": "$response.body#/data/reference_id",
                "event_id": "$response.body#/data/events/0/id",
            },
        },
        "RetryDelivery": {
            "operationId": "RetryDelivery",
            "parameters": {"reference_id": "$response.body#/data/reference_id"},
        },
    }
    return paths


def _plain(summary: str, **answers: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {code: {"description": text} for code, text in answers.items()},
        }
    }


def document(*, rules: Rules) -> dict[str, Any]:
    """The document for a relay running ``rules`` (they decide which actions are read)."""
    paths: dict[str, Any] = {
        "/webhooks/opsgenie": {"post": _webhook(with_service=False)},
        "/webhooks/opsgenie/{service}": {
            "parameters": [
                openapi_admin.path_parameter(
                    "service", {"type": "string"}, "Service object id or name (case-insensitive)"
                )
            ],
            "post": _webhook(with_service=True),
        },
        "/healthz": _plain("Process alive", **{"200": "OK"}),
        "/readyz": _plain(
            "Store writable and worker running (not tied to DX)",
            **{"200": "Ready", "503": "Not ready"},
        ),
        "/metrics": _plain("Prometheus metrics", **{"200": "Text format"}),
        PATH: _plain("This document", **{"200": "OpenAPI 3.1"}),
        **openapi_admin.service_paths(),
        **openapi_deliveries.paths(),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "opsgenie-dx-relay", "version": __version__},
        "paths": _linked(paths),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "DD-API-KEY"},
                "appKeyAuth": {"type": "apiKey", "in": "header", "name": "DD-APPLICATION-KEY"},
            },
            "schemas": {
                "Errors": {
                    "type": "object",
                    "required": ["errors"],
                    "properties": {"errors": {"type": "array", "items": {"type": "string"}}},
                },
                **openapi_admin.SCHEMAS,
                **openapi_deliveries.SCHEMAS,
                "Accepted": {
                    "type": "object",
                    "required": ["outcome", "reference_id"],
                    "properties": {
                        "outcome": {
                            "type": "string",
                            "enum": ["accepted", "duplicate", "ignored"],
                        },
                        "reference_id": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "Webhook": webhook_schema.json_schema(delete_incidents=rules.delete_incidents),
            },
        },
    }


def routed_paths(routes: Iterable[BaseRoute]) -> set[str]:
    """The paths the app serves, a trailing-slash alias (``webhooks.PATHS``) as its path."""
    paths = {_CONVERTOR.sub(r"{\1}", route.path) for route in routes if isinstance(route, Route)}
    return {path for path in paths if not (path.endswith("/") and path[:-1] in paths)}


def check(described: dict[str, Any], routes: Iterable[BaseRoute]) -> None:
    """``ContractDrift`` unless every route is described and every description routed, and each
    route with fixed methods (not the admin routes, which refuse others themselves) has
    exactly the methods described."""
    routes = list(routes)
    served, paths = routed_paths(routes), described["paths"]
    if served != set(paths):
        missing = sorted(served - set(paths))
        unrouted = sorted(set(paths) - served)
        raise ContractDrift(
            f"routes not in /openapi.json: {missing}; described, not routed: {unrouted}"
        )
    for route in routes:
        path = _CONVERTOR.sub(r"{\1}", getattr(route, "path", ""))
        if not isinstance(route, Route) or path not in paths or route.methods is None:
            continue
        methods = {m.lower() for m in route.methods} - {"head"}
        if methods <= {"get", "post", "patch", "delete"}:  # the admin routes take all nine
            documented = set(paths[path]) - {"parameters"}
            if methods != documented:
                raise ContractDrift(
                    f"{path}: serves {sorted(methods)}, described {sorted(documented)}"
                )


class OpenAPI:
    """``GET /openapi.json`` beside ``routes``: the document encoded once, after ``check``
    held it to them and to this route."""

    def __init__(self, routes: Iterable[BaseRoute], *, rules: Rules) -> None:
        self.route = Route(PATH, self.endpoint, methods=["GET"])
        described = document(rules=rules)
        check(described, [*routes, self.route])
        self._body = json.dumps(described, separators=(",", ":")).encode()

    async def endpoint(self, request: Request) -> Response:
        return Response(self._body, media_type="application/json")
