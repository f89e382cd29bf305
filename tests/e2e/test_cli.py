"""``deliveries``, ``delivery`` and ``retry`` against a running relay, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import sample
from tests.e2e.conftest import RELAY, RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

CREATE = sample("Create")
REF = f"opsgenie-{CREATE['alert']['alertId']}"
KEYS = {"RELAY_API_KEY": "cli-api-key-0123", "RELAY_APP_KEY": "cli-app-key-0123"}


def cli(relay: RelayProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the command the way an operator would: only the URL and the keys in the env."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    environ.update({"RELAY_URL": relay.url, **KEYS, **env})
    return subprocess.run(
        [str(RELAY), *args], env=environ, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def started(relay: Callable[..., RelayProcess]) -> RelayProcess:
    return relay(**KEYS, RELAY_READONLY_APP_KEY="cli-read-key-0123")


def failed_list(relay: RelayProcess) -> list[str]:
    result = cli(relay, "deliveries", "--status", "failed", "--json")
    return [d["reference_id"] for d in json.loads(result.stdout)]


def test_list_show_retry_a_failed_delivery(started: RelayProcess, fake_dx: FakeDX) -> None:
    fake_dx.reject(REF, "metadata_invalid")
    assert started.post(CREATE).status_code == 202
    wait_for(lambda: failed_list(started) == [REF], message="failed delivery listed")

    table = cli(started, "deliveries", "--status", "failed")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:2] == ["REFERENCE_ID", "STATUS"]
    assert REF in table.stdout
    assert "metadata_invalid" in table.stdout

    shown = cli(started, "delivery", REF)
    assert shown.returncode == 0
    assert "status:            failed" in shown.stdout
    assert "Create" in shown.stdout  # the raw event timeline
    as_json = json.loads(cli(started, "delivery", REF, "--json").stdout)
    assert as_json["last_error_code"] == "metadata_invalid"

    fake_dx.reset()
    retried = cli(started, "retry", REF)
    assert retried.returncode == 0, retried.stderr
    assert f"{REF}: pending" in retried.stdout
    wait_for(lambda: fake_dx.incident(REF) is not None, message="delivered after retry")
    again = cli(started, "retry", REF)
    assert again.returncode == 1
    assert "Nothing to retry" in again.stderr


def test_retry_all_failed(started: RelayProcess, fake_dx: FakeDX) -> None:
    fake_dx.reject(REF)
    started.post(CREATE)
    wait_for(lambda: failed_list(started) == [REF], message="failed delivery listed")
    fake_dx.reset()
    result = cli(started, "retry", "--all-failed", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"retried": 1}
    wait_for(lambda: fake_dx.incident(REF) is not None, message="delivered after retry")


def test_not_found_and_config_errors(started: RelayProcess) -> None:
    missing = cli(started, "delivery", "opsgenie-missing")
    assert missing.returncode == 1
    assert "Not Found" in missing.stderr
    assert cli(started, "retry", "opsgenie-missing").returncode == 1
    wrong = cli(started, "deliveries", RELAY_APP_KEY="wrong")
    assert wrong.returncode == 2
    assert "refused the admin keys" in wrong.stderr
    readonly = cli(started, "retry", "--all-failed", RELAY_APP_KEY="cli-read-key-0123")
    assert readonly.returncode == 2
    assert cli(started, "deliveries", RELAY_URL="http://127.0.0.1:1").returncode == 1
    assert cli(started, "deliveries").stdout.strip() == "no deliveries"
