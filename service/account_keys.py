"""Opsgenie and JSM credentials as admins type them: checked before they are stored.

A stored key travels in an HTTP header on every Opsgenie request. One that cannot
(non-ASCII, a line break) used to be accepted and then failed on every use, a backfill
answering 500; so keys are refused on input instead. Errors name the field and what is
wrong, never the key or a piece of it: an answer or a log line is no place for it.
"""

from __future__ import annotations

import re
from typing import Literal, NoReturn
from urllib.parse import urlsplit

from starlette.datastructures import Secret

from service.errors import PayloadError

API_KEY_FIELD = "data.attributes.opsgenie_api_key"
MAX_KEY_LENGTH = 1024

#: ``opsgenie``: a GenieKey (a UUID, though teams use other keys through proxies);
#: ``jsm``: Jira Service Management's ``<email>:<API token>``, sent as Basic auth.
KeyKind = Literal["opsgenie", "jsm"]

#: A JSM Cloud site's host: ``<site>.atlassian.net``, one label for the site's name.
_JSM_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.atlassian\.net")
#: Printable ASCII without the space: what a header value holds safely, unquoted.
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
#: One ``@`` with something on each side; the address's own rules are the mail server's.
_EMAIL = re.compile(r"[^@\s:]+@[^@\s:]+")


def parse_api_key(text: str, *, kind: KeyKind = "opsgenie", field: str = API_KEY_FIELD) -> Secret:
    """The key, wrapped so no ``repr`` shows it; ``PayloadError`` naming ``field`` if unusable.

    Surrounding spaces (a careless paste) are dropped; spaces inside are refused, since
    no key holds one and a header would carry it.
    """
    key = text.strip(" ")
    if not key:
        _refuse(field, "must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        _refuse(field, f"longer than {MAX_KEY_LENGTH} characters")
    if not key.isascii():
        _refuse(field, "must be ASCII: a key with other characters cannot go into a header")
    if not _PRINTABLE.fullmatch(key):
        _refuse(field, "must not contain spaces or control characters")
    if kind == "jsm":
        email, colon, token = key.partition(":")
        if not colon or not _EMAIL.fullmatch(email) or not token:
            _refuse(
                field,
                "must be <email>:<API token> of an Atlassian account for a JSM site"
                " (custom_url on atlassian.net)",
            )
    return Secret(key)


def jsm_site(region: str, custom_url: str | None) -> str | None:
    """The JSM Cloud site a service object names (``https://<site>.atlassian.net``, any
    port, no path), or ``None`` when it is an Opsgenie account (a region, or a proxy).

    The Datadog-shaped API has no field for the kind, and clients send only what Datadog
    knows (``region: custom`` and ``custom_url``); Atlassian's sites all live under
    ``atlassian.net``, so the URL says it. ``custom_url`` was accepted by
    ``destinations.parse_custom_url`` (an https origin), so only its parts are read here.
    """
    if region != "custom" or not custom_url:
        return None
    parts = urlsplit(custom_url)
    host = (parts.hostname or "").lower()
    if not _JSM_HOST.fullmatch(host) or parts.path not in ("", "/"):
        return None
    return f"https://{host}" if parts.port in (None, 443) else f"https://{host}:{parts.port}"


def key_kind(region: str, custom_url: str | None) -> KeyKind:
    """The key a destination takes: JSM's ``<email>:<API token>`` for a JSM site."""
    return "jsm" if jsm_site(region, custom_url) is not None else "opsgenie"


def _refuse(field: str, reason: str) -> NoReturn:
    raise PayloadError(f"{field}: {reason}", field=field)
