"""Backfill: a service object's recent alerts from the Alert API reach DX through the outbox."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import DX_TOKEN
from tests.fakes.dx import FakeDX
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for

KEY = "genie-key-backfill"
FULL = {"DD-API-KEY": "api", "DD-APPLICATION-KEY": "app"}
READ = {"DD-API-KEY": "api", "DD-APPLICATION-KEY": "read"}
PATH = "/api/v1/backfill"
SERVICES = "/api/v2/integration/opsgenie/services"


class HostRouter(httpx.AsyncBaseTransport):
    """DX and Opsgenie both in process: each request goes to the app for its host."""

    def __init__(self, routes: dict[str, httpx.AsyncBaseTransport]) -> None:
        self._routes = routes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._routes[request.url.host].handle_async_request(request)


@pytest.fixture
def opsgenie() -> FakeOpsgenie:
    return FakeOpsgenie(api_key=KEY)


@pytest.fixture
def client(
    make_settings: Callable[..., Settings], fake_dx: FakeDX, opsgenie: FakeOpsgenie
) -> Iterator[TestClient]:
    transport = HostRouter(
        {
            "dx.test": httpx.ASGITransport(app=fake_dx.app),
            "api.eu.opsgenie.com": httpx.ASGITransport(app=opsgenie.app),
        }
    )
    settings = make_settings(
        dx_base_url="http://dx.test",
        dx_token=Secret(DX_TOKEN),
        api_key=Secret("api"),
        app_key=Secret("app"),
        readonly_app_key=Secret("read"),
    )
    app = create_app(settings, transport=transport, registry=CollectorRegistry())
    with TestClient(app, raise_server_exceptions=False) as client:
        service = {
            "data": {
                "type": "opsgenie-service",
                "attributes": {"name": "payments", "region": "eu", "opsgenie_api_key": KEY},
            }
        }
        assert client.post(SERVICES, json=service, headers=FULL).status_code == 201
        yield client


def run(client: TestClient, headers: dict[str, str] = FULL, **body: Any) -> httpx.Response:
    return client.post(PATH, json={"service": "payments", "since": "7d", **body}, headers=headers)


def test_dry_run_then_backfill_delivers(
    client: TestClient, fake_dx: FakeDX, opsgenie: FakeOpsgenie
) -> None:
    now_ms = int(time.time() * 1000)
    for n in range(3):
        opsgenie.add(api_alert(f"missed-{n}", created_ms=now_ms - 3600_000 + n))

    dry = run(client, dry_run=True)
    assert dry.status_code == 200
    report = dry.json()["data"]
    assert report["dry_run"] is True
    assert report["counts"] == {"new": 3}
    assert fake_dx.requests == []
    query = opsgenie.seen("/v2/alerts")[0].query["query"]
    assert query.startswith("createdAt >= ")

    real = run(client).json()["data"]
    assert real["counts"] == {"accepted": 3}
    for n in range(3):
        wait_for(lambda n=n: fake_dx.incident(f"opsgenie-missed-{n}"), message=f"missed-{n}")
    incident = fake_dx.incident("opsgenie-missed-0")
    assert incident is not None
    assert incident["name"] == "disk full on db-1"

    again = run(client).json()["data"]
    assert "accepted" not in again["counts"]  # known facts change nothing


def test_pages_through_opsgenie(client: TestClient, opsgenie: FakeOpsgenie) -> None:
    now_ms = int(time.time() * 1000)
    for n in range(205):
        opsgenie.add(api_alert(f"a-{n:03}", created_ms=now_ms - 1000 + n))
    report = run(client, dry_run=True).json()["data"]
    assert report["counts"] == {"new": 205}
    assert [r.query["offset"] for r in opsgenie.seen("/v2/alerts")] == ["0", "100", "200"]


def test_refusals(client: TestClient, opsgenie: FakeOpsgenie) -> None:
    assert run(client, service="nobody").status_code == 404
    assert run(client, since="soon").status_code == 400
    assert run(client, since=-5).status_code == 400
    assert run(client, dry_run="yes").status_code == 400
    assert run(client, headers=READ).status_code == 403
    opsgenie.fail_next(1, status=500)
    failed = run(client)
    assert failed.status_code == 502
    assert "Opsgenie" in failed.json()["errors"][0]
