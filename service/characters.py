"""Which characters the relay's text fields may hold, written once as regular expressions.

The same text checks a field and is the ``pattern`` ``/openapi.json`` states for it, so a
client generated from the document (or a fuzzer) and the relay cannot disagree on a
name or an alert id. The classes list code points rather than Unicode categories
(``\\p{Cf}`` means nothing to Python's ``re``); ``tests/test_characters.py`` checks them
against the categories they stand for. Patterns are spelled for Python, ECMA 262 and
Rust alike: no ``\\s`` (each engine has its own whitespace), no lookaround.
"""

from __future__ import annotations

import re

#: Control (Cc) and format (Cf) characters, the line and paragraph separators (Zl, Zp)
#: and the Basic Multilingual Plane's private use area (Co, U+E000..U+F8FF, where icon
#: fonts live), as of Unicode 14: invisible, or meaningless in an id or a name. Format
#: characters include the bidirectional controls (``abc\u202edcba`` reads as another
#: text, CVE-2021-42574) and U+200B..U+200D. Not here: surrogates (Cs; no JSON text the
#: relay accepts decodes to one, ``strict_json``) and the private use planes 15 and 16,
#: which no keyboard or font an admin uses reaches, and whose 131,068 code points in a
#: class made generating from the pattern (hypothesis, schemathesis) 15 times slower.
INVISIBLE = (
    "\\x00-\\x1f\\x7f-\\x9f\\xad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2"
    "\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ue000-\\uf8ff"
    "\\ufeff\\ufff9-\\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
#: Space separators (Zs) other than U+0020: a no-break or ideographic space in an id
#: would look like a plain one in every log and screen.
OTHER_SPACES = "\\xa0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000"
#: Unicode's White_Space property: what no text may consist of alone. Python's ``\\s``
#: also counts U+001C..U+001F, ECMA's U+FEFF; neither is here (both are INVISIBLE).
WHITESPACE = "\\t-\\r \\x85" + OTHER_SPACES + "\\u2028\\u2029"

#: Somewhere a character that is not whitespace (a search, not a full match).
NOT_BLANK = f"[^{WHITESPACE}]"
#: A service object's name as sent: something visible, nothing invisible.
NAME = f"^[^{INVISIBLE}]*[^{INVISIBLE}{WHITESPACE}][^{INVISIBLE}]*$"
#: An alert id: something visible, no invisible character and no space but U+0020.
ALERT_ID = f"^[^{INVISIBLE}{OTHER_SPACES}]*[^{INVISIBLE}{WHITESPACE}][^{INVISIBLE}{OTHER_SPACES}]*$"

# Checked as two linear scans: a full match of ``NAME`` or ``ALERT_ID`` backtracks over a
# long run of spaces (quadratic in the length), and an alert id's length is the sender's.
_NOT_BLANK = re.compile(NOT_BLANK)
_INVISIBLE = re.compile(f"[{INVISIBLE}\\ud800-\\udfff]")
_NOT_IN_ALERT_ID = re.compile(f"[{INVISIBLE}{OTHER_SPACES}\\ud800-\\udfff]")


def blank(text: str) -> bool:
    """Whether ``text`` is empty or only whitespace (``WHITESPACE``)."""
    return _NOT_BLANK.search(text) is None


def first_invisible(text: str) -> str | None:
    """The first ``INVISIBLE`` character (or lone surrogate) in ``text``, if any."""
    found = _INVISIBLE.search(text)
    return None if found is None else found.group()


def alert_id_ok(text: str) -> bool:
    """Whether ``text`` matches ``ALERT_ID``, as the document states it."""
    return not blank(text) and _NOT_IN_ALERT_ID.search(text) is None
