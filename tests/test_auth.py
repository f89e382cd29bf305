"""Webhook tokens (Bearer or Basic) and Datadog-style admin keys."""

from __future__ import annotations

import base64
import hmac

import pytest
from starlette.datastructures import Secret

from service.auth import Access, admin_access, presented_token, webhook_token_ok

TOKEN = "hook-token-0123456789"
TOKENS = (Secret(TOKEN),)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---- presented_token ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer {TOKEN}", TOKEN),
        (f"BEARER   {TOKEN}  ", TOKEN),
        (basic("opsgenie", TOKEN), TOKEN),
        (basic("", TOKEN), TOKEN),  # any user, even none
        (basic("someone-else", TOKEN), TOKEN),
        (basic("user", "pass:with:colons"), "pass:with:colons"),
        (basic("usér", "pässword"), "pässword"),
        ("basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode(), TOKEN),
    ],
)
def test_presented_token(authorization: str, token: str) -> None:
    assert presented_token(authorization) == token


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "   ",
        "Bearer",
        "Bearer ",
        TOKEN,  # no scheme
        f"Token {TOKEN}",
        f"GenieKey {TOKEN}",
        f"Digest {TOKEN}",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic dXNlcjpwYXNz=extra",  # padding in the middle
        "Basic " + base64.b64encode(TOKEN.encode()).decode(),  # no colon
        basic("user", ""),  # empty password
        "Basic " + base64.b64encode(b"user:\xff\xfe").decode(),  # not UTF-8
    ],
)
def test_no_presented_token(authorization: str | None) -> None:
    assert presented_token(authorization) is None


# ---- webhook_token_ok ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (basic("opsgenie", TOKEN), True),
        (basic("anyone", TOKEN), True),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Bearer {TOKEN.upper()}", False),
        (basic(TOKEN, "wrong"), False),  # the token as user name is not enough
        (f"Token {TOKEN}", False),
        ("Basic %%%", False),
        ("", False),
        (None, False),
    ],
)
def test_webhook_token(authorization: str | None, ok: bool) -> None:
    assert webhook_token_ok(authorization, TOKENS) is ok


def test_several_tokens_allow_rotation() -> None:
    tokens = (Secret("old-token"), Secret("new-token"))
    assert webhook_token_ok("Bearer old-token", tokens)
    assert webhook_token_ok("Bearer new-token", tokens)
    assert webhook_token_ok(basic("u", "new-token"), tokens)
    assert not webhook_token_ok("Bearer other-token", tokens)
    assert not webhook_token_ok("Bearer old-token,new-token", tokens)


@pytest.mark.parametrize("presented", ["first", "middle", "last", "none-of-them"])
def test_every_configured_token_is_compared_whichever_matches(
    presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit: the time taken must not say which token matched, or whether one did."""
    tokens = (Secret("first"), Secret("middle"), Secret("last"))
    compared: list[bytes] = []
    compare_digest = hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append(expected)
        return compare_digest(given, expected)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert webhook_token_ok(f"Bearer {presented}", tokens) is (presented != "none-of-them")
    assert compared == [b"first", b"middle", b"last"]


@pytest.mark.parametrize(
    "authorization", [f"Bearer {TOKEN}", basic("u", TOKEN), "Bearer ", "", None]
)
def test_without_configured_tokens_everything_is_refused(authorization: str | None) -> None:
    assert webhook_token_ok(authorization, ()) is False


# ---- admin_access --------------------------------------------------------------------------

API, APP, RO = "api-key-1", "app-key-2", "ro-key-3"


@pytest.mark.parametrize(
    ("api_key", "app_key", "expected"),
    [
        (API, APP, Access.FULL),
        (API, RO, Access.READ),
        (API, "wrong", Access.NONE),
        ("wrong", APP, Access.NONE),
        ("wrong", RO, Access.NONE),
        (APP, API, Access.NONE),  # swapped headers
        (API, None, Access.NONE),
        (None, APP, Access.NONE),
        ("", APP, Access.NONE),
        (API, "", Access.NONE),
        (None, None, Access.NONE),
    ],
)
def test_admin_access_with_every_key_configured(
    api_key: str | None, app_key: str | None, expected: Access
) -> None:
    access = admin_access(
        api_key,
        app_key,
        expected_api_key=Secret(API),
        expected_app_key=Secret(APP),
        readonly_app_key=Secret(RO),
    )
    assert access is expected


@pytest.mark.parametrize(
    ("expected_api", "expected_app", "readonly", "app_key", "expected"),
    [
        # No API key configured: the admin API refuses all.
        (None, APP, RO, APP, Access.NONE),
        (None, APP, RO, RO, Access.NONE),
        # No full app key: only the read-only key works.
        (API, None, RO, APP, Access.NONE),
        (API, None, RO, RO, Access.READ),
        # No read-only key: only full access.
        (API, APP, None, APP, Access.FULL),
        (API, APP, None, RO, Access.NONE),
        # Neither app key configured.
        (API, None, None, APP, Access.NONE),
        # The same key configured as both: full wins.
        (API, APP, APP, APP, Access.FULL),
    ],
)
def test_admin_access_with_partial_configuration(
    expected_api: str | None,
    expected_app: str | None,
    readonly: str | None,
    app_key: str,
    expected: Access,
) -> None:
    def secret(value: str | None) -> Secret | None:
        return None if value is None else Secret(value)

    access = admin_access(
        API,
        app_key,
        expected_api_key=secret(expected_api),
        expected_app_key=secret(expected_app),
        readonly_app_key=secret(readonly),
    )
    assert access is expected


def test_admin_keys_with_non_ascii_characters_compare_safely() -> None:
    access = admin_access(
        "ключ",
        "clé",
        expected_api_key=Secret("ключ"),
        expected_app_key=Secret("clé"),
        readonly_app_key=None,
    )
    assert access is Access.FULL
    assert webhook_token_ok("Bearer jeton-é", (Secret("jeton-é"),))
