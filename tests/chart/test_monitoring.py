"""The Service and the ServiceMonitor scraping ``/metrics`` on the ``http`` port."""

from __future__ import annotations

import pytest

from tests.chart.helpers import ALL_VALUES, Manifest, Rendered


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
