"""Service-object names: one spelling stored, one key compared.

Names reach webhook URLs (``/webhooks/opsgenie/{name}``), logs and operators' screens,
so what looks alike must be alike: ``café`` typed on two keyboards (NFC ``é`` or NFD
``e`` + U+0301) is one name, and so are its case variants. Datadog's API documents no
rule for names (its reference says only "The name for the Opsgenie service"), so the
relay sets its own: stored NFC, compared by ``name_key``, and refused when it holds
characters that change how text *displays* without being seen.
"""

from __future__ import annotations

import unicodedata
from typing import NoReturn

from service import characters
from service.errors import PayloadError

NAME_FIELD = "data.attributes.name"
MAX_NAME_LENGTH = 100

#: Bidirectional controls (embeddings, overrides, isolates, marks): they reorder what a
#: screen shows, so ``abc\u202edcba`` reads as another name (CVE-2021-42574, "Trojan
#: Source"). All are format characters (Cf) too; named here so the refusal says why.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# Refused too: control, format, private-use characters and the line and paragraph
# separators (``characters.INVISIBLE``, the rule and the document's pattern). Format
# characters include U+200D (ZWJ) and U+200C (ZWNJ): emoji sequences and some Persian and
# Indic spellings cannot be names, a small price for names that show what they are.


def normalize_name(text: str) -> str:
    """The name to store: NFC, without surrounding whitespace; ``PayloadError`` if unusable."""
    name = unicodedata.normalize("NFC", text)
    if characters.blank(name):
        _refuse("must not be empty")
    # Before stripping: a tab or U+001F at either end is no more a name's than inside it
    # (``characters.NAME``, as the document states it).
    if any(c in BIDI_CONTROLS for c in name):
        _refuse("must not contain bidirectional control characters (U+202A..U+202E, ...)")
    invisible = characters.first_invisible(name)
    if invisible is not None:
        _refuse(f"must not contain invisible or control characters (U+{ord(invisible):04X})")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        _refuse(f"longer than {MAX_NAME_LENGTH} characters")
    return name


def name_key(text: str) -> str:
    """The key two names collide on: NFKC, case-folded, NFKC again (casefold can undo
    normalisation). ``Café``, ``CAFE`` + U+0301 and fullwidth ``café`` share one key.

    Names stored before this rule had ``name.casefold()`` as key; for names already in
    NFKC (nearly all) the two agree, and the store recomputes the rest once.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _refuse(reason: str) -> NoReturn:
    raise PayloadError(f"{NAME_FIELD}: {reason}", field=NAME_FIELD)
