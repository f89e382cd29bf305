"""CPU cost of the store alone: ``accept`` under concurrency, then the worker's claim.

``bench/run.py`` measures whole requests, where the store's share hides among parsing,
logging and HTTP. This drives ``SQLiteStore`` directly on a real file (WAL,
``synchronous=FULL``, so every accept still waits for its durable commit), with
``--concurrency`` callers each accepting fresh ~900-byte events in a loop, as that many
open connections would. It prints, per accepted event, the process CPU (every thread: the
event loop, the writer, the checkpointer) and the wall time, and then the same for the
worker's side: claiming everything accepted, which folds each event into its alert.
Run from the repository root:

    .venv/bin/python bench/store_cost.py            # about 20 seconds
    .venv/bin/python bench/store_cost.py --events 5000 --rounds 1

Each number is the best of ``--rounds`` runs on a fresh file (the least disturbed by
the rest of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.parse_cost import EXTRA, TEMPLATE  # noqa: E402
from service.store import Incoming  # noqa: E402
from service.store.sqlite import SQLiteStore  # noqa: E402

ACTIONS = ("Create", "Acknowledge", "AddNote", "Close")


@dataclass(frozen=True, slots=True)
class Cost:
    cpu_us: float  # process CPU per event, all threads
    wall_us: float  # wall time per event
    per_second: float


def incoming(n: int, alerts: int) -> Incoming:
    action = ACTIONS[n % len(ACTIONS)]
    alert = f"bench-{n % alerts}"
    raw = TEMPLATE.format(action=action, extra=EXTRA.get(action, "")).replace(
        "1700000000000000042", str(1_700_000_000_000_000_000 + n)
    )
    raw = raw.replace('"alertId":"bench-42"', f'"alertId":"{alert}"')
    return Incoming(
        reference_id=f"opsgenie-{alert}",
        alert_id=alert,
        action=action,
        service_id=None,
        dedup_key=hashlib.sha256(raw.encode()).hexdigest(),
        raw=raw,
        received_at=1_700_000_000.0 + n / 1000,
    )


async def one_round(place: Path, events: int, concurrency: int, alerts: int) -> tuple[Cost, Cost]:
    store = SQLiteStore(place / "relay.db", clock=time.time)
    await store.open()
    try:
        batch = [incoming(n, alerts) for n in range(events)]
        await store.accept(incoming(events, alerts))  # the file and the threads are warm
        cursor = iter(batch)

        async def caller() -> None:
            for item in cursor:  # shared: each event is accepted by exactly one caller
                await store.accept(item)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        accept = _cost(events, time.process_time() - cpu, time.perf_counter() - wall)

        cpu, wall = time.process_time(), time.perf_counter()
        claimed = 0
        while True:
            due = await store.due(now=2e9, limit=512, exclude=())
            if due:
                claimed += len(due)
                await asyncio.gather(*(store.record_filtered(pending) for pending in due))
            elif await store.next_due_at() is None:
                break
        claim = _cost(events, time.process_time() - cpu, time.perf_counter() - wall)
        assert claimed >= alerts, claimed
        return accept, claim
    finally:
        await store.close()


def _cost(events: int, cpu: float, wall: float) -> Cost:
    return Cost(cpu_us=cpu / events * 1e6, wall_us=wall / events * 1e6, per_second=events / wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per round")
    parser.add_argument("--concurrency", type=int, default=32, help="callers at once")
    parser.add_argument("--alerts", type=int, default=5_000, help="distinct alerts")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    args = parser.parse_args()
    results = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="store-cost-") as place:
            results.append(
                asyncio.run(one_round(Path(place), args.events, args.concurrency, args.alerts))
            )
    accept = min((r[0] for r in results), key=lambda c: c.cpu_us)
    claim = min((r[1] for r in results), key=lambda c: c.cpu_us)
    print(
        f"{args.events} events, {args.concurrency} callers, {args.alerts} alerts, best of "
        f"{args.rounds}"
    )
    print(f"{'':8}{'CPU us/event':>14}{'wall us/event':>15}{'events/s':>10}")
    for name, cost in (("accept", accept), ("claim", claim)):
        print(f"{name:8}{cost.cpu_us:14.1f}{cost.wall_us:15.1f}{cost.per_second:10,.0f}")


if __name__ == "__main__":
    main()
