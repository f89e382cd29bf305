"""Service objects in SQLite: one Opsgenie account per row, its API key encrypted.

Opsgenie keys enter as ``Secret`` plaintext and leave sealed (``SealedKey``), decrypted
only by what calls Opsgenie; only Fernet tokens are written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import cast
from uuid import UUID

from starlette.datastructures import Secret

from service.crypto import KeyCipher, SealedKey
from service.destinations import destination_after
from service.errors import Conflict
from service.names import name_key
from service.store import Region, ServiceObject, ServiceObjectChanges
from service.store.sqlite.engine import SQLiteEngine


class SQLiteServiceObjects:
    """``ServiceObjects`` in the ``service_objects`` table of ``engine``'s file."""

    def __init__(
        self,
        engine: SQLiteEngine,
        *,
        clock: Callable[[], float],
        cipher: KeyCipher | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        #: Encrypts service objects' Opsgenie keys; the key file beside the database if None.
        self._cipher = cipher

    def _key_cipher(self) -> KeyCipher:
        if self._cipher is None:
            self._cipher = KeyCipher.for_database(self._engine.path, None)
        return self._cipher

    def _service_object(self, row: sqlite3.Row) -> ServiceObject:
        token = row["api_key"]
        return ServiceObject(
            id=row["id"],
            name=row["name"],
            region=cast(Region, row["region"]),
            custom_url=row["custom_url"],
            sealed_key=None if token is None else SealedKey(token, self._key_cipher()),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def create_service_object(
        self, *, id: str, name: str, region: Region, custom_url: str | None, api_key: Secret
    ) -> ServiceObject:
        token = self._key_cipher().encrypt(str(api_key))
        now = self._clock()

        def run(conn: sqlite3.Connection) -> sqlite3.Row:
            try:
                conn.execute(
                    "INSERT INTO service_objects (id, name, name_key, region, custom_url,"
                    " api_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (id, name, name_key(name), region, custom_url, token, now, now),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a service object named {name!r} already exists") from None
            return _service_row(conn, id)

        return self._service_object(await self._engine.write(run))

    async def list_service_objects(self) -> list[ServiceObject]:
        def run(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute("SELECT * FROM service_objects ORDER BY created_at, id").fetchall()

        return [self._service_object(row) for row in await self._engine.read(run)]

    async def get_service_object(self, id: str) -> ServiceObject | None:
        def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM service_objects WHERE id = ?", (id,)
            ).fetchone()
            return row

        row = await self._engine.read(run)
        return None if row is None else self._service_object(row)

    async def find_service_object(self, id_or_name: str) -> ServiceObject | None:
        canonical = _canonical_uuid(id_or_name)
        if canonical is not None and (found := await self.get_service_object(canonical)):
            return found

        def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM service_objects WHERE name_key = ?", (name_key(id_or_name),)
            ).fetchone()
            return row

        row = await self._engine.read(run)
        return None if row is None else self._service_object(row)

    async def update_service_object(
        self, id: str, changes: ServiceObjectChanges
    ) -> ServiceObject | None:
        api_key = changes.get("api_key")
        token = None if api_key is None else self._key_cipher().encrypt(str(api_key))
        now = self._clock()

        def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row = conn.execute("SELECT * FROM service_objects WHERE id = ?", (id,)).fetchone()
            if row is None:
                return None
            name = changes.get("name", row["name"])
            region, custom_url = destination_after(
                (row["region"], row["custom_url"]), changes, has_key=row["api_key"] is not None
            )
            # A name's own key when free; a twin the upgrade to name_key set apart from an
            # older one (schema.py) keeps its own while that one holds the name, so it
            # stays editable, and takes the name's key once it is free.
            keys = [name_key(name)]
            if name_key(row["name"]) == keys[0] != row["name_key"]:
                keys.append(row["name_key"])
            for key in keys:
                try:
                    conn.execute(
                        "UPDATE service_objects SET name = ?, name_key = ?, region = ?,"
                        " custom_url = ?, api_key = coalesce(?, api_key), updated_at = ?"
                        " WHERE id = ?",
                        (name, key, region, custom_url, token, now, id),
                    )
                    return _service_row(conn, id)
                except sqlite3.IntegrityError:
                    pass
            raise Conflict(f"a service object named {name!r} already exists")

        row = await self._engine.write(run)
        return None if row is None else self._service_object(row)

    async def delete_service_object(self, id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM service_objects WHERE id = ?", (id,)).rowcount > 0

        return await self._engine.write(run)


def _canonical_uuid(text: str) -> str | None:
    try:
        return str(UUID(text))
    except ValueError:
        return None


def _service_row(conn: sqlite3.Connection, id: str) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute("SELECT * FROM service_objects WHERE id = ?", (id,)).fetchone()
    return row
