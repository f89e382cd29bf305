"""JSON as RFC 8259 has it, for text that comes from outside.

Python's ``json.loads`` also takes ``NaN``, ``Infinity`` and ``-Infinity``, which no other
reader after us (DX, an operator's tools) takes back, and nesting up to the recursion
limit, which a later reader deeper in a stack (an operator's view, a re-parse) may not
survive. Both are refused here, where the sender can still be told.
"""

from __future__ import annotations

import json
from typing import Any


class NotStrictJSON(ValueError):
    """Valid for ``json.loads``, not for JSON: the message says which rule it broke."""


#: Deepest nesting of arrays and objects accepted; Opsgenie's webhooks have four levels.
MAX_DEPTH = 32


def loads(text: str) -> Any:
    """``json.loads``, but ``NotStrictJSON`` (a ``ValueError``) for non-standard constants
    and deep nesting (past the recursion limit too: it is no different to the caller)."""
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise NotStrictJSON(f"nests deeper than {MAX_DEPTH} levels") from None
    # Counting brackets is cheap; walking the document is not, and rarely needed.
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(document) > MAX_DEPTH:
        raise NotStrictJSON(f"nests deeper than {MAX_DEPTH} levels")
    return document


def depth(document: object) -> int:
    """How deeply arrays and objects nest in ``document``, walked without recursion (it
    may nest near the limit), and not past ``MAX_DEPTH + 1``."""
    deepest = 0
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: list[object] = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def _refuse_constant(constant: str) -> None:
    raise NotStrictJSON(f"{constant} is not JSON")
