"""Rendering the chart with real Helm and finding objects in the result."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "opsgenie-dx-relay"
CI_DIR = CHART_DIR / "ci"
RELEASE = "relay"
NAMESPACE = "alerting"
FULLNAME = "relay-opsgenie-dx-relay"

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

    def all(self, kind: str) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def maybe(self, kind: str) -> Manifest | None:
        found = self.all(kind)
        assert len(found) <= 1, f"more than one {kind}"
        return found[0] if found else None

    def one(self, kind: str) -> Manifest:
        found = self.maybe(kind)
        assert found is not None, f"no {kind} rendered"
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
