"""Bad values are refused by Helm itself: the schema first, then the chart's ``fail`` checks."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.chart.helpers import render

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    # wrong types
    ({"replicaCount": "1"}, "/replicaCount"),
    ({"shutdownDrainSeconds": "20"}, "/shutdownDrainSeconds"),
    ({"containerPort": 70000}, "/containerPort"),
    ({"ingress": {"enabled": "yes"}}, "/ingress/enabled"),
    ({"ingress": {"hosts": "relay.example.com"}}, "/ingress/hosts"),
    ({"secrets": {"webhookTokens": "a,b"}}, "/secrets/webhookTokens"),
    ({"secrets": {"webhookTokens": ["a,b"]}}, "/secrets/webhookTokens/0"),
    ({"secrets": {"dxToken": 12345}}, "/secrets/dxToken"),
    ({"rules": "services: {}"}, "/rules"),
    ({"rules": {"delete_incidents": "yes"}}, "/rules/delete_incidents"),
    ({"podSecurityContext": {"runAsUser": "10001"}}, "/podSecurityContext/runAsUser"),
    ({"resources": {"limits": {"memory": True}}}, "/resources/limits/memory"),
    # enums and patterns
    ({"logFormat": "xml"}, "/logFormat"),
    ({"database": {"mode": "mysql"}}, "/database/mode"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"dx": {"baseUrl": "acme.getdx.net"}}, "/dx/baseUrl"),
    ({"dx": {"baseUrl": "https://acme.getdx.net/api"}}, "/dx/baseUrl"),
    ({"dx": {"baseUrl": "https://acme.getdx.net?x=1"}}, "/dx/baseUrl"),
    # secrets the relay would refuse at start: shorter than 16 characters
    ({"secrets": {"webhookTokens": ["short-token"]}}, "/secrets/webhookTokens/0"),
    ({"secrets": {"apiKey": "short-api-key"}}, "/secrets/apiKey"),
    ({"secrets": {"appKey": "short-app-key"}}, "/secrets/appKey"),
    ({"secrets": {"readonlyAppKey": "short-ro-key"}}, "/secrets/readonlyAppKey"),
    ({"secrets": {"secretKey": "short-secret"}}, "/secrets/secretKey"),
    ({"opsgenie": {"webUrl": "app.opsgenie.com"}}, "/opsgenie/webUrl"),
    ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ({"persistence": {"mountPath": "data"}}, "/persistence/mountPath"),
    # postgresql mode's values
    ({"database": {"postgresql": {"url": "mysql://relay@db/relay"}}}, "/database/postgresql/url"),
    ({"database": {"postgresql": {"urlKey": ""}}}, "/database/postgresql/urlKey"),
    ({"replicaCount": 0}, "/replicaCount"),
    ({"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled"),
    ({"autoscaling": {"minReplicas": 0}}, "/autoscaling/minReplicas"),
    ({"autoscaling": {"targetCPUUtilizationPercentage": 150}}, "/autoscaling/target"),
    ({"deployment": {"preStopSleepSeconds": -1}}, "/deployment/preStopSleepSeconds"),
    ({"podDisruptionBudget": {"enabled": "auto"}}, "/podDisruptionBudget/enabled"),
    ({"topologySpreadConstraints": {"maxSkew": 1}}, "/topologySpreadConstraints"),
    ({"autoscaling": {"targetMemory": 80}}, "additional properties 'targetMemory'"),
    # unknown keys, top level and nested
    ({"replicas": 1}, "additional properties 'replicas'"),
    ({"logformat": "json"}, "additional properties 'logformat'"),
    ({"ingress": {"path": "/"}}, "additional properties 'path'"),
    ({"secrets": {"token": "x"}}, "additional properties 'token'"),
    ({"rules": {"service": {}}}, "additional properties 'service'"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_rejects(chart: helm.Chart, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match="values don't meet the specifications") as e:
        render(chart, values)
    assert where in str(e.value)


def test_sqlite_mode_refuses_more_than_one_replica(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"database\.mode=sqlite .*replicaCount=2"):
        render(chart, {"replicaCount": 2})


@pytest.mark.parametrize(
    "budget", [{"minAvailable": 1}, {"minAvailable": "100%"}, {"maxUnavailable": 0}]
)
def test_a_disruption_budget_that_would_block_drains_is_refused(
    chart: helm.Chart, budget: dict[str, Any]
) -> None:
    values = {"podDisruptionBudget": {"enabled": True, "minAvailable": None, **budget}}
    with pytest.raises(helm.HelmRenderError, match="node drain blocks forever"):
        render(chart, values)


def test_a_disruption_budget_that_lets_the_pod_go_is_rendered(chart: helm.Chart) -> None:
    render(chart, {"podDisruptionBudget": {"enabled": True}})
    render(chart, {"podDisruptionBudget": {"enabled": True, "minAvailable": 0}})


def test_postgresql_mode_needs_the_url_secret(chart: helm.Chart) -> None:
    values = {"database": {"mode": "postgresql"}, "replicaCount": 2}
    with pytest.raises(helm.HelmRenderError, match=r"database\.postgresql\.existingSecret"):
        render(chart, values)


def test_postgresql_mode_needs_a_shared_secret_key(chart: helm.Chart) -> None:
    values = {
        "database": {"mode": "postgresql", "postgresql": {"existingSecret": "pg"}},
        "replicaCount": 2,
    }
    with pytest.raises(helm.HelmRenderError, match=r"secrets\.secretKey"):
        render(chart, values)
    render(chart, {**values, "secrets": {"secretKey": "shared-secret-key-0123"}})
    render(chart, {**values, "secrets": {"existingSecret": "mine"}})


def test_schema_accepts_the_defaults_explicitly(chart: helm.Chart) -> None:
    """The chart's own values.yaml, passed back in full, passes its schema."""
    chart.validate_schema(chart.values)
