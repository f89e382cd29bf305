"""The admin APIs in ``/openapi.json``: service objects, deliveries and backfill.

Each schema is built from what the routes check with: the attribute names, limits,
enums and character rules are the constants the handlers use, so the document cannot
promise what the relay refuses (``tests/e2e/test_openapi_fuzz.py`` holds them to it).
Where Datadog defines the service-object API, its shapes and codes are kept; where the
relay is stricter (what a name, URL or key may hold), the document says so.
"""

from __future__ import annotations

from typing import Any

from service import characters, services_api
from service.account_keys import MAX_KEY_LENGTH
from service.destinations import MAX_URL_LENGTH
from service.names import MAX_NAME_LENGTH
from service.store import REGIONS

SERVICES = services_api.PATH
SECURITY: list[dict[str, list[str]]] = [{"apiKeyAuth": [], "appKeyAuth": []}]
ERRORS = {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}
RATE_HEADERS = {
    name: {"description": text, "required": True, "schema": {"type": "integer"}}
    for name, text in (
        ("X-RateLimit-Limit", "Requests allowed per period and API key"),
        ("X-RateLimit-Period", "Length of the period in seconds"),
        ("X-RateLimit-Remaining", "Requests left in this period"),
        ("X-RateLimit-Reset", "Seconds until the period ends"),
    )
}

# ---- what the attributes may hold (services_api, names, destinations, account_keys) ----

_REGION = {"type": "string", "enum": list(REGIONS)}
_TYPE = {"type": "string", "enum": [services_api.RESOURCE_TYPE]}
_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME_LENGTH,
    "pattern": characters.NAME,
    "description": "Stored NFC and trimmed; unique regardless of case and Unicode form.",
}
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = "[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
_PATH = "(?:[A-Za-z0-9._~!$&'()*+,;=:/-]|%[0-9A-Fa-f]{2})*"
#: Names of at most three labels under a top-level domain of 2-6 letters, which leaves
#: out ``localhost``, ``*.localhost`` and ``metadata.google.internal`` without lookaround.
#: ``destinations.parse_custom_url`` also takes longer domains and public IP addresses.
_URL_PATTERN = f"^https://(?:{_LABEL}\\.){{1,2}}[A-Za-z]{{2,6}}(?::(?:{_PORT}))?(?:/{_PATH})?$"
_URL = {
    "type": ["string", "null"],
    "maxLength": MAX_URL_LENGTH,
    "pattern": _URL_PATTERN,
    "description": (
        "The API base for region custom: https://host[:port][/path], no userinfo, query"
        " or fragment; a host that names or resolves to a private, loopback or metadata"
        " address is refused (private ones are allowed with"
        " RELAY_ALLOW_PRIVATE_UPSTREAMS=true)."
    ),
}
_KEY = {
    "type": "string",
    "writeOnly": True,
    "pattern": "^ *[!-~]+ *$",
    "maxLength": MAX_KEY_LENGTH,
    "description": "Printable ASCII without spaces (surrounding ones are dropped).",
}
#: ``account_keys``: a JSM site's URL, and the ``<email>:<API token>`` it takes.
_JSM_URL = f"^https://{_LABEL}\\.atlassian\\.net(?::[0-9]+)?/?$"
_JSM_KEY = "^ *[!-9;-?A-~]+@[!-9;-?A-~]+:[!-~]+ *$"


def _jsm_rule(*, key_required: bool) -> dict[str, Any]:
    """A custom_url on a JSM site takes a JSM key (``account_keys.key_kind``)."""
    condition: dict[str, Any] = {
        "required": ["region", "custom_url", *(["opsgenie_api_key"] if not key_required else [])],
        "properties": {
            "region": {"const": "custom"},
            "custom_url": {"type": "string", "pattern": _JSM_URL},
        },
    }
    return {"if": condition, "then": {"properties": {"opsgenie_api_key": {"pattern": _JSM_KEY}}}}


#: ``custom`` needs a URL: given on create; on update, given or already stored.
_CUSTOM_NEEDS_URL = {
    "if": {"required": ["region"], "properties": {"region": {"const": "custom"}}},
    "then": {"required": ["custom_url"], "properties": {"custom_url": {"type": "string"}}},
}
_CUSTOM_URL_NOT_NULL = {
    "if": {
        "required": ["region", "custom_url"],
        "properties": {"region": {"const": "custom"}},
    },
    "then": {"properties": {"custom_url": {"type": "string"}}},
}


def _attributes(*, create: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Other attributes are ignored.",
        **({"required": ["name", "region", "opsgenie_api_key"]} if create else {}),
        "properties": {
            "name": _NAME,
            "region": _REGION,
            "custom_url": _URL,
            "opsgenie_api_key": _KEY,
        },
        "allOf": [
            _CUSTOM_NEEDS_URL if create else _CUSTOM_URL_NOT_NULL,
            _jsm_rule(key_required=create),
        ],
    }


def _request(*, create: bool) -> dict[str, Any]:
    members = services_api.CREATE_MEMBERS if create else services_api.UPDATE_MEMBERS
    properties: dict[str, Any] = {"type": _TYPE, "attributes": _attributes(create=create)}
    if not create:
        properties["id"] = {
            "type": "string",
            "format": "uuid",
            "description": "The id in the path.",
        }
    assert set(properties) == set(members)
    data = {
        "type": "object",
        "required": list(members),
        "properties": properties,
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": data},
        "additionalProperties": False,
    }


_RESPONSE_DATA = {
    "type": "object",
    "required": ["type", "id", "attributes"],
    "properties": {
        "type": _TYPE,
        "id": {"type": "string", "format": "uuid"},
        "attributes": {
            "type": "object",
            "required": ["name", "region", "custom_url"],
            "properties": {
                "name": {"type": "string"},
                "region": _REGION,
                "custom_url": {"type": ["string", "null"], "format": "uri"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

SCHEMAS: dict[str, Any] = {
    "OpsgenieServiceCreateRequest": _request(create=True),
    "OpsgenieServiceUpdateRequest": _request(create=False),
    "OpsgenieServiceResponseData": _RESPONSE_DATA,
    "OpsgenieServiceResponse": {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"$ref": "#/components/schemas/OpsgenieServiceResponseData"}},
        "additionalProperties": False,
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
        "additionalProperties": False,
    },
}

_REASONS = {
    "400": (
        "Malformed body, a member or value the schema does not allow, an id that is not"
        " the path's, a custom_url that is not an allowed https origin, a key that cannot"
        " go into a header, a name with invisible characters; on update also a change of"
        " region or custom_url without opsgenie_api_key, or region custom with no"
        " custom_url given or stored"
    ),
    "403": "Missing or wrong DD-API-KEY / DD-APPLICATION-KEY, or a read-only key on a write",
    "404": "No service object with this id",
    "409": "A service object with this name (case and Unicode form aside) exists",
}


def responses(ok: str, content: dict[str, Any] | None, **codes: str) -> dict[str, Any]:
    """An admin operation's answers: every one, refusals too, carries the rate window."""
    success: dict[str, Any] = {"description": "OK", "headers": RATE_HEADERS}
    if content is not None:
        success["content"] = content
    answers = {ok: success}
    refusals = {"403": _REASONS["403"], **codes, "429": "Too many requests for this API key"}
    for code, text in refusals.items():
        answers[code] = {"description": text, "content": ERRORS, "headers": RATE_HEADERS}
    return answers


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def path_parameter(
    name: str, schema: dict[str, Any], description: str | None = None
) -> dict[str, Any]:
    """A required path parameter: every route's ``{name}`` is described the same way."""
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True}
    if description is not None:
        parameter["description"] = description
    parameter["schema"] = schema
    return parameter


def body(schema: str, example: dict[str, Any]) -> dict[str, Any]:
    content = _json(schema)
    content["application/json"]["example"] = example
    return {"required": True, "content": content}


#: Datadog's own examples ("Update a single service object"), for create and update.
_EXAMPLE_ATTRIBUTES = {
    "name": "fake-opsgenie-service-name",
    "opsgenie_api_key": "00000000-0000-0000-0000-000000000000",
    "region": "us",
}
_EXAMPLE_ID = "596da4af-0563-4097-90ff-07230c3f9db3"


def service_paths() -> dict[str, Any]:
    item = path_parameter("integration_service_id", {"type": "string"}, "The UUID of the service.")
    common = {"tags": ["Opsgenie Integration"], "security": SECURITY}
    reasons = {code: _REASONS[code] for code in ("400", "404", "409")}
    return {
        SERVICES: {
            "get": {
                **common,
                "operationId": "ListOpsgenieServices",
                "summary": "Get all service objects",
                "responses": responses("200", _json("OpsgenieServicesResponse")),
            },
            "post": {
                **common,
                "operationId": "CreateOpsgenieService",
                "summary": "Create a new service object",
                "requestBody": body(
                    "OpsgenieServiceCreateRequest",
                    {"data": {"type": "opsgenie-service", "attributes": _EXAMPLE_ATTRIBUTES}},
                ),
                "responses": responses(
                    "201",
                    _json("OpsgenieServiceResponse"),
                    **{code: _REASONS[code] for code in ("400", "409")},
                ),
            },
        },
        SERVICES + "/{integration_service_id}": {
            "parameters": [item],
            "get": {
                **common,
                "operationId": "GetOpsgenieService",
                "summary": "Get a single service object",
                "responses": responses(
                    "200", _json("OpsgenieServiceResponse"), **{"404": _REASONS["404"]}
                ),
            },
            "patch": {
                **common,
                "operationId": "UpdateOpsgenieService",
                "summary": "Update a single service object",
                "description": (
                    "Only the attributes sent change. Setting region to us or eu without"
                    " custom_url clears the stored custom_url. Changing where requests go"
                    " (region, custom_url) needs opsgenie_api_key in the same request."
                ),
                "requestBody": body(
                    "OpsgenieServiceUpdateRequest",
                    {
                        "data": {
                            "type": "opsgenie-service",
                            "id": _EXAMPLE_ID,
                            "attributes": {**_EXAMPLE_ATTRIBUTES, "region": "eu"},
                        }
                    },
                ),
                "responses": responses("200", _json("OpsgenieServiceResponse"), **reasons),
            },
            "delete": {
                **common,
                "operationId": "DeleteOpsgenieService",
                "summary": "Delete a single service object",
                "responses": responses("204", None, **{"404": _REASONS["404"]}),
            },
        },
    }
