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

from collections.abc import Callable

from service import folding
from service.crypto import KeyCipher
from service.folding import Replay
from service.store.composed import Composed
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
