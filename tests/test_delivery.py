"""The delivery worker against the fake DX (in-process): retries, coalescing, failures, pauses.

The policy's decisions alone are in test_delivery_policy.py, the pace toward DX in
test_rate_limit.py, the pause state in test_pause.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.app import handles
from service.mapping import Filter, Rules
from service.store import Delivery
from tests.conftest import PortalClient, auth, sample
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

URL = "/webhooks/opsgenie"
CREATE = sample("Create")
ALERT = CREATE["alert"]["alertId"]
REF = f"opsgenie-{ALERT}"

MakeClient = Callable[..., PortalClient]


def event(action: str, seconds_later: int, **alert: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(CREATE))
    body["action"] = action
    body["alert"]["updatedAt"] += seconds_later * 10**9
    body["alert"].update(alert)
    return body


def sample_value(client: TestClient, name: str, labels: dict[str, str] | None = None) -> float:
    registry = handles(client.app).metrics.registry
    return float(registry.get_sample_value(name, labels or {}) or 0.0)


def stored(client: PortalClient, ref: str = REF) -> Delivery | None:
    """The store's delivery record for ``ref``, read through the app's own store."""
    return client.portal.call(handles(client.app).store.get, ref)


def delivered_as(client: PortalClient, status: str, ref: str = REF) -> Delivery | None:
    """The record once it has ``status`` (for ``wait_for``), else None."""
    found = stored(client, ref)
    return found if found is not None and found.status == status else None


def upsert_requests(fake_dx: FakeDX) -> list[Any]:
    return [r for r in fake_dx.requests if r.path == "/api/incidents.upsert"]


def test_delivers_the_incident(make_client: MakeClient, fake_dx: FakeDX) -> None:
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    incident = wait_for(lambda: fake_dx.incident(REF), message="incident in DX")
    assert incident["name"] == "asdf"
    request = upsert_requests(fake_dx)[0]
    assert request.headers["authorization"] == "Bearer test-dx-token"
    wait_for(lambda: sample_value(client, "relay_delivery_lag_seconds_count") == 1)
    assert (
        sample_value(
            client,
            "relay_dx_requests_total",
            {"method": "upsert", "outcome": "success", "code": "none"},
        )
        == 1
    )


def test_events_that_arrive_while_dx_is_slow_coalesce(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    fake_dx.latency = 0.5
    client = make_client(dx_concurrency=1)
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: fake_dx.requests, message="first request in flight")
    for i in range(1, 6):
        client.post(URL, json=event("AddNote", i, message=f"update {i}"), headers=auth())
    wait_for(lambda: (i := fake_dx.incident(REF)) and i["name"] == "update 5")
    # The first request, then one carrying the newest state: never one per event.
    assert len(upsert_requests(fake_dx)) == 2


def test_5xx_is_retried_until_dx_takes_it(make_client: MakeClient, fake_dx: FakeDX) -> None:
    fake_dx.fail_next(4, status=503)
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: fake_dx.incident(REF), timeout=20, message="delivered after 503s")
    assert fake_dx.status_counts[503] == 4
    assert sample_value(client, "relay_dx_retries_total") >= 4


def test_retry_after_is_honoured(make_client: MakeClient, fake_dx: FakeDX) -> None:
    fake_dx.rate_limit_next(1, retry_after=1.5)
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: fake_dx.incident(REF), timeout=20)
    first, second = upsert_requests(fake_dx)[:2]
    assert first.status == 429
    assert second.received_at - first.received_at >= 1.5


def test_a_long_retry_after_moves_the_wait_to_the_store(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    fake_dx.rate_limit_next(1, retry_after=30)
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: fake_dx.status_counts[429] == 1)
    delivery = wait_for(lambda: ((d := stored(client)) and d.attempts and d) or None)
    assert delivery.status == "pending"
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at - delivery.updated_at >= 29
    assert delivery.last_error_code == "rate_limited"


def test_a_permanent_rejection_marks_the_reference_failed(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    fake_dx.reject(REF, code="invalid_arguments")
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    store = handles(client.app).store
    delivery = wait_for(lambda: delivered_as(client, "failed"))
    assert delivery.last_error_code == "invalid_arguments"
    assert delivery.last_request is not None
    assert delivery.last_request["reference_id"] == REF
    assert len(upsert_requests(fake_dx)) == 1  # not retried
    text = client.get("/metrics").text
    assert "relay_outbox_failed 1.0" in text
    # An operator fixes the cause and retries: it goes through.
    fake_dx.reset()
    assert client.portal.call(lambda: store.retry(REF, now=0.0))
    handles(client.app).worker.wake()
    wait_for(lambda: fake_dx.incident(REF))


def test_ok_false_in_a_200_is_a_failure(make_client: MakeClient, fake_dx: FakeDX) -> None:
    fake_dx.ok_false_next(1, "metadata_invalid")
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    delivery = wait_for(lambda: delivered_as(client, "failed"))
    assert delivery.last_error_code == "metadata_invalid"


ADMIN = {"DD-API-KEY": "dd-api-key-0123456789", "DD-APPLICATION-KEY": "dd-app-key-0123456789"}


def shown_delivery(client: TestClient, status: str) -> dict[str, Any]:
    """``GET /api/v1/deliveries/{REF}`` once the delivery has ``status`` and an attempt."""

    def ready() -> dict[str, Any] | None:
        data: dict[str, Any] = client.get(f"/api/v1/deliveries/{REF}", headers=ADMIN).json()
        data = data.get("data", {})
        # The record and its history are two reads: a poll between the claim and the
        # attempt's commit can see the history of one and the record of the other.
        settled = data.get("history") and data.get("last_request") is not None
        return data if data.get("status") == status and settled else None

    return wait_for(ready, timeout=20, message=f"delivery {status}")


@pytest.mark.parametrize(
    ("misbehave", "status", "answer", "summary"),
    [
        (
            lambda dx: dx.reject(REF, code="invalid_arguments", status=422),
            "failed",
            {"ok": False, "error": "invalid_arguments"},
            'DX answered 422: {"ok":false,"error":"invalid_arguments"}',
        ),
        (
            lambda dx: dx.ok_false_next(1, "invalid_timestamp"),
            "failed",
            {"ok": False, "error": "invalid_timestamp"},
            "DX answered ok=false: invalid_timestamp",
        ),
        (
            lambda dx: setattr(dx, "down", True),
            "pending",
            {"ok": False, "error": "service_unavailable"},
            "DX answered 503: service_unavailable",
        ),
    ],
    ids=["4xx", "ok-false", "retried-5xx"],
)
def test_operators_see_dx_answer_to_a_failed_or_retried_attempt(
    make_client: MakeClient,
    fake_dx: FakeDX,
    misbehave: Callable[[FakeDX], None],
    status: str,
    answer: dict[str, Any],
    summary: str,
) -> None:
    """README: a delivery shows "the last DX request and answer". DX's answer is its own
    body (what it refused and why); our one-line summary stays in ``last_error``."""
    misbehave(fake_dx)
    client = make_client(
        api_key=Secret(ADMIN["DD-API-KEY"]),
        app_key=Secret(ADMIN["DD-APPLICATION-KEY"]),
        retry_max_backoff_seconds=60.0,
    )
    client.post(URL, json=CREATE, headers=auth())
    shown = shown_delivery(client, status)
    sent = upsert_requests(fake_dx)[0]  # every try of this version sends the same body
    assert shown["last_request"] == sent.json
    assert shown["last_response"] == answer == sent.response
    assert shown["last_error"] == summary
    assert shown["history"][-1]["detail"] == summary


def test_not_authed_pauses_all_delivery_and_readiness_stays_up(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    client = make_client(dx_token=Secret("wrong-token"), retry_max_backoff_seconds=60.0)
    client.post(URL, json=CREATE, headers=auth())
    client.post(URL, json=sample("Acknowledge"), headers=auth())
    wait_for(lambda: sample_value(client, "relay_delivery_paused", {"reason": "not_authed"}) == 1)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert "not_authed" in ready.json()["delivery"]
    # One refused request pauses everyone: the second alert is not tried meanwhile.
    assert fake_dx.status_counts[401] == 1
    store = handles(client.app).store
    stats = client.portal.call(store.stats)
    assert stats.pending == 2
    assert stats.failed == 0


def test_a_redirecting_dx_pauses_all_delivery_until_it_answers_again(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    """A wrong RELAY_DX_BASE_URL (http for https) is one problem for every alert: say it
    once, loudly, and fail nobody; delivery resumes when DX answers again."""
    fake_dx.moved_to = "https://acme.getdx.net/api/incidents.upsert"
    client = make_client(retry_max_backoff_seconds=1.0)
    client.post(URL, json=CREATE, headers=auth())
    second = event("Create", 0)
    second["alert"]["alertId"] = "second"
    client.post(URL, json=second, headers=auth())
    wait_for(lambda: sample_value(client, "relay_delivery_paused", {"reason": "redirected"}) == 1)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert "redirecting to https://acme.getdx.net/" in ready.json()["delivery"]
    labels = {"method": "upsert", "outcome": "redirected", "code": "redirected"}
    assert sample_value(client, "relay_dx_requests_total", labels) >= 1
    store = handles(client.app).store
    assert client.portal.call(store.stats).failed == 0
    fake_dx.moved_to = None
    wait_for(lambda: fake_dx.incident(REF) and fake_dx.incident("opsgenie-second"), timeout=30)
    wait_for(lambda: sample_value(client, "relay_delivery_paused", {"reason": "redirected"}) == 0)
    assert client.get("/readyz").json()["delivery"] == "active"


def test_filtered_alerts_are_counted_then_sent_once_they_match(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    client = make_client(rules=Rules(filter=Filter(priorities=frozenset({"P1"}))))
    client.post(URL, json=CREATE, headers=auth())  # P3
    wait_for(lambda: sample_value(client, "relay_alerts_filtered_total") == 1)
    assert fake_dx.incident(REF) is None
    client.post(URL, json=event("UpdatePriority", 5, priority="P1"), headers=auth())
    incident = wait_for(lambda: fake_dx.incident(REF))
    assert incident["priority"] == "P1"


def test_a_version_that_renders_the_same_body_costs_no_request(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: fake_dx.incident(REF))
    store = handles(client.app).store
    client.post(URL, json=event("AddNote", 3), headers=auth())
    wait_for(lambda: delivered_as(client, "delivered"))
    attempts = client.portal.call(lambda: store.attempts(REF, limit=10))
    assert [a.outcome for a in attempts] == ["delivered", "unchanged"]
    assert len(upsert_requests(fake_dx)) == 1


def test_delete_removes_the_incident_when_configured(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    client = make_client(rules=Rules(delete_incidents=True))
    acknowledge = sample("Acknowledge")
    ref = "opsgenie-" + acknowledge["alert"]["alertId"]
    client.post(URL, json=acknowledge, headers=auth())
    wait_for(lambda: fake_dx.incident(ref))
    client.post(URL, json=sample("Delete"), headers=auth())
    wait_for(lambda: fake_dx.incident(ref) is None, message="incident deleted in DX")


def test_an_event_after_the_delete_asks_dx_nothing(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    """A late note or a re-sent Delete after DX removed the incident: nothing to do, and
    above all not a second delete that DX answers ``not_found``."""
    client = make_client(rules=Rules(delete_incidents=True))
    acknowledge = sample("Acknowledge")
    ref = "opsgenie-" + acknowledge["alert"]["alertId"]
    store = handles(client.app).store
    client.post(URL, json=acknowledge, headers=auth())
    wait_for(lambda: fake_dx.incident(ref))
    client.post(URL, json=sample("Delete"), headers=auth())
    wait_for(lambda: fake_dx.incident(ref) is None, message="incident deleted in DX")
    late = sample("AddNote")
    late["alert"]["alertId"] = acknowledge["alert"]["alertId"]
    client.post(URL, json=late, headers=auth())
    wait_for(
        lambda: (
            [a.outcome for a in client.portal.call(lambda: store.attempts(ref, limit=10))]
            == ["delivered", "delivered", "unchanged"]
        ),
        message="the late note recorded as unchanged",
    )
    assert [r.path for r in fake_dx.requests].count("/api/incidents.delete") == 1
    assert delivered_as(client, "delivered", ref)


def test_deleting_an_alert_dx_never_held_is_done_not_failed(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    """The alert was filtered out, so DX answers the delete ``not_found``: the incident is
    as gone as asked, and nothing lands among the failures an operator has to look at."""
    client = make_client(
        rules=Rules(delete_incidents=True, filter=Filter(priorities=frozenset({"P1"})))
    )
    acknowledge = sample("Acknowledge")
    ref = "opsgenie-" + acknowledge["alert"]["alertId"]
    store = handles(client.app).store
    client.post(URL, json=acknowledge, headers=auth())  # no P1: filtered
    wait_for(lambda: sample_value(client, "relay_alerts_filtered_total") == 1)
    client.post(URL, json=sample("Delete"), headers=auth())
    wait_for(lambda: delivered_as(client, "delivered", ref))
    [delete] = [r for r in fake_dx.requests if r.path == "/api/incidents.delete"]
    assert (delete.status, delete.response) == (422, {"ok": False, "error": "not_found"})
    assert client.portal.call(store.stats).failed == 0
    labels = {"method": "delete", "outcome": "success", "code": "none"}
    assert sample_value(client, "relay_dx_requests_total", labels) == 1


def test_rate_limits_and_outages_are_counted_by_http_status(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    """DX's bodies name these ``rate_limited`` or ``service_unavailable``; the metric's
    code is the status, so an alert on ``code="http_429"`` fires whatever the wording."""
    fake_dx.fail_next(1, status=503, error="service_unavailable")
    fake_dx.rate_limit_next(1, retry_after=0.1)
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    wait_for(lambda: fake_dx.incident(REF), timeout=20)
    for code in ("http_5xx", "http_429"):
        labels = {"method": "upsert", "outcome": "retryable", "code": code}
        assert sample_value(client, "relay_dx_requests_total", labels) == 1, code


def test_a_failed_attempt_records_dx_http_status(make_client: MakeClient, fake_dx: FakeDX) -> None:
    fake_dx.reject(REF, code="metadata_invalid", status=422)
    client = make_client()
    client.post(URL, json=CREATE, headers=auth())
    store = handles(client.app).store
    wait_for(lambda: delivered_as(client, "failed"))
    [attempt] = client.portal.call(lambda: store.attempts(REF, limit=10))
    assert (attempt.http_status, attempt.error_code) == (422, "metadata_invalid")


def test_without_dx_configured_events_wait_and_readiness_says_paused(
    make_client: MakeClient,
) -> None:
    client = make_client(deliver=False)
    client.post(URL, json=CREATE, headers=auth())
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["delivery"].startswith("paused: DX is not configured")
    assert sample_value(client, "relay_delivery_paused", {"reason": "not_configured"}) == 1


def test_dx_never_has_more_than_concurrency_requests_open(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    """The worker claims ahead of its free slots, but only ``concurrency`` requests are
    ever open at DX at once."""
    fake_dx.latency = 0.5
    client = make_client(dx_concurrency=2)
    for i in range(8):
        client.post(URL, json=event("Create", 0, alertId=f"alert-{i}"), headers=auth())
    wait_for(
        lambda: all(fake_dx.incident(f"opsgenie-alert-{i}") for i in range(8)),
        timeout=30,
        message="all eight delivered",
    )
    assert fake_dx.most_open == 2


def test_an_event_stored_while_every_slot_is_taken_is_delivered(
    make_client: MakeClient, fake_dx: FakeDX
) -> None:
    """Intake's wake is dropped while the worker holds all it may (twice the concurrency):
    the next finished delivery must still find the new event."""
    fake_dx.latency = 1.0
    client = make_client(dx_concurrency=1)
    for i in range(2):
        client.post(URL, json=event("Create", 0, alertId=f"busy-{i}"), headers=auth())
    worker = handles(client.app).worker
    wait_for(lambda: len(worker._inflight) == 2, message="both slots taken")
    client.post(URL, json=event("Create", 0, alertId="late"), headers=auth())
    wait_for(lambda: fake_dx.incident("opsgenie-late"), timeout=30, message="late delivered")
    assert {r.json["reference_id"] for r in upsert_requests(fake_dx)} == {
        "opsgenie-busy-0",
        "opsgenie-busy-1",
        "opsgenie-late",
    }
