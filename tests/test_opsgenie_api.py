"""The Opsgenie API client and the parsing of its alerts.

The client is tested over ``httpx.MockTransport`` (exact requests, exact answers) and
over the fake Opsgenie on a real socket (auth, paging, failure switches).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.dx import make_http_client
from service.errors import (
    OpsgenieAPIError,
    OpsgenieAuthError,
    OpsgenieNotFound,
    OpsgeniePermanent,
    OpsgenieRetryable,
    PayloadError,
)
from service.opsgenie import Action, OpsgenieEvent, event_from_api_alert
from service.opsgenie_api import OpsgenieAPI, api_base, web_url
from service.settings import Settings
from service.timestamps import parse_iso_ns
from service.translate import fold
from tests.fakes.hostile import HostileUpstream, drip, gzip_bomb, huge, raw
from tests.fakes.memory import MB, peak_growth
from tests.fakes.opsgenie import FakeOpsgenie, api_alert
from tests.fakes.servers import UvicornThread

CREATED_MS = 1_795_000_000_000
T = TypeVar("T")
ALERT = "70413a06-38d6-4c85-92b8-5ebc900d42e2"
#: What Opsgenie's 429 carries besides ``X-RateLimit-Period-In-Sec`` (opsgenie-go-sdk-v2).
THROTTLED = {"X-RateLimit-State": "THROTTLED", "X-RateLimit-Reason": "ACCOUNT"}


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# --- regions ---------------------------------------------------------------------------


def test_us_and_eu_have_fixed_api_bases() -> None:
    assert api_base("us", None) == "https://api.opsgenie.com"
    assert api_base("eu", "https://ignored.example") == "https://api.eu.opsgenie.com"


def test_custom_uses_its_url_without_trailing_slash() -> None:
    assert api_base("custom", "https://og.internal.example/") == "https://og.internal.example"


def test_custom_without_url_is_a_permanent_error() -> None:
    with pytest.raises(OpsgeniePermanent):
        api_base("custom", None)


def test_web_urls_follow_the_region() -> None:
    assert web_url("us", "acme") == "https://acme.app.opsgenie.com"
    assert web_url("eu", "acme") == "https://acme.app.eu.opsgenie.com"
    assert web_url("us") == "https://app.opsgenie.com"  # no account name known
    assert web_url("eu") == "https://app.eu.opsgenie.com"


# --- the client over MockTransport -----------------------------------------------------


def mock_api(handler: httpx.MockTransport) -> tuple[httpx.AsyncClient, OpsgenieAPI]:
    client = httpx.AsyncClient(transport=handler)
    return client, OpsgenieAPI(client, "https://api.eu.opsgenie.com", "k-1")


def test_get_alert_sends_genie_key_and_identifier_type() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": api_alert(ALERT, created_ms=CREATED_MS)})

    async def main() -> dict[str, object]:
        client, api = mock_api(httpx.MockTransport(handler))
        async with client:
            return await api.get_alert(ALERT)

    data = run(main())
    assert isinstance(data, dict)
    assert data["id"] == ALERT
    request = seen[0]
    assert request.headers["authorization"] == "GenieKey k-1"
    assert str(request.url) == f"https://api.eu.opsgenie.com/v2/alerts/{ALERT}?identifierType=id"


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, OpsgenieRetryable, 7.0),
        # Opsgenie's own 429: no Retry-After, the throttled window's length instead.
        (429, {**THROTTLED, "X-RateLimit-Period-In-Sec": "60"}, OpsgenieRetryable, 60.0),
        (429, {**THROTTLED, "X-RateLimit-Period-In-Sec": "1"}, OpsgenieRetryable, 1.0),
        (429, {**THROTTLED, "X-RateLimit-Period-In-Sec": "86400"}, OpsgenieRetryable, 60.0),
        (429, {**THROTTLED, "X-RateLimit-Period-In-Sec": "soon"}, OpsgenieRetryable, None),
        (429, {"Retry-After": "7", "X-RateLimit-Period-In-Sec": "60"}, OpsgenieRetryable, 7.0),
        (503, {"X-RateLimit-Period-In-Sec": "60"}, OpsgenieRetryable, None),
        (503, {}, OpsgenieRetryable, None),
        (401, {}, OpsgenieAuthError, None),
        (403, {}, OpsgenieAuthError, None),
        (404, {}, OpsgenieNotFound, None),
        (422, {}, OpsgeniePermanent, None),
    ],
)
def test_answers_become_named_errors(
    status: int, headers: dict[str, str], error: type[OpsgenieAPIError], retry_after: float | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "no"}, headers=headers)

    async def main() -> None:
        client, api = mock_api(httpx.MockTransport(handler))
        async with client:
            await api.get_alert(ALERT)

    with pytest.raises(error) as caught:
        run(main())
    assert caught.value.http_status == status
    if isinstance(caught.value, OpsgenieRetryable):
        assert caught.value.retry_after == retry_after


def test_network_errors_are_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def main() -> None:
        client, api = mock_api(httpx.MockTransport(handler))
        async with client:
            await api.get_account()

    with pytest.raises(OpsgenieRetryable) as caught:
        run(main())
    assert caught.value.http_status is None


def test_a_2xx_without_data_is_permanent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not json")

    async def main() -> None:
        client, api = mock_api(httpx.MockTransport(handler))
        async with client:
            await api.get_alert(ALERT)

    with pytest.raises(OpsgeniePermanent):
        run(main())


def test_alert_ids_are_escaped_in_the_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"message": "gone"})

    async def main() -> None:
        client, api = mock_api(httpx.MockTransport(handler))
        async with client:
            await api.get_alert("a/b")

    with pytest.raises(OpsgeniePermanent):
        run(main())
    assert seen[0].url.raw_path.startswith(b"/v2/alerts/a%2Fb?")


# --- the client against the fake on a socket -------------------------------------------


@pytest.fixture
def fake() -> FakeOpsgenie:
    return FakeOpsgenie(api_key="genie-key-123", account="acme")


@pytest.fixture
def server(fake: FakeOpsgenie) -> Iterator[UvicornThread]:
    with UvicornThread(fake.app) as running:
        yield running


@contextlib.asynccontextmanager
async def against(server: UvicornThread, key: str = "genie-key-123") -> AsyncIterator[OpsgenieAPI]:
    """A client for the fake, closed with the event loop that used it."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield OpsgenieAPI(http, api_base("custom", server.url), key)


async def once(
    server: UvicornThread, ask: Callable[[OpsgenieAPI], Awaitable[T]], key: str = "genie-key-123"
) -> T:
    async with against(server, key) as api:
        return await ask(api)


def test_account_name(fake: FakeOpsgenie, server: UvicornThread) -> None:
    assert run(once(server, lambda api: api.get_account())) == "acme"
    assert fake.seen("/v2/account")[0].authorization == "GenieKey genie-key-123"


def test_wrong_key_is_permanent(server: UvicornThread) -> None:
    with pytest.raises(OpsgeniePermanent) as caught:
        run(once(server, lambda api: api.get_alert(ALERT), key="wrong"))
    assert caught.value.http_status == 401


def test_deleted_alert_is_a_404(server: UvicornThread) -> None:
    with pytest.raises(OpsgeniePermanent) as caught:
        run(once(server, lambda api: api.get_alert("gone")))
    assert caught.value.http_status == 404


def test_rate_limit_and_5xx_switches(fake: FakeOpsgenie, server: UvicornThread) -> None:
    fake.add(api_alert(ALERT, created_ms=CREATED_MS))
    fake.rate_limit_next(1, period=60)  # as Opsgenie answers: no Retry-After
    fake.fail_next(1, status=502)

    async def three_tries() -> list[object]:
        answers: list[object] = []
        async with against(server) as api:
            for _ in range(3):
                try:
                    answers.append((await api.get_alert(ALERT))["id"])
                except OpsgenieRetryable as error:
                    answers.append((error.http_status, error.retry_after))
        return answers

    assert run(three_tries()) == [(429, 60.0), (502, None), ALERT]


def test_list_alerts_pages_until_paging_has_no_next(
    fake: FakeOpsgenie, server: UvicornThread
) -> None:
    for i in range(5):
        fake.add(api_alert(f"alert-{i}", created_ms=CREATED_MS + i))

    async def everything() -> list[str]:
        ids: list[str] = []
        offset = 0
        async with against(server) as api:
            while True:
                page = await api.list_alerts("createdAt > 0", limit=2, offset=offset)
                ids.extend(alert["id"] for alert in page.alerts)
                if not page.has_more:
                    return ids
                offset += 2

    assert run(everything()) == [f"alert-{i}" for i in range(5)]
    queries = fake.seen("/v2/alerts")
    assert [q.query["offset"] for q in queries] == ["0", "2", "4"]
    assert queries[0].query["query"] == "createdAt > 0"


# --- parsing a fetched alert -----------------------------------------------------------


def test_fetched_teams_without_names_say_nothing_about_teams() -> None:
    """Ids would replace the names webhooks taught and break team-to-service rules."""
    data = api_alert(ALERT, created_ms=CREATED_MS, updated_ms=CREATED_MS + 5000)
    data["teams"] = [{"id": "t1", "name": "Payments"}, {"id": "t2"}]
    assert event_from_api_alert(data, received_ns=1).teams is None


def test_fetched_alert_becomes_a_full_event() -> None:
    data = api_alert(
        ALERT,
        created_ms=CREATED_MS,
        updated_ms=CREATED_MS + 5000,
        teams=[{"id": "t1", "name": "Payments"}, {"id": "t2", "name": "Auth"}],
        owner="ann@example.com",
        acknowledged=True,
    )
    event = event_from_api_alert(json.loads(json.dumps(data)), received_ns=1)
    assert event.action == Action.FETCHED
    assert event.stamp_ns == (CREATED_MS + 5000) * 10**6
    assert event.created_at_ns == CREATED_MS * 10**6
    assert event.priority == "P2"
    assert event.tags == ("service:payments", "env:prod")
    assert event.teams == ("Payments", "Auth")
    assert event.owner == "ann@example.com"
    assert event.acknowledged is True
    assert event.closed_at_ns is None
    assert event.details == (("service", "payments"),)
    assert (event.message, event.alias, event.entity, event.tiny_id) == (
        "disk full on db-1",
        f"alias-{ALERT}",
        "db-1",
        "42",
    )
    assert event.integration_name == "Datadog"


def test_closed_alert_closes_at_created_plus_close_time() -> None:
    data = api_alert(
        ALERT,
        created_ms=CREATED_MS,
        updated_ms=CREATED_MS + 90_000,
        status="closed",
        close_after_ms=60_000,
    )
    event = event_from_api_alert(data, received_ns=1)
    assert event.closed_at_ns == (CREATED_MS + 60_000) * 10**6


def test_closed_alert_without_close_time_closes_at_updated_at() -> None:
    data = api_alert(ALERT, created_ms=CREATED_MS, updated_ms=CREATED_MS + 90_000, status="closed")
    assert event_from_api_alert(data, received_ns=1).closed_at_ns == parse_iso_ns(
        data["updatedAt"], field="updatedAt"
    )


def test_empty_owner_is_unknown_not_a_name() -> None:
    assert (
        event_from_api_alert(api_alert(ALERT, created_ms=CREATED_MS), received_ns=1).owner is None
    )


@pytest.mark.parametrize(
    "change",
    [{"createdAt": 1795000000000}, {"id": None}, {"tags": "a,b"}, {"acknowledged": "yes"}],
)
def test_wrong_types_name_the_field(change: dict[str, object]) -> None:
    with pytest.raises(PayloadError):
        event_from_api_alert({**api_alert(ALERT, created_ms=CREATED_MS), **change}, received_ns=1)


def test_folding_a_fetch_fills_a_bare_escalate() -> None:
    escalate_stamp = (CREATED_MS + 10_000) * 10**6
    escalate = OpsgenieEvent(action="Escalate", alert_id=ALERT, stamp_ns=escalate_stamp)
    fetched = event_from_api_alert(
        api_alert(ALERT, created_ms=CREATED_MS, updated_ms=CREATED_MS + 5_000), received_ns=1
    )
    state = fold(fold(None, escalate), fetched)
    assert state.created_at_ns == CREATED_MS * 10**6
    assert state.priority is not None
    assert state.priority.value == "P2"
    assert state.tags.known
    assert state == fold(fold(None, fetched), escalate)  # order does not matter


# --- a fetch folds like any other event ----------------------------------------------------

_stamps = st.integers(min_value=CREATED_MS * 10**6, max_value=(CREATED_MS + 10**6) * 10**6)
_tags = st.lists(st.sampled_from(["service:a", "service:b", "env:prod"]), unique=True)


@st.composite
def _webhook_events(draw: st.DrawFn) -> OpsgenieEvent:
    action = draw(st.sampled_from(["Create", "Close", "Escalate", "AddNote", "UpdatePriority"]))
    stamp = draw(_stamps)
    return OpsgenieEvent(
        action=action,
        alert_id=ALERT,
        stamp_ns=stamp,
        message=draw(st.none() | st.sampled_from(["a", "b"])),
        priority=draw(st.none() | st.sampled_from(["P1", "P3"])),
        tags=draw(st.none() | _tags.map(tuple)),
        created_at_ns=CREATED_MS * 10**6 if action == "Create" else None,
        closed_at_ns=stamp if action == "Close" else None,
    )


@st.composite
def _fetched_events(draw: st.DrawFn) -> OpsgenieEvent:
    updated_ms = draw(_stamps) // 10**6
    closed = draw(st.booleans())
    data = api_alert(
        ALERT,
        created_ms=CREATED_MS,
        updated_ms=updated_ms,
        priority=draw(st.sampled_from(["P1", "P2", "P5"])),
        tags=draw(_tags),
        status="closed" if closed else "open",
        close_after_ms=draw(st.none() | st.integers(0, 10**6)) if closed else None,
    )
    return event_from_api_alert(data, received_ns=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(_webhook_events(), max_size=5), st.lists(_fetched_events(), max_size=2), st.data())
def test_fetched_alerts_fold_in_any_order(
    webhooks: list[OpsgenieEvent], fetched: list[OpsgenieEvent], data: st.DataObject
) -> None:
    events = [*webhooks, *fetched]
    if not events:
        return
    shuffled = data.draw(st.permutations(events))

    def fold_all(sequence: list[OpsgenieEvent]) -> object:
        state = None
        for event in sequence:
            state = fold(state, event)
        return state

    assert fold_all(events) == fold_all(list(shuffled))
    assert fold_all([*events, *events]) == fold_all(events)


# --- hostile answers, from a real socket ------------------------------------------------


@pytest.fixture
def hostile() -> HostileUpstream:
    return HostileUpstream()


@pytest.fixture
def hostile_opsgenie(hostile: HostileUpstream) -> Iterator[UvicornThread]:
    with UvicornThread(hostile.app) as running:
        yield running


def ask_hostile(
    server: UvicornThread, relay: Settings, ask: Callable[[OpsgenieAPI], Awaitable[T]]
) -> T | OpsgenieAPIError:
    """One read on the relay's own client; a hang fails at the guard, not never."""

    async def once() -> T:
        async with make_http_client(relay) as http:
            return await ask(OpsgenieAPI(http, api_base("custom", server.url), "k-1"))

    try:
        return asyncio.run(asyncio.wait_for(once(), 20.0))
    except OpsgenieAPIError as error:
        return error


@pytest.mark.parametrize("read", ["alert", "account", "list"])
def test_a_dripping_answer_is_retryable_at_the_deadline(
    read: str,
    hostile: HostileUpstream,
    hostile_opsgenie: UvicornThread,
    make_settings: Callable[..., Settings],
) -> None:
    """Every read, the account-name lookup too, ends at ``RELAY_DX_TIMEOUT`` overall."""
    hostile.answer = drip(b'{"data": {"name": "acme"}}', every=0.2)
    asks: dict[str, Callable[[OpsgenieAPI], Awaitable[object]]] = {
        "alert": lambda api: api.get_alert(ALERT),
        "account": lambda api: api.get_account(),
        "list": lambda api: api.list_alerts("createdAt > 0"),
    }
    started = time.monotonic()
    error = ask_hostile(hostile_opsgenie, make_settings(dx_timeout_seconds=1.0), asks[read])
    assert isinstance(error, OpsgenieRetryable)
    assert "timed out" in error.message
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize(
    "answer", [lambda: huge(100 * MB), lambda: gzip_bomb(300 * MB)], ids=["100MB", "bomb"]
)
def test_an_answer_over_the_cap_is_a_bad_answer_without_a_memory_spike(
    answer: Callable[[], Any],
    hostile: HostileUpstream,
    hostile_opsgenie: UvicornThread,
    make_settings: Callable[..., Settings],
) -> None:
    hostile.answer = answer()
    error, growth = peak_growth(
        lambda: ask_hostile(hostile_opsgenie, make_settings(), lambda api: api.get_alert(ALERT))
    )
    assert isinstance(error, OpsgeniePermanent)
    assert error.http_status == 200
    assert "larger than 1048576 bytes" in error.message
    assert growth < 50 * MB, f"peak RSS grew by {growth / MB:.1f} MB"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"data": ' * 100_000,
        b'{"data": {"id": "a", "count": NaN}}',
        b'{"data": {"id": "a", "count": Infinity}}',
        b'{"data": {"id": "\\udc00"}}',
    ],
)
def test_json_only_python_reads_is_a_bad_answer(
    body: bytes,
    hostile: HostileUpstream,
    hostile_opsgenie: UvicornThread,
    make_settings: Callable[..., Settings],
) -> None:
    hostile.answer = raw(body)
    error = ask_hostile(hostile_opsgenie, make_settings(), lambda api: api.get_alert(ALERT))
    assert isinstance(error, OpsgeniePermanent)
    assert error.http_status == 200
