"""The one backoff: exponential growth with full jitter, a floor, a cap, and Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.backoff import RETRY_AFTER_LIMIT, Backoff, retry_after_seconds

NOW = 1_800_000_000.0


def test_the_ceiling_doubles_from_base_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_the_ceiling_of_a_huge_attempt_is_the_cap_not_an_overflow() -> None:
    assert Backoff(base=1.0, cap=300.0).ceiling(10**6) == 300.0


def test_full_jitter_draws_anywhere_below_the_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=300.0)
    assert backoff.delay(3, rng=lambda: 1.0) == 8.0
    assert backoff.delay(3, rng=lambda: 0.25) == 2.0
    assert backoff.delay(3, rng=lambda: 0.0) == 0.0


def test_the_floor_bounds_an_unlucky_draw() -> None:
    backoff = Backoff(base=1.0, cap=300.0, floor=0.5)
    assert backoff.delay(3, rng=lambda: 0.0) == 0.5
    assert backoff.delay(3, rng=lambda: 1.0) == 8.0


def test_retry_after_beats_the_computed_wait_and_its_cap() -> None:
    backoff = Backoff(base=1.0, cap=10.0)
    assert backoff.delay(5, 42.0, rng=lambda: 1.0) == 42.0
    assert backoff.delay(5, 0.0, rng=lambda: 1.0) == 0.0
    assert backoff.delay(5, -3.0, rng=lambda: 1.0) == 0.0


def test_retry_after_is_bounded_where_the_caller_says() -> None:
    backoff = Backoff(base=1.0, cap=10.0, floor=0.5, retry_after_cap=60.0)
    assert backoff.delay(0, 10_000.0) == 60.0
    assert backoff.delay(0, 2.5) == 2.5
    assert backoff.delay(0, 0.0) == 0.0  # "now" stays now: the floor is for draws only


@given(
    attempt=st.integers(min_value=0, max_value=100),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_a_drawn_delay_stays_between_floor_and_cap(attempt: int, draw: float) -> None:
    backoff = Backoff(base=1.0, cap=300.0, floor=0.5)
    assert 0.5 <= backoff.delay(attempt, rng=lambda: draw) <= 300.0


def test_waits_grow_over_attempts() -> None:
    rng = random.Random(7).random
    backoff = Backoff(base=1.0, cap=300.0, floor=0.5)
    delays = [backoff.delay(n, rng=rng) for n in range(1, 12)]
    assert max(delays[-3:]) > max(delays[:3])


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("soon", None),
        ("1.5", 1.5),
        ("120", 120.0),
        ("-4", 0.0),
        ("nan", 0.0),
        ("99999", RETRY_AFTER_LIMIT),
    ],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.fromtimestamp(NOW + 30, tz=UTC), usegmt=True)
    earlier = format_datetime(datetime.fromtimestamp(NOW - 30, tz=UTC), usegmt=True)
    assert retry_after_seconds(later, now=NOW) == pytest.approx(30.0)
    assert retry_after_seconds(earlier, now=NOW) == 0.0
