"""Raw events expire in small batches, each folded into its alert's state before it goes,
so the state stays and late events still fold onto it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter
from starlette.testclient import TestClient

from service.retention import BATCH, Pruner
from service.store import Incoming
from service.store.sqlite import SQLiteStore
from tests.conftest import auth, sample
from tests.fakes.polling import wait_for_async

DAY = 86400.0
T = TypeVar("T")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(alert_id: str, action: str, n: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(sample("Create")))
    body["action"] = action
    body["alert"]["alertId"] = alert_id
    body["alert"]["updatedAt"] += n * 10**9
    return body


async def accept(store: SQLiteStore, body: dict[str, Any], received_at: float, key: str) -> None:
    raw = json.dumps(body).encode()
    incoming = Incoming(
        reference_id=f"opsgenie-{body['alert']['alertId']}",
        alert_id=body["alert"]["alertId"],
        action=body["action"],
        service_id=None,
        dedup_key=key,
        raw=raw.decode(),
        received_at=received_at,
    )
    await store.accept(incoming)


def with_store(tmp_path: Path, clock: Clock, scenario: Callable[[SQLiteStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SQLiteStore(tmp_path / "relay.db", clock=clock)
        await store.open()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(run())


def counter() -> Counter:
    return Counter("relay_events_pruned", "test", registry=CollectorRegistry())


def total(pruned: Counter) -> float:
    return sum(s.value for m in pruned.collect() for s in m.samples if s.name.endswith("_total"))


def test_prunes_only_expired_events_and_keeps_alert_state(tmp_path: Path) -> None:
    clock = Clock(100 * DAY)
    pruned = counter()

    async def scenario(store: SQLiteStore) -> tuple[int, list[str], str | None, list[str]]:
        await accept(store, event("old", "Create", 0), clock.now - 8 * DAY, "a")
        await accept(store, event("old", "Acknowledge", 1), clock.now - 6 * DAY, "b")
        pruner = Pruner(store, retention_seconds=7 * DAY, pruned=pruned, clock=clock)
        count = await pruner.prune_once()
        left = [e.action for e in await store.events("old", limit=10)]
        # A late event folds onto the kept state: the message from Create is still known.
        await accept(store, event("old", "Close", 2), clock.now, "c")
        delivery = await store.get("opsgenie-old")
        assert delivery is not None
        assert delivery.state is not None
        assert delivery.state.closed
        message = delivery.state.message.value if delivery.state.message else None
        after = [e.action for e in await store.events("old", limit=10)]
        return count, left, message, after

    count, left, message, after = with_store(tmp_path, clock, scenario)
    assert count == 1
    assert left == ["Acknowledge"]
    assert message == "asdf"
    assert after == ["Acknowledge", "Close"]
    assert total(pruned) == 1


def test_a_late_event_after_every_event_was_pruned_still_folds(tmp_path: Path) -> None:
    """After a quiet spell retention deletes the newest events too. The next event must
    still get an id above what the alert was folded through, or the fold would skip it and
    its Close would never reach DX (ids used to be reused: max(id) + 1)."""
    clock = Clock(100 * DAY)

    async def scenario(store: SQLiteStore) -> tuple[bool, bool, int]:
        for n, alert in enumerate(("x1", "x2", "x3")):
            await accept(store, event(alert, "Create", n), clock.now, f"create-{alert}")
        claimed = await store.due(now=clock.now, limit=10, exclude=())  # folds all three
        open_before = all(p.state is not None and not p.state.closed for p in claimed)
        clock.now += 8 * DAY
        pruned = await Pruner(
            store, retention_seconds=7 * DAY, pruned=counter(), clock=clock
        ).prune_once()
        await accept(store, event("x1", "Close", 10), clock.now, "close-x1")
        claimed = await store.due(now=clock.now, limit=10, exclude=())
        [pending] = [p for p in claimed if p.reference_id == "opsgenie-x1"]
        return open_before, pending.state is not None and pending.state.closed, pruned

    open_before, closed_after, pruned = with_store(tmp_path, clock, scenario)
    assert open_before
    assert pruned == 3
    assert closed_after


def test_prunes_in_batches(tmp_path: Path) -> None:
    clock = Clock(100 * DAY)
    pruned = counter()
    calls: list[int] = []

    async def scenario(store: SQLiteStore) -> int:
        old = clock.now - 30 * DAY
        # Concurrent accepts share commits in the writer, which keeps this test fast.
        await asyncio.gather(
            *(
                accept(store, event(f"a{n}", "Create", 0), old, f"k{n}")
                for n in range(BATCH * 2 + 5)
            )
        )
        original = store.prune_events

        async def counting(*, before: float) -> int:
            deleted = await original(before=before)
            calls.append(deleted)
            return deleted

        store.prune_events = counting  # type: ignore[method-assign]
        pruner = Pruner(store, retention_seconds=7 * DAY, pruned=pruned, clock=clock)
        return await pruner.prune_once()

    assert with_store(tmp_path, clock, scenario) == BATCH * 2 + 5
    assert calls == [BATCH, BATCH, 5]
    assert total(pruned) == BATCH * 2 + 5


def test_background_task_runs_and_stops(tmp_path: Path) -> None:
    clock = Clock(100 * DAY)

    async def scenario(store: SQLiteStore) -> int:
        await accept(store, event("x", "Create", 0), clock.now - 8 * DAY, "a")
        pruned = counter()
        pruner = Pruner(
            store, retention_seconds=7 * DAY, pruned=pruned, clock=clock, interval_seconds=0.01
        )
        pruner.start()
        assert pruner.running
        await wait_for_async(lambda: total(pruned) == 1, message="the event pruned")
        await pruner.stop()
        assert not pruner.running
        return len(await store.events("x", limit=10))

    assert with_store(tmp_path, clock, scenario) == 0


def test_app_exports_the_metric(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    client.post("/webhooks/opsgenie", json=sample("Create"), headers=auth())
    assert "relay_events_pruned_total 0.0" in client.get("/metrics").text
