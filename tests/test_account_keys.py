"""Opsgenie and JSM keys are checked on input and never echoed in an error."""

from __future__ import annotations

import httpx
import pytest

from service.account_keys import jsm_site, key_kind, parse_api_key
from service.errors import PayloadError

GENIE_KEY = "0f3c2a8e-1111-2222-3333-444455556666"
FIELD = "data.attributes.opsgenie_api_key"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (GENIE_KEY, GENIE_KEY),
        (GENIE_KEY.upper(), GENIE_KEY.upper()),
        (f"  {GENIE_KEY} ", GENIE_KEY),
        ("team-proxy-key_v2=/+.~!", "team-proxy-key_v2=/+.~!"),
        ("a:b", "a:b"),
        ("k" * 1024, "k" * 1024),
    ],
)
def test_opsgenie_keys_of_printable_ascii_are_accepted(given: str, kept: str) -> None:
    secret = parse_api_key(given)
    assert str(secret) == kept
    assert kept not in repr(secret)


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("k" * 1025, "longer than 1024"),
        (GENIE_KEY + "é", "must be ASCII"),
        ("ключ-" + GENIE_KEY, "must be ASCII"),
        (GENIE_KEY + "\u200b", "must be ASCII"),
        (GENIE_KEY[:8] + " " + GENIE_KEY[9:], "spaces or control"),
        (GENIE_KEY + "\r\nX-Evil: 1", "spaces or control"),
        (GENIE_KEY + "\n", "spaces or control"),
        ("\t" + GENIE_KEY, "spaces or control"),
        (GENIE_KEY + "\x7f", "spaces or control"),
        (GENIE_KEY + "\x00", "spaces or control"),
    ],
)
def test_unusable_keys_are_refused_without_echoing_them(given: str, words: str) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_api_key(given)
    assert refused.value.field == FIELD
    assert refused.value.message.startswith(f"{FIELD}: ")
    assert words in refused.value.message
    assert GENIE_KEY[:8] not in refused.value.message
    assert "k" * 20 not in refused.value.message


@pytest.mark.parametrize(
    "given",
    [
        "ops@example.com:ATATT3xFfGF0abc-_=",
        "first.last+tag@sub.example.co.uk:token",
        "a@b:c:d",  # the token is everything after the first colon
    ],
)
def test_jsm_credentials_are_an_email_and_a_token(given: str) -> None:
    assert str(parse_api_key(given, kind="jsm")) == given


@pytest.mark.parametrize(
    "given",
    [
        "ATATT3xFfGF0abc",
        "ops@example.com",
        "ops@example.com:",
        ":token",
        "opsexample.com:token",
        "@example.com:token",
        "ops@:token",
        "a@b@c:token",
    ],
)
def test_jsm_credentials_without_that_shape_are_refused(given: str) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_api_key(given, kind="jsm")
    assert refused.value.message == (
        f"{FIELD}: must be <email>:<API token> of an Atlassian account for a JSM site"
        " (custom_url on atlassian.net)"
    )


@pytest.mark.parametrize(
    ("region", "custom_url", "site"),
    [
        ("custom", "https://acme.atlassian.net", "https://acme.atlassian.net"),
        ("custom", "https://ACME.atlassian.net/", "https://acme.atlassian.net"),
        ("custom", "https://acme.atlassian.net:443", "https://acme.atlassian.net"),
        ("custom", "https://acme.atlassian.net:8443", "https://acme.atlassian.net:8443"),
        ("custom", "https://acme.atlassian.net/proxy", None),  # a path: a proxy, not a site
        ("custom", "https://a.b.atlassian.net", None),
        ("custom", "https://atlassian.net", None),
        ("custom", "https://acme.atlassian.net.evil.example", None),
        ("custom", "https://opsgenie-proxy.example.com", None),
        ("custom", None, None),
        ("us", "https://acme.atlassian.net", None),  # only custom has a URL that counts
        ("eu", None, None),
    ],
)
def test_a_jsm_site_is_a_custom_url_on_atlassian_net(
    region: str, custom_url: str | None, site: str | None
) -> None:
    assert jsm_site(region, custom_url) == site
    assert key_kind(region, custom_url) == ("jsm" if site else "opsgenie")


def test_the_field_named_in_errors_can_be_chosen() -> None:
    with pytest.raises(PayloadError) as refused:
        parse_api_key("é", field="data.attributes.jsm_credentials")
    assert refused.value.field == "data.attributes.jsm_credentials"


def test_every_accepted_key_fits_an_http_header() -> None:
    secret = parse_api_key(GENIE_KEY)
    request = httpx.Request(
        "GET", "https://x.example", headers={"Authorization": f"GenieKey {secret}"}
    )
    assert request.headers["authorization"] == f"GenieKey {GENIE_KEY}"
