"""Strict JSON for text from outside: what ``json.loads`` takes and JSON does not."""

from __future__ import annotations

import pytest

from service import strict_json


@pytest.mark.parametrize(
    "text",
    ["NaN", "Infinity", "-Infinity", '{"a": [1, NaN]}', '{"a": {"b": Infinity}}'],
)
def test_non_standard_constants_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not JSON"):
        strict_json.loads(text)


def test_nesting_to_the_limit_is_read_and_one_more_level_refused() -> None:
    deepest = "[" * strict_json.MAX_DEPTH + "]" * strict_json.MAX_DEPTH
    assert strict_json.depth(strict_json.loads(deepest)) == strict_json.MAX_DEPTH
    with pytest.raises(ValueError, match="nests deeper"):
        strict_json.loads("[" + deepest + "]")


def test_nesting_past_the_recursion_limit_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nests deeper"):
        strict_json.loads("[" * 100_000 + "]" * 100_000)


def test_many_brackets_side_by_side_are_not_depth() -> None:
    wide = "[" + ",".join(["[]"] * 500) + "]"
    assert strict_json.loads(wide) == [[]] * 500


def test_strings_holding_brackets_do_not_count() -> None:
    document = {"message": "[" * 100 + "{" * 100}
    assert strict_json.loads('{"message": "' + "[" * 100 + "{" * 100 + '"}') == document


def test_ordinary_json_reads_as_json_loads_does() -> None:
    text = '{"a": [1, 2.5, -3e2, true, false, null, "x\\u00e9"], "b": {}}'
    assert strict_json.loads(text) == {
        "a": [1, 2.5, -300.0, True, False, None, "x\u00e9"],
        "b": {},
    }
