"""The fake DX must enforce the incidents.upsert seed, or every relay test built on it lies.

These tests talk to the fake over real HTTP (uvicorn in a thread, `httpx.Client`), the way the
relay will, and check each rule of the seed and each failure switch.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.fakes.dx import FakeDX, most_within
from tests.fakes.flapping import Flapping, FlapProfile
from tests.fakes.polling import wait_for
from tests.fakes.servers import UvicornThread, free_port

TOKEN = "s3cret-dx-token"
UPSERT = "/api/incidents.upsert"
DELETE = "/api/incidents.delete"
STARTED = "2024-01-01T11:22:33"
SEED_EXAMPLE: dict[str, Any] = {
    "reference_id": "36b1f37a-e60f-4ccd-b0c4-878a6d1175fe",
    "name": "Invalid argument broke settings page",
    "priority": "p1",
    "source_url": "https://app.opsgenie.com/incidents/123",
    "services": [
        {"name": "Payments", "identifier": "payments-service"},
        {"identifier": "auth-service"},
    ],
    "started_at": STARTED,
    "resolved_at": None,
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeDX, str]]:
    fake = FakeDX(token=TOKEN)
    with UvicornThread(fake.app) as server:
        yield fake, server.url


@pytest.fixture
def fake(served: tuple[FakeDX, str]) -> FakeDX:
    served[0].reset()
    return served[0]


@pytest.fixture
def client(served: tuple[FakeDX, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    with httpx.Client(base_url=served[1], headers=headers, timeout=10.0) as c:
        yield c


def upsert(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"reference_id": "ref-1", "started_at": STARTED, **fields}
    return client.post(UPSERT, json=body)


def stored(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["ok"] is True
    incident: dict[str, Any] = body["incident"]
    return incident


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["ok"] is False
    return response.status_code, body["error"]


def test_seed_example_is_stored(fake: FakeDX, client: httpx.Client) -> None:
    assert stored(client.post(UPSERT, json=SEED_EXAMPLE)) == {**SEED_EXAMPLE, "metadata": {}}
    assert fake.incidents[SEED_EXAMPLE["reference_id"]]["services"] == SEED_EXAMPLE["services"]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Token {TOKEN}", TOKEN, f"bearer{TOKEN}"]
)
def test_bad_token_is_not_authed(
    fake: FakeDX, client: httpx.Client, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    client.headers.pop("Authorization")
    response = client.post(UPSERT, json=SEED_EXAMPLE, headers=headers)
    assert error_of(response) == (401, "not_authed")
    assert fake.incidents == {}


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"text"',
        b"null",
        b"\xff\xfe",
        b'{"reference_id": "r", "started_at": "2024-01-01T11:22:33", "x": NaN}',
        b'{"reference_id": "r", "started_at": "2024-01-01T11:22:33", "x": -Infinity}',
    ],
)
def test_unparseable_or_non_object_body_is_invalid_json(client: httpx.Client, raw: bytes) -> None:
    response = client.post(UPSERT, content=raw, headers={"Content-Type": "application/json"})
    assert error_of(response) == (400, "invalid_json")


@pytest.mark.parametrize("reference_id", [None, "", 123, ["a"]])
def test_reference_id_must_be_a_non_empty_string(client: httpx.Client, reference_id: Any) -> None:
    assert error_of(upsert(client, reference_id=reference_id)) == (422, "invalid_arguments")
    body = {"started_at": STARTED}
    assert error_of(client.post(UPSERT, json=body)) == (422, "invalid_arguments")


@pytest.mark.parametrize("field", ["started_at", "resolved_at"])
@pytest.mark.parametrize(
    "value", ["yesterday", "2024-13-01T00:00:00", "01/02/2024 10:00", 1704108153, ""]
)
def test_unreadable_timestamps_are_refused(client: httpx.Client, field: str, value: Any) -> None:
    assert error_of(upsert(client, **{field: value})) == (422, "invalid_timestamp")


def test_started_at_is_required(client: httpx.Client) -> None:
    response = client.post(UPSERT, json={"reference_id": "ref-1"})
    assert error_of(response) == (422, "invalid_timestamp")
    assert error_of(upsert(client, started_at=None)) == (422, "invalid_timestamp")


@pytest.mark.parametrize(
    "value",
    [STARTED, "2024-01-01T11:22:33.123", "2024-01-01T11:22:33Z", "2024-01-01T11:22:33.5+00:00"],
)
def test_iso_8601_timestamps_are_accepted(client: httpx.Client, value: str) -> None:
    assert upsert(client, started_at=value, resolved_at=value).json()["ok"] is True


@pytest.mark.parametrize("field", ["name", "priority", "source_url"])
def test_text_fields_must_be_strings(client: httpx.Client, field: str) -> None:
    assert error_of(upsert(client, **{field: 1})) == (422, "invalid_arguments")
    assert upsert(client, **{field: None}).status_code == 200


@pytest.mark.parametrize(
    "metadata", ["text", 7, ["a"], {"has space": 1}, {"dot.key": 1}, {"": 1}, {"ключ": 1}]
)
def test_metadata_must_be_an_object_with_plain_keys(client: httpx.Client, metadata: Any) -> None:
    assert error_of(upsert(client, metadata=metadata)) == (422, "metadata_invalid")


def test_metadata_keys_may_use_letters_digits_dashes_underscores(client: httpx.Client) -> None:
    metadata = {"team_name": "core", "Sev-1": True, "n2": {"nested": [1]}}
    assert stored(upsert(client, metadata=metadata))["metadata"] == metadata


@pytest.mark.parametrize(
    "services",
    [
        "svc",
        {"identifier": "a"},
        [{"name": "A"}],
        [{"identifier": ""}],
        [{"identifier": 1}],
        ["a"],
        [{"identifier": "a", "name": 5}],
    ],
)
def test_services_need_an_identifier(client: httpx.Client, services: Any) -> None:
    assert error_of(upsert(client, services=services)) == (422, "invalid_arguments")


def test_services_omitted_keeps_null_clears_data_replaces(
    fake: FakeDX, client: httpx.Client
) -> None:
    a, b = {"identifier": "svc-a", "name": "A"}, {"identifier": "svc-b"}
    assert stored(upsert(client, services=[a]))["services"] == [a]
    assert stored(upsert(client, name="renamed"))["services"] == [a]
    assert stored(upsert(client, services=[b]))["services"] == [b]
    assert stored(upsert(client, services=None))["services"] == []
    assert stored(upsert(client, services=[a, b]))["services"] == [a, b]
    assert stored(upsert(client, services=[]))["services"] == []
    assert ["services" in body for body in fake.history["ref-1"]] == [True, False] + [True] * 4


def test_metadata_omitted_keeps_null_or_empty_list_clears_data_replaces(
    client: httpx.Client,
) -> None:
    both = {"a": 1, "b": 2}
    assert stored(upsert(client, metadata=both))["metadata"] == both
    assert stored(upsert(client))["metadata"] == both
    assert stored(upsert(client, metadata={"c": 3}))["metadata"] == {"c": 3}
    assert stored(upsert(client, metadata=[]))["metadata"] == {}
    assert stored(upsert(client, metadata={"d": 4}))["metadata"] == {"d": 4}
    assert stored(upsert(client, metadata=None))["metadata"] == {}


def test_present_scalars_overwrite_and_omitted_ones_stay(
    fake: FakeDX, client: httpx.Client
) -> None:
    upsert(client, name="first", priority="p1", resolved_at="2024-01-01T12:00:00Z")
    upsert(client, priority="p2")
    assert fake.incident("ref-1") == {
        "reference_id": "ref-1",
        "name": "first",
        "priority": "p2",
        "source_url": None,
        "started_at": STARTED,
        "resolved_at": "2024-01-01T12:00:00Z",
        "services": [],
        "metadata": {},
    }
    upsert(client, resolved_at=None)
    assert fake.incidents["ref-1"]["resolved_at"] is None


def test_refused_upserts_change_nothing(fake: FakeDX, client: httpx.Client) -> None:
    upsert(client, name="kept", services=[{"identifier": "svc-a"}])
    upsert(client, name="lost", services=[{"name": "no identifier"}])
    upsert(client, name="lost", metadata={"bad key": 1})
    assert fake.incidents["ref-1"]["name"] == "kept"
    assert fake.upserts("ref-1") == [
        {
            "reference_id": "ref-1",
            "started_at": STARTED,
            "name": "kept",
            "services": [{"identifier": "svc-a"}],
        },
    ]


def test_every_request_is_recorded(fake: FakeDX, client: httpx.Client) -> None:
    upsert(client, name="x")
    client.post(UPSERT, content=b"{oops")
    first, second = fake.requests
    assert (first.method, first.path, first.status) == ("POST", UPSERT, 200)
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.json == {"reference_id": "ref-1", "started_at": STARTED, "name": "x"}
    assert first.response is not None
    assert first.response["ok"] is True
    assert (second.json, second.body, second.status) == (None, b"{oops", 400)
    assert first.received_at <= second.received_at
    assert fake.status_counts == {200: 1, 400: 1}


def test_delete_removes_and_unknown_is_not_found(fake: FakeDX, client: httpx.Client) -> None:
    upsert(client, name="x")
    assert client.post(DELETE, json={"reference_id": "ref-1"}).json() == {"ok": True}
    assert fake.incidents == {}
    assert error_of(client.post(DELETE, json={"reference_id": "ref-1"})) == (422, "not_found")
    assert error_of(client.post(DELETE, json={})) == (422, "invalid_arguments")
    assert stored(upsert(client))["name"] is None


def test_unknown_method_and_wrong_verb(client: httpx.Client) -> None:
    assert error_of(client.post("/api/incidents.list", json={})) == (404, "unknown_method")
    assert error_of(client.get(UPSERT)) == (405, "method_not_allowed")


def test_fail_next_then_recovers(fake: FakeDX, client: httpx.Client) -> None:
    fake.fail_next(2)
    fake.fail_next(1, status=502)
    codes = [upsert(client).status_code for _ in range(4)]
    assert codes == [503, 503, 502, 200]
    assert fake.status_counts == {503: 2, 502: 1, 200: 1}
    assert len(fake.upserts("ref-1")) == 1


@pytest.mark.parametrize(("seconds", "header"), [(2, "2"), (2.0, "2"), (0.5, "0.5")])
def test_rate_limit_sends_retry_after(
    fake: FakeDX, client: httpx.Client, seconds: float, header: str
) -> None:
    fake.rate_limit_next(1, retry_after=seconds)
    limited = upsert(client)
    assert error_of(limited) == (429, "rate_limited")
    assert limited.headers["Retry-After"] == header
    assert upsert(client).status_code == 200


def test_latency_delays_every_answer(fake: FakeDX, client: httpx.Client) -> None:
    fake.latency = 0.3
    for path, body in ((UPSERT, {"reference_id": "r", "started_at": STARTED}), (DELETE, {})):
        started = time.monotonic()
        client.post(path, json=body)
        assert time.monotonic() - started >= 0.3


def test_reject_is_permanent_for_that_reference_only(fake: FakeDX, client: httpx.Client) -> None:
    fake.reject("ref-1")
    fake.reject("ref-2", code="unknown_service", status=400)
    for _ in range(2):
        assert error_of(upsert(client)) == (422, "invalid_arguments")
    assert error_of(upsert(client, reference_id="ref-2")) == (400, "unknown_service")
    assert upsert(client, reference_id="ref-3").status_code == 200
    assert set(fake.incidents) == {"ref-3"}


def test_ok_false_answers_http_200(fake: FakeDX, client: httpx.Client) -> None:
    fake.ok_false_next(1, "invalid_arguments")
    assert error_of(upsert(client)) == (200, "invalid_arguments")
    assert upsert(client).json()["ok"] is True
    assert len(fake.upserts("ref-1")) == 1


def test_down_answers_503_until_back(fake: FakeDX, client: httpx.Client) -> None:
    fake.down = True
    assert error_of(upsert(client)) == (503, "service_unavailable")
    assert error_of(client.post(DELETE, json={"reference_id": "x"}))[0] == 503
    fake.down = False
    assert upsert(client).status_code == 200


def test_reset_clears_state_and_switches(fake: FakeDX, client: httpx.Client) -> None:
    upsert(client)
    fake.fail_next(3)
    fake.reject("ref-1")
    fake.latency, fake.down = 5.0, True
    fake.reset()
    assert (fake.incidents, fake.requests, fake.status_counts) == ({}, [], {})
    assert upsert(client).status_code == 200


def test_switches_hold_under_concurrent_requests(fake: FakeDX, client: httpx.Client) -> None:
    fake.fail_next(5)
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(
            pool.map(lambda i: upsert(client, reference_id=f"r{i}").status_code, range(20))
        )
    assert sorted(codes) == [200] * 15 + [503] * 5
    assert len(fake.incidents) == 15


def test_background_request_is_seen_with_wait_for(fake: FakeDX, client: httpx.Client) -> None:
    fake.latency = 0.05
    thread = threading.Thread(target=upsert, args=(client,))
    thread.start()
    wait_for(lambda: fake.status_counts[200] == 1, timeout=10.0)
    thread.join()
    assert fake.requests[0].status == 200


def test_wait_for_returns_the_value_or_fails_with_a_message() -> None:
    assert wait_for(lambda: [1], timeout=0.1) == [1]
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the answer"):
        wait_for(lambda: 0, timeout=0.05, message="the answer")


def test_fake_works_in_process_over_asgi_transport() -> None:
    fake = FakeDX(token=TOKEN)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=fake.app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://dx") as c:
            return await c.post(UPSERT, json=SEED_EXAMPLE, headers=headers)

    assert asyncio.run(main()).json()["ok"] is True
    assert list(fake.incidents) == [SEED_EXAMPLE["reference_id"]]


def test_uvicorn_thread_binds_a_real_port_and_stops() -> None:
    with UvicornThread(FakeDX().app) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.port > 0
        assert httpx.get(server.url + "/nope").status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/nope")
    assert 0 < free_port() < 65536


def test_uvicorn_thread_reports_a_failed_startup() -> None:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("store unavailable")
        yield

    with pytest.raises(RuntimeError, match="uvicorn exited during startup"):
        UvicornThread(Starlette(lifespan=lifespan)).start()


# -- what only DX sees with several relays: overlaps, arrivals, stalls, flapping -------------


def test_stall_holds_the_next_requests_then_answers(fake: FakeDX, client: httpx.Client) -> None:
    fake.stall_next(1, 0.4)
    started = time.monotonic()
    assert upsert(client).status_code == 200
    assert time.monotonic() - started >= 0.4
    assert upsert(client).status_code == 200
    record = fake.requests[0]
    assert record.answered_at is not None
    # The loop's timers may fire up to a millisecond early (uvloop counts in milliseconds).
    assert record.answered_at - record.received_at >= 0.39
    assert fake.requests[1].received_at >= record.answered_at


def test_calm_clears_queued_misbehaviour_but_keeps_records(
    fake: FakeDX, client: httpx.Client
) -> None:
    fake.fail_next(3)
    fake.rate_limit_next(2)
    fake.stall_next(2, 30.0)
    fake.ok_false_next(1, "x")
    fake.latency, fake.down = 5.0, True
    fake.calm()
    assert upsert(client).status_code == 200
    assert len(fake.requests) == 1


def test_requests_for_one_reference_open_at_once_are_an_overlap(
    fake: FakeDX, served: tuple[FakeDX, str]
) -> None:
    """Two clients (two connections, as two relays) send the same reference while DX holds
    the first; a third reference alone, and one sent after the first was answered, are not."""
    fake.stall_next(1, 0.5)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        httpx.Client(base_url=served[1], headers=headers) as first,
        httpx.Client(base_url=served[1], headers=headers) as second,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        slow = pool.submit(upsert, first)
        wait_for(lambda: len(fake.requests) == 1, message="the stalled request arrived")
        assert upsert(second).status_code == 200  # answered while the first is held
        assert upsert(second, reference_id="ref-2").status_code == 200
        assert slow.result(timeout=10).status_code == 200
        assert upsert(second).status_code == 200  # after: not an overlap
    assert len(fake.overlaps) == 1
    overlap = fake.overlaps[0]
    assert overlap.reference_id == "ref-1"
    assert overlap.first_at == fake.requests[0].received_at
    assert overlap.second_at == fake.requests[1].received_at
    assert overlap.first_client == fake.requests[0].client
    assert overlap.second_client == fake.requests[1].client != overlap.first_client


def test_an_overlap_counts_whatever_the_answer(fake: FakeDX, client: httpx.Client) -> None:
    """A request DX refuses was still in flight: 503s and 429s overlap as well."""
    fake.stall_next(1, 0.5)
    fake.fail_next(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(lambda _: upsert(client).status_code, range(2)))
    assert codes == [503, 503]
    assert [o.reference_id for o in fake.overlaps] == ["ref-1"]
    fake.reset()
    assert fake.overlaps == []


def test_arrivals_and_most_within_measure_the_rate_dx_sees(
    fake: FakeDX, client: httpx.Client
) -> None:
    fake.fail_next(1)
    for n in range(3):
        upsert(client, reference_id=f"r{n}")
    client.post(DELETE, json={"reference_id": "r1"})
    times = fake.arrivals()
    assert len(times) == 3
    assert times == sorted(times)
    assert fake.arrivals(DELETE) == [fake.requests[3].received_at]
    assert most_within(times, 3600.0) == 3


@pytest.mark.parametrize(
    ("times", "seconds", "most"),
    [
        ([], 1.0, 0),
        ([5.0], 1.0, 1),
        ([0.0, 0.5, 0.99, 1.0, 1.5], 1.0, 3),  # [0, 1) holds 3; 1.0 starts a new window
        ([0.0, 0.5, 0.99, 1.0, 1.5], 0.5, 2),
        ([3.0, 0.0, 1.0, 2.0], 1.5, 2),  # unsorted input
        ([1.0, 1.0, 1.0], 0.1, 3),
    ],
)
def test_most_within_is_the_busiest_half_open_window(
    times: list[float], seconds: float, most: int
) -> None:
    assert most_within(times, seconds) == most


def test_flapping_switches_one_misbehaviour_per_turn(fake: FakeDX, client: httpx.Client) -> None:
    profile = FlapProfile(period=3600.0, burst=(2, 2), limited=(1, 1), stalled=(1, 1), stall=0.3)
    flapping = Flapping(fake, random.Random(7), profile)
    seen: dict[str, list[int]] = {}
    for _ in range(12):
        kind = flapping.turn()
        seen[kind] = [upsert(client).status_code for _ in range(3)]
    assert seen["503"] == [503, 503, 200]
    assert seen["429"] == [429, 200, 200]
    assert seen["stall"] == [200, 200, 200]
    assert seen["calm"] == [200, 200, 200]
    assert set(flapping.turns) == {"503", "429", "stall", "calm"}
    assert sum(flapping.turns.values()) == 12
    assert any(
        r.answered_at is not None and r.answered_at - r.received_at >= 0.29 for r in fake.requests
    )


def test_flapping_runs_on_its_thread_until_stopped_and_leaves_dx_calm(
    fake: FakeDX, client: httpx.Client
) -> None:
    with Flapping(fake, random.Random(1), FlapProfile(period=0.01)) as flapping:
        wait_for(lambda: sum(flapping.turns.values()) >= 5, message="five turns")
    turns = sum(flapping.turns.values())
    assert upsert(client).status_code == 200
    assert sum(flapping.turns.values()) == turns
