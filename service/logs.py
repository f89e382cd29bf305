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
import re
import sys
import time
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii
from typing import TextIO

from starlette.datastructures import Secret

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
# Runs on the finished line, JSON included. The header name starts a word, also right after
# an escape the JSON line writes for a newline or other control character (``\nAuth...``);
# the lookahead first lets the scan skip most positions cheaply. The separator may hold
# escaped quotes (``{\"GenieKey\": \"...``). The value stops at a quote or backslash, so
# redacting a JSON line (or a repr) never eats the closing quote, and it does not start with
# what follows a closing quote (a header name merely ending a string is no header). A value
# already redacted is left as it is (the separator is possessive, so backtracking cannot get
# around that).
_NAME_START = r"(?:\b|(?<=\\[bfnrt])|(?<=\\u[0-9a-f]{4}))"
_NAMES = r"(?:authorization|dd-api-key|dd-application-key|geniekey)"
_SEPARATOR = r"(?:[\"':= ]|\\\")++"
_VALUE_START = r"(?!\[redacted\]|[,)\]}])"
# One character of a header value, as written or as a JSON line spells it (``\u00e9``).
_CHAR = r"(?:[^\s\"'\\]|\\u[0-9a-f]{4})"
# A value never takes a word holding the start of another header: after a header name that
# ends a text line's message, the words are fields (``missing Authorization ref=x
# authorization=Bearer secret``), and taking ``authorization=Bearer`` as the second word would
# leave ``secret`` behind. Such a word is left to the header it holds, redacted on its own.
_HEADER = f"{_NAME_START}{_NAMES}{_SEPARATOR}{_VALUE_START}{_CHAR}"
_WORD = rf"(?!{_CHAR}*?{_HEADER}){_CHAR}++"
_AUTH_HEADER = re.compile(
    rf"(?i)(?=[adg]){_NAME_START}({_NAMES})({_SEPARATOR}){_VALUE_START}({_WORD}(?: {_WORD})?)"
)
REDACTED = "[redacted]"
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


class JSONFormatter(logging.Formatter):
    """``time`` (UTC, milliseconds), ``level``, ``logger``, ``message``, then the fields.

    The line is what ``json.dumps(entry, default=str)`` makes of that, written piece by
    piece: a single dumps call spends more on its setup than on the line.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = _PerSecond(
            lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        )

    def format(self, record: logging.LogRecord) -> str:
        fields = vars(record)
        names = _field_names(fields)
        when = f"{self._second(record.created)}.{int(record.msecs):03d}+00:00"
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] else None
        if exc_info is None and _FIRST_KEYS.isdisjoint(names):
            return "".join(
                [
                    f'{{"time": "{when}", '
                    f'"level": {encode_basestring_ascii(record.levelname.lower())}, '
                    f'"logger": {encode_basestring_ascii(record.name)}, '
                    f'"message": {encode_basestring_ascii(_message(record))}',
                    *[f", {encode_basestring_ascii(k)}: {_json_value(fields[k])}" for k in names],
                    "}",
                ]
            )
        # Rarely, a key comes twice: a field named like one of the first keys, or "error" and
        # an exception. The later value takes the earlier one's place, as in a dict.
        entry: dict[str, object] = {
            "time": when,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
            **{k: fields[k] for k in names},
        }
        if exc_info is not None:
            entry["error"] = f"{exc_info[0].__name__}: {exc_info[1]}"
            entry["traceback"] = self.formatException(exc_info)
        return _ENCODE(entry)


class TextFormatter(logging.Formatter):
    """logging's default local time, the level, the logger and the message, then the fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second = _PerSecond(
            lambda second: time.strftime(self.default_time_format, self.converter(second))
        )

    def format(self, record: logging.LogRecord) -> str:
        fields = vars(record)
        line = "".join(
            [
                f"{self._second(record.created)},{int(record.msecs):03d}"
                f" {record.levelname:<7} {record.name}: {_message(record)}",
                *[f" {k}={fields[k]}" for k in _field_names(fields)],
            ]
        )
        if record.exc_info and record.exc_info[0] is not None:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class Redactor:
    """Replaces configured secrets and credential-looking header values in a finished line."""

    def __init__(self, secrets: Iterable[Secret | None]) -> None:
        plain = {str(s) for s in secrets if s is not None and str(s)}
        # A string inside a container, a %r or an exception (KeyError) is written by repr():
        # backslashes doubled, control characters as \x07, and ' as \' if repr quotes with '.
        # Whether it does depends on the whole string, which may hold a " the secret does
        # not: so the secret's own repr, and the repr of the secret and a " (' as \').
        written = plain | {repr(s)[1:-1] for s in plain} | {repr(f'{s}"')[1:-2] for s in plain}
        # A JSON line spells quotes, backslashes and non-ASCII escaped: redact that too.
        escaped = {json.dumps(s)[1:-1] for s in written}
        self._secrets = sorted(written | escaped, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        # Every header name holds "author", "ekey" or "-key", which lower() finds wherever
        # the pattern's case-insensitive match would (unlike "i": the pattern also takes a
        # dotless one). The pattern costs several times the rest, so it only runs then.
        lowered = text.lower()
        if "author" in lowered or "ekey" in lowered or "-key" in lowered:
            text = _AUTH_HEADER.sub(rf"\1\2{REDACTED}", text)
        return text


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each formatted line redacted, and flushes it: a crash keeps what was logged."""

    def __init__(self, redactor: Redactor, stream: TextIO | None = None) -> None:
        super().__init__(sys.stderr if stream is None else stream)
        self._redactor = redactor

    def emit(self, record: logging.LogRecord) -> None:
        """StreamHandler's emit, redacting, without its second trip through the lock to flush."""
        try:
            self.stream.write(f"{self._redactor.redact(self.format(record))}{self.terminator}")
            self.stream.flush()
        except RecursionError:  # as StreamHandler: too deep to report
            raise
        except Exception:
            self.handleError(record)

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
) -> None:
    """Route every logger (ours, uvicorn's, httpx's) through one redacting handler.

    Lines go to ``stream`` (standard error when ``None``).
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
