"""The relay as the README runs it, against the fake DX on a real socket."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WEBHOOK_TOKEN, sample
from tests.e2e.conftest import RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

CREATE = sample("Create")
REF = "opsgenie-" + CREATE["alert"]["alertId"]


def close_of(create: dict[str, Any]) -> dict[str, Any]:
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
    relay: Callable[..., RelayProcess], body: object, kwargs: dict[str, Any], status: int
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


def unread_bytes(server_port: int, peer_port: int) -> int | None:
    """Bytes the server has not read yet on its end of one loopback connection, from the
    kernel's table (``/proc/net/tcp``): 0 once the server has taken all that was sent."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (
            int(local.split(":")[1], 16) == server_port
            and int(remote.split(":")[1], 16) == peer_port
        ):
            return int(queues.split(":")[1], 16)
    return None


def test_shutdown_keeps_to_one_deadline_for_open_requests_and_dx_together(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    """A client that stalls mid-body holds uvicorn's drain, and a slow DX holds the
    worker's: both must end within one RELAY_SHUTDOWN_DEADLINE, not one after the other
    (the pod's grace period is the deadline plus 10 s, then comes SIGKILL)."""
    deadline = 4.0
    fake_dx.latency = 60.0
    process = relay(RELAY_SHUTDOWN_DEADLINE=f"{deadline:g}s")
    assert process.post(CREATE).status_code == 202
    wait_for(lambda: fake_dx.requests, message="a DX request in flight")
    with socket.create_connection(("127.0.0.1", process.port)) as stalled:
        stalled.sendall(
            b"POST /webhooks/opsgenie HTTP/1.1\r\nHost: relay\r\n"
            + f"Authorization: Bearer {WEBHOOK_TOKEN}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"action":'
        )
        # Shut down only once the relay has read the headers, so the request is open.
        peer = stalled.getsockname()[1]
        wait_for(lambda: unread_bytes(process.port, peer) == 0, message="headers read")
        assert process.proc is not None
        started = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        process.proc.wait(timeout=30)
        took = time.monotonic() - started
    logs = process.logs()
    assert "timeout graceful shutdown exceeded" in logs  # the stalled client held the drain
    assert "shutdown left requests unfinished" in logs  # and DX held the worker
    assert '"message": "relay stopped"' in logs
    # One deadline, not two; the margin is for start-up of neither, only the exit itself.
    assert took < 2 * deadline - 1.0, f"shutdown took {took:.1f} s"


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


def test_the_served_metrics_carry_the_process_and_no_created_series(
    relay: Callable[..., RelayProcess],
) -> None:
    text = relay().client.get("/metrics").text
    assert "\nprocess_resident_memory_bytes " in text
    assert "_created" not in text  # one per counter and histogram child, doubling a scrape
