"""The Service and the ServiceMonitor scraping ``/metrics`` on the ``http`` port."""

from __future__ import annotations

import re
from collections.abc import Callable

import helm_python as helm
import pytest
from starlette.testclient import TestClient

from service.app import handles
from tests.chart.helpers import ALL_VALUES, NAMESPACE, Manifest, Rendered, render


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("name", ALL_VALUES)
def test_service_targets_the_http_port(rendered: dict[str, Rendered], name: str) -> None:
    service = rendered[name].one("Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert _selects(service["spec"]["selector"], rendered[name].pod["metadata"]["labels"])


def test_no_service_monitor_by_default(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].maybe("ServiceMonitor") is None


@pytest.mark.parametrize("name", ["servicemonitor-values.yaml", "all-values.yaml"])
def test_service_monitor_structure(rendered: dict[str, Rendered], name: str) -> None:
    """A CRD, so no Kubernetes schema: checked here against the Prometheus Operator's shape."""
    monitor: Manifest = rendered[name].one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) <= {"endpoints", "selector", "namespaceSelector", "jobLabel"}
    service = rendered[name].one("Service")
    assert spec["selector"]["matchLabels"] == service["spec"]["selector"]
    assert _selects(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
    for key in ("interval", "scrapeTimeout"):
        assert isinstance(endpoint[key], str)
        assert endpoint[key][-1] in "smh"
    assert service["spec"]["ports"][0]["name"] == endpoint["port"]


def test_service_monitor_timings(rendered: dict[str, Rendered]) -> None:
    [endpoint] = rendered["servicemonitor-values.yaml"].one("ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")


ALERTS = {
    "OpsgenieDXRelayDown": "critical",
    "OpsgenieDXRelayWebhooksRefused": "warning",
    "OpsgenieDXRelayStoreUnavailable": "critical",
    "OpsgenieDXRelayDeliveryPaused": "critical",
    "OpsgenieDXRelayDeliveryFailed": "warning",
    "OpsgenieDXRelayDeliveryBacklog": "warning",
}


def _rules(rendered: Rendered) -> dict[str, Manifest]:
    rule = rendered.one("PrometheusRule")
    [group] = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def test_no_prometheus_rule_by_default(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].maybe("PrometheusRule") is None


@pytest.mark.parametrize("name", ["servicemonitor-values.yaml", "all-values.yaml"])
def test_prometheus_rule_structure(rendered: dict[str, Rendered], name: str) -> None:
    """A CRD, so no Kubernetes schema: checked here against the Prometheus Operator's shape
    (the rules themselves: ``promtool`` in test_alert_rules.py)."""
    rule = rendered[name].one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["namespace"] == NAMESPACE
    rules = _rules(rendered[name])
    assert {alert: r["labels"]["severity"] for alert, r in rules.items()} == ALERTS
    for alert, r in rules.items():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, alert
        assert set(r["annotations"]) == {"summary", "description"}, alert
        # Scoped to this release's series, as the chart's ServiceMonitor scrapes them: the
        # job label is the Service's name.
        service = rendered[name].one("Service")["metadata"]["name"]
        assert f'namespace="{NAMESPACE}", job="{service}"' in r["expr"], alert


def test_prometheus_templates_reach_prometheus_unrendered_by_helm(
    rendered: dict[str, Rendered],
) -> None:
    rules = _rules(rendered["all-values.yaml"])
    for alert in (
        "OpsgenieDXRelayWebhooksRefused",
        "OpsgenieDXRelayStoreUnavailable",
        "OpsgenieDXRelayDeliveryFailed",
        "OpsgenieDXRelayDeliveryBacklog",
    ):
        assert "{{ $value" in rules[alert]["annotations"]["description"], alert
    paused = rules["OpsgenieDXRelayDeliveryPaused"]["annotations"]["summary"]
    assert paused == "Every delivery to DX is paused: {{ $labels.reason }}."


def test_prometheus_rule_labels_and_backlog_threshold(rendered: dict[str, Rendered]) -> None:
    rule = rendered["servicemonitor-values.yaml"].one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    backlog = _rules(rendered["servicemonitor-values.yaml"])["OpsgenieDXRelayDeliveryBacklog"]
    assert backlog["expr"].endswith("> 600")
    assert _rules(rendered["all-values.yaml"])["OpsgenieDXRelayDeliveryBacklog"]["expr"].endswith(
        "> 900"
    )


def test_prometheus_rule_selector_can_be_set(chart: helm.Chart) -> None:
    values = {"prometheusRule": {"enabled": True, "selector": 'job="opsgenie-relay"'}}
    for alert, r in _rules(render(chart, values)).items():
        assert '{job="opsgenie-relay"' in r["expr"], alert
        assert "namespace=" not in r["expr"], alert


def test_prometheus_rule_asks_only_for_what_the_relay_exports(
    rendered: dict[str, Rendered], make_client: Callable[..., TestClient]
) -> None:
    """Every relay_* series and label a rule reads exists, so a renamed metric cannot leave
    an alert silently watching nothing."""
    registry = handles(make_client().app).metrics.registry
    exported: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    for alert, r in _rules(rendered["all-values.yaml"]).items():
        for metric, matchers in re.findall(r"(relay_[a-z_]+)\{([^}]*)\}", r["expr"]):
            assert metric in exported, (alert, metric)
            labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|=)", matchers))
            assert labels - {"namespace", "job"} <= exported[metric], (alert, metric)


@pytest.mark.parametrize("name", ["all-values.yaml", "postgresql-hpa-values.yaml"])
def test_rules_never_sum_a_gauge_over_replicas(rendered: dict[str, Rendered], name: str) -> None:
    """Several replicas on one database: the outbox gauges describe that database, and a
    sum over pods would count the backlog once per replica. Only counters are summed."""
    rules = _rules(rendered[name])
    gauges = 0
    for alert, r in rules.items():
        for aggregation, metric in re.findall(
            r"(\w+)(?:\s+by\s+\([^)]*\))?\s*\((relay_\w+)", r["expr"]
        ):
            if metric.endswith("_total"):
                continue
            gauges += 1
            assert aggregation == "max", (alert, metric)
        for metric in re.findall(r"sum\((?:increase|rate)\((relay_\w+)", r["expr"]):
            assert metric.endswith("_total"), (alert, metric)
    assert gauges >= 3  # failed, oldest pending age, paused
