"""postgresql mode: a Deployment of interchangeable replicas, no claim, a disruption budget,
an optional autoscaler, and the database URL and shared key from Secrets only."""

from __future__ import annotations

import base64
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart.helpers import (
    ALL_VALUES,
    FULLNAME,
    Rendered,
    Values,
    is_sqlite,
    load_values,
    render,
    walk,
)

PG_VALUES = [name for name in ALL_VALUES if not is_sqlite(name)]
URL = "postgresql://relay:ci-not-a-real-password@postgres.example.com:5432/relay?sslmode=require"
#: The least postgresql mode renders with: a URL and the shared key.
MINIMAL: Values = {
    "database": {"mode": "postgresql", "postgresql": {"url": URL}},
    "secrets": {"secretKey": "shared-secret-key-0123"},
}


def _with(**changes: Any) -> Values:
    """MINIMAL with top-level keys replaced."""
    return {**MINIMAL, **changes}


def _selector(result: Rendered) -> dict[str, str]:
    return dict(result.workload["spec"]["selector"]["matchLabels"])


def test_there_are_postgresql_values_files() -> None:
    assert {"postgresql-values.yaml", "postgresql-url-values.yaml"} <= set(PG_VALUES)
    assert "postgresql-hpa-values.yaml" in PG_VALUES


@pytest.mark.parametrize("name", ALL_VALUES)
def test_the_mode_picks_the_workload(rendered: dict[str, Rendered], name: str) -> None:
    result = rendered[name]
    if is_sqlite(name):
        assert result.workload["kind"] == "StatefulSet"
        assert result.maybe("Deployment") is None
        assert result.maybe("HorizontalPodAutoscaler") is None
    else:
        assert result.workload["kind"] == "Deployment"
        assert result.maybe("StatefulSet") is None


@pytest.mark.parametrize("name", PG_VALUES)
def test_postgresql_mode_has_no_volume_of_its_own(rendered: dict[str, Rendered], name: str) -> None:
    result = rendered[name]
    assert result.maybe("PersistentVolumeClaim") is None
    assert "volumeClaimTemplates" not in result.workload["spec"]
    assert {m["mountPath"] for m in result.container["volumeMounts"]} == {"/tmp"}
    assert [set(v) - {"name"} for v in result.pod["spec"]["volumes"]] == [{"emptyDir"}]


def test_replicas_default_to_two_in_postgresql_mode(
    rendered: dict[str, Rendered], chart: helm.Chart
) -> None:
    assert rendered["postgresql-url-values.yaml"].workload["spec"]["replicas"] == 2
    assert rendered["postgresql-values.yaml"].workload["spec"]["replicas"] == 3
    assert rendered["default"].workload["spec"]["replicas"] == 1
    assert render(chart, _with(replicaCount=5)).workload["spec"]["replicas"] == 5
    assert "(postgresql mode, 2 replicas)" in rendered["postgresql-url-values.yaml"].notes


@pytest.mark.parametrize("name", PG_VALUES)
def test_a_rollout_brings_a_new_pod_up_before_an_old_one_goes(
    rendered: dict[str, Rendered], name: str
) -> None:
    assert rendered[name].workload["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_replicas_spread_across_nodes_and_zones_softly(rendered: dict[str, Rendered]) -> None:
    result = rendered["postgresql-url-values.yaml"]
    constraints = result.pod["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    for constraint in constraints:
        # Soft: a cluster of one node still runs every replica.
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"] == {"matchLabels": _selector(result)}
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    assert "topologySpreadConstraints" not in rendered["default"].pod["spec"]


def test_spread_constraints_can_be_replaced_or_removed(chart: helm.Chart) -> None:
    mine = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "relay"}},
        }
    ]
    replaced = render(chart, _with(topologySpreadConstraints=mine))
    assert replaced.pod["spec"]["topologySpreadConstraints"] == mine
    removed = render(chart, _with(topologySpreadConstraints=[]))
    assert "topologySpreadConstraints" not in removed.pod["spec"]


def test_a_terminating_replica_keeps_serving_until_the_ingress_lets_go(
    rendered: dict[str, Rendered], chart: helm.Chart
) -> None:
    """The preStop sleep comes out of the grace period: drain + 10 s + the sleep."""
    result = rendered["postgresql-url-values.yaml"]
    assert result.container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    assert result.pod["spec"]["terminationGracePeriodSeconds"] == 20 + 10 + 5
    none = render(chart, _with(deployment={"preStopSleepSeconds": 0}, shutdownDrainSeconds=30))
    assert "lifecycle" not in none.container
    assert none.pod["spec"]["terminationGracePeriodSeconds"] == 40
    assert "lifecycle" not in rendered["default"].container


# --- the disruption budget -----------------------------------------------------------------


def test_several_replicas_get_a_budget_keeping_one(rendered: dict[str, Rendered]) -> None:
    result = rendered["postgresql-url-values.yaml"]
    pdb = result.one("PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": _selector(result)}}
    assert (
        rendered["postgresql-values.yaml"].one("PodDisruptionBudget")["spec"]["minAvailable"] == 2
    )
    assert rendered["postgresql-hpa-values.yaml"].one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": _selector(result)},
    }


def test_no_default_budget_on_a_single_replica(chart: helm.Chart) -> None:
    assert render(chart, _with(replicaCount=1)).maybe("PodDisruptionBudget") is None
    off = render(chart, _with(podDisruptionBudget={"enabled": False}))
    assert off.maybe("PodDisruptionBudget") is None


@pytest.mark.parametrize(
    "budget",
    [{"minAvailable": 2}, {"minAvailable": 3}, {"minAvailable": "100%"}, {"maxUnavailable": 0}],
)
def test_a_budget_that_would_block_drains_is_refused(
    chart: helm.Chart, budget: dict[str, Any]
) -> None:
    with pytest.raises(helm.HelmRenderError, match="node drain blocks forever"):
        render(chart, _with(podDisruptionBudget=budget))  # 2 replicas


# --- the autoscaler ------------------------------------------------------------------------


def test_the_autoscaler_owns_the_replica_count(rendered: dict[str, Rendered]) -> None:
    result = rendered["postgresql-hpa-values.yaml"]
    hpa = result.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME},
        "minReplicas": 3,
        "maxReplicas": 10,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 60},
                },
            }
        ],
    }
    # A count in the Deployment would reset the autoscaler's on every upgrade.
    assert "replicas" not in result.workload["spec"]
    # Utilization is of the request: without one the autoscaler cannot work.
    assert result.container["resources"]["requests"]["cpu"]
    assert "3 to 10 replicas" in result.notes


def test_no_autoscaler_by_default(rendered: dict[str, Rendered]) -> None:
    for name in ("default", "postgresql-values.yaml", "postgresql-url-values.yaml"):
        assert rendered[name].maybe("HorizontalPodAutoscaler") is None


def test_autoscaling_needs_postgresql(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"autoscaling\.enabled needs database\.mode"):
        render(chart, {"autoscaling": {"enabled": True}})


def test_autoscaling_bounds_must_make_sense(chart: helm.Chart) -> None:
    values = _with(autoscaling={"enabled": True, "minReplicas": 4, "maxReplicas": 3})
    with pytest.raises(helm.HelmRenderError, match=r"maxReplicas \(3\) is below"):
        render(chart, values)


# --- secrets -------------------------------------------------------------------------------


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _secret(result: Rendered, name: str) -> dict[str, Any] | None:
    found = [s for s in result.all("Secret") if s["metadata"]["name"] == name]
    return found[0] if found else None


def test_the_chart_keeps_the_url_in_a_secret_of_its_own(rendered: dict[str, Rendered]) -> None:
    result = rendered["postgresql-url-values.yaml"]
    secret = _secret(result, f"{FULLNAME}-database")
    assert secret is not None
    assert _decoded(secret) == {"database-url": URL}
    assert result.env["RELAY_DATABASE_URL"] == {
        "name": "RELAY_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": f"{FULLNAME}-database", "key": "database-url"}},
    }


def test_an_existing_secret_holds_the_url(rendered: dict[str, Rendered], chart: helm.Chart) -> None:
    result = rendered["postgresql-values.yaml"]
    assert _secret(result, f"{FULLNAME}-database") is None
    assert result.env["RELAY_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "relay-postgresql", "key": "url"}
    }
    # It wins over a URL given too, as secrets.existingSecret wins over inline values.
    both = _with(
        database={"mode": "postgresql", "postgresql": {"url": URL, "existingSecret": "pg"}}
    )
    result = render(chart, both)
    assert _secret(result, f"{FULLNAME}-database") is None
    assert result.env["RELAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "pg"


def test_the_url_key_is_configurable(chart: helm.Chart) -> None:
    values = _with(database={"mode": "postgresql", "postgresql": {"url": URL, "urlKey": "dsn"}})
    result = render(chart, values)
    secret = _secret(result, f"{FULLNAME}-database")
    assert secret is not None
    assert _decoded(secret) == {"dsn": URL}
    assert result.env["RELAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "dsn"


def test_a_new_url_rolls_the_replicas(chart: helm.Chart) -> None:
    def checksum(url: str) -> str:
        values = _with(database={"mode": "postgresql", "postgresql": {"url": url}})
        return str(render(chart, values).pod["metadata"]["annotations"]["checksum/database"])

    assert checksum(URL) != checksum(URL.replace("relay?", "relay2?"))
    assert checksum(URL) == checksum(URL)


@pytest.mark.parametrize("name", PG_VALUES)
def test_every_replica_must_get_the_same_secret_key(
    rendered: dict[str, Rendered], name: str
) -> None:
    ref = rendered[name].env["RELAY_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
    existing = load_values(name).get("secrets", {}).get("existingSecret")
    assert ref == {"name": existing or FULLNAME, "key": "RELAY_SECRET_KEY", "optional": False}


def test_postgresql_mode_without_a_secret_key_fails_saying_so(chart: helm.Chart) -> None:
    values = {"database": MINIMAL["database"]}
    with pytest.raises(helm.HelmRenderError, match=r"needs secrets\.secretKey .*every replica"):
        render(chart, values)


def test_postgresql_mode_without_a_url_fails_saying_so(chart: helm.Chart) -> None:
    values = _with(database={"mode": "postgresql"})
    with pytest.raises(
        helm.HelmRenderError,
        match=r"database\.postgresql\.url .* or database\.postgresql\.existingSecret",
    ):
        render(chart, values)


def _secret_strings(values: Values) -> set[str]:
    """Every credential a values set holds in plain text."""
    secrets = values.get("secrets", {})
    found = {str(v) for k, v in secrets.items() if k != "existingSecret" and isinstance(v, str)}
    found.update(secrets.get("webhookTokens", []))
    found.add(values.get("database", {}).get("postgresql", {}).get("url", ""))
    found.add(",".join(secrets.get("webhookTokens", [])))
    return {s for s in found if s}


@pytest.mark.parametrize("name", ALL_VALUES)
def test_no_credential_is_rendered_outside_a_secret(
    rendered: dict[str, Rendered], name: str
) -> None:
    """Credentials reach the pod only by ``secretKeyRef``: none in an env value, an
    annotation or the notes, where ``kubectl describe`` and anyone who reads them would see
    it. (Secrets hold them base64-encoded.)"""
    literals = _secret_strings(load_values(name))
    result = rendered[name]
    if name == "all-values.yaml" or name.startswith("postgresql-url"):
        assert literals  # the check below has something to look for
    for obj in result.objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        assert not [s for s in literals if s in text], obj["kind"]
        for path, value in walk(obj):
            if path.endswith(".env") and isinstance(value, list):
                for entry in value:
                    if entry["name"] in {"RELAY_DATABASE_URL", "RELAY_SECRET_KEY"}:
                        assert "value" not in entry or entry["value"].startswith("sqlite:")
    assert not [s for s in literals if s in result.notes]


@pytest.mark.parametrize("name", [n for n in ALL_VALUES if is_sqlite(n)])
def test_sqlite_mode_renders_nothing_of_postgresql_mode(
    rendered: dict[str, Rendered], name: str
) -> None:
    """sqlite mode's objects are what they were before postgresql mode had a Deployment
    (checked once against that rendering: only the chart version label differs)."""
    result = rendered[name]
    assert _secret(result, f"{FULLNAME}-database") is None
    assert "checksum/database" not in result.pod["metadata"]["annotations"]
    assert "lifecycle" not in result.container
    assert "topologySpreadConstraints" not in result.pod["spec"]
    assert "strategy" not in result.workload["spec"]
    assert result.workload["spec"]["podManagementPolicy"] == "OrderedReady"
    drain = load_values(name).get("shutdownDrainSeconds", 20)
    assert result.pod["spec"]["terminationGracePeriodSeconds"] == drain + 10
