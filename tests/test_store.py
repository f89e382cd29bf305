"""The ``Store`` interface, run against every backend: the outbox state machine, history,
the lifecycle, service objects.

Every test drives a store through its public methods inside ``asyncio.run`` (``Stores``
opens a fresh one on the same data for each run, as a restarted relay would) and checks
only what the interface answers. What only one backend can show (its files, its
transactions, its threads) is in that backend's tests (``test_sqlite_*.py``).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from starlette.datastructures import Secret

from service.errors import Conflict, PayloadError, StoreUnavailable
from service.opsgenie import parse_event
from service.store import Attempt, Delivery, Outcome, Pending, ServiceObject, Status, Store
from service.translate import fold
from tests.store_backends import (
    T0,
    Clock,
    Stores,
    attempt,
    body,
    event,
    put,
    stores_fixture,  # noqa: F401  (the ``stores`` fixture)
)

# ---- lifecycle -----------------------------------------------------------------------------


def test_reopening_keeps_what_was_stored(stores: Stores) -> None:
    assert stores.run(lambda store: put(store, body("a1"))) is Outcome.ACCEPTED

    async def reopened(store: Store) -> Outcome:
        assert await store.get("opsgenie-a1") is not None  # the data survived
        return await put(store, body("a1"))  # the same event again

    assert stores.run(reopened) is Outcome.DUPLICATE
    assert stores.run(lambda store: store.stats()).pending == 1


def test_the_same_store_can_be_closed_and_opened_again(stores: Stores) -> None:
    """An app whose lifespan runs twice with one store (tests, restarts in-process)."""

    async def scenario() -> tuple[int, int]:
        store = stores.new()
        await store.open()
        await put(store, body("a1"))
        before = (await store.stats()).pending  # the store has read as well as written
        await store.close()
        await store.open()
        try:
            await put(store, body("a2"))
            return before, (await store.stats()).pending
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (1, 2)


def test_after_close_every_call_raises_store_unavailable(stores: Stores) -> None:
    async def scenario() -> None:
        store = stores.new()
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

    async def stored(store: Store) -> tuple[int, int]:
        return len(await store.events("a1", limit=10)), len(await store.events("a2", limit=10))

    assert stores.run(stored) == (1, 0)


# ---- accept --------------------------------------------------------------------------------


def test_accept_outcomes(stores: Stores) -> None:
    async def scenario(store: Store) -> tuple[list[Outcome], Pending, int, int]:
        outcomes = []
        create = body("a1")
        for raw in (json.dumps(create), json.dumps(create)):
            outcomes.append(await store.accept(event(create, raw=raw)))
        # The same facts in a different body (a replay with other formatting): stored, and
        # folded later into the same state.
        outcomes.append(await store.accept(event(create, raw=json.dumps(create, indent=2))))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        events = len(await store.events("a1", limit=10))
        alerts = len(await store.deliveries(status=None, limit=10, after=None))
        return outcomes, pending, events, alerts

    outcomes, pending, events, alerts = stores.run(scenario)
    assert outcomes == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.ACCEPTED]
    assert events == 2  # the duplicate wrote nothing; the replay is kept
    assert alerts == 1
    assert pending.version == 2  # each stored event makes the reference due again
    once = parse_event(json.dumps(body("a1")).encode(), received_ns=int(T0 * 1e9))
    assert pending.state == fold(None, once)  # the replay taught nothing new


def test_a_duplicate_changes_nothing(stores: Stores) -> None:
    async def seen(store: Store) -> tuple[Delivery | None, object, int]:
        events = len(await store.events("a1", limit=10))
        return await store.get("opsgenie-a1"), await store.stats(), events

    stores.run(lambda store: put(store, body("a1")))
    before = stores.run(seen)
    assert stores.run(lambda store: put(store, body("a1"), at=T0 + 500)) is Outcome.DUPLICATE
    assert stores.run(seen) == before
    assert before[2] == 1


def test_concurrent_accepts_all_land(stores: Stores) -> None:
    async def scenario(store: Store) -> tuple[list[Outcome], int, list[int]]:
        outcomes = await asyncio.gather(*(put(store, body(f"alert-{i}")) for i in range(200)))
        pending = await store.deliveries(status=Status.PENDING, limit=500, after=None)
        events = [len(await store.events(f"alert-{i}", limit=10)) for i in range(200)]
        return outcomes, len(pending), events

    outcomes, pending, events = stores.run(scenario)
    assert outcomes == [Outcome.ACCEPTED] * 200
    assert events == [1] * 200
    assert pending == 200


def test_concurrent_events_for_one_alert_all_fold(stores: Stores) -> None:
    async def scenario(store: Store) -> tuple[list[Outcome], int, int]:
        outcomes = await asyncio.gather(
            *(put(store, body("a1", i, action="AddNote", message=f"m{i}")) for i in range(50))
        )
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.state is not None  # folded on read: nothing has claimed it yet
        assert delivery.state.message is not None
        assert delivery.state.message.value == "m49"  # the latest updatedAt wins
        return outcomes, delivery.version, len(await store.events("a1", limit=100))

    outcomes, version, events = stores.run(scenario)
    assert events == 50
    assert version == outcomes.count(Outcome.ACCEPTED) == 50


@pytest.mark.parametrize("seed", range(4))
def test_events_of_one_alert_accepted_in_any_interleaving_are_all_folded(
    stores: Stores, seed: int
) -> None:
    """Whatever order the events of one alert arrive and commit in, and whatever claims run
    between and during their commits (on a backend whose ids do not commit in order, an
    event can land below one already folded), every claim carries every event stored before
    it, each counted once, and the last carries them all."""
    rng = random.Random(seed)
    documents = []
    for n in range(24):
        document = body("a1", n, action="AddNote", message=f"m{n}", addedTags=f"t{n}")
        del document["alert"]["tags"]  # each event adds a tag of its own: one left out shows
        documents.append(document)
    rng.shuffle(documents)
    waves: list[list[dict[str, Any]]] = []
    while documents:
        size = rng.randint(1, 5)
        waves.append(documents[:size])
        documents = documents[size:]

    async def scenario(store: Store) -> tuple[list[Pending], int]:
        claims: list[Pending] = []
        stored = 0
        for n, wave in enumerate(waves):
            at = T0 + n
            # A wave's accepts commit together or apart, with a claim racing them.
            accepts = [put(store, document, at=at) for document in wave]
            claiming = store.due(now=at, limit=10, exclude=())
            outcomes, claimed = await asyncio.gather(asyncio.gather(*accepts), claiming)
            assert outcomes == [Outcome.ACCEPTED] * len(wave)
            for pending in claimed:
                assert stored <= pending.version <= stored + len(wave)
                claims.append(pending)
            stored += len(wave)
            if rng.random() < 0.5:
                claims.extend(await store.due(now=at, limit=10, exclude=()))
        claims.extend(await store.due(now=T0 + len(waves), limit=10, exclude=()))
        return claims, stored

    claims, stored = stores.run(scenario)
    last = claims[-1]
    assert last.version == stored == 24
    assert set(last.state.tags.members()) == {f"t{n}" for n in range(24)}
    assert last.state.message is not None
    assert last.state.message.value == "m23"  # the latest updatedAt, whenever it came
    for pending in claims:  # each claim holds exactly the events its version counts
        assert len(set(pending.state.tags.members())) == pending.version


def test_ids_and_raw_text_round_trip(stores: Stores) -> None:
    """Non-ASCII, astral and escaped characters come back exactly as they went in."""
    document = body("ünï-😀-中", message='quote " back \\ sep \u2028 nul-escape \u0000')
    raw = json.dumps(document, ensure_ascii=False)

    async def scenario(store: Store) -> tuple[Outcome, str, Delivery | None]:
        outcome = await store.accept(event(document, raw=raw))
        [stored] = await store.events("ünï-😀-中", limit=10)
        return outcome, stored.raw, await store.get("opsgenie-ünï-😀-中")

    outcome, stored, delivery = stores.run(scenario)
    assert outcome is Outcome.ACCEPTED
    assert stored == raw
    assert delivery is not None
    assert delivery.alert_id == "ünï-😀-中"


# ---- the outbox ----------------------------------------------------------------------------


def test_due_respects_next_attempt_at_limit_and_exclude(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_next_due_at_is_none_without_pending_work(stores: Stores) -> None:
    assert stores.run(lambda store: store.next_due_at()) is None


def test_record_delivered_with_the_current_version(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_a_newer_version_coalesces_behind_an_older_delivery(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_record_retry_schedules_and_counts(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_a_retry_shows_the_answer_to_the_request_it_shows(stores: Stores) -> None:
    """``last_request`` and ``last_response`` always belong together: DX's answer to the
    request when it gave one, nothing when it gave none, both unchanged when no request
    was made."""

    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_a_retry_of_an_older_version_lets_the_newer_one_go_at_once(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_record_failed_is_visible_to_operators(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_a_failure_of_an_older_version_keeps_the_newer_one_pending(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_retry_and_retry_all_failed_bring_failed_back(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_retry_does_not_resend_what_was_delivered(stores: Stores) -> None:
    async def scenario(store: Store) -> bool:
        await put(store, body("a1"))
        [pending] = await store.due(now=T0, limit=10, exclude=())
        await store.record_delivered(
            pending, request={}, response="", attempt=attempt(pending, T0, "delivered")
        )
        return await store.retry("opsgenie-a1", now=T0 + 1)

    assert stores.run(scenario) is False


def test_record_filtered(stores: Stores) -> None:
    clock = Clock(T0 + 5)

    async def scenario(store: Store) -> None:
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

    stores.run(scenario, clock=clock)


def test_stats(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


# ---- history -----------------------------------------------------------------------------


def test_attempts_history(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_events_history(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
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

    stores.run(scenario)


def test_events_page_back_by_id_and_one_is_read_by_its_id(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
        await put(store, body("a1"), at=T0)
        await put(store, body("a2"), at=T0 + 1)
        for i, action in enumerate(("Acknowledge", "AddNote", "Close"), start=1):
            await put(store, body("a1", 60 * i, action=action), at=T0 + 60 * i)
        history = await store.events("a1", limit=10)
        ids = [e.id for e in history]
        assert ids == sorted(set(ids))  # unique, growing with arrival
        latest = await store.events("a1", limit=2)
        assert [e.action for e in latest] == ["AddNote", "Close"]
        older = await store.events("a1", limit=2, before=latest[0].id)
        assert [e.action for e in older] == ["Create", "Acknowledge"]
        assert await store.events("a1", limit=2, before=older[0].id) == []
        assert await store.event("a1", history[1].id) == history[1]
        [other] = await store.events("a2", limit=10)
        assert await store.event("a1", other.id) is None  # another alert's event
        assert await store.event("a1", max(ids) + 1000) is None

    stores.run(scenario)


def test_prune_events_removes_only_old_events(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
        await put(store, body("a1"), at=T0)
        await put(store, body("a1", 1, action="Acknowledge"), at=T0 + 1)
        await put(store, body("a1", 2, action="Close"), at=T0 + 2)
        assert await store.prune_events(limit=1000, before=T0) == 0
        assert await store.prune_events(limit=1000, before=T0 + 2) == 2  # strictly older only
        assert [e.action for e in await store.events("a1", limit=10)] == ["Close"]
        assert await store.prune_events(limit=1000, before=T0 + 2) == 0
        # The pruned events were folded before they went: the state still knows them.
        delivery = await store.get("opsgenie-a1")
        assert delivery is not None
        assert delivery.state is not None
        assert delivery.state.closed
        assert delivery.state.acknowledged is not None
        assert delivery.state.acknowledged.value is True

    stores.run(scenario)


# ---- service objects ---------------------------------------------------------------------


def test_a_stored_key_moves_to_a_new_destination_only_with_the_key(stores: Stores) -> None:
    """The store compares with the row it is about to write, in the same transaction, so
    no PATCH can slip a new URL in between the check and the write."""

    async def scenario(store: Store) -> list[str | None]:
        created = await store.create_service_object(
            id="6f1c2a4e-0000-4000-8000-000000000001",
            name="payments",
            region="custom",
            custom_url="https://og-a.example.com",
            api_key=Secret("genie-key-a"),
        )
        with pytest.raises(PayloadError) as refused:
            await store.update_service_object(
                created.id, {"custom_url": "https://og-b.example.com"}
            )
        assert refused.value.field == "data.attributes.opsgenie_api_key"
        with pytest.raises(PayloadError):
            await store.update_service_object(created.id, {"region": "eu", "custom_url": None})
        moved = await store.update_service_object(
            created.id, {"custom_url": "https://og-b.example.com", "api_key": Secret("key-b")}
        )
        assert moved is not None
        # Compared with what is stored now: B again is no move, A again is one.
        same = await store.update_service_object(
            created.id, {"custom_url": "https://og-b.example.com/"}
        )
        assert same is not None
        with pytest.raises(PayloadError):
            await store.update_service_object(
                created.id, {"custom_url": "https://og-a.example.com"}
            )
        with pytest.raises(Conflict):  # names compare by their Unicode-normalised key
            await store.create_service_object(
                id="6f1c2a4e-0000-4000-8000-000000000002",
                name="PAYMENTS",
                region="us",
                custom_url=None,
                api_key=Secret("genie-key-c"),
            )
        found = await store.get_service_object(created.id)
        assert found is not None
        assert found.api_key is not None
        return [found.custom_url, str(found.api_key)]

    assert stores.run(scenario) == ["https://og-b.example.com/", "key-b"]


SERVICE_ID = "6f1c2b4e-3a5d-4e7f-8a9b-0c1d2e3f4a5b"
OTHER_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def seen(found: ServiceObject | None) -> tuple[object, ...] | None:
    """What a service object shows, its key opened (sealed keys do not compare)."""
    if found is None:
        return None
    key = None if found.api_key is None else str(found.api_key)
    return (found.id, found.name, found.region, found.custom_url, key, found.created_at)


def test_service_objects_create_find_update_delete(stores: Stores) -> None:
    async def scenario(store: Store) -> None:
        created = await store.create_service_object(
            id=SERVICE_ID, name="Ops EU", region="eu", custom_url=None, api_key=Secret("k-1")
        )
        assert (created.name, created.region, created.custom_url) == ("Ops EU", "eu", None)
        assert str(created.api_key) == "k-1"
        assert "k-1" not in repr(created)
        assert seen(await store.get_service_object(SERVICE_ID)) == seen(created)
        found = await store.find_service_object("OPS eu")  # by name, case-insensitively
        assert found is not None
        assert found.id == SERVICE_ID
        wide = await store.find_service_object("\uff2fps \uff25\uff35")  # fullwidth: NFKC
        assert wide is not None
        assert wide.id == SERVICE_ID
        upper = await store.find_service_object(SERVICE_ID.upper())  # by id, any case
        assert upper is not None
        assert upper.id == SERVICE_ID
        assert await store.find_service_object("nobody") is None

        with pytest.raises(Conflict):
            await store.create_service_object(
                id=OTHER_ID, name="ops eu", region="us", custom_url=None, api_key=Secret("k")
            )
        with pytest.raises(Conflict):  # the id is taken too
            await store.create_service_object(
                id=SERVICE_ID, name="other", region="us", custom_url=None, api_key=Secret("k")
            )
        await store.create_service_object(
            id=OTHER_ID, name="Ops US", region="us", custom_url=None, api_key=Secret("k-2")
        )
        with pytest.raises(Conflict):
            await store.update_service_object(OTHER_ID, {"name": "OPS EU"})
        with pytest.raises(PayloadError):
            await store.update_service_object(OTHER_ID, {"region": "custom"})

        renamed = await store.update_service_object(SERVICE_ID, {"name": "Ops", "region": "eu"})
        assert renamed is not None
        assert (renamed.name, renamed.region, renamed.custom_url) == ("Ops", "eu", None)
        assert str(renamed.api_key) == "k-1"  # a patch without a key keeps it
        # Another destination takes the key along (without it: PayloadError, see
        # test_a_stored_key_moves_to_a_new_destination_only_with_the_key).
        moved = await store.update_service_object(
            SERVICE_ID,
            {"region": "custom", "custom_url": "https://og.example", "api_key": Secret("k-3")},
        )
        assert moved is not None
        assert (moved.name, moved.region, moved.custom_url) == (
            "Ops",
            "custom",
            "https://og.example",
        )
        assert str(moved.api_key) == "k-3"
        rekeyed = await store.update_service_object(SERVICE_ID, {"api_key": Secret("k-4")})
        assert rekeyed is not None
        assert str(rekeyed.api_key) == "k-4"
        assert await store.update_service_object("unknown", {"name": "x"}) is None
        # Created at the same moment (the store's clock stands still): in id order.
        assert [s.name for s in await store.list_service_objects()] == ["Ops US", "Ops"]

        assert await store.delete_service_object(SERVICE_ID) is True
        assert await store.delete_service_object(SERVICE_ID) is False
        assert await store.get_service_object(SERVICE_ID) is None
        assert [s.id for s in await store.list_service_objects()] == [OTHER_ID]

    stores.run(scenario)
