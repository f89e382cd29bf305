"""CPU cost of the webhook hot path's pure-Python work: ``parse_event`` and the token check.

Every webhook pays both (``service/webhooks.py``) before anything is stored, and
``bench/run.py`` measures the whole request. Run from the repository root:

    .venv/bin/python bench/parse_cost.py

The bodies are the ~900-byte mix ``bench/webhooks.lua`` sends (Create, Acknowledge, AddNote,
Close) plus Opsgenie's own samples. ``json.loads`` of the already decoded text is printed
next to each, so what ``parse_event`` adds on top of the JSON decoder (UTF-8 decoding,
validation, building the event) can be read off. Each number is the best of
many short rounds (the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from starlette.datastructures import Secret

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.auth import webhook_token_ok  # noqa: E402
from service.opsgenie import parse_event  # noqa: E402

SAMPLES = ROOT / "tests" / "payloads" / "docs"
RECEIVED_NS = 1_700_000_000_123_456_789

# As wrk's bench/webhooks.lua builds it; {extra} is the AddNote note.
TEMPLATE = (
    '{{"action":"{action}","alert":{{"alertId":"bench-42","message":"Disk almost full on'
    ' host-42","tags":["service:checkout","env:prod","team-0"],"tinyId":"42","entity":'
    '"host-42","alias":"bench-alias-42","createdAt":1700000000000,"updatedAt":'
    '1700000000000000042,"username":"oncall@example.com","userId":'
    '"e760568d-4e19-413e-9ff9-2661f416edbb","description":"Disk usage above 90%",'
    '"team":"operations","responders":[{{"id":"6ee84e52-f33e-45d9-87ab-533fd69d5591",'
    '"type":"team","name":"operations"}}],"teams":["6ee84e52-f33e-45d9-87ab-533fd69d5591"],'
    '"actions":[],"details":{{"region":"eu-west-1","runbook":'
    '"https://runbooks.example.com/disk"}},"priority":"P3","source":"datadog"{extra}}},'
    '"source":{{"name":"","type":"api"}},"integrationName":"Datadog","integrationId":'
    '"cab111af-f56b-4886-b20a-f947ea3163e2","integrationType":"Webhook"}}'
)
EXTRA = {"AddNote": ',"note":"looking into it"'}

# A relay rotating tokens, plus one per integration: "a handful".
TOKEN = "hook-token-8e2b4d6f1a3c5e7b"
TOKENS = [
    Secret("hook-token-old-0c1d2e3f4a5b"),
    Secret("hook-token-team2-9a8b7c6d5e"),
    Secret("hook-token-team3-1f2e3d4c5b"),
    Secret(TOKEN),
]


def bodies() -> dict[str, bytes]:
    """The bench mix first, then every documented example payload."""
    named = {
        f"bench {action}": TEMPLATE.format(action=action, extra=EXTRA.get(action, "")).encode()
        for action in ("Create", "Acknowledge", "AddNote", "Close")
    }
    for path in sorted(SAMPLES.glob("*.json")):
        named[f"sample {path.stem}"] = path.read_bytes()
    return named


def per_call_us(call: Callable[[], object], calls: int, rounds: int) -> float:
    """Best-of-``rounds`` microseconds per call."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=50, help="rounds; the best one counts")
    args = parser.parse_args()
    n, rounds = args.calls, args.rounds

    print(f"{'body':<30} {'bytes':>5} {'parse_event':>11} {'json.loads':>10} {'difference':>10}")
    bench_mix: list[float] = []
    for name, body in bodies().items():
        parse = per_call_us(partial(parse_event, body, received_ns=RECEIVED_NS), n, rounds)
        loads = per_call_us(partial(json.loads, body.decode()), n, rounds)
        print(f"{name:<30} {len(body):>5} {parse:>9.2f}µs {loads:>8.2f}µs {parse - loads:>8.2f}µs")
        if name.startswith("bench "):
            bench_mix.append(parse - loads)
    print(f"parse_event beyond json.loads, bench mix mean: {sum(bench_mix) / len(bench_mix):.2f}µs")

    basic = "Basic " + base64.b64encode(f"opsgenie:{TOKEN}".encode()).decode()
    print(f"\nwebhook_token_ok, {len(TOKENS)} tokens configured:")
    for label, header in (
        ("Bearer, the last token", f"Bearer {TOKEN}"),
        ("Bearer, no match", "Bearer not-a-configured-token-000"),
        ("Basic, the last token", basic),
        ("no header", None),
    ):
        cost = per_call_us(partial(webhook_token_ok, header, TOKENS), n, rounds)
        print(f"  {label:<28} {cost:6.2f}µs")


if __name__ == "__main__":
    main()
