"""``/openapi.json`` is a contract (issue 22): schemathesis holds a live relay to it.

A real uvicorn process on a real SQLite file, no DX (deliveries stay pending) and no
egress (``tests.fakes.offline_relay``): the fuzzer creates service objects pointing at
hosts of its choosing. Every check, every phase (examples, coverage, fuzzing, and the
stateful runs the document's links make possible), a fixed seed and a bounded number of
examples, so a failure reproduces; any finding fails the test with schemathesis' report,
which ends in a ``curl`` line to replay it. The README shows the same command with more
examples and a random seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RelayProcess
from tests.fakes.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
WEBHOOK_TOKEN = "fuzz-webhook-token-0123456789"
API_KEY, APP_KEY = "fuzz-dd-api-key-0123", "fuzz-dd-app-key-0123"
#: Enough to reach every operation and its links, in about a minute on two cores.
MAX_EXAMPLES = 15
SEED = 22


@pytest.fixture
def live_relay(tmp_path: Path) -> Iterator[RelayProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        PYTHONPATH=str(ROOT),
        RELAY_PORT=str(free_port()),
        RELAY_DATABASE_URL=f"sqlite:///{tmp_path / 'relay.db'}",
        RELAY_WEBHOOK_TOKENS=WEBHOOK_TOKEN,
        RELAY_API_KEY=API_KEY,
        RELAY_APP_KEY=APP_KEY,
        # The fuzzer's requests are not what the admin rate limit is for.
        RELAY_ADMIN_RATE_LIMIT="1000000",
        RELAY_RECONCILE_INTERVAL="0",
        RELAY_LOG_FORMAT="json",
    )
    command = (sys.executable, "-m", "tests.fakes.offline_relay")
    relay = RelayProcess(tmp_path, env, command=command).start()
    yield relay
    relay.stop()
    relay.client.close()


def test_the_relay_keeps_the_contract_its_document_states(
    live_relay: RelayProcess, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "FUZZ_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "FUZZ_API_KEY": API_KEY,
        "FUZZ_APP_KEY": APP_KEY,
    }
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{live_relay.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        # One worker: a fixed seed then means one order of requests.
        "--workers",
        "1",
        "--no-color",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"{report}\n--- relay log ---\n{live_relay.logs()[-4000:]}"
    assert "16 selected / 16 total" in report
    assert "Stateful" in report
