"""How much memory a step costs, from ``/proc/self/status`` of the process running it.

Tests about hostile answers measure the peak (``VmHWM``), not the RSS after the fact: a
100 MB body read and dropped leaves RSS low again, but the peak remembers it. Writing 5
to ``/proc/self/clear_refs`` resets the peak to the current RSS, so the peak after the step
is the step's own, whatever earlier tests in the same process did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["MB", "peak_growth"]

T = TypeVar("T")
MB = 1024 * 1024


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (``VmRSS``: now, ``VmHWM``: peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def peak_growth(run: Callable[[], T]) -> tuple[T, int]:
    """``run()``'s result, and how far this process's peak RSS rose above its RSS before."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    result = run()
    return result, _status("VmHWM") - before
