"""The automatic reconcile: missed alerts and missed closes come back from Opsgenie alone,
and from a JSM Operations site alike.

Most tests drive one ``Reconciler`` over a real SQLite store and the fake Opsgenie or
fake JSM (in process), with a clock the test moves; the last ones run the whole app, the
fake DX and the fake account with a short interval, and wait for DX to show what the
account has.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.datastructures import Secret
from starlette.testclient import TestClient

import service.jsm_api
from service.app import create_app, handles
from service.jsm_api import CloudIds, as_opsgenie_alert
from service.mapping import Rules
from service.metrics import Metrics
from service.opsgenie_api import OpsgenieAPI
from service.reconcile import Reconciler, created_since
from service.settings import Settings
from service.singleton import Lease, sole_runner
from service.store import Incoming, Reconcilable, Region, ServiceObject
from service.store.sqlite import SQLiteStore
from service.store.sqlite.reconcile_checks import OPEN_ALERTS
from service.translate import AlertState, iso8601
from tests.conftest import DX_TOKEN, auth
from tests.fakes.dx import FakeDX
from tests.fakes.jsm import CLOUD_ID, FakeJsm, jsm_alert
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for

KEY = "genie-key-reconcile"
DAY_MS = 86_400_000
FULL = {"DD-API-KEY": "api", "DD-APPLICATION-KEY": "app"}
SERVICES = "/api/v2/integration/opsgenie/services"
SITE = "https://acme.atlassian.net"


class Clock:
    """Time that moves only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    store: SQLiteStore
    upstream: FakeOpsgenie | FakeJsm
    metrics: Metrics
    clock: Clock
    reconciler: Reconciler
    service: ServiceObject
    woken: list[float]

    def ms(self, seconds_ago: float = 0.0) -> int:
        return int((self.clock.now - seconds_ago) * 1000)

    async def hold(self, alert: dict[str, Any]) -> None:
        """The relay holds ``alert`` as the Alert API gave it (folded into its row)."""
        ref = f"opsgenie-{alert['id']}"
        incoming = Incoming.fetched(
            alert,
            reference_id=ref,
            alert_id=alert["id"],
            service_id=self.service.id,
            received_at=self.clock.now,
        )
        await self.store.accept(incoming)
        await self.store.get(ref)  # an operator's read folds the inbox into the row

    async def state(self, alert_id: str) -> AlertState | None:
        held = await self.store.get(f"opsgenie-{alert_id}")
        return None if held is None else held.state

    def runs(self, outcome: str) -> float:
        return self._sample("relay_reconcile_runs_total", outcome=outcome)

    def found(self, finding: str) -> float:
        return self._sample("relay_reconcile_alerts_total", finding=finding)

    def errors(self, kind: str) -> float:
        return self._sample("relay_reconcile_api_errors_total", kind=kind)

    def _sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        assert value is not None
        return value


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path,
    upstream: FakeOpsgenie | FakeJsm,
    *,
    budget: int = 100,
    interval: float = 300.0,
    lease: Lease = sole_runner,
) -> AsyncIterator[Harness]:
    clock = Clock()
    store = SQLiteStore(tmp_path / "relay.db", clock=clock)
    await store.open()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream.app))
    metrics = Metrics(CollectorRegistry())
    woken: list[float] = []
    try:
        region: Region = "eu"
        url, key = None, KEY
        if isinstance(upstream, FakeJsm):  # a JSM site: Basic credentials, its site's URL
            region, url, key = "custom", SITE, upstream.credentials
        service = await store.create_service_object(
            id=str(uuid.uuid4()),
            name="payments",
            region=region,
            custom_url=url,
            api_key=Secret(key),
        )
        reconciler = Reconciler(
            store=store,
            http=http,
            rules=Rules(),
            metrics=metrics,
            wake=lambda: woken.append(clock.now),
            interval_seconds=interval,
            budget=budget,
            lookback_seconds=3600.0,
            clock=clock,
            lease=lease,
        )
        yield Harness(store, upstream, metrics, clock, reconciler, service, woken)
    finally:
        await http.aclose()
        await store.close()


@pytest.fixture
def opsgenie() -> FakeOpsgenie:
    return FakeOpsgenie(api_key=KEY)


@pytest.fixture
def jsm(monkeypatch: pytest.MonkeyPatch) -> FakeJsm:
    """A JSM site, with a cloudId cache that forgets between tests."""
    monkeypatch.setattr(service.jsm_api, "CLOUD_IDS", CloudIds())
    return FakeJsm()


def alert_reads(opsgenie: FakeOpsgenie) -> list[str]:
    """The alert ids read whole, in order."""
    return [r.path.rsplit("/", 1)[1] for r in opsgenie.requests if r.path.count("/") == 3]


def jsm_reads(jsm: FakeJsm) -> list[str]:
    """The alert ids read whole from the JSM site, in order."""
    prefix = f"/jsm/ops/api/{CLOUD_ID}/v1/alerts/"
    return [r.path.removeprefix(prefix) for r in jsm.requests if r.path.startswith(prefix)]


def test_the_listing_query_includes_the_first_millisecond() -> None:
    api = OpsgenieAPI(httpx.AsyncClient(), "https://api.opsgenie.com", "key")
    assert created_since(api, 1_795_000_000.0) == "createdAt>1794999999999"
    assert created_since(api, 1_795_000_000.0019) == "createdAt>1795000000000"


def test_an_alert_created_while_the_relay_was_down_appears_after_one_run(
    tmp_path: Path, opsgenie: FakeOpsgenie
) -> None:
    async def main() -> None:
        async with harness(tmp_path, opsgenie) as h:
            opsgenie.add(api_alert("never-seen", created_ms=h.ms(600), priority="P1"))
            assert await h.reconciler.reconcile(h.service) == "complete"
            state = await h.state("never-seen")
            assert state is not None
            assert state.priority is not None
            assert state.priority.value == "P1"
            assert state.details is not None  # read whole: the list leaves details out
            assert h.found("missing") == 1
            assert h.runs("complete") == 1
            assert h.woken  # the worker delivers it now, not at its next wake-up
            # Again: the listing knows it now; the open alerts' sweep reads it back (once,
            # not twice in a run), and what it reads is what the relay holds: nothing stored.
            h.clock.now += 300
            assert await h.reconciler.reconcile(h.service) == "complete"
            assert alert_reads(opsgenie) == ["never-seen", "never-seen"]
            assert len(await h.store.events("never-seen", limit=10)) == 1
            assert h.found("missing") == 1
            assert h.found("changed") == 0

    asyncio.run(main())


def test_a_missed_close_is_read_back_from_the_open_alerts(
    tmp_path: Path, opsgenie: FakeOpsgenie
) -> None:
    async def main() -> None:
        async with harness(tmp_path, opsgenie) as h:
            created = h.ms(2 * 86_400)  # long before any listing window
            await h.hold(api_alert("a-1", created_ms=created))
            opsgenie.add(
                api_alert(
                    "a-1",
                    created_ms=created,
                    updated_ms=created + 60_000,
                    status="closed",
                    close_after_ms=60_000,
                )
            )
            assert await h.reconciler.reconcile(h.service) == "complete"
            state = await h.state("a-1")
            assert state is not None
            assert state.closed_at_ns == (created + 60_000) * 10**6
            assert h.found("changed") == 1
            assert await h.store.open_references(h.service.id, limit=10) == []

    asyncio.run(main())


def test_the_budget_bounds_each_run_and_the_longest_unchecked_go_first(
    tmp_path: Path, opsgenie: FakeOpsgenie
) -> None:
    async def main() -> None:
        async with harness(tmp_path, opsgenie, budget=3) as h:
            created = h.ms(2 * 86_400)
            for name in ("a", "b", "c", "d"):
                alert = api_alert(name, created_ms=created)
                await h.hold(alert)
                opsgenie.add(alert)
            reads: list[list[str]] = []
            for _ in range(3):
                before = len(opsgenie.requests)
                assert await h.reconciler.reconcile(h.service) == "budget_spent"
                assert len(opsgenie.requests) - before == 3  # one list page, two reads
                reads.append(alert_reads(opsgenie)[-2:])
                h.clock.now += 300
            assert reads == [["a", "b"], ["c", "d"], ["a", "b"]]
            assert h.runs("budget_spent") == 3
            assert h.found("changed") == 0

    asyncio.run(main())


def test_a_429_stops_the_run_and_the_next_waits_out_the_window(
    tmp_path: Path, opsgenie: FakeOpsgenie
) -> None:
    async def main() -> None:
        async with harness(tmp_path, opsgenie) as h:
            created = h.ms(2 * 86_400)
            for name in ("a", "b"):
                await h.hold(api_alert(name, created_ms=created))
                opsgenie.add(api_alert(name, created_ms=created, status="closed"))
            opsgenie.rate_limit_next(1, path="/v2/alerts/b", retry_after=30)
            assert await h.reconciler.reconcile(h.service) == "rate_limited"
            assert h.errors("http_429") == 1
            closed_a, open_b = await h.state("a"), await h.state("b")
            assert closed_a is not None
            assert closed_a.closed
            assert open_b is not None
            assert not open_b.closed
            # Inside Opsgenie's window: no request at all.
            asked = len(opsgenie.requests)
            h.clock.now += 10
            assert await h.reconciler.reconcile(h.service) is None
            assert len(opsgenie.requests) == asked
            # After it: b, never checked, comes first; a is closed and not read again.
            h.clock.now += 25
            assert await h.reconciler.reconcile(h.service) == "complete"
            assert alert_reads(opsgenie) == ["a", "b", "b"]
            closed_b = await h.state("b")
            assert closed_b is not None
            assert closed_b.closed

    asyncio.run(main())


def test_a_5xx_stops_the_run_and_the_next_interval_resumes(
    tmp_path: Path, opsgenie: FakeOpsgenie
) -> None:
    async def main() -> None:
        async with harness(tmp_path, opsgenie) as h:
            opsgenie.add(api_alert("late", created_ms=h.ms(60)))
            opsgenie.fail_next(1, 503, path="/v2/alerts")
            assert await h.reconciler.reconcile(h.service) == "unavailable"
            assert h.errors("http_5xx") == 1
            assert await h.state("late") is None
            h.clock.now += 300  # the listing starts where the failed one did
            assert await h.reconciler.reconcile(h.service) == "complete"
            assert await h.state("late") is not None

    asyncio.run(main())


def test_a_jsm_alert_created_while_the_relay_was_down_appears_after_one_run(
    tmp_path: Path, jsm: FakeJsm
) -> None:
    """Through ``run_once``, as the interval runs it: a JSM site is one of the accounts."""

    async def main() -> None:
        async with harness(tmp_path, jsm) as h:
            jsm.add(jsm_alert("never-seen", created_ms=h.ms(600), priority="P1"))
            await h.reconciler.run_once()
            assert h.runs("complete") == 1
            assert h.found("missing") == 1
            state = await h.state("never-seen")
            assert state is not None
            assert state.priority is not None
            assert state.priority.value == "P1"
            assert state.details is not None  # read whole: extraProperties are the details
            assert state.details.value == (("service", "payments"),)
            assert h.woken
            [listed] = jsm.seen("/v1/alerts")
            assert listed.query["query"] == f"createdAt>{int((h.clock.now - 3600) * 1000) - 1}"
            assert jsm_reads(jsm) == ["never-seen"]
            assert {r.authorization for r in jsm.requests[1:]} == {jsm.authorization}

    asyncio.run(main())


def test_a_jsm_429_stops_the_run_and_the_next_waits_out_the_window(
    tmp_path: Path, jsm: FakeJsm
) -> None:
    async def main() -> None:
        async with harness(tmp_path, jsm) as h:
            created = h.ms(2 * 86_400)
            for name in ("a", "b"):
                await h.hold(as_opsgenie_alert(jsm_alert(name, created_ms=created)))
                jsm.add(jsm_alert(name, created_ms=created, status="closed"))
            b = f"/jsm/ops/api/{CLOUD_ID}/v1/alerts/b"
            jsm.rate_limit_next(1, retry_after=30, path=b)
            await h.reconciler.run_once()
            assert h.runs("rate_limited") == 1
            assert h.errors("http_429") == 1
            closed_a, open_b = await h.state("a"), await h.state("b")
            assert closed_a is not None
            assert closed_a.closed
            assert open_b is not None
            assert not open_b.closed
            # Inside the site's Retry-After: no request at all.
            asked = len(jsm.requests)
            h.clock.now += 10
            await h.reconciler.run_once()
            assert len(jsm.requests) == asked
            # After it: b, never checked, comes first; a is closed and not read again.
            h.clock.now += 25
            await h.reconciler.run_once()
            assert h.runs("complete") == 1
            assert jsm_reads(jsm) == ["a", "b", "b"]
            closed_b = await h.state("b")
            assert closed_b is not None
            assert closed_b.closed

    asyncio.run(main())


def test_a_wrong_key_is_refused_and_counted(tmp_path: Path, opsgenie: FakeOpsgenie) -> None:
    async def main() -> None:
        async with harness(tmp_path, opsgenie) as h:
            opsgenie.api_key = "another-key"
            assert await h.reconciler.reconcile(h.service) == "refused"
            assert h.errors("auth") == 1
            assert h.runs("refused") == 1

    asyncio.run(main())


def test_an_older_copy_read_while_a_close_arrives_never_reopens(
    tmp_path: Path, opsgenie: FakeOpsgenie
) -> None:
    """The read is in flight when the webhook's Close is stored: the older open copy the
    read returns folds in after it, and the alert stays closed."""

    async def main() -> None:
        async with harness(tmp_path, opsgenie) as h:
            created = h.ms(2 * 86_400)
            await h.hold(api_alert("race", created_ms=created, priority="P3"))
            opsgenie.add(
                api_alert("race", created_ms=created, updated_ms=created + 1, priority="P2")
            )
            close = {
                "action": "Close",
                "alert": {"alertId": "race", "updatedAt": (created + 2) * 10**6},
            }
            text = json.dumps(close)

            async def webhook_close_arrives(alert_id: str) -> None:
                await h.store.accept(
                    Incoming(
                        reference_id="opsgenie-race",
                        alert_id="race",
                        action="Close",
                        service_id=h.service.id,
                        dedup_key=hashlib.sha256(text.encode()).hexdigest(),
                        raw=text,
                        received_at=h.clock.now,
                    )
                )

            opsgenie.before_alert = webhook_close_arrives
            assert await h.reconciler.reconcile(h.service) == "complete"
            state = await h.state("race")
            assert state is not None
            assert state.closed_at_ns == (created + 2) * 10**6
            assert state.priority is not None
            assert state.priority.value == "P2"

    asyncio.run(main())


def test_a_replica_without_the_lease_asks_opsgenie_nothing(
    tmp_path: Path, opsgenie: FakeOpsgenie
) -> None:
    held: list[bool] = [False]

    @contextlib.asynccontextmanager
    async def lease() -> AsyncIterator[bool]:
        yield held[0]

    async def main() -> None:
        async with harness(tmp_path, opsgenie, lease=lease) as h:
            opsgenie.add(api_alert("elsewhere", created_ms=h.ms(60)))
            await h.reconciler.run_once()
            assert opsgenie.requests == []
            held[0] = True
            await h.reconciler.run_once()
            assert await h.state("elsewhere") is not None

    asyncio.run(main())


def test_open_alerts_come_off_the_partial_index(tmp_path: Path, opsgenie: FakeOpsgenie) -> None:
    async def main() -> None:
        async with harness(tmp_path, opsgenie) as h:
            assert isinstance(h.store, Reconcilable)

            def plan(conn: Any) -> str:
                rows = conn.execute(f"EXPLAIN QUERY PLAN {OPEN_ALERTS}", ("s", 5)).fetchall()
                return " ".join(str(row[-1]) for row in rows)

            assert "USING INDEX alerts_open_by_check" in await h.store.engine.read(plan)

    asyncio.run(main())


# ---- the whole app -----------------------------------------------------------------


class HostRouter(httpx.AsyncBaseTransport):
    """DX and Opsgenie both in process: each request goes to the app for its host."""

    def __init__(self, routes: dict[str, httpx.AsyncBaseTransport]) -> None:
        self._routes = routes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._routes[request.url.host].handle_async_request(request)


OPSGENIE_ACCOUNT = {"name": "payments", "region": "eu", "opsgenie_api_key": KEY}


def jsm_account(jsm: FakeJsm) -> dict[str, str]:
    """The service object of a JSM site: its URL, and an email and API token as the key."""
    return {
        "name": "payments",
        "region": "custom",
        "custom_url": SITE,
        "opsgenie_api_key": jsm.credentials,
    }


@pytest.fixture
def relay(
    make_settings: Callable[..., Settings], fake_dx: FakeDX, opsgenie: FakeOpsgenie, jsm: FakeJsm
) -> Callable[..., contextlib.AbstractContextManager[TestClient]]:
    """Start the relay with one service object (``account``: Opsgenie's unless given)."""
    site = httpx.ASGITransport(app=jsm.app)
    transport = HostRouter(
        {
            "dx.test": httpx.ASGITransport(app=fake_dx.app),
            "api.eu.opsgenie.com": httpx.ASGITransport(app=opsgenie.app),
            "acme.atlassian.net": site,
            "api.atlassian.com": site,
        }
    )

    @contextlib.contextmanager
    def start(account: dict[str, str] = OPSGENIE_ACCOUNT, **overrides: Any) -> Iterator[TestClient]:
        settings = make_settings(
            dx_base_url="http://dx.test",
            dx_token=Secret(DX_TOKEN),
            api_key=Secret("api"),
            app_key=Secret("app"),
            **overrides,
        )
        app = create_app(settings, transport=transport, registry=CollectorRegistry())
        with TestClient(app, raise_server_exceptions=False) as client:
            service = {"data": {"type": "opsgenie-service", "attributes": account}}
            assert client.post(SERVICES, json=service, headers=FULL).status_code == 201
            yield client

    return start


def create_webhook(alert_id: str, created_ms: int) -> dict[str, Any]:
    """A Create without details: the relay learns them from a whole read. Its tags are
    all there is, so the delivery needs no enrichment first."""
    return {
        "action": "Create",
        "alert": {
            "alertId": alert_id,
            "message": "disk full on db-1",
            "tinyId": "42",
            "createdAt": created_ms,
            "updatedAt": created_ms * 10**6,
            "priority": "P3",
            "tags": ["service:payments"],
        },
        "integrationName": "Webhook",
    }


def complete_runs(client: TestClient) -> float:
    runs = handles(client.app).metrics.registry.get_sample_value(
        "relay_reconcile_runs_total", {"outcome": "complete"}
    )
    return runs or 0.0


def test_a_close_that_never_arrived_reaches_dx_through_reconcile(
    relay: Callable[..., contextlib.AbstractContextManager[TestClient]],
    fake_dx: FakeDX,
    opsgenie: FakeOpsgenie,
) -> None:
    created = int((time.time() - 3 * 86_400) * 1000)
    opsgenie.add(api_alert("dropped", created_ms=created))
    with relay(reconcile_interval_seconds=0.5) as client:
        posted = client.post(
            "/webhooks/opsgenie/payments", json=create_webhook("dropped", created), headers=auth()
        )
        assert posted.status_code == 202
        wait_for(lambda: fake_dx.incident("opsgenie-dropped"), message="incident open in DX")
        # Closed in Opsgenie; its webhook is never sent.
        opsgenie.add(
            api_alert("dropped", created_ms=created, updated_ms=created + 5_000, status="closed")
        )
        incident = wait_for(
            lambda: (i := fake_dx.incident("opsgenie-dropped")) and i["resolved_at"] and i,
            message="incident resolved in DX",
        )
        assert incident["resolved_at"] == iso8601((created + 5_000) * 10**6)
        # The run that found it counts itself once it has handed the change over, which
        # may be after the delivery it started: wait for it rather than race it.
        wait_for(lambda: complete_runs(client) >= 1, message="the reconcile run counted")


def test_a_jsm_close_that_never_arrived_reaches_dx_through_reconcile(
    relay: Callable[..., contextlib.AbstractContextManager[TestClient]],
    fake_dx: FakeDX,
    jsm: FakeJsm,
) -> None:
    """The same for a JSM site: its webhook is Opsgenie's, its alerts are read from JSM."""
    created = int((time.time() - 3 * 86_400) * 1000)
    jsm.add(jsm_alert("dropped", created_ms=created))
    with relay(jsm_account(jsm), reconcile_interval_seconds=0.5) as client:
        posted = client.post(
            "/webhooks/opsgenie/payments", json=create_webhook("dropped", created), headers=auth()
        )
        assert posted.status_code == 202
        wait_for(lambda: fake_dx.incident("opsgenie-dropped"), message="incident open in DX")
        # Closed in JSM; its webhook is never sent.
        jsm.add(
            jsm_alert("dropped", created_ms=created, updated_ms=created + 5_000, status="closed")
        )
        incident = wait_for(
            lambda: (i := fake_dx.incident("opsgenie-dropped")) and i["resolved_at"] and i,
            message="incident resolved in DX",
        )
        assert incident["resolved_at"] == iso8601((created + 5_000) * 10**6)
        assert incident["source_url"] == f"{SITE}/jira/ops/alerts/dropped"
        wait_for(lambda: complete_runs(client) >= 1, message="the reconcile run counted")
    assert {r.authorization for r in jsm.seen("/v1/alerts/dropped")} == {jsm.authorization}


def test_429s_and_5xx_wait_and_dx_never_gets_an_older_state(
    relay: Callable[..., contextlib.AbstractContextManager[TestClient]],
    fake_dx: FakeDX,
    opsgenie: FakeOpsgenie,
) -> None:
    """A webhook Close reached DX; Opsgenie throttles, fails, then serves an open copy
    older than the close (with the details the webhooks lacked): DX stays resolved."""
    created = int((time.time() - 120) * 1000)  # inside the listing window
    ref = "opsgenie-flaky"
    opsgenie.add(api_alert("flaky", created_ms=created, updated_ms=created + 1_000))
    opsgenie.rate_limit_next(2, period=1, path="/v2/alerts")
    opsgenie.fail_next(2, 503, path="/v2/alerts")
    with relay(reconcile_interval_seconds=0.3) as client:
        metrics = handles(client.app).metrics.registry
        close = {
            "action": "Close",
            "alert": {"alertId": "flaky", "updatedAt": (created + 2_000) * 10**6},
        }
        for body in (create_webhook("flaky", created), close):
            response = client.post("/webhooks/opsgenie/payments", json=body, headers=auth())
            assert response.status_code == 202
        wait_for(
            lambda: (
                (
                    metrics.get_sample_value("relay_reconcile_alerts_total", {"finding": "changed"})
                    or 0
                )
                >= 1
            ),
            timeout=15.0,
            message="the older copy read and folded",
        )
        incident = wait_for(
            lambda: (i := fake_dx.incident(ref)) and "metadata" in i and i,
            message="the details reached DX",
        )
        assert incident["resolved_at"] is not None
        bodies = fake_dx.upserts(ref)
        first_resolved = next(n for n, body in enumerate(bodies) if body["resolved_at"])
        assert all(body["resolved_at"] for body in bodies[first_resolved:])
        for outcome in ("rate_limited", "unavailable"):
            value = metrics.get_sample_value("relay_reconcile_runs_total", {"outcome": outcome})
            assert value is not None
            assert value >= 1


def test_interval_zero_turns_it_off(
    relay: Callable[..., contextlib.AbstractContextManager[TestClient]],
    fake_dx: FakeDX,
    opsgenie: FakeOpsgenie,
) -> None:
    assert Settings.from_environ({"RELAY_RECONCILE_INTERVAL": "0"}).reconcile_interval_seconds == 0
    assert Settings.from_environ({}).reconcile_interval_seconds == 300.0
    with relay(reconcile_interval_seconds=0.0) as client:
        client.post(
            "/webhooks/opsgenie/payments",
            json=create_webhook("quiet", int(time.time() * 1000)),
            headers=auth(),
        )
        wait_for(lambda: fake_dx.incident("opsgenie-quiet"), message="delivered")
        assert client.get("/readyz").status_code == 200
    assert not [r for r in opsgenie.requests if r.path == "/v2/alerts"]
