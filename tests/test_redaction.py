"""Secrets and credential header values taken out of a finished line (the Redactor alone;
tests/test_logs.py checks it on every line the configured handler writes)."""

from __future__ import annotations

import pytest
from starlette.datastructures import Secret

from service.redaction import REDACTED, Redactor


def test_unset_and_empty_secrets_redact_nothing() -> None:
    redactor = Redactor([None, Secret(""), None])
    assert redactor.redact("nothing to hide") == "nothing to hide"


def test_the_longest_secret_wins_when_secrets_overlap() -> None:
    redactor = Redactor([Secret("abc"), Secret("abcdef")])
    assert redactor.redact("x abcdef y abc") == f"x {REDACTED} y {REDACTED}"
    assert "def" not in redactor.redact("abcdef")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer opaque-value-1",
        "AUTHORIZATION: Bearer opaque-value-1",
        "authorization=Bearer opaque-value-1",
        "headers {'Authorization': 'Basic b3BhcXVlLXZhbHVlLTE='}",
        '{"authorization": "Bearer opaque-value-1"}',
        "Proxy-Authorization: Bearer opaque-value-1",
        "DD-API-KEY: opaque-value-1",
        "dd-api-key=opaque-value-1",
        "{'DD-APPLICATION-KEY': 'opaque-value-1'}",
        "Authorization: GenieKey opaque-value-1",
        "GenieKey opaque-value-1",
        "geniekey: opaque-value-1",
        # Unicode case-insensitive matching takes these for "i" and "k".
        "Gen\u0131eKey opaque-value-1",
        "GEN\u0130EKEY opaque-value-1",
        "dd-api-\u212aey: opaque-value-1",
        # A header name inside a value that does not start a header of its own.
        "DD-API-KEY: dd-api-key-opaque-value-1",
    ],
)
def test_redacts_credential_header_values_it_was_not_told_about(text: str) -> None:
    redacted = Redactor([]).redact(text)
    assert "opaque-value-1" not in redacted
    assert "b3BhcXVlLXZhbHVlLTE" not in redacted
    assert REDACTED in redacted


def test_header_names_stay_readable() -> None:
    redacted = Redactor([]).redact("DD-API-KEY: opaque-value-1 then more")
    assert redacted.startswith(f"DD-API-KEY: {REDACTED}")


def test_header_redaction_is_idempotent() -> None:
    redactor = Redactor([])
    once = redactor.redact("Authorization: Bearer opaque-value-1 then the rest")
    assert once == f"Authorization: {REDACTED} then the rest"
    assert redactor.redact(once) == once
    assert redactor.redact(redactor.redact("{'Authorization': 'Bearer x'}")) == (
        f"{{'Authorization': '{REDACTED}'}}"
    )
