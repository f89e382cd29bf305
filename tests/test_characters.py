"""One rule per field, in the relay and in /openapi.json: the classes are the categories
they name, and each check agrees with the pattern the document states."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import characters
from service.errors import PayloadError
from service.names import normalize_name

EVERY_CODE_POINT = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
#: Text that reaches for what the classes are about: spaces, controls, format characters.
texts = st.text(
    st.sampled_from(" \t\n\x1c\x1f\x85\xa0\u2000\u2028\u200b\u202e\ufeff\ue000\U000e0001")
    | st.characters(codec="utf-8"),
    max_size=12,
)


def matches(pattern: str, text: str) -> bool:
    """``pattern`` as a JSON Schema validator reads it (a search; ``$`` is the end)."""
    return re.search(pattern.replace("$", r"\Z"), text) is not None


@pytest.mark.skipif(unicodedata.unidata_version != "14.0.0", reason="the classes are Unicode 14")
def test_the_classes_are_the_categories_they_name() -> None:
    invisible = re.compile(f"[{characters.INVISIBLE}]")
    refused = {"Cc", "Cf", "Zl", "Zp"}
    for c in EVERY_CODE_POINT:
        category = unicodedata.category(c)
        expected = category in refused or (category == "Co" and c <= "\uffff")
        assert bool(invisible.match(c)) == expected, f"U+{ord(c):04X} {category}"
    other_spaces = re.compile(f"[{characters.OTHER_SPACES}]")
    assert [c for c in EVERY_CODE_POINT if other_spaces.match(c)] == [
        c for c in EVERY_CODE_POINT if unicodedata.category(c) == "Zs" and c != " "
    ]


def test_whitespace_is_what_strip_removes_but_the_invisible_controls() -> None:
    whitespace = re.compile(f"[{characters.WHITESPACE}]")
    found = [c for c in EVERY_CODE_POINT if whitespace.match(c)]
    assert found == [c for c in EVERY_CODE_POINT if c.isspace() and c not in "\x1c\x1d\x1e\x1f"]


@given(texts)
def test_the_alert_id_check_is_the_documented_pattern(text: str) -> None:
    assert characters.alert_id_ok(text) == matches(characters.ALERT_ID, text)


@given(texts)
def test_a_name_is_accepted_exactly_when_the_pattern_matches(text: str) -> None:
    """Short names, and already NFC: length and normalisation are the schema's others."""
    text = unicodedata.normalize("NFC", text)
    try:
        normalize_name(text)
        accepted = True
    except PayloadError:
        accepted = False
    assert accepted == matches(characters.NAME, text)


@given(texts)
def test_blank_is_the_documented_not_blank_pattern_negated(text: str) -> None:
    assert characters.blank(text) == (not matches(characters.NOT_BLANK, text))


def test_a_long_run_of_spaces_is_checked_in_linear_time() -> None:
    """No backtracking: a megabyte of spaces is refused at once (a quadratic check would
    take hours)."""
    assert not characters.alert_id_ok(" " * 1_000_000)
    assert characters.first_invisible("a" * 1_000_000) is None
