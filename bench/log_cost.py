"""CPU cost of one INFO log line, from the call to bytes written: ``Logger.info`` and ``EventLog``.

The relay logs one structured line per webhook, so this cost is paid on every request
(``bench/run.py`` measures the whole request). ``logging`` is ``log.info("webhook stored",
extra=...)`` through logging's machinery; ``EventLog`` is the same line, same bytes, from
``configure()``'s ``EventLog``. Run from the repository root:

    .venv/bin/python bench/log_cost.py

It goes through ``service.logs.configure`` with a realistic set of secrets and writes to
``/dev/null`` opened as a file, so each line pays the write and flush a log file does.
It prints CPU time (this process's, so other processes on the box count less), the best of
several rounds.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from starlette.datastructures import Secret

from service import logs

# As many secrets as a fully configured relay has (see service/cli.py serve()).
SECRETS = [
    Secret("dx-token-3f9a1c7e5b2d4f60"),
    Secret("hook-token-8e2b4d6f1a3c5e7b"),
    Secret("hook-token-second-0c1d2e3f4a5b"),
    Secret("dd-api-key-6a7b8c9d0e1f2a3b"),
    Secret('app"key\\with-escapes-4c5d'),
    Secret("read-only-app-key-7e8f9a0b"),
    Secret("secret-key-1b2c3d4e5f6a7b8c"),
]


def per_line_us(fmt: str, path: str, lines: int, rounds: int) -> float:
    """Best-of-``rounds`` microseconds per call writing the relay's per-webhook line."""
    with open(os.devnull, "w", encoding="utf-8") as stream:
        events = logs.configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=stream)
        log = logging.getLogger("service.webhooks")
        extra: dict[str, object] = {
            "reference_id": "opsgenie-7f3c9e1a-55b2-4d0e-9a61-0c8e2d4b6f13",
            "action": "Create",
            "outcome": "accepted",
            "took_ms": 1.23,
        }
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            if path == "logging":
                for _ in range(lines):
                    log.info("webhook stored", extra=extra)
            else:
                for _ in range(lines):
                    events.info(log, "webhook stored", **extra)
            best = min(best, time.process_time() - start)
        logging.getLogger().handlers.clear()  # the stream closes on leaving this block
    return best / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000, help="lines per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the best one counts")
    args = parser.parse_args()
    for fmt in ("json", "text"):
        for path in ("logging", "EventLog"):
            cost = per_line_us(fmt, path, args.lines, args.rounds)
            print(f"{fmt:>4} {path:>8}: {cost:6.2f} µs per line")


if __name__ == "__main__":
    main()
