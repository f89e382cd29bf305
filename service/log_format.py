"""How a log line looks and how it leaves: the JSON and text formatters, and the handler
that redacts each finished line before it writes it (``service.logs`` sets them up).

Both formatters write a line from its parts (``event_line``), for a LogRecord and for
``EventLog``'s lines alike, so the two paths write the same bytes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring_ascii
from typing import TextIO

from service.redaction import Redactor

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_ENCODE = json.JSONEncoder(default=str).encode  # json.dumps(default=str), built once
FIRST_KEYS = frozenset({"time", "level", "logger"})  # "message" cannot be a field


def _field_names(attributes: dict[str, object]) -> tuple[str, ...]:
    """Which of a record's attributes (``vars(record)``) are its own fields (``extra=``), in
    the order they were given."""
    return fields_among(tuple(attributes))


@functools.lru_cache(maxsize=256)
def fields_among(attributes: tuple[str, ...]) -> tuple[str, ...]:
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
        if exc_info is None and FIRST_KEYS.isdisjoint(names):
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


class RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each formatted line redacted, and flushes it: a crash keeps what was logged."""

    def __init__(self, redactor: Redactor, stream: TextIO | None = None) -> None:
        super().__init__(sys.stderr if stream is None else stream)
        self._redactor = redactor

    def emit(self, record: logging.LogRecord) -> None:
        """StreamHandler's emit, redacting, without its second trip through the lock to flush."""
        try:
            self.write_lines([self.format(record)])
        except RecursionError:  # as StreamHandler: too deep to report
            raise
        except Exception:
            self.handleError(record)

    def write_lines(self, lines: Iterable[str]) -> None:
        """Write formatted lines, each redacted, with one write to the stream, and flush
        them; the caller holds the lock."""
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
