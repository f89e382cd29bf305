"""Rendering the chart with real Helm and finding objects in the result."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "opsgenie-dx-relay"
CI_DIR = CHART_DIR / "ci"
RELEASE = "relay"
NAMESPACE = "alerting"
FULLNAME = "relay-opsgenie-dx-relay"
#: The dashboard's ConfigMap: the one object not named FULLNAME, beside the rules' ConfigMap.
DASHBOARD = f"{FULLNAME}-dashboard"

Values = dict[str, Any]
Manifest = dict[str, Any]

# "default" renders the chart's own values.yaml; the others are the files in ci/.
CI_VALUES: tuple[str, ...] = tuple(sorted(p.name for p in CI_DIR.glob("*-values.yaml")))
ALL_VALUES: tuple[str, ...] = ("default", *CI_VALUES)


def load_values(name: str) -> Values:
    """The values of ``name``: ``"default"`` (none given) or a file in the chart's ``ci/``."""
    if name == "default":
        return {}
    loaded = yaml.safe_load((CI_DIR / name).read_text(encoding="utf-8"))
    return dict(loaded or {})


def is_sqlite(name: str) -> bool:
    """Whether values set ``name`` keeps the chart's default ``database.mode: sqlite``."""
    mode = load_values(name).get("database", {}).get("mode", "sqlite")
    return bool(mode == "sqlite")


@dataclass(frozen=True)
class Rendered:
    """One rendering of the chart: its Kubernetes objects and its NOTES.txt."""

    objects: tuple[Manifest, ...]
    notes: str

    def all(self, kind: str, name: str | None = None) -> list[Manifest]:
        """Objects of ``kind``, only the one called ``name`` if given (two ConfigMaps exist)."""
        return [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]

    def maybe(self, kind: str, name: str | None = None) -> Manifest | None:
        found = self.all(kind, name)
        assert len(found) <= 1, f"more than one {kind}"
        return found[0] if found else None

    def one(self, kind: str, name: str | None = None) -> Manifest:
        found = self.maybe(kind, name)
        assert found is not None, f"no {kind} {name or ''} rendered"
        return found

    @property
    def workload(self) -> Manifest:
        """The relay's StatefulSet (sqlite mode) or Deployment (postgresql mode): one of them."""
        found = self.all("StatefulSet") + self.all("Deployment")
        assert len(found) == 1, f"{len(found)} workloads rendered"
        return found[0]

    @property
    def pod(self) -> Manifest:
        return dict(self.workload["spec"]["template"])

    @property
    def container(self) -> Manifest:
        containers = self.pod["spec"]["containers"]
        assert [c["name"] for c in containers] == ["relay"]
        return dict(containers[0])

    @property
    def env(self) -> dict[str, Manifest]:
        """The relay container's env entries by name (names are unique)."""
        entries = self.container["env"]
        names = [e["name"] for e in entries]
        assert len(names) == len(set(names)), f"duplicate env names: {names}"
        return {e["name"]: e for e in entries}


def render(chart: helm.Chart, values: Mapping[str, Any] | None = None) -> Rendered:
    """Render like ``helm install relay CHART -n alerting -f values``; Helm validates the schema."""
    manifests = chart.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[Manifest] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(objects=tuple(objects), notes=notes)


def walk(node: object, path: str = "") -> Iterator[tuple[str, object]]:
    """Every ``(dotted.path, value)`` pair in a nested structure, parents before children."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, value
            yield from walk(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


DASHBOARDS_DIR = CHART_DIR / "dashboards"


def dashboard_builder() -> ModuleType:
    """``dashboards/build.py``, the dashboard's generator: chart tooling, not a package."""
    spec = importlib.util.spec_from_file_location("relay_dashboard", DASHBOARDS_DIR / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def committed_dashboard() -> dict[str, Any]:
    """The dashboard JSON the chart ships."""
    loaded: dict[str, Any] = json.loads((DASHBOARDS_DIR / "relay.json").read_text("utf-8"))
    return loaded


def dashboard_targets(board: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(panel title, expr, legend format)`` of every query of every panel."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"], target["legendFormat"]


def debian_binary(name: str) -> str:
    """The path of ``name`` from Debian's ``prometheus`` package (``promtool``, ``prometheus``).

    Missing on a developer's machine: the test is skipped, saying how to get it. Missing in CI
    (``CI=true``, where .ci/prometheus installs the package): the test fails, so a broken
    install step cannot pass as a green run with the checks skipped.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found: install Debian's `prometheus` package (.ci/prometheus does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
