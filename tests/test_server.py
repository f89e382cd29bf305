"""``service.server``: the process settings ``serve`` applies before uvicorn starts."""

from __future__ import annotations

import json
import subprocess
import sys

from service.server import YOUNG_COLLECTION_THRESHOLD

_SETTLE = """
import gc, json
import service.app  # everything ``serve`` imports before it settles the heap
from service.server import settle_heap
before = len(gc.get_objects())
settle_heap()
print(json.dumps({
    "before": before,
    "frozen": gc.get_freeze_count(),
    "walked": len(gc.get_objects()),
    "threshold": gc.get_threshold(),
}))
"""


def test_settle_heap_leaves_the_startup_heap_out_of_every_collection() -> None:
    """In a process of its own: freezing is for good, and would change this one's tests."""
    out = subprocess.run(
        [sys.executable, "-c", _SETTLE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    heap = json.loads(out)
    # The modules and their objects are tens of thousands; a full collection walked all.
    assert heap["before"] > 10_000
    assert heap["frozen"] >= heap["before"] * 0.9
    assert heap["walked"] < 100
    assert heap["threshold"][0] == YOUNG_COLLECTION_THRESHOLD
    assert heap["threshold"][1:] == [10, 10]  # the older generations keep CPython's defaults
