"""DX answers classified as a table, and the client over ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from service.dx import PERMANENT_CODES, Answer, DXClient, classify, make_http_client
from service.errors import (
    DeliveryError,
    DXAuthError,
    DXRedirected,
    DXUnusable,
    PermanentError,
    RetryableError,
)
from service.settings import Settings
from service.translate import IncidentUpsert
from tests.fakes.hostile import HostileUpstream, drip, gzip_bomb, huge, raw
from tests.fakes.memory import MB, peak_growth
from tests.fakes.servers import UvicornThread

NOW = 1_700_000_000.0
BASE = "https://acme.getdx.net"
TOKEN = "dx-token-0123"
BODY: IncidentUpsert = {
    "reference_id": "opsgenie-abc",
    "name": "Invalid argument broke settings page",
    "started_at": "2024-01-01T11:22:33Z",
    "resolved_at": None,
}


def dx_json(document: Any) -> bytes:
    return json.dumps(document).encode()


def raised(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> DeliveryError | Answer:
    try:
        return classify(status, headers or {}, body, now=NOW)
    except DeliveryError as error:
        return error


# ---- classify --------------------------------------------------------------------------


def test_200_ok_true_is_an_answer_holding_the_body() -> None:
    body = dx_json({"ok": True, "incident": {"reference_id": "opsgenie-abc"}})
    answer = classify(200, {}, body, now=NOW)
    assert answer == Answer(200, body.decode())


@pytest.mark.parametrize(
    "code",
    ["invalid_arguments", "invalid_timestamp", "metadata_invalid", "invalid_json", "not_found"],
)
def test_200_ok_false_with_a_permanent_code(code: str) -> None:
    assert code in PERMANENT_CODES
    with pytest.raises(PermanentError) as caught:
        classify(200, {}, dx_json({"ok": False, "error": code}), now=NOW)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (dx_json({"ok": False, "error": "ratelimited_internal"}), "ratelimited_internal"),
        (dx_json({"ok": False}), "ok_false"),
        (dx_json({"ok": False, "error": ""}), "ok_false"),
        (dx_json({"ok": False, "error": 42}), "ok_false"),
    ],
)
def test_200_ok_false_with_an_unknown_code_is_retryable(body: bytes, code: str) -> None:
    with pytest.raises(RetryableError) as caught:
        classify(200, {}, body, now=NOW)
    assert caught.value.code == code
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, b""),
        (401, dx_json({"ok": False, "error": "not_authed"})),
        (403, b"forbidden"),
        (200, dx_json({"ok": False, "error": "not_authed"})),
        (400, dx_json({"ok": False, "error": "not_authed"})),
    ],
)
def test_not_authed_is_an_auth_error(status: int, body: bytes) -> None:
    with pytest.raises(DXAuthError) as caught:
        classify(status, {}, body, now=NOW)
    assert caught.value.code == "not_authed"
    assert caught.value.message == f"DX refused the token: not_authed (HTTP {status})"
    # Not a PermanentError: a bad token pauses everyone instead of failing each reference.
    assert not isinstance(caught.value, PermanentError | RetryableError)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_pauses_everyone_and_names_where_it_points(status: int) -> None:
    headers = {"Location": "https://acme.getdx.net/api/incidents.upsert"}
    with pytest.raises(DXRedirected) as caught:
        classify(status, headers, b"", now=NOW)
    assert caught.value.code == "redirected"
    assert isinstance(caught.value, DXUnusable)
    assert not isinstance(caught.value, PermanentError | RetryableError)
    assert f"DX answered {status} redirecting to https://acme.getdx.net/" in caught.value.message
    assert "RELAY_DX_BASE_URL" in caught.value.message


def test_a_redirect_names_where_it_points_without_the_query() -> None:
    headers = {"Location": "https://sso.example.com/login?state=s3cr3t#frag"}
    with pytest.raises(DXRedirected) as caught:
        classify(302, headers, b"", now=NOW)
    assert "redirecting to https://sso.example.com/login:" in caught.value.message
    assert "s3cr3t" not in caught.value.message
    assert "frag" not in caught.value.message


def test_a_redirect_without_a_location_still_says_what_happened() -> None:
    with pytest.raises(DXRedirected) as caught:
        classify(302, {}, b"<html>moved</html>", now=NOW)
    assert "DX answered 302 redirecting to nowhere" in caught.value.message


@pytest.mark.parametrize(
    "headers",
    [
        httpx.Headers({"Retry-After": "7"}),
        {"retry-after": "7"},
        {"Retry-After": "7"},  # a plain mapping spelled as servers send it
        {"RETRY-AFTER": "7"},
    ],
    ids=["httpx-headers", "lower", "canonical", "upper"],
)
def test_429_with_retry_after_seconds(headers: Mapping[str, str]) -> None:
    with pytest.raises(RetryableError) as caught:
        classify(429, headers, dx_json({"ok": False, "error": "rate_limited"}), now=NOW)
    assert caught.value.retry_after == 7.0
    assert caught.value.code == "rate_limited"


def test_429_with_retry_after_as_an_http_date() -> None:
    date = formatdate(NOW + 42, usegmt=True)  # e.g. "Tue, 14 Nov 2023 22:14:02 GMT"
    with pytest.raises(RetryableError) as caught:
        classify(429, httpx.Headers({"Retry-After": date}), b"", now=NOW)
    assert caught.value.retry_after == pytest.approx(42.0)
    assert caught.value.code == "http_429"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),  # never a negative wait
        ("nan", 0.0),
        ("999999", 3600.0),  # capped at an hour
        (formatdate(NOW - 60, usegmt=True), 0.0),  # a date in the past
    ],
)
def test_429_retry_after_edge_values(value: str | None, expected: float | None) -> None:
    headers = {} if value is None else {"Retry-After": value}
    error = raised(429, b"", headers)
    assert isinstance(error, RetryableError)
    assert error.retry_after == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
@pytest.mark.parametrize(
    "body",
    [b"", b"<html>Bad Gateway</html>", dx_json({"ok": False})],
    ids=["empty", "html", "json"],
)
def test_5xx_is_retryable(status: int, body: bytes) -> None:
    with pytest.raises(RetryableError) as caught:
        classify(status, {}, body, now=NOW)
    assert caught.value.code == f"http_{status}"
    assert caught.value.retry_after is None


def test_503_keeps_dx_code_and_retry_after() -> None:
    body = dx_json({"ok": False, "error": "maintenance"})
    with pytest.raises(RetryableError) as caught:
        classify(503, httpx.Headers({"Retry-After": "30"}), body, now=NOW)
    assert (caught.value.code, caught.value.retry_after) == ("maintenance", 30.0)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, dx_json({"ok": False, "error": "invalid_json"}), "invalid_json"),
        (400, b"", "http_400"),
        (404, dx_json({"ok": False, "error": "not_found"}), "not_found"),
        (404, b"<html>Not Found</html>", "http_404"),
        (422, dx_json({"ok": False, "error": "invalid_timestamp"}), "invalid_timestamp"),
        (422, dx_json({"ok": False, "error": "metadata_invalid"}), "metadata_invalid"),
        (422, dx_json(["not", "an", "object"]), "http_422"),
        (422, dx_json({"ok": False, "error": None}), "http_422"),
        (409, dx_json({"detail": "conflict"}), "http_409"),
    ],
)
def test_other_4xx_is_permanent_with_dx_code_or_http_status(
    status: int, body: bytes, code: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        classify(status, {}, body, now=NOW)
    assert caught.value.code == code


@pytest.mark.parametrize(
    "body",
    [b"", b"OK", b"<html>hello</html>", b"\xff\xfe garbage", b"null", b"[]", b'{"ok": "yes"}'],
)
def test_a_2xx_that_is_not_a_dx_answer_is_retryable(body: bytes) -> None:
    """DX says to check ``ok`` in every answer: a 2xx without ``ok: true`` is not success."""
    with pytest.raises(RetryableError) as caught:
        classify(200, {}, body, now=NOW)
    assert caught.value.code == "bad_response"


@pytest.mark.parametrize("body", [b"", dx_json({"ok": False, "error": "request_timeout"})])
def test_408_is_a_timeout_and_retryable(body: bytes) -> None:
    """A proxy in front of DX that gave up waiting: try again, never mark the alert failed."""
    with pytest.raises(RetryableError) as caught:
        classify(408, {}, body, now=NOW)
    assert caught.value.http_status == 408


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, dx_json({"ok": False, "error": "invalid_json"})),
        (200, dx_json({"ok": False})),
        (200, b"OK"),
        (301, b""),
        (401, b""),
        (200, dx_json({"ok": False, "error": "not_authed"})),
        (422, dx_json({"ok": False, "error": "metadata_invalid"})),
        (429, b""),
        (503, dx_json({"ok": False, "error": "service_unavailable"})),
    ],
)
def test_every_error_carries_the_http_status_it_came_with(status: int, body: bytes) -> None:
    """Operators read it in each attempt, and the metrics label 429 and 5xx by it."""
    error = raised(status, body)
    assert isinstance(error, DeliveryError)
    assert error.http_status == status


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            200,
            b'{"ok":false,"error":"invalid_arguments","message":"started_at must not be in'
            b' the future","field":"started_at"}',
        ),
        (200, dx_json({"ok": False, "error": "rate_limited_internally"})),
        (200, b"OK"),
        (301, b"<html>Moved Permanently</html>"),
        (401, dx_json({"ok": False, "error": "not_authed"})),
        (409, dx_json({"detail": "conflict"})),
        (422, dx_json({"ok": False, "error": "invalid_timestamp", "field": "started_at"})),
        (429, dx_json({"ok": False, "error": "rate_limited"})),
        (503, b"upstream connect error"),
    ],
)
def test_every_error_carries_dx_answer_as_it_came(status: int, body: bytes) -> None:
    """Operators read DX's own words (message, field), not only our summary of them."""
    error = raised(status, body)
    assert isinstance(error, DeliveryError)
    assert error.body == body.decode()


def test_the_answer_an_error_carries_is_cut_short_like_a_success() -> None:
    error = raised(422, b"\xff" + b"x" * 100_000)
    assert isinstance(error, PermanentError)
    assert error.body == "\ufffd" + "x" * 1999


def test_a_5xx_message_names_dx_code() -> None:
    error = raised(503, dx_json({"ok": False, "error": "service_unavailable"}))
    assert isinstance(error, RetryableError)
    assert error.message == "DX answered 503: service_unavailable"


def test_a_long_error_body_is_kept_short_in_the_message() -> None:
    with pytest.raises(PermanentError) as caught:
        classify(400, {}, b"x" * 100_000, now=NOW)
    assert len(caught.value.message) < 2100


# ---- DXClient ----------------------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def call(handler: Handler, method: str = "upsert", base_url: str = BASE) -> Answer:
    async def run() -> Answer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            dx = DXClient(client, base_url=base_url, token=TOKEN)
            return await (dx.upsert(BODY) if method == "upsert" else dx.delete("opsgenie-abc"))

    return asyncio.run(run())


def test_upsert_posts_the_body_with_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    answer = call(handler, base_url=BASE + "/")  # a trailing slash makes no double slash
    assert answer.status_code == 200
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/incidents.upsert"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == BODY
    # ``resolved_at: null`` is sent as null, not dropped: omitted and null differ at DX.
    assert "resolved_at" in json.loads(request.content)


def test_delete_posts_to_incidents_delete() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    call(handler, method="delete")
    [request] = seen
    assert str(request.url) == f"{BASE}/api/incidents.delete"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {"reference_id": "opsgenie-abc"}


@pytest.mark.parametrize(
    ("status", "document"),
    [(200, {"ok": False, "error": "not_found"}), (404, {"ok": False, "error": "not_found"})],
)
def test_deleting_what_dx_does_not_hold_is_success(status: int, document: Any) -> None:
    """Deleting is idempotent: the incident is gone, which is what was asked."""
    answer = call(lambda request: httpx.Response(status, json=document), method="delete")
    assert answer.status_code == status
    assert "not_found" in answer.body


@pytest.mark.parametrize(
    ("status", "document", "error"),
    [
        (422, {"ok": False, "error": "invalid_arguments"}, PermanentError),
        (404, {"detail": "no such route"}, PermanentError),  # http_404: the URL is wrong
        (503, {"ok": False, "error": "not_found"}, RetryableError),
    ],
)
def test_a_delete_fails_for_anything_but_not_found(
    status: int, document: Any, error: type[DeliveryError]
) -> None:
    with pytest.raises(error):
        call(lambda request: httpx.Response(status, json=document), method="delete")


def test_upserting_an_incident_dx_does_not_find_is_still_a_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"ok": False, "error": "not_found"})

    with pytest.raises(PermanentError):
        call(handler)


def test_the_answer_is_classified() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"Retry-After": "3"}, json={"ok": False, "error": "rate_limited"}
        )

    with pytest.raises(RetryableError) as caught:
        call(handler)
    assert (caught.value.code, caught.value.retry_after) == ("rate_limited", 3.0)


def test_ok_false_in_a_200_is_a_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": False, "error": "invalid_timestamp"})

    with pytest.raises(PermanentError) as caught:
        call(handler)
    assert caught.value.code == "invalid_timestamp"


@pytest.mark.parametrize(
    "exception", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
def test_timeouts_are_retryable(exception: type[httpx.TimeoutException]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception("timed out", request=request)

    with pytest.raises(RetryableError) as caught:
        call(handler)
    assert caught.value.code == "timeout"
    assert caught.value.body is None  # no answer came


@pytest.mark.parametrize(
    "exception", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError]
)
def test_network_errors_are_retryable(exception: type[httpx.TransportError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception("connection refused", request=request)

    with pytest.raises(RetryableError) as caught:
        call(handler)
    assert caught.value.code == "network"
    assert caught.value.body is None


def test_an_undecodable_answer_is_a_delivery_error_not_an_httpx_one() -> None:
    """A body that claims gzip but is not: the worker only handles ``DeliveryError``."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip")

    with pytest.raises(RetryableError) as caught:
        call(handler)
    assert caught.value.code == "bad_response"


def test_the_token_is_not_in_an_error_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {request.headers['authorization']}", request=request)

    with pytest.raises(RetryableError) as caught:
        call(handler)
    assert TOKEN not in str(caught.value)


# ---- make_http_client --------------------------------------------------------------------


def test_make_http_client_has_explicit_timeouts_and_limits(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings(dx_timeout_seconds=12.0, dx_concurrency=3)

    async def run() -> tuple[httpx.Timeout, bool, str, Any]:
        client = make_http_client(settings)
        try:
            pool = client._transport._pool  # type: ignore[attr-defined]
            return client.timeout, client.follow_redirects, client.headers["User-Agent"], pool
        finally:
            await client.aclose()

    timeout, follows, agent, pool = asyncio.run(run())
    assert timeout == httpx.Timeout(connect=5.0, read=12.0, write=12.0, pool=12.0)
    assert follows is False
    assert agent == "opsgenie-dx-relay"
    assert pool._max_connections == 6
    assert pool._max_keepalive_connections == 3
    assert pool._keepalive_expiry == 30.0


def test_make_http_client_connect_timeout_never_exceeds_the_total(
    make_settings: Callable[..., Any],
) -> None:
    async def run() -> httpx.Timeout:
        client = make_http_client(make_settings(dx_timeout_seconds=2.0))
        await client.aclose()
        return client.timeout

    assert asyncio.run(run()) == httpx.Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)


def test_make_http_client_uses_the_given_transport(make_settings: Callable[..., Any]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    async def run() -> Answer:
        client = make_http_client(make_settings(), transport=httpx.MockTransport(handler))
        async with client:
            return await DXClient(client, base_url=BASE, token=TOKEN).upsert(BODY)

    assert asyncio.run(run()).status_code == 200


# ---- hostile answers, from a real socket -----------------------------------------------


@pytest.fixture
def hostile() -> HostileUpstream:
    return HostileUpstream()


@pytest.fixture
def hostile_dx(hostile: HostileUpstream) -> Iterator[UvicornThread]:
    with UvicornThread(hostile.app) as server:
        yield server


def upsert_against(server: UvicornThread, settings: Settings) -> DeliveryError | Answer:
    """One upsert on the relay's own client; a hang fails at the guard, not never."""

    async def once() -> Answer:
        async with make_http_client(settings) as client:
            return await DXClient(client, base_url=server.url, token=TOKEN).upsert(BODY)

    try:
        return asyncio.run(asyncio.wait_for(once(), 20.0))
    except DeliveryError as error:
        return error


def test_a_dripping_answer_is_a_timeout_at_the_deadline(
    hostile: HostileUpstream, hostile_dx: UvicornThread, make_settings: Callable[..., Settings]
) -> None:
    """A byte every 0.2 s never trips the 1 s per-read timeout; the deadline ends it."""
    hostile.answer = drip(every=0.2)
    started = time.monotonic()
    error = upsert_against(hostile_dx, make_settings(dx_timeout_seconds=1.0))
    assert isinstance(error, RetryableError)
    assert (error.code, error.body) == ("timeout", None)
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize(
    "answer", [lambda: huge(100 * MB), lambda: gzip_bomb(300 * MB)], ids=["100MB", "bomb"]
)
def test_an_answer_over_the_cap_is_retried_as_answer_too_large(
    answer: Callable[[], Any],
    hostile: HostileUpstream,
    hostile_dx: UvicornThread,
    make_settings: Callable[..., Settings],
) -> None:
    hostile.answer = answer()
    error, growth = peak_growth(lambda: upsert_against(hostile_dx, make_settings()))
    assert isinstance(error, RetryableError)
    assert (error.code, error.http_status) == ("answer_too_large", 200)
    assert growth < 50 * MB, f"peak RSS grew by {growth / MB:.1f} MB"


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"ok": true, "n": NaN}', b'{"ok": true, "n": 1e999}']
)
def test_json_only_python_reads_is_a_bad_response(
    body: bytes,
    hostile: HostileUpstream,
    hostile_dx: UvicornThread,
    make_settings: Callable[..., Settings],
) -> None:
    hostile.answer = raw(body)
    error = upsert_against(hostile_dx, make_settings())
    assert isinstance(error, RetryableError)
    assert (error.code, error.http_status) == ("bad_response", 200)


def test_a_refusal_with_a_body_nested_too_deep_keeps_its_status() -> None:
    with pytest.raises(PermanentError) as caught:
        classify(422, {}, b"[" * 100_000, now=NOW)
    assert caught.value.code == "http_422"
