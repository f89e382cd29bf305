"""Fixtures: settings and apps built per test, the fake DX, Opsgenie sample payloads."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.app import create_app
from service.mapping import Rules
from service.settings import Settings
from tests.fakes.dx import FakeDX
from tests.fakes.servers import UvicornThread

PAYLOADS = Path(__file__).resolve().parent / "payloads"
SAMPLES = PAYLOADS / "docs"
WEBHOOK_TOKEN = "hook-token-0123456789"
DX_TOKEN = "test-dx-token"


def sample(name: str) -> dict[str, Any]:
    """One of Opsgenie's documented example payloads, from ``tests/payloads/docs``."""
    document: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return document


def payload(name: str) -> dict[str, Any]:
    """One of our own captures of a quirk, from ``tests/payloads``."""
    document: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return document


@pytest.fixture(autouse=True, scope="session")
def postgres_databases() -> Iterator[None]:
    """Drops the PostgreSQL databases the store tests made, once the session ends."""
    yield
    from tests.store_backends import drop_databases  # it imports this module

    drop_databases()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may depend on the developer's RELAY_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base = Settings(
            database_path=tmp_path / "relay.db",
            webhook_tokens=(Secret(WEBHOOK_TOKEN),),
            dx_rate_limit=1000.0,
            retry_max_backoff_seconds=1.0,
            shutdown_deadline_seconds=2.0,
        )
        return replace(base, **overrides)

    return make


@pytest.fixture
def fake_dx() -> FakeDX:
    return FakeDX(token=DX_TOKEN)


@pytest.fixture
def dx_server(fake_dx: FakeDX) -> Iterator[UvicornThread]:
    with UvicornThread(fake_dx.app) as server:
        yield server


class PortalClient(TestClient):
    """A ``TestClient`` entered as a context manager, so its ``portal`` is always there."""

    portal: BlockingPortal


@pytest.fixture
def open_client() -> Iterator[Callable[[Starlette], PortalClient]]:
    """A client for an app with its lifespan running until the test ends; several apps'
    are stopped last first, as a relay reopened on one database needs."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(PortalClient(app, raise_server_exceptions=False))


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings],
    fake_dx: FakeDX,
    open_client: Callable[[Starlette], PortalClient],
) -> Callable[..., PortalClient]:
    """Build an app (lifespan running) whose DX is the in-process fake."""

    def make(*, deliver: bool = True, rules: Rules | None = None, **overrides: Any) -> PortalClient:
        if deliver:
            overrides.setdefault("dx_base_url", "http://dx.test")
            overrides.setdefault("dx_token", Secret(DX_TOKEN))
        app = create_app(
            make_settings(**overrides),
            rules=rules,
            transport=httpx.ASGITransport(app=fake_dx.app),
            registry=CollectorRegistry(),
        )
        return open_client(app)

    return make


def auth(token: str = WEBHOOK_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
