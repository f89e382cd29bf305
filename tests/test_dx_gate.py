"""The gate every request toward DX passes: in memory for one process, and shared in the
database by every replica on it (two ``PostgresStore`` objects are two replicas here).

The bucket is read with a rate so slow it cannot refill during a test, so the counts are
exact whatever the machine's speed: tokens taken in total, not requests per second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Secret

from service.app import create_app, handles
from service.dx_gate import PAUSE_REFRESH_SECONDS, LocalGate, SharedGate
from service.errors import DXAuthError, DXRedirected
from service.metrics import Metrics
from service.pause import Pause
from service.rate_limit import RateLimiter
from service.settings import Settings
from service.store.postgres import PostgresStore
from tests.conftest import DX_TOKEN, PortalClient, auth, sample
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for
from tests.store_backends import Clock, ScratchPostgresStore, database_for, require_postgres

T = TypeVar("T")
#: Tokens a second: none come back within a test.
NO_REFILL = 1e-6
REFUSED = DXAuthError("DX refused the token: not_authed (HTTP 401)")


def paused_gauge(metrics: Metrics, reason: str) -> float:
    return float(
        metrics.registry.get_sample_value("relay_delivery_paused", {"reason": reason}) or 0
    )


def replicas(place: Path, scenario: Callable[[PostgresStore, PostgresStore], Awaitable[T]]) -> T:
    require_postgres()

    async def main() -> T:
        a = ScratchPostgresStore(database_for(place), clock=Clock())
        b = ScratchPostgresStore(database_for(place), clock=Clock())
        await a.open()
        await b.open()
        try:
            return await scenario(a, b)
        finally:
            await a.close()
            await b.close()

    return asyncio.run(main())


def test_the_bucket_is_one_for_every_replica(tmp_path: Path) -> None:
    async def scenario(a: PostgresStore, b: PostgresStore) -> list[bool]:
        takes = [
            a.dx_board.take(NO_REFILL, 5.0) if n % 2 else b.dx_board.take(NO_REFILL, 5.0)
            for n in range(12)
        ]
        return [wait == 0 for wait in await asyncio.gather(*takes)]

    granted = replicas(tmp_path, scenario)
    assert granted.count(True) == 5  # the burst, in total, not per replica


def test_a_token_refused_says_how_long_until_the_next(tmp_path: Path) -> None:
    async def scenario(a: PostgresStore, b: PostgresStore) -> float:
        assert await a.dx_board.take(0.01, 1.0) == 0
        return await b.dx_board.take(0.01, 1.0)

    assert 0 < replicas(tmp_path, scenario) <= 100.0  # one token at 0.01 a second


def test_a_429_on_one_replica_holds_every_replica_back(tmp_path: Path) -> None:
    async def scenario(a: PostgresStore, b: PostgresStore) -> float:
        await a.dx_board.hold(600.0)
        await a.dx_board.hold(5.0)  # a shorter hold does not cut the longer one short
        return await b.dx_board.take(1000.0, 1000.0)

    assert 500 < replicas(tmp_path, scenario) <= 600


def test_a_pause_begun_on_one_replica_shows_on_the_other_and_ends_for_both(
    tmp_path: Path,
) -> None:
    metrics_a, metrics_b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    clock = Clock(1000.0)

    def gate(store: PostgresStore, metrics: Metrics) -> SharedGate:
        pause = Pause(metrics.paused, configured=True, max_backoff=300.0)
        return SharedGate(store.dx_board, pause, rate=10.0, clock=clock)

    async def scenario(a: PostgresStore, b: PostgresStore) -> None:
        gate_a, gate_b = gate(a, metrics_a), gate(b, metrics_b)
        assert await gate_b.paused_until(clock.now) <= clock.now
        assert await gate_a.pause(REFUSED, now=clock.now) == 5.0
        # B's refusal in flight meanwhile does not double the pause in force.
        assert await gate(b, metrics_b).pause(REFUSED, now=clock.now) <= 5.0
        clock.now += PAUSE_REFRESH_SECONDS  # B reads the shared pause again
        until = await gate_b.paused_until(clock.now)
        assert clock.now < until <= clock.now + 5.0
        assert gate_b.reason(clock.now) == f"{REFUSED.message}; retrying with backoff"
        assert paused_gauge(metrics_b, "not_authed") == 1
        await gate_a.resume()  # A's next request went through
        clock.now += PAUSE_REFRESH_SECONDS
        assert await gate_b.paused_until(clock.now) <= clock.now
        assert gate_b.reason(clock.now) is None
        assert paused_gauge(metrics_b, "not_authed") == 0

    replicas(tmp_path, scenario)


def test_pauses_in_a_row_double_across_replicas_and_a_new_reason_takes_over(
    tmp_path: Path,
) -> None:
    metrics = Metrics(CollectorRegistry())
    lengths = Pause(metrics.paused, configured=True, max_backoff=300.0).length

    async def scenario(a: PostgresStore, b: PostgresStore) -> list[float]:
        waits = [await a.dx_board.pause("not_authed", "refused", lengths)]
        await a.engine.run(lambda c: c.execute("UPDATE dx_gate SET pause_until = 0"), "test")
        waits.append(await b.dx_board.pause("not_authed", "refused", lengths))
        waits.append(await a.dx_board.pause("redirected", "moved", lengths))
        shared = await b.dx_board.paused()
        assert (shared.code, shared.message, shared.in_a_row) == ("redirected", "moved", 3)
        return waits

    assert replicas(tmp_path, scenario) == [5.0, 10.0, 20.0]


def test_the_local_gate_is_the_limiter_and_the_pause_of_one_process() -> None:
    metrics = Metrics(CollectorRegistry())
    gate = LocalGate(RateLimiter(1000.0), Pause(metrics.paused, configured=True, max_backoff=300.0))

    async def scenario() -> None:
        await gate.acquire()
        assert await gate.pause(DXRedirected("moved"), now=100.0) == 5.0
        assert await gate.paused_until(101.0) == 105.0
        assert gate.reason(101.0) == "moved; retrying with backoff"
        await gate.resume()
        assert await gate.paused_until(101.0) <= 101.0
        assert paused_gauge(metrics, "redirected") == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("code", ["not_authed", "redirected", "something_new"])
def test_a_pause_of_any_reason_reads_back_with_its_message(tmp_path: Path, code: str) -> None:
    metrics = Metrics(CollectorRegistry())
    clock = Clock(0.0)

    async def scenario(a: PostgresStore, b: PostgresStore) -> str | None:
        await a.dx_board.pause(code, f"because {code}", lambda _: 30.0)
        pause = Pause(metrics.paused, configured=True, max_backoff=300.0)
        gate = SharedGate(b.dx_board, pause, rate=1.0, clock=clock)
        await gate.paused_until(clock.now)
        return gate.reason(clock.now)

    assert replicas(tmp_path, scenario) == f"because {code}; retrying with backoff"


def test_a_refused_token_on_one_replica_pauses_the_others(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], PortalClient],
    fake_dx: FakeDX,
) -> None:
    """Two relays on one database; DX refuses the one request either of them sends."""
    require_postgres()

    def replica() -> PortalClient:
        store = ScratchPostgresStore(database_for(tmp_path), clock=time.time)
        settings = make_settings(
            dx_base_url="http://dx.test",
            dx_token=Secret(DX_TOKEN),
            retry_max_backoff_seconds=300.0,
        )
        transport = httpx.ASGITransport(app=fake_dx.app)
        app = create_app(settings, store=store, transport=transport, registry=CollectorRegistry())
        return open_client(app)

    a, b = replica(), replica()
    # Refusals before in a row: the next pause is the longest (300 s), so it cannot run
    # out while the test looks, and no retry follows it.
    store = handles(a.app).store
    assert isinstance(store, PostgresStore)
    a.portal.call(
        store.engine.run,
        lambda conn: conn.execute("UPDATE dx_gate SET pauses_in_a_row = 10"),
        "test",
    )
    fake_dx.fail_next(1, status=401, error="not_authed")
    assert a.post("/webhooks/opsgenie", json=sample("Create"), headers=auth()).status_code == 202
    # Whichever replica claimed the reference was refused; both must say so.
    for client in (a, b):
        wait_for(
            lambda client=client: (
                "paused: DX refused the token" in client.get("/readyz").json()["delivery"]
            ),
            message="every replica paused",
        )
    assert b.get("/readyz").status_code == 200  # readiness never waits for DX
    assert len(fake_dx.requests) == 1  # the pause held the other replica back
