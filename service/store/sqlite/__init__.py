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

from service import folding
from service.crypto import KeyCipher
from service.folding import Replay
from service.store import OpenReference
from service.store.composed import Composed
from service.store.sqlite.engine import SQLiteEngine
from service.store.sqlite.outbox import FOLD_BUDGET, SQLiteOutbox
from service.store.sqlite.reconcile_checks import SQLiteReconcileChecks
from service.store.sqlite.service_objects import SQLiteServiceObjects

__all__ = ["FOLD_BUDGET", "SQLiteEngine", "SQLiteOutbox", "SQLiteServiceObjects", "SQLiteStore"]


class SQLiteStore(Composed):
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

    # ---- Reconcilable ----------------------------------------------------------------

    async def open_references(self, service_id: str, *, limit: int) -> list[OpenReference]:
        return await self.checks.open_references(service_id, limit=limit)

    async def mark_checked(self, reference_ids: Sequence[str], *, at: float) -> None:
        await self.checks.mark_checked(reference_ids, at=at)
