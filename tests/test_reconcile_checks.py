"""``Reconcilable`` on every backend: which open alerts a reconcile reads back first, and
remembering that it did (``reconcile_checks`` in each backend's package)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from service.store import Reconcilable, Store
from tests.store_backends import (
    T0,
    Stores,
    body,
    event,
    stores_fixture,  # noqa: F401  (the ``stores`` fixture)
)

SERVICE = "11111111-2222-3333-4444-555555555555"


async def put(store: Store, alert: str, n: int = 0, service: str = SERVICE, **fields: Any) -> None:
    incoming = event(body(alert, n, **fields), received_at=T0 + n)
    await store.accept(replace(incoming, service_id=service))


def checks(store: Store) -> Reconcilable:
    assert isinstance(store, Reconcilable)
    return store


def test_open_alerts_come_never_checked_first_then_longest_unchecked(stores: Stores) -> None:
    async def scenario(store: Store) -> list[tuple[str, float | None]]:
        for alert in ("a", "b", "c", "d"):
            await put(store, alert)
        await checks(store).mark_checked(["opsgenie-b"], at=T0 + 50)
        await checks(store).mark_checked(["opsgenie-a"], at=T0 + 10)
        found = await checks(store).open_references(SERVICE, limit=10)
        return [(ref.reference_id, ref.checked_at) for ref in found]

    found = stores.run(scenario)
    assert sorted(found[:2]) == [("opsgenie-c", None), ("opsgenie-d", None)]
    assert found[2:] == [("opsgenie-a", T0 + 10), ("opsgenie-b", T0 + 50)]


def test_closed_deleted_and_other_services_alerts_are_not_open(stores: Stores) -> None:
    async def scenario(store: Store) -> list[str]:
        await put(store, "open")
        await put(store, "closed")
        await put(store, "closed", 1, action="Close")
        await put(store, "deleted")
        await put(store, "deleted", 1, action="Delete")
        await put(store, "elsewhere", service="99999999-2222-3333-4444-555555555555")
        found = await checks(store).open_references(SERVICE, limit=10)
        return [ref.reference_id for ref in found]

    assert stores.run(scenario) == ["opsgenie-open"]


def test_the_limit_bounds_what_one_reconcile_reads(stores: Stores) -> None:
    async def scenario(store: Store) -> int:
        for n in range(5):
            await put(store, f"a{n}")
        return len(await checks(store).open_references(SERVICE, limit=3))

    assert stores.run(scenario) == 3


def test_an_alert_whose_text_holds_an_escaped_nul_is_still_open(stores: Stores) -> None:
    """Valid JSON for the relay; PostgreSQL's JSON functions refuse it, so openness must
    not be read with them."""

    async def scenario(store: Store) -> list[str]:
        await put(store, "nul", message="before\u0000after")
        found = await checks(store).open_references(SERVICE, limit=10)
        return [ref.reference_id for ref in found]

    assert stores.run(scenario) == ["opsgenie-nul"]
