"""The SQLite store against a real file: durability, the outbox state machine, history.

Every test drives ``SQLiteStore`` through its public methods inside ``asyncio.run`` and
checks the file with a separate ``sqlite3`` connection, as another process would. Tests
that need the writer thread busy block it inside a write job (which runs on the writer)
and release it with a ``threading.Event``: no sleeps, no timing assumptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from service.errors import StoreUnavailable
from service.opsgenie import parse_event
from service.store import Attempt, Delivery, Incoming, Outcome, Pending, Status
from service.store import sqlite as sqlite_store
from service.store.sqlite import MIGRATIONS, SQLiteStore, connect
from service.translate import AlertState, dump_state, fold
from tests.conftest import sample

T = TypeVar("T")
T0 = 1_700_000_000.0
CREATE = sample("Create")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(alert_id: str, n: int = 0, *, action: str = "Create", **alert: Any) -> dict[str, Any]:
    """The Create sample for ``alert_id``, ``n`` seconds later, with ``alert`` changes."""
    document: dict[str, Any] = json.loads(json.dumps(CREATE))
    document["action"] = action
    document["alert"]["alertId"] = alert_id
    document["alert"]["updatedAt"] += n * 10**9
    document["alert"].update(alert)
    return document


def event(document: dict[str, Any], *, received_at: float = T0, raw: str | None = None) -> Incoming:
    """What the webhook handler hands to ``accept`` for this body."""
    text = json.dumps(document) if raw is None else raw
    parsed = parse_event(text.encode(), received_ns=int(received_at * 1e9))
    incoming = Incoming(
        reference_id=f"opsgenie-{parsed.alert_id}",
        alert_id=parsed.alert_id,
        action=parsed.action,
        service_id=None,
        dedup_key=hashlib.sha256(text.encode()).hexdigest(),
        raw=text,
        received_at=received_at,
    )
    return incoming


async def put(store: SQLiteStore, document: dict[str, Any], *, at: float = T0) -> Outcome:
    return await store.accept(event(document, received_at=at))


def attempt(pending: Pending, at: float, outcome: str, **fields: Any) -> Attempt:
    values: dict[str, Any] = {
        "http_status": None,
        "error_code": None,
        "detail": None,
        "duration_seconds": 0.1,
    }
    values.update(fields)
    return Attempt(at=at, version=pending.version, outcome=outcome, **values)


def run_store(
    path: Path,
    scenario: Callable[[SQLiteStore], Awaitable[T]],
    *,
    clock: Clock | None = None,
) -> T:
    async def main() -> T:
        store = SQLiteStore(path, clock=clock or Clock())
        await store.open()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


@contextlib.contextmanager
def other_process(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to the file, as another process (or an operator) would open."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        yield conn
    finally:
        conn.close()


def count(path: Path, table: str, where: str = "1", *args: object) -> int:
    with other_process(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", args).fetchone()[0])


class Gate:
    """Holds the writer thread inside a write job until released."""

    def __init__(self) -> None:
        self._entered = threading.Event()
        self._release = threading.Event()

    def hold(self, store: SQLiteStore) -> asyncio.Future[None]:
        def blocked(conn: sqlite3.Connection) -> None:
            self._entered.set()
            if not self._release.wait(10):
                raise AssertionError("gate never released")

        return asyncio.ensure_future(store._write(blocked))

    async def entered(self) -> None:
        if not await asyncio.to_thread(self._entered.wait, 10):
            raise AssertionError("the writer never reached the gate")

    async def release(self) -> None:
        self._release.set()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "relay.db"


# ---- file, pragmas, schema -------------------------------------------------------------


def test_wal_mode_and_synchronous_full(db: Path) -> None:
    run_store(db, lambda store: put(store, body("a1")))
    with other_process(db) as conn:
        # journal_mode is a property of the file: every process sees WAL.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: the one the store's connections are made with.
    conn = connect(db)
    try:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        conn.close()


def test_schema_version_is_recorded_and_reopening_is_idempotent(db: Path) -> None:
    assert run_store(db, lambda store: put(store, body("a1"))) is Outcome.ACCEPTED
    expected = list(range(1, len(MIGRATIONS) + 1))
    with other_process(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == expected

    async def reopened(store: SQLiteStore) -> Outcome:
        assert await store.get("opsgenie-a1") is not None  # the data survived
        return await put(store, body("a1"))  # the same event again

    assert run_store(db, reopened) is Outcome.DUPLICATE
    assert run_store(db, lambda store: store.stats()).pending == 1
    with other_process(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == expected  # no migration ran twice


def test_the_same_store_can_be_closed_and_opened_again(db: Path) -> None:
    """An app whose lifespan runs twice with one store (tests, restarts in-process)."""

    async def scenario() -> tuple[int, int]:
        store = SQLiteStore(db, clock=Clock())
        await store.open()
        await put(store, body("a1"))
        before = (await store.stats()).pending  # the reader connection now exists
        await store.close()
        await store.open()
        try:
            await put(store, body("a2"))
            return before, (await store.stats()).pending
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (1, 2)


def test_a_database_from_a_newer_build_is_refused(db: Path) -> None:
    run_store(db, lambda store: put(store, body("a1")))
    newer = len(MIGRATIONS) + 1
    with other_process(db) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (newer,))

    async def scenario() -> None:
        store = SQLiteStore(db, clock=Clock())
        try:
            with pytest.raises(StoreUnavailable, match=f"schema version {newer} is newer"):
                await store.open()
            with pytest.raises(StoreUnavailable):
                await put(store, body("a2"))
        finally:
            await store.close()

    asyncio.run(scenario())
    with other_process(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == newer
    assert count(db, "events") == 1  # nothing was touched


def test_open_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "relay.db"
    run_store(path, lambda store: store.ping())
    assert path.exists()


# ---- accept --------------------------------------------------------------------------------


def test_accept_outcomes(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> tuple[list[Outcome], AlertState | None]:
        outcomes = []
        create = body("a1")
        for raw in (json.dumps(create), json.dumps(create)):
            outcomes.append(await store.accept(event(create, raw=raw)))
        # The same facts in a different body (a replay with other formatting): stored, and
        # folded later into the same state.
        outcomes.append(await store.accept(event(create, raw=json.dumps(create, indent=2))))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        return outcomes, pending.state

    outcomes, state = run_store(db, scenario)
    assert outcomes == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.ACCEPTED]
    assert count(db, "events") == 2  # the duplicate wrote nothing; the replay is kept
    assert count(db, "alerts") == 1
    with other_process(db) as conn:
        version, folded_through = conn.execute(
            "SELECT version, folded_through FROM alerts"
        ).fetchone()
        last_event = conn.execute("SELECT max(id) FROM events").fetchone()[0]
    assert version == 2  # each stored event makes the reference due again
    assert folded_through == last_event  # the claim folded both, and recorded that
    once = parse_event(json.dumps(body("a1")).encode(), received_ns=int(T0 * 1e9))
    assert state == fold(None, once)  # the replay taught nothing new


def test_accept_writes_only_the_raw_event(db: Path) -> None:
    """Intake does no folding: the state is JSON null until the worker claims it."""
    run_store(db, lambda store: put(store, body("a1")))
    with other_process(db) as conn:
        assert conn.execute("SELECT state, folded_through FROM alerts").fetchone() == (
            "null",
            0,
        )


def test_one_batch_with_many_events_for_one_alert(db: Path) -> None:
    """A commit's multi-row upsert bumps the version once per event, in order, and the
    same body twice in one batch is stored once."""

    async def scenario(store: SQLiteStore) -> list[Outcome]:
        earlier = body("a1", 1000, action="Close")
        await put(store, earlier)
        gate = Gate()
        held = gate.hold(store)
        await gate.entered()  # everything below queues into one batch
        documents = [body("a1", i, action="AddNote", message=f"m{i}") for i in range(100)]
        accepts = [asyncio.ensure_future(put(store, d)) for d in documents]
        accepts.append(asyncio.ensure_future(put(store, documents[7])))  # in this batch
        accepts.append(asyncio.ensure_future(put(store, earlier)))  # stored before
        await asyncio.sleep(0)
        await gate.release()
        await held
        return list(await asyncio.gather(*accepts))

    outcomes = run_store(db, scenario)
    assert outcomes == [Outcome.ACCEPTED] * 100 + [Outcome.DUPLICATE] * 2
    with other_process(db) as conn:
        assert conn.execute("SELECT version FROM alerts").fetchone()[0] == 101
    assert count(db, "events") == 101


def test_a_duplicate_writes_nothing(db: Path) -> None:
    run_store(db, lambda store: put(store, body("a1")))
    with other_process(db) as conn:
        before = conn.execute("SELECT * FROM alerts").fetchall()
    assert run_store(db, lambda store: put(store, body("a1"), at=T0 + 500)) is Outcome.DUPLICATE
    with other_process(db) as conn:
        assert conn.execute("SELECT * FROM alerts").fetchall() == before
    assert count(db, "events") == 1


def test_an_accepted_event_is_on_disk_when_accept_returns(db: Path) -> None:
    """The promise behind a 202: another process sees the row as soon as accept returns."""

    async def scenario(store: SQLiteStore) -> list[tuple[Any, ...]]:
        document = body("a1")
        assert await put(store, document) is Outcome.ACCEPTED
        with other_process(db) as conn:  # while the store is still open
            return conn.execute(
                "SELECT e.raw, a.status, a.version FROM events e JOIN alerts a USING (reference_id)"
            ).fetchall()

    rows = run_store(db, scenario)
    assert len(rows) == 1
    raw, status, version = rows[0]
    assert json.loads(raw)["alert"]["alertId"] == "a1"
    assert (status, version) == ("pending", 1)


def test_concurrent_accepts_all_land(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> list[Outcome]:
        return await asyncio.gather(*(put(store, body(f"alert-{i}")) for i in range(200)))

    outcomes = run_store(db, scenario)
    assert outcomes == [Outcome.ACCEPTED] * 200
    assert count(db, "events") == 200
    assert count(db, "alerts", "status = 'pending'") == 200


def test_concurrent_events_for_one_alert_all_fold(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> tuple[list[Outcome], int]:
        outcomes = await asyncio.gather(
            *(put(store, body("a1", i, action="AddNote", message=f"m{i}")) for i in range(50))
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.state is not None  # folded on read: nothing has claimed it yet
        assert delivery.state.message is not None
        assert delivery.state.message.value == "m49"  # the latest updatedAt wins
        return outcomes, delivery.version

    outcomes, version = run_store(db, scenario)
    assert count(db, "events") == 50
    assert version == outcomes.count(Outcome.ACCEPTED) == 50


def test_a_failing_job_does_not_sink_the_intake_in_its_batch(db: Path) -> None:
    class Bug(Exception):
        pass

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES ('k', 'opsgenie-bad', 'bad', 'Create', 0, '{}')"
        )
        raise Bug("bug in a write job")

    async def scenario(store: SQLiteStore) -> list[object]:
        gate = Gate()
        held = gate.hold(store)
        await gate.entered()  # the writer is busy: what follows queues up as one batch
        results: list[object] = list(
            await asyncio.gather(
                store._write(broken),
                put(store, body("good-1")),
                put(store, body("good-2")),
                gate.release(),  # runs after the three writes have queued their jobs
                return_exceptions=True,
            )
        )
        await held
        return results[:3]

    bad, good_1, good_2 = run_store(db, scenario)
    assert isinstance(bad, Bug)
    assert [good_1, good_2] == [Outcome.ACCEPTED] * 2
    assert count(db, "events", "alert_id = 'bad'") == 0  # its insert was rolled back
    assert count(db, "alerts", "alert_id IN ('good-1', 'good-2')") == 2


# ---- the outbox ----------------------------------------------------------------------------


def test_due_respects_next_attempt_at_limit_and_exclude(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        for i in range(5):
            await put(store, body(f"a{i}"), at=T0 + i)  # next_attempt_at = received_at
        refs = [f"opsgenie-a{i}" for i in range(5)]

        async def due(now: float, limit: int = 10, exclude: tuple[str, ...] = ()) -> list[str]:
            return [p.reference_id for p in await store.due(now=now, limit=limit, exclude=exclude)]

        assert await due(T0 - 1) == []
        assert await due(T0) == refs[:1]
        assert await due(T0 + 2) == refs[:3]  # oldest first
        assert await due(T0 + 10) == refs
        assert await due(T0 + 10, limit=2) == refs[:2]
        assert await due(T0 + 10, limit=2, exclude=(refs[0], refs[1])) == refs[2:4]
        assert await due(T0 + 10, exclude=("opsgenie-unknown", refs[3])) == [
            refs[0],
            refs[1],
            refs[2],
            refs[4],
        ]
        assert await due(T0 + 10, limit=3, exclude=tuple(refs)) == []
        assert await store.next_due_at() == T0

        [pending] = await store.due(now=T0, limit=1, exclude=())
        assert pending.version == 1
        assert pending.attempts == 0
        assert pending.ever_delivered is False
        assert pending.pending_since == T0
        assert pending.delivered_request is None
        assert pending.service_id is None
        assert pending.state.alert_id == "a0"

    run_store(db, scenario)


def test_next_due_at_is_none_without_pending_work(db: Path) -> None:
    assert run_store(db, lambda store: store.next_due_at()) is None


def test_record_delivered_with_the_current_version(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        request = {"reference_id": "opsgenie-a1", "name": "asdf"}
        await store.record_delivered(
            pending,
            request=request,
            response='{"ok":true}',
            attempt=attempt(pending, T0 + 1, "delivered", http_status=200),
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.status is Status.DELIVERED
        assert (delivery.version, delivery.delivered_version) == (1, 1)
        assert delivery.next_attempt_at is None
        assert delivery.last_request == request
        assert delivery.last_response == '{"ok":true}'
        assert await store.due(now=T0 + 100, limit=10, exclude=()) == []
        stats = await store.stats()
        assert (stats.pending, stats.failed, stats.oldest_pending_since) == (0, 0, None)
        assert [
            d.reference_id
            for d in await store.deliveries(status=Status.DELIVERED, limit=10, after=None)
        ] == ["opsgenie-a1"]

        # The next change is due at once and knows what DX holds.
        await put(store, body("a1", 60, action="AddNote", message="changed"), at=T0 + 60)
        [again] = await store.due(now=T0 + 60, limit=10, exclude=())
        assert again.version == 2
        assert again.ever_delivered is True
        assert again.delivered_request == request
        assert again.pending_since == T0 + 60

    run_store(db, scenario)


def test_a_newer_version_coalesces_behind_an_older_delivery(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        [v1] = await store.due(now=T0, limit=10, exclude=())
        # While v1 is on its way to DX, two more events arrive.
        await put(store, body("a1", 10, action="AddNote", message="two"), at=T0 + 10)
        await put(store, body("a1", 20, action="AddNote", message="three"), at=T0 + 20)
        await store.record_delivered(
            v1,
            request={"v": 1},
            response='{"ok":true}',
            attempt=attempt(v1, T0 + 30, "delivered", http_status=200),
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.status is Status.PENDING
        assert (delivery.version, delivery.delivered_version) == (3, 1)
        [latest] = await store.due(now=T0 + 30, limit=10, exclude=())
        assert latest.version == 3  # one request carries both changes
        assert latest.state.message is not None
        assert latest.state.message.value == "three"
        assert latest.ever_delivered is True
        assert latest.delivered_request == {"v": 1}

        await store.record_delivered(
            latest,
            request={"v": 3},
            response='{"ok":true}',
            attempt=attempt(latest, T0 + 31, "delivered", http_status=200),
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.status is Status.DELIVERED
        assert delivery.delivered_version == 3

    run_store(db, scenario)


def test_record_retry_schedules_and_counts(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        await store.record_retry(
            pending,
            request={"v": 1},
            next_attempt_at=T0 + 30,
            attempt=attempt(pending, T0 + 1, "retry", http_status=503, error_code="http_503"),
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.status is Status.PENDING
        assert delivery.attempts == 1
        assert delivery.next_attempt_at == T0 + 30
        assert delivery.last_error_code == "http_503"
        assert await store.due(now=T0 + 29, limit=10, exclude=()) == []
        assert await store.next_due_at() == T0 + 30
        [again] = await store.due(now=T0 + 30, limit=10, exclude=())
        assert again.attempts == 1

        await store.record_retry(
            again,
            request=None,  # no DX request this time (Opsgenie enrichment waits)
            next_attempt_at=T0 + 90,
            attempt=attempt(again, T0 + 31, "retry", error_code="timeout"),
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert (delivery.attempts, delivery.next_attempt_at) == (2, T0 + 90)
        assert delivery.last_error_code == "timeout"
        assert delivery.last_request == {"v": 1}  # the last DX request is still the one shown
        # The alert is still pending: stats count it, from when it first became pending.
        stats = await store.stats()
        assert (stats.pending, stats.oldest_pending_since) == (1, T0)

    run_store(db, scenario)


def test_a_retry_shows_the_answer_to_the_request_it_shows(db: Path) -> None:
    """``last_request`` and ``last_response`` always belong together: DX's answer to the
    request when it gave one, nothing when it gave none, both unchanged when no request
    was made."""

    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        await store.record_delivered(
            pending,
            request={"v": 0},
            response='{"ok":true}',
            attempt=attempt(pending, T0 + 1, "delivered", http_status=200),
        )
        await put(store, body("a1", 5, action="AddNote", message="two"), at=T0 + 5)
        [pending] = await store.due(now=T0 + 5, limit=10, exclude=())

        async def retry(request: dict[str, Any] | None, response: str | None) -> Delivery:
            await store.record_retry(
                pending,
                request=request,
                response=response,
                next_attempt_at=T0 + 30,
                attempt=attempt(pending, T0 + 6, "retryable", detail="DX answered 503"),
            )
            delivery = await store.get("opsgenie-a1")
            assert delivery is not None
            return delivery

        shown = await retry({"v": 1}, '{"ok":false,"error":"service_unavailable"}')
        assert (shown.last_request, shown.last_response) == (
            {"v": 1},
            '{"ok":false,"error":"service_unavailable"}',
        )
        assert shown.last_error == "DX answered 503"
        shown = await retry(None, None)  # no DX request (Opsgenie enrichment waits)
        assert (shown.last_request, shown.last_response) == (
            {"v": 1},
            '{"ok":false,"error":"service_unavailable"}',
        )
        shown = await retry({"v": 2}, None)  # a timeout: the request got no answer
        assert (shown.last_request, shown.last_response) == ({"v": 2}, None)

    run_store(db, scenario)


def test_a_retry_of_an_older_version_lets_the_newer_one_go_at_once(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        [v1] = await store.due(now=T0, limit=10, exclude=())
        await put(store, body("a1", 5, action="AddNote", message="two"), at=T0 + 5)
        await store.record_retry(
            v1,
            request={"v": 1},
            next_attempt_at=T0 + 600,
            attempt=attempt(v1, T0 + 6, "retry", error_code="http_503"),
        )
        [v2] = await store.due(now=T0 + 6, limit=10, exclude=())
        assert v2.version == 2

    run_store(db, scenario)


def test_record_failed_is_visible_to_operators(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        await put(store, body("a2"))
        [p1, _] = await store.due(now=T0, limit=10, exclude=())
        assert p1.reference_id == "opsgenie-a1"
        answer = '{"ok":false,"error":"invalid_timestamp","field":"started_at"}'
        await store.record_failed(
            p1,
            request={"reference_id": "opsgenie-a1"},
            response=answer,
            attempt=attempt(
                p1,
                T0 + 1,
                "failed",
                http_status=422,
                error_code="invalid_timestamp",
                detail="DX answered 422",
            ),
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.status is Status.FAILED
        assert delivery.last_error_code == "invalid_timestamp"
        assert delivery.last_error == "DX answered 422"
        assert delivery.last_request == {"reference_id": "opsgenie-a1"}
        assert delivery.last_response == answer  # DX's words, beside our summary
        [tried] = await store.attempts("opsgenie-a1", limit=10)
        assert tried.detail == "DX answered 422"
        assert delivery.next_attempt_at is None
        assert delivery.attempts == 1
        failed = await store.deliveries(status=Status.FAILED, limit=10, after=None)
        assert [d.reference_id for d in failed] == ["opsgenie-a1"]
        pending = await store.deliveries(status=Status.PENDING, limit=10, after=None)
        assert [d.reference_id for d in pending] == ["opsgenie-a2"]
        everything = await store.deliveries(status=None, limit=10, after=None)
        assert [d.reference_id for d in everything] == ["opsgenie-a1", "opsgenie-a2"]
        page = await store.deliveries(status=None, limit=1, after="opsgenie-a1")
        assert [d.reference_id for d in page] == ["opsgenie-a2"]
        assert [p.reference_id for p in await store.due(now=T0 + 999, limit=10, exclude=())] == [
            "opsgenie-a2"
        ]
        stats = await store.stats()
        assert (stats.pending, stats.failed) == (1, 1)
        assert await store.get("opsgenie-unknown") is None

    run_store(db, scenario)


def test_a_failure_of_an_older_version_keeps_the_newer_one_pending(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        [v1] = await store.due(now=T0, limit=10, exclude=())
        await put(store, body("a1", 5, action="AddNote", message="fixed"), at=T0 + 5)
        await store.record_failed(
            v1,
            request={"v": 1},
            response='{"ok":false,"error":"metadata_invalid"}',
            attempt=attempt(v1, T0 + 6, "failed", error_code="metadata_invalid"),
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.status is Status.PENDING
        [v2] = await store.due(now=T0 + 6, limit=10, exclude=())
        assert v2.version == 2

    run_store(db, scenario)


def test_retry_and_retry_all_failed_bring_failed_back(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        for i in range(3):
            await put(store, body(f"a{i}"))
        for pending in await store.due(now=T0, limit=10, exclude=()):
            await store.record_failed(
                pending,
                request={},
                response=None,
                attempt=attempt(pending, T0 + 1, "failed", error_code="invalid_arguments"),
            )
        assert (await store.stats()).failed == 3

        assert await store.retry("opsgenie-a0", now=T0 + 100) is True
        delivery = await store.get("opsgenie-a0")
        assert delivery is not None
        assert delivery.status is Status.PENDING
        assert (delivery.attempts, delivery.next_attempt_at) == (0, T0 + 100)
        assert [p.reference_id for p in await store.due(now=T0 + 100, limit=10, exclude=())] == [
            "opsgenie-a0"
        ]
        assert await store.retry("opsgenie-unknown", now=T0 + 100) is False

        assert await store.retry_all_failed(now=T0 + 200) == 2
        assert await store.retry_all_failed(now=T0 + 201) == 0
        stats = await store.stats()
        assert (stats.pending, stats.failed) == (3, 0)
        due = await store.due(now=T0 + 200, limit=10, exclude=())
        assert sorted(p.reference_id for p in due) == [f"opsgenie-a{i}" for i in range(3)]
        assert all(p.attempts == 0 for p in due)

    run_store(db, scenario)


def test_retry_does_not_resend_what_was_delivered(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> bool:
        await put(store, body("a1"))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        await store.record_delivered(
            pending, request={}, response="", attempt=attempt(pending, T0, "delivered")
        )
        return await store.retry("opsgenie-a1", now=T0 + 1)

    assert run_store(db, scenario) is False


def test_record_filtered(db: Path) -> None:
    clock = Clock(T0 + 5)

    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        await put(store, body("a2"))
        p1, p2 = await store.due(now=T0, limit=10, exclude=())
        await store.record_filtered(p1)
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.status is Status.FILTERED
        assert delivery.next_attempt_at is None
        assert delivery.updated_at == T0 + 5  # the store's clock
        assert [p.reference_id for p in await store.due(now=T0 + 9, limit=10, exclude=())] == [
            "opsgenie-a2"
        ]
        assert (await store.stats()).pending == 1
        filtered = await store.deliveries(status=Status.FILTERED, limit=10, after=None)
        assert [d.reference_id for d in filtered] == ["opsgenie-a1"]

        # A filter decision about a version that is no longer current changes nothing.
        await put(store, body("a2", 5, action="AddNote", message="new"), at=T0 + 5)
        await store.record_filtered(p2)
        delivery = await store.get("opsgenie-a2")
        assert delivery is not None
        assert delivery.status is Status.PENDING

    run_store(db, scenario, clock=clock)


def test_stats(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        empty = await store.stats()
        assert (empty.pending, empty.failed, empty.oldest_pending_since) == (0, 0, None)
        await put(store, body("a1"), at=T0 + 10)
        await put(store, body("a2"), at=T0 + 20)
        await put(store, body("a3"), at=T0 + 30)
        stats = await store.stats()
        assert (stats.pending, stats.failed, stats.oldest_pending_since) == (3, 0, T0 + 10)
        p1, p2, _ = await store.due(now=T0 + 30, limit=10, exclude=())
        await store.record_delivered(
            p1, request={}, response="", attempt=attempt(p1, T0 + 31, "delivered")
        )
        await store.record_failed(
            p2,
            request={},
            response=None,
            attempt=attempt(p2, T0 + 31, "failed", error_code="invalid_json"),
        )
        stats = await store.stats()
        assert (stats.pending, stats.failed, stats.oldest_pending_since) == (1, 1, T0 + 30)

    run_store(db, scenario)


# ---- history -----------------------------------------------------------------------------


def test_attempts_history(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        for i in range(3):
            await store.record_retry(
                pending,
                request={},
                next_attempt_at=T0,
                attempt=attempt(
                    pending,
                    T0 + i,
                    "retry",
                    http_status=503,
                    error_code=f"http_50{i}",
                    detail=f"try {i}",
                    duration_seconds=0.5 + i,
                ),
            )
        await store.record_delivered(
            pending,
            request={},
            response="{}",
            attempt=attempt(pending, T0 + 3, "delivered", http_status=200),
        )
        history = await store.attempts("opsgenie-a1", limit=10)
        assert [a.outcome for a in history] == ["retry", "retry", "retry", "delivered"]
        assert [a.at for a in history] == [T0, T0 + 1, T0 + 2, T0 + 3]  # oldest first
        assert history[0] == Attempt(
            at=T0,
            version=1,
            outcome="retry",
            http_status=503,
            error_code="http_500",
            detail="try 0",
            duration_seconds=0.5,
        )
        latest = await store.attempts("opsgenie-a1", limit=2)
        assert [a.at for a in latest] == [T0 + 2, T0 + 3]  # the newest two
        assert await store.attempts("opsgenie-unknown", limit=10) == []

    run_store(db, scenario)


def test_events_history(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"), at=T0)
        await put(store, body("a2"), at=T0 + 1)
        await put(store, body("a1", 60, action="Acknowledge"), at=T0 + 60)
        await put(store, body("a1", 120, action="Close"), at=T0 + 120)
        history = await store.events("a1", limit=10)
        assert [(e.received_at, e.action) for e in history] == [
            (T0, "Create"),
            (T0 + 60, "Acknowledge"),
            (T0 + 120, "Close"),
        ]
        assert json.loads(history[0].raw) == body("a1")
        latest = await store.events("a1", limit=2)
        assert [e.action for e in latest] == ["Acknowledge", "Close"]
        assert [e.action for e in await store.events("a2", limit=10)] == ["Create"]
        assert await store.events("unknown", limit=10) == []

    run_store(db, scenario)


def test_prune_events_removes_only_old_events(db: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await put(store, body("a1"), at=T0)
        await put(store, body("a1", 1, action="Acknowledge"), at=T0 + 1)
        await put(store, body("a1", 2, action="Close"), at=T0 + 2)
        assert await store.prune_events(before=T0) == 0
        assert await store.prune_events(before=T0 + 2) == 2  # strictly older only
        assert [e.action for e in await store.events("a1", limit=10)] == ["Close"]
        assert await store.prune_events(before=T0 + 2) == 0
        # The pruned events were folded before they went: the state still knows them.
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.state is not None
        assert delivery.state.closed
        assert delivery.state.acknowledged is not None
        assert delivery.state.acknowledged.value is True

    run_store(db, scenario)


# ---- failure -------------------------------------------------------------------------------


def test_after_close_every_call_raises_store_unavailable(db: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(db, clock=Clock())
        await store.open()
        await put(store, body("a1"))
        await store.stats()
        await store.close()
        with pytest.raises(StoreUnavailable):
            await put(store, body("a2"))
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.retry_all_failed(now=T0)
        with pytest.raises(StoreUnavailable):
            await store.stats()
        with pytest.raises(StoreUnavailable):
            await store.due(now=T0, limit=1, exclude=())
        await store.close()  # closing twice is harmless

    asyncio.run(scenario())
    assert count(db, "events") == 1


def test_a_write_queued_while_closing_fails_instead_of_hanging(db: Path) -> None:
    """Shutdown closes the store while a late webhook or worker write may still arrive."""

    async def scenario() -> tuple[Outcome, BaseException | Outcome]:
        store = SQLiteStore(db, clock=Clock())
        await store.open()
        gate = Gate()
        held = gate.hold(store)
        first = asyncio.ensure_future(put(store, body("first")))
        await gate.entered()
        closing = asyncio.ensure_future(store.close())
        late = asyncio.ensure_future(put(store, body("late")))
        # Tasks start in order: the close queues its stop, then the late write queues its
        # job, both while the writer is still held; only then does the gate open.
        await asyncio.ensure_future(gate.release())
        await held
        outcome = await first
        await closing
        try:
            late_outcome: BaseException | Outcome = await asyncio.wait_for(late, 3)
        except (StoreUnavailable, TimeoutError) as exc:
            late_outcome = exc
        return outcome, late_outcome

    first, late = asyncio.run(scenario())
    assert first is Outcome.ACCEPTED  # queued before the close: committed
    assert isinstance(late, StoreUnavailable), late


def test_a_locked_database_is_reported_as_store_unavailable(db: Path) -> None:
    """Another writer holds the lock past the busy timeout (5 s): refuse, don't hang, and
    write nothing; reads keep working (WAL), and the store recovers once the lock goes."""

    async def scenario(store: SQLiteStore) -> tuple[float, Outcome]:
        await put(store, body("a1"))
        with other_process(db) as locker:
            locker.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="database write failed"):
                await asyncio.wait_for(put(store, body("a2")), 15)
            elapsed = time.monotonic() - started
            assert (await store.stats()).pending == 1
            locker.execute("ROLLBACK")
        # Nothing of the refused event was kept, so Opsgenie's retry is accepted.
        return elapsed, await put(store, body("a2"))

    elapsed, outcome = run_store(db, scenario)
    assert outcome is Outcome.ACCEPTED
    assert elapsed < 10  # the busy timeout, not forever
    assert count(db, "events") == 2


def test_a_database_from_the_fold_at_intake_build_is_upgraded(db: Path) -> None:
    """Builds before schema 3 folded at intake: their states already hold every stored
    event, so the upgrade marks those folded and a claim does not fold them again."""
    create = body("a1")
    parsed = parse_event(json.dumps(create).encode(), received_ns=int(T0 * 1e9))
    old_state = fold(None, parsed)
    with other_process(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, script in enumerate(MIGRATIONS[:2], start=1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES ('k1', 'opsgenie-a1', 'a1', 'Create', ?, ?)",
            (T0, json.dumps(create)),
        )
        conn.execute(
            "INSERT INTO alerts (reference_id, alert_id, state, version, status,"
            " next_attempt_at, pending_since, changed_at, updated_at)"
            " VALUES ('opsgenie-a1', 'a1', ?, 1, 'pending', ?, ?, ?, ?)",
            (json.dumps(dump_state(old_state)), T0, T0, T0, T0),
        )

    async def scenario(store: SQLiteStore) -> Pending:
        [pending] = await store.due(now=T0, limit=10, exclude=())
        return pending

    pending = run_store(db, scenario)
    assert pending.state == old_state
    with other_process(db) as conn:
        assert conn.execute("SELECT folded_through FROM alerts").fetchone()[0] == 1


def test_a_claim_folds_a_huge_backlog_over_several_rounds(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One claim folds at most ``FOLD_BUDGET`` events, so one alert with a long backlog
    cannot hold the writer (and intake behind it) for long; later claims go on from there."""
    monkeypatch.setattr(sqlite_store, "FOLD_BUDGET", 10)

    async def scenario(store: SQLiteStore) -> list[list[Pending]]:
        await asyncio.gather(
            *(put(store, body("a1", i, action="AddNote", message=f"m{i}")) for i in range(25))
        )
        await put(store, body("a2"), at=T0 + 1)  # due after a1
        return [await store.due(now=T0 + 1, limit=10, exclude=()) for _ in range(4)]

    rounds = run_store(db, scenario)
    assert [[p.reference_id for p in claimed] for claimed in rounds] == [
        [],  # 10 of a1's 25 events folded
        [],  # 20
        ["opsgenie-a1", "opsgenie-a2"],  # all 25, then a2's one
        ["opsgenie-a1", "opsgenie-a2"],  # nothing left to fold: claimed at once
    ]
    final = rounds[2][0].state.message
    assert final is not None
    assert final.value == "m24"


def test_ids_and_raw_text_round_trip_through_the_batch_insert(db: Path) -> None:
    """The batch travels as one JSON parameter: non-ASCII, astral and escaped characters
    must come out of SQLite exactly as they went in."""
    document = body("ünï-😀-中", message='quote " back \\ sep \u2028 nul-escape \u0000')
    raw = json.dumps(document, ensure_ascii=False)
    assert run_store(db, lambda store: store.accept(event(document, raw=raw))) is Outcome.ACCEPTED
    with other_process(db) as conn:
        stored = conn.execute("SELECT reference_id, alert_id, raw FROM events").fetchone()
        [alert] = conn.execute("SELECT alert_id FROM alerts").fetchone()
    assert stored == ("opsgenie-ünï-😀-中", "ünï-😀-中", raw)
    assert alert == "ünï-😀-中"


def test_a_reference_whose_events_cannot_be_read_fails_instead_of_spinning(db: Path) -> None:
    """Intake only stores what parses; should a stored row still not parse (a build that
    reads it differently), the claim marks the reference failed and says why."""
    run_store(db, lambda store: store.ping())  # the schema, trigger included
    with other_process(db) as conn:
        conn.execute(
            "INSERT INTO events (dedup_key, reference_id, alert_id, action, received_at, raw)"
            " VALUES ('k', 'opsgenie-a1', 'a1', 'Create', ?, '{\"not\": \"a webhook\"}')",
            (T0,),
        )

    async def scenario(store: SQLiteStore) -> tuple[list[Pending], Delivery | None]:
        return await store.due(now=T0, limit=10, exclude=()), await store.get("opsgenie-a1")

    claimed, delivery = run_store(db, scenario)
    assert claimed == []
    assert delivery is not None
    assert delivery.status is Status.FAILED
    assert delivery.last_error_code == "unreadable_events"
    assert delivery.state is None
