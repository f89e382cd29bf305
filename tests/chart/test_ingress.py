"""The Ingress exposes Opsgenie's webhooks, the admin API only on request, never /metrics."""

from __future__ import annotations

import helm_python as helm
import pytest

from tests.chart.helpers import ALL_VALUES, FULLNAME, Manifest, Rendered, render

NEVER_ROUTED = ("/metrics", "/healthz", "/readyz", "/openapi.json")


def _paths(ingress: Manifest) -> list[tuple[str | None, str, str]]:
    """``(host, path, pathType)`` for every rule, checking each backend on the way."""
    found = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"] == {"service": {"name": FULLNAME, "port": {"name": "http"}}}
            found.append((rule.get("host"), path["path"], path["pathType"]))
    return found


def test_no_ingress_by_default(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].maybe("Ingress") is None


def test_only_webhooks_by_default(rendered: dict[str, Rendered]) -> None:
    ingress = rendered["ingress-values.yaml"].one("Ingress")
    assert _paths(ingress) == [("relay.example.com", "/webhooks/", "Prefix")]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "relay-example-com-tls", "hosts": ["relay.example.com"]}
    ]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}


def test_admin_api_only_when_opted_in(rendered: dict[str, Rendered]) -> None:
    ingress = rendered["ingress-admin-values.yaml"].one("Ingress")
    assert _paths(ingress) == [
        ("relay.example.com", "/webhooks/", "Prefix"),
        ("relay.example.com", "/api/", "Prefix"),
    ]


@pytest.mark.parametrize("name", ALL_VALUES)
def test_metrics_and_health_never_routed(rendered: dict[str, Rendered], name: str) -> None:
    ingress = rendered[name].maybe("Ingress")
    if ingress is None:
        return
    for _, path, path_type in _paths(ingress):
        assert path_type == "Prefix"
        assert path in ("/webhooks/", "/api/")
        assert not any(p.startswith(path.rstrip("/")) for p in NEVER_ROUTED)


def test_defaults_when_enabled_route_every_host_without_class(chart: helm.Chart) -> None:
    ingress = render(chart, {"ingress": {"enabled": True}}).one("Ingress")
    assert _paths(ingress) == [(None, "/webhooks/", "Prefix")]
    assert "ingressClassName" not in ingress["spec"]
    assert "tls" not in ingress["spec"]


def test_every_host_gets_the_same_paths(chart: helm.Chart) -> None:
    values = {"ingress": {"enabled": True, "hosts": ["a.example.com", "b.example.com"]}}
    ingress = render(chart, values).one("Ingress")
    assert _paths(ingress) == [
        ("a.example.com", "/webhooks/", "Prefix"),
        ("b.example.com", "/webhooks/", "Prefix"),
    ]
