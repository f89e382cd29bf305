"""Work one replica at a time does, and what several replicas must not keep apart.

The lease itself (``service.singleton``; the PostgreSQL advisory lock), the pruner and the
outbox gauges behind it, and the caches another replica's change to a service object
empties (two apps on one database are two replicas here).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.datastructures import Secret

from service.app import create_app, handles
from service.crypto import KeyCipher
from service.retention import Pruner
from service.settings import Settings
from service.singleton import sole_runner
from service.store.postgres import AdvisoryLease
from service.store.sqlite import SQLiteStore
from tests.conftest import PortalClient, auth, sample
from tests.fakes.polling import wait_for
from tests.store_backends import (
    T0,
    TEST_CIPHER,
    ScratchPostgresStore,
    body,
    create_database,
    database_for,
    database_url,
    put,
    require_postgres,
)

CREATE = sample("Create")


# ---- the lease -----------------------------------------------------------------------------


def test_a_relay_alone_on_its_database_always_holds_the_lease() -> None:
    async def held() -> bool:
        async with sole_runner() as mine:
            return mine

    assert asyncio.run(held())


def test_one_replica_holds_the_advisory_lease_and_the_next_takes_it_when_it_goes(
    tmp_path: Path,
) -> None:
    require_postgres()
    name = database_for(tmp_path)

    async def scenario() -> list[bool]:
        await create_database(name)
        a, b = AdvisoryLease(database_url(name)), AdvisoryLease(database_url(name))
        seen = [await a.held(), await b.held(), await a.held()]
        await a.close()  # a replica stopping gives it up at once
        seen.append(await b.held())
        # A replica that dies (its session ends, SIGKILL or the network) loses it too.
        conn = await asyncpg.connect(database_url(name))
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        seen += [await a.held(), await b.held()]
        await a.close()
        await b.close()
        return seen

    assert asyncio.run(scenario()) == [True, False, True, True, True, False]


# ---- behind the lease ----------------------------------------------------------------------


def test_the_pruner_prunes_only_while_it_holds_the_lease(tmp_path: Path) -> None:
    asked: list[bool] = []

    def lease(holds: bool) -> Callable[[], contextlib.AbstractAsyncContextManager[bool]]:
        @contextlib.asynccontextmanager
        async def ask() -> AsyncIterator[bool]:
            asked.append(holds)
            yield holds

        return ask

    async def remaining(holds: bool) -> int:
        store = SQLiteStore(tmp_path / f"{holds}.db", clock=lambda: T0)
        await store.open()
        try:
            await put(store, body("old"), at=T0 - 86400)
            pruned = Counter("pruned", "test", registry=CollectorRegistry())
            pruner = Pruner(
                store, retention_seconds=60, pruned=pruned, clock=lambda: T0, lease=lease(holds)
            )
            before = len(asked)
            pruner.start()
            while len(asked) == before:  # its first round has asked (and pruned, if held)
                await asyncio.sleep(0.01)
            await pruner.stop()
            return len(await store.events("old", limit=10))
        finally:
            await store.close()

    assert asyncio.run(remaining(False)) == 1
    assert asyncio.run(remaining(True)) == 0


@pytest.fixture
def replica(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], PortalClient],
) -> Callable[..., PortalClient]:
    """Another relay on the test's PostgreSQL database (DX not configured: work waits)."""
    require_postgres()

    def make(**overrides: object) -> PortalClient:
        store = ScratchPostgresStore(database_for(tmp_path), clock=time.time)
        app = create_app(make_settings(**overrides), store=store, registry=CollectorRegistry())
        return open_client(app)

    return make


def gauge(client: PortalClient, name: str) -> float:
    text = client.get("/metrics").text
    line = next(line for line in text.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[1])


def test_one_replica_reports_the_backlog_so_a_sum_over_pods_is_the_backlog(
    replica: Callable[..., PortalClient],
) -> None:
    a, b, c = replica(), replica(), replica()
    for n in range(3):
        document = {**CREATE, "alert": {**CREATE["alert"], "alertId": f"backlog-{n}"}}
        assert a.post("/webhooks/opsgenie", json=document, headers=auth()).status_code == 202
    pending = [gauge(client, "relay_outbox_pending") for client in (a, b, c)]
    assert sorted(pending) == [0, 0, 3]


# ---- caches --------------------------------------------------------------------------------


def test_another_replicas_change_to_a_service_object_empties_this_ones_caches(
    replica: Callable[..., PortalClient], tmp_path: Path
) -> None:
    client = replica()
    store = handles(client.app).store
    service = client.portal.call(
        lambda: store.create_service_object(
            id="5b4a2f6e-1111-4222-8333-944444444444",
            name="payments-og",
            region="us",
            custom_url=None,
            api_key=Secret("og-key-0000"),
        )
    )

    def send(name: str, n: int) -> int:
        document = {**CREATE, "alert": {**CREATE["alert"], "alertId": f"cache-{n}"}}
        url = f"/webhooks/opsgenie/{name}"
        return int(client.post(url, json=document, headers=auth()).status_code)

    assert send("payments-og", 0) == 202  # now cached by this replica

    async def elsewhere() -> None:
        other = ScratchPostgresStore(database_for(tmp_path), clock=time.time, cipher=TEST_CIPHER)
        await other.open()
        try:
            await other.update_service_object(service.id, {"name": "checkout-og"})
        finally:
            await other.close()

    asyncio.run(elsewhere())
    counter = iter(range(1, 1000))
    wait_for(lambda: send("payments-og", next(counter)) == 404, message="old name forgotten")
    assert send("checkout-og", 1000) == 202


def test_keys_sealed_on_one_replica_open_on_another(tmp_path: Path) -> None:
    """RELAY_SECRET_KEY is required with PostgreSQL for this: no key file per pod."""
    cipher = KeyCipher.from_secret(Secret("the-shared-secret-key-01"))
    require_postgres()

    async def scenario() -> str:
        a = ScratchPostgresStore(database_for(tmp_path), clock=time.time, cipher=cipher)
        b = ScratchPostgresStore(database_for(tmp_path), clock=time.time, cipher=cipher)
        await a.open()
        await b.open()
        try:
            made = await a.create_service_object(
                id="5b4a2f6e-1111-4222-8333-955555555555",
                name="keys-og",
                region="eu",
                custom_url=None,
                api_key=Secret("og-key-1111"),
            )
            found = await b.get_service_object(made.id)
            assert found is not None
            return str(found.api_key)
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(scenario()) == "og-key-1111"
