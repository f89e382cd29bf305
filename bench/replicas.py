"""Intake and delivery with one and three replicas on PostgreSQL, beside one on SQLite.

``bench/run.py`` measures the embedded default, one relay on SQLite. This script puts the
PostgreSQL mode (issue 18) beside it, with the same wrk load (``bench/webhooks.lua``) and the
same fake DX, for three setups: SQLite with one relay, PostgreSQL with one, PostgreSQL with
three on one database. Run from the repository root (wrk needed, as for run.py, and a
PostgreSQL server; about 3 minutes a round):

    .venv/bin/python bench/replicas.py

The server is the one the tests use: ``RELAY_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); each setup gets a fresh database there,
dropped at the end. Per setup:
- **intake**: the relays without DX (so nothing but intake runs), wrk on each relay at once
  with the connections split between them (a load balancer's spread, without a balancer
  process on the same cores); req/s is the sum, latency the worst relay's.
- **delivery**: the same relays stopped, then started again on the same database with the fake
  DX (20 ms latency, ``RELAY_DX_RATE_LIMIT=1000``): the backlog intake left (one upsert per
  alert, up to ``--alerts``) drains; upserts/s is counted at DX from its first arrival to its
  last, so the replicas' staggered starts do not count. Beside it, what DX's answers allow:
  every replica's 4 slots busy, each request as long as the relays measured
  (``relay_dx_request_duration_seconds``).

It prints a table and writes it to ``bench/results/replicas-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: the same wrk load, processes and fake DX)
from run import DX_TOKEN, RELAY, WrkResult  # noqa: E402

from tests.fakes.dx import FakeDX  # noqa: E402
from tests.fakes.servers import UvicornThread, free_port  # noqa: E402
from tests.store_backends import (  # noqa: E402
    create_database,
    database_url,
    drop_databases,
    require_postgres,
)

SETUPS = (("sqlite", 1), ("postgres", 1), ("postgres", 3))
SECRET_KEY = "bench-replicas-secret-key-0123456789"
SLOTS = 4  # RELAY_DX_CONCURRENCY's default, which the relays here keep


def database_env(kind: str, workdir: Path, name: str) -> dict[str, str]:
    """``RELAY_DATABASE_URL`` (and the key PostgreSQL requires) for a fresh database."""
    if kind == "sqlite":
        return {"RELAY_DATABASE_URL": f"sqlite:///{workdir / 'relay.db'}"}
    asyncio.run(create_database(name))
    return {"RELAY_DATABASE_URL": database_url(name), "RELAY_SECRET_KEY": SECRET_KEY}


@contextmanager
def relays(workdir: Path, count: int, env: dict[str, str], tag: str) -> Iterator[list[str]]:
    """``count`` relays on one database, each on its own port and log; their URLs."""
    with ExitStack() as stack:
        urls = []
        for n in range(count):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            log = workdir / f"{tag}-{n}.log"
            stack.enter_context(
                run.process(
                    [str(RELAY), "serve"],
                    {**run.relay_env(workdir, port), **env},
                    log,
                    f"{url}/readyz",
                )
            )
            urls.append(url)
        yield urls


def spread_wrk(urls: list[str], seconds: float, args: argparse.Namespace) -> WrkResult:
    """wrk on every relay at once, ``args.connections`` split between them, as one result:
    requests and req/s summed, latency percentiles the worst relay's."""
    results: list[WrkResult | None] = [None] * len(urls)
    connections = max(1, args.connections // len(urls))

    def one(n: int) -> None:
        results[n] = run.run_wrk(
            urls[n], seconds, connections=connections, prefix="r", alerts=args.alerts
        )

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [r for r in results if r is not None]
    assert len(done) == len(urls), "a wrk run failed"
    return WrkResult(
        requests=sum(r.requests for r in done),
        seconds=max(r.seconds for r in done),
        requests_per_second=round(sum(r.requests_per_second for r in done), 1),
        p50_ms=max(r.p50_ms for r in done),
        p90_ms=max(r.p90_ms for r in done),
        p99_ms=max(r.p99_ms for r in done),
        max_ms=max(r.max_ms for r in done),
        non_2xx=sum(r.non_2xx for r in done),
        socket_errors=sum(r.socket_errors for r in done),
    )


def pending(urls: list[str]) -> float:
    """The backlog: one replica reports it, the others zeros, so the sum is the backlog."""
    return sum(run.metric(url, "relay_outbox_pending") for url in urls)


def bench_setup(
    kind: str, count: int, workdir: Path, dx: tuple[FakeDX, str], args: argparse.Namespace
) -> dict[str, Any]:
    name = f"relay_bench_{os.getpid()}_{kind}_{count}"
    env = database_env(kind, workdir, name)
    print(f"bench: {kind} x{count}: intake ...", flush=True)
    with relays(workdir, count, env, "intake") as urls:
        spread_wrk(urls, args.warmup, args)
        intake = spread_wrk(urls, args.duration, args)
        # Read once a replica holds the gauges' lock (before, every one reports zeros).
        backlog = run.wait_until(lambda: pending(urls), 30, "the backlog's gauge")
    if intake.non_2xx or intake.socket_errors:
        print(f"bench: {kind} x{count}: intake had errors; the relays' warnings:")
        for log in sorted(workdir.glob("intake-*.log")):
            warnings = [
                line for line in log.read_text().splitlines() if '"level": "info"' not in line
            ]
            print("\n".join(f"  {log.name}: {line[:300]}" for line in warnings[:5]))
    fake, dx_url = dx
    fake.reset()
    fake.latency = args.dx_latency
    delivery_env = {
        **env,
        "RELAY_DX_BASE_URL": dx_url,
        "RELAY_DX_TOKEN": DX_TOKEN,
        "RELAY_DX_RATE_LIMIT": str(args.dx_rate),
    }
    print(f"bench: {kind} x{count}: delivery of the backlog ...", flush=True)
    with relays(workdir, count, delivery_env, "delivery") as urls:
        run.wait_until(
            lambda: fake.status_counts[200] >= backlog and pending(urls) == 0,
            args.drain_timeout,
            "the backlog to drain",
        )
        dx_seconds = sum(
            run.metric(url, "relay_dx_request_duration_seconds_sum") for url in urls
        ) / max(
            1.0, sum(run.metric(url, "relay_dx_request_duration_seconds_count") for url in urls)
        )
    answered = [r for r in fake.requests if r.status == 200]
    arrivals = sorted(r.received_at for r in answered)
    references = {(r.json or {}).get("reference_id") for r in answered}
    last: dict[Any, Any] = {}
    repeated = 0  # an upsert whose body is its reference's previous one: the same state twice
    for r in sorted(answered, key=lambda r: r.received_at):
        key = (r.json or {}).get("reference_id")
        repeated += key in last and last[key] == r.json
        last[key] = r.json
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    return {
        "backend": kind,
        "replicas": count,
        "intake": intake,
        "delivery": {
            "backlog": int(backlog),
            "dx_upserts": len(arrivals),
            # Fewer than the upserts: some reference was delivered twice.
            "references": len(references),
            "same_state_twice": repeated,
            "seconds": round(span, 1),
            "upserts_per_second": round((len(arrivals) - 1) / span, 1),
            "dx_request_mean_ms": round(dx_seconds * 1000, 1),
            "dx_bound_upserts_per_second": round(count * SLOTS / dx_seconds, 1),
        },
    }


def report(rounds: list[list[dict[str, Any]]]) -> str:
    """One row per setup: the median over rounds of each number (rounds in brackets)."""
    header = (
        "setup",
        "intake req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "backlog upserts",
        "delivered/s",
        "DX allows/s",
    )
    rows = [header]
    for index, (kind, count) in enumerate(SETUPS):
        runs = [one[index] for one in rounds]
        assert all((r["backend"], r["replicas"]) == (kind, count) for r in runs)
        intakes = [r["intake"] for r in runs]
        deliveries = [r["delivery"] for r in runs]
        rates = [i.requests_per_second for i in intakes]
        delivered = [d["upserts_per_second"] for d in deliveries]
        rows.append(
            (
                f"{kind} x{count}",
                f"{median(rates):,.0f}" + _spread(rates, "{:,.0f}"),
                f"{median(i.p50_ms for i in intakes):.1f}",
                f"{median(i.p99_ms for i in intakes):.1f}",
                str(sum(i.non_2xx + i.socket_errors for i in intakes)),
                f"{median(d['dx_upserts'] for d in deliveries):,.0f}",
                f"{median(delivered):,.1f}" + _spread(delivered, "{:,.1f}"),
                f"{median(d['dx_bound_upserts_per_second'] for d in deliveries):,.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def _spread(values: list[float], fmt: str) -> str:
    if len(values) < 2:
        return ""
    return " (" + ", ".join(fmt.format(v) for v in values) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured intake")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up intake")
    parser.add_argument("--connections", type=int, default=30, help="split between replicas")
    parser.add_argument("--alerts", type=int, default=2000, help="alert ids wrk spreads over")
    parser.add_argument("--rounds", type=int, default=1, help="every setup once per round")
    parser.add_argument("--dx-latency", type=float, default=0.020)
    parser.add_argument("--dx-rate", type=float, default=1000.0, help="RELAY_DX_RATE_LIMIT")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk not found; install it with: apt-get install -y wrk")
    require_postgres_or_exit()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    fake = FakeDX(token=DX_TOKEN)
    rounds: list[list[dict[str, Any]]] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp,
            UvicornThread(fake.app) as dx,
        ):
            for turn in range(args.rounds):
                one = []
                for kind, count in SETUPS:
                    workdir = Path(tmp) / f"{turn}-{kind}-{count}"
                    workdir.mkdir()
                    one.append(bench_setup(kind, count, workdir, (fake, dx.url), args))
                    drop_databases()
                rounds.append(one)
    finally:
        drop_databases()
    table = report(rounds)
    print(table)
    results = {
        "started_at": stamp,
        "config": {**vars(args), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rounds": rounds,
    }
    out = BENCH / "results" / f"replicas-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(run.to_json(results), indent=2) + "\n")
    print(f"\nresults: {out.relative_to(BENCH.parent)}")


def require_postgres_or_exit() -> None:
    """The tests' probe; here a missing server is one line, not a pytest outcome."""
    try:
        require_postgres()
    except BaseException as exc:  # pytest's skip and fail are BaseExceptions
        raise SystemExit(f"bench: {exc}") from None


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
