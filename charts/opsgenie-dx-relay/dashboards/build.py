"""The relay's Grafana dashboard, as code: ``python build.py`` writes ``relay.json`` beside it.

The chart ships the JSON (``templates/grafana-dashboard.yaml`` reads it with ``.Files.Get``);
this file is what a reviewer reads and edits, and a test fails when the two differ.

Built with Grafana's own ``grafana-foundation-sdk`` rather than a small generator of dicts:
its builders and models are generated from Grafana's dashboard schema, so a misspelt field
or a value of the wrong type is a mypy error here instead of a panel Grafana silently
drops; it is Apache-2.0, pure Python with no dependencies, and only a test dependency (the
relay's image never imports it). A home-made generator would be ~100 lines shorter but
would restate the schema by hand, which is the part most likely to be wrong.

Every query reads ``SELECTOR``: the ``namespace`` and ``job`` a ServiceMonitor gives the
relay's series, as the chart's alert rules do. The backlog gauges are ``max()``: with
several replicas on one PostgreSQL each pod reports the same shared outbox.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

OUTPUT = Path(__file__).with_name("relay.json")
UID = "opsgenie-dx-relay"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECTOR = 'namespace="$namespace", job="$job"'
WINDOW = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    #: Grafana's legend template: every ``{{label}}`` in it must be on the query's series.
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    #: What normal looks like, and what to do when it is not.
    description: str
    queries: tuple[Query, ...]
    unit: str


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _rate(metric: str, by: str = "", matchers: str = "") -> str:
    scope = f"{SELECTOR}, {matchers}" if matchers else SELECTOR
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{scope}}}[{WINDOW}]))"


def _quantiles(histogram: str) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, {_rate(histogram + '_bucket', 'le')})",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.99)
    )


REFUSALS = "unauthorized|not_found|invalid|too_large|unavailable"

ROWS = (
    Row(
        "Intake: webhooks from Opsgenie",
        (
            Panel(
                "Webhooks by action and outcome",
                "Webhooks per second by Opsgenie action and what the relay did. Normal: mostly"
                " `accepted`, some `duplicate` (Opsgenie resends) and `ignored` (actions with"
                " nothing for DX). Flat at zero while Opsgenie raises alerts: check the"
                " Opsgenie webhook integration and the ingress.",
                (
                    Query(
                        _rate("relay_webhooks_received_total", "action, outcome"),
                        "{{action}} {{outcome}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Webhooks refused, by cause",
                "Webhooks the relay did not store. Normal: none. `unauthorized` (401): the"
                " integration's Authorization header is not in RELAY_WEBHOOK_TOKENS;"
                " `not_found` (404): the URL names an unknown service object; `invalid`"
                ' (400) or `too_large` (413): see the relay\'s "webhook refused" log lines;'
                " `unavailable` (503): the database takes no write (disk full or locked), free"
                " it and recover with `opsgenie-dx-relay backfill`.",
                (
                    Query(
                        _rate("relay_webhooks_received_total", "outcome", f'outcome=~"{REFUSALS}"'),
                        "{{outcome}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Alert versions filtered out",
                "Alert versions the mapping rules' filter keeps from DX. Normal: steady, in"
                " line with the share of alerts you do not send. Everything filtered while"
                " incidents are expected in DX: check `filter` in the rules (RELAY_CONFIG).",
                (Query(_rate("relay_alerts_filtered_total"), "filtered"),),
                "ops",
            ),
        ),
    ),
    Row(
        "Delivery to DX",
        (
            Panel(
                "DX requests by outcome and error code",
                "Requests to DX per second. Normal: `success` with code `none`. `retryable`"
                " (http_429, http_5xx, timeout, network) is retried with backoff; `permanent`"
                " needs an operator (`opsgenie-dx-relay deliveries --status failed`); `auth`"
                " or `redirected` pause every delivery: check RELAY_DX_TOKEN and"
                " RELAY_DX_BASE_URL.",
                (
                    Query(
                        _rate("relay_dx_requests_total", "method, outcome, code"),
                        "{{method}} {{outcome}} {{code}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "DX retries",
                "DX requests that will be tried again. Normal: near zero. Sustained: DX is"
                " failing or rate limiting (see the panel beside); the backlog row shows"
                " whether changes are piling up.",
                (Query(_rate("relay_dx_retries_total"), "retries"),),
                "reqps",
            ),
            Panel(
                "DX request duration",
                "Time from sending a request to DX to its classified answer. Normal: p99"
                " well under a second. Rising towards the request timeout: DX is slow or the"
                " egress path is; deliveries fall behind and the backlog grows.",
                _quantiles("relay_dx_request_duration_seconds"),
                "s",
            ),
            Panel(
                "Delivery paused",
                "1 while every delivery is paused, by reason. Normal: 0. `not_authed`: DX"
                " refuses RELAY_DX_TOKEN; `redirected`: RELAY_DX_BASE_URL is wrong;"
                " `not_configured`: no DX settings. Webhooks are still stored and delivered"
                " once DX takes them.",
                (Query(f"max by (reason) (relay_delivery_paused{{{SELECTOR}}})", "{{reason}}"),),
                "none",
            ),
        ),
    ),
    Row(
        "Backlog",
        (
            Panel(
                "Pending and failed references",
                "References whose latest state DX does not hold yet (pending) and that DX"
                " rejected for good (failed). Normal: pending near zero between bursts,"
                " failed 0. Failed above 0: `opsgenie-dx-relay deliveries --status failed`,"
                " fix the cause (often the mapping rules), then `retry --all-failed`.",
                (
                    Query(f"max(relay_outbox_pending{{{SELECTOR}}})", "pending"),
                    Query(f"max(relay_outbox_failed{{{SELECTOR}}})", "failed"),
                ),
                "short",
            ),
            Panel(
                "Oldest pending change",
                "Age of the oldest change DX has not acknowledged. Normal: seconds, back to"
                " 0 when idle. Climbing: DX is unreachable or slow, or RELAY_DX_RATE_LIMIT"
                " is too low for the load; `opsgenie-dx-relay deliveries --status pending`"
                " shows the last errors.",
                (Query(f"max(relay_outbox_oldest_pending_age_seconds{{{SELECTOR}}})", "oldest"),),
                "s",
            ),
        ),
    ),
    Row(
        "End-to-end lag",
        (
            Panel(
                "Webhook to DX acknowledgement",
                "Time from the webhook that changed an alert to DX acknowledging that"
                " change. Normal: p50 under a second, p99 a few seconds. p99 in minutes:"
                " retries and backoff (see the delivery row) or a backlog.",
                _quantiles("relay_delivery_lag_seconds"),
                "s",
            ),
        ),
    ),
    Row(
        "Enrichment, reconcile and admin API",
        (
            Panel(
                "Alert API fetches (enrichment)",
                "Fetches that fill in partial alerts, by outcome. Normal: `success`, or none"
                " when webhooks carry full alerts. `skipped` means an alert went to DX with"
                " gaps (no Opsgenie API key on the service object, or attempts exhausted);"
                " `permanent`: check the key's permissions.",
                (Query(_rate("relay_enrichment_requests_total", "outcome"), "{{outcome}}"),),
                "reqps",
            ),
            Panel(
                "Reconciles and what they found",
                "Automatic reconciles by how they ended, and alerts they found the relay had"
                " missed or held older. Normal: `complete`, findings near zero. Findings"
                " mean webhooks were lost on the way: check the refusals panel and the"
                " ingress. `refused`: the Opsgenie API key is wrong.",
                (
                    Query(_rate("relay_reconcile_runs_total", "outcome"), "run {{outcome}}"),
                    Query(_rate("relay_reconcile_alerts_total", "finding"), "found {{finding}}"),
                ),
                "ops",
            ),
            Panel(
                "Reconcile errors from Opsgenie",
                "Opsgenie API requests of a reconcile that failed, by kind. Normal: none."
                " `http_429`: the account's API quota is spent elsewhere; `auth`: the"
                " service object's API key is refused.",
                (Query(_rate("relay_reconcile_api_errors_total", "kind"), "{{kind}}"),),
                "reqps",
            ),
            Panel(
                "Admin API requests (deliveries, retries, backfill)",
                "Admin API requests by route and HTTP status. Normal: occasional 2xx from"
                " operators. Repeated 401/403: a tool with a wrong key; 429: a script"
                " above RELAY_ADMIN_RATE_LIMIT.",
                (
                    Query(
                        _rate("relay_admin_requests_total", "route, status"), "{{route}} {{status}}"
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Raw events pruned",
                "Webhook events deleted after RELAY_EVENT_RETENTION (alert state is kept)."
                " Normal: steady, like the intake a retention period ago. None for longer"
                " than the retention: the volume keeps growing, see the relay's log.",
                (Query(_rate("relay_events_pruned_total"), "pruned"),),
                "ops",
            ),
        ),
    ),
    Row(
        "Process health",
        (
            Panel(
                "Scraped and up",
                "1 per relay pod Prometheus scrapes. Normal: 1 for each replica. 0 or"
                " missing: the pod is down or not scraped; webhooks sent meanwhile may be"
                " lost, recover them with `opsgenie-dx-relay backfill`.",
                (Query(f"up{{{SELECTOR}}}", "{{instance}}"),),
                "none",
            ),
            Panel(
                "Uptime",
                "Seconds since each relay process started. Normal: growing. Dropping to 0:"
                " a restart; look for OOM kills against the memory panel.",
                (Query(f"time() - process_start_time_seconds{{{SELECTOR}}}", "{{instance}}"),),
                "s",
            ),
            Panel(
                "Resident memory",
                "Memory of each relay process. Normal: flat, well under the pod's memory"
                " limit (256 MiB by default). Growing steadily: a leak or a huge backlog;"
                " near the limit the pod is OOM-killed.",
                (Query(f"process_resident_memory_bytes{{{SELECTOR}}}", "{{instance}}"),),
                "bytes",
            ),
            Panel(
                "CPU",
                "CPU seconds per second of each relay process. Normal: a small fraction of"
                " a core. Near 1: one uvicorn process per pod is saturated; add replicas"
                " (PostgreSQL mode).",
                (
                    Query(
                        f"rate(process_cpu_seconds_total{{{SELECTOR}}}[{WINDOW}])", "{{instance}}"
                    ),
                ),
                "percentunit",
            ),
            Panel(
                "Open file descriptors",
                "Open files and sockets of each relay process. Normal: tens. Approaching"
                " the limit: connections to DX or clients are not being closed.",
                (Query(f"process_open_fds{{{SELECTOR}}}", "{{instance}}"),),
                "short",
            ),
        ),
    ),
)


def _panel(spec: Panel, panel_id: int) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .height(8)
        .span(8)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        panel = panel.with_target(
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(ref)
        )
    return panel


def _variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def build() -> dict[str, object]:
    """The dashboard as Grafana's JSON model (what Grafana's sidecar provisions)."""
    board = (
        dashboard.Dashboard("Opsgenie DX relay")
        .uid(UID)
        .description(
            "Webhooks from Opsgenie, delivery to DX, backlog and lag of one relay release."
        )
        .tags(["opsgenie-dx-relay"])
        .editable()
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            _variable(
                "namespace", "Namespace", "label_values(relay_webhooks_received_total, namespace)"
            )
        )
        .with_variable(
            _variable(
                "job",
                "Job",
                'label_values(relay_webhooks_received_total{namespace="$namespace"}, job)',
            )
        )
    )
    ids = itertools.count(1)  # Grafana wants ids unique in a dashboard, rows included
    for row in ROWS:
        board = board.with_row(dashboard.Row(row.title).id(next(ids)))
        for spec in row.panels:
            board = board.with_panel(_panel(spec, next(ids)))
    encoded: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def render() -> str:
    """``relay.json``'s exact text: stable key order and indentation, so diffs stay small."""
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render(), encoding="utf-8")
