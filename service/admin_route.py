"""What every admin API route does alike: it takes every method and refuses the wrong ones
itself, logs the failures an operator must fix, and counts every answer it sends.

Starlette would answer a wrong method before the endpoint runs, uncounted; so the route
takes ``EVERY_METHOD`` and the endpoint raises ``MethodNotAllowed``. The count is taken
from the status line actually sent, whoever built the answer (``http_errors``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from prometheus_client import Counter
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import Access, AdminKeys, require_admin
from service.errors import MethodNotAllowed, RelayError

EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

Endpoint = Callable[[Request], Awaitable[Response]]
#: An endpoint behind the admin keys, told which access the caller has.
Handler = Callable[[Request, Access], Awaitable[Response]]


class CountAnswers:
    """Counts each answer of one route by its status (``relay_admin_requests{route, status}``).

    An exception that escapes before any answer is a bug the app answers with a 500,
    outside the route: it is counted as that 500 here.
    """

    def __init__(self, app: ASGIApp, *, requests: Counter, route: str) -> None:
        self._app = app
        self._requests = requests
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def counted(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._requests.labels(self._route, str(message["status"])).inc()
            await send(message)

        try:
            await self._app(scope, receive, counted)
        except Exception:
            if not answered:
                self._requests.labels(self._route, "500").inc()
            raise


def admin_route(path: str, endpoint: Endpoint, *, route: str, requests: Counter) -> Route:
    """A route taking every method, counted as ``route``."""
    counting = Middleware(CountAnswers, requests=requests, route=route)
    return Route(path, endpoint, methods=EVERY_METHOD, middleware=[counting])


async def serve(
    request: Request, handlers: Mapping[str, Endpoint], *, route: str, log: logging.Logger
) -> Response:
    """Run the handler for the request's method, or refuse it with a 405; a failure on the
    relay's side (5xx) is logged for the operator before ``http_errors`` answers it."""
    handler = handlers.get(request.method)
    if handler is None:
        raise MethodNotAllowed(handlers)
    try:
        return await handler(request)
    except RelayError as error:
        if error.status_code >= 500:
            log.error("admin request failed", extra={"route": route, "error": error.message})
        raise


def authenticated(keys: AdminKeys, handlers: Mapping[str, Handler]) -> dict[str, Endpoint]:
    """``handlers`` behind the admin keys (403 otherwise): a read-only key may only read."""

    async def checked(handler: Handler, request: Request) -> Response:
        access = keys.access(request.headers)
        require_admin(access, request.method)
        return await handler(request, access)

    return {method: partial(checked, handler) for method, handler in handlers.items()}


def count_from_zero(requests: Counter, routes: Sequence[str], statuses: Sequence[str]) -> None:
    """Every route and status at 0, so a dashboard sees each series before its first answer."""
    for route in routes:
        for status in statuses:
            requests.labels(route, status)
