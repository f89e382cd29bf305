"""Structured logs: one JSON object per line (or readable text on a terminal), secrets redacted.

Every decision the relay makes about an event or a DX attempt is one line carrying
``reference_id`` and ``outcome`` as fields. Redaction runs on the handler, so it also covers
uvicorn's and httpx's own loggers, and it runs once, on the finished line: that line holds
the message, every field and any traceback, so nothing is left out and nothing is paid twice
(one line per webhook, so its cost is part of every request's).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from starlette.datastructures import Secret

from service.log_format import (
    FIRST_KEYS,
    EventFormatter,
    JSONFormatter,
    RedactingHandler,
    TextFormatter,
    fields_among,
)
from service.redaction import Redactor

__all__ = ["EventLog", "JSONFormatter", "RedactingHandler", "TextFormatter", "configure"]


def configure(
    *, fmt: str, level: str, secrets: Iterable[Secret | None], stream: TextIO | None = None
) -> EventLog:
    """Route every logger (ours, uvicorn's, httpx's) through one redacting handler.

    Lines go to ``stream`` (standard error when ``None``). The ``EventLog`` returned writes
    the per-event lines through that same handler, without logging's machinery.
    """
    handler = RedactingHandler(Redactor(secrets), stream)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs every request line at INFO; keep it for debugging only.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # Neither formatter prints the thread, the process or the calling file and line, so
    # don't collect them (the logging HOWTO's "Optimization"): about 5 µs of a line's 20.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    return EventLog(handler)


class EventLog:
    """The line per event decision (one per webhook), at a fraction of logging's cost.

    Through ``Logger.info`` such a line costs about 60 µs of a request's CPU, most of it
    making a LogRecord and passing it through logging's handler machinery, not writing it.
    When ``configure()``'s handler is the only thing that would see the record, this
    writes the same line through the same formatter, redactor and stream, under the
    handler's lock (so it never interleaves with other lines), and skips the rest. When
    anything else could see it (logging not set up by ``configure()``, pytest's caplog,
    another handler, a filter, a formatter of someone else's, a field a LogRecord would
    treat specially), the call goes to ``logger`` as ``logger.info(message, extra=...)``
    would, so nothing that watches logging misses a line.
    """

    def __init__(
        self, handler: RedactingHandler | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        """Without a handler (tests, library use), every line goes through logging.
        ``clock`` gives a line's time as ``time.time()`` gives a LogRecord's."""
        self._handler = handler
        self._clock = clock

    def info(self, logger: logging.Logger, message: str, /, **fields: object) -> None:
        """``logger.info(message, extra=fields)``, the same line for less."""
        self._log(logging.INFO, logger, message, fields)

    def warning(self, logger: logging.Logger, message: str, /, **fields: object) -> None:
        """``logger.warning(message, extra=fields)``, the same line for less."""
        self._log(logging.WARNING, logger, message, fields)

    def info_each(
        self, logger: logging.Logger, message: str, lines: Sequence[dict[str, object]]
    ) -> None:
        """``info(logger, message, **fields)`` for each ``fields`` of ``lines``, in order,
        rendered one after the other and written with one write.

        For lines that come in bursts (the webhooks of one commit): rendered in a row they
        cost about a third of what each costs inside its own request, and they reach the
        stream in one system call.
        """
        if not lines or not logger.isEnabledFor(logging.INFO):
            return
        names = tuple(lines[0])
        handler = self._direct(logging.INFO, logger, names)
        if handler is None or any(tuple(fields) != names for fields in lines):
            for fields in lines:
                self._log(logging.INFO, logger, message, fields)
            return
        self._emit(handler, logging.INFO, logger, message, lines, names)

    def _direct(
        self, level: int, logger: logging.Logger, names: tuple[str, ...]
    ) -> RedactingHandler | None:
        """``configure()``'s handler when it alone would see the line, else None."""
        handler = self._handler
        if (
            handler is None
            or not isinstance(handler.formatter, EventFormatter)
            or level < handler.level
            or handler.filters
            or not _plain_fields(names)
            or _only_handler(logger) is not handler
        ):
            return None
        return handler

    def _log(
        self, level: int, logger: logging.Logger, message: str, fields: dict[str, object]
    ) -> None:
        if not logger.isEnabledFor(level):  # also covers a disabled logger
            return
        names = tuple(fields)
        handler = self._direct(level, logger, names)
        if handler is None:
            # stacklevel: the record names the caller of info(), as a direct call would.
            logger.log(level, message, extra=fields, stacklevel=3)
            return
        self._emit(handler, level, logger, message, [fields], names)

    def _emit(
        self,
        handler: RedactingHandler,
        level: int,
        logger: logging.Logger,
        message: str,
        lines: Sequence[dict[str, object]],
        names: tuple[str, ...],
    ) -> None:
        """Render each of ``lines`` and write them all with one write, under the handler's
        lock; what cannot be rendered or written is reported as logging reports it."""
        formatter = handler.formatter
        assert isinstance(formatter, EventFormatter)  # _direct said so
        levelname = logging.getLevelName(level)
        rendered = []
        for fields in lines:
            created = self._clock()  # msecs below as a LogRecord has them (Python 3.11, 3.12)
            try:
                rendered.append(
                    formatter.event_line(
                        created,
                        int((created - int(created)) * 1000) + 0.0,
                        levelname,
                        logger.name,
                        message,
                        fields,
                        names,
                    )
                )
            except RecursionError:  # as logging: too deep to report
                raise
            except Exception:  # a field str() cannot write
                handler.handleError(_record(logger, level, message, fields))
        if not rendered:
            return
        try:
            handler.acquire()
            try:
                handler.write_lines(rendered)
            finally:
                handler.release()
        except RecursionError:
            raise
        except Exception:  # a closed stream: reported once, as logging would for a line
            handler.handleError(_record(logger, level, message, lines[0]))


def _record(
    logger: logging.Logger, level: int, message: str, fields: dict[str, object]
) -> logging.LogRecord:
    """The record logging would have made, for its report of a line that failed."""
    return logger.makeRecord(logger.name, level, "", 0, message, (), None, extra=fields)


@functools.lru_cache(maxsize=256)
def _plain_fields(names: tuple[str, ...]) -> bool:
    """Whether a LogRecord would show exactly these fields, in this order, after the first
    keys: not a LogRecord attribute (logging refuses those), not hidden, not a first key."""
    return fields_among(names) == names and FIRST_KEYS.isdisjoint(names)


def _only_handler(logger: logging.Logger) -> logging.Handler | None:
    """The one handler a record from ``logger`` would reach, if there is exactly one and no
    logger filter could drop or change the record on its way."""
    if logger.filters:
        return None
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if found is not None:
                return None
            found = handler
        if not node.propagate:
            break
        node = node.parent
    return found
