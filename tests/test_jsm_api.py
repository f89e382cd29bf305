"""The JSM Operations client: cloudId, Basic auth, the list envelope, errors, and ``api_for``.

The fake JSM (``tests/fakes/jsm.py``) is reached in-process through ``httpx.ASGITransport``,
which hands it every request whatever the host, so the recorded host shows where each
request was sent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.testclient import TestClient

import service.jsm_api
from service.app import create_app
from service.backfill import Backfill
from service.cli import main
from service.errors import OpsgenieAuthError, OpsgenieNotFound, OpsgeniePermanent, OpsgenieRetryable
from service.jsm_api import LIST_WINDOW, CloudIds, JsmAPI, as_opsgenie_alert
from service.opsgenie import event_from_api_alert
from service.opsgenie_api import OpsgenieAPI, api_for
from service.settings import Settings
from tests.conftest import DX_TOKEN, auth
from tests.fakes.dx import FakeDX
from tests.fakes.jsm import CLOUD_ID, FakeJsm, jsm_alert
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread
from tests.test_enrichment import HostRouter, escalate

SITE = "https://acme.atlassian.net"
CREATED_MS = 1_795_000_000_000
ALERT = "9b251e07-73c9-4907-9996-8cb53a6a20d0-1704440650350"
T = TypeVar("T")


def run(make: Callable[[httpx.AsyncClient], Awaitable[T]], fake: FakeJsm) -> T:
    async def go() -> T:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as client:
            return await make(client)

    return asyncio.run(go())


def api(client: httpx.AsyncClient, fake: FakeJsm, *, credentials: str | None = None) -> JsmAPI:
    return JsmAPI(client, SITE, credentials or fake.credentials, cloud_ids=CloudIds())


def test_an_alert_is_read_with_basic_auth_after_the_sites_cloud_id() -> None:
    fake = FakeJsm()
    fake.add(jsm_alert(ALERT, created_ms=CREATED_MS))

    async def read(client: httpx.AsyncClient) -> list[dict[str, object]]:
        jsm = api(client, fake)
        return [await jsm.get_alert(ALERT), await jsm.get_alert(ALERT)]

    first, _ = run(read, fake)
    assert first["id"] == ALERT
    assert first["details"] == {"service": "payments"}  # JSM's extraProperties
    event = event_from_api_alert(first, received_ns=0)
    assert event.details == (("service", "payments"),)
    assert event.priority == "P2"
    tenant, *reads = fake.requests
    assert (tenant.host, tenant.path, tenant.authorization) == (
        "acme.atlassian.net",
        "/_edge/tenant_info",
        None,  # the site is asked without the key
    )
    assert [(r.host, r.path) for r in reads] == [
        ("api.atlassian.com", f"/jsm/ops/api/{CLOUD_ID}/v1/alerts/{ALERT}")
    ] * 2  # the cloudId is asked once
    assert {r.authorization for r in reads} == {fake.authorization}


def test_the_list_envelope_is_values_and_links_next() -> None:
    fake = FakeJsm()
    for n in range(3):
        fake.add(jsm_alert(f"alert-{n}", created_ms=CREATED_MS + n))

    async def pages(client: httpx.AsyncClient) -> list[tuple[list[str], bool]]:
        jsm = api(client, fake)
        query = jsm.created_after(CREATED_MS - 1)
        found = [await jsm.list_alerts(query, limit=2, offset=o) for o in (0, 2)]
        return [([a["id"] for a in p.alerts], p.has_more) for p in found]

    assert run(pages, fake) == [(["alert-0", "alert-1"], True), (["alert-2"], False)]
    listed = fake.seen("/v1/alerts")[0].query
    assert listed == {
        "query": f"createdAt>{CREATED_MS - 1}",
        "size": "2",
        "offset": "0",
        "sort": "createdAt",
        "order": "asc",
    }


def test_the_listing_window_stays_below_20000() -> None:
    fake = FakeJsm()

    async def past(client: httpx.AsyncClient) -> None:
        await api(client, fake).list_alerts("createdAt>0", limit=100, offset=19_900)

    with pytest.raises(OpsgeniePermanent, match="JSM answered 400"):
        run(past, fake)
    assert LIST_WINDOW == 19_999  # what backfill plans with: offset + size <= 19,999


def test_a_wrong_credential_is_a_clear_auth_error_without_the_key() -> None:
    fake = FakeJsm()

    async def read(client: httpx.AsyncClient) -> None:
        await api(client, fake, credentials="ops@acme.example:wrong-token-9").get_alert(ALERT)

    with pytest.raises(OpsgenieAuthError) as refused:
        run(read, fake)
    assert refused.value.http_status == 401
    assert "<email>:<API token>" in refused.value.message
    assert "wrong-token-9" not in refused.value.message


def test_429_carries_retry_after_and_404_is_not_found() -> None:
    fake = FakeJsm()
    fake.rate_limit_next(1, retry_after=7)

    async def read(client: httpx.AsyncClient) -> None:
        await api(client, fake).get_alert(ALERT)

    with pytest.raises(OpsgenieRetryable) as throttled:
        run(read, fake)  # the cloudId lookup is throttled: nothing cached
    assert throttled.value.retry_after == 7.0
    with pytest.raises(OpsgenieNotFound):
        run(read, fake)


def test_a_site_without_a_cloud_id_names_the_custom_url() -> None:
    fake = FakeJsm()
    fake.fail_next(1, 404, path="/_edge/tenant_info")

    async def read(client: httpx.AsyncClient) -> None:
        await api(client, fake).get_alert(ALERT)

    with pytest.raises(OpsgeniePermanent, match="is custom_url the JSM site"):
        run(read, fake)


def test_extra_properties_become_details_unless_details_are_there() -> None:
    assert as_opsgenie_alert({"extraProperties": {"a": "1"}})["details"] == {"a": "1"}
    kept = {"details": {"b": "2"}, "extraProperties": {"a": "1"}}
    assert as_opsgenie_alert(kept) is kept


@dataclass(frozen=True)
class Service:
    id: str
    region: str
    custom_url: str | None
    api_key: Secret | None


def test_api_for_reads_a_jsm_site_with_jsm_and_anything_else_with_opsgenie() -> None:
    client = httpx.AsyncClient()
    jsm = api_for(client, Service("s", "custom", f"{SITE}/", Secret("ops@acme.example:t")))
    assert isinstance(jsm, JsmAPI)
    assert jsm.site == SITE
    genie = api_for(client, Service("s", "custom", "https://og.example", Secret("a-genie-key")))
    assert isinstance(genie, OpsgenieAPI)
    with pytest.raises(OpsgeniePermanent, match="<email>:<API token>"):
        api_for(client, Service("s", "custom", SITE, Secret("a-genie-key")))


@pytest.fixture
def jsm(monkeypatch: pytest.MonkeyPatch) -> FakeJsm:
    """The site, with a cloudId cache that forgets between tests."""
    monkeypatch.setattr(service.jsm_api, "CLOUD_IDS", CloudIds())
    return FakeJsm()


@pytest.fixture
def relay_app(make_settings: Callable[..., Settings], fake_dx: FakeDX, jsm: FakeJsm) -> Starlette:
    """A relay whose upstreams are the fakes: DX, and JSM on both of its hosts."""
    site = httpx.ASGITransport(app=jsm.app)
    transport = HostRouter(
        {
            "dx.test": httpx.ASGITransport(app=fake_dx.app),
            "acme.atlassian.net": site,
            "api.atlassian.com": site,
        }
    )
    settings = make_settings(
        dx_base_url="http://dx.test",
        dx_token=Secret(DX_TOKEN),
        api_key=Secret(ADMIN["DD-API-KEY"]),
        app_key=Secret(ADMIN["DD-APPLICATION-KEY"]),
    )
    backfill = functools.partial(Backfill, page_size=2, list_window=4)
    return create_app(
        settings, transport=transport, registry=CollectorRegistry(), backfill=backfill
    )


@pytest.fixture
def relay(relay_app: Starlette) -> Iterator[TestClient]:
    with TestClient(relay_app, raise_server_exceptions=False) as client:
        yield client


ADMIN = {"DD-API-KEY": "jsm-api-key-0123456789", "DD-APPLICATION-KEY": "jsm-app-key-0123456789"}
SERVICES = "/api/v2/integration/opsgenie/services"


def add_site(client: httpx.Client, key: str) -> httpx.Response:
    attributes = {"name": "payments", "region": "custom", "custom_url": SITE}
    document = {
        "data": {"type": "opsgenie-service", "attributes": {**attributes, "opsgenie_api_key": key}}
    }
    response: httpx.Response = client.post(SERVICES, json=document, headers=ADMIN)
    return response


def test_enrichment_and_links_read_the_jsm_site(
    relay: TestClient, fake_dx: FakeDX, jsm: FakeJsm
) -> None:
    jsm.add(jsm_alert(ALERT, created_ms=CREATED_MS, tags=["env:prod"]))
    assert add_site(relay, jsm.credentials).status_code == 201
    webhook = relay.post("/webhooks/opsgenie/payments", json=escalate(ALERT), headers=auth())
    assert webhook.status_code == 202
    [upsert] = wait_for(lambda: fake_dx.upserts(f"opsgenie-{ALERT}"), message="the incident")
    assert upsert["source_url"] == f"{SITE}/jira/ops/alerts/{ALERT}"
    assert upsert["priority"] == "P2"
    assert upsert["services"] == [{"identifier": "payments"}]  # from extraProperties
    assert {r.authorization for r in jsm.seen(f"/v1/alerts/{ALERT}")} == {jsm.authorization}


def test_backfill_pages_a_jsm_site_past_its_window(
    relay: TestClient, fake_dx: FakeDX, jsm: FakeJsm
) -> None:
    base_ms = int(time.time() * 1000) - 3600_000
    for n in range(7):
        jsm.add(jsm_alert(f"alert-{n}", created_ms=base_ms + n))
    assert add_site(relay, jsm.credentials).status_code == 201
    answer = relay.post(
        "/api/v1/backfill", json={"service": "payments", "since": "1d"}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()["data"]
    assert (report["counts"], report["complete"]) == ({"accepted": 7}, True)
    lists = jsm.seen("/v1/alerts")
    assert all(int(r.query["offset"]) + int(r.query["size"]) <= 4 for r in lists)
    assert len({r.query["query"] for r in lists}) > 1  # past the window: a new query
    for n in range(7):
        wait_for(lambda n=n: fake_dx.upserts(f"opsgenie-alert-{n}"), message=f"alert-{n}")


def test_a_wrong_credential_is_a_clear_backfill_error(relay: TestClient) -> None:
    assert add_site(relay, "ops@acme.example:revoked-token-77").status_code == 201
    answer = relay.post(
        "/api/v1/backfill", json={"service": "payments", "since": "1d"}, headers=ADMIN
    )
    assert answer.status_code == 502
    [error] = answer.json()["errors"]
    assert "JSM refused the credentials (401)" in error
    assert "revoked-token-77" not in answer.text


def test_a_genie_key_for_a_jsm_site_is_a_400(relay: TestClient) -> None:
    refused = add_site(relay, "0f3c2a8e-1111-2222-3333-444455556666")
    assert refused.status_code == 400
    assert "<email>:<API token>" in refused.text
    assert "0f3c2a8e" not in refused.text


def test_the_backfill_command_recovers_a_jsm_sites_alerts(
    relay_app: Starlette,
    jsm: FakeJsm,
    fake_dx: FakeDX,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """End to end through the CLI: ``opsgenie-dx-relay backfill`` asks a relay on a socket."""
    jsm.add(jsm_alert("missed-1", created_ms=int(time.time() * 1000) - 60_000))
    with UvicornThread(relay_app) as server:
        for name, value in {
            "RELAY_URL": server.url,
            "RELAY_API_KEY": ADMIN["DD-API-KEY"],
            "RELAY_APP_KEY": ADMIN["DD-APPLICATION-KEY"],
        }.items():
            monkeypatch.setenv(name, value)
        assert add_site(httpx.Client(base_url=server.url), jsm.credentials).status_code == 201
        with pytest.raises(SystemExit) as exited:
            main(["backfill", "--service", "payments", "--since", "1d", "--json"])
        out = capsys.readouterr().out
        assert exited.value.code in (0, None), out
        assert json.loads(out)["counts"] == {"accepted": 1}
        wait_for(lambda: fake_dx.upserts("opsgenie-missed-1"), message="the backfilled incident")
