"""``/openapi.json`` is held to the route table it describes, and says what the relay does.

The relay's behaviour against the document is schemathesis' to try
(``tests/e2e/test_openapi_fuzz.py``); here: no drift, links that lead somewhere, the
rules the document spells out per deployment, and real answers of the deliveries routes
(the backfill's: ``tests/test_backfill.py``) validated against the schemas it gives them,
including the ones a fuzzer seldom reaches (a failed delivery's history, a next page).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema_rs
import pytest
from starlette.datastructures import Secret
from starlette.routing import Route
from starlette.testclient import TestClient

from service import delivery_views, openapi
from service.backfill_api import NDJSON
from service.errors import ContractDrift
from service.mapping import Rules
from service.store import Attempt, Delivery, Status, StoredEvent
from tests.conftest import auth, sample
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for


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


def validate(value: Any, schema: dict[str, Any]) -> None:
    """``value`` is what ``schema`` (a schema in ``/openapi.json``) allows, formats
    (date-time) too; checked as the fuzzer checks, by schemathesis' own validator."""
    document = openapi.document(rules=Rules())
    rooted = {**schema, "components": document["components"]}
    jsonschema_rs.Draft202012Validator(rooted, validate_formats=True).validate(value)


def schema_of(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def conforms(response: httpx.Response, path: str, method: str = "get") -> None:
    """``response`` is what ``/openapi.json`` promises for ``method path`` and its status."""
    answers = openapi.document(rules=Rules())["paths"][path][method]["responses"]
    content = answers[str(response.status_code)]["content"]
    media_type = response.headers["content-type"].split(";")[0]
    if media_type == NDJSON:  # JSON lines: each line is the media type's item schema
        for line in response.text.splitlines():
            validate(json.loads(line), content[media_type]["x-itemSchema"])
    else:
        validate(response.json(), content[media_type]["schema"])


DELIVERIES = "/api/v1/deliveries"
FULL = {"DD-API-KEY": "dd-api-key-0123456789", "DD-APPLICATION-KEY": "dd-app-key-0123456789"}


@pytest.fixture
def admin(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(
        api_key=Secret(FULL["DD-API-KEY"]),
        app_key=Secret(FULL["DD-APPLICATION-KEY"]),
        admin_rate_limit=100_000,  # polled below
    )


def webhook(alert_id: str) -> dict[str, Any]:
    body = sample("Create")
    body["alert"]["alertId"] = alert_id
    return body


def status_of(client: TestClient, reference_id: str) -> str | None:
    shown = client.get(f"{DELIVERIES}/{reference_id}", headers=FULL)
    return str(shown.json()["data"]["status"]) if shown.status_code == 200 else None


def test_the_deliveries_routes_answer_what_their_schemas_say(
    admin: TestClient, fake_dx: FakeDX
) -> None:
    fake_dx.reject("opsgenie-failing")
    for alert_id in ("failing", "fine"):
        assert admin.post("/webhooks/opsgenie", json=webhook(alert_id), headers=auth()).is_success
    wait_for(lambda: status_of(admin, "opsgenie-failing") == "failed", message="failed")
    wait_for(lambda: status_of(admin, "opsgenie-fine") == "delivered", message="delivered")

    page = admin.get(DELIVERIES, params={"limit": 1}, headers=FULL)
    assert page.json()["next"] is not None
    conforms(page, DELIVERIES)
    conforms(
        admin.get(DELIVERIES, params={"cursor": page.json()["next"]}, headers=FULL), DELIVERIES
    )
    conforms(admin.get(DELIVERIES, params={"limit": 0}, headers=FULL), DELIVERIES)

    item = DELIVERIES + "/{reference_id}"
    shown = admin.get(f"{DELIVERIES}/opsgenie-failing", headers=FULL)
    assert shown.json()["data"]["history"]
    assert shown.json()["data"]["alert"]
    conforms(shown, item)
    conforms(admin.get(f"{DELIVERIES}/opsgenie-nobody", headers=FULL), item)
    bad_cursor = admin.get(
        f"{DELIVERIES}/opsgenie-fine", params={"events_cursor": "x"}, headers=FULL
    )
    assert bad_cursor.status_code == 400
    conforms(bad_cursor, item)

    event_id = shown.json()["data"]["events"][0]["id"]
    one = item + "/events/{event_id}"
    conforms(admin.get(f"{DELIVERIES}/opsgenie-failing/events/{event_id}", headers=FULL), one)
    conforms(admin.get(f"{DELIVERIES}/opsgenie-failing/events/0", headers=FULL), one)

    retry = item + "/retry"
    retried = admin.post(f"{DELIVERIES}/opsgenie-failing/retry", headers=FULL)
    assert retried.status_code == 200
    conforms(retried, retry, "post")
    delivered = admin.post(f"{DELIVERIES}/opsgenie-fine/retry", headers=FULL)
    assert delivered.status_code == 409
    conforms(delivered, retry, "post")
    conforms(
        admin.post(f"{DELIVERIES}/retry-failed", headers=FULL), DELIVERIES + "/retry-failed", "post"
    )
    conforms(admin.get(DELIVERIES), DELIVERIES)  # no keys: 403


def stored(last_response: str | None) -> Delivery:
    """A delivery whose events no build could read, so it has no state."""
    return Delivery(
        reference_id="opsgenie-a",
        alert_id="a",
        service_id=None,
        status=Status.PENDING,
        version=1,
        delivered_version=0,
        attempts=0,
        next_attempt_at=None,
        last_error_code=None,
        last_error=None,
        last_request=None,
        last_response=last_response,
        updated_at=1_700_000_000.5,
        state=None,
    )


@pytest.mark.parametrize(
    "raw",
    ['{"action": "Create"}', "not json", "NaN", "\udcff" + "x" * 10_000, '"\\ud800"', "[" * 5000],
)
def test_a_delivery_whatever_was_stored_is_shown_as_its_schema_says(raw: str) -> None:
    delivery = stored("<html>bad gateway</html>")
    event = StoredEvent(id=7, received_at=1_700_000_000.0, action="Create", raw=raw)
    attempt = Attempt(
        at=1_700_000_001.0,
        version=1,
        outcome="error",
        http_status=None,
        error_code=None,
        detail=None,
        duration_seconds=0.0,
    )
    shown = delivery_views.detail(delivery, [attempt], [event])
    validate({"data": {**shown, "events_next": "7"}}, schema_of("DeliveryAnswer"))
    whole = delivery_views.raw_event(event, preview=False)
    validate({"data": whole}, schema_of("RawEventAnswer"))
