"""The relay as the README runs it, against the fake DX on a real socket."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import sample
from tests.e2e.conftest import RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

CREATE = sample("Create")
REF = "opsgenie-" + CREATE["alert"]["alertId"]


def close_of(create: dict) -> dict:
    close = {**create, "action": "Close"}
    close["alert"] = {**create["alert"], "updatedAt": create["alert"]["updatedAt"] + 5_000_000_000}
    return close


def test_create_then_close_gives_one_resolved_incident(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    process = relay()
    assert process.post(CREATE).status_code == 202
    assert process.post(close_of(CREATE)).status_code == 202
    incident = wait_for(
        lambda: (i := fake_dx.incident(REF)) and i.get("resolved_at") and i,
        message="resolved incident in DX",
    )
    assert incident["name"] == "asdf"
    assert incident["priority"] == "P3"
    assert incident["started_at"] == "2020-06-30T00:06:04.295Z"
    assert incident["resolved_at"] == "2020-06-30T00:06:09.636Z"
    assert list(fake_dx.incidents) == [REF]
