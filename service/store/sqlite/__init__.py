"""The store on a local SQLite file: ``SQLiteStore``, built from its parts.

``engine`` owns the file, the group-commit writer and the reader; ``outbox`` and
``service_objects`` are the two halves of ``Store`` and write through that one engine;
``schema`` holds the migrations; ``reconcile_checks`` is ``Reconcilable``, which steers the
automatic reconcile. The folding the outbox replays stored events with is
passed in (``replay``), ``service.folding.replay`` unless the builder says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.datastructures import Secret

from service import folding
from service.crypto import KeyCipher
from service.folding import Replay
from service.store import (
    Attempt,
    Delivery,
    Incoming,
    OpenReference,
    OutboxStats,
    Outcome,
    Pending,
    Region,
    ServiceObject,
    ServiceObjectChanges,
    Status,
    StoredEvent,
)
from service.store.sqlite.engine import SQLiteEngine
from service.store.sqlite.outbox import FOLD_BUDGET, SQLiteOutbox
from service.store.sqlite.reconcile_checks import SQLiteReconcileChecks
from service.store.sqlite.service_objects import SQLiteServiceObjects

__all__ = ["FOLD_BUDGET", "SQLiteEngine", "SQLiteOutbox", "SQLiteServiceObjects", "SQLiteStore"]


class SQLiteStore:
    """``Store`` on one SQLite file: its outbox and its service objects over one engine,
    and ``Reconcilable``.

    Each method hands the call to the half that holds it, so a caller (or a test's
    subclass) sees one object, as the app opens and closes one.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float],
        cipher: KeyCipher | None = None,
        max_batch: int = 512,
        replay: Replay = folding.replay,
        fold_budget: int = FOLD_BUDGET,
    ) -> None:
        self.engine = SQLiteEngine(path, max_batch=max_batch)
        self.outbox = SQLiteOutbox(self.engine, clock=clock, replay=replay, fold_budget=fold_budget)
        self.service_objects = SQLiteServiceObjects(self.engine, clock=clock, cipher=cipher)
        # The outbox's own "fold the inbox first", shared rather than copied: the checks
        # read and mark the same alert rows.
        self.checks = SQLiteReconcileChecks(self.engine, ingested=self.outbox._ingested)

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> None:
        await self.engine.close()

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

    # ---- Reconcilable ----------------------------------------------------------------

    async def open_references(self, service_id: str, *, limit: int) -> list[OpenReference]:
        return await self.checks.open_references(service_id, limit=limit)

    async def mark_checked(self, reference_ids: Sequence[str], *, at: float) -> None:
        await self.checks.mark_checked(reference_ids, at=at)
