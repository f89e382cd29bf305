"""The token bucket toward DX, on a fake clock: its pace, its burst, and a 429's hold."""

from __future__ import annotations

import asyncio

import pytest

from service.rate_limit import RateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_requests() -> None:
    time = FakeTime()

    async def scenario() -> None:
        limiter = RateLimiter(2.0, clock=time.clock, sleep=time.sleep)
        for _ in range(6):
            await limiter.acquire()
        limiter.hold(10.0)
        await limiter.acquire()

    asyncio.run(scenario())
    # A burst of 2, then one every 0.5 s (4 more: 2 s); the hold adds its 10 s.
    assert time.now == pytest.approx(2.0 + 10.0, abs=0.01)


def test_a_burst_of_one_seconds_worth_goes_at_once() -> None:
    time = FakeTime()

    async def scenario() -> None:
        limiter = RateLimiter(5.0, clock=time.clock, sleep=time.sleep)
        for _ in range(5):
            await limiter.acquire()

    asyncio.run(scenario())
    assert time.sleeps == []


def test_a_shorter_hold_does_not_cut_a_longer_one() -> None:
    time = FakeTime()

    async def scenario() -> None:
        limiter = RateLimiter(100.0, clock=time.clock, sleep=time.sleep)
        limiter.hold(30.0)
        limiter.hold(1.0)
        await limiter.acquire()

    asyncio.run(scenario())
    assert time.now == pytest.approx(30.0)
