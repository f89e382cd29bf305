"""Faults the relay must survive without losing an acknowledged alert (issue 7).

Every test runs the real ``opsgenie-dx-relay serve`` process on a real SQLite file and the
fake DX on a real socket, because the failures that matter (a SIGKILL between commit and
answer, a lock held by another process, a full disk) only exist there. Synchronisation is
``wait_for`` with generous deadlines and no upper bounds on time: a slow 2-core runner may be
slow, but must not be wrong.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.opsgenie import parse_event
from service.rules_file import load_rules
from service.translate import Account, AlertState, fold, render
from tests.conftest import WEBHOOK_TOKEN
from tests.e2e.conftest import RelayProcess
from tests.fakes.dx import FakeDX
from tests.fakes.polling import wait_for

pytestmark = pytest.mark.e2e

HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
BASE_NS = 1_700_000_000_000_000_000
COMPARED = ("name", "priority", "started_at", "resolved_at", "services", "metadata")


def event_body(alert: int, version: int, *, action: str, close: bool = False) -> bytes:
    """One webhook for alert ``alert`` at ``version``: every version changes what DX shows."""
    payload = {
        "action": "Close" if close else action,
        "alert": {
            "alertId": f"fault-{alert}",
            "message": f"alert {alert} v{version}",
            "tags": [f"service:svc-{alert % 7}", f"v{version % 3}"],
            "tinyId": str(alert),
            "entity": f"host-{alert}",
            "alias": f"alias-{alert}",
            "createdAt": BASE_NS // 10**6 + alert,
            "updatedAt": BASE_NS + alert * 10**12 + version * 10**9,
            "priority": f"P{1 + (alert + version) % 5}",
            "source": "fault-suite",
        },
        "integrationName": "Faults",
    }
    return json.dumps(payload).encode()


def workload(rng: random.Random, alerts: int, per_alert: int) -> list[bytes]:
    """Create, then Acknowledge/AddNote updates, and a Close for two alerts in three.

    Posted in a shuffled order: the relay folds by ``updatedAt``, so arrival order must not
    matter, and a shuffled load is what Opsgenie's retries produce anyway.
    """
    bodies = []
    for alert in range(alerts):
        closes = alert % 3 != 0
        for version in range(per_alert):
            if version == 0:
                action = "Create"
            else:
                action = rng.choice(("Acknowledge", "AddNote", "Acknowledge"))
            last = version == per_alert - 1
            bodies.append(event_body(alert, version, action=action, close=closes and last))
    rng.shuffle(bodies)
    return bodies


def expected_incidents(acknowledged: list[bytes]) -> dict[str, dict[str, Any]]:
    """What DX must hold: the pure fold/render of every event the relay answered 2xx."""
    rules = load_rules(None)
    states: dict[str, AlertState] = {}
    for body in acknowledged:
        event = parse_event(body, received_ns=0)
        states[event.alert_id] = fold(states.get(event.alert_id), event)
    account = Account(web_url="https://app.opsgenie.com")
    out: dict[str, dict[str, Any]] = {}
    for state in states.values():
        rendered: dict[str, Any] = dict(render(state, rules, account))
        out[rendered["reference_id"]] = {key: rendered.get(key) for key in COMPARED}
    return out


class Poster:
    """Threads posting webhooks until each gets a 2xx, the way Opsgenie retries.

    A post cut off by a SIGKILL (connection refused or reset, or a 503) is not acknowledged
    and goes back to the queue; only a 2xx counts, and only 2xx bodies are remembered.
    """

    def __init__(self, url: str, bodies: list[bytes], threads: int = 4) -> None:
        self.url = url
        self._todo = list(reversed(bodies))
        self._lock = threading.Lock()
        self.acknowledged: list[bytes] = []
        self.unexpected: list[str] = []
        #: Posts cut off or refused because the relay was down: proof the kills hit the load.
        self.interrupted = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"poster-{n}", daemon=True)
            for n in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "posters did not finish"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def _take(self) -> bytes | None:
        with self._lock:
            return self._todo.pop() if self._todo else None

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=HEADERS, timeout=15.0) as client:
            while (body := self._take()) is not None:
                self._post_until_acknowledged(client, body)

    def _post_until_acknowledged(self, client: httpx.Client, body: bytes) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                response = client.post("/webhooks/opsgenie", content=body)
            except httpx.TransportError:
                with self._lock:
                    self.interrupted += 1
                time.sleep(0.05)  # the relay is down or restarting: back off, then retry
                continue
            if response.status_code == 503:
                time.sleep(0.05)
                continue
            with self._lock:
                if response.status_code == 202:
                    self.acknowledged.append(body)
                else:
                    self.unexpected.append(f"{response.status_code} {response.text}")
            return
        with self._lock:
            self.unexpected.append("never acknowledged within 120 s")


def test_sigkill_under_load_while_dx_flaps_loses_nothing(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    """2,000 webhooks over 100 alerts from 4 threads; SIGKILL at seeded random points.

    Each round DX misbehaves differently, so kills land during retries, Retry-After holds,
    slow requests and an outage. Whatever got a 2xx must end up in DX exactly as the pure
    fold/render of the acknowledged events says; the expected state never looks at the relay.
    """
    rng = random.Random(20261123)
    bodies = workload(rng, alerts=100, per_alert=20)
    process = relay()
    poster = Poster(process.url, bodies)
    poster.start()

    def flap(round_: int) -> None:
        """One DX misbehaviour per round: 503 burst, 429 + Retry-After, stall, outage."""
        fake_dx.latency = 0.0
        fake_dx.down = False
        kind = round_ % 4
        if kind == 0:
            fake_dx.fail_next(rng.randint(5, 20), status=503)
        elif kind == 1:
            fake_dx.rate_limit_next(rng.randint(1, 3), retry_after=1)
        elif kind == 2:
            fake_dx.latency = 0.5
        else:
            fake_dx.down = True

    kills = 4
    for round_ in range(kills):
        flap(round_)
        target = poster.count + rng.randint(150, 400)
        wait_for(
            lambda target=target: poster.count >= target,
            timeout=90,
            message=f"{target} acknowledged posts before kill {round_ + 1}",
        )
        process.kill()
        process = relay()
    fake_dx.latency = 0.0
    fake_dx.down = False
    poster.join(timeout=150)

    assert poster.unexpected == []
    assert poster.interrupted > 0
    assert len(poster.acknowledged) == len(bodies)
    expected = expected_incidents(poster.acknowledged)
    assert len(expected) == 100

    def dx_matches() -> bool:
        return all(
            (incident := fake_dx.incident(ref)) is not None
            and {key: incident[key] for key in COMPARED} == want
            for ref, want in expected.items()
        )

    wait_for(dx_matches, timeout=120, interval=0.2, message="DX holds every final state")
    wait_for(lambda: process.metric("relay_outbox_pending") == 0, timeout=30)
    assert process.metric("relay_outbox_failed") == 0
    for ref, want in expected.items():
        incident = fake_dx.incident(ref)
        assert incident is not None
        assert {key: incident[key] for key in COMPARED} == want, ref
    assert set(fake_dx.incidents) == set(expected)


def test_dx_down_for_the_whole_load_then_back_drains_at_the_rate_limit(
    relay: Callable[..., RelayProcess], fake_dx: FakeDX
) -> None:
    """An outage must be invisible at the door (readiness 200, every webhook 202), visible
    in the metrics (oldest pending age grows), and drain at the configured DX rate after."""
    rate, alerts = 5.0, 30
    fake_dx.down = True
    process = relay(RELAY_DX_RATE_LIMIT=str(rate))
    readiness: list[int] = []
    stop = threading.Event()

    def watch_readiness() -> None:
        with httpx.Client(base_url=process.url, timeout=10.0) as client:
            while not stop.is_set():
                readiness.append(client.get("/readyz").status_code)
                stop.wait(0.1)

    watcher = threading.Thread(target=watch_readiness, daemon=True)
    watcher.start()
    try:
        for alert in range(alerts):
            assert process.post(event_body(alert, 0, action="Create")).status_code == 202
        wait_for(
            lambda: (process.metric("relay_outbox_oldest_pending_age_seconds") or 0) >= 2.0,
            timeout=30,
            message="oldest pending age rising while DX is down",
        )
        assert process.metric("relay_outbox_pending") == alerts
        assert fake_dx.incidents == {}
        assert fake_dx.status_counts[503] > 0

        fake_dx.down = False
        wait_for(lambda: len(fake_dx.incidents) == alerts, timeout=90, message="backlog drained")
        wait_for(lambda: process.metric("relay_outbox_pending") == 0, timeout=30)
        wait_for(
            lambda: process.metric("relay_outbox_oldest_pending_age_seconds") == 0,
            timeout=30,
            message="oldest pending age back to 0",
        )
    finally:
        stop.set()
        watcher.join(timeout=15)

    assert readiness
    assert set(readiness) == {200}
    # The client-side limiter is a token bucket (burst = rate): after the bucket is spent,
    # successes are at least 1/rate apart, so draining `alerts` takes a minimum time.
    successes = sorted(r.received_at for r in fake_dx.requests if r.status == 200)
    assert len(successes) == alerts
    burst = int(rate)
    assert successes[-1] - successes[0] >= (alerts - burst - 1) / rate * 0.9
    # ...and on average no faster than the limit allows, failed attempts included (an
    # average, so a stalled test process that bunches arrivals cannot make this flaky).
    every = sorted(r.received_at for r in fake_dx.requests)
    assert len(every) <= rate * (every[-1] - every[0]) + burst + 2


def stored_count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_a_locked_database_answers_503_never_202(
    relay: Callable[..., RelayProcess], tmp_path: Path
) -> None:
    """Another process holds the write lock: the relay cannot store, so it must not say 202."""
    process = relay()
    db = tmp_path / "relay.db"
    body = event_body(1, 0, action="Create")
    lock = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        # The relay's busy timeout is 5 s: it must give up and say 503, so Opsgenie retries.
        response = process.post(body, timeout=30.0)
        assert response.status_code == 503
        assert response.json()["errors"]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert stored_count(db) == 0
    retried = process.post(body, timeout=30.0)
    assert retried.status_code == 202
    assert retried.json()["outcome"] == "accepted"
    assert stored_count(db) == 1


@contextlib.contextmanager
def no_room_to_grow(process: RelayProcess, *, room: int) -> Iterator[None]:
    """The relay's files may not grow past ``room`` bytes: its write(2) calls beyond that
    fail, as they do on a full disk, until the block ends.

    A file-size limit (RLIMIT_FSIZE, set on the running process with prlimit) rather than a
    small filesystem, because mounting one needs privileges CI does not have, and this runs
    anywhere. SQLite sees the same thing either way: a short write (SQLITE_FULL) or a failed
    one (EFBIG, SQLITE_IOERR_WRITE), in the middle of a commit. CPython ignores SIGXFSZ, so
    the process gets the error instead of being killed. The limit is set on the relay and on
    the processes it started (its intake writer): all of them write the relay's files.
    """
    assert process.proc is not None
    pids = [process.proc.pid, *children(process.proc.pid)]
    limits = {pid: resource.prlimit(pid, resource.RLIMIT_FSIZE) for pid in pids}
    for pid, (_, hard) in limits.items():
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (room, hard))
    try:
        yield
    finally:
        for pid, limit in limits.items():
            resource.prlimit(pid, resource.RLIMIT_FSIZE, limit)


def children(pid: int) -> list[int]:
    """The processes ``pid`` started, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_a_full_disk_answers_503_never_202(
    relay: Callable[..., RelayProcess], tmp_path: Path
) -> None:
    """No room for the event: 503 so Opsgenie retries; and the relay recovers once freed."""
    db = tmp_path / "relay.db"
    process = relay(RELAY_DX_BASE_URL="")
    before = stored_count(db)
    # Room enough for the log lines (appended far below the limit), none for an event: each
    # body is bigger than the room, so its commit must write past it.
    room = process.log_path.stat().st_size + 256 * 1024
    refused = 0
    with no_room_to_grow(process, room=room):
        for alert in range(20):
            payload = json.loads(event_body(alert, 0, action="Create"))
            payload["alert"]["description"] = "x" * 600_000
            response = process.post(payload, timeout=30.0)
            assert response.status_code in (202, 503), response.text
            if response.status_code == 503:
                assert response.json()["errors"]
                refused += 1
            else:  # a 202 while full is only fine if the event really is on disk
                assert stored_count(db) > before
                before = stored_count(db)
        assert process.client.get("/healthz").status_code == 200
    assert refused > 0
    assert process.log_path.stat().st_size < room  # no log line was lost to the limit
    assert "store commit failed" in process.logs()

    payload = json.loads(event_body(99, 0, action="Create"))
    response = process.post(payload, timeout=30.0)
    assert response.status_code == 202
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute(
            "SELECT count(*) FROM events WHERE alert_id = 'fault-99'"
        ).fetchone() == (1,)
    assert process.client.get("/healthz").status_code == 200


# -- hostile input ---------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)
CREATE_FIELDS = (
    "alertId",
    "message",
    "tags",
    "teams",
    "tinyId",
    "entity",
    "alias",
    "createdAt",
    "updatedAt",
    "priority",
    "source",
    "owner",
    "details",
    "responders",
    "acknowledged",
    "note",
)


@st.composite
def create_like(draw: st.DrawFn) -> bytes:
    """A Create payload with some fields of the wrong type (or absurd values)."""
    alert: dict[str, Any] = {"alertId": "fuzz-1", "message": "m", "priority": "P3"}
    for field in draw(st.lists(st.sampled_from(CREATE_FIELDS), max_size=6, unique=True)):
        alert[field] = draw(json_values | st.sampled_from(["", "x" * 100_000, 10**30, -1, 0]))
    action = draw(
        st.sampled_from(["Create", "Close", "Acknowledge", "AddTags", "Weird"]) | st.text()
    )
    document: Any = {"action": action, "alert": alert}
    if draw(st.booleans()):
        document = draw(st.sampled_from([[document], {"alert": alert}, {"action": action}]))
    return json.dumps(document).encode()


SPECIAL_BODIES = [
    b"[" * 10_000 + b"]" * 10_000,
    b'{"action": "Create", "alert": ' * 5_000 + b"{}" + b"}" * 5_000,
    b'{"action": "Create", "alert": {"alertId": "a", "updatedAt": 1e400}}',
    b'{"action": "Create", "alert": {"alertId": "a", "createdAt": -1e400}}',
    b'{"action": "Create", "alert": {"alertId": "a", "updatedAt": NaN}}',
    b'{"action": "Create", "alert": {"alertId": "a", "priority": 1000000000000000000000000000000}}',
    b'{"action": "Create", "alert": {"alertId": "a", "createdAt": "' + b"9" * 5000 + b'"}}',
    b'{"action": "Create", "alert": {"alertId": "\xff\xfe"}}',
    b'{"action": "Create", "alert": {"alertId": "\\ud800"}}',
    b'{"action": "Create", "alert": {"alertId": "' + b"a" * 900_000 + b'"}}',
    b'{"action": "Create", "alert": {"alertId": "a", "message": "' + b"m" * 2_000_000 + b'"}}',
    b"",
    b"null",
    b"\x00\x01\x02",
]

hostile_bodies = (
    st.sampled_from(SPECIAL_BODIES)
    | create_like()
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=300)
)


def test_hostile_webhooks_get_2xx_or_4xx_with_json_errors(
    relay: Callable[..., RelayProcess],
) -> None:
    """Whatever arrives at the public edge is a 2xx or a 4xx with a JSON error, never a 500
    or a dead process: the webhook route is reachable from the internet."""
    process = relay(RELAY_DX_BASE_URL="")

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(body=hostile_bodies)
    def post(body: bytes) -> None:
        response = process.post(body, headers={"Content-Type": "application/json"})
        assert 200 <= response.status_code < 500, (response.status_code, body[:200])
        document = response.json()
        assert isinstance(document, dict)
        if response.status_code >= 400:
            assert isinstance(document.get("errors"), list)
            assert document["errors"]
            assert all(isinstance(e, str) for e in document["errors"])
            assert "Traceback" not in response.text

    post()
    assert process.client.get("/healthz").status_code == 200
    assert process.client.get("/readyz").status_code == 200
    assert "Traceback" not in process.logs()
