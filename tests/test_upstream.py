"""Reading upstream answers within bounds, against hostile servers on a real socket.

Each fault here was seen against a running relay: a DX dripping a byte every two seconds
held delivery slots for minutes, a 100 MB answer took the process to 925 MB, a 300 KB
gzip body to 1.09 GB, and ``[[[[...`` or ``NaN`` ended in a ``RecursionError``. Memory is
measured from ``/proc/self/status``: the process doing the reading is this one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service import upstream
from service.app import create_app
from service.dx import make_http_client
from service.errors import AnswerTooLarge, MalformedAnswer, UpstreamTimeout
from service.settings import Settings
from tests.conftest import DX_TOKEN, auth
from tests.fakes.hostile import HostileUpstream, drip, gzip_bomb, huge, raw
from tests.fakes.memory import MB, peak_growth
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread

#: Growth of the reading process's peak RSS allowed while it refuses a huge answer. The cap
#: is 1 MiB; the rest is slack for the allocator, httpx and the server thread's buffers.
MEMORY_BOUND = 50 * MB


@pytest.fixture
def hostile() -> HostileUpstream:
    return HostileUpstream()


@pytest.fixture
def server(hostile: HostileUpstream) -> Iterator[UvicornThread]:
    with UvicornThread(hostile.app) as running:
        yield running


def fetch(settings: Settings, url: str, *, guard: float = 20.0) -> upstream.Reply:
    """One ``upstream.fetch`` on the relay's own client; ``guard`` fails a hang fast."""

    async def once() -> upstream.Reply:
        async with make_http_client(settings) as client:
            return await upstream.fetch(client, "GET", url, headers={})

    return asyncio.run(asyncio.wait_for(once(), guard))


def raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("nothing was raised")


# ---- deadline ----------------------------------------------------------------------------


def test_a_dripping_answer_ends_at_the_deadline(
    hostile: HostileUpstream, server: UvicornThread, make_settings: Callable[..., Settings]
) -> None:
    """Each byte comes well within the per-read timeout; the whole answer never does."""
    hostile.answer = drip(every=0.2)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="within 1s"):
        fetch(make_settings(dx_timeout_seconds=1.0), server.url + "/api/incidents.upsert")
    assert 1.0 <= time.monotonic() - started < 5.0


def test_an_answer_within_the_deadline_is_read_whole(
    hostile: HostileUpstream, server: UvicornThread, make_settings: Callable[..., Settings]
) -> None:
    hostile.answer = raw(b'{"ok": true}', status=201)
    reply = fetch(make_settings(dx_timeout_seconds=1.0), server.url + "/x")
    assert (reply.status_code, reply.body) == (201, b'{"ok": true}')


# ---- byte cap, after decompression ---------------------------------------------------------


def test_a_100_mb_answer_stops_at_the_cap_without_a_memory_spike(
    hostile: HostileUpstream, server: UvicornThread, make_settings: Callable[..., Settings]
) -> None:
    hostile.answer = huge(100 * MB)
    error, growth = peak_growth(lambda: raised(lambda: fetch(make_settings(), server.url + "/x")))
    assert isinstance(error, AnswerTooLarge)
    assert error.http_status == 200
    assert growth < MEMORY_BOUND, f"peak RSS grew by {growth / MB:.1f} MB"


def test_a_gzip_bomb_stops_at_the_cap_counted_after_decompression(
    hostile: HostileUpstream, server: UvicornThread, make_settings: Callable[..., Settings]
) -> None:
    hostile.answer = gzip_bomb(300 * MB)  # about 300 KB on the wire
    error, growth = peak_growth(lambda: raised(lambda: fetch(make_settings(), server.url + "/x")))
    assert isinstance(error, AnswerTooLarge)
    assert growth < MEMORY_BOUND, f"peak RSS grew by {growth / MB:.1f} MB"


def test_the_cap_is_the_setting(
    hostile: HostileUpstream, server: UvicornThread, make_settings: Callable[..., Settings]
) -> None:
    hostile.answer = raw(b'"' + b"x" * 98 + b'"')  # 100 bytes
    assert len(fetch(make_settings(upstream_max_bytes=100), server.url + "/x").body) == 100
    with pytest.raises(AnswerTooLarge, match="larger than 99 bytes"):
        fetch(make_settings(upstream_max_bytes=99), server.url + "/x")


def test_a_small_gzip_answer_is_decoded(
    hostile: HostileUpstream, server: UvicornThread, make_settings: Callable[..., Settings]
) -> None:
    hostile.answer = gzip_bomb(2 * MB)
    reply = fetch(make_settings(upstream_max_bytes=3 * MB), server.url + "/x")
    assert reply.body == bytes(2 * MB)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", b"not gzip at all"), ("br", b"\x0b\x02\x80hello\x03"), ("gzip, gzip", b"")],
)
def test_an_encoding_that_does_not_decode_is_a_malformed_answer(encoding: str, body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": encoding}, stream=_Stream(body))

    async def once() -> upstream.Reply:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await upstream.fetch(client, "GET", "https://upstream.test/", headers={})

    with pytest.raises(MalformedAnswer):
        asyncio.run(once())


class _Stream(httpx.AsyncByteStream):
    """A body httpx has not read yet, as from a socket, so ``fetch`` decodes it itself."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> Any:
        yield self._body


def test_only_encodings_fetch_decodes_itself_are_asked_for() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    async def once() -> upstream.Reply:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await upstream.fetch(client, "GET", "https://upstream.test/", headers={})

    asyncio.run(once())
    assert seen[0].headers["Accept-Encoding"] == upstream.ACCEPT_ENCODING == "gzip, deflate"


def test_the_relay_client_carries_the_settings_bounds(make_settings: Callable[..., Any]) -> None:
    async def bounds() -> upstream.Bounds:
        async with make_http_client(
            make_settings(dx_timeout_seconds=3.0, upstream_max_bytes=5000)
        ) as client:
            return upstream.bounds_of(client)

    assert asyncio.run(bounds()) == upstream.Bounds(deadline_seconds=3.0, max_bytes=5000)
    assert upstream.bounds_of(httpx.AsyncClient()) == upstream.Bounds()


# ---- strict JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a": ' * 100_000,
        b"[" * 65 + b"]" * 65,  # deeper than MAX_DEPTH, though Python would parse it
        b'{"ok": NaN}',
        b'{"ok": Infinity}',
        b"-Infinity",
        b'{"n": 1e999}',  # JSON syntax, but infinite
        b'{"n": ' + b"1" * 5000 + b"}",
        b'{"ok": "\xff\xfe"}',  # not UTF-8
        b'"\xed\xa0\x80"',  # a surrogate, UTF-8-encoded: not UTF-8 either
        b'{"ok": "\\ud800"}',  # an escaped lone surrogate: not Unicode
        b'{"\\udfff": 1}',
        b"\xef\xbb\xbf{}",  # a byte order mark
        b"{'ok': true}",
        b"",
    ],
)
def test_what_json_does_not_allow_is_a_malformed_answer(body: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        upstream.loads(body)


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = upstream.MAX_DEPTH
    document = upstream.loads(b"[" * depth + b"]" * depth)
    for _ in range(depth - 1):
        document = document[0]
    assert document == []


def test_ordinary_json_is_read() -> None:
    assert upstream.loads(b'{"ok": true, "n": 1.5, "s": "caf\\u00e9 \xe2\x82\xac"}') == {
        "ok": True,
        "n": 1.5,
        "s": "café €",
    }


@pytest.mark.parametrize("body", [b"[]", b"null", b'"ok"', b"1"])
def test_load_object_wants_an_object(body: bytes) -> None:
    with pytest.raises(MalformedAnswer, match="where an object belongs"):
        upstream.load_object(body)


# ---- the worker is not starved -------------------------------------------------------------


def _webhook(alert_id: str) -> dict[str, Any]:
    return {
        "action": "Create",
        "alert": {
            "alertId": alert_id,
            "message": f"alert {alert_id}",
            "createdAt": 1_767_225_600_000,
            "priority": "P3",
            "tags": [],
        },
    }


def test_four_dripping_answers_do_not_stop_other_deliveries(
    hostile: HostileUpstream,
    server: UvicornThread,
    make_settings: Callable[..., Settings],
    open_client: Callable[[Starlette], TestClient],
) -> None:
    """As many dripping answers as delivery slots: each slot is freed at the deadline, so
    other references are delivered within a few deadlines, not when DX stops dripping."""
    slow = [f"slow-{n}" for n in range(4)]
    hostile.drip_references = {f"opsgenie-{alert}" for alert in slow}
    hostile.answer = raw(b'{"ok": true}')
    settings = make_settings(
        dx_base_url=server.url,
        dx_token=Secret(DX_TOKEN),
        dx_concurrency=4,
        dx_timeout_seconds=1.0,
    )
    client = open_client(create_app(settings, registry=CollectorRegistry()))
    for alert in slow:
        assert (
            client.post("/webhooks/opsgenie", json=_webhook(alert), headers=auth()).status_code
            == 202
        )
    wait_for(
        lambda: hostile.drip_references <= set(hostile.started),
        message="every slot held by a dripping answer",
    )
    fast = [f"opsgenie-fast-{n}" for n in range(4)]
    started = time.monotonic()
    for reference in fast:
        alert = reference.removeprefix("opsgenie-")
        assert (
            client.post("/webhooks/opsgenie", json=_webhook(alert), headers=auth()).status_code
            == 202
        )
    wait_for(
        lambda: set(fast) <= set(hostile.answered),
        timeout=10.0,
        message="the other references delivered while DX drips",
    )
    assert time.monotonic() - started < 10.0
    # Readiness is about the relay, not DX: it stays ready, and says nothing untrue.
    assert client.get("/readyz").status_code == 200
