"""Service-object names: stored NFC, compared caseless and compatibility-folded, and free
of characters that change what a screen shows."""

from __future__ import annotations

import unicodedata

import pytest

from service.errors import PayloadError
from service.names import BIDI_CONTROLS, name_key, normalize_name

NFC_CAFE = "caf\u00e9"
NFD_CAFE = "cafe\u0301"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("payments", "payments"),
        ("  payments  ", "payments"),
        ("Payments Team", "Payments Team"),
        (NFD_CAFE, NFC_CAFE),
        (NFC_CAFE, NFC_CAFE),
        ("\u00a0ops\u00a0", "ops"),
        ("Ångström", unicodedata.normalize("NFC", "Ångström")),
        ("日本語チーム", "日本語チーム"),
        ("x" * 100, "x" * 100),
    ],
)
def test_names_are_stored_nfc_and_stripped(given: str, stored: str) -> None:
    assert normalize_name(given) == stored


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("\u3000", "must not be empty"),
        ("x" * 101, "longer than 100"),
        ("pay\u202eslup", "bidirectional"),
        ("pay\u202aments", "bidirectional"),
        ("pay\u2066ments\u2069", "bidirectional"),
        ("pay\u200fments", "bidirectional"),
        ("pay\u061cments", "bidirectional"),
        ("pay\u200bments", "U+200B"),  # zero-width space
        ("pay\u200dments", "U+200D"),  # zero-width joiner
        ("pay\ufeffments", "U+FEFF"),
        ("pay\u00admments", "U+00AD"),  # soft hyphen
        ("pay\x00ments", "U+0000"),
        ("pay\tments", "U+0009"),
        ("pay\x85ments", "U+0085"),
        ("pay\u2028ments", "U+2028"),
        ("pay\ue000ments", "U+E000"),
        ("pay\ud800ments", "U+D800"),
    ],
)
def test_unusable_names_are_refused_naming_the_field(given: str, words: str) -> None:
    with pytest.raises(PayloadError) as refused:
        normalize_name(given)
    assert refused.value.field == "data.attributes.name"
    assert refused.value.message.startswith("data.attributes.name: ")
    assert words in refused.value.message


@pytest.mark.parametrize("character", sorted(BIDI_CONTROLS))
def test_every_bidi_control_is_refused(character: str) -> None:
    with pytest.raises(PayloadError, match="bidirectional"):
        normalize_name(f"a{character}b")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (NFC_CAFE, NFD_CAFE),
        (NFC_CAFE, "CAF\u00c9"),
        (NFC_CAFE, "CAFE\u0301"),
        ("payments", "PAYMENTS"),
        ("payments", "\uff50\uff41\uff59\uff4d\uff45\uff4e\uff54\uff53"),  # fullwidth
        ("strasse", "Straße"),
        ("ﬁle", "file"),  # ligature
        ("Ω", "Ω"),  # OHM SIGN and GREEK CAPITAL OMEGA
        ("x²", "x2"),
    ],
)
def test_names_that_look_alike_share_a_key(first: str, second: str) -> None:
    assert name_key(first) == name_key(second)
    assert name_key(normalize_name(first)) == name_key(normalize_name(second))


@pytest.mark.parametrize(
    ("first", "second"),
    [("payments", "payment"), ("cafe", NFC_CAFE), ("a b", "ab"), ("ops-1", "ops_1")],
)
def test_different_names_keep_different_keys(first: str, second: str) -> None:
    assert name_key(first) != name_key(second)


@pytest.mark.parametrize("name", ["payments", "Payments Team", NFC_CAFE, "CAFÉ", "Ωmega"])
def test_the_key_of_a_normalised_name_is_the_old_casefold_key(name: str) -> None:
    """Stored keys were ``casefold()``: for NFKC names they stay valid as they are."""
    assert name_key(name) == name.casefold()
