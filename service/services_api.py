"""Opsgenie service objects through Datadog's v2 API shape, so Datadog's clients work unchanged.

``/api/v2/integration/opsgenie/services[/{integration_service_id}]`` with Datadog's
bodies (``{"data": {"type": "opsgenie-service", "id", "attributes"}}``), codes and
headers. The Opsgenie API key is write-only: it goes to the store (which encrypts it)
and never comes back in a response or a log line. Every answer, refusals included,
carries the ``X-RateLimit-*`` headers Datadog clients read.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from prometheus_client import Counter
from starlette.datastructures import Secret
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.account_keys import key_kind, parse_api_key
from service.admin_route import (
    RATE_PERIOD_SECONDS,
    RateLimiter,
    admin_route,
    bucket,
    count_from_zero,
    serve,
)
from service.auth import Access, AdminKeys, require_admin
from service.destinations import parse_custom_url
from service.errors import NotFound, PayloadError
from service.names import MAX_NAME_LENGTH, normalize_name
from service.request_body import read_json_object
from service.store import REGIONS, Region, ServiceObject, ServiceObjectChanges

log = logging.getLogger("service.services_api")

PATH = "/api/v2/integration/opsgenie/services"
RESOURCE_TYPE = "opsgenie-service"
#: The attributes the relay knows; others are ignored and never stored or logged.
ATTRIBUTES = ("name", "region", "custom_url", "opsgenie_api_key")
#: What ``data`` holds in a create and in an update (Datadog's request models).
CREATE_MEMBERS = ("type", "attributes")
UPDATE_MEMBERS = ("type", "id", "attributes")
#: A name as sent, before NFC: decomposed accents take more code points than the stored
#: name, which ``normalize_name`` holds to ``MAX_NAME_LENGTH``.
MAX_RAW_NAME_LENGTH = 4 * MAX_NAME_LENGTH
STATUSES = ("200", "201", "204", "400", "403", "404", "405", "409", "413", "429", "500", "503")

Handler = Callable[[Request, "Caller"], Awaitable[Response]]


class ServiceObjects(Protocol):
    """The part of the store these routes need."""

    async def list_service_objects(self) -> list[ServiceObject]: ...
    async def get_service_object(self, id: str) -> ServiceObject | None: ...
    async def create_service_object(
        self, *, id: str, name: str, region: Region, custom_url: str | None, api_key: Secret
    ) -> ServiceObject: ...
    async def update_service_object(
        self, id: str, changes: ServiceObjectChanges
    ) -> ServiceObject | None: ...
    async def delete_service_object(self, id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as logs may show it: a role and a non-reversible key fingerprint."""

    access: Access
    fingerprint: str

    @property
    def actor(self) -> str:
        return "admin" if self.access is Access.FULL else "readonly"


class ServicesAPI:
    """The five routes. ``forget`` drops what is cached about a changed or deleted object;
    ``requests`` counts every answer; ``limiter`` defaults to ``rate_limit`` per minute;
    ``allow_private`` lets a ``custom_url`` name a private address (``destinations``)."""

    def __init__(
        self,
        *,
        objects: ServiceObjects,
        forget: Callable[[str], None],
        requests: Counter,
        keys: AdminKeys,
        max_body_bytes: int,
        rate_limit: int,
        allow_private: bool = False,
        clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._objects = objects
        self._allow_private = allow_private
        self._forget = forget
        self._requests = requests
        self._keys = keys
        self._max_body_bytes = max_body_bytes
        self._limiter = (
            limiter if limiter is not None else RateLimiter(rate_limit, RATE_PERIOD_SECONDS, clock)
        )
        count_from_zero(requests, ("services", "service"), STATUSES)

    def routes(self) -> list[Route]:
        return [
            admin_route(PATH, self.collection, route="services", requests=self._requests),
            admin_route(
                PATH + "/{integration_service_id}",
                self.item,
                route="service",
                requests=self._requests,
            ),
        ]

    async def collection(self, request: Request) -> Response:
        handlers = {"GET": self._list, "HEAD": self._list, "POST": self._create}
        return await self._serve(request, "services", handlers)

    async def item(self, request: Request) -> Response:
        handlers = {"GET": self._get, "HEAD": self._get, "PATCH": self._update}
        return await self._serve(request, "service", {**handlers, "DELETE": self._delete})

    async def _serve(
        self, request: Request, route: str, handlers: Mapping[str, Handler]
    ) -> Response:
        limited = {method: partial(self._limited, handler) for method, handler in handlers.items()}
        return await serve(request, limited, route=route, log=log)

    async def _limited(self, handler: Handler, request: Request) -> Response:
        """Rate limit, authenticate and run (``RateLimiter.spend``, ``bucket``)."""
        access = self._keys.access(request.headers)

        async def run() -> Response:
            return await handler(request, self._caller(request, access))

        return await self._limiter.spend(bucket(request.headers, access), run)

    def _caller(self, request: Request, access: Access) -> Caller:
        require_admin(access, request.method)
        app_key = request.headers["dd-application-key"]  # there: access is not NONE
        digest = hashlib.sha256(app_key.encode("utf-8", "surrogatepass")).hexdigest()
        return Caller(access, digest[:8])

    async def _list(self, request: Request, caller: Caller) -> Response:
        objects = await self._objects.list_service_objects()
        return JSONResponse({"data": [_resource(o) for o in objects]})

    async def _get(self, request: Request, caller: Caller) -> Response:
        found = await self._objects.get_service_object(_path_id(request))
        if found is None:
            raise NotFound("Not Found")
        return JSONResponse({"data": _resource(found)})

    async def _create(self, request: Request, caller: Caller) -> Response:
        attributes = _attributes(await self._body(request), members=CREATE_MEMBERS)
        changes = _changes(attributes, allow_private=self._allow_private)
        missing = [f for f in ("name", "region", "opsgenie_api_key") if f not in attributes]
        if missing:
            field = f"data.attributes.{missing[0]}"
            raise PayloadError(f"{field}: required", field=field)
        region = changes["region"]
        custom_url = changes.get("custom_url")
        _check_custom(region, custom_url)
        _check_key_kind(changes, region, custom_url)
        created = await self._objects.create_service_object(
            id=str(uuid.uuid4()),
            name=changes["name"],
            region=region,
            custom_url=custom_url,
            api_key=changes["api_key"],
        )
        self._log("service object created", created, caller)
        return JSONResponse({"data": _resource(created)}, status_code=201)

    async def _update(self, request: Request, caller: Caller) -> Response:
        service_id = _path_id(request)
        if await self._objects.get_service_object(service_id) is None:
            raise NotFound("Not Found")  # whatever the body: nothing there to update
        document = await self._body(request)
        attributes = _attributes(document, members=UPDATE_MEMBERS)
        data = document["data"]
        if "id" not in data:
            raise PayloadError("data.id: required", field="data.id")
        if not isinstance(data["id"], str) or _canonical_uuid(data["id"]) != service_id:
            raise PayloadError("data.id: must equal the id in the path", field="data.id")
        changes = _changes(attributes, allow_private=self._allow_private)
        if "region" in changes:
            _check_custom(changes["region"], changes.get("custom_url", ""))
            if changes["region"] != "custom" and "custom_url" not in changes:
                # custom_url means something only for custom. Terraform omits it when unset
                # and copies back what we answer: a URL kept here would never converge.
                changes["custom_url"] = None
        if "api_key" in changes:
            await self._check_key_kind(service_id, changes)
        updated = await self._objects.update_service_object(service_id, changes)
        if updated is None:
            raise NotFound("Not Found")
        self._forget(service_id)  # a new key or region may mean a new account
        changed = sorted(name for name in attributes if name in ATTRIBUTES)
        self._log("service object updated", updated, caller, changed=changed)
        return JSONResponse({"data": _resource(updated)})

    async def _delete(self, request: Request, caller: Caller) -> Response:
        service_id = _path_id(request)
        if not await self._objects.delete_service_object(service_id):
            raise NotFound("Not Found")
        self._forget(service_id)
        log.info(
            "service object deleted",
            extra={"service_id": service_id, "actor": caller.actor, "key": caller.fingerprint},
        )
        return Response(status_code=204)

    async def _check_key_kind(self, service_id: str, changes: ServiceObjectChanges) -> None:
        """A new key must suit the destination it will go to: the one PATCHed, or else the
        stored one (a key alone is sent where the object already points)."""
        if "region" in changes and "custom_url" in changes:
            region, custom_url = changes["region"], changes["custom_url"]
        else:
            current = await self._objects.get_service_object(service_id)
            if current is None:
                raise NotFound("Not Found")
            region = changes.get("region", current.region)
            custom_url = changes.get("custom_url", current.custom_url)
        _check_key_kind(changes, region, custom_url)

    async def _body(self, request: Request) -> dict[str, Any]:
        return await read_json_object(request, self._max_body_bytes)

    def _log(self, message: str, obj: ServiceObject, caller: Caller, **extra: Any) -> None:
        # Never the Opsgenie key: only what identifies the object and who changed it.
        log.info(
            message,
            extra={
                "service_id": obj.id,
                "service_name": obj.name,
                "region": obj.region,
                "actor": caller.actor,
                "key": caller.fingerprint,
                **extra,
            },
        )


def _resource(obj: ServiceObject) -> dict[str, Any]:
    return {
        "type": RESOURCE_TYPE,
        "id": obj.id,
        "attributes": {"name": obj.name, "region": obj.region, "custom_url": obj.custom_url},
    }


def _canonical_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _path_id(request: Request) -> str:
    """A path id that is not a UUID names nothing: 404, as for an unknown one."""
    canonical = _canonical_uuid(request.path_params["integration_service_id"])
    if canonical is None:
        raise NotFound("Not Found")
    return canonical


def _attributes(document: dict[str, Any], *, members: tuple[str, ...]) -> dict[str, Any]:
    """``data.attributes`` of a body that holds ``data`` alone, and in it only ``members``:
    a member the relay would ignore is more likely a client's mistake than an extension
    (``/openapi.json`` says ``additionalProperties: false``). Attributes are another
    matter: ``_changes`` ignores the unknown ones."""
    if "data" not in document:
        raise PayloadError("data: required", field="data")
    if len(document) > 1:
        raise PayloadError("body: only data is allowed at the top level", field="body")
    data = document["data"]
    if not isinstance(data, dict):
        raise PayloadError("data: must be an object", field="data")
    if any(member not in members for member in data):
        allowed = ", ".join(members)
        raise PayloadError(f"data: only {allowed} are allowed", field="data")
    if "type" not in data:
        raise PayloadError("data.type: required", field="data.type")
    if data["type"] != RESOURCE_TYPE:
        raise PayloadError(f'data.type: must be "{RESOURCE_TYPE}"', field="data.type")
    if "attributes" not in data:
        raise PayloadError("data.attributes: required", field="data.attributes")
    attributes = data["attributes"]
    if not isinstance(attributes, dict):
        raise PayloadError("data.attributes: must be an object", field="data.attributes")
    return attributes


def _changes(attributes: dict[str, Any], *, allow_private: bool) -> ServiceObjectChanges:
    """The known attributes, checked; unknown ones are ignored (clients send extras).

    A name is stored in NFC and a key without surrounding spaces; a URL as given, once
    ``parse_custom_url`` accepts it (clients compare what comes back with what they sent).
    """
    changes: ServiceObjectChanges = {}
    if "name" in attributes:
        changes["name"] = normalize_name(_text(attributes["name"], "name", MAX_RAW_NAME_LENGTH))
    if "region" in attributes:
        region = attributes["region"]
        if region not in REGIONS:
            field = "data.attributes.region"
            raise PayloadError(f"{field}: must be one of us, eu, custom", field=field)
        changes["region"] = cast(Region, region)
    if "custom_url" in attributes:
        url = attributes["custom_url"]
        changes["custom_url"] = (
            None
            if url is None
            else parse_custom_url(_text(url, "custom_url"), allow_private=allow_private)
        )
    if "opsgenie_api_key" in attributes:
        key = _text(attributes["opsgenie_api_key"], "opsgenie_api_key")
        changes["api_key"] = parse_api_key(key)
    return changes


def _text(value: Any, name: str, max_length: int | None = None) -> str:
    """``value`` if it is a string (and not past ``max_length``); its content is the
    parser's to judge."""
    field = f"data.attributes.{name}"
    if not isinstance(value, str):
        raise PayloadError(f"{field}: must be a string", field=field)
    if max_length is not None and len(value) > max_length:
        raise PayloadError(f"{field}: longer than {max_length} characters", field=field)
    return value


def _check_custom(region: Region, custom_url: str | None) -> None:
    """``custom`` means the API base is ``custom_url``, so one without the other is useless.

    On PATCH the stored ``custom_url`` may still satisfy it; the store checks the merged
    record, so only an explicit ``null`` alongside ``region: custom`` is refused here.
    """
    if region == "custom" and custom_url is None:
        field = "data.attributes.custom_url"
        raise PayloadError(f"{field}: required when region is custom", field=field)


def _check_key_kind(changes: ServiceObjectChanges, region: str, custom_url: str | None) -> None:
    """A JSM site (``account_keys.jsm_site``) reads alerts with ``<email>:<API token>``, so a
    key without that shape is refused now rather than failing at every use; for any other
    destination the key is a GenieKey, as before."""
    if "api_key" in changes:
        changes["api_key"] = parse_api_key(
            str(changes["api_key"]), kind=key_kind(region, custom_url)
        )
