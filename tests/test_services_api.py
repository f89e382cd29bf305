"""The Datadog-shaped service-object API over raw HTTP: every rule, status and header."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.admin_route import RateLimiter
from service.app import handles
from service.auth import AdminKeys
from service.http_errors import EXCEPTION_HANDLERS
from service.metrics import Metrics
from service.services_api import ServicesAPI

PATH = "/api/v2/integration/opsgenie/services"
API_KEY = "dd-api-key-0123456789"
APP_KEY = "dd-app-key-0123456789"
READ_KEY = "dd-read-key-0123456789"
OPSGENIE_KEY = "og-secret-7f3e9a1c-0000-4000-8000-c0ffee000001"
FULL = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
READ = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": READ_KEY}
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def body(**attributes: Any) -> dict[str, Any]:
    return {"data": {"type": "opsgenie-service", "attributes": attributes}}


def create_body(name: str = "Primary", **extra: Any) -> dict[str, Any]:
    return body(name=name, region="us", opsgenie_api_key=OPSGENIE_KEY, **extra)


def patch_body(service_id: str, **attributes: Any) -> dict[str, Any]:
    return {"data": {"type": "opsgenie-service", "id": service_id, "attributes": attributes}}


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(
        deliver=False,
        api_key=Secret(API_KEY),
        app_key=Secret(APP_KEY),
        readonly_app_key=Secret(READ_KEY),
        admin_rate_limit=100_000,
    )


def create(client: TestClient, name: str = "Primary", **extra: Any) -> dict[str, Any]:
    response = client.post(PATH, json=create_body(name, **extra), headers=FULL)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def assert_error(response: Any, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert isinstance(errors, list)
    assert errors
    assert all(isinstance(e, str) for e in errors)
    for fragment in fragments:
        assert fragment in errors[0]
    assert OPSGENIE_KEY not in response.text
    assert response.headers["X-RateLimit-Limit"].isdigit()  # on refusals too


def test_create_get_list_update_delete(client: TestClient) -> None:
    created = create(client)
    assert created["type"] == "opsgenie-service"
    assert uuid.UUID(created["id"]).version == 4
    assert created["attributes"] == {"name": "Primary", "region": "us", "custom_url": None}

    got = client.get(f"{PATH}/{created['id']}", headers=READ)
    assert got.status_code == 200
    assert got.json() == {"data": created}
    listed = client.get(PATH, headers=READ)
    assert listed.status_code == 200
    assert listed.json() == {"data": [created]}

    patched = client.patch(
        f"{PATH}/{created['id']}",
        json=patch_body(
            created["id"],
            region="custom",
            custom_url="https://og.example.com",
            opsgenie_api_key=OPSGENIE_KEY,
        ),
        headers=FULL,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["attributes"] == {
        "name": "Primary",
        "region": "custom",
        "custom_url": "https://og.example.com",
    }
    back = client.patch(
        f"{PATH}/{created['id']}",
        json=patch_body(created["id"], region="eu", custom_url=None, opsgenie_api_key=OPSGENIE_KEY),
        headers=FULL,
    )
    assert back.json()["data"]["attributes"]["custom_url"] is None

    deleted = client.delete(f"{PATH}/{created['id']}", headers=FULL)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"{PATH}/{created['id']}", headers=FULL).status_code == 404
    assert client.delete(f"{PATH}/{created['id']}", headers=FULL).status_code == 404


def test_seed_example_body_is_accepted_unchanged(client: TestClient) -> None:
    service_id = create(client, "fake-opsgenie-service-name")["id"]
    seed = {
        "data": {
            "attributes": {
                "custom_url": "https://example.com",
                "name": "fake-opsgenie-service-name",
                "opsgenie_api_key": "00000000-0000-0000-0000-000000000000",
                "region": "us",
            },
            "id": service_id,
            "type": "opsgenie-service",
        }
    }
    response = client.patch(f"{PATH}/{service_id}", json=seed, headers=FULL)
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "type": "opsgenie-service",
            "id": service_id,
            "attributes": {
                "name": "fake-opsgenie-service-name",
                "region": "us",
                "custom_url": "https://example.com",
            },
        }
    }
    assert "00000000-0000-0000-0000-000000000000" not in response.text


def test_patch_changes_only_present_attributes(client: TestClient) -> None:
    service_id = create(client, region_note="ignored")["id"]
    response = client.patch(
        f"{PATH}/{service_id}", json=patch_body(service_id, name="Renamed"), headers=FULL
    )
    assert response.json()["data"]["attributes"] == {
        "name": "Renamed",
        "region": "us",
        "custom_url": None,
    }
    assert "region_note" not in client.get(f"{PATH}/{service_id}", headers=FULL).text


@pytest.mark.parametrize(
    ("headers", "method"),
    [
        ({}, "GET"),
        ({"DD-API-KEY": API_KEY}, "GET"),
        ({"DD-APPLICATION-KEY": APP_KEY}, "GET"),
        ({"DD-API-KEY": "wrong", "DD-APPLICATION-KEY": APP_KEY}, "GET"),
        ({"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": "wrong"}, "POST"),
        (READ, "POST"),
    ],
)
def test_forbidden(client: TestClient, headers: dict[str, str], method: str) -> None:
    response = client.request(method, PATH, json=create_body(), headers=headers)
    assert_error(response, 403, "Forbidden")
    assert client.get(PATH, headers=FULL).json() == {"data": []}


def test_readonly_key_cannot_patch_or_delete(client: TestClient) -> None:
    service_id = create(client)["id"]
    url = f"{PATH}/{service_id}"
    assert_error(client.patch(url, json=patch_body(service_id, name="x"), headers=READ), 403)
    assert_error(client.delete(url, headers=READ), 403)
    assert client.get(url, headers=READ).json()["data"]["attributes"]["name"] == "Primary"


def test_no_admin_keys_configured_refuses_all(make_client: Callable[..., TestClient]) -> None:
    client = make_client(deliver=False)
    assert_error(client.get(PATH, headers=FULL), 403, "Forbidden")


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b'"text"', "body"),
        (b"{}", "data"),
        (b'{"data": []}', "data"),
        (b'{"data": {"attributes": {}}}', "data.type"),
        (b'{"data": {"type": "opsgenie", "attributes": {}}}', "data.type"),
        (b'{"data": {"type": "opsgenie-service"}}', "data.attributes"),
        (b'{"data": {"type": "opsgenie-service", "attributes": []}}', "data.attributes"),
        (b"\xff\xfe", "body"),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
    ],
)
def test_malformed_documents(client: TestClient, content: bytes, field: str) -> None:
    response = client.post(PATH, content=content, headers=FULL)
    assert_error(response, 400, field)


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"region": "us", "opsgenie_api_key": "k"}, "name"),
        ({"name": "a", "opsgenie_api_key": "k"}, "region"),
        ({"name": "a", "region": "us"}, "opsgenie_api_key"),
        ({"name": 5, "region": "us", "opsgenie_api_key": "k"}, "name"),
        ({"name": "", "region": "us", "opsgenie_api_key": "k"}, "name"),
        ({"name": "   ", "region": "us", "opsgenie_api_key": "k"}, "name"),
        ({"name": "x" * 101, "region": "us", "opsgenie_api_key": "k"}, "name"),
        ({"name": "a\nb", "region": "us", "opsgenie_api_key": "k"}, "name"),
        ({"name": "a", "region": "apac", "opsgenie_api_key": "k"}, "region"),
        ({"name": "a", "region": None, "opsgenie_api_key": "k"}, "region"),
        ({"name": "a", "region": ["us"], "opsgenie_api_key": "k"}, "region"),
        ({"name": "a", "region": "custom", "opsgenie_api_key": "k"}, "custom_url"),
        (
            {"name": "a", "region": "custom", "custom_url": None, "opsgenie_api_key": "k"},
            "custom_url",
        ),
        (
            {"name": "a", "region": "custom", "custom_url": "http://x.io", "opsgenie_api_key": "k"},
            "custom_url",
        ),
        (
            {"name": "a", "region": "custom", "custom_url": "not a url", "opsgenie_api_key": "k"},
            "custom_url",
        ),
        (
            {
                "name": "a",
                "region": "custom",
                "custom_url": "https://[::1",
                "opsgenie_api_key": "k",
            },
            "custom_url",
        ),
        ({"name": "a", "region": "us", "custom_url": 3, "opsgenie_api_key": "k"}, "custom_url"),
        ({"name": "a", "region": "us", "opsgenie_api_key": ""}, "opsgenie_api_key"),
        ({"name": "a", "region": "us", "opsgenie_api_key": 12}, "opsgenie_api_key"),
        ({"name": "a", "region": "us", "opsgenie_api_key": None}, "opsgenie_api_key"),
        # A lone surrogate escape is no Unicode text: the body is refused as not JSON.
        ({"name": "\ud800", "region": "us", "opsgenie_api_key": "k"}, "body"),
    ],
)
def test_invalid_attributes_name_the_field(
    client: TestClient, attributes: dict[str, Any], field: str
) -> None:
    content = json.dumps(body(**attributes)).encode()
    assert_error(client.post(PATH, content=content, headers=FULL), 400, field)
    assert client.get(PATH, headers=FULL).json() == {"data": []}


def test_name_of_100_characters_is_fine(client: TestClient) -> None:
    assert create(client, "n" * 100)["attributes"]["name"] == "n" * 100


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "opsgenie-service", "attributes": {"name": "b"}}, "data.id"),
        ({"type": "opsgenie-service", "id": str(uuid.uuid4()), "attributes": {}}, "data.id"),
        ({"type": "opsgenie-service", "id": 7, "attributes": {}}, "data.id"),
        ({"type": "opsgenie-service", "id": "SELF", "attributes": {"name": None}}, "name"),
        (
            {"type": "opsgenie-service", "id": "SELF", "attributes": {"custom_url": "ftp://a"}},
            "url",
        ),
        (
            {"type": "opsgenie-service", "id": "SELF", "attributes": {"opsgenie_api_key": None}},
            "opsgenie_api_key",
        ),
        ({"type": "other", "id": "SELF", "attributes": {}}, "data.type"),
    ],
)
def test_invalid_patches(client: TestClient, data: dict[str, Any], field: str) -> None:
    service_id = create(client)["id"]
    if data.get("id") == "SELF":
        data["id"] = service_id
    response = client.patch(f"{PATH}/{service_id}", json={"data": data}, headers=FULL)
    assert_error(response, 400, field)


def test_patch_to_custom_needs_a_url_stored_or_given(client: TestClient) -> None:
    service_id = create(client)["id"]
    url = f"{PATH}/{service_id}"
    assert_error(
        client.patch(url, json=patch_body(service_id, region="custom"), headers=FULL),
        400,
        "custom_url",
    )
    ok = client.patch(
        url, json=patch_body(service_id, custom_url="https://api.og.example"), headers=FULL
    )
    assert ok.status_code == 200
    to_custom = patch_body(service_id, region="custom", opsgenie_api_key=OPSGENIE_KEY)
    assert client.patch(url, json=to_custom, headers=FULL).is_success
    assert_error(
        client.patch(url, json=patch_body(service_id, custom_url=None), headers=FULL),
        400,
        "custom_url",
    )


def create_custom(client: TestClient) -> str:
    custom = body(
        name="Primary",
        region="custom",
        custom_url="https://og.example.com",
        opsgenie_api_key=OPSGENIE_KEY,
    )
    response = client.post(PATH, json=custom, headers=FULL)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


@pytest.mark.parametrize("region", ["us", "eu"])
def test_leaving_the_custom_region_without_a_url_clears_it(client: TestClient, region: str) -> None:
    service_id = create_custom(client)
    url = f"{PATH}/{service_id}"
    moved = client.patch(
        url, json=patch_body(service_id, region=region, opsgenie_api_key=OPSGENIE_KEY), headers=FULL
    )
    assert moved.status_code == 200, moved.text
    expected = {"name": "Primary", "region": region, "custom_url": None}
    assert moved.json()["data"]["attributes"] == expected
    assert client.get(url, headers=FULL).json()["data"]["attributes"] == expected


def test_a_region_sent_with_a_url_stores_both_and_other_patches_keep_it(
    client: TestClient,
) -> None:
    service_id = create_custom(client)
    url = f"{PATH}/{service_id}"
    sent = patch_body(
        service_id, region="us", custom_url="https://example.com", opsgenie_api_key=OPSGENIE_KEY
    )
    assert client.patch(url, json=sent, headers=FULL).status_code == 200
    renamed = client.patch(url, json=patch_body(service_id, name="Renamed"), headers=FULL)
    assert renamed.json()["data"]["attributes"] == {
        "name": "Renamed",
        "region": "us",
        "custom_url": "https://example.com",
    }


def test_patch_id_may_differ_in_case_only(client: TestClient) -> None:
    service_id = create(client)["id"]
    response = client.patch(
        f"{PATH}/{service_id}", json=patch_body(service_id.upper(), name="Up"), headers=FULL
    )
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("service_id", [str(uuid.uuid4()), "not-a-uuid", "not%20a%20uuid", "1"])
def test_unknown_or_malformed_id_is_404(client: TestClient, method: str, service_id: str) -> None:
    response = client.request(
        method, f"{PATH}/{service_id}", json=patch_body(service_id, name="x"), headers=FULL
    )
    assert_error(response, 404)


def test_duplicate_names_conflict_case_insensitively(client: TestClient) -> None:
    create(client, "Primary")
    assert_error(client.post(PATH, json=create_body("PRIMARY"), headers=FULL), 409, "PRIMARY")
    other = create(client, "Secondary")["id"]
    renamed = client.patch(f"{PATH}/{other}", json=patch_body(other, name="primary"), headers=FULL)
    assert_error(renamed, 409)
    same = client.patch(f"{PATH}/{other}", json=patch_body(other, name="SECONDARY"), headers=FULL)
    assert same.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "route", "allow"),
    [
        ("PUT", PATH, "services", "GET, HEAD, POST"),
        ("DELETE", PATH, "services", "GET, HEAD, POST"),
        ("POST", f"{PATH}/{UNKNOWN_ID}", "service", "GET, HEAD, PATCH, DELETE"),
    ],
)
def test_unsupported_method_is_405_json_and_counted(
    client: TestClient, method: str, path: str, route: str, allow: str
) -> None:
    response = client.request(method, path, json={}, headers=FULL)
    assert response.status_code == 405
    assert response.json() == {"errors": ["Method Not Allowed"]}
    assert response.headers["Allow"] == allow
    registry = handles(client.app).metrics.registry
    counted = registry.get_sample_value(
        "relay_admin_requests_total", {"route": route, "status": "405"}
    )
    assert counted == 1.0


def test_head_reads_like_get(client: TestClient) -> None:
    created = create(client)
    assert client.head(PATH, headers=FULL).status_code == 200
    assert client.head(f"{PATH}/{created['id']}", headers=READ).status_code == 200
    assert client.head(f"{PATH}/{UNKNOWN_ID}", headers=READ).status_code == 404


def test_rate_limit_headers_and_429(make_client: Callable[..., TestClient]) -> None:
    client = make_client(
        deliver=False,
        api_key=Secret(API_KEY),
        app_key=Secret(APP_KEY),
        admin_rate_limit=3,
    )
    seen = [client.get(PATH, headers=FULL) for _ in range(3)]
    assert [r.status_code for r in seen] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
    for response in seen:
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Period"] == "60"
        assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 60
    limited = client.post(PATH, json=create_body(), headers=FULL)
    assert_error(limited, 429)
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    # A wrong key counts in the window callers without the right keys share, not the admin's.
    other = client.get(PATH, headers={"DD-API-KEY": "other", "DD-APPLICATION-KEY": APP_KEY})
    assert_error(other, 403)
    assert other.headers["X-RateLimit-Remaining"] == "2"


def test_wrong_keys_share_one_window_and_leave_the_admin_its_own(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        deliver=False, api_key=Secret(API_KEY), app_key=Secret(APP_KEY), admin_rate_limit=3
    )
    guesses = [
        client.get(PATH, headers={"DD-API-KEY": f"guess-{n}", "DD-APPLICATION-KEY": APP_KEY})
        for n in range(5)
    ]
    assert [r.status_code for r in guesses] == [403, 403, 403, 429, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in guesses] == ["2", "1", "0", "0", "0"]
    admin = client.get(PATH, headers=FULL)
    assert admin.status_code == 200
    assert admin.headers["X-RateLimit-Remaining"] == "2"


def test_the_limiter_keeps_two_windows_whatever_keys_arrive(client: TestClient) -> None:
    limiter = RateLimiter(5, 60, clock=lambda: 1_000.0)
    api = ServicesAPI(
        objects=handles(client.app).store,
        forget=lambda service_id: None,
        requests=Metrics().admin,
        keys=AdminKeys(
            api_key=Secret(API_KEY), app_key=Secret(APP_KEY), readonly_app_key=Secret(READ_KEY)
        ),
        max_body_bytes=2048,
        rate_limit=5,
        limiter=limiter,
    )
    edge_app = Starlette(routes=api.routes(), exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(edge_app) as edge:
        for n in range(1_000):
            junk = {"DD-API-KEY": f"junk-{n}", "DD-APPLICATION-KEY": f"junk-{n}"}
            assert edge.get(PATH, headers=junk).status_code in (403, 429)
        admin = edge.get(f"{PATH}/not-a-uuid", headers=FULL)  # 404 before the store
    assert admin.status_code == 404
    assert admin.headers["X-RateLimit-Remaining"] == "4"
    assert len(limiter) == 2


def test_the_limiter_starts_every_window_afresh_when_the_period_turns() -> None:
    now = [119.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    assert [limiter.hit("a").remaining for _ in range(3)] == [1, 0, -1]
    assert limiter.hit("b").reset == 1
    now[0] = 120.0
    assert limiter.hit("a").remaining == 1
    assert len(limiter) == 1


def test_admin_metrics_count_route_and_status(client: TestClient) -> None:
    create(client)
    client.get(PATH, headers={})
    client.get(f"{PATH}/nope", headers=FULL)
    text = client.get("/metrics").text
    assert 'relay_admin_requests_total{route="services",status="201"} 1.0' in text
    assert 'relay_admin_requests_total{route="services",status="403"} 1.0' in text
    assert 'relay_admin_requests_total{route="service",status="404"} 1.0' in text
    assert 'relay_admin_requests_total{route="service",status="409"} 0.0' in text


def test_changes_are_logged_without_the_key(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    service_id = create(client)["id"]
    client.patch(f"{PATH}/{service_id}", json=patch_body(service_id, name="B"), headers=FULL)
    client.delete(f"{PATH}/{service_id}", headers=FULL)
    changes = [r for r in caplog.records if r.name == "service.services_api"]
    assert [r.getMessage() for r in changes] == [
        "service object created",
        "service object updated",
        "service object deleted",
    ]
    for record in changes:
        assert record.__dict__["service_id"] == service_id
        assert record.__dict__["actor"] == "admin"
        assert len(record.__dict__["key"]) == 8
        assert record.__dict__["key"] not in APP_KEY
    assert OPSGENIE_KEY not in caplog.text
    assert APP_KEY not in caplog.text


def test_openapi_documents_the_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert set(document["paths"][PATH]) == {"get", "post"}
    item = document["paths"][PATH + "/{integration_service_id}"]
    assert set(item) == {"parameters", "get", "patch", "delete"}
    schemas = document["components"]["schemas"]
    assert "opsgenie_api_key" not in json.dumps(schemas["OpsgenieServiceResponse"])
    assert "opsgenie_api_key" not in json.dumps(schemas["OpsgenieServiceResponseData"])


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_attribute_values = {
    "name": st.text(max_size=120) | _json,
    "region": st.sampled_from(["us", "eu", "custom", "US", ""]) | _json,
    "custom_url": st.sampled_from(["https://og.example", "http://x", "https://", None]) | _json,
    "opsgenie_api_key": st.just(OPSGENIE_KEY) | _json,
}
_attributes = st.fixed_dictionaries({}, optional=_attribute_values) | _json
_documents = (
    st.fixed_dictionaries(
        {},
        optional={
            "data": st.fixed_dictionaries(
                {},
                optional={
                    "type": st.just("opsgenie-service") | _json,
                    "id": st.just("SELF") | _json,
                    "attributes": _attributes,
                },
            )
            | _json
        },
    )
    | _json
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_documents, patch=st.booleans())
def test_fuzz_bodies_never_500_nor_echo_the_key(
    client: TestClient, document: Any, patch: bool
) -> None:
    if patch:
        service_id = create(client, f"fuzz-{uuid.uuid4()}")["id"]
        data = document.get("data") if isinstance(document, dict) else None
        if isinstance(data, dict) and data.get("id") == "SELF":
            data["id"] = service_id
        response = client.patch(f"{PATH}/{service_id}", content=json.dumps(document), headers=FULL)
    else:
        response = client.post(PATH, content=json.dumps(document), headers=FULL)
    assert response.status_code < 500, response.text
    assert OPSGENIE_KEY not in response.text
    if response.status_code >= 400:
        errors = response.json()["errors"]
        assert errors
        assert all(isinstance(e, str) for e in errors)


def test_head_works_like_get(client: TestClient) -> None:
    service_id = create(client)["id"]
    assert client.head(f"{PATH}/{service_id}", headers=READ).status_code == 200
    assert client.head(PATH, headers=READ).status_code == 200


def test_store_finds_objects_by_id_or_name_with_the_decrypted_key(client: TestClient) -> None:
    created = create(client, "Team Öl", custom_url="https://og.example.com")
    store = handles(client.app).store
    assert client.portal is not None
    by_id = client.portal.call(store.get_service_object, created["id"])
    assert by_id is not None
    assert by_id.name == "Team Öl"
    assert by_id.region == "us"
    assert by_id.custom_url == "https://og.example.com"
    assert isinstance(by_id.api_key, Secret)
    assert str(by_id.api_key) == OPSGENIE_KEY
    assert OPSGENIE_KEY not in repr(by_id)
    for query in (created["id"], created["id"].upper(), "team öl", "TEAM ÖL"):
        found = client.portal.call(store.find_service_object, query)
        assert found is not None, query
        assert (found.id, found.name, str(found.api_key)) == (by_id.id, by_id.name, OPSGENIE_KEY)
    assert client.portal.call(store.find_service_object, "nobody") is None
    unknown = str(uuid.uuid4())
    assert client.portal.call(store.get_service_object, unknown) is None


def custom_body(url: str, name: str = "Primary") -> dict[str, Any]:
    return body(name=name, region="custom", custom_url=url, opsgenie_api_key=OPSGENIE_KEY)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1", "loopback"),
        ("https://localhost:8443", "loopback"),
        ("https://[::1]/og", "loopback"),
        ("https://10.0.0.5", "private"),
        ("https://169.254.169.254", "metadata"),
        ("https://[fe80::1]", "link-local"),
        ("https://metadata.google.internal", "metadata"),
        ("https://[::ffff:169.254.169.254]", "metadata"),
        ("https://2130706433", "four decimal numbers"),
        ("https://0x7f000001", "four decimal numbers"),
        ("https://0177.0.0.1", "four decimal numbers"),
        ("https://127.1", "four decimal numbers"),
        ("https://ops:hunter2@og.example.com", "userinfo"),
        ("https://og.example.com/v2?x=1", "query"),
        ("https://og.example.com?", "query"),
        ("https://og.example.com/#top", "fragment"),
    ],
)
def test_custom_urls_that_point_a_key_elsewhere_are_refused_and_nothing_is_stored(
    client: TestClient, url: str, why: str
) -> None:
    response = client.post(PATH, json=custom_body(url), headers=FULL)
    assert_error(response, 400, "data.attributes.custom_url", why)
    assert "hunter2" not in response.text
    assert client.get(PATH, headers=FULL).json() == {"data": []}


def test_a_patch_cannot_point_a_custom_url_at_a_forbidden_place(client: TestClient) -> None:
    service_id = create_custom(client)
    url = f"{PATH}/{service_id}"
    for bad in ("https://127.0.0.1", "https://169.254.169.254", "https://u:p@og.example.com"):
        sent = patch_body(service_id, custom_url=bad, opsgenie_api_key=OPSGENIE_KEY)
        assert_error(client.patch(url, json=sent, headers=FULL), 400, "custom_url")
    stored = client.get(url, headers=FULL).json()["data"]["attributes"]
    assert stored["custom_url"] == "https://og.example.com"


def test_private_upstreams_pass_only_when_the_setting_allows_them(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        deliver=False,
        api_key=Secret(API_KEY),
        app_key=Secret(APP_KEY),
        admin_rate_limit=100_000,
        allow_private_upstreams=True,
    )
    for n, url in enumerate(("https://10.1.2.3:8443/og", "https://localhost", "https://[fd00::5]")):
        created = client.post(PATH, json=custom_body(url, f"proxy-{n}"), headers=FULL)
        assert created.status_code == 201, created.text
        assert created.json()["data"]["attributes"]["custom_url"] == url
    # Metadata and link-local stay refused whatever the setting.
    for url in ("https://169.254.169.254", "https://[fe80::1]", "https://100.100.100.200"):
        refused = client.post(PATH, json=custom_body(url, "metadata"), headers=FULL)
        assert_error(refused, 400, "custom_url", "never allowed")
    assert len(client.get(PATH, headers=FULL).json()["data"]) == 3


@pytest.mark.parametrize(
    "attributes",
    [
        {"region": "us"},
        {"region": "eu", "name": "Renamed"},
        {"custom_url": "https://elsewhere.example.com"},
        {"custom_url": "https://og.example.com/other-backend"},
        {"custom_url": "https://og.example.com:8443"},
        {"region": "custom", "custom_url": "https://elsewhere.example.com"},
    ],
)
def test_moving_a_stored_key_to_a_new_destination_needs_the_key_again(
    client: TestClient, attributes: dict[str, Any]
) -> None:
    service_id = create_custom(client)
    url = f"{PATH}/{service_id}"
    before = client.get(url, headers=FULL).json()
    refused = client.patch(url, json=patch_body(service_id, **attributes), headers=FULL)
    assert_error(refused, 400, "data.attributes.opsgenie_api_key", "required")
    assert client.get(url, headers=FULL).json() == before  # nothing changed, the name neither
    with_key = patch_body(service_id, **attributes, opsgenie_api_key=OPSGENIE_KEY)
    moved = client.patch(url, json=with_key, headers=FULL)
    assert moved.status_code == 200, moved.text


@pytest.mark.parametrize(
    "attributes",
    [
        {"region": "custom", "custom_url": "https://og.example.com", "name": "Renamed"},
        {"custom_url": "https://OG.Example.com:443/"},
        {"region": "custom"},
        {"name": "Renamed"},
    ],
)
def test_resending_the_same_destination_needs_no_key(
    client: TestClient, attributes: dict[str, Any]
) -> None:
    """Terraform and Datadog's client send unchanged values along with each edit."""
    service_id = create_custom(client)
    sent = client.patch(
        f"{PATH}/{service_id}", json=patch_body(service_id, **attributes), headers=FULL
    )
    assert sent.status_code == 200, sent.text


def test_a_url_on_a_fixed_region_is_no_destination(client: TestClient) -> None:
    """``custom_url`` means something only for ``custom``: storing one on ``us`` moves
    no key, but the move to ``custom`` that would use it does."""
    service_id = create(client)["id"]
    url = f"{PATH}/{service_id}"
    stored = patch_body(service_id, custom_url="https://og.example.com")
    assert client.patch(url, json=stored, headers=FULL).status_code == 200
    assert_error(
        client.patch(url, json=patch_body(service_id, region="custom"), headers=FULL),
        400,
        "opsgenie_api_key",
    )
    assert client.get(url, headers=FULL).json()["data"]["attributes"]["region"] == "us"


@pytest.mark.parametrize(
    "key", ["clé-ünïcode-0000", "genie\u00a0key", "genie key", "genie\tkey", "\u200bgenie"]
)
def test_keys_that_cannot_travel_in_a_header_are_refused_at_create_and_patch(
    client: TestClient, key: str
) -> None:
    created = client.post(
        PATH, json=body(name="a", region="us", opsgenie_api_key=key), headers=FULL
    )
    assert_error(created, 400, "data.attributes.opsgenie_api_key")
    assert key not in created.text
    assert client.get(PATH, headers=FULL).json() == {"data": []}
    service_id = create(client)["id"]
    patched = client.patch(
        f"{PATH}/{service_id}", json=patch_body(service_id, opsgenie_api_key=key), headers=FULL
    )
    assert_error(patched, 400, "data.attributes.opsgenie_api_key")
    assert key not in patched.text


def test_a_pasted_key_loses_its_surrounding_spaces(client: TestClient) -> None:
    response = client.post(
        PATH, json=body(name="a", region="us", opsgenie_api_key=f"  {OPSGENIE_KEY} "), headers=FULL
    )
    assert response.status_code == 201, response.text


def test_names_that_differ_only_in_unicode_form_conflict(client: TestClient) -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    created = create(client, nfd)
    assert created["attributes"]["name"] == nfc  # stored in one form
    assert_error(client.post(PATH, json=create_body(nfc), headers=FULL), 409)
    assert_error(client.post(PATH, json=create_body("CAFE\u0301"), headers=FULL), 409)
    assert_error(client.post(PATH, json=create_body("\uff43\uff41\uff46\u00e9"), headers=FULL), 409)
    other = create(client, "Secondary")["id"]
    renamed = client.patch(f"{PATH}/{other}", json=patch_body(other, name=nfc), headers=FULL)
    assert_error(renamed, 409)
    names = [o["attributes"]["name"] for o in client.get(PATH, headers=FULL).json()["data"]]
    assert names == [nfc, "Secondary"]


def test_a_decomposed_name_of_100_characters_fits(client: TestClient) -> None:
    """The limit is on the stored (NFC) name: 100 ``é`` sent decomposed are 200 code points."""
    assert create(client, "e\u0301" * 100)["attributes"]["name"] == "\u00e9" * 100


@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u2066", "\u200f", "\u061c"])
def test_names_with_bidirectional_controls_are_refused(client: TestClient, control: str) -> None:
    spoofed = f"payments{control}gnilleb"
    assert_error(
        client.post(PATH, json=create_body(spoofed), headers=FULL),
        400,
        "data.attributes.name",
        "bidirectional",
    )
    service_id = create(client)["id"]
    patched = client.patch(
        f"{PATH}/{service_id}", json=patch_body(service_id, name=spoofed), headers=FULL
    )
    assert_error(patched, 400, "data.attributes.name")
    assert [o["attributes"]["name"] for o in client.get(PATH, headers=FULL).json()["data"]] == [
        "Primary"
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({**create_body(), "meta": {}}, "body: only data is allowed at the top level"),
        (
            {"data": {**create_body()["data"], "id": UNKNOWN_ID}},
            "data: only type, attributes are allowed",
        ),
        (
            {"data": {**create_body()["data"], "relationships": {}}},
            "data: only type, attributes are allowed",
        ),
    ],
)
def test_a_member_datadog_does_not_define_is_refused_not_ignored(
    client: TestClient, document: dict[str, Any], message: str
) -> None:
    """/openapi.json says ``additionalProperties: false`` of the body and ``data``; unknown
    attributes stay ignored (clients send extras there)."""
    assert_error(client.post(PATH, json=document, headers=FULL), 400, message)
    assert client.get(PATH, headers=FULL).json()["data"] == []
    extra = create_body(colour="blue")
    assert client.post(PATH, json=extra, headers=FULL).status_code == 201


def test_an_update_of_an_unknown_id_is_404_whatever_the_body(client: TestClient) -> None:
    unknown = client.patch(f"{PATH}/{UNKNOWN_ID}", json={"data": []}, headers=FULL)
    assert_error(unknown, 404, "Not Found")
    service_id = create(client)["id"]
    members = {"data": {**patch_body(service_id)["data"], "meta": 1}}
    assert_error(
        client.patch(f"{PATH}/{service_id}", json=members, headers=FULL),
        400,
        "data: only type, id, attributes are allowed",
    )


@pytest.mark.parametrize("name", ["\tpayments", "payments\x1f", "payments\n"])
def test_a_control_character_at_either_end_is_refused_not_stripped(
    client: TestClient, name: str
) -> None:
    """The document's pattern refuses them anywhere in the name; so does the relay."""
    assert_error(client.post(PATH, json=create_body(name), headers=FULL), 400, "name")


@pytest.mark.parametrize("url", ["https://\u0084", "https://", "https://:443/path"])
def test_a_custom_url_without_a_host_is_refused_and_nothing_stored(
    client: TestClient, url: str
) -> None:
    """Issue 22: ``"https://\\u0084"`` once got a 201 and was answered back on every read."""
    document = body(name="a", region="custom", custom_url=url, opsgenie_api_key=OPSGENIE_KEY)
    response = client.post(PATH, json=document, headers=FULL)
    assert_error(response, 400, "data.attributes.custom_url")
    assert client.get(PATH, headers=FULL).json() == {"data": []}
