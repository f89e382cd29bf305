"""Prometheus metrics on a registry the app owns.

Each app builds its own ``CollectorRegistry``, so tests create fresh apps without
"Duplicated timeseries" errors and read values with ``get_sample_value``. Labels take
values from small fixed sets (never ids or names), and every combination starts at 0 so
dashboards and alerts see a series before the first event.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from service.opsgenie import Action
from service.store import OutboxStats

WEBHOOK_OUTCOMES = (
    "accepted",
    "duplicate",
    "ignored",
    "invalid",
    "unauthorized",
    "too_large",
    "not_found",
    "unavailable",
)
#: Every documented action, "other" for custom and unknown ones, "none" when unparseable.
ACTION_LABELS = (*(a.value for a in Action if a is not Action.FETCHED), "other", "none")
DX_OUTCOMES = ("success", "retryable", "permanent", "auth", "redirected")
DX_CODES = (
    "none",
    "invalid_arguments",
    "invalid_timestamp",
    "metadata_invalid",
    "invalid_json",
    "not_authed",
    "redirected",
    "not_found",
    "http_429",
    "http_5xx",
    "timeout",
    "network",
    "bad_response",
    "answer_too_large",
    "other",
)
#: Why delivery may be paused for every reference (``relay_delivery_paused{reason}``).
PAUSE_REASONS = ("not_authed", "redirected", "not_configured")
ENRICHMENT_OUTCOMES = ("success", "retryable", "permanent", "skipped")
#: How one service object's reconcile ended (``relay_reconcile_runs{outcome}``).
RECONCILE_OUTCOMES = (
    "complete",
    "budget_spent",
    "rate_limited",
    "unavailable",
    "refused",
    "failed",
)
#: What a reconcile found: an alert never seen, or one held with an older state.
RECONCILE_FINDINGS = ("missing", "changed")
#: Why an Opsgenie request of a reconcile failed.
RECONCILE_ERRORS = ("http_429", "http_5xx", "network", "auth", "other")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def action_label(action: str | None) -> str:
    if action is None:
        return "none"
    return action if action in ACTION_LABELS else "other"


def code_label(code: str | None, http_status: int | None) -> str:
    """A 429 or 5xx is labelled by its status, whatever code DX's body gives it: those
    bodies vary (``rate_limited``, ``service_unavailable``...), and an alert on rate
    limiting or an outage must not depend on their wording."""
    if http_status == 429:
        return "http_429"
    if http_status is not None and 500 <= http_status <= 599:
        return "http_5xx"
    if code is None:
        return "none"
    return code if code in DX_CODES else "other"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # The default registry has these; an app-owned one must add them itself, or memory,
        # restarts and open files go unseen (the pod runs under a memory limit).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.webhooks = Counter(
            "relay_webhooks_received",
            "Opsgenie webhooks received, by action and what the relay did with them.",
            ["action", "outcome"],
            registry=r,
        )
        self.filtered = Counter(
            "relay_alerts_filtered",
            "Alert versions not sent to DX because the filter rules exclude them.",
            registry=r,
        )
        self.dx_requests = Counter(
            "relay_dx_requests",
            "Requests to DX, by outcome and DX error code.",
            ["method", "outcome", "code"],
            registry=r,
        )
        self.dx_duration = Histogram(
            "relay_dx_request_duration_seconds",
            "Time for one DX request, from send to classified answer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lease_lost = Counter(
            "relay_delivery_lease_lost",
            "Deliveries whose result was dropped because their claim had passed to another"
            " replica (PostgreSQL): that replica delivers the reference now.",
            registry=r,
        )
        self.retries = Counter(
            "relay_dx_retries", "DX requests that will be tried again.", registry=r
        )
        self.lag = Histogram(
            "relay_delivery_lag_seconds",
            "Time from the webhook that changed an alert to DX acknowledging that change.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "relay_outbox_pending",
            "References whose latest state DX does not hold yet.",
            registry=r,
        )
        self.failed = Gauge(
            "relay_outbox_failed",
            "References DX rejected permanently; an operator must look and retry.",
            registry=r,
        )
        self.oldest_pending_age = Gauge(
            "relay_outbox_oldest_pending_age_seconds",
            "Age of the oldest change not yet acknowledged by DX (0 when none).",
            registry=r,
        )
        self.paused = Gauge(
            "relay_delivery_paused",
            "1 while every delivery is paused: DX refused the token (not_authed)"
            " or redirected, or DX is not configured.",
            ["reason"],
            registry=r,
        )
        self.admin = Counter(
            "relay_admin_requests",
            "Admin API requests, by route and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.enrichment = Counter(
            "relay_enrichment_requests",
            "Alert API fetches that fill gaps in partial alerts, by outcome"
            " (skipped: needed but no API key, or attempts exhausted).",
            ["outcome"],
            registry=r,
        )
        self.events_pruned = Counter(
            "relay_events_pruned",
            "Raw webhook events deleted after RELAY_EVENT_RETENTION (alert state is kept).",
            registry=r,
        )
        self.reconcile_runs = Counter(
            "relay_reconcile_runs",
            "Automatic reconciles of one service object, by how they ended.",
            ["outcome"],
            registry=r,
        )
        self.reconcile_alerts = Counter(
            "relay_reconcile_alerts",
            "Alerts a reconcile found the relay had missed (never seen) or held older.",
            ["finding"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "relay_reconcile_api_errors",
            "Opsgenie requests of a reconcile that failed, by kind.",
            ["kind"],
            registry=r,
        )
        self._initialise()

    def _initialise(self) -> None:
        for outcome in RECONCILE_OUTCOMES:
            self.reconcile_runs.labels(outcome)
        for finding in RECONCILE_FINDINGS:
            self.reconcile_alerts.labels(finding)
        for kind in RECONCILE_ERRORS:
            self.reconcile_errors.labels(kind)
        for outcome in ENRICHMENT_OUTCOMES:
            self.enrichment.labels(outcome)
        for action in ACTION_LABELS:
            for outcome in WEBHOOK_OUTCOMES:
                self.webhooks.labels(action, outcome)
        for method in ("upsert", "delete"):
            for outcome in DX_OUTCOMES:
                for code in DX_CODES:
                    self.dx_requests.labels(method, outcome, code)
        for reason in PAUSE_REASONS:
            self.paused.labels(reason).set(0)

    def observe_outbox(self, stats: OutboxStats, *, now: float) -> None:
        self.pending.set(stats.pending)
        self.failed.set(stats.failed)
        oldest = stats.oldest_pending_since
        self.oldest_pending_age.set(0.0 if oldest is None else max(0.0, now - oldest))
