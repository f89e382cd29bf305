"""No configured secret ever reaches a log line, whatever path the relay takes.

One relay runs with every secret set and the most verbose logging (DEBUG, access log),
and the test drives every path that logs: webhook auth with right, wrong and missing
tokens (Bearer and Basic), bad input, DX permanent and retryable errors, DX rejecting the
relay's token, and admin calls with good, read-only and wrong keys. Then it reads the
relay's own log file. One secret holds a quote and a backslash, which a JSON log line
spells escaped, so redaction must catch that spelling as well.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import DX_TOKEN, WEBHOOK_TOKEN, sample
from tests.e2e.conftest import RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

SECOND_TOKEN = "second-hook-token-5f1c9e"
API_KEY = "log-api-key-8d2b6a4f"
APP_KEY = 'log-app"key\\7c3e9b'
READ_KEY = "log-read-key-1a9f3d"
SECRET_KEY = "log-secret-key-4e7a2c"
WRONG_DX_TOKEN = "wrong-dx-token-6b8d0e"
WRONG_WEBHOOK_TOKEN = "wrong-hook-token-2c4e6a"
OPSGENIE_KEY = "og-key-in-logs-9e1d7c"
SECRETS = (
    WEBHOOK_TOKEN,
    SECOND_TOKEN,
    DX_TOKEN,
    API_KEY,
    APP_KEY,
    READ_KEY,
    SECRET_KEY,
    WRONG_DX_TOKEN,
    WRONG_WEBHOOK_TOKEN,
    OPSGENIE_KEY,
)
FULL = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
READ = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": READ_KEY}
DELIVERIES = "/api/v1/deliveries"


def create(alert_id: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(sample("Create")))
    body["alert"]["alertId"] = alert_id
    return body


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"opsgenie:{token}".encode()).decode()}


def spellings(secret: str) -> set[str]:
    """The secret as written, as repr() writes it (in a container, a %r, a KeyError), each
    as JSON escapes it, and base64 as in a Basic header."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        json.dumps(repr(secret)[1:-1])[1:-1],
        base64.b64encode(f"opsgenie:{secret}".encode()).decode(),
    }


def test_no_secret_in_any_log_line(relay: Callable[..., RelayProcess], fake_dx: FakeDX) -> None:
    env = {
        "RELAY_WEBHOOK_TOKENS": f"{WEBHOOK_TOKEN},{SECOND_TOKEN}",
        "RELAY_API_KEY": API_KEY,
        "RELAY_APP_KEY": APP_KEY,
        "RELAY_READONLY_APP_KEY": READ_KEY,
        "RELAY_SECRET_KEY": SECRET_KEY,
        "RELAY_LOG_LEVEL": "DEBUG",
        "RELAY_ACCESS_LOG": "true",
    }
    first = relay(**env)
    client = first.client

    # Intake: right tokens (Bearer, Basic, the second token), wrong and missing ones, bad input.
    assert first.post(create("ok-1")).status_code == 202
    assert first.post(create("ok-2"), token=SECOND_TOKEN).status_code == 202
    hook = "/webhooks/opsgenie"
    assert client.post(hook, json=create("ok-3"), headers=basic(WEBHOOK_TOKEN)).status_code == 202
    assert first.post(create("no"), token=WRONG_WEBHOOK_TOKEN).status_code == 401
    assert (
        client.post(hook, json=create("no"), headers=basic(WRONG_WEBHOOK_TOKEN)).status_code == 401
    )
    assert client.post(hook, json=create("no")).status_code == 401
    assert first.post(b"{not json").status_code == 400
    assert first.post({"action": "Create", "alert": {}}).status_code == 400
    assert (
        client.post(hook + "/nobody", json=create("x"), headers=basic(WEBHOOK_TOKEN)).status_code
        == 404
    )

    # DX: a permanent rejection, retryable failures, a 429 and an ok:false answer. The fake's
    # switches answer whichever request comes next, so each is armed only once DX is idle.
    def status(ref: str) -> str:
        return str(
            client.get(f"{DELIVERIES}/opsgenie-{ref}", headers=READ).json()["data"]["status"]
        )

    def settled() -> bool:
        return first.metric("relay_outbox_pending") == 0

    wait_for(settled, message="the first deliveries done")
    fake_dx.reject("opsgenie-rejected", "invalid_arguments")
    first.post(create("rejected"))
    wait_for(lambda: status("rejected") == "failed", message="permanent rejection recorded")
    fake_dx.fail_next(2)
    first.post(create("flaky"))
    wait_for(lambda: fake_dx.incident("opsgenie-flaky") is not None, message="flaky delivered")
    fake_dx.rate_limit_next(1, retry_after=0.1)
    first.post(create("limited"))
    wait_for(lambda: fake_dx.incident("opsgenie-limited") is not None, message="after a 429")
    fake_dx.ok_false_next(1, "metadata_invalid")
    first.post(create("ok-false"))
    wait_for(lambda: status("ok-false") == "failed", message="ok:false recorded")

    # Admin: good, read-only and wrong keys on deliveries and service objects.
    assert client.get(DELIVERIES, headers=READ).status_code == 200
    assert client.get(f"{DELIVERIES}/opsgenie-ok-1", headers=FULL).status_code == 200
    assert client.post(f"{DELIVERIES}/opsgenie-rejected/retry", headers=READ).status_code == 403
    assert client.post(f"{DELIVERIES}/opsgenie-rejected/retry", headers=FULL).status_code == 200
    wrong = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": WRONG_WEBHOOK_TOKEN}
    assert client.get(DELIVERIES, headers=wrong).status_code == 403
    services = "/api/v2/integration/opsgenie/services"
    document = {
        "data": {
            "type": "opsgenie-service",
            "attributes": {"name": "logs", "region": "eu", "opsgenie_api_key": OPSGENIE_KEY},
        }
    }
    assert client.post(services, json=document, headers=FULL).status_code == 201
    assert client.post(services, json=document, headers=READ).status_code == 403
    assert client.get(services, headers={"DD-API-KEY": WRONG_DX_TOKEN}).status_code == 403
    first.stop()

    # DX refuses the relay's token: delivery pauses, loudly.
    second = relay(**env, RELAY_DX_TOKEN=WRONG_DX_TOKEN)
    second.post(create("unauthed"))
    wait_for(lambda: "not_authed" in second.logs(), message="not_authed logged")
    second.stop()

    logs = second.logs()
    lines = logs.splitlines()
    assert len(lines) > 30
    for secret in SECRETS:
        for spelling in spellings(secret):
            leaks = [line for line in lines if spelling in line]
            assert not leaks, f"{secret!r} ({spelling!r}) in {len(leaks)} lines: {leaks[0]}"

    # The lines the secrets were kept out of are the ones an operator needs.
    records = [json.loads(line) for line in lines if line.startswith("{")]
    messages = {r["message"] for r in records}
    assert {"webhook stored", "webhook refused", "DX attempt failed"} <= messages
    stored = next(r for r in records if r["message"] == "webhook stored")
    assert {"reference_id", "action", "outcome"} <= set(stored)
    attempt = next(r for r in records if r["message"] == "DX attempt failed")
    assert {"reference_id", "action", "outcome", "code"} <= set(attempt)
