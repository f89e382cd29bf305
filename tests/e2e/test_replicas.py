"""Several relay replicas on one PostgreSQL database: no single point of failure (issue 18).

Three real ``opsgenie-dx-relay serve`` processes share a fresh database; a load balancer
(``tests/e2e/balancer.py``) spreads webhooks over them and tries another replica when one
drops the connection. The fake DX on a real socket sees every request of every replica, so
it is where the promises of a shared deployment are checked: DX ends with each alert's final
state, no reference was ever in flight twice at once (``FakeDX.overlaps``), and the rate
limit holds in total. Waits are ``wait_for`` with generous deadlines, never upper bounds on
time; every number asserted is a count.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import signal
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest

from service.opsgenie import parse_event
from service.rules_file import load_rules
from service.translate import Account, AlertState, fold, render
from tests.e2e.balancer import Balancer
from tests.e2e.conftest import Replicas
from tests.e2e.test_faults import COMPARED, event_body, workload
from tests.fakes.dx import FakeDX, most_within
from tests.fakes.flapping import Flapping, FlapProfile
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

#: Short enough that a SIGKILLed replica's claims pass on within the test, long enough
#: that a live replica renews well before it ends; the DX timeout stays far below it, so
#: a delivery is answered or abandoned while its lease holds.
LEASE = "8s"
REPLICA_ENV = {
    "RELAY_DELIVERY_LEASE": LEASE,
    "RELAY_DX_TIMEOUT": "3s",
    "RELAY_DX_RATE_LIMIT": "500",
    "RELAY_RETRY_MAX_BACKOFF": "1s",
    "RELAY_SHUTDOWN_DEADLINE": "5s",
}
#: Stalls stay below the DX timeout: a request the relay gave up on while DX still holds it
#: would be sent again, an overlap no replica caused.
FLAPS = FlapProfile(period=0.5, burst=(3, 12), limited=(1, 2), retry_after=1.0, stall=1.5)


def final_upserts(acknowledged: list[bytes]) -> dict[str, dict[str, Any]]:
    """The upsert that makes DX hold each alert's final state: the pure fold and render of
    every event a replica answered 2xx, in any order (the fold orders by ``updatedAt``)."""
    rules = load_rules(None)
    states: dict[str, AlertState] = {}
    for body in acknowledged:
        event = parse_event(body, received_ns=0)
        states[event.alert_id] = fold(states.get(event.alert_id), event)
    account = Account(web_url="https://app.opsgenie.com")
    upserts = [render(state, rules, account) for state in states.values()]
    return {upsert["reference_id"]: dict(upsert) for upsert in upserts}


def assert_dx_holds_final_states(fake_dx: FakeDX, acknowledged: list[bytes]) -> None:
    """Wait until DX holds every final state, then check each reference's last upsert is
    exactly the final one: a stale delivery landing after it would show here."""
    expected = final_upserts(acknowledged)

    def holds() -> bool:
        for reference, want in expected.items():
            incident = fake_dx.incident(reference)
            if incident is None or any(incident[key] != want.get(key) for key in COMPARED):
                return False
        return True

    wait_for(holds, timeout=120, interval=0.2, message="DX holds every alert's final state")
    for reference, want in expected.items():
        assert fake_dx.upserts(reference)[-1] == want, reference
    assert set(fake_dx.incidents) == set(expected)


def stored_dedup_keys(url: str) -> set[str]:
    async def read() -> set[str]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return {row["dedup_key"] for row in await conn.fetch("SELECT dedup_key FROM events")}
        finally:
            await conn.close()

    return asyncio.run(read())


def assert_nothing_acknowledged_is_lost(url: str, acknowledged: list[bytes]) -> None:
    """Every body a replica answered 2xx is an event in the database (the relay keys events
    by the body's sha256), whichever replica took it and whatever happened to it after."""
    missing = {hashlib.sha256(body).hexdigest() for body in acknowledged} - stored_dedup_keys(url)
    assert missing == set()


def endless_updates(rng: random.Random, alerts: int) -> Iterator[bytes]:
    """Create each alert, then change them all in turns for as long as the test posts."""
    for version in itertools.count():
        for alert in range(alerts):
            action = "Create" if version == 0 else rng.choice(("Acknowledge", "AddNote"))
            yield event_body(alert, version, action=action)


def test_sigkilled_replicas_while_dx_flaps_lose_nothing_and_never_overlap(
    replicas: Callable[..., Replicas], fake_dx: FakeDX, postgres_url: str
) -> None:
    """480 webhooks over 60 alerts through the balancer; DX flaps all along (503 bursts,
    429 + Retry-After, stalls); a random replica is SIGKILLed three times and restarted.

    Whatever got a 2xx must be stored and must reach DX as the fold of all of it says, and
    a killed replica's references must pass on only after its deliveries ended at DX.
    """
    rng = random.Random(18)
    bodies = workload(rng, alerts=60, per_alert=8)
    group = replicas(3, **REPLICA_ENV).start()
    balancer = Balancer(group.urls, iter(bodies))
    with Flapping(fake_dx, random.Random(2), FLAPS) as flapping:
        balancer.start()
        for kill in range(3):
            target = min(balancer.count + rng.randint(60, 110), len(bodies) - 20)
            wait_for(
                lambda target=target: balancer.count >= target,
                timeout=120,
                message=f"{target} acknowledged webhooks before kill {kill + 1}",
            )
            victim = group[rng.randrange(3)]
            victim.kill()
            victim.launch().wait_ready(timeout=60)
        balancer.join(timeout=150)
        # DX keeps flapping while the backlog drains, for as long as the turns below take.
        wait_for(lambda: sum(flapping.turns.values()) >= 12, timeout=30, message="12 turns")

    assert balancer.refused == []
    assert balancer.given_up == []
    assert len(balancer.acknowledged) == len(bodies)
    assert balancer.connection_errors > 0  # the kills hit the load
    assert all(balancer.by_replica[url] > 0 for url in group.urls())
    assert {"503", "429", "stall"} <= set(flapping.turns)  # seed 2: all in its first 4 turns
    assert_nothing_acknowledged_is_lost(postgres_url, balancer.acknowledged)
    assert_dx_holds_final_states(fake_dx, balancer.acknowledged)
    assert fake_dx.status_counts[503] > 0
    assert fake_dx.status_counts[429] > 0
    assert fake_dx.overlaps == []


def test_a_rolling_restart_under_load_answers_every_webhook(
    replicas: Callable[..., Replicas], fake_dx: FakeDX, postgres_url: str
) -> None:
    """SIGTERM each replica in turn, wait for it to exit, start it again, then the next,
    while webhooks keep coming: the balancer always finds a replica that says 2xx."""
    group = replicas(3, **REPLICA_ENV).start()
    balancer = Balancer(group.urls, endless_updates(random.Random(7), alerts=40)).start()
    for n in range(3):
        mark = balancer.count + 30
        wait_for(lambda mark=mark: balancer.count >= mark, timeout=60, message="load flows")
        # uvicorn ends a graceful shutdown by raising the signal it caught again.
        assert group[n].stop() in (0, -signal.SIGTERM), group[n].logs()
        group[n].launch().wait_ready(timeout=60)
    mark = balancer.count + 30
    wait_for(lambda: balancer.count >= mark, timeout=60, message="load after the restarts")
    balancer.finish()
    balancer.join(timeout=60)

    assert balancer.refused == []
    assert balancer.given_up == []
    assert all(balancer.by_replica[url] > 0 for url in group.urls())
    assert_nothing_acknowledged_is_lost(postgres_url, balancer.acknowledged)
    assert_dx_holds_final_states(fake_dx, balancer.acknowledged)
    assert fake_dx.overlaps == []
    for process in group.processes:
        assert "Traceback" not in process.logs()


def test_the_dx_rate_limit_holds_in_total_across_three_replicas(
    replicas: Callable[..., Replicas], fake_dx: FakeDX
) -> None:
    """150 new alerts at once through three replicas, at ``RELAY_DX_RATE_LIMIT=10``.

    The limit is one token bucket shared in the database: ``rate`` tokens a second, a
    burst of ``max(1, rate)`` (``service.dx_gate``). Tokens taken in any span of W seconds
    are then at most ``burst + rate * W``. DX sees each request a little after its token
    was taken; allowing each up to ``LATE`` seconds, the arrivals in any window of W seconds
    are at most ``burst + rate * (W + LATE)``. Three per-process buckets would show about
    three times the rate, far past that bound.
    """
    rate, alerts = 10, 150
    burst, late = max(1, rate), 2.0
    group = replicas(3, **{**REPLICA_ENV, "RELAY_DX_RATE_LIMIT": str(rate)}).start()
    balancer = Balancer(group.urls, (event_body(a, 0, action="Create") for a in range(alerts)))
    balancer.start().join(timeout=60)
    assert balancer.refused == []
    assert len(balancer.acknowledged) == alerts
    wait_for(lambda: len(fake_dx.incidents) == alerts, timeout=90, message="every alert in DX")

    arrivals = fake_dx.arrivals()
    assert len(arrivals) == alerts  # DX never refused, so one request per alert
    span = arrivals[-1] - arrivals[0]
    assert len(arrivals) <= burst + rate * (span + late)
    window = 5.0
    assert most_within(arrivals, window) <= burst + rate * (window + late)
