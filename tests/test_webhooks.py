"""The Opsgenie webhook edge: auth, limits, parsing, durable storage, outcomes."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.app import create_app, handles
from service.logs import configure
from service.mapping import Rules
from service.opsgenie import parse_event
from service.settings import Settings
from service.store import Incoming, Outcome, ServiceObject
from service.store.sqlite import SQLiteStore
from service.translate import AlertState, fold
from service.webhooks import ServiceIds
from tests.conftest import WEBHOOK_TOKEN, auth, sample
from tests.test_logs import Writes, restore_logging  # noqa: F401  (a fixture used by name)

URL = "/webhooks/opsgenie"
CREATE = sample("Create")
REF = "opsgenie-" + CREATE["alert"]["alertId"]

MakeClient = Callable[..., TestClient]


def rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client(deliver=False)


@pytest.fixture
def db(client: TestClient, tmp_path: Path) -> Path:
    """The database ``make_settings`` gives every app (``client`` has opened it)."""
    return tmp_path / "relay.db"


def counter(client: TestClient, action: str, outcome: str) -> float:
    registry = handles(client.app).metrics.registry
    value = registry.get_sample_value(
        "relay_webhooks_received_total", {"action": action, "outcome": outcome}
    )
    return float(value or 0.0)


def test_accepts_and_stores_before_answering(client: TestClient, db: Path) -> None:
    response = client.post(URL, json=CREATE, headers=auth())
    assert response.status_code == 202
    assert response.json() == {"outcome": "accepted", "reference_id": REF}
    # Another connection (as another process would) sees the committed rows.
    assert rows(db, "events") == 1
    assert rows(db, "inbox") == 1  # due: the worker's claim makes its alert row
    assert counter(client, "Create", "accepted") == 1


def test_duplicate_delivery_changes_nothing(client: TestClient, db: Path) -> None:
    client.post(URL, json=CREATE, headers=auth())
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT version, state FROM alerts").fetchall()
    response = client.post(URL, json=CREATE, headers=auth())
    assert response.status_code == 202
    assert response.json()["outcome"] == "duplicate"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version, state FROM alerts").fetchall() == before
    assert rows(db, "events") == 1


def test_an_older_event_is_stored_but_changes_no_state(client: TestClient, db: Path) -> None:
    client.post(URL, json=CREATE, headers=auth())
    stale = json.loads(json.dumps(CREATE))
    stale["alert"]["updatedAt"] -= 10**9  # one second older, same facts
    response = client.post(URL, json=stale, headers=auth())
    # Intake only stores; whether an event teaches anything is the fold's call, later.
    assert response.json()["outcome"] == "accepted"
    assert rows(db, "events") == 2
    only_create = parse_event(json.dumps(CREATE).encode(), received_ns=0)
    assert stored_state(db, "opsgenie-" + only_create.alert_id) == fold(None, only_create)


def stored_state(db: Path, reference_id: str) -> AlertState | None:
    """The state an operator would read for ``reference_id``, folded from the file."""

    async def read() -> AlertState | None:
        store = SQLiteStore(db, clock=time.time)
        await store.open()
        try:
            delivery = await store.get(reference_id)
            return None if delivery is None else delivery.state
        finally:
            await store.close()

    return asyncio.run(read())


def test_basic_auth_with_the_token_as_password(client: TestClient) -> None:
    credentials = base64.b64encode(f"opsgenie:{WEBHOOK_TOKEN}".encode()).decode()
    response = client.post(URL, json=CREATE, headers={"Authorization": f"Basic {credentials}"})
    assert response.status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Token {WEBHOOK_TOKEN}"},
        {"Authorization": "Basic " + base64.b64encode(b"user:wrong").decode()},
        {"Authorization": "Basic !!!"},
    ],
)
def test_bad_credentials_get_401_and_store_nothing(
    client: TestClient, db: Path, headers: dict[str, str]
) -> None:
    response = client.post(URL, json=CREATE, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"errors": ["missing or invalid webhook token"]}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="opsgenie-dx-relay"'
    assert rows(db, "events") == 0
    assert counter(client, "none", "unauthorized") == 1


def test_a_trailing_slash_is_the_same_webhook_not_a_redirect(client: TestClient, db: Path) -> None:
    """Opsgenie may not follow a redirect; one answered to a misplaced slash would lose
    every alert sent to that URL."""
    response = client.post(URL + "/", json=CREATE, headers=auth(), follow_redirects=False)
    assert response.status_code == 202
    assert rows(db, "events") == 1


def test_without_configured_tokens_every_webhook_is_refused(make_client: MakeClient) -> None:
    client = make_client(deliver=False, webhook_tokens=())
    assert client.post(URL, json=CREATE, headers=auth()).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe\x00", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b"{}", "action is required"),
        (b'{"action": 7, "alert": {"alertId": "a"}}', "action: expected a non-empty string"),
        (b'{"action": "Create"}', "alert.alertId is required"),
        (b'{"action": "Create", "alert": []}', "alert: expected an object"),
        (b'{"action": "Create", "alert": {"alertId": ""}}', "alert.alertId is required"),
        (
            b'{"action": "Create", "alert": {"alertId": "a", "tags": "x,y"}}',
            "alert.tags: expected a list of strings",
        ),
        (
            b'{"action": "Create", "alert": {"alertId": "a", "updatedAt": "soon"}}',
            "alert.updatedAt: expected an epoch timestamp",
        ),
        (
            b'{"action": "Create", "alert": {"alertId": "a", "priority": "urgent"}}',
            "alert.priority: expected P1..P5 or 1..5",
        ),
    ],
)
def test_bad_input_gets_400_naming_the_problem_and_stores_nothing(
    client: TestClient, db: Path, body: bytes, message: str
) -> None:
    response = client.post(URL, content=body, headers=auth())
    assert response.status_code == 400
    assert response.json() == {"errors": [message]}
    assert rows(db, "events") == 0


def test_oversized_body_gets_413_and_stores_nothing(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client(deliver=False, max_body_bytes=2048)
    big = json.loads(json.dumps(CREATE))
    big["alert"]["description"] = "x" * 4096
    response = client.post(URL, json=big, headers=auth())
    assert response.status_code == 413
    assert response.json() == {"errors": ["body exceeds 2048 bytes"]}
    # Without a Content-Length the limit holds while streaming too.
    chunks = iter([json.dumps(big).encode()[i : i + 512] for i in range(0, 5000, 512)])
    response = client.post(URL, content=chunks, headers=auth())
    assert response.status_code == 413
    assert rows(tmp_path / "relay.db", "events") == 0


@pytest.mark.parametrize("name", ["CustomAction.TestAction", "Delete"])
def test_actions_the_relay_does_not_act_on_are_accepted_counted_ignored(
    client: TestClient, db: Path, name: str
) -> None:
    body = sample(name)
    response = client.post(URL, json=body, headers=auth())
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    assert rows(db, "events") == 0
    label = "other" if name.startswith("Custom") else "Delete"
    assert counter(client, label, "ignored") == 1


#: Fields the relay reads only from actions it acts on, each set to a type it refuses there.
BROKEN_FIELDS: list[dict[str, Any]] = [
    {"priority": "high"},
    {"priority": 9},
    {"tags": "x,y"},
    {"updatedAt": "soon"},
    {"createdAt": -1},
    {"message": 5},
    {"details": ["not", "an", "object"]},
    {"addedTags": 7},
    {"alias": ["a"]},
]


@pytest.mark.parametrize("broken", BROKEN_FIELDS, ids=lambda broken: next(iter(broken)))
@pytest.mark.parametrize("action", ["TestAction", "SomethingNew", "Delete", "Fetched"])
def test_an_ignored_action_is_not_read_beyond_action_and_alert_id(
    client: TestClient, db: Path, action: str, broken: dict[str, Any]
) -> None:
    """Actions the relay does not act on get 202, counted as ignored, nothing
    else; a field it would never use cannot make them bad input."""
    body = sample("CustomAction.TestAction")
    body["action"] = action
    body["alert"].update(broken)
    response = client.post(URL, json=body, headers=auth())
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    label = "Delete" if action == "Delete" else "other"
    assert counter(client, label, "ignored") == 1
    assert counter(client, label, "invalid") == counter(client, "none", "invalid") == 0
    assert rows(db, "events") == rows(db, "alerts") == 0


def test_a_bare_custom_action_with_a_word_for_a_priority_is_ignored(
    client: TestClient, db: Path
) -> None:
    body = {"action": "TestAction", "alert": {"alertId": "z", "priority": "high"}}
    response = client.post(URL, json=body, headers=auth())
    assert (response.status_code, response.json()["outcome"]) == (202, "ignored")
    assert counter(client, "other", "ignored") == 1
    assert rows(db, "events") == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"action": "TestAction"}', "alert.alertId is required"),
        (b'{"action": "TestAction", "alert": []}', "alert: expected an object"),
        (b'{"action": "TestAction", "alert": {"alertId": " "}}', "alert.alertId is required"),
        (
            b'{"action": "TestAction", "alert": {"alertId": 5, "priority": "high"}}',
            "alert.alertId: expected a string",
        ),
        (
            b'{"action": "Delete", "alert": {"alertId": "a\\u0000b"}}',
            "alert.alertId: control or other unprintable characters are not allowed",
        ),
        (b'{"action": "", "alert": {"alertId": "a"}}', "action: expected a non-empty string"),
        (b'{"action": "TestAction", "alert": {"alertId": "a"', "body is not valid JSON"),
    ],
)
def test_an_ignored_action_still_needs_what_every_webhook_carries(
    client: TestClient, db: Path, body: bytes, message: str
) -> None:
    response = client.post(URL, content=body, headers=auth())
    assert (response.status_code, response.json()) == (400, {"errors": [message]})
    assert counter(client, "none", "invalid") == 1
    assert rows(db, "events") == 0


@pytest.mark.parametrize("broken", BROKEN_FIELDS, ids=lambda broken: next(iter(broken)))
def test_a_delete_the_relay_acts_on_is_validated_in_full(
    make_client: MakeClient, broken: dict[str, Any], tmp_path: Path
) -> None:
    client = make_client(deliver=False, rules=Rules(delete_incidents=True))
    body = sample("Delete")
    body["alert"].update(broken)
    response = client.post(URL, json=body, headers=auth())
    assert response.status_code == 400
    [message] = response.json()["errors"]
    assert message.startswith(f"alert.{next(iter(broken))}")
    assert rows(tmp_path / "relay.db", "events") == 0


def test_delete_is_stored_when_incident_deletion_is_configured(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client(deliver=False, rules=Rules(delete_incidents=True))
    response = client.post(URL, json=sample("Delete"), headers=auth())
    assert response.status_code == 202
    assert response.json()["outcome"] == "accepted"


@pytest.mark.parametrize("name", ["Acknowledge", "AddNote", "AddTags", "AddTeam", "Close"])
def test_every_documented_sample_is_accepted(client: TestClient, name: str) -> None:
    assert client.post(URL, json=sample(name), headers=auth()).status_code == 202


def test_errors_never_leak_a_stack_trace(client: TestClient) -> None:
    response = client.post(URL, content=b'{"action": "Create", "alert": {"alertId": 5}}')
    assert response.status_code == 401
    response = client.post(
        URL, content=b'{"action": "Create", "alert": {"alertId": 5}}', headers=auth()
    )
    assert response.status_code == 400
    assert "Traceback" not in response.text
    assert response.json() == {"errors": ["alert.alertId: expected a string"]}


def test_the_relays_internal_fetched_action_is_not_accepted_from_outside(
    client: TestClient, db: Path
) -> None:
    spoof = {**CREATE, "action": "Fetched"}
    response = client.post(URL, json=spoof, headers=auth())
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    assert rows(db, "events") == 0


# -- the {service} route: service objects resolved from a cache the services API clears --

SERVICES = "/api/v2/integration/opsgenie/services"
ADMIN_KEYS = {"api_key": "dd-api-key-0123456789", "app_key": "dd-app-key-0123456789"}
ADMIN = {"DD-API-KEY": ADMIN_KEYS["api_key"], "DD-APPLICATION-KEY": ADMIN_KEYS["app_key"]}


@pytest.fixture
def admin_client(make_client: MakeClient) -> TestClient:
    return make_client(deliver=False, **{k: Secret(v) for k, v in ADMIN_KEYS.items()})


def create_service(client: TestClient, name: str) -> str:
    attributes = {"name": name, "region": "us", "opsgenie_api_key": "og-key-0000"}
    body = {"data": {"type": "opsgenie-service", "attributes": attributes}}
    response = client.post(SERVICES, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    service_id: str = response.json()["data"]["id"]
    return service_id


def count_lookups(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name the webhook edge asks the store for, from now on."""
    store = handles(client.app).store
    asked: list[str] = []
    find = store.find_service_object

    async def counting(id_or_name: str) -> ServiceObject | None:
        asked.append(id_or_name)
        return await find(id_or_name)

    monkeypatch.setattr(store, "find_service_object", counting)
    return asked


def send(client: TestClient, service: str, alert_id: str = "a-1") -> int:
    body = {**CREATE, "alert": {**CREATE["alert"], "alertId": alert_id}}
    return int(client.post(f"{URL}/{service}", json=body, headers=auth()).status_code)


def test_a_named_service_is_read_from_the_store_once(
    admin_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_id = create_service(admin_client, "payments-og")
    asked = count_lookups(admin_client, monkeypatch)
    assert [send(admin_client, "payments-og", f"a-{n}") for n in range(3)] == [202] * 3
    assert [send(admin_client, service_id, f"b-{n}") for n in range(2)] == [202] * 2
    assert asked == ["payments-og", service_id]


def test_a_renamed_service_is_not_served_from_the_cache(
    admin_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_id = create_service(admin_client, "payments-og")
    assert send(admin_client, "payments-og") == 202
    asked = count_lookups(admin_client, monkeypatch)
    attributes = {"name": "checkout-og"}
    patch = {"data": {"type": "opsgenie-service", "id": service_id, "attributes": attributes}}
    assert admin_client.patch(f"{SERVICES}/{service_id}", json=patch, headers=ADMIN).is_success
    assert send(admin_client, "payments-og") == 404
    assert send(admin_client, "checkout-og") == 202
    assert asked == ["payments-og", "checkout-og"]


def test_a_deleted_service_is_not_served_from_the_cache(admin_client: TestClient) -> None:
    service_id = create_service(admin_client, "payments-og")
    assert send(admin_client, "payments-og") == send(admin_client, service_id) == 202
    response = admin_client.delete(f"{SERVICES}/{service_id}", headers=ADMIN)
    assert response.status_code == 204
    assert send(admin_client, "payments-og") == send(admin_client, service_id) == 404


def test_an_unknown_name_is_found_once_it_is_created(
    admin_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = count_lookups(admin_client, monkeypatch)
    assert send(admin_client, "later-og") == 404
    create_service(admin_client, "later-og")
    assert send(admin_client, "later-og") == 202
    assert asked == ["later-og", "later-og"]


def test_the_service_cache_is_bounded_and_a_change_mid_lookup_is_not_cached() -> None:
    objects = {f"s{n}": f"id-{n}" for n in range(5)}
    lookups: list[str] = []

    class Objects:
        async def accept(self, incoming: Incoming) -> Outcome:
            raise AssertionError("not stored here")

        async def find_service_object(self, id_or_name: str) -> ServiceObject | None:
            lookups.append(id_or_name)
            if id_or_name == "racing":
                ids.forget("id-racing")  # a PATCH lands while this lookup waits
            found = objects.get(id_or_name, "id-racing" if id_or_name == "racing" else None)
            return None if found is None else service_object(found, id_or_name)

    ids = ServiceIds(Objects(), size=3)

    async def resolve_all(*names: str) -> list[str | None]:
        return [await ids.resolve(name) for name in names]

    assert asyncio.run(resolve_all("s0", "s1", "s2", "s3", "s3", "s0")) == [
        *("id-0", "id-1", "id-2", "id-3", "id-3", "id-0")
    ]
    # Three fit: s0 was the oldest when s3 came, so it was read again.
    assert lookups == ["s0", "s1", "s2", "s3", "s0"]
    lookups.clear()
    assert asyncio.run(resolve_all("racing", "racing")) == ["id-racing", "id-racing"]
    assert lookups == ["racing", "racing"]


def service_object(service_id: str, name: str) -> ServiceObject:
    return ServiceObject(
        id=service_id,
        name=name,
        region="us",
        custom_url=None,
        sealed_key=None,
        created_at=0.0,
        updated_at=0.0,
    )


# ---- the "webhook stored" lines of one commit ------------------------------------------------


async def post_webhook(app: Any, body: bytes, sent: Callable[[dict[str, Any]], None]) -> None:
    """One POST /webhooks/opsgenie through the ASGI app, as uvicorn would make it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {WEBHOOK_TOKEN}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent(message)

    await app(scope, receive, send)


@pytest.mark.usefixtures("restore_logging")
def test_the_lines_of_one_commit_are_written_together_each_before_its_answer(
    make_settings: Callable[..., Settings],
) -> None:
    stream = Writes()
    events = configure(fmt="json", level="INFO", secrets=[Secret(WEBHOOK_TOKEN)], stream=stream)
    app = create_app(make_settings(), registry=CollectorRegistry(), events=events)
    bodies = []
    for n in range(12):
        payload = json.loads(json.dumps(CREATE))
        payload["alert"]["alertId"] = f"batched-{n}"
        bodies.append(json.dumps(payload).encode())
    answered: list[tuple[int, bool]] = []  # (status, was the line written before it)

    def sent_for(n: int) -> Callable[[dict[str, Any]], None]:
        def sent(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                written = f'"reference_id": "opsgenie-batched-{n}"' in stream.getvalue()
                answered.append((message["status"], written))

        return sent

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            before = stream.writes
            await asyncio.gather(*(post_webhook(app, b, sent_for(n)) for n, b in enumerate(bodies)))
            stored = [json.loads(line) for line in stream.getvalue().splitlines()]
            stored = [line for line in stored if line["message"] == "webhook stored"]
            assert sorted(line["reference_id"] for line in stored) == sorted(
                f"opsgenie-batched-{n}" for n in range(12)
            )
            assert {line["outcome"] for line in stored} == {"accepted"}
            # One commit took them all (they arrived in one turn), and its lines went out
            # in one write.
            assert stream.writes - before == 1

    asyncio.run(scenario())
    assert answered == [(202, True)] * 12
