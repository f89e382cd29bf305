"""The operators' deliveries API: look at a delivery, page through them, retry failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.app import handles
from tests.conftest import auth, sample
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

URL = "/webhooks/opsgenie"
PATH = "/api/v1/deliveries"
CREATE = sample("Create")
ALERT = CREATE["alert"]["alertId"]
REF = f"opsgenie-{ALERT}"
API_KEY = "dd-api-key-0123456789"
APP_KEY = "dd-app-key-0123456789"
READ_KEY = "dd-read-key-0123456789"
FULL = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
READ = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": READ_KEY}


def create(alert_id: str = ALERT) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(CREATE))
    body["alert"]["alertId"] = alert_id
    return body


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(
        api_key=Secret(API_KEY),
        app_key=Secret(APP_KEY),
        readonly_app_key=Secret(READ_KEY),
        admin_rate_limit=100_000,  # the tests poll; the limit has tests of its own
    )


def status_of(client: TestClient, reference_id: str) -> str:
    return str(client.get(f"{PATH}/{reference_id}", headers=READ).json()["data"]["status"])


def admin_count(client: TestClient, route: str, status: str) -> float:
    registry = handles(client.app).metrics.registry
    labels = {"route": route, "status": status}
    return float(registry.get_sample_value("relay_admin_requests_total", labels) or 0.0)


def test_failed_then_retry_then_delivered(client: TestClient, fake_dx: FakeDX) -> None:
    fake_dx.reject(REF, "invalid_arguments")
    assert client.post(URL, json=CREATE, headers=auth()).status_code == 202
    wait_for(lambda: status_of(client, REF) == "failed", message="delivery failed")

    shown = client.get(f"{PATH}/{REF}", headers=READ).json()["data"]
    assert shown["last_error_code"] == "invalid_arguments"
    assert shown["last_request"]["reference_id"] == REF
    assert shown["last_response"]  # what DX answered, for the operator to read
    assert shown["alert"]["message"] == "asdf"
    assert shown["history"][-1]["outcome"] != "success"
    assert [e["action"] for e in shown["events"]] == ["Create"]
    assert shown["events"][0]["raw"]["alert"]["alertId"] == ALERT
    failed = client.get(PATH, params={"status": "failed"}, headers=READ).json()
    assert [d["reference_id"] for d in failed["data"]] == [REF]

    fake_dx.reset()  # DX accepts it now (the operator fixed the cause)
    retried = client.post(f"{PATH}/{REF}/retry", headers=FULL)
    assert retried.status_code == 200
    # The answer shows the record as read after the retry: the worker, woken by it, may
    # have delivered it already.
    assert retried.json()["data"]["status"] in ("pending", "delivered")
    wait_for(lambda: status_of(client, REF) == "delivered", message="delivered after retry")
    assert fake_dx.incident(REF) is not None
    assert admin_count(client, "delivery_retry", "200") == 1


def test_retry_of_a_delivered_reference_is_409(client: TestClient, fake_dx: FakeDX) -> None:
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: status_of(client, REF) == "delivered", message="delivered")
    response = client.post(f"{PATH}/{REF}/retry", headers=FULL)
    assert response.status_code == 409
    assert "delivered" in response.json()["errors"][0]


def test_retry_all_failed(client: TestClient, fake_dx: FakeDX) -> None:
    refs = [f"opsgenie-alert-{n}" for n in range(3)]
    for n, ref in enumerate(refs):
        fake_dx.reject(ref)
        client.post(URL, json=create(f"alert-{n}"), headers=auth())
    for ref in refs:
        wait_for(lambda ref=ref: status_of(client, ref) == "failed", message=f"{ref} failed")
    fake_dx.reset()
    response = client.post(f"{PATH}/retry-failed", headers=FULL)
    assert response.json() == {"retried": 3}
    for ref in refs:
        wait_for(lambda ref=ref: status_of(client, ref) == "delivered", message=f"{ref} done")


def test_unknown_reference_is_404_naming_it(client: TestClient) -> None:
    """Not a bare "Not Found", which is also what a wrong path gets."""
    shown = client.get(f"{PATH}/opsgenie-nope", headers=READ)
    assert shown.status_code == 404
    assert shown.json() == {"errors": ["no delivery opsgenie-nope"]}
    response = client.post(f"{PATH}/opsgenie-nope/retry", headers=FULL)
    assert response.status_code == 404
    assert response.json() == {"errors": ["no delivery opsgenie-nope"]}
    assert admin_count(client, "delivery", "404") == 1
    assert client.get("/api/api/v1/deliveries", headers=READ).json() == {"errors": ["Not Found"]}


def test_paging_with_an_opaque_cursor(client: TestClient) -> None:
    for n in range(5):
        client.post(URL, json=create(f"alert-{n}"), headers=auth())
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        page = client.get(PATH, params=params, headers=READ).json()
        pages += 1
        seen += [d["reference_id"] for d in page["data"]]
        if page["next"] is None:
            break
        assert "alert" not in page["next"]  # opaque, not the reference id itself
        params = {"limit": 2, "cursor": page["next"]}
    assert seen == [f"opsgenie-alert-{n}" for n in range(5)]
    assert pages == 3


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"status": "lost"}, {"cursor": "***"}],
)
def test_bad_query_is_400(client: TestClient, params: dict[str, str]) -> None:
    response = client.get(PATH, params=params, headers=READ)
    assert response.status_code == 400
    assert response.json()["errors"]


def test_readonly_key_reads_but_cannot_retry(client: TestClient) -> None:
    client.post(URL, json=CREATE, headers=auth())
    assert client.get(PATH, headers=READ).status_code == 200
    assert client.get(f"{PATH}/{REF}", headers=READ).status_code == 200
    assert client.post(f"{PATH}/{REF}/retry", headers=READ).status_code == 403
    assert client.post(f"{PATH}/retry-failed", headers=READ).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"DD-API-KEY": API_KEY},
        {"DD-API-KEY": "wrong", "DD-APPLICATION-KEY": APP_KEY},
        {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": "wrong"},
    ],
)
def test_bad_or_missing_keys_are_403(client: TestClient, headers: dict[str, str]) -> None:
    for response in (
        client.get(PATH, headers=headers),
        client.get(f"{PATH}/{REF}", headers=headers),
        client.post(f"{PATH}/{REF}/retry", headers=headers),
    ):
        assert response.status_code == 403
        assert response.json() == {"errors": ["Forbidden"]}
    assert admin_count(client, "deliveries", "403") == 1


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {PATH, f"{PATH}/{{reference_id}}", f"{PATH}/{{reference_id}}/retry"} <= set(paths)


@pytest.mark.parametrize(
    ("method", "path", "route", "allow"),
    [
        ("POST", PATH, "deliveries", "GET, HEAD"),
        ("DELETE", f"{PATH}/{REF}", "delivery", "GET, HEAD"),
        ("GET", f"{PATH}/{REF}/retry", "delivery_retry", "POST"),
        ("GET", "/api/v1/backfill", "backfill", "POST"),
    ],
)
def test_unsupported_method_is_405_json_and_counted(
    client: TestClient, method: str, path: str, route: str, allow: str
) -> None:
    response = client.request(method, path, headers=FULL)
    assert response.status_code == 405
    assert response.json() == {"errors": ["Method Not Allowed"]}
    assert response.headers["Allow"] == allow
    assert admin_count(client, route, "405") == 1


def test_head_reads_like_get(client: TestClient) -> None:
    assert client.head(PATH, headers=READ).status_code == 200
    assert client.head(f"{PATH}/{REF}", headers=READ).status_code == 404
    assert admin_count(client, "deliveries", "200") == 1


def test_the_detail_stays_bounded_and_each_event_is_reachable_whole(
    make_client: Callable[..., TestClient],
) -> None:
    limit = 64 * 1024
    client = make_client(
        deliver=False,
        api_key=Secret(API_KEY),
        app_key=Secret(APP_KEY),
        readonly_app_key=Secret(READ_KEY),
        max_body_bytes=limit,
        admin_rate_limit=100_000,
    )
    for n in range(200):  # each just under the body limit, each a distinct event
        body = create()
        body["alert"]["description"] = ""
        size = len(json.dumps(body).encode())
        body["alert"]["description"] = f"{n:04d}" + "x" * (limit - size - 4)
        raw = json.dumps(body).encode()
        assert len(raw) == limit
        assert client.post(URL, content=raw, headers=auth()).status_code == 202

    shown = client.get(f"{PATH}/{REF}", headers=READ)
    assert shown.status_code == 200
    assert len(shown.content) < 256 * 1024  # 200 whole events would be 12.8 MB
    page = shown.json()["data"]
    assert len(page["events"]) == 50
    assert all(e["truncated"] and e["raw_bytes"] == limit for e in page["events"])
    seen = [e["id"] for e in page["events"]]
    while page["events_next"]:
        older = client.get(
            f"{PATH}/{REF}", params={"events_cursor": page["events_next"]}, headers=READ
        )
        assert len(older.content) < 256 * 1024
        page = older.json()["data"]
        seen = [e["id"] for e in page["events"]] + seen
    assert len(seen) == len(set(seen)) == 200
    for index, event_id in enumerate(seen):
        whole = client.get(f"{PATH}/{REF}/events/{event_id}", headers=READ)
        assert whole.status_code == 200
        event = whole.json()["data"]
        assert event["raw_format"] == "json"
        assert event["truncated"] is False
        assert event["raw"]["alert"]["description"].startswith(f"{index:04d}x")
        assert len(json.dumps(event["raw"]).encode()) == limit


def test_an_unknown_or_malformed_event_or_cursor(client: TestClient) -> None:
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: client.get(f"{PATH}/{REF}", headers=READ).status_code == 200)
    for event_id in ("999999", "abc", "-1"):
        missing = client.get(f"{PATH}/{REF}/events/{event_id}", headers=READ)
        assert missing.status_code == 404
        assert missing.json() == {"errors": [f"no event {event_id} of delivery {REF}"]}
    unknown_delivery = client.get(f"{PATH}/opsgenie-nope/events/1", headers=READ)
    assert unknown_delivery.json() == {"errors": ["no delivery opsgenie-nope"]}
    bad = client.get(f"{PATH}/{REF}", params={"events_cursor": "!!"}, headers=READ)
    assert bad.status_code == 400
    assert client.get(f"{PATH}/{REF}/events/1", headers={}).status_code == 403


def test_one_rate_limit_window_per_api_key_across_the_admin_apis(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        deliver=False,
        api_key=Secret(API_KEY),
        app_key=Secret(APP_KEY),
        readonly_app_key=Secret(READ_KEY),
        admin_rate_limit=3,
    )
    seen = [client.get(PATH, headers=READ) for _ in range(2)]
    seen.append(client.get("/api/v2/integration/opsgenie/services", headers=FULL))
    assert [r.status_code for r in seen] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
    for response in seen:
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Period"] == "60"
        assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 60
    for path, method in ((PATH, "GET"), (f"{PATH}/{REF}", "GET"), ("/api/v1/backfill", "POST")):
        limited = client.request(method, path, headers=FULL)
        assert limited.status_code == 429
        assert limited.json() == {"errors": ["Too many requests"]}
        assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert admin_count(client, "deliveries", "429") == 1
    assert admin_count(client, "delivery", "429") == 1
    assert admin_count(client, "backfill", "429") == 1
    assert admin_count(client, "deliveries", "200") == 2
    # Callers without the right keys share a window of their own, not the admin's.
    stranger = client.get(PATH, headers={"DD-API-KEY": "wrong", "DD-APPLICATION-KEY": "x"})
    assert stranger.status_code == 403
    assert stranger.headers["X-RateLimit-Remaining"] == "2"


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "-1"},
        {"limit": "0"},
        {"limit": "+5"},
        {"limit": " 5"},
        {"limit": "5_0"},
        {"limit": ""},
        {"limit": "9" * 5000},
        {"status": ""},
        {"cursor": "!!"},
        {"cursor": "A"},
    ],
)
def test_a_query_value_the_document_does_not_allow_is_a_400(
    client: TestClient, query: dict[str, str]
) -> None:
    response = client.get(PATH, params=query, headers=READ)
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith(next(iter(query)))


def test_a_cursor_this_api_never_returned_still_names_a_place_in_the_order(
    client: TestClient,
) -> None:
    """Any unpadded base64url text is a cursor (the document's pattern), also one whose
    bytes are no UTF-8 or hold a NUL: paging goes on from where it would sort."""
    for alert_id in ("a-1", "b-1"):
        client.post(URL, json=create(alert_id), headers=auth())
    for cursor in ("", "AA", "_-_-", "b3BzZ2VuaWUtYS0x"):  # the last: "opsgenie-a-1"
        response = client.get(PATH, params={"cursor": cursor}, headers=READ)
        assert response.status_code == 200, cursor
    after_a = client.get(PATH, params={"cursor": "b3BzZ2VuaWUtYS0x"}, headers=READ).json()
    assert [d["reference_id"] for d in after_a["data"]] == ["opsgenie-b-1"]


def test_an_events_cursor_is_an_event_id(client: TestClient) -> None:
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: client.get(f"{PATH}/{REF}", headers=READ).status_code == 200)
    assert client.get(f"{PATH}/{REF}", params={"events_cursor": "1"}, headers=READ).is_success
    for bad in ("", "MQ", "-1", "1" * 19):
        response = client.get(f"{PATH}/{REF}", params={"events_cursor": bad}, headers=READ)
        assert response.status_code == 400, bad


def test_an_alert_id_with_a_slash_is_reachable_at_its_reference(client: TestClient) -> None:
    """The server decodes %2F before routing: the id spans path segments. (One that ends
    in ``/retry`` or ``/events/<n>`` is read as that route's: not an Opsgenie id.)"""
    answer = client.post(URL, json=create("team/a-1/"), headers=auth()).json()
    reference = answer["reference_id"]
    assert reference == "opsgenie-team/a-1/"
    quoted = reference.replace("/", "%2F")
    shown = wait_for(lambda: client.get(f"{PATH}/{quoted}", headers=READ).json().get("data"))
    assert shown["reference_id"] == reference
    event_id = shown["events"][0]["id"]
    event = client.get(f"{PATH}/{quoted}/events/{event_id}", headers=READ)
    assert event.json()["data"]["id"] == event_id
    assert client.post(f"{PATH}/{quoted}/retry", headers=FULL).status_code in (200, 409)


def test_a_reference_with_a_line_break_is_an_unknown_delivery_not_an_unknown_route(
    client: TestClient,
) -> None:
    for method, suffix in (("GET", ""), ("POST", "/retry"), ("GET", "/events/1")):
        response = client.request(method, f"{PATH}/a%0Ab{suffix}", headers=FULL)
        assert response.status_code == 404
        assert response.json() == {"errors": ["no delivery a\nb"]}
        assert response.headers["X-RateLimit-Limit"].isdigit()
