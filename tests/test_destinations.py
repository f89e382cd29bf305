"""Which ``custom_url`` values and addresses may receive a stored key, and when a PATCH
must carry the key again."""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest

from service.destinations import (
    address_refusal,
    check_destination_change,
    destination_key,
    name_refusal,
    parse_custom_url,
)
from service.errors import PayloadError

ACCEPTED = [
    "https://api.opsgenie.com",
    "https://api.eu.opsgenie.com/",
    "HTTPS://Api.Opsgenie.COM",
    "https://proxy.example.com:8443",
    "https://proxy.example.com/opsgenie/prefix",
    "https://proxy.example.com/a%2Fb/~user/x-y_z.v1",
    "https://xn--caf-dma.example",
    "https://8.8.8.8",
    "https://8.8.8.8:443/og",
    "https://[2606:4700:4700::1111]",
    "https://[2606:4700:4700::1111]:8443/og",
    "https://single-label",
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_an_https_origin_with_an_optional_path_is_accepted_as_given(url: str) -> None:
    assert parse_custom_url(url) == url


REFUSED = [
    # (url, words the message must hold)
    ("http://api.opsgenie.com", "must be an https URL"),
    ("ftp://api.opsgenie.com", "must be an https URL"),
    ("api.opsgenie.com", "must be an https URL"),
    ("https:api.opsgenie.com", "must be an https URL"),
    ("", "must be an https URL"),
    ("https://", "must name a host"),
    ("https:///path", "must name a host"),
    ("https://:443", "must name a host"),
    ("https://user@api.opsgenie.com", "userinfo"),
    ("https://user:pass@api.opsgenie.com", "userinfo"),
    ("https://@api.opsgenie.com", "userinfo"),
    ("https://api.opsgenie.com/path?x=1", "query"),
    ("https://api.opsgenie.com?", "query"),
    ("https://api.opsgenie.com/#", "fragment"),
    ("https://api.opsgenie.com#frag", "fragment"),
    ("https://api.opsgenie.com\\@evil.example", "userinfo"),
    ("https://evil.example\\api.opsgenie.com", "backslash"),
    ("https://api.opsgenie.com:", "port must be a number"),
    ("https://api.opsgenie.com:0", "port must be a number"),
    ("https://api.opsgenie.com:65536", "port must be a number"),
    ("https://api.opsgenie.com:+443", "port must be a number"),
    ("https://api.opsgenie.com:443:443", "port must be a number"),
    ("https://api.opsgenie.com /x", "spaces"),
    (" https://api.opsgenie.com", "spaces"),
    ("https://api.opsgenie.com\n", "control characters"),
    ("https://caf\u00e9.example", "ASCII"),
    ("https://\uff10x7f000001", "ASCII"),
    ("https://exa_mple.com", "DNS name"),
    ("https://-bad.example", "DNS name"),
    ("https://a..b.example", "DNS name"),
    ("https://api.opsgenie.com.", "trailing dot"),
    ("https://" + "a" * 64 + ".example", "DNS name"),
    ("https://example.com/%zz", "path"),
    ("https://example.com/a b", "spaces"),
    ("https://example.com/<script>", "path"),
    ("https://[::1", "unclosed"),
    ("https://[not-v6]", "IPv6"),
    ("https://[v1.fe]", "IPv6"),
    ("https://[fe80::1%25eth0]", "zone"),
    ("https://" + "a" * 2040 + ".com", "longer than 2048"),
    # IPv4 in any spelling but a.b.c.d: resolvers read them as addresses.
    ("https://2130706433", "four decimal numbers"),
    ("https://0x7f000001", "four decimal numbers"),
    ("https://0X7F000001/", "four decimal numbers"),
    ("https://0177.0.0.1", "four decimal numbers"),
    ("https://0x7f.0.0.1", "four decimal numbers"),
    ("https://127.1", "four decimal numbers"),
    ("https://127.0.1", "four decimal numbers"),
    ("https://0", "four decimal numbers"),
    ("https://134744072", "four decimal numbers"),  # 8.8.8.8, public but spelt oddly
    ("https://1.2.3.4.5", "four decimal numbers"),
    ("https://example.123", "four decimal numbers"),
    ("https://256.0.0.1", "not a valid IPv4"),
    ("https://127.0.0.1.", "trailing dot"),
    # Private and loopback: refused unless the operator allows private upstreams.
    ("https://127.0.0.1", "loopback address"),
    ("https://127.255.0.9:8443", "loopback address"),
    ("https://10.0.0.1", "private address"),
    ("https://172.16.5.4", "private address"),
    ("https://172.31.255.255", "private address"),
    ("https://192.168.1.1", "private address"),
    ("https://100.64.0.1", "private address"),
    ("https://[::1]", "loopback address"),
    ("https://[fd12:3456::1]", "private address"),
    ("https://[::ffff:127.0.0.1]", "loopback address"),
    ("https://[::ffff:7f00:1]", "loopback address"),
    ("https://[::ffff:10.0.0.1]", "private address"),
    ("https://[2002:7f00:1::]", "loopback address"),
    ("https://localhost", "loopback name"),
    ("https://LocalHost:8443", "loopback name"),
    ("https://api.localhost", "loopback name"),
    # Never, whatever the setting.
    ("https://169.254.169.254", "metadata"),
    ("https://169.254.170.2/v2/credentials", "metadata"),
    ("https://169.254.1.1", "link-local"),
    ("https://100.100.100.200", "metadata"),
    ("https://[fd00:ec2::254]", "metadata"),
    ("https://[fe80::1]", "link-local"),
    ("https://[::ffff:169.254.169.254]", "metadata"),
    ("https://[64:ff9b::a9fe:a9fe]", "metadata"),
    ("https://metadata.google.internal", "metadata host"),
    ("https://METADATA.google.internal/computeMetadata/v1", "metadata host"),
    ("https://metadata", "metadata host"),
    ("https://0.0.0.0", "not a public unicast"),
    ("https://[::]", "not a public unicast"),
    ("https://224.0.0.1", "not a public unicast"),
    ("https://[ff02::1]", "not a public unicast"),
    ("https://255.255.255.255", "not a public unicast"),
    ("https://240.0.0.1", "not a public unicast"),
    ("https://192.0.2.1", "not a public unicast"),
    ("https://[2001:db8::1]", "not a public unicast"),
]


@pytest.mark.parametrize(("url", "words"), REFUSED)
def test_anything_else_is_refused_naming_the_field(url: str, words: str) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_custom_url(url)
    assert refused.value.field == "data.attributes.custom_url"
    assert refused.value.message.startswith("data.attributes.custom_url: ")
    assert words in refused.value.message


PRIVATE_ONLY = [
    url
    for url, words in REFUSED
    if words in ("loopback address", "private address", "loopback name")
]


@pytest.mark.parametrize("url", PRIVATE_ONLY)
def test_private_and_loopback_destinations_pass_when_the_operator_allows_them(url: str) -> None:
    assert parse_custom_url(url, allow_private=True) == url


@pytest.mark.parametrize(("url", "words"), [r for r in REFUSED if r[0] not in PRIVATE_ONLY])
def test_everything_else_stays_refused_with_private_upstreams_allowed(url: str, words: str) -> None:
    with pytest.raises(PayloadError, match=r"data\.attributes\.custom_url"):
        parse_custom_url(url, allow_private=True)


def test_a_refusal_points_at_the_setting_only_when_the_setting_would_help() -> None:
    with pytest.raises(PayloadError, match="RELAY_ALLOW_PRIVATE_UPSTREAMS"):
        parse_custom_url("https://10.0.0.1")
    with pytest.raises(PayloadError) as refused:
        parse_custom_url("https://169.254.169.254")
    assert "RELAY_ALLOW_PRIVATE_UPSTREAMS" not in refused.value.message


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "017700000001"]
)
def test_every_odd_ipv4_spelling_refused_here_is_one_the_system_reads_as_loopback(
    host: str,
) -> None:
    """Why the spellings matter: httpx passes them on as names, the resolver makes them
    127.0.0.1. (httpx itself refuses the octal quad; the resolver would not.)"""
    assert socket.inet_aton(host) == socket.inet_aton("127.0.0.1")
    try:
        assert httpx.URL(f"https://{host}/").host == host
    except httpx.InvalidURL:
        assert host.startswith("0177.")
    with pytest.raises(PayloadError, match="four decimal numbers"):
        parse_custom_url(f"https://{host}/", allow_private=True)


@pytest.mark.parametrize("url", ACCEPTED)
def test_httpx_connects_to_the_host_that_was_checked(url: str) -> None:
    """What was validated is what the client will dial: same host, same port."""
    parsed = httpx.URL(url)
    key = destination_key(url)
    assert parsed.scheme == "https"
    assert parsed.raw_host.decode() in key
    assert not parsed.userinfo
    assert not parsed.query
    assert not parsed.fragment


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://api.opsgenie.com", "https://api.opsgenie.com/"),
        ("https://api.opsgenie.com", "HTTPS://API.OPSGENIE.COM"),
        ("https://api.opsgenie.com", "https://api.opsgenie.com:443"),
        ("https://proxy.example/og", "https://proxy.example/og/"),
        ("https://[2606:4700::1]", "https://[2606:4700:0::1]:443"),
    ],
)
def test_spellings_of_one_destination_share_a_key(first: str, second: str) -> None:
    assert destination_key(first) == destination_key(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://api.opsgenie.com", "https://api.eu.opsgenie.com"),
        ("https://api.opsgenie.com", "https://api.opsgenie.com:8443"),
        ("https://proxy.example/og", "https://proxy.example/other"),
        ("https://proxy.example", "https://proxy.example/og"),
    ],
)
def test_other_hosts_ports_and_paths_are_other_destinations(first: str, second: str) -> None:
    assert destination_key(first) != destination_key(second)


ADDRESSES = [
    # (address, refusal without the setting, refusal with it)
    ("8.8.8.8", None, None),
    ("2606:4700:4700::1111", None, None),
    ("127.0.0.1", "loopback", None),
    ("::1", "loopback", None),
    ("10.1.2.3", "private", None),
    ("100.127.255.254", "private", None),
    ("fc00::5", "private", None),
    ("::ffff:192.168.0.1", "private", None),
    ("169.254.169.254", "metadata", "metadata"),
    ("fd00:ec2::254", "metadata", "metadata"),
    ("fe80::abcd", "link-local", "link-local"),
    ("0.0.0.0", "not a public", "not a public"),
    ("::", "not a public", "not a public"),
    ("239.1.1.1", "not a public", "not a public"),
    ("198.18.0.1", "not a public", "not a public"),
]


@pytest.mark.parametrize(("text", "plain", "allowed"), ADDRESSES)
def test_address_rules(text: str, plain: str | None, allowed: str | None) -> None:
    address = ipaddress.ip_address(text)
    for allow_private, expected in ((False, plain), (True, allowed)):
        reason = address_refusal(address, allow_private=allow_private)
        if expected is None:
            assert reason is None
        else:
            assert reason is not None
            assert expected in reason


@pytest.mark.parametrize(
    ("host", "plain", "allowed"),
    [
        ("api.opsgenie.com", None, None),
        ("localhost", "loopback", None),
        ("x.localhost", "loopback", None),
        ("notlocalhost", None, None),
        ("metadata.google.internal", "metadata", "metadata"),
    ],
)
def test_name_rules(host: str, plain: str | None, allowed: str | None) -> None:
    for allow_private, expected in ((False, plain), (True, allowed)):
        reason = name_refusal(host, allow_private=allow_private)
        assert (reason is None) if expected is None else (reason is not None and expected in reason)


US = ("us", None)
CUSTOM = ("custom", "https://proxy.example/og")
KEY_REQUIRED = "data.attributes.opsgenie_api_key: required when region or custom_url changes"

MOVES = [
    # (current, changes, refused?)
    (US, {"name": "renamed"}, False),
    (US, {"region": "us"}, False),
    (US, {"region": "us", "custom_url": None, "name": "x"}, False),
    (US, {"custom_url": "https://proxy.example"}, False),  # meaningless while region is us
    (US, {"region": "eu"}, True),
    (US, {"region": "custom", "custom_url": "https://proxy.example"}, True),
    (CUSTOM, {"region": "custom", "custom_url": "https://proxy.example/og"}, False),
    (CUSTOM, {"custom_url": "https://PROXY.example:443/og/"}, False),
    (CUSTOM, {"name": "renamed", "custom_url": "https://proxy.example/og"}, False),
    (CUSTOM, {"custom_url": "https://evil.example/og"}, True),
    (CUSTOM, {"custom_url": "https://proxy.example/elsewhere"}, True),
    (CUSTOM, {"custom_url": "https://proxy.example:8443/og"}, True),
    (CUSTOM, {"region": "us"}, True),
    (CUSTOM, {"region": "us", "custom_url": None}, True),
    (("custom", "https://2130706433"), {"custom_url": "https://2130706433"}, False),
]


@pytest.mark.parametrize(("current", "changes", "refused"), MOVES)
def test_a_key_never_follows_a_changed_destination(
    current: tuple[str, str | None], changes: dict[str, object], refused: bool
) -> None:
    if refused:
        with pytest.raises(PayloadError) as error:
            check_destination_change(current, changes)
        assert error.value.field == "data.attributes.opsgenie_api_key"
        assert error.value.message.startswith(KEY_REQUIRED)
    else:
        check_destination_change(current, changes)


@pytest.mark.parametrize(("current", "changes", "refused"), MOVES)
def test_a_new_key_or_no_stored_key_may_go_anywhere(
    current: tuple[str, str | None], changes: dict[str, object], refused: bool
) -> None:
    check_destination_change(current, {**changes, "api_key": "new"})
    check_destination_change(current, changes, has_key=False)
