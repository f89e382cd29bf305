"""Readiness means "this pod can take a webhook now"; liveness never asks the database.

Against both store backends, PostgreSQL on a real server: the database refusing
connections, or gone, makes ``/readyz`` fail within its deadline while ``/healthz`` stays
green (a database outage must not restart every replica), and readiness comes back by
itself once the database does. A relay that has begun its shutdown drain is unready while
its last DX requests are still in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app import create_app, handles
from service.settings import Settings
from service.store import Store
from tests.conftest import DX_TOKEN, PortalClient, auth, sample
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for
from tests.store_backends import (
    POSTGRES_URL,
    Backend,
    ScratchPostgresStore,
    backend_fixture,
    database_for,
    require_postgres,
)

__all__ = ["backend_fixture"]

OpenClient = Callable[[Starlette], PortalClient]


class Gate:
    """DX behind a gate: requests wait, in flight, until the test opens it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.opened = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while not self.opened.is_set():
            await asyncio.sleep(0.01)
        await self.app(scope, receive, send)


def _app(settings: Settings, store: Store, dx: ASGIApp) -> Starlette:
    return create_app(
        settings,
        store=store,
        transport=httpx.ASGITransport(app=dx),
        registry=CollectorRegistry(),
    )


@pytest.fixture
def pg_store(tmp_path: Path) -> ScratchPostgresStore:
    require_postgres()
    return ScratchPostgresStore(database_for(tmp_path), clock=time.time)


def _admin(sql: str) -> object:
    """One statement on the server's maintenance database, as an operator would run it."""

    async def run() -> object:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def _refuse_connections(database: str) -> None:
    """The database takes no new connection and loses the ones it had: what a failover or
    a server restart looks like from a replica. Returns once those are gone (a terminated
    backend exits a moment after it is told to)."""
    _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    sessions = f"FROM pg_stat_activity WHERE datname = '{database}'"
    _admin(f"SELECT count(pg_terminate_backend(pid)) {sessions}")
    wait_for(lambda: _admin(f"SELECT count(*) {sessions}") == 0)


@pytest.fixture
def refusing(pg_store: ScratchPostgresStore) -> Iterator[Callable[[], None]]:
    """Call it to make ``pg_store``'s database refuse connections; undone at the end."""
    yield lambda: _refuse_connections(pg_store.database)
    _admin(f'ALTER DATABASE "{pg_store.database}" ALLOW_CONNECTIONS true')


def test_ready_on_postgresql(
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    open_client: OpenClient,
    pg_store: ScratchPostgresStore,
) -> None:
    client = open_client(_app(make_settings(), pg_store, fake_dx.app))
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert "errors" not in ready.json()
    assert client.get("/healthz").json() == {"status": "ok"}


def test_unready_but_alive_while_postgresql_refuses_connections(
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    open_client: OpenClient,
    pg_store: ScratchPostgresStore,
    refusing: Callable[[], None],
) -> None:
    client = open_client(_app(make_settings(), pg_store, fake_dx.app))
    assert client.get("/readyz").status_code == 200
    refusing()

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unready"
    [error] = ready.json()["errors"]
    assert error.startswith("store: ")
    # The webhook such a pod would get is refused (503, never a 500), not lost: it was
    # never acknowledged, and the Service sends the next ones to ready replicas.
    refused = client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    assert refused.status_code == 503

    # Liveness never asks the database: an outage restarts no pod.
    assert client.get("/healthz").status_code == 200
    _admin(f'ALTER DATABASE "{pg_store.database}" ALLOW_CONNECTIONS true')
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)
    accepted = client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    assert accepted.status_code == 202


def test_unready_but_alive_once_the_database_is_gone(
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    open_client: OpenClient,
    pg_store: ScratchPostgresStore,
) -> None:
    client = open_client(_app(make_settings(), pg_store, fake_dx.app))
    assert client.get("/readyz").status_code == 200
    _admin(f'DROP DATABASE "{pg_store.database}" WITH (FORCE)')
    for _ in range(3):  # the pool does not come back by reconnecting to nothing
        ready = client.get("/readyz")
        assert ready.status_code == 503
        [error] = ready.json()["errors"]
        assert error.startswith("store: ")
        assert client.get("/healthz").status_code == 200


def test_unready_during_the_shutdown_drain(
    backend: Backend,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    open_client: OpenClient,
) -> None:
    """Shutdown stops the delivery worker first (service.server) and gives its requests to
    DX a deadline; from that moment on the pod is not ready, while the request in flight
    still gets its chance to finish."""
    gate = Gate(fake_dx.app)
    store = backend.make(tmp_path, time.time, None)
    settings = make_settings(
        dx_base_url="http://dx.test", dx_token=Secret(DX_TOKEN), shutdown_deadline_seconds=60.0
    )
    client = open_client(_app(settings, store, gate))
    assert client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth()).is_success
    assert client.get("/readyz").status_code == 200

    worker = handles(client.app).worker
    stopped = threading.Event()

    async def stop() -> None:
        try:
            await worker.stop(settings.shutdown_deadline_seconds)
        finally:
            stopped.set()

    client.portal.start_task_soon(stop)
    wait_for(lambda: client.get("/readyz").status_code == 503)
    # Still draining: the request to DX waits at the gate.
    assert not stopped.is_set()
    assert client.get("/healthz").status_code == 200
    gate.opened.set()
    wait_for(stopped.is_set)
    assert fake_dx.incident("opsgenie-" + sample("Create")["alert"]["alertId"]) is not None
