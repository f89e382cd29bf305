"""The dashboard's queries and the alert rules, evaluated by a real Prometheus scraping a relay.

A relay (real process, fake DX on a real socket) takes webhooks, refuses one, retries through
DX 503s, has one alert rejected for good, then is paused by DX refusing its token. Prometheus
scrapes it every second under the labels the chart's ServiceMonitor gives it, and loads the
chart's rendered PrometheusRule. Then every dashboard query, with Grafana's variables
substituted, must return series carrying every label its legend names, and every alert
expression must evaluate, find its series, and fire exactly when the driven state says so. A
metric or label renamed on either side leaves a query empty or a legend label missing here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart.helpers import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    committed_dashboard,
    dashboard_targets,
    debian_binary,
    render,
)
from tests.conftest import sample
from tests.e2e.conftest import RelayProcess
from tests.e2e.prometheus import PrometheusServer
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

#: What Grafana puts in for the dashboard's variables: the release as the chart deploys it.
#: ``$__rate_interval`` is at least four scrape intervals in Grafana; 15 scrapes here.
VARIABLES = {"$namespace": NAMESPACE, "$job": FULLNAME, "$__rate_interval": "15s"}
#: Alerts the driven state must make fire (or pend, inside their ``for:``), and the rest.
FIRING = {
    "OpsgenieDXRelayWebhooksRefused",
    "OpsgenieDXRelayDeliveryPaused",
    "OpsgenieDXRelayDeliveryFailed",
    "OpsgenieDXRelayDeliveryBacklog",
}
QUIET = {"OpsgenieDXRelayDown", "OpsgenieDXRelayStoreUnavailable"}
SERIES = re.compile(r"\b([a-z_]+\{[^}]*\})")


def _create(alert_id: str) -> dict[str, Any]:
    body = copy.deepcopy(sample("Create"))
    body["alert"]["alertId"] = alert_id
    return body


def _substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable this test does not know: {expr}"
    return expr


@pytest.fixture
def rules(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The chart's PrometheusRule as a rules file; a 1 s backlog threshold, so a paused
    relay's backlog trips it within the test."""
    values = {"prometheusRule": {"enabled": True, "backlogAgeSeconds": 1}}
    with helm.Chart.load(CHART_DIR) as chart:
        spec = render(chart, values).one("PrometheusRule")["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return {rule["alert"]: rule for group in spec["groups"] for rule in group["rules"]}


@pytest.fixture
def prometheus(
    tmp_path: Path, relay_env: dict[str, str], rules: dict[str, dict[str, Any]]
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        debian_binary("prometheus"),
        tmp_path,
        target=f"127.0.0.1:{relay_env['RELAY_PORT']}",
        labels={"job": FULLNAME, "namespace": NAMESPACE},
        rules=tmp_path / "rules.yaml",
    )
    try:
        yield server.start()
    finally:
        server.stop()


def _drive(process: RelayProcess, fake_dx: FakeDX) -> None:
    """Webhooks accepted and delivered through two 503s, one refused, one rejected by DX for
    good; then DX refuses the token, so delivery pauses with a change pending."""
    fake_dx.reject("opsgenie-rejected")
    fake_dx.fail_next(2, status=503)
    assert process.post(_create("delivered")).status_code == 202
    assert process.post(_create("rejected")).status_code == 202
    assert process.post(_create("refused"), token="not-a-webhook-token").status_code == 401
    wait_for(lambda: fake_dx.incident("opsgenie-delivered"), timeout=30, message="delivered")
    wait_for(lambda: process.metric("relay_outbox_failed") == 1, timeout=30, message="failed")
    fake_dx.ok_false_next(100_000, "not_authed")
    assert process.post(_create("paused")).status_code == 202
    wait_for(
        lambda: process.metric("relay_delivery_paused", reason="not_authed") == 1,
        timeout=30,
        message="delivery paused by not_authed",
    )


def test_dashboard_and_alerts_against_a_real_prometheus(
    relay: Callable[..., RelayProcess],
    fake_dx: FakeDX,
    prometheus: PrometheusServer,
    rules: dict[str, dict[str, Any]],
) -> None:
    process = relay()
    # Counters must be scraped at 0 before they move, or increase() has no start to count from.
    wait_for(
        lambda: prometheus.query(f'up{{job="{FULLNAME}"}} == 1'),
        timeout=30,
        message="Prometheus scraped the relay",
    )
    _drive(process, fake_dx)
    # Prometheus has scraped the paused state and the backlog is past its 1 s threshold.
    wait_for(
        lambda: prometheus.query(_substitute(rules["OpsgenieDXRelayDeliveryBacklog"]["expr"])),
        timeout=60,
        message="backlog visible in Prometheus",
    )

    # The dashboard's variables find the release.
    for variable in committed_dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        values = prometheus.api(f"label/{match[2]}/values", **{"match[]": _substitute(match[1])})
        assert VARIABLES[f"${variable['name']}"] in values, (variable["name"], values)

    # Every panel query returns series, each with every label its legend shows.
    for title, expr, legend in dashboard_targets(committed_dashboard()):
        query = _substitute(expr)
        series = wait_for(
            lambda q=query: prometheus.query(q), timeout=30, message=f"{title}: {query}"
        )
        wanted = re.findall(r"\{\{(\w+)\}\}", legend)
        for one in series:
            missing = [label for label in wanted if not one["metric"].get(label)]
            assert not missing, f"{title}: {query} has no {missing} in {one['metric']}"

    # Every alert expression evaluates; each series selector in it finds the relay's series;
    # it returns something exactly when its alert should fire.
    assert set(rules) == FIRING | QUIET
    for alert, rule in rules.items():
        expr = rule["expr"]
        for selector in SERIES.findall(expr):
            assert prometheus.query(selector), f"{alert}: {selector} finds nothing"
        result = prometheus.query(expr)
        assert bool(result) == (alert in FIRING), (alert, expr, result)

    # Prometheus itself loaded the rules and evaluates them without error.
    loaded = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in loaded} == set(rules)
    assert all(r["health"] == "ok" for r in loaded), loaded
    wait_for(
        lambda: {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]} == FIRING,
        timeout=30,
        message="the driven alerts pending or firing in Prometheus",
    )
