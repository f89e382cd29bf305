"""DX misbehaving in turns while a load runs: 503 bursts, 429 with Retry-After, stalls.

One fault switched on by a test is a unit test; a relay under load meets them one after
another, at moments no test chose, and between replicas that each see a different part.
``Flapping`` picks the next misbehaviour from a seeded ``random.Random`` every ``period``
seconds on a thread of its own, through ``FakeDX``'s switches, until it is stopped; the
seed makes a failing run repeatable in what was switched on, if not in when.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

from tests.fakes.dx import FakeDX

__all__ = ["FlapProfile", "Flapping"]

KINDS = ("503", "429", "stall", "calm")


@dataclass(frozen=True, slots=True)
class FlapProfile:
    """How hard DX flaps: each turn answers ``burst`` requests 503, or ``limited`` 429 with
    ``retry_after``, or holds ``stalled`` requests ``stall`` seconds each, or does nothing.
    A stall must stay below the relay's DX timeout, or the relay gives up on the request and
    sends it again while DX still holds the first: an overlap no replica caused."""

    period: float = 1.0
    burst: tuple[int, int] = (3, 15)
    limited: tuple[int, int] = (1, 3)
    retry_after: float = 1.0
    stalled: tuple[int, int] = (1, 4)
    stall: float = 1.5


class Flapping:
    """Switch ``fake``'s misbehaviour in turns until ``stop()`` (or the ``with`` block ends),
    which also switches everything off, queued turns included.

    ``turns`` counts what was switched on, by kind ("503", "429", "stall", "calm"), so a test
    can show the load really met each one.
    """

    def __init__(
        self, fake: FakeDX, rng: random.Random, profile: FlapProfile = FlapProfile()
    ) -> None:
        self.fake = fake
        self.profile = profile
        self.turns: Counter[str] = Counter()
        self._rng = rng
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dx-flapping", daemon=True)

    def start(self) -> Flapping:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the flapping thread did not stop"
        self.fake.calm()

    def turn(self) -> str:
        """Switch the last turn's leftovers off and the next misbehaviour on; say which."""
        profile, rng = self.profile, self._rng
        self.fake.calm()
        kind = rng.choice(KINDS)
        if kind == "503":
            self.fake.fail_next(rng.randint(*profile.burst), status=503)
        elif kind == "429":
            self.fake.rate_limit_next(rng.randint(*profile.limited), profile.retry_after)
        elif kind == "stall":
            self.fake.stall_next(rng.randint(*profile.stalled), profile.stall)
        self.turns[kind] += 1
        return kind

    def _run(self) -> None:
        while not self._stop.wait(self.profile.period):
            self.turn()

    def __enter__(self) -> Flapping:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
