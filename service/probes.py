"""What Kubernetes and Prometheus ask of a running relay: healthz, readyz and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.errors import StoreUnavailable
from service.metrics import Metrics
from service.store import OutboxStats

#: How long readiness waits for the store: under the chart's probe timeout (3 s), so a
#: database that does not answer reads "store: timed out" rather than a probe timeout.
READY_DEADLINE = 2.0


class WorkerState(Protocol):
    """What readiness needs to know of the delivery worker."""

    @property
    def running(self) -> bool: ...
    @property
    def paused_reason(self) -> str | None: ...


class Probes:
    """``ping`` and ``stats`` are the store's; ``worker`` says whether deliveries go out."""

    def __init__(
        self,
        *,
        ping: Callable[[], Awaitable[None]],
        stats: Callable[[], Awaitable[OutboxStats]],
        worker: WorkerState,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ping = ping
        self._stats = stats
        self._worker = worker
        self._metrics = metrics
        self._clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> JSONResponse:
        """Ready means "this pod can take a webhook now": the store answers within
        ``READY_DEADLINE`` (PostgreSQL: a pooled connection and a query) and the worker runs
        (shutdown stops it first, so a draining replica leaves the Service while its last
        DX requests finish). Never tied to DX being up, or the ingress would turn Opsgenie
        away and alerts would be lost at the door. ``/healthz`` asks nothing of the store:
        a database outage makes every replica unready but restarts none."""
        problems = []
        try:
            await asyncio.wait_for(self._ping(), timeout=READY_DEADLINE)
        except (StoreUnavailable, TimeoutError) as exc:
            problems.append(f"store: {exc or 'timed out'}")
        if not self._worker.running:
            problems.append("delivery worker is not running")
        paused = self._worker.paused_reason
        body = {
            "status": "unready" if problems else "ready",
            "delivery": f"paused: {paused}" if paused else "active",
        }
        if problems:
            body["errors"] = problems  # type: ignore[assignment]
        return JSONResponse(body, status_code=503 if problems else 200)

    async def metrics(self, request: Request) -> Response:
        with contextlib.suppress(StoreUnavailable):
            self._metrics.observe_outbox(await self._stats(), now=self._clock())
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)
