"""Structured logs: one JSON object per line (or readable text on a terminal), secrets redacted.

Every decision the relay makes about an event or a DX attempt is one line carrying
``reference_id`` and ``outcome`` as fields. The redaction filter sits on the handler, so
it also covers uvicorn's and httpx's own loggers.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from starlette.datastructures import Secret

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
# The value stops at a quote or backslash, so redacting a finished JSON line (or a repr)
# never eats the closing quote; a value already redacted is left as it is (the separator
# is possessive, so backtracking cannot get around that).
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization|dd-api-key|dd-application-key|geniekey)([\"':= ]++)"
    r"(?!\[redacted\])([^\s\"'\\]+(?: [^\s\"'\\]+)?)"
)
REDACTED = "[redacted]"


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        line = f"{line} {extras}" if extras else line
        if record.exc_info and record.exc_info[0] is not None:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class RedactingFilter(logging.Filter):
    """Replaces configured secrets and credential-looking header values in the final text."""

    def __init__(self, secrets: Iterable[Secret | None]) -> None:
        super().__init__()
        plain = {str(s) for s in secrets if s is not None and str(s)}
        # A JSON line spells quotes, backslashes and non-ASCII escaped: redact that too.
        escaped = {json.dumps(s)[1:-1] for s in plain}
        self._secrets = sorted(plain | escaped, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not raise into the code that logged
            message = f"{record.msg} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        for key, value in _fields(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Redacts the formatted line too, which covers tracebacks."""

    def __init__(self, redactor: RedactingFilter, stream: TextIO | None = None) -> None:
        super().__init__(sys.stderr if stream is None else stream)
        self._redactor = redactor
        self.addFilter(redactor)

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(super().format(record))


def configure(
    *, fmt: str, level: str, secrets: Iterable[Secret | None], stream: TextIO | None = None
) -> None:
    """Route every logger (ours, uvicorn's, httpx's) through one redacting handler.

    Lines go to ``stream`` (standard error when ``None``).
    """
    handler = _RedactingHandler(RedactingFilter(secrets), stream)
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
