"""Structured log lines, and secrets redacted from every part of them."""

from __future__ import annotations

import enum
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.datastructures import Secret

from service.logs import EventLog, JSONFormatter, RedactingHandler, TextFormatter, configure
from service.redaction import REDACTED, Redactor

WEBHOOK = "hook-secret-5e1d0c7b"
DX = "dx-secret-9a8b7c6d"
QUOTED = 'app"key\\with-escapes'  # a JSON line spells it escaped
# repr() writes its ' as \' or ', its bell as \x07; a JSON line escapes that, and the é.
ODD = "odd'key\x07\u00e9-tail-3e5a"
SECRETS = (Secret(WEBHOOK), Secret(DX), Secret(QUOTED), Secret(ODD), None)
ROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")


def record(
    msg: str = "hello",
    *args: object,
    level: int = logging.INFO,
    exc: BaseException | None = None,
    **extra: Any,
) -> logging.LogRecord:
    exc_info = None if exc is None else (type(exc), exc, exc.__traceback__)
    rec = logging.LogRecord("service.test", level, __file__, 1, msg, args or None, exc_info)
    rec.__dict__.update(extra)
    return rec


def raised(message: str) -> BaseException:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


# ---- formatters ----------------------------------------------------------------------------


def test_json_formatter_emits_one_object_per_line_with_extra_fields() -> None:
    line = JSONFormatter().format(
        record("webhook %s", "stored", reference_id="opsgenie-abc", outcome="accepted")
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "webhook stored"
    assert entry["level"] == "info"
    assert entry["logger"] == "service.test"
    assert entry["reference_id"] == "opsgenie-abc"
    assert entry["outcome"] == "accepted"
    assert entry["time"].endswith("+00:00")
    # LogRecord internals are not fields.
    for internal in ("args", "msg", "levelno", "pathname", "exc_info", "thread"):
        assert internal not in entry


def test_json_formatter_keeps_multiline_messages_on_one_line() -> None:
    line = JSONFormatter().format(record("first\nsecond", extra_field="a\nb"))
    assert "\n" not in line
    assert json.loads(line)["message"] == "first\nsecond"


def test_json_formatter_serialises_any_extra_value() -> None:
    entry = json.loads(JSONFormatter().format(record(version=3, when=object(), ok=True)))
    assert entry["version"] == 3
    assert entry["ok"] is True
    assert entry["when"].startswith("<object object")


def test_json_formatter_carries_the_exception() -> None:
    entry = json.loads(JSONFormatter().format(record("boom", exc=raised("went wrong"))))
    assert entry["error"] == "RuntimeError: went wrong"
    assert "Traceback (most recent call last)" in entry["traceback"]
    assert "went wrong" in entry["traceback"]


def test_text_formatter_appends_fields() -> None:
    line = TextFormatter().format(record("delivered", reference_id="opsgenie-abc", version=2))
    assert line.endswith("INFO    service.test: delivered reference_id=opsgenie-abc version=2")


class Colour(enum.Enum):
    RED = "red"


class Code(enum.IntEnum):
    NOT_FOUND = 404


def at(created: float, rec: logging.LogRecord) -> logging.LogRecord:
    rec.created, rec.msecs = created, int((created - int(created)) * 1000) + 0.0
    return rec


def test_json_line_is_what_json_dumps_writes() -> None:
    """Operators' parsers read these lines: the fast formatter writes what
    ``json.dumps(entry, default=str)`` did, byte for byte."""
    fields: dict[str, Any] = {
        "text": 'quote " backslash \\ newline \n tab \t é ☃ \x1b',
        "count": 3,
        "big": 2**70,
        "ratio": 0.1,
        "took_ms": 1.23,
        "nan": float("nan"),
        "inf": float("-inf"),
        "yes": True,
        "none": None,
        "items": ["a", 1, {"b": None}],
        "colour": Colour.RED,
        "code": Code.NOT_FOUND,
        "when": datetime(2024, 5, 6, tzinfo=UTC),
    }
    rec = at(1_700_000_000.0429, record("msg with %s", 'a "quoted" arg', **fields))
    expected = {
        "time": "2023-11-14T22:13:20.042+00:00",
        "level": "info",
        "logger": "service.test",
        "message": 'msg with a "quoted" arg',
        **fields,
    }
    assert JSONFormatter().format(rec) == json.dumps(expected, default=str)


def test_json_fields_named_like_the_first_keys_replace_them_in_place() -> None:
    rec = at(1_700_000_000.5, record(logger="mine", time=7, after="x"))
    expected = {"time": 7, "level": "info", "logger": "mine", "message": "hello", "after": "x"}
    assert JSONFormatter().format(rec) == json.dumps(expected, default=str)


def test_json_exception_fields_replace_a_field_of_the_same_name_in_place() -> None:
    exc = raised("went wrong")
    rec = at(1_700_000_000.5, record("boom", exc=exc, error="field", after="x"))
    entry = json.loads(JSONFormatter().format(rec))
    assert list(entry) == ["time", "level", "logger", "message", "error", "after", "traceback"]
    assert entry["error"] == "RuntimeError: went wrong"


def test_timestamps_within_a_second_and_across_seconds() -> None:
    """The whole-second part is rendered once per second; every line still has its own."""
    json_formatter, text_formatter = JSONFormatter(), TextFormatter()
    for created in (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.0, 1_699_999_999.5):
        rec = at(created, record())
        utc = datetime.fromtimestamp(int(created), tz=UTC).isoformat()[: -len("+00:00")]
        ms = f"{int(rec.msecs):03d}"
        assert json.loads(json_formatter.format(rec))["time"] == f"{utc}.{ms}+00:00"
        assert text_formatter.format(rec).startswith(logging.Formatter().formatTime(rec))


def test_a_record_now_gets_the_time_now() -> None:
    before = time.time()
    entry = json.loads(JSONFormatter().format(record()))
    logged = datetime.fromisoformat(entry["time"]).timestamp()
    assert before - 0.001 <= logged <= time.time()  # milliseconds, truncated


# ---- configure -----------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``configure`` replaces the root handlers; put back what pytest and others had."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for name in ROUTED
        for lg in [logging.getLogger(name)]
    }
    # Start as a fresh process does: earlier tests ran uvicorn, which sets its own levels.
    for name in ROUTED:
        logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger(name).disabled = False
    # configure() also stops logging collecting threads, processes and callers.
    switches = ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")
    saved_switches = {name: getattr(logging, name) for name in switches}
    yield
    for name, value in saved_switches.items():
        setattr(logging, name, value)
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.propagate, lg.disabled = handlers, propagate, disabled
        lg.setLevel(level)  # setLevel also clears the logging module's level cache


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def assert_no_secret(text: str) -> None:
    for secret in (WEBHOOK, DX, QUOTED, json.dumps(QUOTED)[1:-1]):
        assert secret not in text


def output(fmt: str, rec: logging.LogRecord) -> str:
    """What the configured handler writes for ``rec``."""
    stream = io.StringIO()
    configure(fmt=fmt, level="DEBUG", secrets=SECRETS, stream=stream)
    logging.getLogger(rec.name).handle(rec)
    return stream.getvalue()


def written(fmt: str, rec: logging.LogRecord) -> str:
    """The line the configured handler writes for ``rec``."""
    [line] = output(fmt, rec).splitlines()
    return line


def message_and_fields(fmt: str, line: str) -> tuple[str, dict[str, str]]:
    """The message and the fields of a line with single-word fields, in either format."""
    if fmt == "json":
        entry = json.loads(line)
        return entry.pop("message"), {k: str(v) for k, v in entry.items()}
    words = line.split(": ", 1)[1].split(" ")
    fields = dict(w.split("=", 1) for w in words if "=" in w)
    return " ".join(w for w in words if "=" not in w), fields


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_redacts_the_message(fmt: str) -> None:
    line = written(fmt, record(f"token {WEBHOOK} and {DX} seen"))
    assert message_and_fields(fmt, line)[0] == f"token {REDACTED} and {REDACTED} seen"


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_redacts_args(fmt: str) -> None:
    line = written(fmt, record("token %s in %r", WEBHOOK, {"dx": DX}))
    message = message_and_fields(fmt, line)[0]
    assert message == f"token {REDACTED} in {{'dx': '{REDACTED}'}}"


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_redacts_extra_fields(fmt: str) -> None:
    line = written(fmt, record("x", token=WEBHOOK, url=f"https://x/?t={DX}", count=3))
    fields = message_and_fields(fmt, line)[1]
    assert fields["token"] == REDACTED
    assert fields["url"] == f"https://x/?t={REDACTED}"
    assert fields["count"] == "3"


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_leaves_other_text_alone(fmt: str) -> None:
    line = written(fmt, record("delivered opsgenie-abc in 0.2 s", reference_id="opsgenie-abc"))
    message, fields = message_and_fields(fmt, line)
    assert message == "delivered opsgenie-abc in 0.2 s"
    assert fields["reference_id"] == "opsgenie-abc"
    assert REDACTED not in line


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_a_bad_format_call_does_not_raise_into_the_caller(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain logging reports a bad ``%s`` call on stderr, arguments and all; the handler
    must neither raise into the code that logged (uvicorn's, httpx's or ours) nor print
    the arguments unredacted."""
    line = written(fmt, record(f"two %s %s but one arg {WEBHOOK}", DX))
    assert "two %s %s but one arg" in line
    assert_no_secret(line + capsys.readouterr().err)


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text for this")


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_a_line_that_cannot_be_written_is_reported_redacted(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=stream)
    logging.getLogger("service").info("token %s", WEBHOOK, extra={"odd": Unprintable()})
    logging.getLogger("service").info(Unprintable())
    logging.getLogger("service").info("still logging")
    assert lines(stream)[-1].count("still logging") == 1
    report = capsys.readouterr().err
    assert "--- Logging error ---" in report
    assert f"token {REDACTED}" in report
    assert "(unprintable message)" in report
    assert_no_secret(report + stream.getvalue())


@pytest.mark.usefixtures("restore_logging")
def test_configure_stops_collecting_what_no_line_shows() -> None:
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=io.StringIO())
    rec = logging.getLogger("service").makeRecord("service", logging.INFO, "f", 1, "m", (), None)
    assert (rec.thread, rec.process, rec.processName) == (None, None, None)
    assert logging._srcfile is None


@pytest.mark.usefixtures("restore_logging")
def test_configure_routes_uvicorn_and_httpx_through_the_redacting_handler() -> None:
    # uvicorn's own config would have given these loggers handlers of their own.
    stray = logging.StreamHandler(sys.stdout)
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addHandler(stray)
        logging.getLogger(name).propagate = False
    stream = io.StringIO()
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)

    for name in ROUTED:
        assert logging.getLogger(name).handlers == []
        assert logging.getLogger(name).propagate is True
    logging.getLogger("uvicorn.error").warning("bad header Authorization: Bearer %s", WEBHOOK)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.1", "POST", f"/hook?token={WEBHOOK}", "1.1", 202
    )
    logging.getLogger("httpx").warning("HTTP Request failed, token %s", DX)
    logging.getLogger("service.delivery").info(
        "delivered", extra={"reference_id": "opsgenie-abc", "outcome": "delivered", "t": DX}
    )

    output = lines(stream)
    assert len(output) == 4
    entries = [json.loads(line) for line in output]
    assert [e["logger"] for e in entries] == [
        "uvicorn.error",
        "uvicorn.access",
        "httpx",
        "service.delivery",
    ]
    assert entries[0]["message"] == f"bad header Authorization: {REDACTED}"
    assert entries[1]["message"] == f'10.0.0.1 - "POST /hook?token={REDACTED} HTTP/1.1" 202'
    assert entries[3]["reference_id"] == "opsgenie-abc"
    assert entries[3]["outcome"] == "delivered"
    assert entries[3]["t"] == REDACTED
    assert_no_secret(stream.getvalue())


@pytest.mark.usefixtures("restore_logging")
def test_configure_keeps_httpx_request_lines_out_at_info() -> None:
    stream = io.StringIO()
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    logging.getLogger("httpx").info('HTTP Request: POST https://dx/api "HTTP/1.1 200 OK"')
    logging.getLogger("httpcore").info("connection opened")
    logging.getLogger("service").debug("not at INFO")
    assert stream.getvalue() == ""


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_configure_redacts_exception_tracebacks(fmt: str) -> None:
    stream = io.StringIO()
    configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=stream)
    try:
        raise ValueError(f"DX refused {DX} for {WEBHOOK} and {QUOTED}")
    except ValueError:
        logging.getLogger("service.delivery").exception("DX attempt failed")
    text = stream.getvalue()
    assert "DX attempt failed" in text
    assert "Traceback (most recent call last)" in text
    assert "ValueError: DX refused" in text
    assert_no_secret(text)
    if fmt == "json":
        [line] = lines(stream)
        entry = json.loads(line)
        assert entry["error"] == f"ValueError: DX refused {REDACTED} for {REDACTED} and {REDACTED}"


@pytest.mark.usefixtures("restore_logging")
def test_configure_redacts_the_json_escaped_spelling_of_a_secret() -> None:
    stream = io.StringIO()
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    logging.getLogger("service").info("keys", extra={"headers": {"x-key": QUOTED}})
    [line] = lines(stream)
    assert json.loads(line)["headers"] == {"x-key": REDACTED}
    assert_no_secret(line)


@pytest.mark.parametrize(
    "message",
    [
        "Authorization: Bearer opaque-value-1",
        'sent "Authorization: Bearer opaque-value-1" to DX',
        "status 401\nAuthorization: Bearer opaque-value-1",
        "col\tGenieKey opaque-value-1",
        "\x1bDD-API-KEY: opaque-value-1",
        "Authorization: Bearer opaque-välue-1",
        'headers={"Authorization": "Bearer opaque-välue-1"}',
        "headers={'DD-API-KEY': 'opaque-value-1', 'Accept': 'application/json'}",
        'headers={"GenieKey": "opaque-value-1"}',
        "dd-application-key=opaque-value-1",
    ],
)
@pytest.mark.usefixtures("restore_logging")
def test_header_redaction_keeps_every_json_line_valid(message: str) -> None:
    """The header pattern runs on the finished line, where JSON has escaped quotes, control
    characters and non-ASCII: it redacts as it would have the raw text, and never eats
    closing quotes."""
    stream = io.StringIO()
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    logging.getLogger("uvicorn.error").info(message, extra={"detail": message})
    [line] = lines(stream)
    entry = json.loads(line)
    assert "opaque" not in line
    expected = Redactor([]).redact(message)
    assert entry["message"] == entry["detail"] == expected
    assert expected.count(REDACTED) == 1


@pytest.mark.usefixtures("restore_logging")
def test_configure_text_format() -> None:
    stream = io.StringIO()
    configure(fmt="text", level="DEBUG", secrets=SECRETS, stream=stream)
    logging.getLogger("service.webhooks").debug(
        "webhook stored", extra={"reference_id": "opsgenie-abc", "token": WEBHOOK}
    )
    [line] = lines(stream)
    assert " DEBUG   service.webhooks: webhook stored" in line
    assert line.endswith(f"reference_id=opsgenie-abc token={REDACTED}")


@pytest.mark.usefixtures("restore_logging")
def test_configure_without_a_stream_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure(fmt="json", level="INFO", secrets=SECRETS)
    logging.getLogger("service").info("to stderr %s", WEBHOOK)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["message"] == f"to stderr {REDACTED}"


@pytest.mark.usefixtures("restore_logging")
def test_a_bad_format_call_through_configure_does_not_raise() -> None:
    stream = io.StringIO()
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    logging.getLogger("uvicorn.error").info("%s and %s", WEBHOOK)  # one argument short
    assert_no_secret(stream.getvalue())


@pytest.mark.usefixtures("restore_logging")
def test_a_header_name_that_ends_a_string_is_no_header() -> None:
    """What follows it is the string's closing quote and the next key, not a value."""
    stream = io.StringIO()
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    logging.getLogger("service").info(
        "missing Authorization", extra={"header": "GenieKey", "headers": ["DD-API-KEY"]}
    )
    [line] = lines(stream)
    entry = json.loads(line)
    assert entry["message"] == "missing Authorization"
    assert entry["header"] == "GenieKey"
    assert entry["headers"] == ["DD-API-KEY"]
    assert REDACTED not in line


def key_error(key: str) -> BaseException:
    try:
        dict[str, str]()[key]
    except KeyError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize("secret", [QUOTED, ODD])
@pytest.mark.parametrize(
    "how",
    [
        lambda s: record("x", headers={"k": s}),
        lambda s: record("x", pair=("k", s), keys=[s]),
        lambda s: record("x", keys={s}),  # a set: the JSON line has str() of it
        lambda s: record("got %r", s),
        lambda s: record("got %s", {"k": f'"{s}'}),  # beside a ", repr writes ' as \'
        lambda s: record("lookup failed", exc=key_error(s)),  # str(KeyError) is a repr
    ],
    ids=["dict", "tuple-and-list", "set", "%r", "beside-a-quote", "KeyError"],
)
@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_redacts_a_secret_as_repr_writes_it(
    fmt: str, how: Callable[[str], logging.LogRecord], secret: str
) -> None:
    """A secret in a container, a %r or an exception is written by repr(), and on a JSON
    line escaped on top of that: each of those spellings is redacted, whole."""
    text = output(fmt, how(secret))
    if fmt == "json":
        json.loads(text)  # still one JSON line
    assert REDACTED in text
    assert secret[-9:] not in text  # the part after the escapes
    assert_no_secret(text)


@pytest.mark.parametrize(
    ("message", "fields", "kept"),
    [
        (
            "missing Authorization",
            {"reference_id": "opsgenie-abc", "authorization": "Bearer opaque-value-1"},
            f"authorization={REDACTED}",
        ),
        (
            "missing Authorization",
            {"header": "Authorization: Bearer opaque-value-1"},
            f"header=Authorization: {REDACTED}",
        ),
        (
            "missing GenieKey",
            {"reference_id": "opsgenie-abc", "geniekey": "GenieKey opaque-value-1"},
            f"geniekey=GenieKey {REDACTED}",
        ),
    ],
)
@pytest.mark.usefixtures("restore_logging")
def test_a_header_name_ending_a_text_message_does_not_swallow_the_next_header(
    message: str, fields: dict[str, Any], kept: str
) -> None:
    """On a text line nothing marks where the message ends, so a header name ending it is
    followed by the fields. Its value must not take a word holding another header's name
    (``authorization=Bearer``): that header's own value would be left behind, unredacted."""
    line = written("text", record(message, **fields))
    assert "opaque" not in line
    assert line.endswith(kept)


# ---- EventLog ------------------------------------------------------------------------------

WEBHOOK_LINES: list[tuple[int, str, dict[str, Any]]] = [
    (
        logging.INFO,
        "webhook stored",
        {
            "reference_id": "opsgenie-7f3c9e1a-55b2-4d0e-9a61-0c8e2d4b6f13",
            "action": "Create",
            "outcome": "accepted",
            "took_ms": 1.23,
        },
    ),
    (
        logging.INFO,
        "webhook ignored",
        {
            "reference_id": "opsgenie-0c8e",
            "alert_id": 'alert "quoted" back\\slash é ☃ 🚨 \x1b\x7f\nnext',
            "action": "Fetched",
            "outcome": "ignored",
        },
    ),
    (
        logging.WARNING,
        "webhook refused",
        {"action": None, "outcome": "unauthorized", "error": "missing or invalid webhook token"},
    ),
    (
        logging.WARNING,
        "webhook refused",
        {
            "action": "Close",
            "outcome": "invalid",
            "error": f'alert.alias: "{WEBHOOK}" and {QUOTED} and {ODD} and {DX}',
        },
    ),
    (
        logging.INFO,
        "webhook stored",
        {
            "reference_id": f"opsgenie-{WEBHOOK}",
            "action": "Authorization: Bearer opaque-value-1",
            "outcome": "duplicate",
            "took_ms": 0.1,
        },
    ),
    (
        logging.INFO,
        "webhook 100% stored %s",  # no arguments: never %-formatted, in either path
        {"took_ms": 12345.67, "tiny": 1e-05, "huge": 1e20, "count": 3, "ok": True},
    ),
    (logging.INFO, "webhook stored", {}),
]


def fixed_clock(created: float) -> Callable[[], float]:
    return lambda: created


def through_logging(fmt: str, level: int, message: str, fields: dict[str, Any]) -> str:
    """What ``logger.log(level, message, extra=fields)`` writes at ``CREATED`` today."""
    stream = io.StringIO()
    configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=stream)
    log = logging.getLogger("service.webhooks")
    rec = log.makeRecord(log.name, level, __file__, 1, message, (), None, extra=fields)
    log.handle(at(CREATED, rec))
    return stream.getvalue()


def through_event_log(fmt: str, level: int, message: str, fields: dict[str, Any]) -> str:
    stream = io.StringIO()
    configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=stream)
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, RedactingHandler)
    events = EventLog(handler, clock=fixed_clock(CREATED))  # configure()'s, at a fixed time
    log = logging.getLogger("service.webhooks")
    (events.info if level == logging.INFO else events.warning)(log, message, **fields)
    return stream.getvalue()


CREATED = 1_700_000_000.0429


@pytest.mark.parametrize(("level", "message", "fields"), WEBHOOK_LINES)
@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_event_log_writes_the_bytes_logging_writes(
    fmt: str, level: int, message: str, fields: dict[str, Any]
) -> None:
    expected = through_logging(fmt, level, message, fields)
    assert expected.count("\n") >= 1  # the line was written, redacted
    assert_no_secret(expected)
    assert "opaque-value-1" not in expected
    assert through_event_log(fmt, level, message, fields) == expected


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_event_log_from_configure_writes_beside_logging_lines_in_order(fmt: str) -> None:
    stream = io.StringIO()
    events = configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=stream)
    log = logging.getLogger("service.webhooks")
    before = time.time()
    log.info("webhook stored", extra={"reference_id": "opsgenie-1", "token": WEBHOOK})
    events.info(log, "webhook stored", reference_id="opsgenie-1", token=WEBHOOK)
    logging.getLogger("uvicorn.error").info("between")
    events.warning(log, "webhook refused", action=None, outcome="invalid")
    after = time.time()
    first, second, between, refused = lines(stream)
    # The same line but for the time each was written at; the redactor ran on both.
    time_length = len("2023-11-14T22:13:20.042+00:00") + 10 if fmt == "json" else 23
    assert first[time_length:] == second[time_length:]
    assert REDACTED in second
    assert "between" in between
    assert "webhook refused" in refused
    if fmt == "json":
        stamps = [json.loads(line)["time"] for line in (first, second, refused)]
        written_at = [datetime.fromisoformat(s).timestamp() for s in stamps]
        assert all(before - 0.001 <= t <= after for t in written_at)
        assert json.loads(refused)["level"] == "warning"


@pytest.mark.usefixtures("restore_logging")
def test_event_log_respects_the_configured_level() -> None:
    stream = io.StringIO()
    events = configure(fmt="json", level="WARNING", secrets=SECRETS, stream=stream)
    log = logging.getLogger("service.webhooks")
    events.info(log, "webhook stored", reference_id="opsgenie-1")
    events.warning(log, "webhook refused", outcome="invalid")
    [line] = lines(stream)
    assert json.loads(line)["message"] == "webhook refused"


@pytest.mark.usefixtures("restore_logging")
def test_event_log_writes_nothing_for_a_disabled_logger() -> None:
    stream = io.StringIO()
    events = configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    log = logging.getLogger("service.webhooks")
    log.disabled = True
    try:
        events.warning(log, "webhook refused", outcome="invalid")
    finally:
        log.disabled = False
    assert stream.getvalue() == ""


def test_event_log_without_configure_goes_through_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tests and library use: pytest's caplog (or any handler) sees the records, with the
    fields as attributes and the caller as the place they were logged from."""
    log = logging.getLogger("service.webhooks")
    with caplog.at_level(logging.INFO, logger="service.webhooks"):
        EventLog().info(log, "webhook stored", reference_id="opsgenie-1", took_ms=1.5)
        EventLog().warning(log, "webhook refused", outcome="invalid")
    stored, refused = caplog.records
    assert (stored.levelno, stored.getMessage()) == (logging.INFO, "webhook stored")
    assert (stored.reference_id, stored.took_ms) == ("opsgenie-1", 1.5)  # type: ignore[attr-defined]
    assert stored.funcName == "test_event_log_without_configure_goes_through_logging"
    assert (refused.levelno, refused.outcome) == (logging.WARNING, "invalid")  # type: ignore[attr-defined]


class Writes(io.StringIO):
    """A stream that counts the writes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


STORED_LINES: list[dict[str, object]] = [
    {"reference_id": "opsgenie-1", "action": "Create", "outcome": "accepted", "took_ms": 1.5},
    {
        "reference_id": f"opsgenie-{WEBHOOK}",
        "action": "Authorization: Bearer opaque-value-1",
        "outcome": "duplicate",
        "took_ms": 0.25,
    },
    {"reference_id": 'quoted "\\ é ☃ \x1b', "action": "Close", "outcome": "accepted", "took_ms": 3},
]


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_event_log_info_each_writes_the_lines_of_info_in_one_write(fmt: str) -> None:
    one_by_one = io.StringIO()
    events = configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=one_by_one)
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, RedactingHandler)
    log = logging.getLogger("service.webhooks")
    for fields in STORED_LINES:
        EventLog(handler, clock=fixed_clock(CREATED)).info(log, "webhook stored", **fields)
    together = Writes()
    handler.setStream(together)
    EventLog(handler, clock=fixed_clock(CREATED)).info_each(log, "webhook stored", STORED_LINES)
    assert together.getvalue() == one_by_one.getvalue()
    assert len(lines(together)) == len(STORED_LINES)
    assert together.writes == 1
    assert_no_secret(together.getvalue())
    assert "opaque-value-1" not in together.getvalue()
    assert events is not None


@pytest.mark.usefixtures("restore_logging")
def test_event_log_info_each_writes_nothing_below_the_configured_level() -> None:
    stream = Writes()
    events = configure(fmt="json", level="WARNING", secrets=SECRETS, stream=stream)
    events.info_each(logging.getLogger("service.webhooks"), "webhook stored", STORED_LINES)
    assert (stream.getvalue(), stream.writes) == ("", 0)


@pytest.mark.usefixtures("restore_logging")
def test_event_log_info_each_of_lines_with_other_fields_writes_each_as_info_would() -> None:
    mixed: list[dict[str, object]] = [STORED_LINES[0], {"reference_id": "opsgenie-2"}]
    expected = io.StringIO()
    configure(fmt="json", level="INFO", secrets=SECRETS, stream=expected)
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, RedactingHandler)
    log = logging.getLogger("service.webhooks")
    for fields in mixed:
        EventLog(handler, clock=fixed_clock(CREATED)).info(log, "webhook stored", **fields)
    written = io.StringIO()
    handler.setStream(written)
    EventLog(handler, clock=fixed_clock(CREATED)).info_each(log, "webhook stored", mixed)
    assert written.getvalue() == expected.getvalue()


def test_event_log_info_each_without_configure_goes_through_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("service.webhooks")
    with caplog.at_level(logging.INFO, logger="service.webhooks"):
        EventLog().info_each(log, "webhook stored", STORED_LINES)
    assert [r.reference_id for r in caplog.records] == [  # type: ignore[attr-defined]
        fields["reference_id"] for fields in STORED_LINES
    ]
    first = caplog.records[0]
    assert (first.levelno, first.getMessage()) == (logging.INFO, "webhook stored")
    assert first.took_ms == 1.5  # type: ignore[attr-defined]
    assert first.funcName == "test_event_log_info_each_without_configure_goes_through_logging"


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.usefixtures("restore_logging")
def test_event_log_goes_through_logging_when_another_handler_listens() -> None:
    stream = io.StringIO()
    events = configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    log = logging.getLogger("service.webhooks")
    collected = Collected()
    log.addHandler(collected)
    try:
        events.info(log, "webhook stored", reference_id="opsgenie-1")
    finally:
        log.removeHandler(collected)
    [rec] = collected.records
    assert rec.reference_id == "opsgenie-1"  # type: ignore[attr-defined]
    [line] = lines(stream)
    assert json.loads(line)["reference_id"] == "opsgenie-1"


@pytest.mark.usefixtures("restore_logging")
def test_event_log_goes_through_logging_when_a_filter_could_drop_or_change_the_line() -> None:
    stream = io.StringIO()
    events = configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    log = logging.getLogger("service.webhooks")

    def only_stored(rec: logging.LogRecord) -> bool:
        rec.seen = True
        return rec.getMessage() == "webhook stored"

    log.addFilter(only_stored)
    try:
        events.info(log, "webhook stored", reference_id="opsgenie-1")
        events.info(log, "webhook ignored", reference_id="opsgenie-2")
    finally:
        log.removeFilter(only_stored)
    [line] = lines(stream)
    assert json.loads(line) | {"time": "t"} == {
        "time": "t",
        "level": "info",
        "logger": "service.webhooks",
        "message": "webhook stored",
        "reference_id": "opsgenie-1",
        "seen": True,
    }


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_event_log_treats_special_field_names_as_logging_does(fmt: str) -> None:
    """Such a call goes through logging, so its line has the time logging gave it."""
    fields: dict[str, Any] = {"logger": "mine", "_hidden": 1, "after": "x", "time": 7}
    event_line = through_event_log(fmt, logging.INFO, "m", fields)
    if fmt == "json":  # fields named like the first keys take their places
        assert event_line.startswith('{"time": 7, "level": "info", "logger": "mine", ')
    else:
        assert event_line.endswith(": m logger=mine after=x time=7\n")  # _hidden is not shown
    assert event_line[23:] == through_logging(fmt, logging.INFO, "m", fields)[23:]
    log = logging.getLogger("service.webhooks")
    events = configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=io.StringIO())
    with pytest.raises(KeyError, match="Attempt to overwrite 'name' in LogRecord"):
        events.info(log, "m", name="clash")


class Trickling(io.StringIO):
    """Writes in pieces and lets other threads run in between, as a slow file would."""

    def write(self, text: str) -> int:
        for start in range(0, len(text), 16):
            super().write(text[start : start + 16])
            time.sleep(0)  # hand the GIL over: an unlocked writer would interleave here
        return len(text)


@pytest.mark.usefixtures("restore_logging")
def test_event_log_and_logging_lines_never_interleave() -> None:
    stream = Trickling()
    events = configure(fmt="json", level="INFO", secrets=SECRETS, stream=stream)
    log = logging.getLogger("service.webhooks")

    def write(thread: int) -> None:
        for n in range(100):
            if n % 2:
                events.info(log, "webhook stored", writer=thread, n=n, pad="x" * 50)
            else:
                log.info("webhook stored", extra={"writer": thread, "n": n, "pad": "x" * 50})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    entries = [json.loads(line) for line in lines(stream)]
    assert sorted((e["writer"], e["n"]) for e in entries) == [
        (t, n) for t in range(4) for n in range(100)
    ]


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk gone")


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_logging")
def test_a_line_the_event_log_cannot_write_is_reported_redacted(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events = configure(fmt=fmt, level="INFO", secrets=SECRETS, stream=Broken())
    log = logging.getLogger("service.webhooks")
    events.info(log, f"webhook stored {WEBHOOK}", reference_id="opsgenie-1")  # does not raise
    events.info(log, "webhook stored", odd=Unprintable())
    report = capsys.readouterr().err
    assert report.count("--- Logging error ---") == 2
    assert "OSError: disk gone" in report
    assert f"webhook stored {REDACTED}" in report
    assert_no_secret(report)
