"""Service objects in PostgreSQL: one Opsgenie account per row, its API key encrypted.

The same rules as SQLite's (``service.store.sqlite.service_objects``): names unique by
``names.name_key`` (case and Unicode forms alike), computed here, since PostgreSQL has no
such function, and stored in ``name_key`` under a unique index; keys sealed with
``KeyCipher`` before they are written. No database holds keys of the older ``casefold``
rule (this backend has not shipped: settings still refuse ``postgresql://``), so none
needs SQLite's re-keying of twins. With several replicas there is no key file to fall
back on: the cipher comes from ``RELAY_SECRET_KEY``, which every replica shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast
from uuid import UUID

import asyncpg
from starlette.datastructures import Secret

from service.crypto import KeyCipher, SealedKey
from service.destinations import destination_after
from service.errors import Conflict
from service.names import name_key
from service.store import Region, ServiceObject, ServiceObjectChanges
from service.store.postgres.engine import PostgresEngine
from service.store.postgres.schema import Conn


class PostgresServiceObjects:
    """``ServiceObjects`` in the ``service_objects`` table."""

    def __init__(
        self, engine: PostgresEngine, *, clock: Callable[[], float], cipher: KeyCipher
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._cipher = cipher

    def _service_object(self, row: asyncpg.Record) -> ServiceObject:
        token = row["api_key"]
        return ServiceObject(
            id=row["id"],
            name=row["name"],
            region=cast(Region, row["region"]),
            custom_url=row["custom_url"],
            sealed_key=None if token is None else SealedKey(token, self._cipher),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def create_service_object(
        self, *, id: str, name: str, region: Region, custom_url: str | None, api_key: Secret
    ) -> ServiceObject:
        token = self._cipher.encrypt(str(api_key))
        now = self._clock()

        async def job(conn: Conn) -> asyncpg.Record | None:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO service_objects (id, name, name_key, region, custom_url,"
                    " api_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
                    " RETURNING *",
                    id,
                    name,
                    name_key(name),
                    region,
                    custom_url,
                    token,
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a service object named {name!r} already exists") from None
            return row

        row = await self._engine.run(job, "write")
        assert row is not None  # INSERT ... RETURNING answers with the row
        return self._service_object(row)

    async def list_service_objects(self) -> list[ServiceObject]:
        rows = await self._engine.run(
            lambda conn: conn.fetch("SELECT * FROM service_objects ORDER BY created_at, id"),
            "read",
        )
        return [self._service_object(row) for row in rows]

    async def get_service_object(self, id: str) -> ServiceObject | None:
        return await self._one("id", id)

    async def find_service_object(self, id_or_name: str) -> ServiceObject | None:
        canonical = _canonical_uuid(id_or_name)
        if canonical is not None and (found := await self.get_service_object(canonical)):
            return found
        return await self._one("name_key", name_key(id_or_name))

    async def _one(self, column: str, value: str) -> ServiceObject | None:
        row = await self._engine.run(
            lambda conn: conn.fetchrow(
                f"SELECT * FROM service_objects WHERE {column} = $1",  # noqa: S608
                value,
            ),
            "read",
        )
        return None if row is None else self._service_object(row)

    async def update_service_object(
        self, id: str, changes: ServiceObjectChanges
    ) -> ServiceObject | None:
        api_key = changes.get("api_key")
        token = None if api_key is None else self._cipher.encrypt(str(api_key))
        now = self._clock()

        async def job(conn: Conn) -> asyncpg.Record | None:
            row = await conn.fetchrow("SELECT * FROM service_objects WHERE id = $1 FOR UPDATE", id)
            if row is None:
                return None
            name = changes.get("name", row["name"])
            region, custom_url = destination_after(
                (row["region"], row["custom_url"]), changes, has_key=row["api_key"] is not None
            )
            try:
                updated = await conn.fetchrow(
                    "UPDATE service_objects SET name = $1, name_key = $2, region = $3,"
                    " custom_url = $4, api_key = coalesce($5, api_key), updated_at = $6"
                    " WHERE id = $7 RETURNING *",
                    name,
                    name_key(name),
                    region,
                    custom_url,
                    token,
                    now,
                    id,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a service object named {name!r} already exists") from None
            return updated

        row = await self._engine.transaction(job, "write")
        return None if row is None else self._service_object(row)

    async def delete_service_object(self, id: str) -> bool:
        status = await self._engine.run(
            lambda conn: conn.execute("DELETE FROM service_objects WHERE id = $1", id), "write"
        )
        return bool(status != "DELETE 0")


def _canonical_uuid(text: str) -> str | None:
    try:
        return str(UUID(text))
    except ValueError:
        return None
