"""Whole-process fixtures: ``opsgenie-dx-relay serve`` as the README runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DX_TOKEN, WEBHOOK_TOKEN
from tests.fakes.opsgenie import FakeOpsgenie
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread, free_port
from tests.fakes.tls import TLSFiles, https_server, https_url, self_signed
from tests.store_backends import create_database, database_for, database_url, require_postgres

RELAY = Path(sys.executable).with_name("opsgenie-dx-relay")

pytestmark = pytest.mark.e2e


class RelayProcess:
    """One relay subprocess on a real SQLite file; restartable on the same database."""

    def __init__(
        self, workdir: Path, env: dict[str, str], command: Sequence[str] = (str(RELAY), "serve")
    ) -> None:
        self.workdir = workdir
        self.env = env
        self.command = list(command)
        self.port = int(env["RELAY_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "relay.log"
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def start(self) -> RelayProcess:
        return self.launch().wait_ready()

    def launch(self) -> RelayProcess:
        """Start the process without waiting: several replicas start together this way."""
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                self.command, cwd=self.workdir, env=self.env, stdout=log, stderr=log
            )
        return self

    def wait_ready(self, timeout: float = 20.0) -> RelayProcess:
        wait_for(self._ready, timeout=timeout, message=f"relay ready at {self.url}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"relay exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def post(self, body: Any, *, token: str = WEBHOOK_TOKEN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        if isinstance(body, bytes | str):
            return self.client.post("/webhooks/opsgenie", content=body, headers=headers, **kwargs)
        return self.client.post("/webhooks/opsgenie", json=body, headers=headers, **kwargs)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a node dying."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metric(self, name: str, **labels: str) -> float | None:
        text = self.client.get("/metrics").text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return None


@pytest.fixture
def relay_env(tmp_path: Path, dx_server: UvicornThread) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        RELAY_PORT=str(free_port()),
        RELAY_DATABASE_URL=f"sqlite:///{tmp_path / 'relay.db'}",
        RELAY_DX_BASE_URL=dx_server.url,
        RELAY_DX_TOKEN=DX_TOKEN,
        RELAY_WEBHOOK_TOKENS=f"{WEBHOOK_TOKEN},second-webhook-token",
        RELAY_DX_RATE_LIMIT="200",
        RELAY_RETRY_MAX_BACKOFF="1s",
        RELAY_SHUTDOWN_DEADLINE="5s",
        RELAY_LOG_FORMAT="json",
    )
    return env


@pytest.fixture
def relay(tmp_path: Path, relay_env: dict[str, str]) -> Iterator[Callable[..., RelayProcess]]:
    """Start relays (same database unless overridden); all are stopped after the test."""
    started: list[RelayProcess] = []

    def start(**overrides: str) -> RelayProcess:
        process = RelayProcess(tmp_path, {**relay_env, **overrides}).start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc is not None and process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=10)
        process.client.close()


#: Every replica seals stored keys with it (PostgreSQL requires one); nothing secret.
SECRET_KEY = "e2e-replicas-secret-key-0123456789"


@pytest.fixture
def postgres_url(tmp_path: Path) -> str:
    """A fresh PostgreSQL database of this test's own, dropped when the session ends.
    Without a server the test is skipped with a line saying how to run it, and fails
    under ``CI=true``, as the store tests do (``tests/store_backends.py``)."""
    require_postgres()
    name = database_for(tmp_path)
    asyncio.run(create_database(name))
    return database_url(name)


class Replicas:
    """Relay processes sharing one PostgreSQL database, as the pods of a Deployment: each
    on its own port, logging to its own directory, killed, stopped and restarted alone."""

    def __init__(self, tmp_path: Path, env: dict[str, str], count: int) -> None:
        self.processes: list[RelayProcess] = []
        for n in range(count):
            workdir = tmp_path / f"replica-{n}"
            workdir.mkdir()
            self.processes.append(RelayProcess(workdir, {**env, "RELAY_PORT": str(free_port())}))

    def start(self, timeout: float = 60.0) -> Replicas:
        """Start all at once (their migrations meet on one empty database), then wait."""
        for process in self.processes:
            process.launch()
        for process in self.processes:
            process.wait_ready(timeout)
        return self

    def urls(self) -> list[str]:
        return [process.url for process in self.processes]

    def __getitem__(self, n: int) -> RelayProcess:
        return self.processes[n]

    def logs(self) -> str:
        return "\n".join(
            f"--- replica {n} ---\n{process.logs()}" for n, process in enumerate(self.processes)
        )


@pytest.fixture
def replicas(
    tmp_path: Path, relay_env: dict[str, str], postgres_url: str
) -> Iterator[Callable[..., Replicas]]:
    """``replicas(count, **env)``: that many relays on this test's PostgreSQL database, not yet
    started; every one still running is killed after the test."""
    made: list[Replicas] = []

    def make(count: int = 3, **overrides: str) -> Replicas:
        env = {
            **relay_env,
            "RELAY_DATABASE_URL": postgres_url,
            "RELAY_SECRET_KEY": SECRET_KEY,
            **overrides,
        }
        group = Replicas(tmp_path, env, count)
        made.append(group)
        return group

    yield make
    for group in made:
        for process in group.processes:
            if process.proc is not None and process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(timeout=10)
            process.client.close()


API_KEY, APP_KEY = "dd-api-key-e2e-0123", "dd-app-key-e2e-0123"
GENIE_KEY = "genie-key-e2e"


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return self_signed(tmp_path)


@pytest.fixture
def fake_opsgenie() -> FakeOpsgenie:
    return FakeOpsgenie(api_key=GENIE_KEY, account="acme")


@pytest.fixture
def opsgenie_server(fake_opsgenie: FakeOpsgenie, tls: TLSFiles) -> Iterator[UvicornThread]:
    with https_server(fake_opsgenie.app, tls) as server:
        yield server


def relay_with_account(
    relay: Callable[..., RelayProcess], tls: TLSFiles, opsgenie: UvicornThread, **env: str
) -> RelayProcess:
    """A relay with admin keys, trusting the fake Opsgenie's certificate, and the service
    object ``payments-og`` whose account is that fake (on 127.0.0.1, hence the setting)."""
    process = relay(
        RELAY_API_KEY=API_KEY,
        RELAY_APP_KEY=APP_KEY,
        SSL_CERT_FILE=str(tls.cert),
        RELAY_ALLOW_PRIVATE_UPSTREAMS="true",
        **env,
    )
    response = process.client.post(
        "/api/v2/integration/opsgenie/services",
        headers={"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY},
        json={
            "data": {
                "type": "opsgenie-service",
                "attributes": {
                    "name": "payments-og",
                    "region": "custom",
                    "custom_url": https_url(opsgenie),
                    "opsgenie_api_key": GENIE_KEY,
                },
            }
        },
    )
    assert response.status_code == 201, response.text
    return process
