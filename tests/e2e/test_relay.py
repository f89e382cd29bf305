"""The relay as the README runs it, against the fake DX on a real socket."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable

import pytest

from tests.conftest import sample
from tests.e2e.conftest import RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

CREATE = sample("Create")
REF = "opsgenie-" + CREATE["alert"]["alertId"]


def close_of(create: dict) -> dict:
    close = {**create, "action": "Close"}
    close["alert"] = {**create["alert"], "updatedAt": create["alert"]["updatedAt"] + 5_000_000_000}
    return close


def test_create_then_close_gives_one_resolved_incident(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    process = relay()
    assert process.post(CREATE).status_code == 202
    assert process.post(close_of(CREATE)).status_code == 202
    incident = wait_for(
        lambda: (i := fake_dx.incident(REF)) and i.get("resolved_at") and i,
        message="resolved incident in DX",
    )
    assert incident["name"] == "asdf"
    assert incident["priority"] == "P3"
    assert incident["started_at"] == "2020-06-30T00:06:04.295Z"
    assert incident["resolved_at"] == "2020-06-30T00:06:09.636Z"
    assert list(fake_dx.incidents) == [REF]


def test_close_before_create_stays_resolved(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    process = relay()
    assert process.post(close_of(CREATE)).status_code == 202
    wait_for(lambda: (i := fake_dx.incident(REF)) and i["resolved_at"])
    assert process.post(CREATE).status_code == 202
    incident = wait_for(lambda: (i := fake_dx.incident(REF)) and i["priority"] == "P3" and i)
    assert incident["resolved_at"] == "2020-06-30T00:06:09.636Z"
    # The incident was never reopened on the way.
    assert all(body["resolved_at"] for body in fake_dx.upserts(REF))


def test_duplicates_change_nothing(relay: Callable[..., RelayProcess], fake_dx: FakeDX) -> None:
    process = relay()
    for _ in range(3):
        assert process.post(CREATE).status_code == 202
    wait_for(lambda: fake_dx.incident(REF))
    wait_for(lambda: process.metric("relay_outbox_pending") == 0)
    assert len(fake_dx.upserts(REF)) == 1
    assert (
        process.metric("relay_webhooks_received_total", action="Create", outcome="duplicate") == 2
    )


def stored_events(process: RelayProcess) -> int:
    with sqlite3.connect(process.workdir / "relay.db") as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.mark.parametrize(
    ("body", "kwargs", "status"),
    [
        (CREATE, {"token": "wrong"}, 401),
        (b"{this is not json", {}, 400),
        ({"action": "Create", "alert": {"alertId": 42}}, {}, 400),
        ({"action": "Create", "alert": {"alertId": "a", "priority": {"p": 1}}}, {}, 400),
        ({"action": "Create", "alert": {"alertId": "a", "updatedAt": [1]}}, {}, 400),
        ({"action": "Create", "alert": {"alertId": "a", "x": "y" * 2_000_000}}, {}, 413),
    ],
)
def test_bad_requests_get_4xx_and_store_nothing(
    relay: Callable[..., RelayProcess], body: object, kwargs: dict, status: int
) -> None:
    process = relay()
    response = process.post(body, **kwargs)
    assert response.status_code == status
    assert response.json()["errors"]
    assert "Traceback" not in response.text
    assert stored_events(process) == 0
    assert process.client.get("/healthz").status_code == 200


def test_503_and_429_are_retried_and_retry_after_is_honoured(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    fake_dx.fail_next(3, status=503)
    fake_dx.rate_limit_next(1, retry_after=2)
    process = relay()
    assert process.post(CREATE).status_code == 202
    wait_for(lambda: fake_dx.incident(REF), timeout=30, message="delivered after 503s and a 429")
    requests = [r for r in fake_dx.requests if r.path == "/api/incidents.upsert"]
    statuses = [r.status for r in requests]
    assert statuses.count(503) == 3
    assert statuses.count(429) == 1
    after_429 = statuses.index(429) + 1
    assert requests[after_429].received_at - requests[after_429 - 1].received_at >= 2.0


def test_a_422_leaves_the_reference_failed_and_visible(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    fake_dx.reject(REF, code="invalid_arguments")
    process = relay()
    assert process.post(CREATE).status_code == 202
    wait_for(lambda: process.metric("relay_outbox_failed") == 1, message="failed gauge")
    assert (
        process.metric(
            "relay_dx_requests_total",
            method="upsert",
            outcome="permanent",
            code="invalid_arguments",
        )
        == 1
    )
    assert fake_dx.incident(REF) is None
    line = next(
        json.loads(line) for line in process.logs().splitlines() if '"outcome": "failed"' in line
    )
    assert line["reference_id"] == REF
    assert line["code"] == "invalid_arguments"


def test_sigkill_while_dx_is_down_loses_nothing(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    fake_dx.down = True
    process = relay()
    alerts = []
    for n in range(20):
        create = json.loads(json.dumps(CREATE))
        create["alert"]["alertId"] = f"alert-{n}"
        create["alert"]["message"] = f"alert {n}"
        alerts.append(create)
        assert process.post(create).status_code == 202
        if n % 2:
            assert process.post(close_of(create)).status_code == 202
    process.kill()  # no shutdown code runs

    fake_dx.down = False
    restarted = relay()
    for n, create in enumerate(alerts):
        ref = "opsgenie-" + create["alert"]["alertId"]
        incident = wait_for(lambda ref=ref: fake_dx.incident(ref), timeout=30, message=ref)
        assert incident["name"] == f"alert {n}"
        assert bool(incident["resolved_at"]) == bool(n % 2)
    wait_for(lambda: restarted.metric("relay_outbox_pending") == 0)


def test_sigterm_finishes_in_flight_requests_and_keeps_the_rest(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    fake_dx.latency = 1.0
    process = relay(RELAY_DX_CONCURRENCY="1")
    for n in range(10):
        create = json.loads(json.dumps(CREATE))
        create["alert"]["alertId"] = f"drain-{n}"
        assert process.post(create).status_code == 202
    wait_for(lambda: fake_dx.requests, message="a request in flight")
    # uvicorn re-raises the SIGTERM after its graceful shutdown, so the code says "signal".
    assert process.stop() in (0, -signal.SIGTERM)
    assert '"message": "relay stopped"' in process.logs()
    delivered = set(fake_dx.incidents)
    assert delivered  # the request in flight was finished, not cut off
    assert len(delivered) < 10  # the rest stayed in the outbox...

    fake_dx.latency = 0.0
    relay()  # ...and the next start delivers them
    wait_for(lambda: len(fake_dx.incidents) == 10, timeout=30)
