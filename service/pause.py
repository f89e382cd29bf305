"""Whether every delivery waits, and why.

Some answers say nothing about the incident and everything about the relay's access to
DX: a refused token (``not_authed``), a redirect (a wrong ``RELAY_DX_BASE_URL``), or no
DX configured at all. Trying each reference alone would fail each the same way, so the
worker pauses all of them, with a backoff that doubles from 5 s, and the next answer
DX accepts lifts the pause. ``relay_delivery_paused{reason}`` and ``/readyz`` say why.
"""

from __future__ import annotations

from prometheus_client import Gauge

from service.backoff import Backoff
from service.errors import DXUnusable

#: The first pause; each refusal in a row doubles it, up to the retry ceiling.
FIRST_PAUSE_SECONDS = 5.0
#: Doubling stops after this many pauses in a row, whatever the ceiling.
_MAX_DOUBLINGS = 10


class Pause:
    """The pause state of one worker, mirrored in the ``relay_delivery_paused`` gauge."""

    def __init__(self, gauge: Gauge, *, configured: bool, max_backoff: float) -> None:
        self._gauge = gauge
        self._configured = configured
        self._backoff = Backoff(
            base=FIRST_PAUSE_SECONDS,
            cap=min(max_backoff, FIRST_PAUSE_SECONDS * 2.0**_MAX_DOUBLINGS),
        )
        self._error: DXUnusable | None = None  # why delivery is paused, until ``until``
        self._in_a_row = 0
        self.until = 0.0
        gauge.labels("not_configured").set(0 if configured else 1)

    def reason(self, now: float) -> str | None:
        """What an operator reads in ``/readyz``; ``None`` while deliveries go out."""
        if not self._configured:
            return "DX is not configured (RELAY_DX_BASE_URL and RELAY_DX_TOKEN)"
        if self._error is not None and now < self.until:
            return f"{self._error.message}; retrying with backoff"
        return None

    def length(self, before: int) -> float:
        """How long a pause lasts after ``before`` pauses in a row."""
        return self._backoff.ceiling(before)

    def begin(self, error: DXUnusable, *, now: float) -> float:
        """Pause every delivery because of ``error``; returns the pause in seconds."""
        self._in_a_row += 1
        seconds = self.length(self._in_a_row - 1)
        self.show(error, until=now + seconds)
        return seconds

    def show(self, error: DXUnusable, *, until: float) -> None:
        """Mirror a pause decided elsewhere (another replica's, through the database)."""
        self.until = until
        if self._error is not None and self._error.code != error.code:
            self._gauge.labels(self._error.code).set(0)
        self._error = error
        self._gauge.labels(error.code).set(1)

    @property
    def shown(self) -> bool:
        """Whether a pause is in the gauge (in force, or over but not yet lifted)."""
        return self._error is not None

    def end(self) -> None:
        """DX took a request: whatever paused delivery is over."""
        if self._error is not None:
            self._gauge.labels(self._error.code).set(0)
        self._error, self._in_a_row, self.until = None, 0, 0.0


__all__ = ["FIRST_PAUSE_SECONDS", "Pause"]
