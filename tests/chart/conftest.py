from __future__ import annotations

from collections.abc import Iterator

import helm_python as helm
import pytest

from tests.chart.helpers import ALL_VALUES, CHART_DIR, Rendered, load_values, render


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def rendered(chart: helm.Chart) -> dict[str, Rendered]:
    """Each values set (``default`` and every ``ci/*-values.yaml``) rendered once."""
    return {name: render(chart, load_values(name)) for name in ALL_VALUES}
