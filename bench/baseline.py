"""The ceiling to compare the relay with: same server stack, same JSON parsing, no storage.

A bare Starlette app on uvicorn with the relay's exact settings (httptools, uvloop, access
log off, one process). Whatever the relay loses against this is the price of auth, parsing,
folding and the durable commit, which is what `bench/run.py` reports as a ratio.

Run: ``python bench/baseline.py PORT``.
"""

from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request: Request) -> JSONResponse:
    """Parse the body like the relay does and answer 202; nothing is stored."""
    try:
        document = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"errors": ["body is not valid JSON"]}, status_code=400)
    alert_id = document.get("alert", {}).get("alertId") if isinstance(document, dict) else None
    return JSONResponse({"outcome": "accepted", "reference_id": f"opsgenie-{alert_id}"}, 202)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/webhooks/opsgenie", receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    """Serve with the settings `opsgenie-dx-relay serve` uses (service/cli.py)."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        timeout_keep_alive=75,
        access_log=False,
        log_config=None,
        log_level="warning",
        http="httptools",
        loop="uvloop",
        workers=1,
        server_header=False,
    )


if __name__ == "__main__":
    main()
