"""The delivery worker on a store several replicas share (PostgreSQL): leases renewed while
a delivery is in flight, a result whose claim passed on dropped and counted, a delivery
whose claim is found gone stopped, and work another replica stores waking the worker.

"Another replica" is a second ``PostgresStore`` on the same database, or SQL doing what
one would (taking a claim whose lease ran out), so each case happens when the test says.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.types import Receive, Scope, Send

from service import delivery
from service.app import create_app, handles
from service.settings import Settings
from tests.conftest import DX_TOKEN, PortalClient, auth, sample
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for
from tests.store_backends import (
    ScratchPostgresStore,
    database_for,
    database_url,
    event,
    postgres_backend,
    require_postgres,
)

URL = "/webhooks/opsgenie"
CREATE = sample("Create")
REF = f"opsgenie-{CREATE['alert']['alertId']}"


class HeldDX:
    """The fake DX behind a door the test opens: a request arrives, then waits."""

    def __init__(self, fake: FakeDX) -> None:
        self.fake = fake
        self.arrived = threading.Event()
        self.door = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.arrived.set()
            while not self.door.is_set():
                await asyncio.sleep(0.01)
        await self.fake.app(scope, receive, send)


@pytest.fixture
def place(tmp_path: Path) -> Path:
    require_postgres()
    return tmp_path


@pytest.fixture
def held(fake_dx: FakeDX) -> Iterator[HeldDX]:
    door = HeldDX(fake_dx)
    yield door
    door.door.set()  # nothing left waiting when the app stops


def relay(
    place: Path,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], PortalClient],
    dx: Any,
    *,
    lease: float = 120.0,
) -> PortalClient:
    store = postgres_backend(place, time.time, None, lease=lease)
    settings = make_settings(dx_base_url="http://dx.test", dx_token=Secret(DX_TOKEN))
    app = create_app(
        settings,
        store=store,
        transport=httpx.ASGITransport(app=dx),
        registry=CollectorRegistry(),
    )
    return open_client(app)


def sql(place: Path, query: str, *args: Any) -> Any:
    """One statement on the test's database, as another replica (or an operator) would."""

    async def run() -> Any:
        conn = await asyncpg.connect(database_url(database_for(place)))
        try:
            return await conn.fetchrow(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def counted(client: PortalClient, name: str) -> float:
    registry = handles(client.app).metrics.registry
    return float(registry.get_sample_value(name) or 0.0)


def steal(place: Path) -> None:
    """What another replica does once this one's lease ran out: claim it, with a new token."""
    sql(
        place,
        "UPDATE alerts SET lease_owner = gen_random_uuid(), claim = nextval('claims'),"
        " lease_until = extract(epoch FROM clock_timestamp()) + 3600 WHERE reference_id = $1",
        REF,
    )


def test_a_result_after_the_claim_passed_on_is_dropped_and_counted(
    place: Path,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], PortalClient],
    held: HeldDX,
) -> None:
    client = relay(place, make_settings, open_client, held)
    assert client.post(URL, json=CREATE, headers=auth()).status_code == 202
    assert held.arrived.wait(10)
    steal(place)
    held.door.set()
    wait_for(lambda: counted(client, "relay_delivery_lease_lost_total") == 1)
    row = sql(
        place, "SELECT status, delivered_version, attempts FROM alerts WHERE reference_id = $1", REF
    )
    assert (row["status"], row["delivered_version"], row["attempts"]) == ("pending", 0, 0)
    assert sql(place, "SELECT count(*) AS n FROM attempts")["n"] == 0  # nothing recorded
    assert held.fake.incident(REF) is not None  # DX did get it; the new owner sends again


def test_the_lease_of_a_delivery_in_flight_is_renewed(
    place: Path,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], PortalClient],
    held: HeldDX,
) -> None:
    client = relay(place, make_settings, open_client, held, lease=3.0)
    client.post(URL, json=CREATE, headers=auth())
    assert held.arrived.wait(10)
    first = sql(place, "SELECT lease_until FROM alerts WHERE reference_id = $1", REF)
    wait_for(
        lambda: (
            sql(place, "SELECT lease_until FROM alerts WHERE reference_id = $1", REF)["lease_until"]
            > first["lease_until"]
        ),
        message="lease renewed",
    )

    async def other_replica_claims() -> list[str]:
        other = ScratchPostgresStore(database_for(place), clock=time.time)
        await other.open()
        try:
            return [
                p.reference_id for p in await other.due(now=time.time() + 10, limit=5, exclude=())
            ]
        finally:
            await other.close()

    # Each renewal reaches past the first lease: after it ran out, nobody else has it.
    wait_for(
        lambda: sql(
            place,
            "SELECT $1::float8 < extract(epoch FROM clock_timestamp()) AS past",
            first["lease_until"],
        )["past"],
        message="the first lease's end is past",
    )
    assert asyncio.run(other_replica_claims()) == []
    held.door.set()
    wait_for(lambda: held.fake.incident(REF), message="delivered by its owner")
    assert counted(client, "relay_delivery_lease_lost_total") == 0


def test_a_delivery_whose_claim_is_found_gone_is_stopped(
    place: Path,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], PortalClient],
    held: HeldDX,
) -> None:
    client = relay(place, make_settings, open_client, held, lease=1.5)
    client.post(URL, json=CREATE, headers=auth())
    assert held.arrived.wait(10)
    steal(place)
    wait_for(lambda: counted(client, "relay_delivery_lease_lost_total") == 1)
    held.door.set()
    assert sql(place, "SELECT count(*) AS n FROM attempts")["n"] == 0


def test_work_another_replica_stores_wakes_the_worker(
    place: Path,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], PortalClient],
    fake_dx: FakeDX,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no poll to find it (the idle sleep is an hour), only the notification can."""
    monkeypatch.setattr(delivery, "SHARED_IDLE_SECONDS", 3600.0)
    relay(place, make_settings, open_client, fake_dx.app)

    async def accept_elsewhere() -> None:
        other = ScratchPostgresStore(database_for(place), clock=time.time)
        await other.open()
        try:
            await other.accept(event(CREATE, received_at=time.time()))
        finally:
            await other.close()

    asyncio.run(accept_elsewhere())
    wait_for(lambda: fake_dx.incident(REF), message="delivered after the notification")
