"""Tokens and keys: one Secret (the chart's or the user's), wired with ``secretKeyRef``."""

from __future__ import annotations

import base64

import helm_python as helm
import pytest

from tests.chart.helpers import ALL_VALUES, FULLNAME, Rendered, load_values, render

SECRET_ENV = (
    "RELAY_DX_TOKEN",
    "RELAY_WEBHOOK_TOKENS",
    "RELAY_API_KEY",
    "RELAY_APP_KEY",
    "RELAY_READONLY_APP_KEY",
    "RELAY_SECRET_KEY",
)


def _decoded(result: Rendered) -> dict[str, str]:
    data = result.one("Secret").get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


@pytest.mark.parametrize("name", ALL_VALUES)
def test_every_credential_comes_from_the_secret(rendered: dict[str, Rendered], name: str) -> None:
    existing = load_values(name).get("secrets", {}).get("existingSecret")
    env = rendered[name].env
    for variable in SECRET_ENV:
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == (existing or FULLNAME)
        assert ref["key"] == variable
        assert "value" not in env[variable]
    # Never a credential in plain text anywhere in the pod spec.
    assert not [e for e in env.values() if "TOKEN" in e["name"] and "value" in e]


def test_chart_secret_holds_the_values(rendered: dict[str, Rendered]) -> None:
    assert _decoded(rendered["all-values.yaml"]) == {
        "RELAY_DX_TOKEN": "ci-dx-token",
        "RELAY_WEBHOOK_TOKENS": "ci-webhook-token-new,ci-webhook-token-old",
        "RELAY_API_KEY": "ci-api-key-0123456789",
        "RELAY_APP_KEY": "ci-app-key-0123456789",
        "RELAY_READONLY_APP_KEY": "ci-readonly-app-key",
        "RELAY_SECRET_KEY": "ci-secret-key-0123456789",
    }
    assert rendered["all-values.yaml"].one("Secret")["type"] == "Opaque"


def test_empty_values_leave_keys_out_and_refs_optional(rendered: dict[str, Rendered]) -> None:
    result = rendered["default"]
    assert _decoded(result) == {}
    for variable in SECRET_ENV:
        assert result.env[variable]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_only_given_values_are_stored(chart: helm.Chart) -> None:
    result = render(chart, {"secrets": {"webhookTokens": ["only-one-token-0123"]}})
    assert _decoded(result) == {"RELAY_WEBHOOK_TOKENS": "only-one-token-0123"}


def test_existing_secret_replaces_the_chart_secret(rendered: dict[str, Rendered]) -> None:
    result = rendered["existing-secret-values.yaml"]
    assert result.maybe("Secret") is None
    for variable in SECRET_ENV:
        ref = result.env[variable]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "relay-credentials", "key": variable, "optional": True}


def test_existing_secret_ignores_inline_values(chart: helm.Chart) -> None:
    result = render(chart, {"secrets": {"existingSecret": "mine", "dxToken": "ignored"}})
    assert result.maybe("Secret") is None
    assert result.env["RELAY_DX_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mine"


def test_postgresql_mode_requires_the_secret_key(rendered: dict[str, Rendered]) -> None:
    """Replicas must share RELAY_SECRET_KEY, so the pod does not start without it."""
    env = rendered["postgresql-values.yaml"].env
    assert env["RELAY_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is False
    assert env["RELAY_DX_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
