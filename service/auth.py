"""Who may call: webhook tokens and Datadog-style admin keys, compared in constant time.

Opsgenie's webhook integration signs nothing; it can only add custom headers. So the
relay accepts ``Authorization: Bearer <token>``, or HTTP Basic with the token as the
password for integrations that only offer a URL with credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from starlette.datastructures import Secret

from service.errors import AuthError


def _equal(given: str, expected: Secret) -> bool:
    return hmac.compare_digest(given.encode(), str(expected).encode())


def _any_equal(given: str, expected: Sequence[Secret]) -> bool:
    # Compare against every token so the time taken says nothing about which matched:
    # ``|`` does not short-circuit. A plain loop, as this runs on every webhook.
    presented = given.encode()
    matched = False
    for token in expected:
        matched |= hmac.compare_digest(presented, str(token).encode())
    return matched


def presented_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization`` header: Bearer, or Basic's password."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer" and credentials:
        return credentials
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


def webhook_token_ok(authorization: str | None, tokens: Sequence[Secret]) -> bool:
    """With no tokens configured nothing is accepted: an open relay is never the default."""
    token = presented_token(authorization)
    return token is not None and bool(tokens) and _any_equal(token, tokens)


class Access(Enum):
    NONE = "none"
    READ = "read"
    FULL = "full"


def admin_access(
    api_key: str | None,
    app_key: str | None,
    *,
    expected_api_key: Secret | None,
    expected_app_key: Secret | None,
    readonly_app_key: Secret | None,
) -> Access:
    """Datadog clients send ``DD-API-KEY`` and ``DD-APPLICATION-KEY``; both must match."""
    if not api_key or not app_key or expected_api_key is None:
        return Access.NONE
    api_ok = _equal(api_key, expected_api_key)
    full = expected_app_key is not None and _equal(app_key, expected_app_key)
    read = readonly_app_key is not None and _equal(app_key, readonly_app_key)
    if api_ok and full:
        return Access.FULL
    if api_ok and read:
        return Access.READ
    return Access.NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminKeys:
    """The admin APIs' keys (``RELAY_API_KEY``, ``RELAY_APP_KEY``, ``RELAY_READONLY_APP_KEY``)."""

    api_key: Secret | None
    app_key: Secret | None
    readonly_app_key: Secret | None

    def access(self, headers: Mapping[str, str]) -> Access:
        """``admin_access`` of a request's ``DD-API-KEY`` and ``DD-APPLICATION-KEY`` headers."""
        return admin_access(
            headers.get("dd-api-key"),
            headers.get("dd-application-key"),
            expected_api_key=self.api_key,
            expected_app_key=self.app_key,
            readonly_app_key=self.readonly_app_key,
        )


def require_admin(access: Access, method: str) -> None:
    """The admin APIs' 403 (as Datadog answers) unless ``access`` may use ``method``:
    a read-only application key may only read."""
    if access is Access.NONE:
        raise AuthError("Forbidden", status_code=403)
    if access is Access.READ and method not in ("GET", "HEAD"):
        raise AuthError("Forbidden: this application key may only read", status_code=403)
