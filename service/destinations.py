"""Where a stored Opsgenie API key may be sent: the rules, without any I/O.

A service object's ``custom_url`` decides which host receives its API key, so an admin
(or anyone holding an admin key) could otherwise point the relay at its own loopback, the
cloud metadata service or a private network. Two checks share the rules below:

* ``parse_custom_url`` when the URL is written: an https origin with an optional path
  prefix, and no host that *names* a forbidden address;
* ``service.egress`` when a request connects: the address the name *resolves to*, since
  DNS answers can change between the two (rebinding).

Addresses fall into three kinds: public (always allowed), private (allowed only when the
operator says so: some teams reach Opsgenie through a proxy inside their network) and
never allowed, whatever the setting. See ``address_refusal``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import NoReturn

from service.errors import PayloadError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CUSTOM_URL_FIELD = "data.attributes.custom_url"
API_KEY_FIELD = "data.attributes.opsgenie_api_key"
MAX_URL_LENGTH = 2048

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

#: Cloud metadata and credential endpoints (AWS IMDS and ECS credentials, GCP, Azure,
#: Oracle, Alibaba) and the rest of link-local, where no proxy lives but metadata does.
_METADATA = (
    _V4("169.254.0.0/16"),
    _V4("100.100.100.200/32"),
    _V6("fd00:ec2::/32"),
    _V6("fe80::/10"),
)
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})

#: Addresses a proxy inside the operator's network may have.
_PRIVATE = (
    _V4("127.0.0.0/8"),
    _V4("10.0.0.0/8"),
    _V4("172.16.0.0/12"),
    _V4("192.168.0.0/16"),
    _V4("100.64.0.0/10"),
    _V6("::1/128"),
    _V6("fc00::/7"),
)

#: NAT64's well-known prefix: the last 32 bits are the IPv4 address the gateway reaches.
_NAT64 = _V6("64:ff9b::/96")

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_DOTTED_QUAD = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_PORT = re.compile(r"[0-9]{1,5}")
#: RFC 3986 ``pchar`` and ``/``, without ``@`` (never userinfo-like) or ``%`` (checked apart).
_PATH_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:/"
)
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def address_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why the relay must not connect to ``address`` (``None``: it may).

    Metadata and link-local addresses stay refused even with ``allow_private``: the setting
    exists for a proxy on a private network, and no proxy answers on 169.254.0.0/16 or
    fe80::/10, while the metadata service there hands out the host's cloud credentials
    to anyone who asks. The same holds for addresses that are not one host's (unspecified,
    multicast, broadcast, documentation, reserved): ``0.0.0.0`` reaches the local host on
    Linux and is never what an operator meant.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_refusal(address.ipv4_mapped, allow_private=allow_private)
    for embedded in _embedded_ipv4(address):
        reason = address_refusal(embedded, allow_private=allow_private)
        if reason is not None:
            return f"{reason} (inside {address})"
    if any(address in network for network in _METADATA if network.version == address.version):
        return f"{address} is a link-local or cloud metadata address, never allowed"
    if any(address in network for network in _PRIVATE if network.version == address.version):
        if allow_private:
            return None
        kind = "a loopback" if address.is_loopback else "a private"
        return (
            f"{address} is {kind} address; private upstreams are allowed only"
            " with RELAY_ALLOW_PRIVATE_UPSTREAMS=true"
        )
    if address.is_multicast or not address.is_global:
        return f"{address} is not a public unicast address, never allowed"
    return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a 6to4 or NAT64 address stands for: the gateway that translates
    it connects there, so ``64:ff9b::a9fe:a9fe`` is the metadata service."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.sixtofour] if address.sixtofour is not None else []
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def name_refusal(host: str, *, allow_private: bool) -> str | None:
    """Why a host *name* is refused before any lookup (``None``: resolve it and check).

    ``localhost`` and ``*.localhost`` resolve to loopback by RFC 6761, whatever DNS says;
    metadata names are refused by name too, so the refusal is explicit at write time.
    """
    host = host.lower()
    if host in _METADATA_NAMES:
        return f"{host} is a cloud metadata host, never allowed"
    if (host == "localhost" or host.endswith(".localhost")) and not allow_private:
        return (
            f"{host} is a loopback name; private upstreams are allowed only"
            " with RELAY_ALLOW_PRIVATE_UPSTREAMS=true"
        )
    return None


def parse_custom_url(text: str, *, allow_private: bool = False) -> str:
    """The ``custom_url`` as given, once it is an https origin the relay may send a key to.

    Accepted: ``https://host[:port][/path/prefix]``. The host is a DNS name (ASCII; IDNs
    in their ``xn--`` form), a dotted-quad IPv4 address or a bracketed IPv6 address.
    Refused: userinfo (it would replace the ``GenieKey`` header and be shown back in
    plain text), a query or fragment (even empty; they break the paths the client
    appends), and every IPv4 spelling other than four decimal numbers (``2130706433``,
    ``0x7f000001``, ``0177.0.0.1``, ``127.1``), which resolvers read as addresses while
    URL parsers, httpx included, pass them on as names.

    The text is returned unchanged rather than rewritten: Terraform and Datadog's client
    compare what they sent with what comes back, and a rewritten value never converges.
    ``destination_key`` gives the normalised form for comparisons.
    """
    _split(text, allow_private=allow_private)
    return text


def destination_key(custom_url: str) -> str:
    """A comparable form of an accepted ``custom_url``: lower-case scheme and host, IPv6
    compressed, no default port, no trailing slash. URLs with one key get the same requests.
    """
    scheme, host, port, path = _split(custom_url, allow_private=True)
    if host.startswith("["):
        host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    netloc = host if port in (None, 443) else f"{host}:{port}"
    return f"{scheme}://{netloc}{path.rstrip('/')}"


def check_destination_change(
    current: tuple[str, str | None], changes: Mapping[str, object], *, has_key: bool = True
) -> None:
    """Refuse a PATCH that moves a stored API key to another destination without the key.

    The key is write-only, so whoever may edit ``custom_url`` but does not know the key
    could otherwise have it sent to a host of their choosing. Datadog's client and
    Terraform send unchanged ``region``/``custom_url`` with other edits: a value equal to
    the stored one (compared by ``destination_key``) is not a change. A path change is
    one: behind a proxy, another path may be another backend.
    """
    if not has_key or "api_key" in changes:
        return
    region, custom_url = current
    new_region = str(changes.get("region", region))
    new_url = changes.get("custom_url", custom_url)
    new_url = None if new_url is None else str(new_url)
    if _destination(region, custom_url) != _destination(new_region, new_url):
        raise PayloadError(
            f"{API_KEY_FIELD}: required when region or custom_url changes,"
            " so the stored key is never sent to a new host",
            field=API_KEY_FIELD,
        )


def destination_after(
    current: tuple[str, str | None], changes: Mapping[str, object], *, has_key: bool
) -> tuple[str, str | None]:
    """The ``(region, custom_url)`` a PATCH leaves a stored service object with: ``custom``
    needs a URL (stored or given), and a key does not follow a moved destination
    (``check_destination_change``). Both backends call it in the write's transaction, on
    the row they are about to write, so no other PATCH can move the URL in between."""
    region = str(changes.get("region", current[0]))
    url = changes.get("custom_url", current[1])
    custom_url = None if url is None else str(url)
    if region == "custom" and custom_url is None:
        raise PayloadError(
            "data.attributes.custom_url: required when region is custom",
            field="data.attributes.custom_url",
        )
    check_destination_change(current, changes, has_key=has_key)
    return region, custom_url


def _destination(region: str, custom_url: str | None) -> str:
    """Where requests go: the region's fixed host, or the custom URL (``custom`` only)."""
    if region != "custom":
        return region
    if custom_url is None:
        return "custom:"
    try:
        return destination_key(custom_url)
    except PayloadError:  # a URL stored before these rules: compare it as it is
        return custom_url


def _split(text: str, *, allow_private: bool) -> tuple[str, str, int | None, str]:
    """``(scheme, host, port, path)`` of an acceptable custom URL, or ``PayloadError``."""
    if len(text) > MAX_URL_LENGTH:
        _refuse(f"longer than {MAX_URL_LENGTH} characters")
    if not text.isascii() or any(c <= " " or c == "\x7f" for c in text):
        _refuse("must be ASCII without spaces or control characters (IDNs in xn-- form)")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() != "https":
        _refuse("must be an https URL (https://host[:port][/path])")
    if "@" in text:
        _refuse("must not contain userinfo (user@ or user:password@)")
    if "?" in text or "#" in text:
        _refuse("must not contain a query (?) or a fragment (#)")
    if "\\" in text:
        _refuse("must not contain a backslash")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if any(c not in _PATH_CHARS for c in _PERCENT.sub("", path)):
        _refuse("path has characters a URL path may not hold")
    host, port = _host_port(authority)
    reason = _host_refusal(host, allow_private=allow_private)
    if reason is not None:
        _refuse(reason)
    return scheme.lower(), host, port, path


def _host_port(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        inside, bracket, after = authority[1:].partition("]")
        if not bracket:
            _refuse("has an unclosed [ in its host")
        host, port_text = f"[{inside.lower()}]", after
    else:
        host, colon, port_text = authority.partition(":")
        port_text = colon + port_text
        host = host.lower()
    if not port_text:
        return host, None
    digits = port_text[1:]
    if not port_text.startswith(":") or not _PORT.fullmatch(digits) or not 0 < int(digits) < 65536:
        _refuse("port must be a number from 1 to 65535")
    return host, int(digits)


def _host_refusal(host: str, *, allow_private: bool) -> str | None:
    """Why ``host`` (lower case, IPv6 in brackets) is not acceptable, ``None`` if it is."""
    if not host:
        return "must name a host"
    if host.startswith("["):
        literal = host[1:-1]
        if "%" in literal:
            return "IPv6 zone ids (%) are not accepted"
        try:
            address: IPAddress = ipaddress.IPv6Address(literal)
        except ValueError:
            return "host is not a valid IPv6 address"
        return address_refusal(address, allow_private=allow_private)
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]) or _inet_aton_accepts(host):
        # Resolvers read a name ending in a number as an IPv4 address, in any spelling.
        if not _DOTTED_QUAD.fullmatch(host):
            return "an IPv4 address must be written as four decimal numbers (a.b.c.d)"
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            return "host is not a valid IPv4 address"
        return address_refusal(address, allow_private=allow_private)
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "host must be a DNS name of letters, digits and hyphens, without a trailing dot"
    return name_refusal(host, allow_private=allow_private)


def _inet_aton_accepts(host: str) -> bool:
    """Whether the C library would read ``host`` as an IPv4 address (``127.1``, octal...)."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _refuse(reason: str) -> NoReturn:
    raise PayloadError(f"{CUSTOM_URL_FIELD}: {reason}", field=CUSTOM_URL_FIELD)
