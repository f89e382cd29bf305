"""The intake writer process's own code: the batch append, its frames, and its death with
the relay. Real SQLite files migrated to the relay's schema, real processes."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec

from service.store.sqlite import intake
from service.store.sqlite.intake import HEADER, Row, append, frame, serve
from service.store.sqlite.schema import migrate
from tests.fakes.polling import wait_for


def database(path: Path) -> Path:
    conn = intake.connect(str(path))
    migrate(conn)
    conn.close()
    return path


def row(key: str, alert: str = "a1") -> Row:
    return (key, f"opsgenie-{alert}", alert, "Create", None, 1_700_000_000.5, '{"x": 1}')


def answers(sink: bytes) -> list[object]:
    found = []
    while sink:
        end = HEADER + int.from_bytes(sink[:HEADER], "little")
        found.append(msgspec.msgpack.decode(sink[HEADER:end]))
        sink = sink[end:]
    return found


def test_a_batch_is_one_commit_and_duplicates_are_told_apart(tmp_path: Path) -> None:
    path = database(tmp_path / "x.db")
    conn = intake.connect(str(path))
    try:
        assert append(conn, [row("k1"), row("k2", "a2")]) == [True, True]
        # k1 again (stored before), k3 new, k3 again within the batch
        assert append(conn, [row("k1"), row("k3"), row("k3")]) == [False, True, False]
        assert not conn.in_transaction  # autocommit: committed when append returns
        # A stored row before an ignored one: the ignored row uses up an id of
        # AUTOINCREMENT's, so the new rows' ids do not say which rows are new.
        assert append(conn, [row("k4"), row("k2"), row("k5")]) == [True, False, True]
    finally:
        conn.close()
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM events").fetchone()[0] == 5
        assert other.execute("SELECT count(*) FROM inbox").fetchone()[0] == 5


def test_serve_answers_ready_then_each_batch_and_a_failed_batch_stores_nothing(
    tmp_path: Path,
) -> None:
    """A batch the database refuses is answered with why, and the next one still works."""
    path = database(tmp_path / "x.db")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.alert_id = 'bad'"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    source = io.BytesIO(
        frame([row("k1")]) + frame([row("k2", "ok"), row("k3", "bad")]) + frame([row("k4")])
    )
    sink = io.BytesIO()
    serve(str(path), source, sink)
    assert answers(sink.getvalue()) == [None, [True], "refused by the test", [True]]
    with sqlite3.connect(path) as conn:
        keys = [r[0] for r in conn.execute("SELECT dedup_key FROM events ORDER BY id")]
    assert keys == ["k1", "k4"]


def test_a_database_that_cannot_be_opened_is_answered_instead_of_ready(tmp_path: Path) -> None:
    sink = io.BytesIO()
    serve(str(tmp_path / "missing" / "x.db"), io.BytesIO(), sink)
    [answer] = answers(sink.getvalue())
    assert isinstance(answer, str)
    assert answer.startswith("cannot open database")


def test_the_process_dies_with_the_relay_even_by_sigkill(tmp_path: Path) -> None:
    """A stand-in relay starts the writer as the relay does, then is SIGKILLed: the writer
    must not outlive it (it would hold the file for a relay started after)."""
    path = database(tmp_path / "x.db")
    relay = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            f"child = subprocess.Popen([sys.executable, '-I', {intake.__file__!r}, "
            f"{str(path)!r}, str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
            "child.stdout.read(5)\n"  # the ready frame: the child is set up
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        child = int(relay.stdout.readline())
        assert alive(child)
        os.kill(relay.pid, signal.SIGKILL)
        relay.wait(timeout=30)
        wait_for(lambda: not alive(child), 30, message="the writer process to end")
    finally:
        relay.kill()
        relay.wait()


def test_end_of_input_ends_the_process(tmp_path: Path) -> None:
    path = database(tmp_path / "x.db")
    child = subprocess.Popen(
        [sys.executable, "-I", intake.__file__, str(path), str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    out, _ = child.communicate(frame([row("k1")]), timeout=30)
    assert child.returncode == 0
    assert answers(out) == [None, [True]]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (nobody reaps an orphan's child at once)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
