"""The store backends the interface tests run against, and what those tests build events with.

``stores`` is parametrized over ``BACKENDS``: a test that takes it runs once per backend,
through the ``Store`` interface only. A backend is a function that makes a store (not yet
opened) keeping its data in a place given as a directory; a second backend (PostgreSQL)
is one more entry, whose function maps the directory to a database of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from service.opsgenie import parse_event
from service.store import Attempt, Incoming, Outcome, Pending, Store
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


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    #: A store on the data kept in a directory: ``make(place, clock, fold_budget)``, where
    #: ``fold_budget`` (None: the backend's own) caps the events one claim folds.
    make: Callable[[Path, Callable[[], float], int | None], Store]


def sqlite_backend(place: Path, clock: Callable[[], float], fold_budget: int | None) -> Store:
    if fold_budget is None:
        return SQLiteStore(place / "relay.db", clock=clock)
    return SQLiteStore(place / "relay.db", clock=clock, fold_budget=fold_budget)


BACKENDS = (Backend("sqlite", sqlite_backend),)


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


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name, name="stores")
def stores_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    """Import it (``from tests.store_backends import stores_fixture``) to take ``stores``."""
    return Stores(request.param, tmp_path)


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
