"""What the worker does with each DX answer: the delivery policy, with no I/O of its own.

Given a pending reference and how DX answered, ``decide`` says what to record:

- accepted: ``Delivered``;
- refused for good (``PermanentError``): ``Failed``, shown to operators, never retried;
- refused for everyone (``DXUnusable``: the token, a redirect): ``PauseAll``;
- anything else (network, timeout, 429, 5xx): ``Retry`` at a time from the stored
  backoff, or DX's ``Retry-After``, which the schedule keeps even past the backoff cap.

Within one stored attempt a few quick tries happen first (``in_process_wait``); the
schedule lives in the store, so a restart resumes it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from service.backoff import Backoff
from service.errors import (
    DeliveryError,
    DXAuthError,
    DXRedirected,
    DXUnusable,
    PermanentError,
    RetryableError,
)
from service.store import Attempt, Pending

#: Tries of one request within one stored attempt.
IN_PROCESS_ATTEMPTS = 3
#: Longest ``Retry-After`` worth waiting for inside one attempt; longer goes to the store.
IN_PROCESS_WAIT_LIMIT = 5.0
#: Waits between those tries: 0.2 s doubling, at most 2 s.
IN_PROCESS_BACKOFF = Backoff(base=0.2, cap=2.0)
#: The stored schedule's first ceiling (seconds) and its shortest wait.
_STORED_BASE = 1.0
_STORED_FLOOR = 0.5


def stored_backoff(max_backoff: float) -> Backoff:
    """The schedule between stored attempts: 2 s doubling to ``max_backoff``, at least
    0.5 s; DX's ``Retry-After`` wins whatever its length (the store can wait)."""
    return Backoff(base=_STORED_BASE, cap=max_backoff, floor=_STORED_FLOOR)


@dataclass(frozen=True, slots=True)
class Delivered:
    """DX holds this version now."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class Retry:
    """Try this reference again at ``next_attempt_at``."""

    attempt: Attempt
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class Failed:
    """DX will never take this request as it is; an operator decides."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class PauseAll:
    """Every delivery waits: ``error`` would refuse any request."""

    attempt: Attempt
    error: DXUnusable


Decision = Delivered | Retry | Failed | PauseAll


def decide(
    pending: Pending,
    error: DeliveryError | None,
    *,
    http_status: int | None = None,
    now: float,
    took: float,
    backoff: Backoff,
    rng: Callable[[], float] = random.random,
) -> Decision:
    """What to record after DX answered ``pending``'s request (``error is None``: with
    ``http_status``, accepted)."""
    if error is None:
        return Delivered(
            Attempt(
                at=now,
                version=pending.version,
                outcome="delivered",
                http_status=http_status,
                error_code=None,
                detail=None,
                duration_seconds=took,
            )
        )
    attempt = Attempt(
        at=now,
        version=pending.version,
        outcome=outcome_of(error),
        http_status=error.http_status,
        error_code=code_of(error),
        detail=error.message[:1000],
        duration_seconds=took,
    )
    if isinstance(error, PermanentError):
        return Failed(attempt)
    if isinstance(error, DXUnusable):
        return PauseAll(attempt, error)
    retry_after = error.retry_after if isinstance(error, RetryableError) else None
    delay = backoff.delay(pending.attempts + 1, retry_after, rng=rng)
    return Retry(attempt, now + delay)


def after_crash(
    pending: Pending,
    exc: Exception,
    *,
    now: float,
    backoff: Backoff,
    rng: Callable[[], float] = random.random,
) -> Retry:
    """A bug or a store hiccup while delivering: try later with backoff, never at once,
    or the worker would spin on the reference."""
    return Retry(
        Attempt(
            at=now,
            version=pending.version,
            outcome="error",
            http_status=None,
            error_code="internal_error",
            detail=type(exc).__name__,
            duration_seconds=0.0,
        ),
        now + backoff.delay(pending.attempts + 1, rng=rng),
    )


def unchanged(pending: Pending, *, now: float) -> Attempt:
    """The version asks for what DX already holds (a note, a replay, a second delete)."""
    return Attempt(
        at=now,
        version=pending.version,
        outcome="unchanged",
        http_status=None,
        error_code=None,
        detail="DX already holds this state",
        duration_seconds=0.0,
    )


def in_process_wait(
    tries: int, error: DeliveryError, *, rng: Callable[[], float] = random.random
) -> float | None:
    """Seconds before trying again after ``tries`` failed tries of one request; ``None``
    when this attempt ends here and the store schedules the next.

    Only a retryable error is tried again, and not when DX asks for a long pause.
    """
    if not isinstance(error, RetryableError) or tries >= IN_PROCESS_ATTEMPTS:
        return None
    if error.retry_after is not None and error.retry_after > IN_PROCESS_WAIT_LIMIT:
        return None
    return IN_PROCESS_BACKOFF.delay(tries - 1, error.retry_after, rng=rng)


def outcome_of(error: DeliveryError) -> str:
    """The ``outcome`` label of a refused request, in metrics, logs and history."""
    if isinstance(error, PermanentError):
        return "permanent"
    if isinstance(error, DXAuthError):
        return "auth"
    if isinstance(error, DXRedirected):
        return "redirected"
    return "retryable"


def code_of(error: DeliveryError | None) -> str | None:
    """DX's error code, or our name for what went wrong; ``None`` for success."""
    if error is None:
        return None
    if isinstance(error, PermanentError | RetryableError | DXUnusable):
        return error.code
    return "other"


__all__ = [
    "IN_PROCESS_ATTEMPTS",
    "IN_PROCESS_WAIT_LIMIT",
    "Decision",
    "Delivered",
    "Failed",
    "PauseAll",
    "Retry",
    "after_crash",
    "code_of",
    "decide",
    "in_process_wait",
    "outcome_of",
    "stored_backoff",
]
