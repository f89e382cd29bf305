"""Benchmark the relay's intake against a bare baseline, then delivery, coalescing and memory.

Not part of CI: numbers depend on the machine. One command, from the repository root:

    .venv/bin/python bench/run.py            # about 5 minutes

It prints a table and writes everything to ``bench/results/<UTC timestamp>.json``.
Load comes from ``wrk`` (Debian: ``apt-get install -y wrk``) running ``bench/webhooks.lua``,
so the load generator is not a Python process competing for the GIL of the thing measured.
See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fakes: the same FakeDX the e2e tests use

from tests.fakes.dx import FakeDX  # noqa: E402
from tests.fakes.servers import UvicornThread, free_port  # noqa: E402

BENCH = ROOT / "bench"
LUA = BENCH / "webhooks.lua"
RELAY = Path(sys.executable).with_name("opsgenie-dx-relay")
TOKEN = "bench-token-0123456789"
DX_TOKEN = "bench-dx-token"
TARGET_RATIO = 0.60
WEBHOOK_PATH = "/webhooks/opsgenie"
SERVICE_ROUTE = "/webhooks/opsgenie/{service}"
#: The service object the ``{service}`` route's runs post to, and the admin keys that make it.
SERVICE_NAME = "bench-account"
API_KEY = "bench-api-key-0123456789"
APP_KEY = "bench-app-key-0123456789"
SECRET_KEY = "bench-secret-key-0123456789"
TARGET_P99_MS = 25.0


@dataclass
class WrkResult:
    """One wrk run, as `done()` in webhooks.lua reports it."""

    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int


def run_wrk(
    url: str,
    seconds: float,
    *,
    connections: int,
    prefix: str,
    alerts: int,
    path: str = WEBHOOK_PATH,
) -> WrkResult:
    """Run wrk with the webhook mix, posted to ``path``, and parse its BENCH_JSON line."""
    env = {
        **os.environ,
        "BENCH_TOKEN": TOKEN,
        "BENCH_PREFIX": prefix,
        "BENCH_ALERTS": str(alerts),
        "BENCH_PATH": path,
    }
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    out = subprocess.run(
        [*command, "--latency", "-s", str(LUA), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    duration = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        seconds=round(duration, 2),
        requests_per_second=round(data["requests"] / duration, 1),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=data["errors_status"],
        socket_errors=data["errors_connect"]
        + data["errors_read"]
        + data["errors_write"]
        + data["errors_timeout"],
    )


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll with a deadline; the benchmark fails loudly instead of hanging."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[int]:
    """Start a server process, wait until `ready_url` answers 200, yield its pid, stop it."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=out, cwd=log.parent)
    try:
        wait_until(lambda: proc.poll() is None and answers(ready_url), 30, ready_url)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def relay_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        RELAY_PORT=str(port),
        RELAY_DATABASE_URL=f"sqlite:///{workdir / 'relay.db'}",
        RELAY_WEBHOOK_TOKENS=TOKEN,
        RELAY_LOG_FORMAT="json",
        RELAY_API_KEY=API_KEY,
        RELAY_APP_KEY=APP_KEY,
        RELAY_SECRET_KEY=SECRET_KEY,
        **extra,
    )
    return env


def create_service_object(url: str) -> str:
    """Make the service object ``SERVICE_NAME`` through the admin API; its webhook path."""
    response = httpx.post(
        f"{url}/api/v2/integration/opsgenie/services",
        headers={"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY},
        json={
            "data": {
                "type": "opsgenie-service",
                "attributes": {
                    "name": SERVICE_NAME,
                    "region": "us",
                    "opsgenie_api_key": "bench-opsgenie-key-0123456789",
                },
            }
        },
        timeout=10.0,
    )
    if response.status_code != 201:
        raise SystemExit(f"bench: creating the service object failed: {response.text}")
    return f"{WEBHOOK_PATH}/{SERVICE_NAME}"


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (the relay's intake writer)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_mib(pid: int) -> float:
    """Resident set size from /proc, in MiB: the process and the processes it started."""
    total = 0
    for each in (pid, *children(pid)):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def metric(url: str, name: str, **labels: str) -> float:
    """One sample from the relay's /metrics (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in httpx.get(f"{url}/metrics", timeout=10.0).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def stored(url: str) -> int:
    """Webhooks the relay answered 202 for and stored."""
    return int(
        sum(
            metric(url, "relay_webhooks_received_total", action=action, outcome="accepted")
            for action in ("Create", "Acknowledge", "AddNote", "Close")
        )
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- phases ---------------------------------------------------------------------------------


def bench_baseline(workdir: Path, args: argparse.Namespace) -> WrkResult:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, str(BENCH / "baseline.py"), str(port)]
    with process(cmd, dict(os.environ), workdir / "baseline.log", f"{url}/healthz"):
        run_wrk(url, args.warmup, connections=args.connections, prefix="warm", alerts=5000)
        return run_wrk(url, args.duration, connections=args.connections, prefix="b", alerts=5000)


def bench_relay_intake(workdir: Path, args: argparse.Namespace, *, service: bool) -> WrkResult:
    """Intake only (DX not configured), on a fresh relay and database; with ``service``,
    webhooks go to ``/webhooks/opsgenie/{service}`` for a service object made first."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process(
        [str(RELAY), "serve"], relay_env(workdir, port), workdir / "relay.log", f"{url}/readyz"
    ):
        path = create_service_object(url) if service else WEBHOOK_PATH
        load = {"connections": args.connections, "alerts": 5000, "path": path}
        run_wrk(url, args.warmup, prefix="warm", **load)
        return run_wrk(url, args.duration, prefix="r", **load)


def bench_intake_rounds(workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Baseline and relay in turns, each on a fresh process (the relay on a fresh database).

    On a shared VM the CPU the neighbours leave moves both numbers by a third within
    minutes; turns compare each relay run with a baseline run next to it in time.
    """
    rounds = []
    for turn in range(1, args.rounds + 1):
        print(f"bench: intake round {turn}/{args.rounds}: baseline, then relay ...", flush=True)
        base = bench_baseline(workdir, args)
        one: dict[str, Any] = {"baseline": base}
        for name, ratio, service in ROUTES:
            (workdir / f"{name}-{turn}").mkdir()
            relay = bench_relay_intake(workdir / f"{name}-{turn}", args, service=service)
            one[name] = relay
            one[ratio] = round(relay.requests_per_second / base.requests_per_second, 3)
        rounds.append(one)
    return rounds


#: Each relay run of a round: its key in the round, its ratio's key, whether it posts to
#: ``/webhooks/opsgenie/{service}``. Both routes must meet the targets.
ROUTES = (("relay", "ratio", False), ("service", "service_ratio", True))


def bench_memory(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """RSS idle, then after ``args.events`` stored events; py-spy first with ``--profile``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = relay_env(workdir, port)
    with process([str(RELAY), "serve"], env, workdir / "relay.log", f"{url}/readyz") as pid:
        time.sleep(1.0)  # let start-up allocation settle before reading idle RSS
        idle = rss_mib(pid)
        warm = run_wrk(url, args.warmup, connections=args.connections, prefix="warm", alerts=5000)
        if args.profile:
            profile(pid, url, workdir, args)
        rate = max(warm.requests_per_second, 100.0)
        batch = 0
        while (count := stored(url)) < args.events:
            batch += 1
            seconds = max(2.0, (args.events - count) / rate + 1.0)
            run_wrk(url, seconds, connections=args.connections, prefix=f"m{batch}", alerts=20000)
        after = rss_mib(pid)
        db_bytes = sum(p.stat().st_size for p in workdir.glob("relay.db*"))
        return {
            "rss_idle_mib": idle,
            "rss_after_events_mib": after,
            "stored_events": count,
            "database_mib": round(db_bytes / 2**20, 1),
        }


def profile(pid: int, url: str, workdir: Path, args: argparse.Namespace) -> None:
    """py-spy the relay under the same load; top frames land in the results directory."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("bench: --profile needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return
    out = args.results / f"profile-{args.stamp}.txt"
    spy = subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(args.duration)),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--threads",
            "--subprocesses",  # the intake writer process too
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_wrk(url, args.duration, connections=args.connections, prefix="p", alerts=5000)
    spy.wait(timeout=60)
    print(f"bench: py-spy folded stacks in {out}")
    if out.exists():
        print(summarise_profile(out.read_text()))


def summarise_profile(raw: str, top: int = 15) -> str:
    """Top frames by own samples from py-spy's folded stacks, and samples per thread.

    py-spy does not sample a thread waiting for the GIL or in epoll, so a thread's share of
    samples is how busy it is; the two threads' shares together show how close the process
    is to one core of Python.
    """
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        # "process ...;thread ..." (with --subprocesses, a child's stacks start with the
        # relay's process and then its own): who the sample belongs to, names shortened.
        owner = ";".join(f.split(":")[0] for f in frames if f.startswith(("process ", "thread ")))
        threads[owner] = threads.get(owner, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    lines = [f"py-spy: {total} samples"]
    lines += [
        f"  {n / total:6.1%}  {name}" for name, n in sorted(threads.items(), key=lambda i: -i[1])
    ]
    lines.append("  own time (top frames):")
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in ranked]
    return "\n".join(lines)


def bench_delivery(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Relay + FakeDX (20 ms latency): steady-state lag, drain rate, coalescing, and a
    backlog under the default rate limit."""
    fake = FakeDX(token=DX_TOKEN)
    fake.latency = args.dx_latency
    with UvicornThread(fake.app) as dx:
        with relay_with_dx(workdir / "fast", dx.url, args.dx_rate) as (url, client):
            lag = steady_lag(client, fake, args)
            drain = drain_rate(url, fake, args)
            coalesce = coalescing(client, fake, url, args)
        with relay_with_dx(workdir / "limited", dx.url, args.limited_rate) as (url, client):
            limited = rate_limited(client, fake, url, args)
    return {"steady_lag": lag, "drain": drain, "coalescing": coalesce, "rate_limited": limited}


@contextmanager
def relay_with_dx(workdir: Path, dx_url: str, rate: float) -> Iterator[tuple[str, httpx.Client]]:
    """A relay on a fresh database delivering to ``dx_url`` at ``rate``; its URL and a client."""
    workdir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = relay_env(
        workdir,
        port,
        RELAY_DX_BASE_URL=dx_url,
        RELAY_DX_TOKEN=DX_TOKEN,
        RELAY_DX_RATE_LIMIT=str(rate),
    )
    with (
        process([str(RELAY), "serve"], env, workdir / "relay.log", f"{url}/readyz"),
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0
        ) as client,
    ):
        yield url, client


def create_body(alert_id: str, stamp_ns: int, *, action: str = "Create", note: str = "") -> bytes:
    alert: dict[str, Any] = {
        "alertId": alert_id,
        "message": f"Disk almost full {note}".strip(),
        "tags": ["service:checkout", "env:prod"],
        "tinyId": "1",
        "entity": "host-1",
        "alias": alert_id,
        "createdAt": stamp_ns // 10**6,
        "updatedAt": stamp_ns,
        "priority": "P2",
        "source": "datadog",
    }
    if note:
        alert["note"] = note
    return json.dumps({"action": action, "alert": alert, "integrationName": "Datadog"}).encode()


def steady_lag(client: httpx.Client, fake: FakeDX, args: argparse.Namespace) -> dict[str, Any]:
    """One new alert every 1/rate seconds; lag = DX arrival minus post time, per alert."""
    posted: dict[str, float] = {}
    interval = 1.0 / args.steady_rate
    start = time.monotonic()
    for i in range(int(args.steady_rate * args.steady_seconds)):
        time.sleep(max(0.0, start + i * interval - time.monotonic()))
        alert_id = f"steady-{i}"
        sent = time.monotonic()
        response = client.post("/webhooks/opsgenie", content=create_body(alert_id, time.time_ns()))
        assert response.status_code == 202, response.text
        posted[f"opsgenie-{alert_id}"] = sent
    wait_until(lambda: all(fake.incident(ref) for ref in posted), 120, "steady alerts in DX")
    arrivals: dict[str, float] = {}
    for request in list(fake.requests):
        ref = (request.json or {}).get("reference_id")
        if ref in posted and request.status == 200 and ref not in arrivals:
            arrivals[ref] = request.received_at
    lags = [(arrivals[ref] - sent) * 1000 for ref, sent in posted.items()]
    return {
        "events": len(posted),
        "rate_per_second": args.steady_rate,
        "lag_p50_ms": round(percentile(lags, 50), 1),
        "lag_p99_ms": round(percentile(lags, 99), 1),
    }


def drain_rate(url: str, fake: FakeDX, args: argparse.Namespace) -> dict[str, Any]:
    """Saturate intake with wrk over many alerts, then time until DX holds everything."""
    before = fake.status_counts[200]
    start = time.monotonic()
    load = run_wrk(
        url, args.drain_load_seconds, connections=args.connections, prefix="d", alerts=2000
    )
    load_ended, during_load = time.monotonic(), fake.status_counts[200] - before
    wait_until(
        lambda: metric(url, "relay_outbox_pending") == 0, args.drain_timeout, "outbox to drain"
    )
    seconds = time.monotonic() - start
    upserts = fake.status_counts[200] - before
    after_load = time.monotonic() - load_ended
    after_load_rate = (upserts - during_load) / after_load
    count = metric(url, "relay_delivery_lag_seconds_count")
    total = metric(url, "relay_delivery_lag_seconds_sum")
    # What DX's answers allow: every slot busy all the time, each request taking as long as
    # the relay measured (FakeDX's 20 ms plus its own HTTP and validation time).
    dx_seconds = metric(url, "relay_dx_request_duration_seconds_sum") / max(
        1.0, metric(url, "relay_dx_request_duration_seconds_count")
    )
    dx_bound = args.dx_concurrency / dx_seconds if dx_seconds else float("nan")
    return {
        "webhooks_posted": load.requests,
        "dx_upserts": upserts,
        "seconds_until_drained": round(seconds, 1),
        "dx_upserts_per_second": round(upserts / seconds, 1),
        # Once intake is quiet: what delivery alone achieves.
        "dx_upserts_per_second_after_load": round(after_load_rate, 1),
        "dx_request_mean_ms": round(dx_seconds * 1000, 1),
        "dx_bound_upserts_per_second": round(dx_bound, 1),
        "share_of_dx_bound_after_load": round(after_load_rate / dx_bound, 3),
        "lag_histogram_mean_s": round(total / count, 2) if count else None,
        "lag_histogram": histogram(url, "relay_delivery_lag_seconds"),
    }


def rate_limited(
    client: httpx.Client, fake: FakeDX, url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """A backlog of new alerts under ``--limited-rate``: DX should see that rate, no more.

    The token bucket lets one second's worth through at once, so the rate is read from the
    DX arrival times after that burst.
    """
    refs = set()
    for i in range(args.limited_alerts):
        alert_id = f"limited-{i}"
        response = client.post("/webhooks/opsgenie", content=create_body(alert_id, time.time_ns()))
        assert response.status_code == 202, response.text
        refs.add(f"opsgenie-{alert_id}")
    wait_until(
        lambda: metric(url, "relay_outbox_pending") == 0,
        args.limited_alerts / args.limited_rate * 3 + 30,
        "rate-limited outbox to drain",
    )
    arrivals = sorted(
        r.received_at
        for r in list(fake.requests)
        if (r.json or {}).get("reference_id") in refs and r.status == 200
    )
    steady = arrivals[int(args.limited_rate) :]
    measured = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    return {
        "alerts": args.limited_alerts,
        "rate_limit_per_second": args.limited_rate,
        "dx_upserts": len(arrivals),
        "upserts_per_second_after_burst": round(measured, 2),
    }


def histogram(url: str, name: str) -> dict[str, float]:
    """Approximate p50/p99 from the cumulative buckets (upper bound of the bucket)."""
    buckets: list[tuple[float, float]] = []
    for line in httpx.get(f"{url}/metrics", timeout=10.0).text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.split()[-1])))
    total = buckets[-1][1] if buckets else 0
    out: dict[str, float] = {}
    for q in (50, 99):
        bound = next((le for le, n in buckets if total and n >= total * q / 100), float("nan"))
        out[f"p{q}_le_s"] = bound
    return out


def coalescing(
    client: httpx.Client, fake: FakeDX, url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """N changing events for one alert as fast as one client posts: how many DX calls?"""
    alert_id = "coalesce-1"
    ref = f"opsgenie-{alert_id}"
    stamp = time.time_ns()
    for i in range(args.coalesce_events):
        body = create_body(alert_id, stamp + i * 1000, action="AddNote", note=f"n{i}")
        assert client.post("/webhooks/opsgenie", content=body).status_code == 202
    last = f"Disk almost full n{args.coalesce_events - 1}"
    wait_until(lambda: (fake.incident(ref) or {}).get("name") == last, 60, "last state in DX")
    wait_until(lambda: metric(url, "relay_outbox_pending") == 0, 60, "outbox to drain")
    calls = sum(1 for r in list(fake.requests) if (r.json or {}).get("reference_id") == ref)
    return {"events": args.coalesce_events, "dx_calls": calls, "dx_latency_s": fake.latency}


# -- report ---------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    rounds = results["intake_rounds"]
    routes = [(name, ratio) for name, ratio, _ in ROUTES if name in rounds[0]]
    verdicts = []
    targets: dict[str, bool] = {}
    for name, ratio_key in routes:
        ratio = median([r[ratio_key] for r in rounds])
        p99 = median([r[name].p99_ms for r in rounds])
        prefix = "" if name == "relay" else f"{name}_"
        results[f"{prefix}ratio"] = round(ratio, 3)
        results[f"{prefix}relay_p99_ms"] = p99
        targets[f"{prefix}ratio_ok"] = ratio >= TARGET_RATIO
        targets[f"{prefix}p99_ok"] = p99 < TARGET_P99_MS
        verdicts.append((name, ratio, p99))
    results["targets"] = targets
    label = {"relay": "relay", "service": "relay {service}"}
    rows = [
        ("", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "sock err", "relay/baseline"),
        *(
            (
                f"{label.get(name, name)} {turn}",
                f"{r.requests_per_second:,.0f}",
                f"{r.p50_ms:.2f}",
                f"{r.p99_ms:.2f}",
                f"{r.max_ms:.1f}",
                str(r.non_2xx),
                str(r.socket_errors),
                "" if ratio is None else f"{one[ratio]:.0%}",
            )
            for turn, one in enumerate(rounds, start=1)
            for name, ratio in (("baseline", None), *routes)
            for r in (one[name],)
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    mark = {True: "ok", False: "MISSED"}
    lines.append("")
    lines += [
        f"median of {len(rounds)} rounds{'' if name == 'relay' else ', ' + SERVICE_ROUTE}: "
        f"relay/baseline throughput {ratio:.0%} "
        f"(target >= {TARGET_RATIO:.0%}: {mark[ratio >= TARGET_RATIO]}); relay p99 {p99:.1f} ms "
        f"(target < {TARGET_P99_MS:.0f} ms: {mark[p99 < TARGET_P99_MS]})"
        for name, ratio, p99 in verdicts
    ]
    if "memory" not in results:  # --intake-only
        return "\n".join(lines)
    relay = results["memory"]
    delivery = results["delivery"]
    lag, drain, limited = delivery["steady_lag"], delivery["drain"], delivery["rate_limited"]
    concurrency = results["config"]["dx_concurrency"]
    lines += [
        f"memory: RSS idle {relay['rss_idle_mib']} MiB, after {relay['stored_events']:,} "
        f"stored events {relay['rss_after_events_mib']} MiB (database {relay['database_mib']} MiB)",
        f"delivery (DX latency {results['config']['dx_latency_s'] * 1000:.0f} ms, "
        f"RELAY_DX_RATE_LIMIT={results['config']['dx_rate']}, "
        f"concurrency {concurrency}):",
        f"  steady {lag['rate_per_second']}/s new alerts: post -> DX receives the upsert "
        f"p50 {lag['lag_p50_ms']} ms, p99 {lag['lag_p99_ms']} ms",
        f"  backlog: {drain['webhooks_posted']:,} webhooks -> "
        f"{drain['dx_upserts']:,} DX upserts in "
        f"{drain['seconds_until_drained']} s = "
        f"{drain['dx_upserts_per_second']} upserts/s "
        f"({drain['dx_upserts_per_second_after_load']}/s once intake stopped)",
        f"  drained at {drain['share_of_dx_bound_after_load']:.0%} of what DX's answers allow: "
        f"{concurrency} slots / {drain['dx_request_mean_ms']} ms per DX request = "
        f"{drain['dx_bound_upserts_per_second']}/s",
        f"  coalescing: {delivery['coalescing']['events']} events for one alert -> "
        f"{delivery['coalescing']['dx_calls']} DX calls",
        f"  rate limit {limited['rate_limit_per_second']}/s: {limited['alerts']} new alerts "
        f"-> {limited['dx_upserts']} upserts at {limited['upserts_per_second_after_burst']}/s "
        f"after the first second's burst",
    ]
    return "\n".join(lines)


def to_json(value: Any) -> Any:
    if isinstance(value, WrkResult):
        return asdict(value)
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="baseline/relay intake turns")
    parser.add_argument("--events", type=int, default=100_000, help="stored events before RSS")
    parser.add_argument("--dx-latency", type=float, default=0.020)
    parser.add_argument("--dx-rate", type=float, default=1000.0, help="RELAY_DX_RATE_LIMIT")
    parser.add_argument("--steady-rate", type=float, default=50.0)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--drain-load-seconds", type=float, default=5.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--coalesce-events", type=int, default=100)
    parser.add_argument(
        "--limited-rate", type=float, default=10.0, help="RELAY_DX_RATE_LIMIT (its default)"
    )
    parser.add_argument("--limited-alerts", type=int, default=150)
    parser.add_argument("--profile", action="store_true", help="py-spy the relay's intake")
    parser.add_argument(
        "--intake-only", action="store_true", help="only the intake rounds (about 2 minutes)"
    )
    args = parser.parse_args()
    args.dx_concurrency = 4  # RELAY_DX_CONCURRENCY's default, which the relays here keep
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk not found; install it with: apt-get install -y wrk")
    args.results = BENCH / "results"
    args.results.mkdir(exist_ok=True)
    args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "started_at": args.stamp,
        "config": {
            "connections": args.connections,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "dx_latency_s": args.dx_latency,
            "dx_rate": args.dx_rate,
            "dx_concurrency": args.dx_concurrency,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
    }
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        workdir = Path(tmp)
        results["intake_rounds"] = bench_intake_rounds(workdir, args)
        if not args.intake_only:
            (workdir / "memory").mkdir()
            print("bench: relay memory ...", flush=True)
            results["memory"] = bench_memory(workdir / "memory", args)
            (workdir / "delivery").mkdir()
            print("bench: delivery to FakeDX ...", flush=True)
            results["delivery"] = bench_delivery(workdir / "delivery", args)
    table = report(results)
    print(table)
    out = args.results / f"{args.stamp}.json"
    out.write_text(json.dumps(to_json(results), indent=2) + "\n")
    print(f"\nresults: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
