"""``deliveries``, ``delivery`` and ``retry`` against a running relay, as an operator runs them."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import sample
from tests.e2e.conftest import RELAY, RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread, free_port
from tests.fakes.tls import TLSFiles, https_url

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


def cli_on_terminal(relay: RelayProcess, *args: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal, as in an operator's shell: (code, out, err)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    environ.update({"RELAY_URL": relay.url, **KEYS})
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [str(RELAY), *args],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(terminal)
    drawn = b""
    try:
        while chunk := os.read(controller, 4096):
            drawn += chunk
    except OSError:  # EIO: the terminal side is closed and drained
        pass
    finally:
        os.close(controller)
    return result.returncode, result.stdout, drawn.decode()


@pytest.fixture
def started(relay: Callable[..., RelayProcess]) -> RelayProcess:
    # The tests poll through the CLI; the rate limit has tests of its own.
    return relay(
        **KEYS, RELAY_READONLY_APP_KEY="cli-read-key-0123", RELAY_ADMIN_RATE_LIMIT="100000"
    )


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
    assert missing.stderr == "opsgenie-dx-relay: no delivery opsgenie-missing\n"
    assert cli(started, "retry", "opsgenie-missing").returncode == 1
    wrong_path = cli(started, "deliveries", "--url", f"{started.url}/api")
    assert wrong_path.returncode == 1
    assert wrong_path.stderr == (
        f"opsgenie-dx-relay: nothing at {started.url}/api/api/v1/deliveries (404):"
        " --url or RELAY_URL must be the relay's base URL, such as http://127.0.0.1:8080\n"
    )
    wrong = cli(started, "deliveries", RELAY_APP_KEY="wrong-app-key-0123")
    assert wrong.returncode == 2
    assert "refused the admin keys" in wrong.stderr
    readonly = cli(started, "retry", "--all-failed", RELAY_APP_KEY="cli-read-key-0123")
    assert readonly.returncode == 2
    assert cli(started, "deliveries", RELAY_URL="http://127.0.0.1:1").returncode == 1
    assert cli(started, "deliveries").stdout.strip() == "no deliveries"


def test_deliveries_says_when_limit_cut_the_list(started: RelayProcess) -> None:
    for n in range(3):
        assert started.post(
            {**CREATE, "alert": {**CREATE["alert"], "alertId": f"a-{n}"}}
        ).is_success
    cut = cli(started, "deliveries", "--limit", "2", "--json")
    assert cut.returncode == 0
    assert [d["reference_id"] for d in json.loads(cut.stdout)] == ["opsgenie-a-0", "opsgenie-a-1"]
    assert cut.stderr == (
        "opsgenie-dx-relay: more deliveries than --limit 2:"
        " use a larger --limit (it pages through them)\n"
    )
    whole = cli(started, "deliveries", "--limit", "3")
    assert (whole.returncode, whole.stderr) == (0, "")
    assert "opsgenie-a-2" in whole.stdout


def serve(database: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    environ.update(RELAY_DATABASE_URL=f"sqlite:///{database}", RELAY_PORT=str(free_port()))
    return subprocess.run(
        [str(RELAY), "serve"],
        cwd=workdir,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_serve_refuses_a_database_path_it_cannot_open(tmp_path: Path) -> None:
    """One line naming the variable and what is wrong; no traceback, exit 2."""
    directory = tmp_path / "dir.db"
    directory.mkdir()
    regular = tmp_path / "regular"
    regular.write_text("not a directory\n")
    for database, reason in [
        (directory, "is a directory"),
        (regular / "x.db", f"{regular} is not a directory"),
    ]:
        result = serve(database, tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr == (
            f"opsgenie-dx-relay: configuration error: RELAY_DATABASE_URL: cannot open"
            f" {database}: {reason}\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.db", "regular"]  # nothing made


@pytest.fixture
def fake_opsgenie() -> FakeOpsgenie:
    return FakeOpsgenie(api_key="genie-key-cli")


def test_backfill_recovers_missed_webhooks(
    relay: Callable[..., RelayProcess],
    tls: TLSFiles,
    fake_opsgenie: FakeOpsgenie,
    opsgenie_server: UvicornThread,
    fake_dx: FakeDX,
) -> None:
    # The fake Opsgenie listens on 127.0.0.1: a proxy inside the network, as far as the
    # relay can tell.
    started = relay(**KEYS, SSL_CERT_FILE=str(tls.cert), RELAY_ALLOW_PRIVATE_UPSTREAMS="true")
    headers = {"DD-API-KEY": KEYS["RELAY_API_KEY"], "DD-APPLICATION-KEY": KEYS["RELAY_APP_KEY"]}
    attributes = {
        "name": "payments",
        "region": "custom",
        "custom_url": https_url(opsgenie_server),
        "opsgenie_api_key": "genie-key-cli",
    }
    created = started.client.post(
        "/api/v2/integration/opsgenie/services",
        headers=headers,
        json={"data": {"type": "opsgenie-service", "attributes": attributes}},
    )
    assert created.status_code == 201, created.text
    fake_opsgenie.add(api_alert("missed-1", created_ms=int(time.time() * 1000) - 60_000))

    dry = cli(started, "backfill", "--service", "payments", "--since", "1d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would fold: 1 new" in dry.stdout
    assert "opsgenie-missed-1" in dry.stdout
    assert fake_dx.incident("opsgenie-missed-1") is None

    real = cli(started, "backfill", "--service", "payments", "--since", "1d", "--json")
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["counts"] == {"accepted": 1}
    assert "\r" not in real.stderr  # no progress line into a pipe or a log file
    wait_for(lambda: fake_dx.incident("opsgenie-missed-1"), message="backfilled incident")

    code, out, drawn = cli_on_terminal(
        started, "backfill", "--service", "payments", "--since", "1d"
    )
    assert code == 0, drawn
    assert "\rbackfill: page 1, 1 alerts (1 duplicate)" in drawn
    assert "folded: 1 duplicate" in out

    unknown = cli(started, "backfill", "--service", "nobody", "--since", "1d")
    assert unknown.returncode == 1
    assert "unknown service object" in unknown.stderr
