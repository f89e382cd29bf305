"""What every admin API route does alike: it takes every method and refuses the wrong ones
itself, logs the failures an operator must fix, counts every answer it sends, and spends
the caller's rate-limit window.

Starlette would answer a wrong method before the endpoint runs, uncounted; so the route
takes ``EVERY_METHOD`` and the endpoint raises ``MethodNotAllowed``. The count is taken
from the status line actually sent, whoever built the answer (``http_errors``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from prometheus_client import Counter
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import Access, AdminKeys, require_admin
from service.errors import MethodNotAllowed, RelayError, TooManyRequests

EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

Endpoint = Callable[[Request], Awaitable[Response]]
#: An endpoint behind the admin keys, told which access the caller has.
Handler = Callable[[Request, Access], Awaitable[Response]]
RATE_PERIOD_SECONDS = 60
#: The one rate-limit bucket every caller without the right keys shares.
UNAUTHENTICATED = "unauthenticated"


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    period: int
    remaining: int
    reset: int

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Period": str(self.period),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset),
        }


class RateLimiter:
    """Fixed windows per bucket, as Datadog counts.

    Every bucket's window starts at the same instant, so when it turns the whole table
    goes at once: a hit costs O(1), and the table holds only the buckets seen in the
    current window. Callers keep that number small (``bucket``).
    """

    def __init__(self, limit: int, period: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._start = -math.inf
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def hit(self, bucket: str) -> Window:
        now = self._clock()
        start = math.floor(now / self.period) * self.period
        if start != self._start:
            self._start = start
            self._counts = {}
        count = self._counts.get(bucket, 0) + 1
        self._counts[bucket] = count
        reset = max(1, math.ceil(start + self.period - now))
        return Window(self.limit, self.period, self.limit - count, reset)

    async def spend(self, bucket: str, run: Callable[[], Awaitable[Response]]) -> Response:
        """``run`` if ``bucket``'s window has room (else 429); every answer, refusals too,
        carries the window, as Datadog's clients read it."""
        window = self.hit(bucket)
        try:
            if not window.allowed:
                raise TooManyRequests("Too many requests")
            response = await run()
        except RelayError as error:
            error.headers.update(window.headers())
            raise
        response.headers.update(window.headers())
        return response


def bucket(headers: Mapping[str, str], access: Access) -> str:
    """Only a caller whose keys are right gets a window of its own (per API key, as
    Datadog counts); every other caller shares one. So junk keys neither grow the
    limiter's table nor escape the limit while guessing, nor use up the admin's."""
    api_key = headers.get("dd-api-key")
    if access is Access.NONE or api_key is None:
        return UNAUTHENTICATED
    # Hashed, so the table never holds a credential.
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


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


def authenticated(
    keys: AdminKeys, limiter: RateLimiter, handlers: Mapping[str, Handler]
) -> dict[str, Endpoint]:
    """``handlers`` behind the admin keys (403 otherwise; a read-only key may only read)
    and the caller's rate-limit window (429 once it is used up)."""

    async def checked(handler: Handler, request: Request) -> Response:
        access = keys.access(request.headers)

        async def run() -> Response:
            require_admin(access, request.method)
            return await handler(request, access)

        return await limiter.spend(bucket(request.headers, access), run)

    return {method: partial(checked, handler) for method, handler in handlers.items()}


def count_from_zero(requests: Counter, routes: Sequence[str], statuses: Sequence[str]) -> None:
    """Every route and status at 0, so a dashboard sees each series before its first answer."""
    for route in routes:
        for status in statuses:
            requests.labels(route, status)
