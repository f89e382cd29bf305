"""Structured logs: one JSON object per line (or readable text on a terminal), secrets redacted.

Every decision the relay makes about an event or a DX attempt is one line carrying
``reference_id`` and ``outcome`` as fields. Redaction runs on the handler, so it also covers
uvicorn's and httpx's own loggers, and it runs once, on the finished line: that line holds
the message, every field and any traceback, so nothing is left out and nothing is paid twice
(one line per webhook, so its cost is part of every request's).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import TextIO

from starlette.datastructures import Secret

from service.redaction import Redactor

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_ENCODE = json.JSONEncoder(default=str).encode  # json.dumps(default=str), built once
_FIRST_KEYS = frozenset({"time", "level", "logger"})  # "message" cannot be a field


def _field_names(attributes: dict[str, object]) -> tuple[str, ...]:
    """Which of a record's attributes (``vars(record)``) are its own fields (``extra=``), in
    the order they were given."""
    return _fields_among(tuple(attributes))


@functools.lru_cache(maxsize=256)
def _fields_among(attributes: tuple[str, ...]) -> tuple[str, ...]:
    """Records from one logging call have the same attributes: checking them one by one on
    every line costs more than looking the answer up."""
    return tuple(k for k in attributes if k not in _RESERVED and k[:1] != "_")


def _json_value(value: object) -> str:
    """``value`` as json.dumps(default=str) writes it; strings and numbers, nearly every
    field, without the encoder's per-call setup (which costs more than the rest of a line)."""
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return _ENCODE(value)


def _message(record: logging.LogRecord) -> str:
    """The message, or its parts if a bad %-format call cannot make one: that must not raise
    into the code that logged, nor have logging print the unredacted arguments on stderr."""
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg} {record.args!r}"


class _PerSecond:
    """A timestamp's whole-second part, rendered once per second: strftime is slow."""

    def __init__(self, render: Callable[[int], str]) -> None:
        self._render = render
        self._last = (-1, "")  # one attribute, so a concurrent call reads a consistent pair

    def __call__(self, created: float) -> str:
        second = int(created)
        last, text = self._last
        if second != last:
            text = self._render(second)
            self._last = (second, text)
        return text


class EventFormatter(logging.Formatter):
    """A formatter that also writes a line from its parts, without a LogRecord.

    ``EventLog`` writes the per-webhook lines that way, and ``format`` writes a record's
    line with the same method, so both come out of one piece of code, byte for byte.
    """

    def event_line(
        self,
        created: float,
        msecs: float,
        levelname: str,
        logger: str,
        message: str,
        fields: Mapping[str, object],
        names: Iterable[str],
    ) -> str:
        """The line for an event at ``created`` (``msecs`` as a LogRecord has it), without
        an exception; ``names`` are the keys of ``fields`` that are shown, in order."""
        raise NotImplementedError


class JSONFormatter(EventFormatter):
    """``time`` (UTC, milliseconds), ``level``, ``logger``, ``message``, then the fields.

    The line is what ``json.dumps(entry, default=str)`` makes of that, written piece by
    piece: a single dumps call spends more on its setup than on the line. (orjson would
    be faster still, but writes other bytes: no space after ``:`` and ``,``, non-ASCII
    unescaped, ``NaN`` as ``null``, no integer past 64 bits.)
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = _PerSecond(
            lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        )

    def event_line(
        self,
        created: float,
        msecs: float,
        levelname: str,
        logger: str,
        message: str,
        fields: Mapping[str, object],
        names: Iterable[str],
    ) -> str:
        """The line, for fields none of which is named ``time``, ``level`` or ``logger``."""
        return "".join(
            [
                f'{{"time": "{self._second(created)}.{int(msecs):03d}+00:00", '
                f'"level": {encode_basestring_ascii(levelname.lower())}, '
                f'"logger": {encode_basestring_ascii(logger)}, '
                f'"message": {encode_basestring_ascii(message)}',
                *[f", {encode_basestring_ascii(k)}: {_json_value(fields[k])}" for k in names],
                "}",
            ]
        )

    def format(self, record: logging.LogRecord) -> str:
        fields = vars(record)
        names = _field_names(fields)
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] else None
        if exc_info is None and _FIRST_KEYS.isdisjoint(names):
            return self.event_line(
                record.created,
                record.msecs,
                record.levelname,
                record.name,
                _message(record),
                fields,
                names,
            )
        # Rarely, a key comes twice: a field named like one of the first keys, or "error" and
        # an exception. The later value takes the earlier one's place, as in a dict.
        entry: dict[str, object] = {
            "time": f"{self._second(record.created)}.{int(record.msecs):03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
            **{k: fields[k] for k in names},
        }
        if exc_info is not None:
            entry["error"] = f"{exc_info[0].__name__}: {exc_info[1]}"
            entry["traceback"] = self.formatException(exc_info)
        return _ENCODE(entry)


class TextFormatter(EventFormatter):
    """logging's default local time, the level, the logger and the message, then the fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second = _PerSecond(
            lambda second: time.strftime(self.default_time_format, self.converter(second))
        )

    def event_line(
        self,
        created: float,
        msecs: float,
        levelname: str,
        logger: str,
        message: str,
        fields: Mapping[str, object],
        names: Iterable[str],
    ) -> str:
        return "".join(
            [
                f"{self._second(created)},{int(msecs):03d} {levelname:<7} {logger}: {message}",
                *[f" {k}={fields[k]}" for k in names],
            ]
        )

    def format(self, record: logging.LogRecord) -> str:
        fields = vars(record)
        line = self.event_line(
            record.created,
            record.msecs,
            record.levelname,
            record.name,
            _message(record),
            fields,
            _field_names(fields),
        )
        if record.exc_info and record.exc_info[0] is not None:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each formatted line redacted, and flushes it: a crash keeps what was logged."""

    def __init__(self, redactor: Redactor, stream: TextIO | None = None) -> None:
        super().__init__(sys.stderr if stream is None else stream)
        self._redactor = redactor

    def emit(self, record: logging.LogRecord) -> None:
        """StreamHandler's emit, redacting, without its second trip through the lock to flush."""
        try:
            self.write(self.format(record))
        except RecursionError:  # as StreamHandler: too deep to report
            raise
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        """Write a formatted line, redacted, and flush it; the caller holds the lock."""
        self.stream.write(f"{self._redactor.redact(line)}{self.terminator}")
        self.stream.flush()

    def write_lines(self, lines: Iterable[str]) -> None:
        """``write`` for each line, with one write to the stream; the caller holds the lock."""
        redact, end = self._redactor.redact, self.terminator
        self.stream.write("".join([f"{redact(line)}{end}" for line in lines]))
        self.stream.flush()

    def handleError(self, record: logging.LogRecord) -> None:
        """logging reports a line it failed to write on stderr, message and arguments
        included: redact those as the line would have been."""
        try:
            record.msg = self._redactor.redact(_message(record))
        except Exception:  # the message itself cannot be made into text
            record.msg = "(unprintable message)"
        record.args = None
        super().handleError(record)


def configure(
    *, fmt: str, level: str, secrets: Iterable[Secret | None], stream: TextIO | None = None
) -> EventLog:
    """Route every logger (ours, uvicorn's, httpx's) through one redacting handler.

    Lines go to ``stream`` (standard error when ``None``). The ``EventLog`` returned writes
    the per-event lines through that same handler, without logging's machinery.
    """
    handler = _RedactingHandler(Redactor(secrets), stream)
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
        self, handler: _RedactingHandler | None = None, *, clock: Callable[[], float] = time.time
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
        formatter = handler.formatter
        assert isinstance(formatter, EventFormatter)  # _direct said so
        rendered = []
        for fields in lines:
            created = self._clock()
            try:
                rendered.append(
                    formatter.event_line(
                        created,
                        int((created - int(created)) * 1000) + 0.0,
                        "INFO",
                        logger.name,
                        message,
                        fields,
                        names,
                    )
                )
            except RecursionError:
                raise
            except Exception:  # as _log: logging's report of a line it could not render
                record = logger.makeRecord(
                    logger.name, logging.INFO, "", 0, message, (), None, extra=fields
                )
                handler.handleError(record)
        try:
            handler.acquire()
            try:
                handler.write_lines(rendered)
            finally:
                handler.release()
        except RecursionError:
            raise
        except Exception:  # a closed stream: reported once, as logging would for a line
            record = logger.makeRecord(
                logger.name, logging.INFO, "", 0, message, (), None, extra=lines[0]
            )
            handler.handleError(record)

    def _direct(
        self, level: int, logger: logging.Logger, names: tuple[str, ...]
    ) -> _RedactingHandler | None:
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
        formatter = handler.formatter
        assert isinstance(formatter, EventFormatter)  # _direct said so
        created = self._clock()  # msecs below as a LogRecord has them (Python 3.11, 3.12)
        try:
            line = formatter.event_line(
                created,
                int((created - int(created)) * 1000) + 0.0,
                logging.getLevelName(level),
                logger.name,
                message,
                fields,
                names,
            )
            handler.acquire()
            try:
                handler.write(line)
            finally:
                handler.release()
        except RecursionError:  # as logging: too deep to report
            raise
        except Exception:  # a field str() cannot write, a closed stream: as logging reports it
            record = logger.makeRecord(logger.name, level, "", 0, message, (), None, extra=fields)
            handler.handleError(record)


@functools.lru_cache(maxsize=256)
def _plain_fields(names: tuple[str, ...]) -> bool:
    """Whether a LogRecord would show exactly these fields, in this order, after the first
    keys: not a LogRecord attribute (logging refuses those), not hidden, not a first key."""
    return _fields_among(names) == names and _FIRST_KEYS.isdisjoint(names)


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
