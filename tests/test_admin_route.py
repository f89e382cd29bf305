"""Admin routes count the status actually sent, whoever built the answer."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from service.admin_route import admin_route, serve
from service.errors import Conflict
from service.http_errors import EXCEPTION_HANDLERS

log = logging.getLogger("tests.admin_route")


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def conflict(request: Request) -> Response:
    raise Conflict("taken")


async def bug(request: Request) -> Response:
    raise RuntimeError("a bug")


def counted(registry: CollectorRegistry, status: str) -> float:
    value = registry.get_sample_value("requests_total", {"route": "r", "status": status})
    return float(value or 0.0)


def test_counts_answers_refusals_wrong_methods_and_bugs() -> None:
    registry = CollectorRegistry()
    requests = Counter("requests", "", ["route", "status"], registry=registry)
    handlers = {"GET": ok, "POST": conflict, "DELETE": bug}

    async def endpoint(request: Request) -> Response:
        return await serve(request, handlers, route="r", log=log)

    app = Starlette(
        routes=[admin_route("/r", endpoint, route="r", requests=requests)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/r").status_code == 200
        assert client.post("/r").json() == {"errors": ["taken"]}
        refused = client.put("/r")
        assert (refused.status_code, refused.headers["Allow"]) == (405, "GET, POST, DELETE")
        crashed = client.delete("/r")
        assert (crashed.status_code, crashed.json()) == (500, {"errors": ["internal error"]})
        for status in ("200", "409", "405", "500"):
            assert counted(registry, status) == 1.0, status
