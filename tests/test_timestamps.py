"""Opsgenie's timestamps: every unit a webhook's number may be in, and each value refused."""

from __future__ import annotations

import pytest

from service.errors import PayloadError
from service.timestamps import parse_iso_ns, parse_timestamp_ns


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1420452224764002246, 1420452224764002246),  # ns, Opsgenie's updatedAt
        ("1420452224764002246", 1420452224764002246),  # the same as a string: no float loss
        (" 1420452224764002246 ", 1420452224764002246),
        (1420452224764002, 1420452224764002000),  # µs
        (1420452224764, 1420452224764000000),  # ms, createdAt and some updatedAt senders
        ("1420452224764", 1420452224764000000),
        (1420452224764.0, 1420452224764000000),
        ("1420452224764.0", 1420452224764000000),
        (1420452224, 1420452224000000000),  # s
        ("1420452224", 1420452224000000000),
        (1, 10**9),
    ],
)
def test_parse_timestamp_by_magnitude(value: object, expected: int) -> None:
    assert parse_timestamp_ns(value, field="x") == expected


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "",
        "  ",
        "0x10",
        "NaN",
        "nan",
        "inf",
        "-Infinity",
        "-5",
        -1420452224764002246,
        0,
        "0",
        10**20,
        10**30,
        10**400,  # past float's range: a 400, not an OverflowError
        "1" + "0" * 400,
        "1e400",
        float("nan"),
        float("inf"),
        True,
        False,
        None,
        [1420452224764],
        {"ns": 1},
    ],
)
def test_parse_timestamp_rejects(value: object) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_timestamp_ns(value, field="alert.updatedAt")
    assert caught.value.field == "alert.updatedAt"
    assert "alert.updatedAt" in caught.value.message


def test_all_magnitudes_of_one_instant_agree() -> None:
    ms = 1420452191104
    forms: list[object] = [ms, str(ms), ms * 1000, ms * 10**6, str(ms * 10**6), ms / 1000]
    assert {parse_timestamp_ns(form, field="x") for form in forms} == {ms * 10**6}


def test_parse_iso_keeps_microseconds_and_honours_the_offset() -> None:
    expected = 1420452191104000 * 1000
    assert parse_iso_ns("2015-01-05T10:03:11.104Z", field="x") == expected
    assert parse_iso_ns("2015-01-05T11:03:11.104+01:00", field="x") == expected


@pytest.mark.parametrize("value", ["2015-01-05T10:03:11.104", "yesterday", 1420452191104, None])
def test_parse_iso_rejects(value: object) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_iso_ns(value, field="data.updatedAt")
    assert caught.value.field == "data.updatedAt"
