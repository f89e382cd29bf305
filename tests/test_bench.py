"""The micro-benchmarks still run against the code they measure (tiny sizes; no timing is
asserted: numbers belong to the scripts' output, not to tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("log_cost.py", ["--lines", "50", "--rounds", "1"], "json"),
        ("parse_cost.py", ["--calls", "5", "--rounds", "1"], "bench Create"),
        (
            "request_cost.py",
            ["--requests", "50", "--rounds", "1"],
            "relay, storage answers at once",
        ),
    ],
)
def test_micro_benchmark_runs(script: str, args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCH.parent,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert "Traceback" not in result.stderr
