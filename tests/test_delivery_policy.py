"""The delivery policy alone: DX's answer in, what to record out. No I/O, no clock."""

from __future__ import annotations

import random

import pytest

from service import delivery_policy as policy
from service.delivery_policy import Delivered, Failed, PauseAll, Retry
from service.errors import (
    DeliveryError,
    DXAuthError,
    DXRedirected,
    PermanentError,
    RetryableError,
)
from service.opsgenie import OpsgenieEvent
from service.store import Pending
from service.translate import fold

NOW = 1_800_000_000.0
BACKOFF = policy.stored_backoff(300.0)


def pending(*, attempts: int = 0, version: int = 3) -> Pending:
    return Pending(
        reference_id="opsgenie-a",
        service_id=None,
        state=fold(None, OpsgenieEvent(action="Create", alert_id="a", stamp_ns=1)),
        version=version,
        attempts=attempts,
        ever_delivered=False,
        pending_since=NOW - 5,
    )


def decide(error: DeliveryError | None, *, attempts: int = 0, draw: float = 1.0) -> policy.Decision:
    return policy.decide(
        pending(attempts=attempts),
        error,
        http_status=200 if error is None else None,
        now=NOW,
        took=0.25,
        backoff=BACKOFF,
        rng=lambda: draw,
    )


def test_an_accepted_request_is_delivered() -> None:
    decision = decide(None)
    assert isinstance(decision, Delivered)
    attempt = decision.attempt
    assert (attempt.at, attempt.version, attempt.outcome) == (NOW, 3, "delivered")
    assert (attempt.http_status, attempt.error_code, attempt.detail) == (200, None, None)
    assert attempt.duration_seconds == 0.25


def test_a_permanent_refusal_fails_the_reference() -> None:
    error = PermanentError("DX answered 422: ...", code="invalid_arguments", http_status=422)
    decision = decide(error)
    assert isinstance(decision, Failed)
    attempt = decision.attempt
    assert (attempt.outcome, attempt.error_code, attempt.http_status) == (
        "permanent",
        "invalid_arguments",
        422,
    )
    assert attempt.detail == "DX answered 422: ..."


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (DXAuthError("DX refused the token", http_status=401), "auth"),
        (DXRedirected("DX answered 301", http_status=301), "redirected"),
    ],
)
def test_an_answer_that_refuses_everyone_pauses_all(error: DeliveryError, outcome: str) -> None:
    decision = decide(error)
    assert isinstance(decision, PauseAll)
    assert decision.error is error
    assert (decision.attempt.outcome, decision.attempt.error_code) == (outcome, decision.error.code)


def test_a_retryable_error_is_tried_again_after_the_backoff() -> None:
    # The reference's second attempt: 2 s doubling per attempt, full jitter.
    decision = decide(RetryableError("DX answered 503", code="http_503"), attempts=1, draw=1.0)
    assert isinstance(decision, Retry)
    assert decision.next_attempt_at == NOW + 4.0
    assert decision.attempt.outcome == "retryable"
    low = decide(RetryableError("DX answered 503"), attempts=1, draw=0.0)
    assert isinstance(low, Retry)
    assert low.next_attempt_at == NOW + 0.5  # never at once


def test_dx_retry_after_beats_the_backoff_cap() -> None:
    error = RetryableError("DX answered 429", retry_after=900.0, code="rate_limited")
    decision = decide(error, attempts=20)
    assert isinstance(decision, Retry)
    assert decision.next_attempt_at == NOW + 900.0


def test_stored_waits_stay_between_half_a_second_and_the_cap() -> None:
    rng = random.Random(7).random
    backoff = policy.stored_backoff(300.0)
    delays = [backoff.delay(n, rng=rng) for n in range(1, 12)]
    assert all(0.5 <= d <= 300 for d in delays)
    assert max(delays[-3:]) > max(delays[:3])


def test_a_crash_is_retried_with_backoff_not_at_once() -> None:
    retry = policy.after_crash(
        pending(attempts=2), KeyError("x"), now=NOW, backoff=BACKOFF, rng=lambda: 1.0
    )
    assert retry.next_attempt_at == NOW + 8.0
    attempt = retry.attempt
    assert (attempt.outcome, attempt.error_code, attempt.detail) == (
        "error",
        "internal_error",
        "KeyError",
    )


def test_an_unchanged_version_is_recorded_without_a_request() -> None:
    attempt = policy.unchanged(pending(), now=NOW)
    assert (attempt.outcome, attempt.http_status, attempt.version) == ("unchanged", None, 3)


@pytest.mark.parametrize(
    ("tries", "error", "wait"),
    [
        (1, RetryableError("503"), 0.2),
        (2, RetryableError("503"), 0.4),
        (3, RetryableError("503"), None),  # three tries, then the store schedules
        (1, RetryableError("429", retry_after=1.5), 1.5),
        (1, RetryableError("429", retry_after=6.0), None),  # long: the store waits
        (1, PermanentError("422", code="invalid_arguments"), None),
        (1, DXAuthError("401"), None),
    ],
)
def test_in_process_tries(tries: int, error: DeliveryError, wait: float | None) -> None:
    assert policy.in_process_wait(tries, error, rng=lambda: 1.0) == wait


def test_in_process_waits_never_pass_two_seconds() -> None:
    assert policy.in_process_wait(2, RetryableError("503"), rng=lambda: 0.5) == 0.2
    assert policy.IN_PROCESS_BACKOFF.ceiling(10) == 2.0


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (PermanentError("x", code="metadata_invalid"), "permanent", "metadata_invalid"),
        (RetryableError("x", code="timeout"), "retryable", "timeout"),
        (DXAuthError("x"), "auth", "not_authed"),
        (DXRedirected("x"), "redirected", "redirected"),
        (DeliveryError("x"), "retryable", "other"),
    ],
)
def test_labels_of_a_refusal(error: DeliveryError, outcome: str, code: str) -> None:
    assert (policy.outcome_of(error), policy.code_of(error)) == (outcome, code)
    assert policy.code_of(None) is None
