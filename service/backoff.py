"""How long to wait before asking a peer again: the one backoff every retry uses.

DX delivery (stored and in-process attempts), enrichment and backfill differ only in
their knobs, so each holds a ``Backoff`` value and asks it for a delay. The growth is
exponential with full jitter (AWS's "Exponential Backoff And Jitter"; tenacity's
``wait_random_exponential``): many references failing at once spread out instead of
coming back together. A peer's own ``Retry-After`` beats the computed wait, bounded
where a caller cannot afford to believe an hour.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

#: The longest ``Retry-After`` taken from any peer: a bogus day must not park a reference.
RETRY_AFTER_LIMIT = 3600.0
#: Doubling stops here; ``2 ** 30`` times any base is past every cap in use.
_MAX_DOUBLINGS = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """The knobs of one caller's retries.

    ``base`` is the ceiling of the first wait (attempt 0); each attempt doubles it up to
    ``cap``. The wait drawn below that ceiling is never shorter than ``floor``, so a
    tight loop cannot follow an unlucky draw. ``retry_after_cap`` bounds how long a
    peer's ``Retry-After`` is obeyed (``None``: as long as it asks).
    """

    base: float
    cap: float
    floor: float = 0.0
    retry_after_cap: float | None = None

    def ceiling(self, attempt: int) -> float:
        """The longest wait before ``attempt`` (counted from 0): the un-jittered curve."""
        return min(self.cap, self.base * 2.0 ** min(attempt, _MAX_DOUBLINGS))

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        *,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before ``attempt``; ``rng`` draws in ``[0, 1)``."""
        if retry_after is not None:
            wait = max(retry_after, 0.0)
            return wait if self.retry_after_cap is None else min(wait, self.retry_after_cap)
        return max(self.floor, rng() * self.ceiling(attempt))


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date.

    ``None`` when absent or unreadable; a date in the past (or NaN) means "now".
    """
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return min(seconds, RETRY_AFTER_LIMIT)


__all__ = ["RETRY_AFTER_LIMIT", "Backoff", "retry_after_seconds"]
