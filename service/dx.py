"""DX's Data Cloud API: what an answer means, and the one client that asks.

``classify`` is pure: it turns a status, headers and body into success or one of the
named ``DeliveryError`` classes, the way gidgethub's ``decipher_response`` does. DX's
own docs say to check ``ok`` in every answer, so a 200 with ``ok: false`` is a failure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from service import upstream
from service.backoff import retry_after_seconds
from service.errors import (
    AnswerTooLarge,
    DXAuthError,
    DXRedirected,
    MalformedAnswer,
    PermanentError,
    RetryableError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from service.settings import Settings
from service.translate import IncidentUpsert

#: DX error codes that mean "this request will never work as it is".
PERMANENT_CODES = frozenset(
    {"invalid_arguments", "invalid_timestamp", "metadata_invalid", "invalid_json", "not_found"}
)


#: 4xx statuses that say "not now" rather than "never": 408 is a timeout (a proxy in
#: front of DX gave up waiting for the body), 429 asks us to slow down.
_RETRYABLE_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful DX answer, kept for operators."""

    status_code: int
    body: str


def classify(status_code: int, headers: Mapping[str, str], body: bytes, *, now: float) -> Answer:
    """Success, or raise the ``DeliveryError`` subclass that says what to do next.

    Every error raised here carries DX's answer as ``body``, so operators see what DX
    said (its message, the field it refused), not only our summary of it.
    """
    text = body.decode("utf-8", errors="replace")[:2000]
    try:  # strict: a document only Python reads (NaN, 100,000 levels) is no document
        document: Any = upstream.loads(body) if body else None
    except MalformedAnswer:
        document = None
    code = document.get("error") if isinstance(document, dict) else None
    code = code if isinstance(code, str) and code else None
    ok = document.get("ok") if isinstance(document, dict) else None

    if status_code in _RETRYABLE_STATUSES or 500 <= status_code <= 599:
        raise RetryableError(
            f"DX answered {status_code}" + (f": {code}" if code else ""),
            retry_after=retry_after_seconds(_header(headers, "retry-after"), now=now),
            code=code or f"http_{status_code}",
            http_status=status_code,
            body=text,
        )
    if 300 <= status_code <= 399:
        # Where, not with what: a query string could carry someone's token, and the
        # message reaches logs and the unauthenticated /readyz.
        location = (_header(headers, "location") or "").partition("?")[0].partition("#")[0]
        location = location or "nowhere"
        raise DXRedirected(
            f"DX answered {status_code} redirecting to {location[:200]}:"
            " check RELAY_DX_BASE_URL (https, and the instance's own host)",
            http_status=status_code,
            body=text,
        )
    if code == "not_authed" or status_code in (401, 403):
        raise DXAuthError(
            f"DX refused the token: not_authed (HTTP {status_code})",
            http_status=status_code,
            body=text,
        )
    if 400 <= status_code <= 499:
        raise PermanentError(
            f"DX answered {status_code}: {text}",
            code=code or f"http_{status_code}",
            http_status=status_code,
            body=text,
        )
    if 200 <= status_code <= 299 and ok is True:
        return Answer(status_code, text)
    if 200 <= status_code <= 299 and ok is False:
        if code in PERMANENT_CODES:
            raise PermanentError(
                f"DX answered ok=false: {code}", code=code, http_status=status_code, body=text
            )
        raise RetryableError(
            f"DX answered ok=false: {code}",
            code=code or "ok_false",
            http_status=status_code,
            body=text,
        )
    raise RetryableError(
        f"unexpected DX answer {status_code}: {text[:200]}",
        code="bad_response",
        http_status=status_code,
        body=text,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Header names are case-insensitive, whatever mapping the caller passes."""
    return next((value for key, value in headers.items() if key.lower() == name), None)


def make_http_client(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The process's one outbound client: explicit timeouts and pool limits, no surprises,
    and the bounds (overall deadline, byte cap) every upstream answer is read within."""
    timeout = settings.dx_timeout_seconds
    return upstream.UpstreamClient(
        bounds=upstream.Bounds.from_settings(settings),
        transport=transport,
        timeout=httpx.Timeout(connect=min(5.0, timeout), read=timeout, write=timeout, pool=timeout),
        limits=httpx.Limits(
            max_connections=settings.dx_concurrency * 2,
            max_keepalive_connections=settings.dx_concurrency,
            keepalive_expiry=30.0,
        ),
        headers={"User-Agent": "opsgenie-dx-relay"},
    )


class DXClient:
    """Sends one request to DX and classifies the answer; retries are the caller's policy."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, token: str) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def upsert(self, body: IncidentUpsert) -> Answer:
        return await self._post("incidents.upsert", dict(body))

    async def delete(self, reference_id: str) -> Answer:
        """Deleting is idempotent: ``not_found`` means the incident is already gone (deleted
        before, or never created because the alert was filtered out), which is the goal."""
        try:
            return await self._post("incidents.delete", {"reference_id": reference_id})
        except PermanentError as error:
            if error.code != "not_found" or error.http_status is None:
                raise
            return Answer(error.http_status, error.body or "")

    async def _post(self, method: str, body: dict[str, Any]) -> Answer:
        """One request within the client's bounds. An answer too large or undecodable is
        retried like any other bad answer (``bad_response``): DX's real answers are a few
        hundred bytes, so one that is not is a proxy's page or a fault in between, which
        passes, not a verdict on this incident that would justify failing it."""
        try:
            reply = await upstream.fetch(
                self._client,
                "POST",
                f"{self._base_url}/api/{method}",
                json_body=body,
                headers=self._headers,
            )
        except UpstreamTimeout as error:
            raise RetryableError(f"DX timed out: {error.message}", code="timeout") from None
        except UpstreamUnreachable as error:
            raise RetryableError(f"DX unreachable: {error.message}", code="network") from None
        except AnswerTooLarge as error:
            raise RetryableError(
                f"DX's {error.message}",
                code="answer_too_large",
                http_status=error.http_status,
            ) from None
        except MalformedAnswer as error:
            raise RetryableError(
                f"unusable DX answer: {error.message}",
                code="bad_response",
                http_status=error.http_status,
            ) from None
        return classify(reply.status_code, reply.headers, reply.body, now=time.time())
