"""``/openapi.json`` is held to the route table it describes, and says what the relay does.

The relay's behaviour against the document is schemathesis' to try
(``tests/e2e/test_openapi_fuzz.py``); here: no drift, links that lead somewhere, and the
rules the document spells out per deployment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from service import openapi
from service.errors import ContractDrift
from service.mapping import Rules


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(deliver=False)


async def endpoint(request: object) -> None:
    raise AssertionError("never called")


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for name, operation in item.items()
        if name != "parameters" and "operationId" in operation
    }


def test_every_route_is_described_and_every_description_routed(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert openapi.routed_paths(client.app.routes) == set(document["paths"])  # type: ignore[attr-defined]
    assert "/api/v1/deliveries/{reference_id}/retry" in document["paths"]
    assert "/webhooks/opsgenie/" not in document["paths"]  # an alias of the path without "/"


def test_a_route_without_a_description_stops_the_app_being_built() -> None:
    routes = [Route("/webhooks/opsgenie", endpoint, methods=["POST"]), Route("/new", endpoint)]
    with pytest.raises(ContractDrift, match="/new"):
        openapi.check(openapi.document(rules=Rules()), routes)


def test_a_description_without_a_route_stops_the_app_being_built() -> None:
    with pytest.raises(ContractDrift, match="described, not routed"):
        openapi.check(openapi.document(rules=Rules()), [])


def test_a_method_the_document_does_not_name_stops_the_app_being_built() -> None:
    described = openapi.document(rules=Rules())
    served = {openapi.PATH, *described["paths"]} - {"/healthz"}
    routes = [Route(path, endpoint, methods=["GET", "POST"]) for path in ["/healthz"]] + [
        Route(path, endpoint, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        for path in served
    ]
    with pytest.raises(ContractDrift, match="/healthz: serves"):
        openapi.check(described, routes)


def test_every_link_leads_to_an_operation_and_names_its_parameters(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    found = operations(document)
    links = [
        link
        for operation in found.values()
        for answer in operation["responses"].values()
        for link in answer.get("links", {}).values()
    ]
    assert len(links) >= 10
    for link in links:
        target = found[link["operationId"]]
        path = next(p for p, item in document["paths"].items() if target in item.values())
        names = {p["name"] for p in document["paths"][path].get("parameters", [])}
        names |= {p["name"] for p in target.get("parameters", [])}
        assert set(link.get("parameters", {})) <= names


def test_a_webhook_links_to_its_delivery_by_the_reference_id_it_answers(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    links = document["paths"]["/webhooks/opsgenie"]["post"]["responses"]["202"]["links"]
    assert links["GetDelivery"]["parameters"] == {"reference_id": "$response.body#/reference_id"}
    accepted = document["components"]["schemas"]["Accepted"]
    assert "reference_id" in accepted["required"]


def checked_actions(document: dict[str, Any]) -> list[str]:
    rule = document["components"]["schemas"]["Webhook"]["allOf"][0]
    return list(rule["if"]["properties"]["action"]["enum"])


def test_a_delete_is_read_in_full_only_where_the_rules_act_on_it() -> None:
    assert "Delete" not in checked_actions(openapi.document(rules=Rules()))
    assert "Delete" in checked_actions(openapi.document(rules=Rules(delete_incidents=True)))
    assert "Fetched" not in checked_actions(openapi.document(rules=Rules(delete_incidents=True)))


def test_the_document_is_served_as_built(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi.document(rules=Rules())
