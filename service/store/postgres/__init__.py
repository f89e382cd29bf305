"""The store on PostgreSQL, shared by several replicas: ``PostgresStore``, built from its parts.

``engine`` owns the pool, intake's group commit and the wake-up channel; ``outbox`` and
``service_objects`` are the two halves of ``Store``; ``schema`` holds the migrations and
applies them once however many replicas start together. The same interface as
``service.store.sqlite``, with what several writers need on top: claims carry leases and
fencing tokens (``outbox``), folding takes events out of an inbox rather than past a
high-water mark (``states``), and ``wait_for_work`` wakes a worker when any replica
stores work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.datastructures import Secret

from service import folding
from service.crypto import KeyCipher
from service.folding import Replay
from service.store import (
    Attempt,
    Delivery,
    Incoming,
    OutboxStats,
    Outcome,
    Pending,
    Region,
    ServiceObject,
    ServiceObjectChanges,
    Status,
    StoredEvent,
)
from service.store.postgres.engine import PoolLimits, PostgresEngine
from service.store.postgres.outbox import FOLD_BUDGET, LEASE, PostgresOutbox
from service.store.postgres.service_objects import PostgresServiceObjects

__all__ = [
    "FOLD_BUDGET",
    "LEASE",
    "PoolLimits",
    "PostgresEngine",
    "PostgresOutbox",
    "PostgresServiceObjects",
    "PostgresStore",
]


class PostgresStore:
    """``Store`` on one PostgreSQL database (``url``: ``postgresql://...``), which other
    replicas' stores may share.

    ``cipher`` seals service objects' Opsgenie keys and must be the same on every replica
    (``RELAY_SECRET_KEY``); ``lease`` is how long a claim holds a reference.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float],
        cipher: KeyCipher,
        limits: PoolLimits = PoolLimits(),  # noqa: B008  (frozen, so shared safely)
        max_batch: int = 256,
        replay: Replay = folding.replay,
        fold_budget: int = FOLD_BUDGET,
        lease: float = LEASE,
    ) -> None:
        self.engine = PostgresEngine(url, limits=limits, max_batch=max_batch)
        self.outbox = PostgresOutbox(
            self.engine, clock=clock, replay=replay, fold_budget=fold_budget, lease=lease
        )
        self.service_objects = PostgresServiceObjects(self.engine, clock=clock, cipher=cipher)

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> None:
        await self.engine.close()

    async def wait_for_work(self, seconds: float) -> bool:
        """True once any replica stored work since the last True, False after ``seconds``:
        the worker's sleep between rounds, cut short when a webhook comes in."""
        return await self.engine.wait_for_work(seconds)

    # ---- Outbox ----------------------------------------------------------------------

    async def ping(self) -> None:
        await self.outbox.ping()

    async def accept(self, incoming: Incoming) -> Outcome:
        return await self.outbox.accept(incoming)

    async def due(self, *, now: float, limit: int, exclude: Sequence[str]) -> list[Pending]:
        return await self.outbox.due(now=now, limit=limit, exclude=exclude)

    async def next_due_at(self) -> float | None:
        return await self.outbox.next_due_at()

    async def record_delivered(
        self, pending: Pending, *, request: dict[str, Any], response: str, attempt: Attempt
    ) -> None:
        await self.outbox.record_delivered(
            pending, request=request, response=response, attempt=attempt
        )

    async def record_retry(
        self,
        pending: Pending,
        *,
        request: dict[str, Any] | None,
        response: str | None = None,
        next_attempt_at: float,
        attempt: Attempt,
    ) -> None:
        await self.outbox.record_retry(
            pending,
            request=request,
            response=response,
            next_attempt_at=next_attempt_at,
            attempt=attempt,
        )

    async def record_failed(
        self, pending: Pending, *, request: dict[str, Any], response: str | None, attempt: Attempt
    ) -> None:
        await self.outbox.record_failed(
            pending, request=request, response=response, attempt=attempt
        )

    async def record_filtered(self, pending: Pending) -> None:
        await self.outbox.record_filtered(pending)

    async def retry(self, reference_id: str, *, now: float) -> bool:
        return await self.outbox.retry(reference_id, now=now)

    async def retry_all_failed(self, *, now: float) -> int:
        return await self.outbox.retry_all_failed(now=now)

    async def stats(self) -> OutboxStats:
        return await self.outbox.stats()

    async def get(self, reference_id: str) -> Delivery | None:
        return await self.outbox.get(reference_id)

    async def deliveries(
        self, *, status: Status | None, limit: int, after: str | None
    ) -> list[Delivery]:
        return await self.outbox.deliveries(status=status, limit=limit, after=after)

    async def attempts(self, reference_id: str, *, limit: int) -> list[Attempt]:
        return await self.outbox.attempts(reference_id, limit=limit)

    async def events(
        self, alert_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        return await self.outbox.events(alert_id, limit=limit, before=before)

    async def event(self, alert_id: str, event_id: int) -> StoredEvent | None:
        return await self.outbox.event(alert_id, event_id)

    async def prune_events(self, *, before: float, limit: int) -> int:
        return await self.outbox.prune_events(before=before, limit=limit)

    # ---- ServiceObjects --------------------------------------------------------------

    async def create_service_object(
        self, *, id: str, name: str, region: Region, custom_url: str | None, api_key: Secret
    ) -> ServiceObject:
        return await self.service_objects.create_service_object(
            id=id, name=name, region=region, custom_url=custom_url, api_key=api_key
        )

    async def list_service_objects(self) -> list[ServiceObject]:
        return await self.service_objects.list_service_objects()

    async def get_service_object(self, id: str) -> ServiceObject | None:
        return await self.service_objects.get_service_object(id)

    async def find_service_object(self, id_or_name: str) -> ServiceObject | None:
        return await self.service_objects.find_service_object(id_or_name)

    async def update_service_object(
        self, id: str, changes: ServiceObjectChanges
    ) -> ServiceObject | None:
        return await self.service_objects.update_service_object(id, changes)

    async def delete_service_object(self, id: str) -> bool:
        return await self.service_objects.delete_service_object(id)
