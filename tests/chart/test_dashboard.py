"""The Grafana dashboard: its ConfigMap, the JSON matching its generator, and a valid model.

Whether its queries find the relay's series in a real Prometheus is tests/e2e/test_dashboard.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import helm_python as helm
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard, VariableType
from starlette.testclient import TestClient

from service.app import handles
from tests.chart.helpers import (
    DASHBOARD,
    DASHBOARDS_DIR,
    NAMESPACE,
    Rendered,
    committed_dashboard,
    dashboard_builder,
    dashboard_targets,
    render,
)

SELECTOR = 'namespace="$namespace", job="$job"'
ROWS = (
    "Intake: webhooks from Opsgenie",
    "Delivery to DX",
    "Backlog",
    "End-to-end lag",
    "Enrichment, reconcile and admin API",
    "Process health",
)


def test_no_dashboard_by_default(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].maybe("ConfigMap", DASHBOARD) is None


@pytest.mark.parametrize("name", ["grafana-dashboard-values.yaml", "all-values.yaml"])
def test_dashboard_config_map_carries_the_committed_json(
    rendered: dict[str, Rendered], name: str
) -> None:
    config_map = rendered[name].one("ConfigMap", DASHBOARD)
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert list(config_map["data"]) == ["opsgenie-dx-relay.json"]
    assert json.loads(config_map["data"]["opsgenie-dx-relay.json"]) == committed_dashboard()


def test_dashboard_folder_annotation(rendered: dict[str, Rendered]) -> None:
    filed = rendered["grafana-dashboard-values.yaml"].one("ConfigMap", DASHBOARD)
    assert filed["metadata"]["annotations"] == {"grafana_folder": "Alerting"}
    unfiled = rendered["all-values.yaml"].one("ConfigMap", DASHBOARD)
    assert "annotations" not in unfiled["metadata"]


def test_dashboard_label_folder_and_namespace_are_settable(chart: helm.Chart) -> None:
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "label": "example.com/dashboard",
            "labelValue": "relay",
            "folder": "SRE / Alerting",
            "folderAnnotation": "example.com/folder",
            "namespace": "monitoring",
        }
    }
    metadata = render(chart, values).one("ConfigMap", DASHBOARD)["metadata"]
    assert metadata["labels"]["example.com/dashboard"] == "relay"
    assert "grafana_dashboard" not in metadata["labels"]
    assert metadata["annotations"] == {"example.com/folder": "SRE / Alerting"}
    assert metadata["namespace"] == "monitoring"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"grafanaDashboard": {"enabled": "yes"}}, "/grafanaDashboard/enabled"),
        ({"grafanaDashboard": {"labelValue": 1}}, "/grafanaDashboard/labelValue"),
        ({"grafanaDashboard": {"label": "has space"}}, "/grafanaDashboard/label"),
        ({"grafanaDashboard": {"namespace": "Monitoring"}}, "/grafanaDashboard/namespace"),
        ({"grafanaDashboard": {"folders": "x"}}, "additional properties 'folders'"),
    ],
)
def test_dashboard_values_schema(chart: helm.Chart, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match="values don't meet the specifications") as e:
        render(chart, values)
    assert where in str(e.value)


def test_the_generator_is_not_packaged() -> None:
    ignored = (DASHBOARDS_DIR.parent / ".helmignore").read_text(encoding="utf-8").splitlines()
    assert "dashboards/*.py" in ignored


def test_committed_json_is_what_the_generator_writes() -> None:
    """Edit build.py, then run it: ``python charts/opsgenie-dx-relay/dashboards/build.py``."""
    expected: str = dashboard_builder().render()
    committed = (DASHBOARDS_DIR / "relay.json").read_text(encoding="utf-8")
    assert committed == expected, "relay.json is stale: run dashboards/build.py"


# --- validity for the schema version it declares ----------------------------------------------
# Grafana publishes its dashboard schema as CUE; grafana-foundation-sdk's models are generated
# from it. Neither the SDK's wheel nor Grafana ships a JSON schema a test could load, so the
# model is checked two ways: decoded by the SDK's generated models and encoded again, it must
# come back unchanged (every key, at every depth, is one the schema knows); and the fields
# the schema requires are present with the types it gives them, checked explicitly below.


def test_dashboard_declares_the_sdk_schema_version() -> None:
    assert committed_dashboard()["schemaVersion"] == Dashboard().schema_version == 36


def test_dashboard_round_trips_through_grafanas_generated_model() -> None:
    register_default_plugins()  # panel options and Prometheus queries decode to their models
    board = committed_dashboard()
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert again == board


def test_a_key_grafana_does_not_know_is_caught() -> None:
    register_default_plugins()
    board = committed_dashboard()
    board["panels"][1]["targets"][0]["exprr"] = "up"
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert again != board


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def test_dashboard_has_the_fields_its_schema_requires() -> None:
    board = committed_dashboard()
    # Dashboard: schemaVersion, templating and annotations are required.
    assert _is_int(board["schemaVersion"])
    assert isinstance(board["templating"], dict)
    assert isinstance(board["annotations"], dict)
    assert isinstance(board["uid"], str)
    assert 8 <= len(board["uid"]) <= 40
    assert set(board["time"]) == {"from", "to"}
    # Variables: type (one of VariableType) and name.
    kinds = {kind.value for kind in VariableType}
    for variable in board["templating"]["list"]:
        assert variable["type"] in kinds
        assert isinstance(variable["name"], str)
        assert variable.get("refresh", 1) in (0, 1, 2)
        assert variable.get("hide", 0) in (0, 1, 2)
    # Panels: type, id unique in the dashboard, gridPos inside the 24-column grid.
    ids = [panel["id"] for panel in board["panels"]]
    assert all(_is_int(i) for i in ids)
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert isinstance(panel["type"], str)
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert all(_is_int(v) for v in grid.values())
        assert grid["h"] > 0
        assert 0 < grid["w"] <= 24
        assert grid["x"] + grid["w"] <= 24
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            # RowPanel: type, collapsed, id and panels are required.
            assert panel["collapsed"] is False
            assert panel["panels"] == []
            continue
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


# --- what the dashboard shows --------------------------------------------------------------------


def test_rows_are_the_issues() -> None:
    rows = [p["title"] for p in committed_dashboard()["panels"] if p["type"] == "row"]
    assert tuple(rows) == ROWS


def test_every_panel_says_what_normal_looks_like_and_what_to_do() -> None:
    for panel in committed_dashboard()["panels"]:
        if panel["type"] != "row":
            assert "Normal:" in panel["description"], panel["title"]
            assert len(panel["description"]) > 120, panel["title"]


def test_variables_pick_the_release_like_the_alert_rules() -> None:
    variables = {v["name"]: v for v in committed_dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["query"] == (
        "label_values(relay_webhooks_received_total, namespace)"
    )
    assert variables["job"]["query"] == (
        'label_values(relay_webhooks_received_total{namespace="$namespace"}, job)'
    )


SERIES = re.compile(r"\b([a-z_]+)\{([^}]*)\}")


def test_every_query_is_scoped_to_the_release() -> None:
    """Every series selector carries the namespace and job, as the ServiceMonitor scrapes them."""
    targets = list(dashboard_targets(committed_dashboard()))
    assert len(targets) >= 20
    for title, expr, _ in targets:
        selectors = SERIES.findall(expr)
        assert selectors, (title, expr)
        for metric, matchers in selectors:
            assert matchers.startswith(SELECTOR), (title, metric)


def test_legends_name_only_labels_the_query_keeps() -> None:
    """A ``{{label}}`` must survive aggregation: it is in ``by (...)``, or nothing aggregates."""
    for title, expr, legend in dashboard_targets(committed_dashboard()):
        grouped = re.findall(r"\bby \(([^)]*)\)", expr)
        for label in re.findall(r"\{\{(\w+)\}\}", legend):
            if grouped:
                assert all(label in g.split(", ") for g in grouped), (title, label)
            else:
                assert not re.search(r"\b(sum|max|min|avg|count)\b", expr), (title, label)


def test_dashboard_asks_only_for_what_the_relay_exports(
    make_client: Callable[..., TestClient],
) -> None:
    """Every series and label a panel reads exists, so a renamed metric cannot leave a panel
    silently empty (``up`` is Prometheus's own)."""
    registry = handles(make_client().app).metrics.registry
    exported: dict[str, set[str]] = {"up": {"instance"}}
    for family in registry.collect():
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    for title, expr, legend in dashboard_targets(committed_dashboard()):
        used = set(re.findall(r"\bby \(([^)]*)\)", expr))
        for metric, matchers in SERIES.findall(expr):
            assert metric in exported, (title, metric)
            labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|=)", matchers)) - {"namespace", "job"}
            grouped = {label for group in used for label in group.split(", ")} - {"le"}
            assert labels | grouped <= exported[metric], (title, metric)
        assert set(re.findall(r"\{\{(\w+)\}\}", legend)) <= {"instance"} | {
            label for labels in exported.values() for label in labels
        }, title
