"""What intake could reach without each part of its work: the ceiling of any storage design.

``bench/run.py`` compares the relay as shipped with the bare baseline. This script asks how
far the relay could get if a part of each webhook's work cost nothing, by running the same
wrk load against relays with that part switched off, each in turns with a fresh baseline
run (on a shared VM the baseline alone moves by a third within minutes). Run from the
repository root (wrk needed, as for run.py; about 3 minutes):

    .venv/bin/python bench/ceiling.py

Variants (each a fresh relay on a fresh database; parts are switched off by a
``sitecustomize`` the relay's interpreter imports at start, see ``VARIANTS``):
- ``relay``: as shipped.
- ``no storage``: the store's ``accept`` answers "accepted" without writing anything. No
  storage design, however fast, can beat this row.
- ``no storage, no validation``: also without the full check of the event's fields (the
  envelope, ``action`` and ``alert.alertId``, is still read).
- ``no storage, no validation, no log line``: also without the per-webhook INFO line
  (the relay logs one per event decision).

It prints a table and writes it to ``bench/results/ceiling-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: the same wrk load, processes and baseline)

_PATCH = """
def _replace(owner, name, value):
    getattr(owner, name)  # the part is still where this script expects it, or fail loudly
    setattr(owner, name, value)
"""
_NO_STORAGE = """
import service.store.sqlite
from service.store import Outcome

async def _accept(self, incoming):
    return Outcome.ACCEPTED

_replace(service.store.sqlite.SQLiteStore, "accept", _accept)
"""
_NO_VALIDATION = """
import service.opsgenie
_replace(service.opsgenie.Webhook, "event", lambda webhook: None)
"""
_NO_LOG_LINE = """
import logging
logging.disable(logging.INFO)
"""
#: Variant name -> the ``sitecustomize`` that switches its parts off (None: as shipped).
VARIANTS: dict[str, str | None] = {
    "relay": None,
    "no storage": _PATCH + _NO_STORAGE,
    "no storage, no validation": _PATCH + _NO_STORAGE + _NO_VALIDATION,
    "no storage, no validation, no log line": _PATCH + _NO_STORAGE + _NO_VALIDATION + _NO_LOG_LINE,
}


def relay_variant(workdir: Path, patch: str | None, args: argparse.Namespace) -> run.WrkResult:
    port = run.free_port()
    url = f"http://127.0.0.1:{port}"
    env = run.relay_env(workdir, port)
    if patch is not None:
        (workdir / "site").mkdir()
        (workdir / "site" / "sitecustomize.py").write_text(patch)
        env["PYTHONPATH"] = str(workdir / "site")
    with run.process([str(run.RELAY), "serve"], env, workdir / "relay.log", f"{url}/readyz"):
        run.run_wrk(url, args.warmup, connections=args.connections, prefix="warm", alerts=5000)
        return run.run_wrk(
            url, args.duration, connections=args.connections, prefix="r", alerts=5000
        )


def measure(workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rounds = []
    for turn in range(1, args.rounds + 1):
        print(f"ceiling: round {turn}/{args.rounds} ...", flush=True)
        base = run.bench_baseline(workdir, args)
        found: dict[str, Any] = {"baseline": base}
        for index, (name, patch) in enumerate(VARIANTS.items()):
            (workdir / f"{turn}-{index}").mkdir()
            found[name] = relay_variant(workdir / f"{turn}-{index}", patch, args)
        rounds.append(found)
    return rounds


def report(rounds: list[dict[str, Any]]) -> str:
    lines = [f"{'':40} {'req/s':>7} {'of baseline':>11} {'p99 ms':>7}   (median of rounds)"]
    bases = [r["baseline"].requests_per_second for r in rounds]
    lines.append(f"{'baseline':40} {median(bases):7,.0f} {'':>11} {'':>7}")
    for name in VARIANTS:
        rps = median(r[name].requests_per_second for r in rounds)
        ratio = median(
            r[name].requests_per_second / r["baseline"].requests_per_second for r in rounds
        )
        p99 = median(r[name].p99_ms for r in rounds)
        lines.append(f"{name:40} {rps:7,.0f} {ratio:11.0%} {p99:7.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("ceiling: wrk not found; install it with: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="relay-ceiling-") as tmp:
        rounds = measure(Path(tmp), args)
    print(report(rounds))
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    out = results / f"ceiling-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(run.to_json(rounds), indent=2) + "\n")
    print(f"\nresults: {out.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
