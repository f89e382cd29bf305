"""uvicorn, run so that a shutdown keeps to one ``RELAY_SHUTDOWN_DEADLINE``.

uvicorn first waits up to its graceful timeout for open requests, and only then tells the
app to shut down, where the delivery worker gets its own deadline for requests to DX. One
after the other that is twice the deadline, past the pod's grace period (the deadline plus
10 s), and the SIGKILL would cut both short. So the worker starts stopping when shutdown
begins, beside uvicorn's drain, and the lifespan's own stop then only waits for it.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from collections.abc import Awaitable, Callable

import prometheus_client
import uvicorn
from starlette.applications import Starlette

from service.http_protocol import ClientLimits, bounded_protocol
from service.settings import Settings

#: Net new container objects between two youngest-generation collections (CPython: 700).
#: The 32 requests a busy relay has in flight hold more than 700 between them, so the
#: default collected about 100 times a second under load, finding nothing to free.
YOUNG_COLLECTION_THRESHOLD = 10_000

#: Stops the delivery worker within a deadline (seconds): ``Worker.stop``.
StopWorker = Callable[[float], Awaitable[None]]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stop_worker: StopWorker, deadline: float) -> None:
        super().__init__(config)
        self._stop_worker = stop_worker
        self._deadline = deadline

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopping = asyncio.ensure_future(self._stop_worker(self._deadline))
        try:
            await super().shutdown(sockets)
        finally:
            await stopping


def run(app: Starlette, settings: Settings, *, stop_worker: StopWorker) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then drain within the shutdown deadline;
    ``stop_worker`` is the app's delivery worker's, started as shutdown begins."""
    # A ``_created`` series beside every counter and histogram child would double each
    # scrape (half its samples, here) for a timestamp Prometheus does not use.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Longer than the ingress's idle timeout (60 s), or the ingress sees 502s.
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=int(settings.shutdown_deadline_seconds),
        access_log=settings.access_log,
        log_config=None,
        http=bounded_protocol(
            ClientLimits(
                max_head_bytes=settings.max_header_bytes,
                head_timeout=settings.header_timeout_seconds,
                max_connections=settings.max_connections,
                body_timeout=settings.body_timeout_seconds,
            )
        ),
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        workers=1,
        server_header=False,
    )
    settle_heap()
    _Server(config, stop_worker, settings.shutdown_deadline_seconds).run()


def settle_heap() -> None:
    """Keep the garbage collector's pauses off the request path.

    The modules, routes and settings built by now (some 50,000 objects) live as long as the
    process, yet every full collection walked them all: 30-40 ms with the event loop
    stopped, once every second or two under load, and every request in flight waited (the
    intake p99). Frozen, they are skipped (a full collection then took 0.5 ms); they are
    still freed by reference counting if ever dropped. Measured with ``bench/run.py``
    (``bench/README.md``).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
