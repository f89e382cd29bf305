"""The micro-benchmarks still run against the code they measure (tiny sizes; no timing is
asserted: numbers belong to the scripts' output, not to tests)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_the_bench_report_reads_its_rounds_and_the_results_file_is_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench/run.py needs wrk and minutes to run; its report and results file do not."""
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    assert spec is not None
    assert spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_run", run)  # its dataclass looks itself up there
    spec.loader.exec_module(run)

    def wrk(rate: float, p99: float) -> object:
        return run.WrkResult(int(rate * 10), 10.0, rate, 1.0, 2.0, p99, p99 + 5, 0, 0)

    results = {
        "config": {"dx_concurrency": 4, "dx_latency_s": 0.02, "dx_rate": 1000.0},
        "intake_rounds": [
            {"baseline": wrk(8000, 8), "relay": wrk(2000, 40), "ratio": 0.25}
            | {"service": wrk(2400, 30), "service_ratio": 0.3},
            {"baseline": wrk(6000, 9), "relay": wrk(4200, 20), "ratio": 0.7}
            | {"service": wrk(3300, 24), "service_ratio": 0.55},
            {"baseline": wrk(7000, 8), "relay": wrk(4550, 22), "ratio": 0.65}
            | {"service": wrk(4200, 26), "service_ratio": 0.6},
        ],
        "memory": {
            "rss_idle_mib": 50.0,
            "rss_after_events_mib": 56.0,
            "stored_events": 100_000,
            "database_mib": 120.0,
        },
        "delivery": {
            "steady_lag": {"rate_per_second": 50.0, "lag_p50_ms": 7.0, "lag_p99_ms": 14.0},
            "drain": {
                "webhooks_posted": 7000,
                "dx_upserts": 2000,
                "seconds_until_drained": 16.0,
                "dx_upserts_per_second": 125.0,
                "dx_upserts_per_second_after_load": 140.0,
                "share_of_dx_bound_after_load": 0.97,
                "dx_request_mean_ms": 27.5,
                "dx_bound_upserts_per_second": 145.5,
            },
            "coalescing": {"events": 100, "dx_calls": 12},
            "rate_limited": {
                "rate_limit_per_second": 10.0,
                "alerts": 150,
                "dx_upserts": 150,
                "upserts_per_second_after_burst": 10.0,
            },
        },
    }
    table = run.report(results)
    # The median round decides, not the first or the best one.
    assert "median of 3 rounds: relay/baseline throughput 65% (target >= 60%: ok)" in table
    assert "relay p99 22.0 ms (target < 25 ms: ok)" in table
    assert "   relay 2  4,200" in table
    # Both webhook routes are judged, each against the same rounds' baselines.
    assert (
        "median of 3 rounds, /webhooks/opsgenie/{service}: relay/baseline throughput 55%"
        " (target >= 60%: MISSED); relay p99 26.0 ms (target < 25 ms: MISSED)"
    ) in table
    assert "relay {service} 3  4,200" in table
    assert results["targets"] == {
        "ratio_ok": True,
        "p99_ok": True,
        "service_ratio_ok": False,
        "service_p99_ok": False,
    }
    written = json.loads(json.dumps(run.to_json(results)))
    assert written["intake_rounds"][1]["relay"]["requests_per_second"] == 4200
    # --intake-only: the same verdicts, and nothing of the phases it skipped.
    intake_only = run.report({k: results[k] for k in ("config", "intake_rounds")})
    assert intake_only == table.split("\nmemory:")[0]


@pytest.fixture
def ceiling(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """bench/ceiling.py, imported as it imports itself (next to bench/run.py as ``run``)."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "run", raising=False)
    spec = importlib.util.spec_from_file_location("bench_ceiling", BENCH / "ceiling.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("run", None)


def test_every_ceiling_variant_still_switches_its_part_off(ceiling: Any) -> None:
    """A part renamed in the service must fail the patch, not leave it silently on."""
    for name, patch in ceiling.VARIANTS.items():
        if patch is None:
            continue
        check = patch + "\nimport service.store.sqlite, service.webhooks\n"
        check += "assert service.store.sqlite.SQLiteStore.accept is _accept\n"
        if "Webhook" in patch:
            check += "assert service.opsgenie.Webhook.event(None) is None\n"
        result = subprocess.run(
            [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (name, result.stderr)
    broken = ceiling.VARIANTS["no storage"].replace('"accept"', '"accept_renamed"')
    result = subprocess.run(
        [sys.executable, "-c", broken], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_the_ceiling_report_takes_the_median_round(ceiling: Any) -> None:
    def wrk(rate: float, p99: float) -> object:
        return ceiling.run.WrkResult(int(rate * 10), 10.0, rate, 1.0, 2.0, p99, p99 + 5, 0, 0)

    rounds = [
        {"baseline": wrk(6000, 8)} | {name: wrk(1500, 50) for name in ceiling.VARIANTS},
        {"baseline": wrk(5000, 9)} | {name: wrk(3000, 20) for name in ceiling.VARIANTS},
        {"baseline": wrk(4000, 9)} | {name: wrk(2000, 30) for name in ceiling.VARIANTS},
    ]
    table = ceiling.report(rounds)
    rows = {line[:40].strip(): line[40:].split() for line in table.splitlines()[1:]}
    assert rows["baseline"] == ["5,000"]
    # ratios 25%, 60%, 50%: the median is 50%, and the median p99 30 ms
    assert rows["no storage, no validation, no log line"] == ["2,000", "50%", "30.0"]
    assert list(rows) == ["baseline", *ceiling.VARIANTS]


@pytest.fixture
def replicas_bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """bench/replicas.py, imported as it imports itself (next to bench/run.py as ``run``)."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "run", raising=False)
    spec = importlib.util.spec_from_file_location("bench_replicas", BENCH / "replicas.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("run", None)


def test_the_replicas_report_has_a_row_per_setup_with_medians(replicas_bench: Any) -> None:
    """bench/replicas.py needs wrk, PostgreSQL and minutes; its report does not."""

    def setup(kind: str, count: int, rate: float, delivered: float) -> dict[str, Any]:
        intake = replicas_bench.run.WrkResult(int(rate * 10), 10.0, rate, 5.0, 9.0, 20.0, 30, 0, 0)
        delivery = {
            "backlog": 2000,
            "dx_upserts": 2000,
            "seconds": 2000 / delivered,
            "upserts_per_second": delivered,
            "dx_request_mean_ms": 28.0,
            "dx_bound_upserts_per_second": 142.9 * count,
        }
        return {"backend": kind, "replicas": count, "intake": intake, "delivery": delivery}

    rounds = [
        [setup(kind, count, 1000.0 * turn, 100.0 + turn) for kind, count in replicas_bench.SETUPS]
        for turn in (1, 3, 2)
    ]
    table = replicas_bench.report(rounds)
    lines = table.splitlines()
    assert lines[0].split() == [
        "setup", "intake", "req/s", "p50", "ms", "p99", "ms", "non-2xx", "backlog",
        "upserts", "delivered/s", "DX", "allows/s",
    ]  # fmt: skip
    rows = {line[:11].strip(): line[11:].split() for line in lines[1:]}
    assert list(rows) == ["sqlite x1", "postgres x1", "postgres x3"]
    # the median round's number first, then every round's in brackets
    assert rows["postgres x3"][:4] == ["2,000", "(1,000,", "3,000,", "2,000)"]
    assert rows["postgres x3"][-5:] == ["102.0", "(101.0,", "103.0,", "102.0)", "428.7"]
    written = json.loads(json.dumps(replicas_bench.run.to_json({"rounds": rounds})))
    assert written["rounds"][1][2]["intake"]["requests_per_second"] == 3000.0
