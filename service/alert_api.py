"""Reading an alert account, whichever product holds it: the shape callers rely on.

Enrichment, backfill and links read Opsgenie (``service.opsgenie_api``) or Jira Service
Management Operations (``service.jsm_api``) through ``AlertAPI``, so they never branch on
the product. Both clients read through ``read_json``, which holds a request to
``upstream.fetch``'s bounds and classifies the answer into the ``OpsgenieAPIError``
family (retry later, give up, or a credential the product refused), so callers need one
``except`` whatever the product.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from service import upstream
from service.backoff import retry_after_seconds
from service.errors import (
    AnswerTooLarge,
    DestinationRefused,
    MalformedAnswer,
    OpsgenieAuthError,
    OpsgenieNotFound,
    OpsgeniePermanent,
    OpsgenieRetryable,
    UpstreamTimeout,
    UpstreamUnreachable,
)

#: Opsgenie's rate-limit windows are 1 s and 60 s; a longer "window" is none of them, and
#: a minute is already as long as enrichment holds an incident back for one answer.
MAX_RATE_LIMIT_PERIOD = 60.0


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of an alert listing: the alerts, and whether the product has more."""

    alerts: list[dict[str, Any]]
    has_more: bool


class AlertAPI(Protocol):
    """One account's alerts, as Opsgenie's Alert API shapes them (``event_from_api_alert``).

    ``list_window``: how far ``offset + limit`` may reach in one listing query; a listing
    goes on past it with a new ``created_after`` query.
    """

    @property
    def list_window(self) -> int: ...
    async def get_alert(self, alert_id: str) -> dict[str, Any]: ...
    async def get_account(self) -> str: ...
    async def list_alerts(self, query: str, *, limit: int = 100, offset: int = 0) -> AlertPage: ...
    def created_after(self, epoch_ms: int) -> str: ...


async def read_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    product: str,
    headers: Mapping[str, str],
    params: Mapping[str, str | int] | None = None,
) -> dict[str, Any]:
    """One read within the client's bounds. An answer too large or undecodable is a bad
    answer like invalid JSON (``OpsgeniePermanent``): callers carry on without it."""
    try:
        reply = await upstream.fetch(client, "GET", url, params=params, headers=headers)
    except UpstreamTimeout as error:
        raise OpsgenieRetryable(f"{product} timed out: {error.message}") from None
    except UpstreamUnreachable as error:
        raise OpsgenieRetryable(f"{product} unreachable: {error.message}") from None
    except (AnswerTooLarge, MalformedAnswer) as error:
        raise OpsgeniePermanent(
            f"unusable {product} answer: {error.message}", http_status=error.http_status
        ) from None
    except DestinationRefused as error:  # asking again reaches the same address
        raise OpsgeniePermanent(error.message) from None
    return classify(reply.status_code, reply.headers, reply.body, product=product)


def classify(
    status: int, headers: httpx.Headers, body: bytes, *, product: str = "Opsgenie"
) -> dict[str, Any]:
    """The JSON document of a 2xx, or the ``OpsgenieAPIError`` that says what to do."""
    if status == 429 or 500 <= status <= 599:
        raise OpsgenieRetryable(
            f"{product} answered {status}",
            http_status=status,
            retry_after=_retry_after(status, headers),
        )
    if status in (401, 403):
        raise OpsgenieAuthError(f"{product} refused the API key ({status})", http_status=status)
    if status == 404:
        raise OpsgenieNotFound(f"{product} has no such alert (404)", http_status=status)
    if not 200 <= status <= 299:
        raise OpsgeniePermanent(f"{product} answered {status}", http_status=status)
    try:
        return upstream.load_object(body)
    except MalformedAnswer as error:
        raise OpsgeniePermanent(
            f"{product} answered with invalid JSON: {error.message}", http_status=status
        ) from None


def _retry_after(status: int, headers: httpx.Headers) -> float | None:
    """Seconds to wait before asking again, ``None`` when the answer does not say.

    Opsgenie's 429 carries no ``Retry-After`` (a proxy in front of it may add one, which
    wins), only ``X-RateLimit-Period-In-Sec``: the window, 1 or 60 s, whose bucket is
    empty. Its buckets refill within that window, so waiting it out is the wait; without
    it, callers backed off for a few seconds and gave up inside a 60 s window. Atlassian's
    APIs send ``Retry-After``.
    """
    explicit = retry_after_seconds(headers.get("retry-after"), now=time.time())
    if explicit is not None or status != 429:
        return explicit
    try:
        period = float(headers.get("x-ratelimit-period-in-sec", ""))
    except ValueError:
        return None
    if not period > 0:  # zero, negative or NaN: no window worth waiting for
        return None
    return min(period, MAX_RATE_LIMIT_PERIOD)
