"""The whole process: the relay catches up on its own on what webhooks never told it.

``opsgenie-dx-relay serve`` with a one-second reconcile interval, a service object whose
``custom_url`` is the fake Opsgenie over real HTTPS (as in ``test_enrichment.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.conftest import WEBHOOK_TOKEN
from tests.e2e.conftest import GENIE_KEY, RelayProcess, relay_with_account
from tests.fakes.dx import FakeDX
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread
from tests.fakes.tls import TLSFiles

pytestmark = pytest.mark.e2e


@pytest.fixture
def reconciling_relay(
    relay: Callable[..., RelayProcess], tls: TLSFiles, opsgenie_server: UvicornThread
) -> RelayProcess:
    return relay_with_account(relay, tls, opsgenie_server, RELAY_RECONCILE_INTERVAL="1s")


def test_a_dropped_close_and_an_unseen_alert_reach_dx_without_an_operator(
    reconciling_relay: RelayProcess, fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    now_ms = int(time.time() * 1000)
    dropped, unseen = "close-never-sent", "created-while-down"
    fake_opsgenie.add(api_alert(dropped, created_ms=now_ms - 3 * 86_400_000))
    create = {
        "action": "Create",
        "alert": {
            "alertId": dropped,
            "message": "disk full on db-1",
            "createdAt": now_ms - 3 * 86_400_000,
            "updatedAt": (now_ms - 3 * 86_400_000) * 10**6,
            "priority": "P3",
            "tags": ["service:payments"],
        },
        "integrationName": "Webhook",
    }
    response = reconciling_relay.client.post(
        "/webhooks/opsgenie/payments-og",
        json=create,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
    )
    assert response.status_code == 202
    wait_for(lambda: fake_dx.incident(f"opsgenie-{dropped}"), message="incident open in DX")
    # Opsgenie closes it and never says so; another alert is created the relay never hears of.
    fake_opsgenie.add(
        api_alert(
            dropped,
            created_ms=now_ms - 3 * 86_400_000,
            updated_ms=now_ms - 1_000,
            status="closed",
        )
    )
    fake_opsgenie.add(api_alert(unseen, created_ms=now_ms - 600_000, priority="P1"))
    resolved = wait_for(
        lambda: (i := fake_dx.incident(f"opsgenie-{dropped}")) and i["resolved_at"] and i,
        timeout=15.0,
        message="the dropped close reached DX",
    )
    assert resolved["name"] == "disk full on db-1"
    created = wait_for(
        lambda: fake_dx.incident(f"opsgenie-{unseen}"),
        timeout=15.0,
        message="the unseen alert reached DX",
    )
    assert created["priority"] == "P1"
    assert created["resolved_at"] is None
    assert reconciling_relay.metric("relay_reconcile_alerts_total", finding="missing") == 1
    changed = reconciling_relay.metric("relay_reconcile_alerts_total", finding="changed")
    assert changed is not None
    assert changed >= 1
    lines = [json.loads(line) for line in reconciling_relay.logs().splitlines() if "{" in line]
    runs = [line for line in lines if line.get("message") == "reconcile finished"]
    assert runs
    assert {"service_id", "outcome", "requests", "missing", "changed"} <= set(runs[-1])
    assert GENIE_KEY not in reconciling_relay.logs()
