"""Backfill: a service object's recent alerts from the Alert API reach DX through the outbox."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.datastructures import Secret
from starlette.testclient import TestClient

import service.backfill
from service.admin_client import backfill_text, progress_line, run_backfill
from service.app import create_app, handles
from service.backfill import MAX_BACKOFF, MAX_RETRY_AFTER, Backfill, retry_delay
from service.backfill_api import NDJSON
from service.errors import CommandFailed
from service.settings import Settings
from service.store import Incoming, ServiceObject
from service.store.sqlite import SQLiteStore
from service.translate import iso8601
from tests.conftest import DX_TOKEN, auth, sample
from tests.fakes.dx import FakeDX
from tests.fakes.opsgenie import NOT_LISTED, FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for
from tests.test_openapi import conforms

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
def opsgenie_transport(opsgenie: FakeOpsgenie) -> httpx.AsyncBaseTransport:
    """How the relay reaches Opsgenie: the fake, unless a test puts something before it."""
    return httpx.ASGITransport(app=opsgenie.app)


@pytest.fixture
def paging() -> dict[str, Any]:
    """``Backfill``'s knobs in the apps ``serve`` builds. The fixtures that shrink them
    (``small_pages``...) must come before ``client`` in a test's arguments."""
    return {}


@pytest.fixture
def serve(
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    opsgenie_transport: httpx.AsyncBaseTransport,
    paging: dict[str, Any],
) -> Callable[..., contextlib.AbstractContextManager[TestClient]]:
    """A relay on the test's database while the block runs; ``overrides`` change settings."""
    transport = HostRouter(
        {
            "dx.test": httpx.ASGITransport(app=fake_dx.app),
            "api.eu.opsgenie.com": opsgenie_transport,
        }
    )

    @contextlib.contextmanager
    def relay(**overrides: Any) -> Iterator[TestClient]:
        settings = make_settings(
            dx_base_url="http://dx.test",
            dx_token=Secret(DX_TOKEN),
            api_key=Secret("api"),
            app_key=Secret("app"),
            readonly_app_key=Secret("read"),
            **overrides,
        )
        app = create_app(
            settings,
            transport=transport,
            registry=CollectorRegistry(),
            backfill=functools.partial(Backfill, **paging),
        )
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    return relay


def add_payments(client: TestClient) -> None:
    service = {
        "data": {
            "type": "opsgenie-service",
            "attributes": {"name": "payments", "region": "eu", "opsgenie_api_key": KEY},
        }
    }
    assert client.post(SERVICES, json=service, headers=FULL).status_code == 201


@pytest.fixture
def client(
    serve: Callable[..., contextlib.AbstractContextManager[TestClient]],
) -> Iterator[TestClient]:
    with serve() as client:
        add_payments(client)
        yield client


def run(client: TestClient, headers: dict[str, str] = FULL, **body: Any) -> httpx.Response:
    document = {"service": "payments", "since": "7d", **body}
    response: httpx.Response = client.post(PATH, json=document, headers=headers)
    return response


def test_dry_run_then_backfill_delivers(
    client: TestClient, fake_dx: FakeDX, opsgenie: FakeOpsgenie
) -> None:
    now_ms = int(time.time() * 1000)
    for n in range(3):
        opsgenie.add(api_alert(f"missed-{n}", created_ms=now_ms - 3600_000 + n))

    dry = run(client, dry_run=True)
    assert dry.status_code == 200
    conforms(dry, PATH, "post")
    report = dry.json()["data"]
    assert report["dry_run"] is True
    assert report["counts"] == {"new": 3}
    assert fake_dx.requests == []
    query = opsgenie.seen("/v2/alerts")[0].query["query"]
    assert query.startswith("createdAt>")
    assert int(query.removeprefix("createdAt>")) < now_ms - 6 * 86400_000  # since 7d
    assert opsgenie.seen("/v2/alerts")[0].query["order"] == "asc"

    accepted = run(client)
    conforms(accepted, PATH, "post")
    real = accepted.json()["data"]
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


def test_services_from_alert_details_reach_dx(
    client: TestClient, fake_dx: FakeDX, opsgenie: FakeOpsgenie
) -> None:
    """Opsgenie lists alerts without ``details``: each new one is read whole before folding."""
    now_ms = int(time.time() * 1000)
    opsgenie.add(
        api_alert("detailed", created_ms=now_ms - 60_000, tags=["env:prod"], entity="db-7")
    )
    report = run(client).json()["data"]
    assert report["counts"] == {"accepted": 1}
    incident = wait_for(lambda: fake_dx.incident("opsgenie-detailed"), message="incident")
    assert incident["services"] == [{"identifier": "payments"}]  # details {"service": ...}
    assert incident["metadata"]["entity"] == "db-7"  # also left out of the list
    assert [r.query for r in opsgenie.seen("/v2/alerts/detailed")] == [{"identifierType": "id"}]

    again = run(client).json()["data"]
    assert again["counts"] == {"duplicate": 1}
    assert len(opsgenie.seen("/v2/alerts/detailed")) == 1  # held unchanged: no second read


def test_an_alert_folded_from_the_list_alone_is_read_whole_on_the_next_run(
    client: TestClient, fake_dx: FakeDX, opsgenie: FakeOpsgenie
) -> None:
    """Earlier backfills folded the reduced list item: a rerun repairs those incidents."""
    listed = api_alert("listed", created_ms=int(time.time() * 1000) - 60_000, tags=["env:prod"])
    opsgenie.add(listed)
    reduced = {k: v for k, v in listed.items() if k not in NOT_LISTED}
    raw = json.dumps(reduced, sort_keys=True)
    store = handles(client.app).store
    stale = Incoming(
        reference_id="opsgenie-listed",
        alert_id="listed",
        action="Fetched",
        service_id=None,
        dedup_key="as-an-earlier-backfill-stored-it",
        raw=raw,
        received_at=time.time(),
    )
    assert client.portal is not None
    client.portal.call(store.accept, stale)
    wait_for(lambda: fake_dx.incident("opsgenie-listed"), message="incident without details")

    assert run(client, dry_run=True).json()["data"]["counts"] == {"known": 1}
    assert opsgenie.seen("/v2/alerts/listed") == []  # a dry run reads no alert
    assert run(client).json()["data"]["counts"] == {"accepted": 1}
    wait_for(
        lambda: (
            (fake_dx.incident("opsgenie-listed") or {}).get("services")
            == [{"identifier": "payments"}]
        ),
        message="services from details",
    )


def test_an_alert_deleted_after_it_was_listed_is_reported(
    client: TestClient, opsgenie: FakeOpsgenie
) -> None:
    now_ms = int(time.time() * 1000)
    opsgenie.add(api_alert("kept", created_ms=now_ms - 2000))
    opsgenie.add(api_alert("gone", created_ms=now_ms - 1000))

    opsgenie.fail_next(1, status=404, path="/v2/alerts/gone")  # deleted once listed
    incomplete = run(client)
    conforms(incomplete, PATH, "post")
    report = incomplete.json()["data"]
    assert report["counts"] == {"accepted": 1, "deleted": 1}
    assert [a["outcome"] for a in report["alerts"]] == ["accepted", "deleted"]


def test_reading_an_alert_waits_out_rate_limits_like_a_page(
    client: TestClient, opsgenie: FakeOpsgenie
) -> None:
    opsgenie.add(api_alert("busy", created_ms=int(time.time() * 1000) - 1000))
    opsgenie.rate_limit_next(2, retry_after=0, path="/v2/alerts/busy")
    report = run(client).json()["data"]
    assert report["counts"] == {"accepted": 1}
    assert len(opsgenie.seen("/v2/alerts/busy")) == 3

    opsgenie.add(api_alert("busy", created_ms=int(time.time() * 1000) - 1000, message="changed"))
    opsgenie.fail_next(service.backfill.ATTEMPTS, path="/v2/alerts/busy")
    exhausted = run(client)
    assert exhausted.status_code == 502
    assert exhausted.json()["errors"][0].startswith(
        f"Opsgenie alert busy failed {service.backfill.ATTEMPTS} times"
    )


class WithoutPaging(httpx.AsyncBaseTransport):
    """Opsgenie's list answers without their ``paging`` links."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path != "/v2/alerts" or response.status_code != 200:
            return response
        document = json.loads(await response.aread())
        del document["paging"]
        return httpx.Response(200, json=document)


class TestWithoutPagingLinks:
    @pytest.fixture
    def opsgenie_transport(self, opsgenie: FakeOpsgenie) -> httpx.AsyncBaseTransport:
        return WithoutPaging(httpx.ASGITransport(app=opsgenie.app))

    def test_a_full_page_means_there_may_be_more(
        self, small_pages: int, client: TestClient, opsgenie: FakeOpsgenie
    ) -> None:
        """``paging.next`` is Opsgenie's word for more; a full page is the relay's own."""
        now_ms = int(time.time() * 1000)
        for n in range(2 * small_pages + 2):
            opsgenie.add(api_alert(f"f-{n:02}", created_ms=now_ms - 1000 + n))
        report = run(client, dry_run=True).json()["data"]
        assert report["counts"] == {"new": 2 * small_pages + 2}
        assert [r.query["offset"] for r in opsgenie.seen("/v2/alerts")] == ["0", "5", "10"]


def test_refusals(client: TestClient, opsgenie: FakeOpsgenie) -> None:
    assert run(client, service="nobody").status_code == 404
    assert run(client, since="soon").status_code == 400
    assert run(client, since=-5).status_code == 400
    assert run(client, dry_run="yes").status_code == 400
    typo = run(client, dryRun=True)  # a dry run asked for so would run for real
    assert (typo.status_code, typo.json()) == (
        400,
        {"errors": ["body: only service, since, dry_run are allowed"]},
    )
    assert run(client, headers=READ).status_code == 403
    large = run(client, service="x" * 1024 * 1024)
    assert large.status_code == 413
    conforms(large, PATH, "post")
    opsgenie.fail_next(1, status=400, path="/v2/alerts")  # not worth asking again: at once
    failed = run(client)
    assert failed.status_code == 502
    conforms(failed, PATH, "post")
    assert "Opsgenie" in failed.json()["errors"][0]
    opsgenie.rate_limit_next(service.backfill.ATTEMPTS, retry_after=0, path="/v2/alerts")
    exhausted = run(client)
    assert exhausted.status_code == 502
    assert f"failed {service.backfill.ATTEMPTS} times" in exhausted.json()["errors"][0]


def admin_count(client: TestClient, status: str) -> float:
    registry = handles(client.app).metrics.registry
    labels = {"route": "backfill", "status": status}
    return float(registry.get_sample_value("relay_admin_requests_total", labels) or 0.0)


@pytest.mark.parametrize(
    "since", ["366d", "99999999999d", 1e308, 10**400], ids=["366d", "huge", "1e308", "10**400"]
)
def test_since_further_back_than_a_year_is_a_400_naming_the_field(
    client: TestClient, opsgenie: FakeOpsgenie, since: object
) -> None:
    for accept in ("application/json", NDJSON):
        refused = run(client, since=since, headers={**FULL, "Accept": accept})
        assert refused.status_code == 400
        conforms(refused, PATH, "post")
        assert refused.json() == {"errors": ["since: at most 365d back"]}
    assert admin_count(client, "400") == 2
    assert admin_count(client, "500") == 0
    assert opsgenie.requests == []


def test_since_infinity_is_a_400(client: TestClient) -> None:
    """Python's JSON parser takes ``Infinity``; JSON does not, so the body is refused."""
    body = b'{"service": "payments", "since": Infinity}'
    refused = client.post(PATH, content=body, headers={**FULL, "Content-Type": "application/json"})
    assert refused.status_code == 400
    assert refused.json() == {"errors": ["body: not valid JSON"]}


def test_since_past_a_year_is_a_400(client: TestClient) -> None:
    body = b'{"service": "payments", "since": 1e308}'
    refused = client.post(PATH, content=body, headers={**FULL, "Content-Type": "application/json"})
    assert refused.status_code == 400
    assert refused.json() == {"errors": ["since: at most 365d back"]}


def test_a_year_back_is_allowed(client: TestClient, opsgenie: FakeOpsgenie) -> None:
    before_ms = int(time.time() * 1000)
    assert run(client, since="365d", dry_run=True).status_code == 200
    query = opsgenie.seen("/v2/alerts")[0].query["query"]
    assert int(query.removeprefix("createdAt>")) < before_ms - 364 * 86400_000


class BrokenStore(SQLiteStore):
    """A store with a bug in one read: what the relay does with an error nobody named."""

    async def find_service_object(self, id_or_name: str) -> ServiceObject | None:
        raise RuntimeError("a bug")


def test_an_unexpected_error_is_counted_as_500(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(api_key=Secret("api"), app_key=Secret("app"))
    store = BrokenStore(tmp_path / "relay.db", clock=time.time)
    app = create_app(settings, store=store, registry=CollectorRegistry())
    with TestClient(app, raise_server_exceptions=False) as client:
        failed = run(client)
        assert failed.status_code == 500
        assert failed.json() == {"errors": ["internal error"]}
        assert admin_count(client, "500") == 1


def test_a_key_that_no_longer_decrypts_is_a_clear_409(
    serve: Callable[..., contextlib.AbstractContextManager[TestClient]],
    opsgenie: FakeOpsgenie,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(secret_key=Secret("first")) as first:
        add_payments(first)
    caplog.set_level(logging.INFO)
    with serve(secret_key=Secret("second")) as second:  # RELAY_SECRET_KEY changed
        for accept in ("application/json", NDJSON):
            refused = run(second, headers={**FULL, "Accept": accept})
            assert refused.status_code == 409, refused.text
            conforms(refused, PATH, "post")
            assert "payments" in refused.json()["errors"][0]
            assert "RELAY_SECRET_KEY" in refused.json()["errors"][0]
    assert opsgenie.requests == []
    said = [r for r in caplog.records if r.name == "service.backfill"]
    assert [r.levelname for r in said] == ["WARNING", "WARNING"]
    assert "RELAY_SECRET_KEY" in said[0].__dict__["error"]
    assert KEY not in caplog.text


def plant_service(client: TestClient, **stored: Any) -> None:
    """A service object as a build that checked less could have stored it: straight into
    the store, past the services API's rules."""
    store = handles(client.app).store
    assert client.portal is not None
    values: dict[str, Any] = {"name": "payments", "region": "eu", "custom_url": None, **stored}
    create = functools.partial(store.create_service_object, id=str(uuid.uuid4()), **values)
    client.portal.call(create)


@pytest.mark.parametrize(
    ("stored", "field"),
    [
        ({"api_key": Secret("cl\u00e9-genie-key")}, "opsgenie_api_key"),
        ({"api_key": Secret("genie-key\r\nX-Injected: 1")}, "opsgenie_api_key"),
        (
            {
                "api_key": Secret(KEY),
                "region": "custom",
                "custom_url": "https://ops:hunter2@api.eu.opsgenie.com",
            },
            "custom_url",
        ),
        (
            {"api_key": Secret(KEY), "region": "custom", "custom_url": "https://2130706433"},
            "custom_url",
        ),
    ],
)
def test_a_key_or_url_stored_before_they_were_checked_is_a_clear_409_never_a_500(
    serve: Callable[..., contextlib.AbstractContextManager[TestClient]],
    opsgenie: FakeOpsgenie,
    stored: dict[str, Any],
    field: str,
) -> None:
    with serve() as client:
        plant_service(client, **stored)
        for accept in ("application/json", NDJSON):
            refused = run(client, headers={**FULL, "Accept": accept})
            assert refused.status_code == 409, refused.text
            [error] = refused.json()["errors"]
            assert "payments" in error
            assert f"data.attributes.{field}" in error
            assert "hunter2" not in error
            assert "genie-key" not in error
    assert opsgenie.requests == []


def test_retry_delay_honours_retry_after_else_backs_off_with_jitter() -> None:
    assert retry_delay(0, 2.5, lambda: 0.99) == 2.5
    assert retry_delay(3, 0.0, lambda: 0.99) == 0.0
    assert retry_delay(0, 10_000.0, lambda: 0.5) == MAX_RETRY_AFTER
    assert retry_delay(0, None, lambda: 1.0) == 0.5
    assert retry_delay(2, None, lambda: 1.0) == 2.0
    assert retry_delay(2, None, lambda: 0.25) == 0.5  # full jitter
    assert retry_delay(20, None, lambda: 1.0) == MAX_BACKOFF
    assert retry_delay(20, None, lambda: 0.0) == 0.0


@pytest.fixture
def small_pages(paging: dict[str, Any]) -> int:
    """Five alerts a page, so a dozen alerts make several pages."""
    paging["page_size"] = 5
    return 5


def test_rate_limit_and_outage_mid_way_are_waited_out(
    small_pages: int, client: TestClient, fake_dx: FakeDX, opsgenie: FakeOpsgenie
) -> None:
    now_ms = int(time.time() * 1000)
    for n in range(12):
        opsgenie.add(api_alert(f"r-{n:02}", created_ms=now_ms - 3600_000 + n))
    answered: dict[int, float] = {}

    async def before_list(offset: int) -> None:
        answered.setdefault(offset, time.monotonic())
        if offset == small_pages:  # page 2 answers; page 3 is refused twice first
            opsgenie.rate_limit_next(1, retry_after=1.0, path="/v2/alerts")
            opsgenie.fail_next(1, status=503, path="/v2/alerts")

    opsgenie.before_list = before_list
    response = run(client)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["counts"] == {"accepted": 12}
    offsets = [r.query["offset"] for r in opsgenie.seen("/v2/alerts")]
    assert offsets == ["0", "5", "10", "10", "10"]
    assert answered[10] - answered[5] >= 1.0  # Retry-After honoured (then a short backoff)
    for n in range(12):
        wait_for(lambda n=n: fake_dx.incident(f"opsgenie-r-{n:02}"), message=f"r-{n:02}")


@pytest.fixture
def small_window(paging: dict[str, Any], small_pages: int, opsgenie: FakeOpsgenie) -> int:
    """Opsgenie's 20,000-alert listing window (``offset + limit``) as four pages of five."""
    paging["list_window"] = 4 * small_pages
    opsgenie.list_window = 4 * small_pages
    return 4 * small_pages


def test_lists_past_opsgenies_window_from_the_last_created_at(
    small_window: int, client: TestClient, opsgenie: FakeOpsgenie
) -> None:
    """Oldest first, the alerts past the window are the newest: none may be left out."""
    base_ms = int(time.time() * 1000) - 3600_000
    created = [base_ms + n for n in range(47)]
    created[17:23] = [base_ms + 17] * 6  # one millisecond across the window's edge
    for n, created_ms in enumerate(created):
        opsgenie.add(api_alert(f"k-{n:02}", created_ms=created_ms))

    report = run(client).json()["data"]
    assert report["counts"] == {"accepted": 47}
    assert sorted(a["alert_id"] for a in report["alerts"]) == [f"k-{n:02}" for n in range(47)]
    assert (report["complete"], report["warnings"]) == (True, [])
    lists = opsgenie.seen("/v2/alerts")
    assert all(int(r.query["offset"]) + int(r.query["limit"]) <= small_window for r in lists)
    queries = [r.query["query"] for r in lists if r.query["offset"] == "0"]
    assert queries[1:] == [f"createdAt>{base_ms + 16}", f"createdAt>{base_ms + 35}"]


def test_a_millisecond_holding_a_whole_window_is_reported_and_passed(
    small_window: int, client: TestClient, opsgenie: FakeOpsgenie
) -> None:
    base_ms = int(time.time() * 1000) - 3600_000
    for n in range(small_window + 5):
        opsgenie.add(api_alert(f"m-{n:02}", created_ms=base_ms))
    for n in range(3):
        opsgenie.add(api_alert(f"later-{n}", created_ms=base_ms + 1 + n))

    report = run(client, dry_run=True).json()["data"]
    listed = [a["alert_id"] for a in report["alerts"]]
    assert len(listed) == small_window + 3
    assert listed[-3:] == ["later-0", "later-1", "later-2"]
    assert report["complete"] is False
    assert report["warnings"] == [
        f"{small_window} alerts or more created at {iso8601(base_ms * 1_000_000)} (one"
        f" millisecond): Opsgenie lists {small_window} a query, any more unread"
    ]
    assert opsgenie.seen("/v2/alerts")[-1].query["query"] == f"createdAt>{base_ms}"


class FirstQueryOnly(httpx.AsyncBaseTransport):
    """An Opsgenie whose listing ignores every ``query`` after the first one."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._first: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/alerts":
            self._first = self._first or request.url.params["query"]
            request.url = request.url.copy_set_param("query", self._first)
        return await self._inner.handle_async_request(request)


class TestAListingThatMakesNoProgress:
    @pytest.fixture
    def opsgenie_transport(self, opsgenie: FakeOpsgenie) -> httpx.AsyncBaseTransport:
        return FirstQueryOnly(httpx.ASGITransport(app=opsgenie.app))

    def test_stops_and_says_so(
        self, small_pages: int, small_window: int, client: TestClient, opsgenie: FakeOpsgenie
    ) -> None:
        base_ms = int(time.time() * 1000) - 3600_000
        for n in range(small_window + 5):
            opsgenie.add(api_alert(f"n-{n:02}", created_ms=base_ms + n))
        report = run(client, dry_run=True).json()["data"]
        assert report["counts"] == {"new": small_window}
        assert report["complete"] is False
        [warning] = report["warnings"]
        assert warning.endswith(
            f"made no progress past {small_window} alerts; those after them were not listed"
        )
        assert len(opsgenie.seen("/v2/alerts")) == 2 * small_window // small_pages


def test_the_cli_says_what_a_backfill_left_out() -> None:
    report = {
        "service": "payments",
        "since": "2026-11-16T09:00:00.000Z",
        "dry_run": False,
        "complete": False,
        "warnings": ["1 alerts deleted in Opsgenie before being read"],
        "counts": {"accepted": 1, "deleted": 1},
        "alerts": [],
    }
    assert backfill_text(report).splitlines() == [
        "payments: alerts created since 2026-11-16T09:00:00.000Z folded: 1 accepted, 1 deleted",
        "INCOMPLETE: 1 alerts deleted in Opsgenie before being read",
    ]
    whole = {**report, "complete": True, "warnings": [], "counts": {"accepted": 1}}
    assert "INCOMPLETE" not in backfill_text(whole)


def webhook(action: str, alert_id: str, created_ms: int, updated_ms: int) -> dict[str, Any]:
    """Opsgenie's sample ``action`` webhook for ``alert_id`` (``updatedAt`` in nanoseconds)."""
    body = copy.deepcopy(sample(action))
    body["alert"].update(
        alertId=alert_id,
        alias=f"alias-{alert_id}",
        createdAt=created_ms,
        updatedAt=updated_ms * 1_000_000,
        message="disk full on db-1",
    )
    return body


def test_webhooks_racing_the_backfill_leave_each_alert_once_in_its_latest_state(
    small_pages: int, client: TestClient, fake_dx: FakeDX, opsgenie: FakeOpsgenie
) -> None:
    base_ms = int(time.time() * 1000) - 3600_000
    created = {f"w-{n:02}": base_ms + n * 1000 for n in range(12)}
    for alert_id, created_ms in created.items():
        opsgenie.add(api_alert(alert_id, created_ms=created_ms))
    # Opsgenie's copy is newer than the Create webhook that arrived before the backfill.
    opsgenie.add(
        api_alert(
            "w-02", created_ms=created["w-02"], updated_ms=created["w-02"] + 500, message="new"
        )
    )

    def send(action: str, alert_id: str, after_ms: int) -> dict[str, Any]:
        """Close in Opsgenie's copy too (as the real account would), then the webhook."""
        created_ms = created[alert_id]
        if action == "Close":
            closed = api_alert(
                alert_id,
                created_ms=created_ms,
                updated_ms=created_ms + after_ms,
                status="closed",
                close_after_ms=after_ms,
            )
            opsgenie.add(closed)
        return webhook(action, alert_id, created_ms, created_ms + after_ms)

    for alert_id in ("w-00", "w-01", "w-02", "w-08"):
        stale = webhook("Create", alert_id, created[alert_id], created[alert_id])
        assert client.post("/webhooks/opsgenie", json=stale, headers=auth()).status_code < 300

    async def during(offset: int) -> None:
        """Between pages: w-01 (already folded) and w-08 (on this page) close meanwhile."""
        if offset != small_pages:
            return
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as relay:
            for alert_id in ("w-01", "w-08"):
                answer = await relay.post(
                    "/webhooks/opsgenie", json=send("Close", alert_id, 2000), headers=auth()
                )
                assert answer.status_code < 300

    opsgenie.before_list = during
    first = run(client).json()["data"]
    assert "invalid" not in first["counts"]
    assert len(first["alerts"]) == 12
    opsgenie.before_list = None
    # Opsgenie's copy of w-01 changed after its page was read: the next run learns it...
    again = run(client).json()["data"]
    assert [a["alert_id"] for a in again["alerts"] if a["outcome"] == "accepted"] == ["w-01"]
    # ...and a run with nothing new in Opsgenie changes nothing.
    third = run(client).json()["data"]
    assert "accepted" not in third["counts"]
    closed_after = send("Close", "w-10", 3000)
    assert client.post("/webhooks/opsgenie", json=closed_after, headers=auth()).status_code < 300

    resolved = {"w-01", "w-08", "w-10"}

    def latest() -> bool:
        for alert_id in created:
            incident = fake_dx.incident(f"opsgenie-{alert_id}")
            if incident is None or (incident["resolved_at"] is not None) != (alert_id in resolved):
                return False
        return True

    wait_for(latest, message="every alert in DX in its latest state")
    assert sorted(fake_dx.incidents) == sorted(f"opsgenie-{a}" for a in created)
    incident = fake_dx.incident("opsgenie-w-02")
    assert incident is not None
    assert incident["name"] == "new"


@pytest.fixture
def progress_every_alert(paging: dict[str, Any]) -> None:
    paging["progress_every"] = 0.0


def test_a_slow_page_streams_progress_between_its_alerts(
    progress_every_alert: None, small_pages: int, client: TestClient, opsgenie: FakeOpsgenie
) -> None:
    """Each alert of a page may wait out a throttled minute: the stream must not fall
    silent for a whole page, or the CLI's read timeout ends the run. With the interval
    at 0, every alert read is followed by a line."""
    now_ms = int(time.time() * 1000)
    for n in range(7):
        opsgenie.add(api_alert(f"p-{n}", created_ms=now_ms - 1000 + n))
    body = {"service": "payments", "since": "7d"}
    response = client.post(PATH, json=body, headers={**FULL, "Accept": NDJSON})
    lines = [json.loads(line) for line in response.text.splitlines()]
    seen = [line["progress"]["alerts_seen"] for line in lines[:-1]]
    assert seen == [1, 2, 3, 4, 5, 5, 6, 7, 7]  # each alert, then each page's own line
    assert lines[-1]["data"]["counts"] == {"accepted": 7}


def test_streams_a_progress_line_per_page(
    small_pages: int, client: TestClient, opsgenie: FakeOpsgenie
) -> None:
    now_ms = int(time.time() * 1000)
    for n in range(7):
        opsgenie.add(api_alert(f"s-{n}", created_ms=now_ms - 1000 + n))
    body = {"service": "payments", "since": "7d"}
    response = client.post(PATH, json=body, headers={**FULL, "Accept": NDJSON})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(NDJSON)
    conforms(response, PATH, "post")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["progress"]["page"] for line in lines[:-1]] == [1, 2]
    assert lines[1]["progress"] == {
        "page": 2,
        "alerts_seen": 7,
        "counts": {"accepted": 7},
        "retries": 0,
    }
    assert lines[-1]["data"]["counts"] == {"accepted": 7}
    unknown = client.post(
        PATH, json={**body, "service": "nobody"}, headers={"Accept": NDJSON, **FULL}
    )
    assert unknown.status_code == 404  # refused before streaming starts
    conforms(unknown, PATH, "post")

    opsgenie.before_list = None
    opsgenie.fail_next(1, status=400, path="/v2/alerts")
    failed = client.post(PATH, json=body, headers={**FULL, "Accept": NDJSON})
    assert failed.status_code == 200  # the first page failed after the 200 was sent
    conforms(failed, PATH, "post")
    last = json.loads(failed.text.splitlines()[-1])
    assert last["status"] == 502
    assert "Opsgenie" in last["errors"][0]


class Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


class StreamingRelay:
    """``RelayAPI.stream`` replaying lines, for the CLI's renderer."""

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        self.lines = lines

    def stream(self, path: str, body: dict[str, Any], **_: Any) -> Iterator[dict[str, Any]]:
        yield from self.lines


PROGRESS = [
    {"progress": {"page": 1, "alerts_seen": 100, "counts": {"accepted": 100}, "retries": 0}},
    {
        "progress": {
            "page": 2,
            "alerts_seen": 130,
            "counts": {"accepted": 120, "duplicate": 10},
            "retries": 1,
        }
    },
]
REPORT = {"data": {"counts": {"accepted": 120, "duplicate": 10}}}


def test_progress_line() -> None:
    assert progress_line(PROGRESS[0]["progress"]) == "backfill: page 1, 100 alerts (100 accepted)"
    assert progress_line(PROGRESS[1]["progress"]) == (
        "backfill: page 2, 130 alerts (120 accepted, 10 duplicate), 1 retries"
    )


def test_cli_draws_progress_only_on_a_terminal() -> None:
    tty = Terminal(tty=True)
    report = run_backfill(StreamingRelay([*PROGRESS, REPORT]), {}, tty)  # type: ignore[arg-type]
    assert report == REPORT["data"]
    drawn = tty.getvalue()
    assert drawn.count("\r") == 2
    assert drawn.endswith("10 duplicate), 1 retries\n")

    piped = Terminal(tty=False)
    run_backfill(StreamingRelay([*PROGRESS, REPORT]), {}, piped)  # type: ignore[arg-type]
    assert piped.getvalue() == ""


def test_cli_fails_on_an_error_line_after_progress() -> None:
    failure = {"errors": ["Opsgenie alert list failed 5 times: Opsgenie answered 503"]}
    tty = Terminal(tty=True)
    with pytest.raises(CommandFailed, match="backfill failed: Opsgenie"):
        run_backfill(StreamingRelay([PROGRESS[0], failure]), {}, tty)  # type: ignore[arg-type]
    assert tty.getvalue().endswith("\n")  # the prompt does not land on the progress line
    with pytest.raises(CommandFailed, match="without a report"):
        run_backfill(StreamingRelay(PROGRESS), {}, tty)  # type: ignore[arg-type]
