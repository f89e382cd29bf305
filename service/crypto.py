"""Opsgenie API keys at rest: Fernet tokens, never plaintext, in the relay's database.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) authenticates as well as
encrypts, so a wrong key is detected instead of yielding garbage. The key comes from
``RELAY_SECRET_KEY``: a Fernet key is used as is, any other string is stretched with
HKDF-SHA256. Without it, a key is generated once into ``<database>.key`` (mode 0600)
beside the database, so the embedded default works and survives restarts, and a warning
says which file to back up with the database.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.datastructures import Secret

from service.errors import ConfigError, SecretKeyError

log = logging.getLogger("service.crypto")

#: Domain separation for the HKDF derivation; changing it changes every derived key.
_HKDF_INFO = b"opsgenie-dx-relay/service-object-api-keys/v1"
_HKDF_SALT = b"opsgenie-dx-relay"


def _is_fernet_key(candidate: bytes) -> bool:
    try:
        return len(base64.urlsafe_b64decode(candidate)) == 32 and len(candidate) == 44
    except (binascii.Error, ValueError):
        return False


def derive_fernet_key(secret: str) -> bytes:
    """A Fernet key from ``secret``: itself if it already is one, else HKDF-SHA256 of it."""
    raw = secret.strip().encode("utf-8")
    if _is_fernet_key(raw):
        return raw
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(raw))


def key_file_for(database_path: Path) -> Path:
    return database_path.with_name(database_path.name + ".key")


def _read_or_create_key_file(path: Path) -> bytes:
    """Create the key file exclusively (0600) or read the one an earlier start made."""
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"RELAY_SECRET_KEY: cannot read key file {path}: {exc}") from None
        if not _is_fernet_key(key):
            raise ConfigError(
                f"RELAY_SECRET_KEY: key file {path} does not hold a Fernet key"
            ) from None
        if path.stat().st_mode & 0o077:
            log.warning(
                "the key file is readable by other users; chmod 600 it",
                extra={"key_file": str(path)},
            )
        return key
    except OSError as exc:
        raise ConfigError(f"RELAY_SECRET_KEY: cannot create key file {path}: {exc}") from None
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return key


class KeyCipher:
    """Encrypts and decrypts Opsgenie API keys; the only holder of the Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def __repr__(self) -> str:
        return "KeyCipher(<hidden>)"

    @classmethod
    def from_secret(cls, secret: Secret) -> KeyCipher:
        return cls(derive_fernet_key(str(secret)))

    @classmethod
    def for_database(cls, database_path: Path, secret_key: Secret | None) -> KeyCipher:
        """``RELAY_SECRET_KEY`` if set, else the key file beside the database."""
        if secret_key is not None and str(secret_key).strip():
            return cls.from_secret(secret_key)
        path = key_file_for(database_path)
        key = _read_or_create_key_file(path)
        log.warning(
            "RELAY_SECRET_KEY is not set: stored Opsgenie API keys are encrypted with the key "
            "in the file named here; back it up with the database",
            extra={"key_file": str(path)},
        )
        return cls(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext, or ``SecretKeyError`` when this is not the key that encrypted it."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyError(
                "a stored Opsgenie API key cannot be decrypted: RELAY_SECRET_KEY (or the key "
                "file) is not the key it was encrypted with"
            ) from exc


class SealedKey:
    """An Opsgenie API key as stored: its Fernet token, decrypted only when used.

    Only requests to Opsgenie need the plaintext; listing, reading, renaming or deleting
    a service object never does. Decrypting late keeps a changed or lost
    ``RELAY_SECRET_KEY`` from failing those: only the Opsgenie calls fail, each with
    ``SecretKeyError``, until the key is set back or sent again.
    """

    __slots__ = ("_cipher", "_token")

    def __init__(self, token: str, cipher: KeyCipher) -> None:
        self._token = token
        self._cipher = cipher

    def __repr__(self) -> str:
        return "SealedKey(<hidden>)"

    def open(self) -> Secret:
        """The plaintext key, or ``SecretKeyError`` when this cipher did not seal it."""
        return Secret(self._cipher.decrypt(self._token))
