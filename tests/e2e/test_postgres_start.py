"""``serve`` on PostgreSQL as a Deployment starts it: a missing key refused in one line,
and several replicas started at once on a fresh database migrating it once and
delivering (the three-replica faults and load are ``test_replicas.py``'s)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest

from service.store.postgres.schema import MIGRATIONS
from tests.conftest import sample
from tests.e2e.conftest import RELAY, RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for
from tests.fakes.servers import free_port
from tests.store_backends import create_database, database_for, database_url, require_postgres

pytestmark = pytest.mark.e2e

SECRET_KEY = "e2e-relay-secret-key-0123"


def test_serve_on_postgresql_without_a_secret_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    environ.update(
        RELAY_DATABASE_URL="postgresql://relay:pg-pass-7@127.0.0.1:1/relay",
        RELAY_PORT=str(free_port()),
    )
    result = subprocess.run(
        [str(RELAY), "serve"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "opsgenie-dx-relay: configuration error: RELAY_SECRET_KEY: required with PostgreSQL"
    )
    assert len(result.stderr.splitlines()) == 1  # no traceback
    assert "pg-pass-7" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no key file, no database file


@pytest.fixture
def database(tmp_path: Path) -> str:
    require_postgres()
    name = database_for(tmp_path)
    asyncio.run(create_database(name))
    return database_url(name)


def test_replicas_started_together_migrate_once_and_deliver(
    tmp_path: Path, relay_env: dict[str, str], database: str, fake_dx: FakeDX
) -> None:
    replicas = []
    for n in range(3):
        workdir = tmp_path / f"replica-{n}"
        workdir.mkdir()
        env = {
            **relay_env,
            "RELAY_DATABASE_URL": database,
            "RELAY_SECRET_KEY": SECRET_KEY,
            "RELAY_PORT": str(free_port()),
        }
        replicas.append(RelayProcess(workdir, env))
    try:
        for replica in replicas:  # all spawned before any is ready: they race to migrate
            with replica.log_path.open("ab") as log:
                replica.proc = subprocess.Popen(
                    [str(RELAY), "serve"],
                    cwd=replica.workdir,
                    env=replica.env,
                    stdout=log,
                    stderr=log,
                )
        for replica in replicas:
            wait_for(replica._ready, timeout=30.0, message=f"replica ready at {replica.url}")

        async def versions() -> list[int]:
            conn = await asyncpg.connect(database)
            try:
                rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
                return [row["version"] for row in rows]
            finally:
                await conn.close()

        assert asyncio.run(versions()) == list(range(1, len(MIGRATIONS) + 1))
        create = sample("Create")
        for n, replica in enumerate(replicas):
            body = {**create, "alert": {**create["alert"], "alertId": f"start-{n}"}}
            assert replica.post(body).status_code == 202
        for n in range(3):
            wait_for(lambda n=n: fake_dx.incident(f"opsgenie-start-{n}"), timeout=20.0)
        assert all(len(fake_dx.upserts(f"opsgenie-start-{n}")) == 1 for n in range(3))
    finally:
        for replica in replicas:
            replica.stop()
            replica.client.close()
