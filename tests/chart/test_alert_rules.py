"""The PrometheusRule's rules, checked and unit-tested by Prometheus's own ``promtool``.

test_monitoring.py checks the object's shape; here promtool parses every expression and
template (``check rules``) and runs promtool/alert_rules_test.yaml against them (``test
rules``): each alert firing, not yet firing, and ignoring what it must ignore.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart.helpers import Rendered, debian_binary, render

RULES_TEST = Path(__file__).with_name("promtool") / "alert_rules_test.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_binary("promtool")


def _write_rules(rendered: Rendered, directory: Path) -> Path:
    """The PrometheusRule's ``spec`` is a Prometheus rules file: the operator loads it as is."""
    path = directory / "rules.yaml"
    spec = rendered.one("PrometheusRule")["spec"]
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", ["servicemonitor-values.yaml", "all-values.yaml"])
def test_promtool_check_rules(
    promtool: str, rendered: dict[str, Rendered], name: str, tmp_path: Path
) -> None:
    result = _promtool(promtool, "check", "rules", _write_rules(rendered[name], tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def _run_rules_test(promtool: str, rendered: Rendered, directory: Path) -> str:
    _write_rules(rendered, directory)
    shutil.copy(RULES_TEST, directory / RULES_TEST.name)
    result = _promtool(promtool, "test", "rules", directory / RULES_TEST.name)
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def test_promtool_test_rules(promtool: str, chart: helm.Chart, tmp_path: Path) -> None:
    values: dict[str, Any] = {"prometheusRule": {"enabled": True}}
    output = _run_rules_test(promtool, render(chart, values), tmp_path)
    assert output.startswith("exit 0\n"), output
    assert "SUCCESS" in output


def test_promtool_test_rules_catch_a_rule_watching_another_release(
    promtool: str, chart: helm.Chart, tmp_path: Path
) -> None:
    """The unit tests have teeth: rules scoped to the wrong job fail them."""
    values = {"prometheusRule": {"enabled": True, "selector": 'job="someone-else"'}}
    output = _run_rules_test(promtool, render(chart, values), tmp_path)
    assert output.startswith("exit 1\n"), output
    assert "FAILED" in output
