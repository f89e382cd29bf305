"""Intake's appends, committed by a writer process of their own (``intake.py``).

A writer thread shares the GIL with the event loop: each of its turns at Python (building
the batch's parameters, answering the callers) waits for the loop and makes the loop wait.
A process has its own: the loop hands a batch over as one pipe write and reads one answer
per commit, and the statement, its commit and the fsync run on the other core. The loop
side groups commits as the writer thread did: one batch in the process at a time, and all
webhooks that arrive meanwhile go in the next one.

The file still has one writer at a time. SQLite would let the engine's writer thread and
this process race for its lock, the loser sleeping and polling (1, 2, 5, 10 ms, ...), so
under intake load the writer thread (the delivery worker's claims) would starve. ``Turn``
passes the file between them instead: the writer thread asks for it, and intake gives it
up after the batch in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from service.errors import StoreUnavailable
from service.store.sqlite import intake
from service.store.sqlite.intake import HEADER, Row, frame

log = logging.getLogger("service.store")


class Turn:
    """Who writes the file now: the intake process (a batch at a time) or the writer thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Set by the writer thread while it waits: intake sends no next batch then.
        self.wanted = False
        #: Set by intake when it found the turn taken: the writer thread then calls
        #: ``released`` after its turn, so the batches waiting go out.
        self.waiting = False
        self.released: Callable[[], None] = lambda: None

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """The writer thread's turn: waits (without the GIL) for intake's batch in flight."""
        self.wanted = True
        self.lock.acquire()
        self.wanted = False
        try:
            yield
        finally:
            self.lock.release()
            if self.waiting:  # read after the release: intake sets it before it tries
                self.waiting = False
                self.released()


class _Pipes(asyncio.SubprocessProtocol):
    """The process's standard output, cut into frames, and its end."""

    def __init__(
        self, answer: Callable[[Any], None], lost: Callable[[], None], gone: asyncio.Future[None]
    ) -> None:
        self._buffer = bytearray()
        self._answer = answer
        self._lost = lost
        self._gone = gone

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        buffer = self._buffer
        buffer += data  # type: ignore[arg-type]  # bytes: the pipes are binary
        while len(buffer) >= HEADER:
            end = HEADER + int.from_bytes(buffer[:HEADER], "little")
            if len(buffer) < end:
                return
            document = msgspec.msgpack.decode(buffer[HEADER:end])
            del buffer[:end]
            self._answer(document)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._lost()

    def process_exited(self) -> None:
        self._lost()
        if not self._gone.done():
            self._gone.set_result(None)


class _Child:
    """One running writer process and the pipe into it."""

    def __init__(self) -> None:
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.process: asyncio.SubprocessTransport | None = None
        self.input: asyncio.WriteTransport | None = None


class IntakeProcess:
    """``append`` a row, get whether it was stored (``False``: a duplicate), after its commit
    reached disk. The process starts with ``open`` and again on the first append after it
    died; the appends it held then fail (``StoreUnavailable``: 503, the sender retries, and
    a row that did commit is then a duplicate)."""

    def __init__(self, path: Path, turn: Turn, *, max_batch: int) -> None:
        self._path = path
        self._turn = turn
        self._max_batch = max_batch
        self._queued: list[tuple[asyncio.Future[bool], Row]] = []
        #: The callers whose batch the process holds; while any, intake holds the turn.
        self._in_flight: list[asyncio.Future[bool]] = []
        self._flush_soon = False
        self._child: _Child | None = None
        self._starting: asyncio.Future[_Child] | None = None
        self._closed = True
        self._drained: asyncio.Future[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._closed = False
        self._turn.released = lambda: _call_soon(loop, self._flush)
        await self._start()

    async def append(self, row: Row) -> bool:
        if self._closed:
            raise StoreUnavailable("store is closed")
        if self._child is None:
            await self._start()
            if self._closed:  # closed meanwhile: nothing would send this row
                raise StoreUnavailable("store is closed")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.append((future, row))
        if not self._flush_soon and not self._in_flight:
            # The rest of this loop turn's webhooks go in the same batch.
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    async def close(self) -> None:
        """Commit what was handed in, then end the process (end of its input)."""
        self._closed = True
        if self._queued or self._in_flight:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        child, self._child = self._child, None
        if child is not None and child.process is not None:
            if child.input is not None:
                child.input.close()  # end of input: the process ends
            await child.gone
            child.process.close()

    async def _start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._spawn())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        finally:
            if self._starting is starting and starting.done():
                self._starting = None

    async def _spawn(self) -> _Child:
        """Start the process and wait for it to open the file. From the loop's thread: the
        process is killed when the thread that started it ends (``PR_SET_PDEATHSIG``)."""
        loop = asyncio.get_running_loop()
        child = _Child()
        try:
            process, _ = await loop.subprocess_exec(
                lambda: _Pipes(
                    lambda doc: self._answer(child, doc), lambda: self._lost(child), child.gone
                ),
                *(sys.executable, "-I", intake.__file__, str(self._path), str(os.getpid())),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as error:
            raise StoreUnavailable(f"cannot start the intake writer: {error}") from None
        child.process = process
        child.input = process.get_pipe_transport(0)  # type: ignore[assignment]
        try:
            await child.ready
        except StoreUnavailable:
            process.close()
            raise
        self._child = child
        return child

    def _flush(self) -> None:
        self._flush_soon = False
        child = self._child
        if child is None or child.input is None or self._in_flight or not self._queued:
            return
        self._turn.waiting = True
        if self._turn.wanted or not self._turn.lock.acquire(blocking=False):
            return  # the writer thread's turn; it calls back when done
        self._turn.waiting = False
        batch = self._queued[: self._max_batch]
        del self._queued[: self._max_batch]
        # A caller that gave up (its request was cancelled) gets nothing written.
        live = [(future, row) for future, row in batch if not future.cancelled()]
        if not live:
            self._turn.lock.release()
            self._flush()
            return
        self._in_flight = [future for future, _ in live]
        child.input.write(frame([row for _, row in live]))

    def _answer(self, child: _Child, document: Any) -> None:
        if not child.ready.done():
            if document is None:
                child.ready.set_result(None)
            else:
                child.ready.set_exception(StoreUnavailable(str(document)))
            return
        futures, self._in_flight = self._in_flight, []
        self._turn.lock.release()
        if isinstance(document, list) and len(document) == len(futures):
            for future, stored in zip(futures, document, strict=True):
                if not future.done():
                    future.set_result(stored)
        else:
            log.error("store commit failed", extra={"error": str(document)})
            _fail(futures, StoreUnavailable(f"database write failed: {document}"))
        self._flush()
        self._settled()

    def _lost(self, child: _Child) -> None:
        """The process ended: whatever it held is failed, not guessed at."""
        if not child.ready.done():
            child.ready.set_exception(
                StoreUnavailable("the intake writer stopped before opening the database")
            )
            return
        if self._child is not child:
            return
        self._child = None
        if not self._closed:
            code = None if child.process is None else child.process.get_returncode()
            log.error("intake writer stopped", extra={"exit_code": code})
        error = StoreUnavailable("the intake writer stopped")
        if self._in_flight:
            self._turn.lock.release()
        futures = self._in_flight + [future for future, _ in self._queued]
        self._in_flight, self._queued = [], []
        _fail(futures, error)
        self._settled()

    def _settled(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done() and not (self._queued or self._in_flight):
            drained.set_result(None)


def _fail(futures: list[asyncio.Future[bool]], error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
        loop.call_soon_threadsafe(callback)
