"""The whole process: a partial webhook for a service object still yields a complete incident.

The relay runs as ``opsgenie-dx-relay serve``; the service object is created through the
admin API; the fake Opsgenie is served over real HTTPS (service objects only take
``https`` custom URLs), with its self-signed certificate as the relay's trust store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import WEBHOOK_TOKEN
from tests.e2e.conftest import GENIE_KEY, RelayProcess, relay_with_account
from tests.fakes.dx import FakeDX
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread
from tests.fakes.tls import TLSFiles

pytestmark = pytest.mark.e2e

CREATED_MS = 1_795_000_000_000
ALERT = "0e1d2c3b-4a59-4687-9a5b-6c7d8e9f0a1b"
REF = f"opsgenie-{ALERT}"


@pytest.fixture
def enriching_relay(
    relay: Callable[..., RelayProcess], tls: TLSFiles, opsgenie_server: UvicornThread
) -> RelayProcess:
    return relay_with_account(relay, tls, opsgenie_server)


def post(process: RelayProcess, service: str, body: dict[str, Any]) -> int:
    response = process.client.post(
        f"/webhooks/opsgenie/{service}",
        json=body,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
    )
    return response.status_code


def escalate() -> dict[str, Any]:
    return {
        "action": "Escalate",
        "escalationId": "e-1",
        "escalationName": "payments_escalation",
        "escalationTime": CREATED_MS + 60_000,
        "repeatCount": 0,
        "alert": {"alertId": ALERT},
        "integrationName": "Webhook",
    }


def close() -> dict[str, Any]:
    return {
        "action": "Close",
        "alert": {
            "alertId": ALERT,
            "message": "disk full on db-1",
            "tinyId": "42",
            "updatedAt": (CREATED_MS + 120_000) * 10**6,
        },
        "integrationName": "Webhook",
    }


@pytest.mark.parametrize("first_seen", [escalate, close])
def test_partial_event_without_create_yields_a_complete_incident(
    enriching_relay: RelayProcess,
    fake_dx: FakeDX,
    fake_opsgenie: FakeOpsgenie,
    first_seen: Callable[[], dict[str, Any]],
) -> None:
    closed = first_seen is close
    fake_opsgenie.add(
        api_alert(
            ALERT,
            created_ms=CREATED_MS,
            updated_ms=CREATED_MS + 130_000,
            priority="P1",
            status="closed" if closed else "open",
            close_after_ms=120_000 if closed else None,
        )
    )
    assert post(enriching_relay, "payments-og", first_seen()) == 202
    incident = wait_for(
        lambda: (i := fake_dx.incident(REF)) and i.get("priority") == "P1" and i,
        message="complete incident in DX",
    )
    assert incident["name"] == "disk full on db-1"
    assert incident["started_at"] == "2026-11-18T11:06:40.000Z"
    assert incident["resolved_at"] == ("2026-11-18T11:08:40.000Z" if closed else None)
    assert incident["services"] == [{"identifier": "payments"}]
    assert incident["metadata"]["tags"] == ["service:payments", "env:prod"]
    assert incident["metadata"]["tiny_id"] == "42"
    assert all(body.get("priority") == "P1" for body in fake_dx.upserts(REF))
    assert fake_opsgenie.seen(f"/v2/alerts/{ALERT}")[0].authorization == f"GenieKey {GENIE_KEY}"
    assert enriching_relay.metric("relay_enrichment_requests_total", outcome="success") == 1


def test_unknown_service_is_404(enriching_relay: RelayProcess, fake_dx: FakeDX) -> None:
    assert post(enriching_relay, "no-such-service", escalate()) == 404
    assert fake_dx.incident(REF) is None
