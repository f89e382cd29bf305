"""Strict JSON for bytes from outside: what ``msgspec`` reads and the relay does not take."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from service import strict_json

ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def loads(text: str) -> Any:
    return strict_json.decode(text.encode(), ANY)


@pytest.mark.parametrize(
    "text",
    ["NaN", "Infinity", "-Infinity", '{"a": [1, NaN]}', '{"a": {"b": Infinity}}'],
)
def test_non_standard_constants_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        loads(text)


def test_nesting_to_the_limit_is_read_and_one_more_level_refused() -> None:
    deepest = "[" * strict_json.MAX_DEPTH + "]" * strict_json.MAX_DEPTH
    assert strict_json.depth(deepest.encode()) == strict_json.MAX_DEPTH
    assert loads(deepest) is not None
    with pytest.raises(strict_json.NotStrictJSON, match="nests deeper"):
        loads("[" + deepest + "]")


def test_nesting_past_the_limit_is_refused_in_a_field_a_type_skips() -> None:
    class Only(msgspec.Struct):
        a: int

    nested = '{"a": 1, "skipped": ' + "[" * 40 + "]" * 40 + "}"
    with pytest.raises(strict_json.NotStrictJSON, match="nests deeper"):
        strict_json.decode(nested.encode(), msgspec.json.Decoder(Only))


def test_nesting_past_the_recursion_limit_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nests deeper"):
        loads("[" * 100_000 + "]" * 100_000)


def test_many_brackets_side_by_side_are_not_depth() -> None:
    wide = "[" + ",".join(["[]"] * 500) + "]"
    assert loads(wide) == [[]] * 500


def test_strings_holding_brackets_and_escaped_quotes_do_not_count() -> None:
    text = r'{"message": "' + "[" * 100 + r"\" \\" + "{" * 100 + '"}'
    assert loads(text) == {"message": "[" * 100 + '" \\' + "{" * 100}


def test_the_depth_scan_is_linear_on_unterminated_strings() -> None:
    """A body that is no JSON at all is scanned once, not once per quote it holds."""
    hostile = b'"' + rb"\"" * 200_000 + b"[" * 40
    assert strict_json.depth(hostile) == 0


def test_ordinary_json_reads_as_json_loads_does() -> None:
    text = r'{"a": [1, 2.5, -3e2, true, false, null, "x\u00e9"], "b": {}}'
    assert loads(text) == {
        "a": [1, 2.5, -300.0, True, False, None, "x\u00e9"],
        "b": {},
    }


def test_loads_reads_any_strict_document_and_refuses_the_rest() -> None:
    assert strict_json.loads('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert strict_json.loads(b"[]") == []
    for text in ("NaN", '{"a": Infinity}', "[" * 40 + "]" * 40, '"\ud800"', "{"):
        with pytest.raises(ValueError):  # noqa: PT011 - each kind is a ValueError of its own
            strict_json.loads(text)
