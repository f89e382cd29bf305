"""The application shell: health, readiness, metrics and OpenAPI routes, error handling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.app import create_app, handles
from service.settings import Settings
from service.store import Incoming, Outcome
from service.store.sqlite import SQLiteStore
from tests.conftest import DX_TOKEN, auth, sample
from tests.fakes.certs import self_signed_for, trusting
from tests.fakes.dx import FakeDX
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread
from tests.fakes.tls import https_server
from tests.test_enrichment import ALERT, CREATED_MS, escalate

MakeClient = Callable[..., TestClient]


def test_healthz(make_client: MakeClient) -> None:
    response = make_client(deliver=False).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_green_without_dx(make_client: MakeClient) -> None:
    response = make_client(deliver=False).get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_is_green_while_dx_is_down(make_client: MakeClient, fake_dx: FakeDX) -> None:
    fake_dx.down = True
    client = make_client()
    client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["delivery"] == "active"


def test_readyz_fails_when_the_store_cannot_write(make_client: MakeClient) -> None:
    client = make_client(deliver=False)
    store = handles(client.app).store
    assert client.portal is not None
    client.portal.call(store.close)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unready"
    assert any(error.startswith("store:") for error in response.json()["errors"])
    client.portal.call(store.open)  # let the fixture's lifespan close it cleanly


def test_metrics_route_answers_without_a_redirect(make_client: MakeClient) -> None:
    client = make_client(deliver=False)
    response = client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    # Every label combination exists before the first event.
    assert 'relay_webhooks_received_total{action="Create",outcome="accepted"} 0.0' in text
    assert "relay_outbox_pending 0.0" in text
    assert "relay_outbox_oldest_pending_age_seconds 0.0" in text
    assert "relay_delivery_lag_seconds_bucket" in text
    # The process and the runtime too, on the app's own registry.
    for family in ("process_resident_memory_bytes", "process_start_time_seconds", "python_info"):
        assert f"\n{family}" in text, family


def test_metrics_reflect_the_outbox(make_client: MakeClient) -> None:
    client = make_client(deliver=False)
    client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    assert "relay_outbox_pending 1.0" in client.get("/metrics").text


def test_each_app_has_its_own_registry(make_client: MakeClient) -> None:
    first, second = make_client(deliver=False), make_client(deliver=False)
    first.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    line = 'relay_webhooks_received_total{action="Create",outcome="accepted"}'
    assert f"{line} 1.0" in first.get("/metrics").text
    assert f"{line} 0.0" in second.get("/metrics").text


def test_openapi_describes_the_routes(make_client: MakeClient) -> None:
    document = make_client(deliver=False).get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    for path in ("/webhooks/opsgenie", "/healthz", "/readyz", "/metrics"):
        assert path in document["paths"]


def test_unknown_routes_and_methods_answer_json_errors(make_client: MakeClient) -> None:
    client = make_client(deliver=False)
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"errors": ["Not Found"]}
    wrong = client.get("/webhooks/opsgenie")
    assert wrong.status_code == 405
    assert wrong.json() == {"errors": ["Method Not Allowed"]}


class ExplodingStore(SQLiteStore):
    async def accept(self, incoming: Incoming, *_: object) -> Outcome:
        raise RuntimeError("bug with a secret: hook-token-0123456789")


def test_an_unexpected_error_is_a_json_500_without_a_trace(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    app = create_app(
        settings,
        store=ExplodingStore(tmp_path / "x.db", clock=lambda: 0.0),
        registry=CollectorRegistry(),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    assert response.status_code == 500
    assert response.json() == {"errors": ["internal error"]}
    assert "secret" not in response.text


def test_store_failure_answers_503_so_opsgenie_retries(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from service.errors import StoreUnavailable

    class FullDisk(SQLiteStore):
        async def accept(self, *args: Any, **kwargs: Any) -> Outcome:
            raise StoreUnavailable("database write failed: database or disk is full")

    app = create_app(
        make_settings(),
        store=FullDisk(tmp_path / "x.db", clock=lambda: 0.0),
        registry=CollectorRegistry(),
        transport=httpx.MockTransport(lambda request: httpx.Response(500)),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    assert response.status_code == 503
    assert response.json() == {"errors": ["database write failed: database or disk is full"]}


REBOUND = "opsgenie.test"  # reserved (RFC 2606): only the injected resolver answers it
GENIE_KEY = "genie-key-rebinding-0001"
ADMIN = {"DD-API-KEY": "rebinding-api-key", "DD-APPLICATION-KEY": "rebinding-app-key"}


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_stored_key_never_reaches_a_name_that_resolves_to_loopback(
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    dx_server: UvicornThread,
    tmp_path: Path,
    allow_private: bool,
) -> None:
    """DNS rebinding, end to end: ``custom_url`` names a host that looks public when it is
    written, then resolves to 127.0.0.1, where a real TLS server with a certificate for
    that name listens. Enrichment and backfill (which carry the stored key) are refused at
    connect time, before a byte is sent; DX, the operator's own URL on loopback, is not.
    With private upstreams allowed, the same set-up reaches the server: the refusal is
    the guard's, not the test's."""
    tls = self_signed_for(tmp_path, REBOUND)
    opsgenie = FakeOpsgenie(api_key=GENIE_KEY)
    opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    settings = make_settings(
        dx_base_url=dx_server.url,
        dx_token=Secret(DX_TOKEN),
        api_key=Secret(ADMIN["DD-API-KEY"]),
        app_key=Secret(ADMIN["DD-APPLICATION-KEY"]),
        allow_private_upstreams=allow_private,
    )
    app = create_app(settings, registry=CollectorRegistry(), resolver=resolve, verify=trusting(tls))
    with https_server(opsgenie.app, tls) as server, TestClient(app) as client:
        service = {
            "name": "payments",
            "region": "custom",
            "custom_url": f"https://{REBOUND}:{server.port}",
            "opsgenie_api_key": GENIE_KEY,
        }
        document = {"data": {"type": "opsgenie-service", "attributes": service}}
        created = client.post("/api/v2/integration/opsgenie/services", json=document, headers=ADMIN)
        assert created.status_code == 201, created.text  # a public-looking name
        backfill = client.post(
            "/api/v1/backfill", json={"service": "payments", "since": "7d"}, headers=ADMIN
        )
        webhook = client.post("/webhooks/opsgenie/payments", json=escalate(), headers=auth())
        assert webhook.status_code == 202
        reference = f"opsgenie-{ALERT}"
        [upsert] = wait_for(lambda: fake_dx.upserts(reference), message="the incident in DX")
        registry = handles(client.app).metrics.registry
        enrichment = {
            outcome: registry.get_sample_value(
                "relay_enrichment_requests_total", {"outcome": outcome}
            )
            for outcome in ("success", "permanent")
        }
    assert REBOUND in asked  # looked up when connecting, not only checked when written
    if allow_private:
        assert backfill.status_code == 200, backfill.text
        assert enrichment == {"success": 1.0, "permanent": 0.0}
        assert {r.authorization for r in opsgenie.requests} == {f"GenieKey {GENIE_KEY}"}
        return
    assert backfill.status_code == 502, backfill.text
    [error] = backfill.json()["errors"]
    assert f"refused to connect to {REBOUND}" in error
    assert "127.0.0.1" in error
    assert "RELAY_ALLOW_PRIVATE_UPSTREAMS" in error
    assert enrichment == {"success": 0.0, "permanent": 1.0}
    assert upsert["reference_id"] == reference  # delivered with what the relay had
    assert opsgenie.requests == []  # no request, so no key, reached the server
