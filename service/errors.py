"""Every failure the relay can name, in one tree.

Callers catch the narrowest class that changes what they do; the HTTP edge turns the
whole tree into answers in one place (``http_errors.py``): ``status_code`` and ``headers``
are what that answer carries.

```
* RelayError
  x ConfigError              startup; names the variable
    + SecretKeyError         RELAY_SECRET_KEY cannot decrypt a stored Opsgenie API key
  x ContractDrift            startup; a route and /openapi.json disagree (a bug)
  x PayloadError             400; .field
  x BodyTooLarge             413
  x ClientGone               408; the client left, or its body took past RELAY_BODY_TIMEOUT
  x AuthError                401 (webhook) / 403 (admin)
  x NotFound                 404
  x MethodNotAllowed         405; .headers["Allow"]
  x Conflict                 409
  x TooManyRequests          429 (admin API rate limit)
  x OpsgenieUnavailable      502; a backfill could not list or read the alerts
  x StoreUnavailable         503; the event was NOT stored, so Opsgenie may retry
  x LeaseLost                a claim passed to another replica; its result was not recorded
  x DeliveryError            .reference_id; .http_status, .body of DX's answer (None: no answer)
    + RetryableError         .retry_after: float | None   (network, timeout, 429, 5xx)
    + PermanentError         .code: str                   (ok:false codes, other 4xx)
    + DXUnusable             .code; every request would fail -> pause all deliveries
      - DXAuthError          not_authed: DX refused the token
      - DXRedirected         3xx: RELAY_DX_BASE_URL points at the wrong place
  x DestinationRefused       .host, .address: an upstream's address is not allowed (never retried)
  x OpsgenieAPIError         .http_status of Opsgenie's answer (None: no answer)
    + OpsgenieRetryable      .retry_after   (network, timeout, 429, 5xx)
    + OpsgeniePermanent      other 4xx, unusable body
      - OpsgenieAuthError    401/403: the service object's key is wrong or lacks access
      - OpsgenieNotFound     404: no such alert (deleted alerts cannot be fetched)
  x CommandFailed            CLI: the relay's admin API unreachable or refusing (exit 1)
    + UnexpectedAnswer       CLI: a success this version cannot read (another server?)
  x UpstreamError            upstream.py, before a client maps it into its own family above
    + UpstreamTimeout        no whole answer within the deadline (connect to last byte)
    + UpstreamUnreachable    connection refused or reset, DNS, TLS
    + AnswerTooLarge         .http_status; over RELAY_UPSTREAM_MAX_BYTES once decompressed
    + MalformedAnswer        .http_status; bad encoding, or not strict JSON (too deep, NaN...)

* ValueError
  x NotStrictJSON            strict_json.py: decodable, but not JSON the relay takes
```
"""

from __future__ import annotations

from collections.abc import Iterable


class RelayError(Exception):
    """Base of every error the relay raises on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: Headers the HTTP answer carries; an edge may add its own (rate-limit windows).
        self.headers: dict[str, str] = {}


class NotStrictJSON(ValueError):
    """Decodable, but not JSON the relay takes: the message says which rule it broke. A
    ``ValueError`` like every other reason a text is no document, so one ``except`` covers
    them all; the caller that reads it (a webhook, an upstream answer) says what it means."""


class ConfigError(RelayError):
    """Configuration that cannot work; the message names the variable or file."""


class SecretKeyError(ConfigError):
    """A stored Opsgenie API key does not decrypt: the secret key changed or was lost."""


class ContractDrift(RelayError):
    """The app's routes and ``/openapi.json`` disagree: a route without a description, a
    description without a route, or other methods. A bug, found when the app is built."""


class PayloadError(RelayError):
    """A request body the relay cannot use; ``field`` names the offending part."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BodyTooLarge(RelayError):
    status_code = 413


class ClientGone(RelayError):
    """The client disconnected, or was cut off by a server deadline, before its body
    arrived: nothing is stored, and no answer reaches it."""

    status_code = 408


class AuthError(RelayError):
    """Missing or wrong credentials. Webhooks answer 401, the admin API 403 (as Datadog).

    A 401 names the scheme to use in ``challenge`` (``WWW-Authenticate``), as RFC 9110
    requires of every 401; Basic with the token as password works too, but Bearer is the
    one to ask for.
    """

    def __init__(self, message: str, *, status_code: int = 401) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.challenge = 'Bearer realm="opsgenie-dx-relay"' if status_code == 401 else None
        if self.challenge is not None:
            self.headers["WWW-Authenticate"] = self.challenge


class NotFound(RelayError):
    status_code = 404


class MethodNotAllowed(RelayError):
    """A route that exists, asked with a method it does not take; ``Allow`` names those it does."""

    status_code = 405

    def __init__(self, allowed: Iterable[str]) -> None:
        super().__init__("Method Not Allowed")
        self.headers["Allow"] = ", ".join(allowed)


class Conflict(RelayError):
    status_code = 409


class TooManyRequests(RelayError):
    """The caller's admin API window is used up (Datadog's limit, counted as Datadog does)."""

    status_code = 429


class OpsgenieUnavailable(RelayError):
    """Opsgenie did not list the alerts (key, region, outage): 502, nothing half-done hidden."""

    status_code = 502


class StoreUnavailable(RelayError):
    """The database refused the write (disk full, locked): nothing was acknowledged."""

    status_code = 503


class LeaseLost(RelayError):
    """A delivery's result came after its claim's lease ran out and another replica
    claimed the reference (PostgreSQL): recording it would overwrite a newer delivery,
    so nothing was recorded, and the reference is that replica's now."""


class DeliveryError(RelayError):
    """A DX request did not succeed.

    ``body`` is DX's answer as it came (decoded, cut short), kept apart from the message:
    the message is our summary for logs and ``last_error``, while operators asking "what
    did DX say?" need DX's own words, such as which field it refused and why.
    """

    def __init__(
        self,
        message: str,
        *,
        reference_id: str | None = None,
        http_status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reference_id = reference_id
        self.http_status = http_status
        self.body = body


class RetryableError(DeliveryError):
    """Worth trying again later: network errors, timeouts, 429 and 5xx."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str = "unavailable",
        reference_id: str | None = None,
        http_status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message, reference_id=reference_id, http_status=http_status, body=body)
        self.retry_after = retry_after
        self.code = code


class PermanentError(DeliveryError):
    """DX rejected this request; sending it again unchanged would fail the same way."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        reference_id: str | None = None,
        http_status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message, reference_id=reference_id, http_status=http_status, body=body)
        self.code = code


class DXUnusable(DeliveryError):
    """Every request to DX would fail the same way, whatever it carries: delivery pauses
    for everyone, with backoff, instead of failing or retrying each reference alone."""

    code: str  # each subclass names its reason: relay_delivery_paused{reason}


class DXAuthError(DXUnusable):
    """DX refused our token."""

    code = "not_authed"


class DXRedirected(DXUnusable):
    """DX answered with a redirect. The client does not follow it: a POST turned into a
    GET, or a token sent to wherever ``Location`` says, would be worse than stopping. It
    nearly always means ``RELAY_DX_BASE_URL`` says ``http`` for ``https``, or the wrong host."""

    code = "redirected"


class DestinationRefused(RelayError):
    """The relay refused to connect: the host resolved to an address it must not reach.

    Raised at connect time by ``service.egress``, before a byte (or a stored key) is
    sent. Asking again gets the same answer unless DNS or the operator's settings change,
    so callers treat it as permanent and show it to the operator: it names the host and
    the address, never the request's headers.
    """

    def __init__(self, message: str, *, host: str, address: str | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.address = address


class OpsgenieAPIError(RelayError):
    """Opsgenie's Alert or Account API did not answer usefully.

    Enrichment and links only improve what the relay already has, so callers catch
    this and carry on; ``http_status`` says what Opsgenie answered (``None``: nothing).
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class OpsgenieRetryable(OpsgenieAPIError):
    """Worth asking again later: network errors, timeouts, 429 and 5xx."""

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class OpsgeniePermanent(OpsgenieAPIError):
    """Asking again will not help: a wrong key (401/403), a deleted alert (404), bad data."""


class OpsgenieAuthError(OpsgeniePermanent):
    """401/403: the service object's API key is wrong, revoked, or may not read alerts."""


class OpsgenieNotFound(OpsgeniePermanent):
    """404: no such alert; Opsgenie cannot fetch a deleted alert."""


class CommandFailed(RelayError):
    """The relay could not be reached or answered something other than success (exit 1)."""


class UnexpectedAnswer(CommandFailed):
    """A success whose body this command cannot read: another server, or another version."""


class UpstreamError(RelayError):
    """An upstream (DX, Opsgenie) gave no answer ``service.upstream`` would read.

    Raised only between ``upstream.fetch`` and a client, which maps it into its own family
    (``DeliveryError``, ``OpsgenieAPIError``): what a slow or bad answer means for the
    relay (retry, pause, carry on without) is the client's to say.
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class UpstreamTimeout(UpstreamError):
    """No last byte within the deadline, however steadily the bytes dripped."""


class UpstreamUnreachable(UpstreamError):
    """No answer at all: connection refused or reset, DNS, TLS."""


class AnswerTooLarge(UpstreamError):
    """The answer, decompressed, passed the byte cap; reading stopped there."""


class MalformedAnswer(UpstreamError):
    """The answer is not what it says: an encoding that does not decode, or not strict JSON."""
