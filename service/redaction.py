"""Secrets taken out of a finished log line: configured ones in every spelling a line can
hold them, and credential header values the relay was not told about.

It runs on the finished line, so it covers the message, every field and any traceback at
once, whatever formatter or logger wrote them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from starlette.datastructures import Secret

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
