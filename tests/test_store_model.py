"""Every store backend against a model: no accepted event is ever left out of what DX gets.

Hypothesis drives a store (SQLite: a real file; PostgreSQL: a database of its own)
through random interleavings of what intake, the delivery worker, retention and operators
do to it: events in any order, duplicates, claims, every way a delivery ends, pruning,
restarts that drop whatever was in flight, with a fold budget of two events per claim so
that folding is spread over rounds. The model is the plainest possible one: every accepted
event of an alert, folded in the order accepted. Every claim must carry exactly that state,
and once everything is drained each alert's last delivered state must be it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from service.opsgenie import parse_event
from service.store import Outcome, Pending, Status
from service.translate import AlertState, dump_state, fold
from tests.store_backends import (
    Backend,
    Clock,
    backend_fixture,  # noqa: F401  (the ``backend`` fixture)
    body,
    event,
)
from tests.store_backends import attempt as make_attempt

ALERTS = ("alert-a", "alert-b", "alert-c")
ACTIONS = ("Create", "Acknowledge", "UnAcknowledge", "AddNote", "Close", "Escalate")


class StoreAgainstModel(RuleBasedStateMachine):
    #: The backend under test; each test sets it on a subclass of its own.
    backend: Backend

    def __init__(self) -> None:
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="store-model-"))
        self.clock = Clock()
        self.loop = asyncio.new_event_loop()
        # Two events per claim: an alert's backlog is folded over several rounds.
        self.store = self.backend.make(self.workdir, self.clock, 2)
        self.run(self.store.open())
        self.sent: dict[str, float] = {}  # raw body accepted -> when, for duplicates
        self.pruned_before = 0.0  # events received before this may have been pruned
        self.expected: dict[str, AlertState] = {}  # reference -> fold of every accepted event
        self.accepted: dict[str, int] = {}  # reference -> events accepted (its version)
        self.filtered_at: dict[str, int] = {}  # reference -> version a filter answered
        self.in_flight: dict[str, Pending] = {}

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def teardown(self) -> None:
        try:
            self.drain_and_check()
        finally:
            self.run(self.store.close())
            self.loop.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- intake ------------------------------------------------------------------------

    @rule(
        burst=st.lists(
            st.tuples(
                st.sampled_from(ALERTS),
                st.sampled_from(ACTIONS),
                st.integers(-30, 30),
                st.sampled_from(("P1", "P2", "P3", "P4", "P5")),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def webhooks(self, burst: list[tuple[str, str, int, str]]) -> None:
        """Events, possibly older than ones already stored (Opsgenie reorders)."""
        for alert, action, seconds, priority in burst:
            self.webhook(alert, action, seconds, priority)

    def webhook(self, alert: str, action: str, seconds: int, priority: str) -> None:
        document = body(alert, seconds, action=action, priority=priority)
        # Every body differs, and every event leaves a mark no later event can hide (a
        # tag of its own, with no whole tag list to supersede it): one left out shows.
        document["alert"]["message"] = f"message {len(self.sent)}"
        del document["alert"]["tags"]
        document["alert"]["addedTags"] = f"event-{len(self.sent)}"
        raw = json.dumps(document)
        incoming = event(document, received_at=self.clock.now, raw=raw)
        assert self.run(self.store.accept(incoming)) is Outcome.ACCEPTED
        self.sent[raw] = self.clock.now
        self.stored(raw, incoming.reference_id)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """The same body again. Only the stored event remembers it was seen: once
        retention has pruned that, it is accepted anew (and folds to the same state)."""
        raw = data.draw(st.sampled_from(sorted(self.sent)))
        incoming = event(json.loads(raw), received_at=self.clock.now, raw=raw)
        outcome = self.run(self.store.accept(incoming))
        if outcome is Outcome.ACCEPTED:
            assert self.sent[raw] < self.pruned_before, "a duplicate of a stored event"
            self.sent[raw] = self.clock.now
            self.stored(raw, incoming.reference_id)
        else:
            assert outcome is Outcome.DUPLICATE

    def stored(self, raw: str, ref: str) -> None:
        parsed = parse_event(raw.encode(), received_ns=int(self.clock.now * 1e9))
        self.expected[ref] = fold(self.expected.get(ref), parsed)
        self.accepted[ref] = self.accepted.get(ref, 0) + 1

    # ---- the delivery worker -----------------------------------------------------------

    @rule(limit=st.integers(1, 3))
    def claim(self, limit: int) -> None:
        claimed = self.run(
            self.store.due(now=self.clock.now, limit=limit, exclude=list(self.in_flight))
        )
        for pending in claimed:
            ref = pending.reference_id
            assert ref not in self.in_flight
            assert pending.version == self.accepted[ref]
            assert dump_state(pending.state) == dump_state(self.expected[ref])
            self.in_flight[ref] = pending

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), how=st.sampled_from(("delivered", "retry", "failed", "filtered")))
    def finish(self, data: st.DataObject, how: str) -> None:
        ref = data.draw(st.sampled_from(sorted(self.in_flight)))
        pending = self.in_flight.pop(ref)
        now = self.clock.now
        attempt = make_attempt(pending, now, how)
        request = {"reference_id": ref, "version": pending.version}
        if how == "delivered":
            self.run(
                self.store.record_delivered(
                    pending, request=request, response="{}", attempt=attempt
                )
            )
        elif how == "retry":
            self.run(
                self.store.record_retry(
                    pending, request=request, next_attempt_at=now + 30, attempt=attempt
                )
            )
        elif how == "failed":
            self.run(
                self.store.record_failed(pending, request=request, response="{}", attempt=attempt)
            )
        else:
            self.run(self.store.record_filtered(pending))
            self.filtered_at[ref] = pending.version

    # ---- time, retention, operators, restarts ------------------------------------------

    @rule(seconds=st.sampled_from((1, 30, 3600)))
    def time_passes(self, seconds: int) -> None:
        self.clock.now += seconds

    @rule(age=st.sampled_from((0, 10, 3600)))
    def retention(self, age: int) -> None:
        before = self.clock.now - age
        self.run(self.store.prune_events(before=before, limit=1000))
        self.pruned_before = max(self.pruned_before, before)

    @rule()
    def operator_retries_failed(self) -> None:
        self.run(self.store.retry_all_failed(now=self.clock.now))

    @rule()
    def restart(self) -> None:
        """What was in flight is gone, as after a crash; the store must not need it."""
        self.run(self.store.close())
        self.in_flight.clear()
        self.run(self.store.open())

    # ---- the end: everything reaches DX ------------------------------------------------

    def drain_and_check(self) -> None:
        self.in_flight.clear()
        self.run(self.store.retry_all_failed(now=self.clock.now))
        later = self.clock.now + 10**6
        delivered: dict[str, AlertState] = {}
        for _ in range(1000):
            if self.run(self.store.stats()).pending == 0:
                break
            for pending in self.run(self.store.due(now=later, limit=5, exclude=[])):
                ref = pending.reference_id
                assert dump_state(pending.state) == dump_state(self.expected[ref])
                attempt = make_attempt(pending, later, "success")
                self.run(
                    self.store.record_delivered(pending, request={}, response="{}", attempt=attempt)
                )
                delivered[ref] = pending.state
        else:
            raise AssertionError("the outbox never drained")
        for ref, state in self.expected.items():
            found = self.run(self.store.get(ref))
            assert found is not None
            if found.status == Status.FILTERED:
                # Filtered at the newest version: nothing after it to deliver.
                assert self.filtered_at.get(ref) == self.accepted[ref]
                continue
            assert found.status == Status.DELIVERED, (ref, found.status)
            if ref in delivered:
                assert dump_state(delivered[ref]) == dump_state(state)


def test_no_accepted_event_is_left_out_of_what_is_delivered(backend: Backend) -> None:
    machine = type("Machine", (StoreAgainstModel,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
