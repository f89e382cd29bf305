"""PodDisruptionBudget and NetworkPolicy, each off by default and on when toggled."""

from __future__ import annotations

import helm_python as helm
import pytest

from tests.chart.helpers import Rendered, render


@pytest.mark.parametrize("kind", ["PodDisruptionBudget", "NetworkPolicy"])
def test_off_by_default(rendered: dict[str, Rendered], kind: str) -> None:
    assert rendered["default"].maybe(kind) is None


def test_pdb(rendered: dict[str, Rendered]) -> None:
    result = rendered["pdb-values.yaml"]
    pdb = result.one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert (
        pdb["spec"]["selector"]["matchLabels"] == result.workload["spec"]["selector"]["matchLabels"]
    )


def test_pdb_min_available_wins(chart: helm.Chart) -> None:
    values = {  # several replicas: with SQLite's one, such a budget is refused
        "database": {"mode": "postgresql", "postgresql": {"existingSecret": "pg"}},
        "secrets": {"secretKey": "shared-secret-key-0123"},
        "replicaCount": 3,
        "podDisruptionBudget": {"enabled": True, "minAvailable": "50%"},
    }
    spec = render(chart, values).one("PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == "50%"
    assert "maxUnavailable" not in spec


def test_network_policy(rendered: dict[str, Rendered]) -> None:
    result = rendered["networkpolicy-values.yaml"]
    policy = result.one("NetworkPolicy")["spec"]
    assert (
        policy["podSelector"]["matchLabels"]
        == result.one("StatefulSet")["spec"]["selector"]["matchLabels"]
    )
    # Only ingress is restricted: egress to DX and Opsgenie stays open.
    assert policy["policyTypes"] == ["Ingress"]
    assert "egress" not in policy
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    controller, prometheus, extra = rule["from"]
    assert controller == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
    }
    assert prometheus == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    assert extra == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "relay-admin"}}}


def test_network_policy_peers_replace_the_defaults(chart: helm.Chart) -> None:
    """Peers are lists, so a value replaces the default selector instead of merging into it."""
    edge = {"namespaceSelector": {"matchLabels": {"team": "edge"}}}
    scraper = {
        "namespaceSelector": {"matchLabels": {"team": "obs"}},
        "podSelector": {"matchLabels": {"app": "vmagent"}},
    }
    values = {
        "networkPolicy": {
            "enabled": True,
            "ingressControllerPeers": [edge],
            "prometheusPeers": [scraper],
        }
    }
    [rule] = render(chart, values).one("NetworkPolicy")["spec"]["ingress"]
    assert rule["from"] == [edge, scraper]


def test_network_policy_never_admits_everyone(chart: helm.Chart) -> None:
    """A rule without peers would allow every source; the chart refuses it."""
    values = {
        "networkPolicy": {"enabled": True, "ingressControllerPeers": [], "prometheusPeers": []}
    }
    with pytest.raises(helm.HelmRenderError, match="at least one peer"):
        render(chart, values)
