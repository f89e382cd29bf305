"""Work only one replica may do at a time, behind one seam: a ``Lease``.

The retention pruner, the outbox gauges and the automatic reconcile each ask the lease
before a round and skip the round without it. A relay alone on its database (SQLite)
always holds it (``sole_runner``); on PostgreSQL it is an advisory lock
(``service.store.postgres.singleton``), so with N replicas one prunes, one reports the
backlog (a sum over pods is the backlog, not N times it) and one asks Opsgenie.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

#: Entered around one round of the work: yields whether this process may do it now.
Lease = Callable[[], AbstractAsyncContextManager[bool]]


@contextlib.asynccontextmanager
async def sole_runner() -> AsyncIterator[bool]:
    """The lease of a relay alone on its database (SQLite): it always holds."""
    yield True


__all__ = ["Lease", "sole_runner"]
