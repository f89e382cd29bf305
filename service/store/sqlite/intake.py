"""Intake's writer process: appends a batch of webhooks to the SQLite file, one commit each.

The relay starts this module as its own process (``intake_process.py``): the appends, their
commit and its fsync then run beside the event loop instead of sharing its GIL. It imports
nothing from the relay (so it starts in milliseconds and holds little memory), reads frames
from standard input and answers each on standard output. A frame is a 4-byte little-endian
length and a msgpack document:

- in: one batch, a list of rows ``[dedup_key, reference_id, alert_id, action, service_id,
  received_at, raw]``; the parent sends the next only after this one's answer, so at most
  one batch is ever uncommitted;
- out: ``None`` once the database is open, then per batch either a list of booleans (stored;
  ``False``: a duplicate) after the commit has reached disk, or a string saying why nothing
  of the batch was stored.

It exits on end of input, and when the relay dies (``PR_SET_PDEATHSIG``), so it never
outlives it; a kill of either side loses nothing answered (an answer follows its commit).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sqlite3
import sys
from typing import Any, BinaryIO

import msgspec

_INSERT = (
    "INSERT OR IGNORE INTO events"
    " (dedup_key, reference_id, alert_id, action, service_id, received_at, raw) VALUES "
)
#: One webhook's values: placeholders only, so the statement holds no input.
_ROW = "(?, ?, ?, ?, ?, ?, ?)"
#: WAL pages past which a commit checkpoints by itself, as the writer thread's connection
#: (the relay's checkpointer thread does it every tenth of a second otherwise).
AUTOCHECKPOINT = 10_000
_PR_SET_PDEATHSIG = 1
HEADER = 4

Row = tuple[str, str, str, str, str | None, float, str]


def append(conn: sqlite3.Connection, rows: list[Row]) -> list[bool]:
    """Store a batch with one statement, which SQLite commits on its own (autocommit);
    ``False`` for a duplicate (the same body stored before, or twice in this batch).

    One multi-row INSERT: a JSON parameter unpacked by ``json_each`` costs 8 us more per
    row than plain parameters. The ``event_into_inbox`` trigger records each stored event
    as not folded yet; nothing else is written here. ``RETURNING`` names the rows stored:
    their ids cannot, as an ignored row may use up an id of AUTOINCREMENT's.
    """
    params = [value for row in rows for value in row]
    fresh = {key for (key,) in conn.execute(_insert(len(rows)), params)}
    if len(fresh) == len(rows):
        return [True] * len(rows)
    stored = []
    for row in rows:
        if row[0] in fresh:
            fresh.discard(row[0])  # the same body again in this batch: a duplicate
            stored.append(True)
        else:
            stored.append(False)
    return stored


@functools.lru_cache(maxsize=64)
def _insert(rows: int) -> str:
    """The INSERT for ``rows`` webhooks, built once per batch size; SQLite prepares it once
    too (the connection's statement cache is keyed by the text). SQLite caps a statement's
    parameters (32,766 by default: 4,680 webhooks), far above the relay's batch size.
    """
    return _INSERT + ", ".join([_ROW] * rows) + " RETURNING dedup_key"


def frame(document: Any) -> bytes:
    body = msgspec.msgpack.encode(document)
    return len(body).to_bytes(HEADER, "little") + body


def _read(stream: BinaryIO) -> bytes | None:
    """The next frame's body, or None at end of input."""
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None
    size = int.from_bytes(header, "little")
    body = stream.read(size)
    return body if len(body) == size else None


def _die_with(parent: int) -> None:
    """Be killed when the relay dies, even by SIGKILL (Linux); end of input covers the rest."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def connect(path: str) -> sqlite3.Connection:
    """The relay's settings for every connection (``engine.connect``): WAL, and a commit is
    on disk before it returns (``synchronous=FULL``)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT}")
    return conn


def serve(path: str, source: BinaryIO, sink: BinaryIO) -> None:
    """Answer batches from ``source`` on ``sink`` until end of input."""
    decode = msgspec.msgpack.Decoder(list[tuple[str, str, str, str, str | None, float, str]])
    try:
        conn = connect(path)
    except sqlite3.Error as error:
        sink.write(frame(f"cannot open database: {error}"))
        sink.flush()
        return
    sink.write(frame(None))
    sink.flush()
    try:
        while (body := _read(source)) is not None:
            rows: list[Row] = decode.decode(body)
            answer: list[bool] | str
            try:
                answer = append(conn, rows)
            except sqlite3.Error as error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                answer = str(error)
            sink.write(frame(answer))
            sink.flush()
    finally:
        conn.close()


def main() -> None:
    """``python intake.py DATABASE PARENT_PID``, started by ``intake_process.IntakeProcess``."""
    path, parent = sys.argv[1], int(sys.argv[2])
    _die_with(parent)
    # A Ctrl-C or a SIGTERM to the process group is the relay's to handle: it drains its
    # requests through this process, then closes our input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(path, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
