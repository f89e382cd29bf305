"""The store as one object made of its halves: each method hands the call to the half
that holds it.

A backend (``sqlite/``, ``postgres/``) builds an ``outbox`` and ``service_objects`` over
its engine and inherits the rest from here, so a caller (or a test's subclass overriding
one method) sees one ``Store``, as the app opens and closes one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Secret

from service.store import (
    Attempt,
    Delivery,
    Incoming,
    Outbox,
    OutboxStats,
    Outcome,
    Pending,
    Region,
    ServiceObject,
    ServiceObjectChanges,
    ServiceObjects,
    Status,
    StoredEvent,
)


class Composed:
    """``Store``'s methods over ``outbox`` and ``service_objects``, which the backend sets."""

    outbox: Outbox
    service_objects: ServiceObjects

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
