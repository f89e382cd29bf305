"""The chart renders for every values set, and what it renders is valid Kubernetes."""

from __future__ import annotations

import json
import re

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.chart.helpers import (
    ALL_VALUES,
    CHART_DIR,
    CI_VALUES,
    DASHBOARD,
    FULLNAME,
    NAMESPACE,
    Rendered,
    load_values,
)

# The newest Kubernetes whose schemas kubernetes-validate ships (1.37 with 1.37.0).
KUBE_VERSION = kubernetes_validate.latest_version()

# Kinds the chart may render; anything else is a mistake.
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
    "StatefulSet",
}
#: The Prometheus Operator's kinds: no Kubernetes schema, so test_monitoring.py checks them.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

# Every toggle the issue lists has its ci/ file, like pushgateway's ci/ folder.
EXPECTED_CI_FILES = {
    "all-values.yaml",
    "existing-secret-values.yaml",
    "ingress-admin-values.yaml",
    "ingress-values.yaml",
    "networkpolicy-values.yaml",
    "pdb-values.yaml",
    "postgresql-hpa-values.yaml",
    "postgresql-url-values.yaml",
    "postgresql-values.yaml",
    "rules-values.yaml",
    "servicemonitor-values.yaml",
    "grafana-dashboard-values.yaml",
}


def test_every_toggle_has_a_ci_values_file() -> None:
    assert set(CI_VALUES) >= EXPECTED_CI_FILES


def test_chart_metadata(chart: helm.Chart) -> None:
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "opsgenie-dx-relay"
    assert meta["appVersion"] == "0.1.0"
    assert chart.schema is not None


def test_kubernetes_validate_is_recent() -> None:
    major, minor = (int(part) for part in KUBE_VERSION.split(".")[:2])
    assert (major, minor) >= (1, 33)


@pytest.mark.parametrize("name", ALL_VALUES)
def test_renders_only_known_kinds_in_the_release_namespace(
    rendered: dict[str, Rendered], name: str
) -> None:
    result = rendered[name]
    kinds = [o["kind"] for o in result.objects]
    assert set(kinds) <= CORE_KINDS | CRD_KINDS
    named = [(o["kind"], o["metadata"]["name"]) for o in result.objects]
    assert len(named) == len(set(named)), f"one object per kind and name, got {named}"
    for obj in result.objects:
        assert obj["metadata"]["namespace"] == NAMESPACE
        # The dashboard's ConfigMap (the one the Grafana sidecar's label marks) sits beside
        # the rules' ConfigMap, so it alone has its own name; so does the chart's second
        # Secret, holding the PostgreSQL URL beside the tokens' Secret.
        dashboard = obj["kind"] == "ConfigMap" and "grafana_dashboard" in obj["metadata"]["labels"]
        expected = {DASHBOARD if dashboard else FULLNAME}
        if obj["kind"] == "Secret":
            expected.add(f"{FULLNAME}-database")
        assert obj["metadata"]["name"] in expected
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "opsgenie-dx-relay"
        assert labels["app.kubernetes.io/instance"] == "relay"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


@pytest.mark.parametrize("name", ALL_VALUES)
def test_objects_are_valid_kubernetes(rendered: dict[str, Rendered], name: str) -> None:
    """Strict schemas of the newest Kubernetes: unknown fields and wrong types fail."""
    for obj in rendered[name].objects:
        if obj["kind"] in CRD_KINDS:
            continue  # checked structurally in test_monitoring.py
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {obj['kind']} invalid at {where}: {exc.message}")


@pytest.mark.parametrize("name", ALL_VALUES)
def test_helm_lint_is_clean(name: str) -> None:
    """``helm lint --strict``: warnings count as errors; only 'icon is recommended' is info."""
    report = helm.lint(
        CHART_DIR, load_values(name) or None, strict=True, kube_version=f"v{KUBE_VERSION}"
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", ALL_VALUES)
def test_notes_render(rendered: dict[str, Rendered], name: str) -> None:
    notes = rendered[name].notes
    assert f"port-forward svc/{FULLNAME}" in notes
    assert "/metrics" in notes


def test_notes_give_the_opsgenie_webhook_url(rendered: dict[str, Rendered]) -> None:
    notes = rendered["ingress-values.yaml"].notes
    assert "https://relay.example.com/webhooks/opsgenie" in notes
    assert "Authorization: Bearer" in notes


def test_notes_warn_when_no_webhook_token(rendered: dict[str, Rendered]) -> None:
    assert "no webhook token" in rendered["default"].notes
    assert "no webhook token" not in rendered["all-values.yaml"].notes
    assert "no webhook token" not in rendered["existing-secret-values.yaml"].notes


# --- values.yaml documentation -------------------------------------------------------------

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?:\s|$)")


def _schema_paths() -> set[str]:
    """Dotted paths of every property values.schema.json names explicitly."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    paths: set[str] = set()

    def visit(node: dict[str, object], prefix: str) -> None:
        properties = node.get("properties")
        if isinstance(properties, dict):
            for key, sub in properties.items():
                path = f"{prefix}.{key}" if prefix else key
                paths.add(path)
                if isinstance(sub, dict):
                    visit(sub, path)

    visit(schema, "")
    return paths


def _values_keys() -> list[tuple[str, bool]]:
    """``(dotted.path, has a comment right above)`` for every key line of values.yaml."""
    lines = (CHART_DIR / "values.yaml").read_text(encoding="utf-8").splitlines()
    stack: list[tuple[int, str]] = []
    keys: list[tuple[str, bool]] = []
    for number, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), match["key"]])
        stack.append((indent, match["key"]))
        above = lines[number - 1].strip() if number else ""
        keys.append((path, above.startswith("#")))
    return keys


def test_every_value_has_a_comment() -> None:
    schema_paths = _schema_paths()
    keys = _values_keys()
    assert len(keys) > 50
    undocumented = [path for path, commented in keys if path in schema_paths and not commented]
    assert undocumented == []


def test_every_value_is_in_the_schema_and_the_readme() -> None:
    """values.yaml, values.schema.json and the README table name the same keys."""
    schema_paths = _schema_paths()
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    documented = {path for path, commented in _values_keys() if commented}
    assert documented <= schema_paths, documented - schema_paths
    missing = sorted(p for p in documented if f"| `{p}` |" not in readme)
    assert missing == []


def test_ci_values_files_are_plain_yaml_mappings() -> None:
    for name in CI_VALUES:
        assert isinstance(yaml.safe_load((CHART_DIR / "ci" / name).read_text()), dict)
