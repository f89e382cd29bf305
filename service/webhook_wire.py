"""An Opsgenie webhook's wire form: ``msgspec`` types that decode and type-check in one pass.

Each field the relay reads has its type here; every other key is skipped unread, so a
field the relay never uses cannot make a webhook bad input. Fields only some actions
use (``owner``, ``team``, ...) are typed ``Any`` and checked by ``opsgenie`` for those
actions alone. A type error becomes a ``PayloadError`` naming the field, as
``alert.message: expected a string``.

What every webhook must carry (an ``action``, an ``alert.alertId``) is checked before
anything else and on its own: intake decides from the action alone whether to read
further, so a webhook it ignores needs nothing more to be well-formed.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, NamedTuple

import msgspec

from service import characters, strict_json
from service.errors import PayloadError


class Alert(msgspec.Struct, rename="camel", gc=False):
    """``alert`` as the relay reads it; ``None`` is "not sent" (or ``null``)."""

    alert_id: str | None = None
    updated_at: int | float | str | None = None
    created_at: int | float | str | None = None
    message: str | None = None
    alias: str | None = None
    entity: str | None = None
    source: str | None = None
    # A float too: JSON has one kind of number, and 3.0 is the integer 3 to its schema.
    tiny_id: str | int | float | None = None
    priority: str | int | float | None = None
    tags: list[str] | None = None
    added_tags: str | list[str] | None = None
    removed_tags: str | list[str] | None = None
    details: dict[str, str] | None = None
    # Read, and so checked, only on the actions that use them.
    team: Any = None
    responders: Any = None
    owner: Any = None
    username: Any = None


class _Payload(msgspec.Struct, rename="camel", gc=False):
    action: str | None = None
    alert: Alert | None = None
    integration_name: str | None = None


class _EnvelopeAlert(msgspec.Struct, rename="camel", gc=False):
    alert_id: str | None = None


class _Envelope(msgspec.Struct, gc=False):
    """Only what every webhook must carry: read when the whole payload is not well typed."""

    action: str | None = None
    alert: _EnvelopeAlert | None = None


class _DetailsAlert(msgspec.Struct, gc=False):
    details: dict[str, Any] | None = None


class _Details(msgspec.Struct, gc=False):
    """Read only to name the detail whose value is not a string (msgspec does not)."""

    alert: _DetailsAlert | None = None


_PAYLOAD = msgspec.json.Decoder(_Payload)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_DETAILS = msgspec.json.Decoder(_Details)


class Decoded(NamedTuple):
    """A webhook whose envelope is sound. ``alert`` is its typed alert, or the error
    naming the first field of it that is wrong; ``text`` is the body as stored."""

    text: str
    action: str
    alert_id: str
    alert: Alert | PayloadError
    integration_name: str | None


#: What a type error at a field means to the sender (msgspec's own text names types).
_EXPECTED = {
    "action": "expected a non-empty string",
    "alert": "expected an object",
    "alert.updatedAt": "expected an epoch timestamp",
    "alert.createdAt": "expected an epoch timestamp",
    "alert.priority": "expected P1..P5 or 1..5",
    "alert.tags": "expected a list of strings",
    "alert.addedTags": "expected a comma-separated string",
    "alert.removedTags": "expected a comma-separated string",
    "alert.details": "expected an object",
}

#: A UTF-16 surrogate escape with no partner: valid JSON text, but no UTF-8 text.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)

# The id names the DX incident and keys every stored row; Opsgenie's are plain text, and a
# control character (NUL above all) would not survive every layer below unchanged
# (``characters.ALERT_ID``: the rule, and the document's pattern).
UNPRINTABLE_ID = "{}: control or other unprintable characters are not allowed"


def decode_webhook(body: bytes) -> Decoded:
    """Decode a webhook body in one pass. Raises ``PayloadError`` for a body that is not
    JSON, or an envelope without what every webhook carries."""
    try:
        # Strict UTF-8, a BOM allowed: msgspec does not check the strings it skips.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not valid JSON", field="body") from None
    data = body.removeprefix(codecs.BOM_UTF8)
    try:
        payload = strict_json.decode(data, _PAYLOAD)
    except msgspec.ValidationError as error:
        # Which field: the envelope's problems first, as when the payload is well typed.
        envelope = _decode(data, _ENVELOPE)
        action, alert_id = _envelope(envelope.action, envelope.alert)
        return Decoded(text, action, alert_id, _field_error(error, data), None)
    except ValueError as error:
        raise _body_error(error, data) from None
    action, alert_id = _envelope(payload.action, payload.alert)
    assert payload.alert is not None  # _envelope said so
    return Decoded(text, action, alert_id, payload.alert, payload.integration_name)


def _decode(data: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    """The envelope, read again after the typed pass stopped at a field: what follows that
    field may still not be JSON (a truncated body), which is the body's error."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as error:
        raise _field_error(error, data) from None
    except msgspec.DecodeError as error:
        raise _body_error(error, data) from None


def _envelope(action: str | None, alert: Alert | _EnvelopeAlert | None) -> tuple[str, str]:
    if action is None:
        raise PayloadError("action is required", field="action")
    if characters.blank(action):
        raise PayloadError("action: expected a non-empty string", field="action")
    alert_id = None if alert is None else alert.alert_id
    if alert_id is None or characters.blank(alert_id):
        raise PayloadError("alert.alertId is required", field="alert.alertId")
    if not characters.alert_id_ok(alert_id):
        raise PayloadError(UNPRINTABLE_ID.format("alert.alertId"), field="alert.alertId")
    return action, alert_id


def _body_error(error: ValueError | msgspec.DecodeError, data: bytes) -> PayloadError:
    if isinstance(error, strict_json.NotStrictJSON):
        return PayloadError(f"body is not valid JSON: {error}", field="body")
    if _LONE_SURROGATE.search(data):
        # "\ud800" is valid JSON but no UTF-8 text: SQLite and DX could never take it.
        return PayloadError("body has an unpaired UTF-16 surrogate escape", field="body")
    # msgspec's messages quote no input, but speak of bytes; ours say what was refused.
    return PayloadError("body is not valid JSON", field="body")


def _field_error(error: msgspec.ValidationError, data: bytes) -> PayloadError:
    """msgspec's ``... - at `$.alert.tags[1]``` as ``alert.tags: expected ...``."""
    _, found, path = str(error).partition(" - at `$.")
    if not found:  # the document itself has the wrong type
        return PayloadError("body must be a JSON object", field="body")
    field = path.rstrip("`").split("[", 1)[0]
    if field == "alert.details" and path.startswith("alert.details["):
        field = f"alert.details.{_non_string_detail(data)}"
        return PayloadError(f"{field}: expected a string", field=field)
    expected = _EXPECTED.get(field, "expected a string")
    return PayloadError(f"{field}: {expected}", field=field)


def _non_string_detail(data: bytes) -> str:
    """The first key of ``alert.details`` whose value is not a string (the body is known
    to hold one)."""
    alert = _DETAILS.decode(data).alert
    details = {} if alert is None or alert.details is None else alert.details
    return next((key for key, value in details.items() if not isinstance(value, str)), "")
