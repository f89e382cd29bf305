"""The Opsgenie webhook edge: authenticate, bound, parse, store durably, answer.

Nothing else happens here. The 202 goes out only after the store's commit has reached
disk, so an acknowledged alert survives a crash at any later moment.
"""

from __future__ import annotations

import hashlib
import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.auth import webhook_token_ok
from service.bodies import read_body
from service.errors import AuthError, NotFound, RelayError
from service.metrics import action_label
from service.opsgenie import Action, event_from_envelope, read_envelope
from service.relay import Relay
from service.store import Incoming, Outcome
from service.translate import reference_id

log = logging.getLogger("service.webhooks")


async def receive(request: Request) -> JSONResponse:
    relay: Relay = request.app.state.relay
    metrics = relay.metrics
    action: str | None = None
    try:
        if not webhook_token_ok(
            request.headers.get("authorization"), relay.settings.webhook_tokens
        ):
            raise AuthError("missing or invalid webhook token")
        service_id = await _service_id(request, relay)
        body = await read_body(request, relay.settings.max_body_bytes)
        received = relay.clock()
        envelope = read_envelope(body)
        kind = envelope.known_action
        if kind in (None, Action.FETCHED) or (
            kind is Action.DELETE and not relay.rules.delete_incidents
        ):  # "Fetched" is the relay's own name for Alert API reads, never a webhook's
            # Not read further: a field the relay never uses is not bad input.
            action = envelope.action
            metrics.webhooks.labels(action_label(action), "ignored").inc()
            log.info(
                "webhook ignored",
                extra={
                    "reference_id": reference_id(envelope.alert_id, relay.rules),
                    "alert_id": envelope.alert_id,
                    "action": action,
                    "outcome": "ignored",
                },
            )
            return JSONResponse({"outcome": "ignored"}, status_code=202)
        # Checked in full here, though only folded later: a wrong field is the sender's
        # 400 now, not a stored event that folding would have to skip.
        event_from_envelope(envelope, received_ns=int(received * 1e9))
        action = envelope.action
        ref = reference_id(envelope.alert_id, relay.rules)
        incoming = Incoming(
            reference_id=ref,
            alert_id=envelope.alert_id,
            action=action,
            service_id=service_id,
            dedup_key=hashlib.sha256(body).hexdigest(),
            raw=body.decode("utf-8", errors="replace"),
            received_at=received,
        )
        outcome = await relay.store.accept(incoming)
    except RelayError as error:
        outcome_label = _error_outcome(error)
        metrics.webhooks.labels(action_label(action), outcome_label).inc()
        log.warning(
            "webhook refused",
            extra={"action": action, "outcome": outcome_label, "error": error.message},
        )
        raise
    if outcome is Outcome.ACCEPTED:
        relay.worker.wake()
    metrics.webhooks.labels(action_label(action), outcome.value).inc()
    log.info(
        "webhook stored",
        extra={
            "reference_id": ref,
            "action": action,
            "outcome": outcome.value,
            "took_ms": round((time.time() - received) * 1000, 2),
        },
    )
    return JSONResponse({"outcome": outcome.value, "reference_id": ref}, status_code=202)


async def _service_id(request: Request, relay: Relay) -> str | None:
    """The service object ``{service}`` names (id or name), checked before the body is read.

    Unknown names are a 404 with nothing stored: an event filed under the wrong account
    would get the wrong key, region and links.
    """
    name = request.path_params.get("service")
    if name is None:
        return None
    found = await relay.store.find_service_object(name)
    if found is None:
        raise NotFound(f"unknown service object: {name}")
    return found.id


def _error_outcome(error: RelayError) -> str:
    return {
        400: "invalid",
        401: "unauthorized",
        404: "not_found",
        413: "too_large",
        503: "unavailable",
    }.get(error.status_code, "invalid")
