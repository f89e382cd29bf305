"""Enrichment and account links in one process: the relay, the fake DX, the fake Opsgenie.

The app's one outbound client goes through a transport that routes by host, so DX and
every Opsgenie API base (us, eu, a custom URL) reach in-process fakes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

import httpx
import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.accounts import Accounts
from service.app import create_app, handles
from service.crypto import KeyCipher, SealedKey
from service.delivery import Worker
from service.dx import DXClient
from service.enrichment import MAX_ATTEMPTS, Enricher, needs_enrichment
from service.errors import SecretKeyError, StoreUnavailable
from service.mapping import Rules
from service.metrics import Metrics
from service.opsgenie import OpsgenieEvent
from service.settings import Settings
from service.store import Attempt, Incoming, Outcome, Pending, Region, ServiceObject, Store
from service.translate import Account, fold
from tests.conftest import DX_TOKEN, auth
from tests.fakes.dx import FakeDX
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for, wait_for_async

ALERT = "8b9c0d1e-2f30-4a5b-9c6d-7e8f90a1b2c3"
REF = f"opsgenie-{ALERT}"
CREATED_MS = 1_795_000_000_000
KEY = "genie-key-123"
ADMIN = ("dd-api-key", "dd-app-key")


class HostRouter(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app serving its host."""

    def __init__(self, routes: dict[str, httpx.AsyncBaseTransport]) -> None:
        self._routes = routes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._routes[request.url.host].handle_async_request(request)


@pytest.fixture
def fake_opsgenie() -> FakeOpsgenie:
    return FakeOpsgenie(api_key=KEY, account="acme")


@pytest.fixture
def make_relay(
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    fake_opsgenie: FakeOpsgenie,
    open_client: Callable[[Starlette], TestClient],
) -> Callable[..., TestClient]:
    """Build relays (lifespan running) on one database; ``overrides`` change settings."""
    opsgenie = httpx.ASGITransport(app=fake_opsgenie.app)
    transport = HostRouter(
        {
            "dx.test": httpx.ASGITransport(app=fake_dx.app),
            "opsgenie.test": opsgenie,
            "api.opsgenie.com": opsgenie,
            "api.eu.opsgenie.com": opsgenie,
        }
    )

    def make(**overrides: Any) -> TestClient:
        settings = make_settings(
            dx_base_url="http://dx.test",
            dx_token=Secret(DX_TOKEN),
            opsgenie_web_url="https://default.app.opsgenie.com",
            api_key=Secret(ADMIN[0]),
            app_key=Secret(ADMIN[1]),
            **overrides,
        )
        return open_client(create_app(settings, transport=transport, registry=CollectorRegistry()))

    return make


@pytest.fixture
def relay_client(make_relay: Callable[..., TestClient]) -> TestClient:
    return make_relay()


def add_service(
    client: TestClient,
    name: str = "payments-og",
    *,
    region: Region = "custom",
    custom_url: str | None = "https://opsgenie.test",
    key: str = KEY,
) -> str:
    store = handles(client.app).store
    assert client.portal is not None
    created = client.portal.call(
        functools.partial(
            store.create_service_object,
            id=str(uuid.uuid4()),
            name=name,
            region=region,
            custom_url=custom_url,
            api_key=Secret(key),
        )
    )
    return str(created.id)


def escalate(alert_id: str = ALERT) -> dict[str, Any]:
    return {
        "action": "Escalate",
        "escalationId": "e-1",
        "escalationName": "payments_escalation",
        "escalationNotify": {"id": "n", "type": "team", "name": "payments"},
        "escalationTime": CREATED_MS + 60_000,
        "repeatCount": 0,
        "alert": {"alertId": alert_id},
        "integrationId": "i",
        "integrationName": "Webhook",
    }


def close(alert_id: str = ALERT) -> dict[str, Any]:
    return {
        "action": "Close",
        "alert": {
            "alertId": alert_id,
            "message": "disk full on db-1",
            "tags": [],
            "tinyId": "42",
            "updatedAt": (CREATED_MS + 120_000) * 10**6,
            "username": "ann@example.com",
        },
        "source": {"name": "", "type": "web"},
        "integrationName": "Webhook",
    }


def metric(client: TestClient, outcome: str) -> float:
    registry = handles(client.app).metrics.registry
    value = registry.get_sample_value("relay_enrichment_requests_total", {"outcome": outcome})
    return float(value or 0.0)


def delivered(fake_dx: FakeDX, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        incident = fake_dx.incident(REF)
        return incident if incident is not None and check(incident) else None

    return wait_for(done, message="incident in DX")


# --- what needs enrichment ---------------------------------------------------------------


def test_a_bare_escalate_needs_enrichment_and_a_create_does_not() -> None:
    bare = fold(None, OpsgenieEvent(action="Escalate", alert_id=ALERT, stamp_ns=1))
    assert needs_enrichment(bare)
    full = fold(
        None,
        OpsgenieEvent(
            action="Create",
            alert_id=ALERT,
            stamp_ns=2,
            created_at_ns=1,
            priority="P1",
            tags=(),
        ),
    )
    assert not needs_enrichment(full)


# --- routing -----------------------------------------------------------------------------


def test_unknown_service_is_404_and_stores_nothing(
    relay_client: TestClient, fake_dx: FakeDX
) -> None:
    response = relay_client.post("/webhooks/opsgenie/nope", json=escalate(), headers=auth())
    assert response.status_code == 404
    assert response.json()["errors"]
    store = handles(relay_client.app).store
    assert relay_client.portal is not None
    assert relay_client.portal.call(store.get, REF) is None
    assert fake_dx.requests == []


def test_wrong_token_is_401_even_for_an_unknown_service(relay_client: TestClient) -> None:
    response = relay_client.post("/webhooks/opsgenie/nope", json=escalate(), headers=auth("x"))
    assert response.status_code == 401


@pytest.mark.parametrize("by", ["name", "NAME", "id", "name/"])
def test_service_by_name_or_id_owns_the_event(relay_client: TestClient, by: str) -> None:
    service_id = add_service(relay_client, "Payments-OG")
    path = {"name": "payments-og", "NAME": "PAYMENTS-OG", "id": service_id}.get(
        by,
        "payments-og/",  # a trailing slash: the same webhook, never a redirect
    )
    response = relay_client.post(
        f"/webhooks/opsgenie/{path}", json=escalate(), headers=auth(), follow_redirects=False
    )
    assert response.status_code == 202
    store = handles(relay_client.app).store
    assert relay_client.portal is not None
    delivery = relay_client.portal.call(store.get, REF)
    assert delivery is not None
    assert delivery.service_id == service_id


# --- enrichment --------------------------------------------------------------------------


@pytest.mark.parametrize("first_seen", [escalate, close])
def test_partial_event_becomes_a_complete_incident(
    relay_client: TestClient,
    fake_dx: FakeDX,
    fake_opsgenie: FakeOpsgenie,
    first_seen: Callable[[], dict[str, Any]],
) -> None:
    add_service(relay_client)
    closed = first_seen is close
    fake_opsgenie.add(
        api_alert(
            ALERT,
            created_ms=CREATED_MS,
            updated_ms=CREATED_MS + 130_000,  # Opsgenie updates an alert after its close
            status="closed" if closed else "open",
            close_after_ms=120_000 if closed else None,
        )
    )
    relay_client.post("/webhooks/opsgenie/payments-og", json=first_seen(), headers=auth())
    incident = delivered(fake_dx, lambda i: i.get("priority") == "P2")
    assert incident["name"] == "disk full on db-1"
    assert incident["started_at"] == "2026-11-18T11:06:40.000Z"
    assert incident["resolved_at"] == ("2026-11-18T11:08:40.000Z" if closed else None)
    assert incident["services"] == [{"identifier": "payments"}]
    assert incident["metadata"]["tags"] == ["service:payments", "env:prod"]
    assert incident["metadata"]["source"] == "datadog"
    # DX saw only the complete incident, never the bare one.
    assert all("priority" in body for body in fake_dx.upserts(REF))
    assert metric(relay_client, "success") == 1
    (fetch,) = fake_opsgenie.seen(f"/v2/alerts/{ALERT}")
    assert fetch.authorization == f"GenieKey {KEY}"
    store = handles(relay_client.app).store
    portal = relay_client.portal
    assert portal is not None
    events = portal.call(functools.partial(store.events, ALERT, limit=10))
    assert "Fetched" in [e.action for e in events]
    # The stored copy, folded by the store in its turn, makes a version DX holds already:
    # settled without another request.
    wait_for(
        lambda: (
            (d := portal.call(store.get, REF)) is not None
            and (d.status, d.delivered_version) == ("delivered", d.version)
        )
    )
    attempts = portal.call(functools.partial(store.attempts, REF, limit=10))
    assert [a.outcome for a in attempts][:1] == ["delivered"]
    assert set(a.outcome for a in attempts) <= {"delivered", "unchanged"}
    assert len(fake_dx.upserts(REF)) == 1


def test_without_a_service_object_the_relay_sends_what_it_has(
    relay_client: TestClient, fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    relay_client.post("/webhooks/opsgenie", json=escalate(), headers=auth())
    incident = delivered(fake_dx, lambda i: True)
    assert "priority" not in incident or incident["priority"] is None
    assert metric(relay_client, "skipped") == 1
    assert fake_opsgenie.requests == []


def test_deleted_alert_is_delivered_without_enrichment(
    relay_client: TestClient, fake_dx: FakeDX
) -> None:
    add_service(relay_client)
    relay_client.post("/webhooks/opsgenie/payments-og", json=close(), headers=auth())
    incident = delivered(fake_dx, lambda i: i["resolved_at"] is not None)
    assert incident["name"] == "disk full on db-1"
    assert metric(relay_client, "permanent") == 1


def test_wrong_key_is_permanent_and_does_not_hold_the_incident(
    relay_client: TestClient, fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    add_service(relay_client, key="wrong-key")
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    relay_client.post("/webhooks/opsgenie/payments-og", json=escalate(), headers=auth())
    delivered(fake_dx, lambda i: True)
    assert metric(relay_client, "permanent") == 1


class OneClaimOutbox:
    """An outbox that hands the worker one reference once and records what it is told.

    Claiming again is what the enrichment must make unnecessary: the fetched alert is
    stored, and also delivered by the same turn of the worker.
    """

    def __init__(self, pending: Pending) -> None:
        self.waiting: list[Pending] = [pending]
        self.claims = 0
        self.accepted: list[Incoming] = []
        self.delivered: list[tuple[Pending, dict[str, Any], Attempt]] = []

    async def due(self, *, now: float, limit: int, exclude: Sequence[str]) -> list[Pending]:
        claimed, self.waiting = self.waiting, []
        self.claims += bool(claimed)
        return claimed

    async def next_due_at(self) -> float | None:
        return None

    async def accept(self, incoming: Incoming) -> Outcome:
        self.accepted.append(incoming)
        return Outcome.ACCEPTED

    async def record_delivered(
        self, pending: Pending, *, request: dict[str, Any], response: str, attempt: Attempt
    ) -> None:
        self.delivered.append((pending, request, attempt))

    async def record_retry(self, pending: Pending, **what: Any) -> None:
        raise AssertionError(f"not delivered: {what}")


class Payments:
    """The service object's account, as ``api_for`` reads it."""

    id = "payments"
    region = "custom"
    custom_url: str | None = "https://opsgenie.test"
    api_key: Secret | None = Secret(KEY)

    async def get_service_object(self, id: str) -> Payments:
        return self


def test_the_fetched_alert_is_delivered_by_the_same_turn(
    fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    """One claim, one fetch, one DX request that carries what Opsgenie said; the fetched
    alert is stored too, and the delivery is recorded for the version that was claimed."""
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    outbox = OneClaimOutbox(bare_pending())
    metrics = Metrics(CollectorRegistry())
    transport = HostRouter(
        {
            "dx.test": httpx.ASGITransport(app=fake_dx.app),
            "opsgenie.test": httpx.ASGITransport(app=fake_opsgenie.app),
        }
    )

    async def account(service_id: str | None) -> Account:
        return Account(web_url="https://acme.app.opsgenie.com")

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            store = cast(Store, outbox)
            worker = Worker(
                store=store,
                dx=DXClient(http, base_url="http://dx.test", token=DX_TOKEN),
                rules=Rules(),
                accounts=account,
                metrics=metrics,
                concurrency=1,
                rate_limit=1000.0,
                max_backoff=1.0,
                enrich=Enricher(
                    store=store, objects=Payments(), http=http, metrics=metrics, max_backoff=1.0
                ),
            )
            worker.start()
            try:
                await wait_for_async(lambda: outbox.delivered, message="delivery recorded")
            finally:
                await worker.stop(1.0)

    asyncio.run(main())
    [body] = fake_dx.upserts(REF)
    assert body["priority"] == "P2"
    assert body["started_at"] == "2026-11-18T11:06:40.000Z"
    assert body["services"] == [{"identifier": "payments"}]
    assert outbox.claims == 1
    [fetched] = outbox.accepted
    assert (fetched.action, fetched.reference_id) == ("Fetched", REF)
    [(pending, request, attempt)] = outbox.delivered
    assert request == body
    assert pending.version == attempt.version == bare_pending().version
    assert not needs_enrichment(pending.state)
    value = metrics.registry.get_sample_value(
        "relay_enrichment_requests_total", {"outcome": "success"}
    )
    assert value == 1


def test_opsgenie_5xx_and_429_are_retried_then_enrichment_succeeds(
    relay_client: TestClient, fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    add_service(relay_client)
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    fake_opsgenie.fail_next(1, status=503)
    fake_opsgenie.rate_limit_next(1)  # Opsgenie's per-second bucket
    relay_client.post("/webhooks/opsgenie/payments-og", json=escalate(), headers=auth())
    incident = delivered(fake_dx, lambda i: i.get("priority") == "P2")
    assert incident["services"] == [{"identifier": "payments"}]
    assert metric(relay_client, "retryable") == 2
    assert metric(relay_client, "success") == 1
    assert len(fake_dx.upserts(REF)) == 1


def test_a_throttled_opsgenie_holds_the_incident_until_its_window_is_over(
    make_relay: Callable[..., TestClient], fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    """Opsgenie's 429 has no ``Retry-After``, only the window it throttled. The relay's own
    backoff (0.5 s here) would spend every attempt inside that window and send DX an
    incident started at receipt, without priority; waiting out the window gets the alert."""
    relay = make_relay(retry_max_backoff_seconds=0.5)
    add_service(relay)
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS, priority="P1"))
    fake_opsgenie.throttle(period=2)
    relay.post("/webhooks/opsgenie/payments-og", json=escalate(), headers=auth())
    delivered(fake_dx, lambda i: True)
    first, *_ = fake_dx.upserts(REF)  # DX never saw a partial incident
    assert first["started_at"] == "2026-11-18T11:06:40.000Z"
    assert first["priority"] == "P1"
    assert first["services"] == [{"identifier": "payments"}]
    assert len(fake_opsgenie.seen(f"/v2/alerts/{ALERT}")) == 2  # throttled, then after it
    assert metric(relay, "retryable") == 1


def test_opsgenie_down_delays_delivery_a_bounded_number_of_times(
    relay_client: TestClient, fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    add_service(relay_client)
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    fake_opsgenie.fail_next(100, status=500)
    relay_client.post("/webhooks/opsgenie/payments-og", json=escalate(), headers=auth())
    incident = delivered(fake_dx, lambda i: True)
    assert "services" not in incident or incident["services"] == []
    assert metric(relay_client, "retryable") == MAX_ATTEMPTS


# --- account links -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "web"),
    [
        ("us", "https://acme.app.opsgenie.com"),
        ("eu", "https://acme.app.eu.opsgenie.com"),
        ("custom", "https://default.app.opsgenie.com"),
    ],
)
def test_alert_links_use_the_account_name(
    relay_client: TestClient,
    fake_dx: FakeDX,
    fake_opsgenie: FakeOpsgenie,
    region: Region,
    web: str,
) -> None:
    url = "https://opsgenie.test" if region == "custom" else None
    add_service(relay_client, region=region, custom_url=url)
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    relay_client.post("/webhooks/opsgenie/payments-og", json=escalate(), headers=auth())
    incident = delivered(fake_dx, lambda i: i.get("priority") == "P2")
    assert incident["source_url"] == f"{web}/alert/detail/{ALERT}/details"


@pytest.mark.parametrize(
    ("region", "web"),
    [
        ("us", "https://app.opsgenie.com"),
        ("eu", "https://app.eu.opsgenie.com"),
        ("custom", "https://default.app.opsgenie.com"),  # no region to go by
    ],
)
def test_account_lookup_failure_keeps_the_link_in_the_region(
    relay_client: TestClient, fake_dx: FakeDX, region: Region, web: str
) -> None:
    url = "https://opsgenie.test" if region == "custom" else None
    add_service(relay_client, region=region, custom_url=url, key="wrong-key")
    relay_client.post("/webhooks/opsgenie/payments-og", json=close(), headers=auth())
    incident = delivered(fake_dx, lambda i: True)
    assert incident["source_url"] == f"{web}/alert/detail/{ALERT}/details"


def test_a_team_key_links_an_eu_alert_to_the_eu_host(
    relay_client: TestClient, fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    """A team integration's key reads alerts, as README asks, but not the account; the
    default web URL is another account's, maybe in the US, where an EU alert is not."""
    add_service(relay_client, region="eu", custom_url=None)
    fake_opsgenie.team_key = True
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    relay_client.post("/webhooks/opsgenie/payments-og", json=escalate(), headers=auth())
    incident = delivered(fake_dx, lambda i: i.get("priority") == "P2")  # enriched all the same
    assert incident["source_url"] == f"https://app.eu.opsgenie.com/alert/detail/{ALERT}/details"
    assert len(fake_opsgenie.seen("/v2/account")) == 1


def test_account_name_is_cached(
    relay_client: TestClient, fake_dx: FakeDX, fake_opsgenie: FakeOpsgenie
) -> None:
    add_service(relay_client, region="eu", custom_url=None)
    for i in range(3):
        alert = f"{ALERT[:-1]}{i}"
        fake_opsgenie.add(api_alert(alert, created_ms=CREATED_MS))
        relay_client.post("/webhooks/opsgenie/payments-og", json=escalate(alert), headers=auth())
        wait_for(lambda a=alert: fake_dx.incident(f"opsgenie-{a}"))
    assert len(fake_opsgenie.seen("/v2/account")) == 1


def test_openapi_describes_the_service_webhook(relay_client: TestClient) -> None:
    paths = relay_client.get("/openapi.json").json()["paths"]
    route = paths["/webhooks/opsgenie/{service}"]
    assert "404" in route["post"]["responses"]
    assert route["parameters"][0]["name"] == "service"


# --- never breaks delivery -------------------------------------------------------------


def test_a_key_that_no_longer_decrypts_costs_enrichment_and_links_not_the_alert(
    make_relay: Callable[..., TestClient],
    fake_dx: FakeDX,
    fake_opsgenie: FakeOpsgenie,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = make_relay(secret_key=Secret("first"))
    service_id = add_service(first, region="us", custom_url=None)
    first.__exit__(None, None, None)
    fake_opsgenie.add(api_alert(ALERT, created_ms=CREATED_MS))
    caplog.set_level(logging.INFO)

    second = make_relay(secret_key=Secret("second"))  # RELAY_SECRET_KEY changed
    response = second.post(f"/webhooks/opsgenie/{service_id}", json=escalate(), headers=auth())
    assert response.status_code == 202, response.text
    incident = delivered(fake_dx, lambda i: True)
    assert incident["source_url"].startswith("https://app.opsgenie.com/")  # its region's
    assert metric(second, "skipped") == 1
    assert fake_opsgenie.requests == []
    said = [r for r in caplog.records if "RELAY_SECRET_KEY" in str(getattr(r, "error", ""))]
    assert {(r.name, r.levelname) for r in said} == {
        ("service.enrichment", "WARNING"),
        ("service.accounts", "WARNING"),
    }
    assert all(r.exc_info is None for r in said)
    assert KEY not in caplog.text


class BrokenObjects:
    """A service-object source that fails the way a real one can."""

    def __init__(self, error: Exception, service: Any = None) -> None:
        self.error = error
        self.service = service

    async def get_service_object(self, id: str) -> Any:
        if self.service is not None:
            return self.service
        raise self.error


def bare_pending() -> Pending:
    state = fold(None, OpsgenieEvent(action="Escalate", alert_id=ALERT, stamp_ns=1))
    return Pending(
        reference_id=REF,
        service_id="svc-1",
        state=state,
        version=1,
        attempts=0,
        ever_delivered=False,
        pending_since=0.0,
    )


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (SecretKeyError("RELAY_SECRET_KEY cannot decrypt"), "skipped"),
        (StoreUnavailable("locked"), "skipped"),
        (RuntimeError("bug"), "permanent"),
    ],
)
def test_enricher_never_raises(error: Exception, outcome: str) -> None:
    metrics = Metrics(CollectorRegistry())

    pending = bare_pending()

    async def main() -> Pending | None:
        async with httpx.AsyncClient() as http:
            enrich = Enricher(
                store=None,  # type: ignore[arg-type]  # never reached
                objects=BrokenObjects(error),
                http=http,
                metrics=metrics,
                max_backoff=1.0,
            )
            return await enrich(pending)

    assert asyncio.run(main()) is pending  # delivered as it is
    value = metrics.registry.get_sample_value(
        "relay_enrichment_requests_total", {"outcome": outcome}
    )
    assert value == 1


def test_accounts_fall_back_when_the_store_or_the_url_fails(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(opsgenie_web_url="https://default.app.opsgenie.com")
    cipher = KeyCipher(Fernet.generate_key())
    bad_url = ServiceObject(
        id="svc-1",
        name="x",
        region="custom",
        custom_url="https://opsgenie.test",
        sealed_key=SealedKey(cipher.encrypt("k"), cipher),
        created_at=0.0,
        updated_at=0.0,
    )

    async def main() -> list[str]:
        # "us" with a transport that raises a non-httpx error: the link still falls back.
        async with httpx.AsyncClient(transport=httpx.MockTransport(_explode)) as http:
            broken = Accounts(settings, BrokenObjects(SecretKeyError("no")), http)
            us = Accounts(
                settings,
                BrokenObjects(RuntimeError(), service=replace(bad_url, region="us")),
                http,
            )
            return [
                (await broken.account("svc-1")).web_url,
                (await us.account("svc-1")).web_url,
            ]

    # No service object to go by: the default. A "us" one: its region's host.
    assert asyncio.run(main()) == ["https://default.app.opsgenie.com", "https://app.opsgenie.com"]


def _explode(request: httpx.Request) -> httpx.Response:
    raise ValueError("not an httpx error")


def test_changing_a_service_object_forgets_its_cached_account(relay_client: TestClient) -> None:
    service_id = add_service(relay_client, region="eu", custom_url=None)
    accounts = handles(relay_client.app).accounts
    assert relay_client.portal is not None
    before = relay_client.portal.call(accounts.account, service_id)
    assert before.web_url == "https://acme.app.eu.opsgenie.com"
    response = relay_client.patch(
        f"/api/v2/integration/opsgenie/services/{service_id}",
        headers={"DD-API-KEY": ADMIN[0], "DD-APPLICATION-KEY": ADMIN[1]},
        json={
            "data": {
                "type": "opsgenie-service",
                "id": service_id,
                # A new region is a new destination: the key comes along (issue 16).
                "attributes": {"region": "us", "opsgenie_api_key": KEY},
            }
        },
    )
    assert response.status_code == 200, response.text
    after = relay_client.portal.call(accounts.account, service_id)
    assert after.web_url == "https://acme.app.opsgenie.com"


def test_an_account_read_across_a_change_elsewhere_is_not_cached(
    make_settings: Callable[..., Settings],
) -> None:
    """Another replica's PATCH arrives as ``forget``/``forget_all`` (the store's
    notification) while a lookup waits for the store: what it read is not kept."""
    custom = ServiceObject(
        id="svc-1",
        name="x",
        region="custom",
        custom_url="https://opsgenie.test",
        sealed_key=None,
        created_at=0.0,
        updated_at=0.0,
    )
    reads: list[str] = []

    class SlowObjects:
        def __init__(self) -> None:
            self.during: Callable[[], None] | None = None

        async def get_service_object(self, id: str) -> ServiceObject:
            reads.append(id)
            if self.during is not None:
                self.during()  # the change lands while this read is under way
                self.during = None
            return custom

    async def main() -> int:
        objects = SlowObjects()
        async with httpx.AsyncClient() as http:
            accounts = Accounts(make_settings(), objects, http)
            objects.during = accounts.forget_all
            await accounts.account("svc-1")  # read across a change: not cached
            await accounts.account("svc-1")  # read again, cached now
            await accounts.account("svc-1")
            accounts.forget_all()  # the listening connection dropped: anything may have
            await accounts.account("svc-1")
            objects.during = lambda: accounts.forget("svc-1")
            accounts.forget("svc-1")
            await accounts.account("svc-1")  # across a change of that one: not cached
            await accounts.account("svc-1")
        return len(reads)

    assert asyncio.run(main()) == 5
