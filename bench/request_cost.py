"""CPU cost of one webhook request inside the ASGI app, storage left out, next to the baseline.

``bench/run.py`` measures whole requests through uvicorn and wrk, where the network, the
load generator and the store's writer thread all share the machine. This script takes them
away to answer one question: how much of the gap to the bare baseline is the relay's own
request path (authentication, parsing, validation, the log line, metrics), before anything
is stored? It calls each app directly, one request at a time, with the bench mix's Create
body, and prints CPU microseconds per request (this process's time, the best of several
rounds). Run from the repository root:

    .venv/bin/python bench/request_cost.py

Rows:
- ``baseline``: ``bench/baseline.py``'s app (parses the JSON and answers 202).
- ``relay, storage answers at once``: the real app, its store's ``accept`` returning
  ``accepted`` without writing, logging to a file as ``serve`` does.
- ``... and INFO logging off``: the same with the per-webhook log line switched off, so the
  line's share can be read off.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service import logs  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store import Incoming, Outcome  # noqa: E402
from service.store.sqlite import SQLiteStore  # noqa: E402

TOKEN = "bench-token-0123456789"
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class NotStoring(SQLiteStore):
    """The real store for everything but intake, which it answers without writing."""

    async def accept(self, incoming: Incoming) -> Outcome:
        return Outcome.ACCEPTED


def bench_module(name: str) -> Any:
    """Another script of this folder, imported by path (``bench/`` is no package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def post(app: ASGIApp, body: bytes) -> int:
    """One POST /webhooks/opsgenie through the app; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/opsgenie",
        "raw_path": b"/webhooks/opsgenie",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # a disconnect never comes: the app answers first
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def per_request_us(app: ASGIApp, body: bytes, requests: int, rounds: int) -> float:
    for _ in range(requests // 10):  # warm up
        assert await post(app, body) == 202
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(requests):
            await post(app, body)
        best = min(best, time.process_time() - start)
    return best / requests * 1e6


async def relay_us(body: bytes, workdir: Path, requests: int, rounds: int) -> tuple[float, float]:
    settings = Settings.from_environ(
        {
            "RELAY_DATABASE_URL": f"sqlite:///{workdir / 'relay.db'}",
            "RELAY_WEBHOOK_TOKENS": TOKEN,
            "RELAY_LOG_FORMAT": "json",
        }
    )
    with (workdir / "relay.log").open("w", encoding="utf-8") as stream:
        events = logs.configure(
            fmt="json", level="INFO", secrets=settings.webhook_tokens, stream=stream
        )
        store = NotStoring(settings.database_path, clock=time.time)
        app = create_app(settings, store=store, events=events)
        async with app.router.lifespan_context(app):
            logged = await per_request_us(app, body, requests, rounds)
            logging.disable(logging.INFO)
            try:
                quiet = await per_request_us(app, body, requests, rounds)
            finally:
                logging.disable(logging.NOTSET)
    return logged, quiet


async def main(requests: int, rounds: int) -> None:
    body = str(bench_module("parse_cost").TEMPLATE.format(action="Create", extra="")).encode()
    base = await per_request_us(bench_module("baseline").app, body, requests, rounds)
    with tempfile.TemporaryDirectory() as workdir:
        logged, quiet = await relay_us(body, Path(workdir), requests, rounds)
    print(f"{'app':40} {'µs/request':>10} {'x baseline':>10}")
    for name, value in (
        ("baseline", base),
        ("relay, storage answers at once", logged),
        ("... and INFO logging off", quiet),
    ):
        print(f"{name:40} {value:10.1f} {value / base:10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # the relay serves on uvloop; plain asyncio only where it is missing
        asyncio.run(main(args.requests, args.rounds))
    else:
        uvloop.run(main(args.requests, args.rounds))
