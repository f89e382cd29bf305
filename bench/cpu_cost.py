"""CPU per request under wrk: the relay's intake and the bare baseline, in turns (issue 17).

Throughput on a shared 2-core machine moves with whatever else runs; the CPU a server spends
per request does much less. wrk takes one core, so the server's CPU per request, not its
req/s, decides the ratio to the baseline on this machine: 60% of the baseline's throughput
is the baseline's CPU per request divided by 0.6.

Each turn starts a fresh baseline, then a fresh relay on a fresh SQLite file, warms each up,
and reads utime + stime of every thread of the server and of its child processes
(``/proc/<pid>/task/*/stat``) before and after a measured wrk run. Run from the repository
root: ``.venv/bin/python bench/cpu_cost.py`` (``--help`` for knobs; wrk needed, as for
``run.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def ticks(pid: int) -> dict[str, int]:
    """utime + stime per thread of ``pid`` and its children: ``main``, ``threads`` (the
    process's other threads, summed), ``children`` (child processes, every thread)."""
    out = {"main": 0, "threads": 0, "children": 0}

    def process(proc: int, child: bool) -> None:
        for task in Path(f"/proc/{proc}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            used = int(fields[11]) + int(fields[12])
            if child:
                out["children"] += used
            elif int(task.name) == proc:
                out["main"] += used
            else:
                out["threads"] += used

    process(pid, False)
    for child in run.children(pid):
        process(child, True)
    return out


def measure(pid: int, url: str, args: argparse.Namespace, path: str) -> dict[str, float]:
    """Warm up, then one measured wrk run: CPU µs per request by part, req/s, p99."""
    load = {"connections": args.connections, "alerts": 5000, "path": path}
    run.run_wrk(url, args.warmup, prefix=f"w{path}", **load)  # type: ignore[arg-type]
    before = ticks(pid)
    result = run.run_wrk(url, args.duration, prefix=f"m{path}", **load)  # type: ignore[arg-type]
    after = ticks(pid)
    per = {k: round((after[k] - before[k]) * TICK_US / result.requests, 1) for k in after}
    per["total"] = round(sum(per.values()), 1)
    per["req_s"] = result.requests_per_second
    per["p99_ms"] = result.p99_ms
    per["non_2xx"] = result.non_2xx
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--service", action="store_true", help="also the {service} route")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="also a relay whose service package comes from DIR (PYTHONPATH), e.g. a worktree",
    )
    parser.add_argument(
        "--compare-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="also a relay with this setting (repeatable), e.g. RELAY_LOG_LEVEL=WARNING",
    )
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-cpu-") as tmp:
        for turn in range(args.rounds):
            work = Path(tmp) / str(turn)
            work.mkdir()
            if not args.no_baseline:
                port = run.free_port()
                url = f"http://127.0.0.1:{port}"
                cmd = [sys.executable, str(run.BENCH / "baseline.py"), str(port)]
                with run.process(cmd, dict(os.environ), work / "b.log", f"{url}/healthz") as pid:
                    rows.setdefault("baseline", []).append(
                        measure(pid, url, args, run.WEBHOOK_PATH)
                    )
            compared = args.compare is not None or bool(args.compare_env)
            for name, code in (("relay", None), ("compared", args.compare)):
                if name == "compared" and not compared:
                    continue
                port = run.free_port()
                url = f"http://127.0.0.1:{port}"
                (work / name).mkdir()
                env = run.relay_env(work / name, port)
                if code is not None:
                    env["PYTHONPATH"] = code
                if name == "compared":
                    env.update(setting.split("=", 1) for setting in args.compare_env)
                cmd = [str(run.RELAY), "serve"]
                with run.process(cmd, env, work / name / "relay.log", f"{url}/readyz") as pid:
                    rows.setdefault(name, []).append(measure(pid, url, args, run.WEBHOOK_PATH))
                    if args.service:
                        path = run.create_service_object(url)
                        measured = measure(pid, url, args, path)
                        rows.setdefault(f"{name} {{service}}", []).append(measured)
            for name, measured in rows.items():
                print(f"turn {turn + 1} {name:16} {measured[-1]}", flush=True)
    print()
    for name, measured in rows.items():
        keys = ("total", "main", "threads", "children", "req_s", "p99_ms")
        medians = {k: median(m[k] for m in measured) for k in keys}
        print(f"median {name:16} " + "  ".join(f"{k} {v:,.1f}" for k, v in medians.items()))


if __name__ == "__main__":
    main()
