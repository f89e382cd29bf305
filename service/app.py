"""The ASGI application, built by a factory so tests can build as many as they need.

Nothing is constructed at import time. ``create_app`` wires settings, store, metrics,
DX client and delivery worker; the lifespan opens and closes them in order, so the
worker never runs without a store and shutdown drains before the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service import __version__, openapi, webhooks
from service.accounts import Accounts
from service.crypto import KeyCipher
from service.deliveries_api import DeliveriesAPI
from service.delivery import Worker
from service.dx import DXClient, make_http_client
from service.enrichment import Enricher
from service.errors import AuthError, RelayError, StoreUnavailable
from service.mapping import Rules
from service.metrics import Metrics
from service.relay import Relay
from service.retention import Pruner
from service.rules_file import load_rules
from service.services_api import ServicesAPI
from service.settings import Settings
from service.store import Store
from service.store.sqlite import SQLiteStore

log = logging.getLogger("service.app")


def create_app(
    settings: Settings,
    *,
    rules: Rules | None = None,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the relay. ``transport`` and ``store`` let tests swap the outside world."""
    rules = rules if rules is not None else load_rules(settings.config_path)
    store = (
        store
        if store is not None
        else SQLiteStore(
            settings.database_path,
            clock=clock,
            cipher=KeyCipher.for_database(settings.database_path, settings.secret_key),
        )
    )
    metrics = Metrics(registry)
    http = make_http_client(settings, transport=transport)
    dx = (
        DXClient(http, base_url=settings.dx_base_url, token=str(settings.dx_token))
        if settings.dx_base_url is not None and settings.dx_token is not None
        else None
    )

    accounts = Accounts(settings, store, http)
    enrich = Enricher(
        store=store,
        objects=store,
        http=http,
        metrics=metrics,
        max_backoff=settings.retry_max_backoff_seconds,
        clock=clock,
    )
    worker = Worker(
        store=store,
        dx=dx,
        rules=rules,
        accounts=accounts.account,
        metrics=metrics,
        concurrency=settings.dx_concurrency,
        rate_limit=settings.dx_rate_limit,
        max_backoff=settings.retry_max_backoff_seconds,
        clock=clock,
        enrich=enrich,
    )
    pruner = Pruner(
        store,
        retention_seconds=settings.event_retention_seconds,
        pruned=metrics.events_pruned,
        clock=clock,
    )
    relay = Relay(
        settings=settings,
        rules=rules,
        store=store,
        metrics=metrics,
        worker=worker,
        accounts=accounts,
        http=http,
        clock=clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        _warn_about(settings)
        worker.start()
        pruner.start()
        log.info(
            "relay started",
            extra={"version": __version__, "database": str(settings.database_path)},
        )
        try:
            yield
        finally:
            await pruner.stop()
            await worker.stop(settings.shutdown_deadline_seconds)
            await http.aclose()
            await store.close()
            log.info("relay stopped")

    app = Starlette(
        routes=[
            # With a trailing slash too: Starlette would answer it with a redirect, which
            # a webhook sender may not follow, and the alert would never arrive.
            *(
                Route(path, webhooks.receive, methods=["POST"])
                for path in (
                    "/webhooks/opsgenie",
                    "/webhooks/opsgenie/",
                    "/webhooks/opsgenie/{service}",
                    "/webhooks/opsgenie/{service}/",
                )
            ),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi.endpoint, methods=["GET"]),
            *ServicesAPI(relay).routes(),
            *DeliveriesAPI(relay).routes(),
        ],
        exception_handlers={
            RelayError: relay_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    app.state.relay = relay
    return app


def _warn_about(settings: Settings) -> None:
    if not settings.webhook_tokens:
        log.warning("RELAY_WEBHOOK_TOKENS is not set: every webhook is refused with 401")
    if not settings.delivery_enabled:
        log.warning(
            "RELAY_DX_BASE_URL or RELAY_DX_TOKEN is not set: events are stored, deliveries paused"
        )


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the store takes writes and the worker runs; never tied to DX being up,
    or the ingress would turn Opsgenie away and alerts would be lost at the door."""
    relay: Relay = request.app.state.relay
    problems = []
    try:
        await asyncio.wait_for(relay.store.ping(), timeout=2.0)
    except (StoreUnavailable, TimeoutError) as exc:
        problems.append(f"store: {exc or 'timed out'}")
    if not relay.worker.running:
        problems.append("delivery worker is not running")
    paused = relay.worker.paused_reason
    body = {
        "status": "unready" if problems else "ready",
        "delivery": f"paused: {paused}" if paused else "active",
    }
    if problems:
        body["errors"] = problems  # type: ignore[assignment]
    return JSONResponse(body, status_code=503 if problems else 200)


async def metrics_endpoint(request: Request) -> Response:
    relay: Relay = request.app.state.relay
    with contextlib.suppress(StoreUnavailable):
        relay.metrics.observe_outbox(await relay.store.stats(), now=relay.clock())
    return Response(generate_latest(relay.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def relay_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RelayError)
    challenge = exc.challenge if isinstance(exc, AuthError) else None
    return JSONResponse(
        {"errors": [exc.message]},
        status_code=exc.status_code,
        headers={"WWW-Authenticate": challenge} if challenge else None,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"errors": [exc.detail]}, status_code=exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return JSONResponse({"errors": ["internal error"]}, status_code=500)
