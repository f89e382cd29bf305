"""Wait for a condition with a deadline, instead of sleeping and hoping.

A fixed sleep is either too short (flaky on a loaded CI runner) or too long (slow everywhere).
Polling a predicate returns as soon as the condition holds and fails loudly when it never does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, TypeVar

__all__ = ["wait_for", "wait_for_async"]

T = TypeVar("T")


def _describe(predicate: Callable[[], object], message: str | None) -> str:
    name: str = getattr(predicate, "__qualname__", repr(predicate))
    return message or name


def wait_for(
    predicate: Callable[..., T | Literal[False] | None],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """Call `predicate` until it returns something truthy, and return that value.

    Raises AssertionError after `timeout` seconds, naming the condition and its last value,
    so a failing test says what it was waiting for. Use from synchronous tests only: it blocks.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {_describe(predicate, message)}; "
                f"last value: {value!r}"
            )
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[..., T | Literal[False] | None],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """`wait_for` for async tests: it yields to the event loop so in-process apps progress."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {_describe(predicate, message)}; "
                f"last value: {value!r}"
            )
        await asyncio.sleep(interval)
