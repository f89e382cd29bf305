"""The store backends the interface tests run against, and what those tests build events with.

``stores`` is parametrized over ``BACKENDS``: a test that takes it runs once per backend,
through the ``Store`` interface only. A backend is a function that makes a store (not yet
opened) keeping its data in a place given as a directory. SQLite keeps a file there;
PostgreSQL maps the directory to a database of its own on the server at
``RELAY_TEST_POSTGRES_URL`` (default: the one on 127.0.0.1:5432), made when a store first
opens on it and dropped when the session ends. Without a server, the PostgreSQL tests are
skipped with a line saying how to run them, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from starlette.datastructures import Secret

from service.crypto import KeyCipher
from service.opsgenie import parse_event
from service.store import Attempt, Incoming, Outcome, Pending, Store
from service.store.postgres import FOLD_BUDGET, LEASE, PoolLimits, PostgresStore
from service.store.sqlite import SQLiteStore
from tests.conftest import sample

T = TypeVar("T")
T0 = 1_700_000_000.0
CREATE = sample("Create")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _always_ready() -> None:
    pass


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    #: A store on the data kept in a directory: ``make(place, clock, fold_budget)``, where
    #: ``fold_budget`` (None: the backend's own) caps the events one claim folds.
    make: Callable[[Path, Callable[[], float], int | None], Store]
    #: Skips (or, under ``CI=true``, fails) the calling test when the backend cannot be had.
    require: Callable[[], None] = _always_ready


def sqlite_backend(place: Path, clock: Callable[[], float], fold_budget: int | None) -> Store:
    if fold_budget is None:
        return SQLiteStore(place / "relay.db", clock=clock)
    return SQLiteStore(place / "relay.db", clock=clock, fold_budget=fold_budget)


# ---- PostgreSQL ------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get(
    "RELAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
HOW_TO_RUN = (
    "no PostgreSQL answers at RELAY_TEST_POSTGRES_URL (default postgresql://postgres@"
    "127.0.0.1:5432/postgres); start one there (.ci/postgres does) or set the variable"
    " to run the PostgreSQL store tests"
)
#: Every test store seals keys with this; the key itself is nothing secret.
TEST_CIPHER = KeyCipher.from_secret(Secret("store-tests"))
#: Small pools: other test processes may share the server's connections.
TEST_LIMITS = PoolLimits(min_size=1, max_size=4)
_created: set[str] = set()


def database_url(name: str) -> str:
    """``POSTGRES_URL`` with another database name: same server, user and options."""
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def database_for(place: Path) -> str:
    """A database name of this process's own for a test's directory."""
    digest = hashlib.sha256(str(place).encode()).hexdigest()[:16]
    return f"relay_test_{os.getpid()}_{digest}"


@functools.cache
def _postgres_answers() -> bool:
    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True


def require_postgres() -> None:
    if _postgres_answers():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {HOW_TO_RUN}")
    pytest.skip(HOW_TO_RUN)


async def create_database(name: str, *, encoding: str = "UTF8") -> None:
    """An empty database, UTF-8 whatever the server's default (from ``template0``), in
    the server's locale (the schema must not rely on a C collation); nothing if it exists.
    Another ``encoding`` makes one the store must refuse."""
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            # Another store of the same test may make it first.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(
                    f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING '{encoding}'"
                )
        _created.add(name)
    finally:
        await conn.close()


def drop_databases() -> None:
    """Drop every database this process made (at the end of the session)."""
    if not _created:
        return

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            for name in sorted(_created):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        _created.clear()

    asyncio.run(drop())


class ScratchPostgresStore(PostgresStore):
    """A ``PostgresStore`` on a test database, which its first ``open`` makes."""

    def __init__(self, database: str, **options: Any) -> None:
        options.setdefault("cipher", TEST_CIPHER)
        options.setdefault("limits", TEST_LIMITS)
        super().__init__(database_url(database), **options)
        self.database = database

    async def open(self) -> None:
        if self.database not in _created:
            await create_database(self.database)
        await super().open()


def postgres_backend(
    place: Path,
    clock: Callable[[], float],
    fold_budget: int | None,
    *,
    lease: float = LEASE,
) -> ScratchPostgresStore:
    return ScratchPostgresStore(
        database_for(place),
        clock=clock,
        fold_budget=FOLD_BUDGET if fold_budget is None else fold_budget,
        lease=lease,
    )


BACKENDS = (
    Backend("sqlite", sqlite_backend),
    Backend("postgres", postgres_backend, require_postgres),
)


class Stores:
    """Stores of one backend on one place: each ``run`` opens a fresh store on the data
    the last one left, as a restarted relay would."""

    def __init__(self, backend: Backend, place: Path) -> None:
        self.backend = backend
        self.place = place

    def new(self, clock: Callable[[], float] | None = None) -> Store:
        return self.backend.make(self.place, clock or Clock(), None)

    def run(
        self, scenario: Callable[[Store], Awaitable[T]], *, clock: Callable[[], float] | None = None
    ) -> T:
        async def main() -> T:
            store = self.new(clock)
            await store.open()
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name, name="backend")
def backend_fixture(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn, once it can be had; import it to take ``backend``."""
    backend: Backend = request.param
    backend.require()
    return backend


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name, name="stores")
def stores_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    """Import it (``from tests.store_backends import stores_fixture``) to take ``stores``."""
    backend: Backend = request.param
    backend.require()
    return Stores(backend, tmp_path)


def body(alert_id: str, n: int = 0, *, action: str = "Create", **alert: Any) -> dict[str, Any]:
    """The Create sample for ``alert_id``, ``n`` seconds later, with ``alert`` changes."""
    document: dict[str, Any] = json.loads(json.dumps(CREATE))
    document["action"] = action
    document["alert"]["alertId"] = alert_id
    document["alert"]["updatedAt"] += n * 10**9
    document["alert"].update(alert)
    return document


def event(document: dict[str, Any], *, received_at: float = T0, raw: str | None = None) -> Incoming:
    """What the webhook handler hands to ``accept`` for this body."""
    text = json.dumps(document) if raw is None else raw
    parsed = parse_event(text.encode(), received_ns=int(received_at * 1e9))
    return Incoming(
        reference_id=f"opsgenie-{parsed.alert_id}",
        alert_id=parsed.alert_id,
        action=parsed.action,
        service_id=None,
        dedup_key=hashlib.sha256(text.encode()).hexdigest(),
        raw=text,
        received_at=received_at,
    )


async def put(store: Store, document: dict[str, Any], *, at: float = T0) -> Outcome:
    return await store.accept(event(document, received_at=at))


def attempt(pending: Pending, at: float, outcome: str, **fields: Any) -> Attempt:
    values: dict[str, Any] = {
        "http_status": None,
        "error_code": None,
        "detail": None,
        "duration_seconds": 0.1,
    }
    values.update(fields)
    return Attempt(at=at, version=pending.version, outcome=outcome, **values)
