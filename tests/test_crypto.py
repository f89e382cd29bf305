"""Opsgenie keys at rest: the key file, wrong keys, and no plaintext on disk or in logs."""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from service.app import handles
from service.crypto import KeyCipher, SealedKey, derive_fernet_key, key_file_for
from service.errors import ConfigError, SecretKeyError
from service.store import ServiceObject

PATH = "/api/v2/integration/opsgenie/services"
API_KEY = "dd-api-key-crypto"
APP_KEY = "dd-app-key-crypto"
FULL = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
OPSGENIE_KEY = "og-plaintext-5b2d0c7e-1111-4222-8333-feedfacecafe"


def test_key_file_is_created_0600_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "data" / "relay.db"
    caplog.set_level(logging.WARNING)
    first = KeyCipher.for_database(database, None)
    path = key_file_for(database)
    assert path == tmp_path / "data" / "relay.db.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = first.encrypt("hello")
    key = path.read_bytes().strip()

    second = KeyCipher.for_database(database, None)
    assert path.read_bytes().strip() == key
    assert second.decrypt(token) == "hello"
    warnings = [r for r in caplog.records if r.name == "service.crypto"]
    assert len(warnings) == 2
    assert all(r.__dict__["key_file"] == str(path) for r in warnings)
    assert key.decode() not in caplog.text


def test_secret_key_wins_over_the_key_file(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    cipher = KeyCipher.for_database(database, Secret("a passphrase, not a Fernet key"))
    assert not key_file_for(database).exists()
    same = KeyCipher.from_secret(Secret("a passphrase, not a Fernet key"))
    assert same.decrypt(cipher.encrypt("x")) == "x"


def test_a_fernet_key_is_used_as_is_and_other_strings_are_derived() -> None:
    fernet_key = Fernet.generate_key()
    assert derive_fernet_key(fernet_key.decode()) == fernet_key
    derived = derive_fernet_key("correct horse battery staple")
    assert derived != derive_fernet_key("correct horse battery stapler")
    assert derived == derive_fernet_key("correct horse battery staple")
    Fernet(derived)  # a valid Fernet key
    token = KeyCipher(fernet_key).encrypt("x")
    assert Fernet(fernet_key).decrypt(token.encode()) == b"x"


def test_wrong_key_is_a_named_clear_error() -> None:
    token = KeyCipher.from_secret(Secret("one")).encrypt(OPSGENIE_KEY)
    with pytest.raises(SecretKeyError, match="RELAY_SECRET_KEY") as caught:
        KeyCipher.from_secret(Secret("two")).decrypt(token)
    assert OPSGENIE_KEY not in str(caught.value)
    with pytest.raises(SecretKeyError):
        KeyCipher.from_secret(Secret("two")).decrypt("not a token")


def test_a_damaged_key_file_names_the_file(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    key_file_for(database).write_text("garbage")
    with pytest.raises(ConfigError, match=r"relay\.db\.key"):
        KeyCipher.for_database(database, None)


def test_cipher_repr_hides_the_key() -> None:
    key = Fernet.generate_key()
    assert key.decode() not in repr(KeyCipher(key))


def found(client: TestClient, service_id: str) -> ServiceObject:
    """The stored service object, which the test expects to exist."""
    assert client.portal is not None
    stored = client.portal.call(handles(client.app).store.get_service_object, service_id)
    assert stored is not None
    return stored


def service_body(**attributes: str) -> dict[str, Any]:
    return {"data": {"type": "opsgenie-service", "attributes": attributes}}


def test_a_changed_secret_key_leaves_the_service_object_api_working(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    keys = {"api_key": Secret(API_KEY), "app_key": Secret(APP_KEY)}
    first = make_client(deliver=False, secret_key=Secret("first"), **keys)
    ids: list[str] = []
    for name in ("a", "b"):
        body = service_body(name=name, region="us", opsgenie_api_key=OPSGENIE_KEY)
        created = first.post(PATH, json=body, headers=FULL)
        assert created.status_code == 201
        ids.append(created.json()["data"]["id"])
    first.__exit__(None, None, None)

    caplog.set_level(logging.INFO)
    second = make_client(deliver=False, secret_key=Secret("second"), **keys)
    listed = second.get(PATH, headers=FULL)
    assert listed.status_code == 200
    assert [o["attributes"]["name"] for o in listed.json()["data"]] == ["a", "b"]
    assert second.get(f"{PATH}/{ids[0]}", headers=FULL).status_code == 200
    renamed = second.patch(
        f"{PATH}/{ids[0]}",
        json={"data": {"type": "opsgenie-service", "id": ids[0], "attributes": {"name": "c"}}},
        headers=FULL,
    )
    assert renamed.status_code == 200
    assert renamed.json()["data"]["attributes"]["name"] == "c"
    assert second.delete(f"{PATH}/{ids[1]}", headers=FULL).status_code == 204
    after = second.get(PATH, headers=FULL).json()["data"]
    assert [(o["id"], o["attributes"]["name"]) for o in after] == [(ids[0], "c")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert OPSGENIE_KEY not in caplog.text

    # Only using the key fails, by name; sending it again seals it with the current key.
    with pytest.raises(SecretKeyError, match="RELAY_SECRET_KEY"):
        _ = found(second, ids[0]).api_key
    rotated = {"opsgenie_api_key": OPSGENIE_KEY[::-1]}
    resent = second.patch(
        f"{PATH}/{ids[0]}",
        json={"data": {"type": "opsgenie-service", "id": ids[0], "attributes": rotated}},
        headers=FULL,
    )
    assert resent.status_code == 200
    assert str(found(second, ids[0]).api_key) == OPSGENIE_KEY[::-1]


def test_a_sealed_key_opens_only_with_its_cipher_and_never_shows() -> None:
    cipher = KeyCipher(Fernet.generate_key())
    sealed = SealedKey(cipher.encrypt(OPSGENIE_KEY), cipher)
    assert str(sealed.open()) == OPSGENIE_KEY
    assert OPSGENIE_KEY not in repr(sealed)
    other = KeyCipher(Fernet.generate_key())
    with pytest.raises(SecretKeyError):
        SealedKey(cipher.encrypt(OPSGENIE_KEY), other).open()


def test_no_plaintext_key_in_the_database_files_or_logs(
    make_client: Callable[..., TestClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(deliver=False, api_key=Secret(API_KEY), app_key=Secret(APP_KEY))
    created = client.post(
        PATH,
        json={
            "data": {
                "type": "opsgenie-service",
                "attributes": {"name": "a", "region": "us", "opsgenie_api_key": OPSGENIE_KEY},
            }
        },
        headers=FULL,
    )
    assert created.status_code == 201
    service_id = created.json()["data"]["id"]
    rotated = OPSGENIE_KEY[::-1]
    patched = client.patch(
        f"{PATH}/{service_id}",
        json={
            "data": {
                "type": "opsgenie-service",
                "id": service_id,
                "attributes": {"opsgenie_api_key": rotated},
            }
        },
        headers=FULL,
    )
    assert patched.status_code == 200

    wal = tmp_path / "relay.db-wal"
    assert wal.exists()
    assert (tmp_path / "relay.db").exists()

    def assert_no_plaintext() -> None:
        for path in tmp_path.rglob("relay.db*"):
            raw = path.read_bytes()
            for secret in (OPSGENIE_KEY, rotated):
                assert secret.encode() not in raw, path
                assert secret.encode("utf-16-le") not in raw, path

    assert_no_plaintext()  # while running: the new rows are still in the WAL
    client.__exit__(None, None, None)
    assert_no_plaintext()  # after the checkpoint at close
    for secret in (OPSGENIE_KEY, rotated):
        assert secret not in caplog.text


def test_a_key_file_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "relay.db"
    KeyCipher.for_database(database, None)
    key_file_for(database).chmod(0o644)
    caplog.set_level(logging.WARNING)
    KeyCipher.for_database(database, None)
    assert any("chmod 600" in r.getMessage() for r in caplog.records)
