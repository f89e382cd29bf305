"""The metrics the relay exports, against what the README promises an operator."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from service.app import handles

README = Path(__file__).resolve().parents[1] / "README.md"


def exported(client: TestClient) -> dict[str, tuple[str, ...]]:
    """The relay's own families, as scraped: name -> label names (every label set starts
    at 0, so each family has samples before anything happened)."""
    families = {}
    for family in handles(client.app).metrics.registry.collect():
        if not family.name.startswith("relay_"):
            continue  # process_* and python_*: prometheus-client's own collectors
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        families[name] = tuple(sorted(labels))
    return families


def documented() -> dict[str, tuple[str, ...]]:
    """Every ``relay_`` metric the README's "Operating it" section names, with its labels
    (in the metrics list the prefix is written once, up front)."""
    section = README.read_text(encoding="utf-8").split("## Operating it", 1)[1]
    section = section.split("\n## ", 1)[0]
    listed = section.split("Metrics (all `relay_`):", 1)[1].split("\n\n", 1)[0]
    listed = re.sub(r"\([^)]*\)", "", listed)  # asides name label values, not metrics
    names = [f"relay_{n}" for n in re.findall(r"`([a-z_]+(?:\{[a-z_,]+\})?)`", listed)]
    names += re.findall(r"`(relay_[a-z_]+(?:\{[a-z_,]+\})?)`", section)
    found = {}
    for name in names:
        base, _, labels = name.partition("{")
        found[base] = tuple(sorted(filter(None, labels.rstrip("}").split(","))))
    return found


def test_the_readme_names_every_metric_with_its_labels(
    make_client: Callable[..., TestClient],
) -> None:
    assert documented() == exported(make_client())
