"""JSON as RFC 8259 has it, for bytes that come from outside, decoded by ``msgspec``.

``msgspec`` already refuses what Python's ``json.loads`` takes and JSON does not
(``NaN``, ``Infinity``, lone surrogate escapes), but it reads nesting up to its recursion
limit, even in fields it skips, which a later reader deeper in a stack (an operator's
view, a re-parse) may not survive. That is refused here, where the sender can still be told.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from service.errors import NotStrictJSON

T = TypeVar("T")

__all__ = ["MAX_DEPTH", "NotStrictJSON", "decode", "depth", "loads"]


#: Deepest nesting of arrays and objects accepted; Opsgenie's webhooks have four levels.
MAX_DEPTH = 32

#: A JSON string, also an unterminated one, so that one left-to-right scan stays linear
#: whatever the bytes are (possessive: nothing is ever re-scanned).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def decode(data: bytes, decoder: msgspec.json.Decoder[T], *, max_depth: int = MAX_DEPTH) -> T:
    """``decoder.decode(data)``, but ``NotStrictJSON`` for nesting past ``max_depth``,
    checked first (anywhere, skipped fields too), so it is never a type error's or a
    recursion error's to report. ``msgspec.DecodeError`` (a ``ValueError``) otherwise."""
    # Counting brackets is cheap; scanning for strings is not, and rarely needed.
    if data.count(b"[") + data.count(b"{") > max_depth and depth(data, max_depth) > max_depth:
        raise NotStrictJSON(f"nests deeper than {max_depth} levels")
    return decoder.decode(data)


_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Any strict JSON document, as Python values; ``ValueError`` (``NotStrictJSON``,
    ``msgspec.DecodeError``, ``msgspec.ValidationError`` for a number no double or 64-bit
    integer holds, or ``UnicodeEncodeError`` for text that holds lone surrogates) when it
    is not one."""
    return decode(text.encode() if isinstance(text, str) else text, _ANY, max_depth=max_depth)


def depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """How deeply arrays and objects nest in the JSON text ``data`` (brackets inside strings
    do not count), scanned without recursion and not past ``limit + 1``."""
    level = deepest = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            level += 1
            if level > deepest:
                deepest = level
                if deepest > limit:
                    break
        else:
            level -= 1
    return deepest
