"""The Opsgenie webhook edge: authenticate, bound, parse, store durably, answer.

Nothing else happens here. The 202 goes out only after the store's commit has reached
disk, so an acknowledged alert survives a crash at any later moment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
from prometheus_client import Counter
from starlette.datastructures import Secret
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.auth import webhook_token_ok
from service.errors import AuthError, NotFound, RelayError
from service.logs import EventLog
from service.mapping import Rules
from service.metrics import action_label
from service.opsgenie import Action, read_webhook
from service.request_body import receive_body
from service.store import Incoming, Outcome, ServiceObject
from service.translate import reference_id

log = logging.getLogger("service.webhooks")

#: With a trailing slash too: Starlette would answer it with a redirect, which a webhook
#: sender may not follow, and the alert would never arrive.
PATHS = (
    "/webhooks/opsgenie",
    "/webhooks/opsgenie/",
    "/webhooks/opsgenie/{service}",
    "/webhooks/opsgenie/{service}/",
)


#: Service objects remembered by the name or id a webhook URL gives: a relay has a handful.
MAX_CACHED_SERVICES = 256


class Intake(Protocol):
    """The part of the store a webhook needs."""

    async def accept(self, incoming: Incoming) -> Outcome: ...
    async def find_service_object(self, id_or_name: str) -> ServiceObject | None: ...


class ServiceIds:
    """The service object id a ``{service}`` in a webhook URL names, without a store read
    per webhook (a reader-thread round trip costs more than the rest of the request).

    ``forget`` drops an object after a PATCH or DELETE (the services API calls it; on
    PostgreSQL, the store's notification of another replica's change does too), and
    also keeps a lookup that was under way from caching what it read before the change.
    Unknown names are never remembered, so an object created later is found at once.
    """

    def __init__(self, intake: Intake, size: int) -> None:
        self._intake = intake
        self._size = size
        self._ids: dict[str, str] = {}
        self._changes = 0

    async def resolve(self, name: str) -> str | None:
        service_id = self._ids.get(name)
        if service_id is not None:
            return service_id
        changes = self._changes
        found = await self._intake.find_service_object(name)
        if found is None:
            return None
        if changes == self._changes:
            if len(self._ids) >= self._size:
                del self._ids[next(iter(self._ids))]  # the oldest: a bound, not a policy
            self._ids[name] = found.id
        return found.id

    def forget(self, service_id: str) -> None:
        self._changes += 1
        for name in [name for name, cached in self._ids.items() if cached == service_id]:
            del self._ids[name]

    def forget_all(self) -> None:
        self._changes += 1
        self._ids.clear()


class Webhooks:
    """``POST /webhooks/opsgenie[/{service}]``; ``wake`` tells the worker a change is stored,
    ``received`` counts each webhook by action and outcome."""

    def __init__(
        self,
        *,
        intake: Intake,
        rules: Rules,
        received: Counter,
        wake: Callable[[], None],
        tokens: Sequence[Secret],
        max_body_bytes: int,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._intake = intake
        self._services = ServiceIds(intake, MAX_CACHED_SERVICES)
        #: One line per decision, through the cheap path when logging is the relay's own.
        self._events = events if events is not None else EventLog()
        self._stored = _StoredLines(self._events)
        self._rules = rules
        self._received = received
        #: Each (action, outcome) child bound once: ``labels()`` per webhook costs more
        #: than the increment itself. Bounded: ``action_label`` folds unknown actions.
        self._counted: dict[tuple[str | None, str], Counter] = {}
        self._wake = wake
        self._tokens = tokens
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def forget(self, service_id: str) -> None:
        """A service object changed or was deleted: its names must be looked up again."""
        self._services.forget(service_id)

    def forget_all(self) -> None:
        """Changes may have been missed (the store's notifications): look every name up."""
        self._services.forget_all()

    def routes(self) -> list[Route]:
        # An ASGI app, not a request handler: the busiest route reads its two headers from
        # the scope and writes its 202 itself, without a Request and a Response per webhook.
        # What it raises reaches the app's exception handlers all the same.
        return [Route(path, self, methods=["POST"]) for path in PATHS]

    def _count(self, action: str | None, outcome: str) -> None:
        child = self._counted.get((action, outcome))
        if child is None:
            child = self._received.labels(action_label(action), outcome)
            if len(self._counted) < _BOUND_CHILDREN:  # actions are the sender's to name
                self._counted[(action, outcome)] = child
        child.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = declared = None
        for name, value in scope["headers"]:  # lower-case names (ASGI)
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
        action: str | None = None
        try:
            if not webhook_token_ok(authorization, self._tokens):
                raise AuthError("missing or invalid webhook token")
            service_id = await self._service_id(scope["path_params"].get("service"))
            body = await receive_body(receive, declared, self._max_body_bytes)
            received = self._clock()
            # Decoded and type-checked once: the event checked here is the one the fold
            # later reads from ``text``, through the same decoder.
            webhook = read_webhook(body, received_ns=int(received * 1e9))
            kind = webhook.known_action
            if kind in (None, Action.FETCHED) or (
                kind is Action.DELETE and not self._rules.delete_incidents
            ):  # "Fetched" is the relay's own name for Alert API reads, never a webhook's
                # Not read further: a field the relay never uses is not bad input.
                action = webhook.action
                ref = reference_id(webhook.alert_id, self._rules)
                self._count(action, "ignored")
                self._events.info(
                    log,
                    "webhook ignored",
                    reference_id=ref,
                    alert_id=webhook.alert_id,
                    action=action,
                    outcome="ignored",
                )
                await _accepted(send, {"outcome": "ignored", "reference_id": ref})
                return
            # Checked in full here, though only folded later: a wrong field is the sender's
            # 400 now, not a stored event that folding would have to skip.
            webhook.check()
            action = webhook.action
            ref = reference_id(webhook.alert_id, self._rules)
            incoming = Incoming(
                reference_id=ref,
                alert_id=webhook.alert_id,
                action=action,
                service_id=service_id,
                dedup_key=hashlib.sha256(body).hexdigest(),
                raw=webhook.text,
                received_at=received,
            )
            outcome = await self._intake.accept(incoming)
        except RelayError as error:
            outcome_label = _error_outcome(error)
            self._count(action, outcome_label)
            self._events.warning(
                log, "webhook refused", action=action, outcome=outcome_label, error=error.message
            )
            raise
        if outcome is Outcome.ACCEPTED:
            self._wake()
        self._count(action, outcome.value)
        await self._stored.line(
            reference_id=ref,
            action=action,
            outcome=outcome.value,
            took_ms=round((time.time() - received) * 1000, 2),
        )
        await _accepted(send, {"outcome": outcome.value, "reference_id": ref})

    async def _service_id(self, name: str | None) -> str | None:
        """The service object ``{service}`` names (id or name), checked before the body is read.

        Unknown names are a 404 with nothing stored: an event filed under the wrong account
        would get the wrong key, region and links.
        """
        if name is None:
            return None
        service_id = await self._services.resolve(name)
        if service_id is None:
            raise NotFound(f"unknown service object: {name}")
        return service_id


class _StoredLines:
    """The "webhook stored" lines of the webhooks one commit answered, written together.

    A commit answers its whole batch in one turn of the loop. Each webhook's line, written
    inside its own request, cost about three times what it costs among others rendered in a
    row (about 32 us of the loop's CPU under load), and took a write each. Here each
    request adds its line and waits; once every request of that turn has added its own,
    all are written with one write, and only then do their 202s go out: a webhook's line
    still reaches the log before its answer.
    """

    def __init__(self, events: EventLog) -> None:
        self._events = events
        self._lines: list[dict[str, object]] = []
        self._waiting: list[asyncio.Future[None]] = []

    async def line(self, **fields: object) -> None:
        loop = asyncio.get_running_loop()
        if not self._lines:
            loop.call_soon(self._write)
        self._lines.append(fields)
        written = loop.create_future()
        self._waiting.append(written)
        await written

    def _write(self) -> None:
        lines, self._lines = self._lines, []
        waiting, self._waiting = self._waiting, []
        try:
            self._events.info_each(log, "webhook stored", lines)
        finally:
            for written in waiting:
                if not written.done():  # a request cancelled meanwhile is not waited for
                    written.set_result(None)


#: Distinct (action, outcome) pairs kept bound; custom actions past it are looked up.
_BOUND_CHILDREN = 256


async def _accepted(send: Send, answer: dict[str, str]) -> None:
    """A 202 with the same bytes a ``JSONResponse`` writes, encoded by msgspec."""
    body = msgspec.json.encode(answer)
    length = str(len(body)).encode("latin-1")
    headers = [(b"content-length", length), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_outcome(error: RelayError) -> str:
    return {
        400: "invalid",
        401: "unauthorized",
        404: "not_found",
        413: "too_large",
        503: "unavailable",
    }.get(error.status_code, "invalid")
