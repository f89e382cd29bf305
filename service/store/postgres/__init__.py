"""The store on PostgreSQL, shared by several replicas: ``PostgresStore``, built from its parts.

``engine`` owns the pool, intake's group commit and the wake-up channels; ``outbox`` and
``service_objects`` are the two halves of ``Store``; ``schema`` holds the migrations and
applies them once however many replicas start together; ``reconcile_checks`` is
``Reconcilable``; ``dx_board`` is DX's pace and pause shared by every replica
(``DXBoard``); ``singleton`` is the advisory lock that lets one replica at a time run the
pruner, the outbox gauges and the reconcile. The same interface as
``service.store.sqlite``, with what several writers need on top: claims carry leases and
fencing tokens (``outbox``), folding takes events out of an inbox rather than past a
high-water mark (``states``), and ``wait_for_work`` wakes a worker when any replica
stores work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from service import folding
from service.crypto import KeyCipher
from service.folding import Replay
from service.store import OpenReference, Pending
from service.store.composed import Composed
from service.store.postgres.dx_board import PostgresDXBoard
from service.store.postgres.engine import PoolLimits, PostgresEngine
from service.store.postgres.outbox import FOLD_BUDGET, LEASE, PostgresOutbox
from service.store.postgres.reconcile_checks import PostgresReconcileChecks
from service.store.postgres.schema import SERVICE_OBJECTS_CHANNEL
from service.store.postgres.service_objects import PostgresServiceObjects
from service.store.postgres.singleton import AdvisoryLease

__all__ = [
    "FOLD_BUDGET",
    "LEASE",
    "AdvisoryLease",
    "PoolLimits",
    "PostgresEngine",
    "PostgresOutbox",
    "PostgresServiceObjects",
    "PostgresStore",
]


class PostgresStore(Composed):
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
        self._claims = PostgresOutbox(
            self.engine, clock=clock, replay=replay, fold_budget=fold_budget, lease=lease
        )
        self.outbox = self._claims
        self.service_objects = PostgresServiceObjects(self.engine, clock=clock, cipher=cipher)
        self.checks = PostgresReconcileChecks(self.engine, ingested=self._claims._ingested)
        #: DX's pace, 429 hold and pause, as every replica on this database shares them.
        self.dx_board = PostgresDXBoard(self.engine)
        #: Whether this replica runs the singletons now (``service.singleton.Lease``).
        self.singleton = AdvisoryLease(url)

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> None:
        await self.singleton.close()
        await self.engine.close()

    def watch_service_objects(self, changed: Callable[[str | None], None]) -> None:
        """``changed(id)`` when any replica changes or deletes a service object;
        ``changed(None)``: anything may have changed (notifications were missed)."""
        self.engine.watch(SERVICE_OBJECTS_CHANNEL, changed)

    # ---- SharedClaims ----------------------------------------------------------------

    @property
    def lease_seconds(self) -> float:
        return self._claims.lease_seconds

    async def renew(self, claims: Sequence[Pending]) -> list[str]:
        return await self._claims.renew(claims)

    # ---- Reconcilable ----------------------------------------------------------------

    async def open_references(self, service_id: str, *, limit: int) -> list[OpenReference]:
        return await self.checks.open_references(service_id, limit=limit)

    async def mark_checked(self, reference_ids: Sequence[str], *, at: float) -> None:
        await self.checks.mark_checked(reference_ids, at=at)

    async def wait_for_work(self, seconds: float) -> bool:
        """True once any replica stored work since the last True, False after ``seconds``:
        the worker's sleep between rounds, cut short when a webhook comes in."""
        return await self.engine.wait_for_work(seconds)
