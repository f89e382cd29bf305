"""The application shell: health, readiness, metrics and OpenAPI routes, error handling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from service.app import create_app, handles
from service.settings import Settings
from service.store import Incoming, Outcome
from service.store.sqlite import SQLiteStore
from tests.conftest import auth, sample
from tests.fakes.dx import FakeDX

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
