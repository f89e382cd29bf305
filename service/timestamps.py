"""Opsgenie's timestamps to epoch nanoseconds, the one unit the relay orders events by.

Webhooks carry epoch numbers whose unit only their size tells; the Alert API writes
ISO-8601. Either way a value that cannot be a time is a ``PayloadError`` naming the field.
"""

from __future__ import annotations

from datetime import datetime

from service.errors import PayloadError


def parse_timestamp_ns(value: object, *, field: str) -> int:
    """Epoch time in s, ms, µs or ns (an int or a numeric string) to ns, by magnitude.

    Opsgenie's ``updatedAt`` is ns (19 digits), ``createdAt`` is ms, and some senders
    put ms or a numeric string in ``updatedAt``; the size of the number says which.
    """
    number: int | float
    if type(value) is int:  # what JSON gives nearly always; checked first as the cheapest
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if text.isdigit() else float(text)
        except ValueError:
            raise PayloadError(f"{field}: expected an epoch timestamp", field=field) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    else:
        raise PayloadError(f"{field}: expected an epoch timestamp", field=field)
    # NaN and the infinities fail this comparison too; unlike ``math.isfinite`` it takes
    # an integer of any size rather than raising ``OverflowError`` past float's range.
    if not 0 < number < 10**20:
        raise PayloadError(f"{field}: timestamp out of range", field=field)
    if number >= 10**17:
        return int(number)
    if number >= 10**14:
        return int(number * 10**3)
    if number >= 10**11:
        return int(number * 10**6)
    return int(number * 10**9)


def parse_iso_ns(value: object, *, field: str) -> int:
    """An ISO-8601 string (the Alert API's format) to epoch ns."""
    if not isinstance(value, str):
        raise PayloadError(f"{field}: expected an ISO-8601 string", field=field)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{field}: not an ISO-8601 timestamp", field=field) from None
    if moment.tzinfo is None:
        raise PayloadError(f"{field}: timestamp has no UTC offset", field=field)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
