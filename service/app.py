"""The ASGI application, built by a factory so tests can build as many as they need.

Nothing is constructed at import time. ``create_app`` wires settings, store, metrics,
DX client and delivery worker; the lifespan opens and closes them in order, so the
worker never runs without a store and shutdown drains before the store closes.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from service import __version__
from service.accounts import Accounts
from service.admin_route import RATE_PERIOD_SECONDS, RateLimiter
from service.auth import AdminKeys
from service.backfill import Backfill
from service.backfill_api import BackfillAPI
from service.crypto import KeyCipher
from service.deliveries_api import DeliveriesAPI
from service.delivery import Worker
from service.dx import DXClient, make_http_client
from service.dx_gate import SharedGate
from service.egress import Resolver, make_guarded_client, system_resolver
from service.enrichment import Enricher
from service.http_errors import EXCEPTION_HANDLERS
from service.logs import EventLog
from service.mapping import Rules
from service.metrics import Metrics
from service.openapi import OpenAPI
from service.pause import Pause
from service.probes import Probes
from service.reconcile import Reconciler
from service.retention import Pruner
from service.rules_file import load_rules
from service.services_api import ServicesAPI
from service.settings import Settings, database_label
from service.singleton import Lease, sole_runner
from service.store import OutboxStats, Reconcilable, Store
from service.store.postgres import PostgresStore
from service.store.sqlite import SQLiteStore
from service.webhooks import Webhooks

log = logging.getLogger("service.app")


@dataclass(frozen=True, slots=True, kw_only=True)
class Handles:
    """What runs behind a built app, for whoever runs or inspects it: the CLI hands
    ``worker.stop`` to the server, tests read the store and the metrics. No route sees it:
    each edge gets only its own collaborators."""

    store: Store
    metrics: Metrics
    worker: Worker
    accounts: Accounts


def handles(app: object) -> Handles:
    """The ``Handles`` of an app ``create_app`` built (typed loosely: a test client holds
    its app as any ASGI app)."""
    assert isinstance(app, Starlette)
    found = app.state.handles
    assert isinstance(found, Handles)
    return found


def create_app(
    settings: Settings,
    *,
    rules: Rules | None = None,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
    backfill: Callable[..., Backfill] = Backfill,
    events: EventLog | None = None,
    resolver: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
    lease: Lease | None = None,
) -> Starlette:
    """Build the relay. ``transport`` and ``store`` let tests swap the outside world;
    ``backfill`` lets them page through Opsgenie in smaller steps (``Backfill``'s knobs);
    ``events`` is what ``logs.configure`` returned, when the relay owns logging;
    ``resolver`` and ``verify`` are how the client carrying stored keys looks names up
    and which certificates it trusts (tests: a fake DNS, a self-signed authority);
    ``lease`` says whether this replica may run the singletons now (the reconcile, the
    pruner, the outbox gauges: one replica at a time; by default the PostgreSQL store's
    advisory lock, and always with SQLite)."""
    rules = rules if rules is not None else load_rules(settings.config_path)
    store = store if store is not None else _store_for(settings, clock)
    shared = store if isinstance(store, PostgresStore) else None
    if lease is None:
        lease = shared.singleton if shared is not None else sole_runner
    metrics = Metrics(registry)
    http = make_http_client(settings, transport=transport)
    # Requests carrying a stored Opsgenie key go where an admin's custom_url says, so they
    # connect only to addresses that are allowed (service.egress); DX's URL is the
    # operator's own and stays on the shared client.
    keyed = (
        make_guarded_client(
            settings,
            allow_private=settings.allow_private_upstreams,
            resolver=resolver,
            verify=verify,
        )
        if transport is None
        else http
    )
    dx = (
        DXClient(http, base_url=settings.dx_base_url, token=str(settings.dx_token))
        if settings.dx_base_url is not None and settings.dx_token is not None
        else None
    )

    accounts = Accounts(settings, store, keyed)
    enrich = Enricher(
        store=store,
        objects=store,
        http=keyed,
        metrics=metrics,
        max_backoff=settings.retry_max_backoff_seconds,
        clock=clock,
    )
    gate = (
        None  # the worker's own, in memory
        if shared is None
        else SharedGate(
            shared.dx_board,
            Pause(
                metrics.paused,
                configured=dx is not None,
                max_backoff=settings.retry_max_backoff_seconds,
            ),
            rate=settings.dx_rate_limit,
            clock=clock,
        )
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
        gate=gate,
    )
    pruner = Pruner(
        store,
        retention_seconds=settings.event_retention_seconds,
        pruned=metrics.events_pruned,
        clock=clock,
        lease=lease,
    )
    reconciler = (
        Reconciler(
            store=store,
            http=keyed,
            rules=rules,
            metrics=metrics,
            wake=worker.wake,
            interval_seconds=settings.reconcile_interval_seconds,
            budget=settings.reconcile_budget,
            lookback_seconds=settings.reconcile_lookback_seconds,
            clock=clock,
            lease=lease,
        )
        # A backend without ``Reconcilable`` yet runs everything else (see service.store).
        if settings.reconcile_interval_seconds > 0 and isinstance(store, Reconcilable)
        else None
    )
    keys = AdminKeys(
        api_key=settings.api_key,
        app_key=settings.app_key,
        readonly_app_key=settings.readonly_app_key,
    )
    webhooks = Webhooks(
        intake=store,
        rules=rules,
        received=metrics.webhooks,
        wake=worker.wake,
        tokens=settings.webhook_tokens,
        max_body_bytes=settings.max_body_bytes,
        events=events,
        clock=clock,
    )

    def forget(service_id: str) -> None:
        """A service object changed or was deleted: neither its account nor its name stays."""
        accounts.forget(service_id)
        webhooks.forget(service_id)

    def changed_elsewhere(service_id: str | None) -> None:
        """Another replica's change (``None``: some may have been missed)."""
        if service_id is None:
            accounts.forget_all()
            webhooks.forget_all()
        else:
            forget(service_id)

    if shared is not None:
        shared.watch_service_objects(changed_elsewhere)

    async def stats() -> OutboxStats:
        """The backlog, from the replica holding the lease; zeros from the others, so a
        sum (or a max) over pods is the backlog, not N times it."""
        async with lease() as held:
            return (
                await store.stats()
                if held
                else OutboxStats(pending=0, failed=0, oldest_pending_since=None)
            )

    probes = Probes(ping=store.ping, stats=stats, worker=worker, metrics=metrics, clock=clock)
    # One window per API key across every admin API: spreading calls over them buys nothing.
    limiter = RateLimiter(settings.admin_rate_limit, RATE_PERIOD_SECONDS, clock)
    services = ServicesAPI(
        objects=store,
        forget=forget,
        requests=metrics.admin,
        keys=keys,
        max_body_bytes=settings.max_body_bytes,
        rate_limit=settings.admin_rate_limit,
        allow_private=settings.allow_private_upstreams,
        clock=clock,
        limiter=limiter,
    )
    deliveries = DeliveriesAPI(
        deliveries=store,
        wake=worker.wake,
        requests=metrics.admin,
        keys=keys,
        limiter=limiter,
        clock=clock,
    )
    backfills = BackfillAPI(
        backfill=backfill(outbox=store, http=keyed, rules=rules, wake=worker.wake, clock=clock),
        requests=metrics.admin,
        keys=keys,
        limiter=limiter,
        max_body_bytes=settings.max_body_bytes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        _warn_about(settings)
        worker.start()
        pruner.start()
        if reconciler is not None:
            reconciler.start()
        elif settings.reconcile_interval_seconds > 0:
            log.warning("this store cannot reconcile yet: RELAY_RECONCILE_INTERVAL is ignored")
        log.info(
            "relay started",
            extra={"version": __version__, "database": database_label(settings)},
        )
        try:
            yield
        finally:
            if reconciler is not None:
                await reconciler.stop()
            await pruner.stop()
            await worker.stop(settings.shutdown_deadline_seconds)
            await http.aclose()
            if keyed is not http:
                await keyed.aclose()
            await store.close()
            log.info("relay stopped")

    routes = [
        *webhooks.routes(),
        *probes.routes(),
        *services.routes(),
        *deliveries.routes(),
        *backfills.routes(),
    ]
    app = Starlette(
        routes=[*routes, OpenAPI(routes, rules=rules).route],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.handles = Handles(store=store, metrics=metrics, worker=worker, accounts=accounts)
    return app


def _store_for(settings: Settings, clock: Callable[[], float]) -> Store:
    """PostgreSQL when the URL names it (shared by replicas; the key must be given, as
    ``Settings`` made sure), else the SQLite file, whose key may live beside it."""
    if settings.postgres_url is not None:
        assert settings.secret_key is not None  # Settings refuses PostgreSQL without it
        return PostgresStore(
            str(settings.postgres_url),
            clock=clock,
            cipher=KeyCipher.from_secret(settings.secret_key),
            lease=settings.delivery_lease_seconds,
        )
    return SQLiteStore(
        settings.database_path,
        clock=clock,
        cipher=KeyCipher.for_database(settings.database_path, settings.secret_key),
    )


def _warn_about(settings: Settings) -> None:
    if not settings.webhook_tokens:
        log.warning("RELAY_WEBHOOK_TOKENS is not set: every webhook is refused with 401")
    if not settings.delivery_enabled:
        log.warning(
            "RELAY_DX_BASE_URL or RELAY_DX_TOKEN is not set: events are stored, deliveries paused"
        )
