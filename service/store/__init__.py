"""What the relay keeps, as records and the interfaces the service reaches them through.

The interfaces are cut by who uses them. ``Outbox`` is the event log and delivery queue
(the webhook edge, the delivery worker, the retention pruner and the operators'
deliveries API; intake alone needs just ``Intake``); ``ServiceObjects`` are the Opsgenie
accounts the admin API manages. ``Store`` is both, with the lifecycle, as one backend
object provides them: ``service.store.sqlite`` today, a sibling package (``postgres``)
later, without the callers changing. ``Reconcilable`` is apart from ``Store``: a backend
that offers it gets the automatic reconcile (``service.reconcile``), one that does not yet
still runs everything else. Records are plain frozen values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from starlette.datastructures import Secret

from service.crypto import SealedKey
from service.opsgenie import Action
from service.translate import AlertState


class Status(StrEnum):
    """Where a reference stands with DX."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    FILTERED = "filtered"


class Outcome(StrEnum):
    """What ``accept`` did with an event."""

    ACCEPTED = "accepted"  # stored; its alert is due for folding and delivery
    DUPLICATE = "duplicate"  # the same event was stored before; nothing written


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A webhook event about to be stored."""

    reference_id: str
    alert_id: str
    action: str
    service_id: str | None
    dedup_key: str
    raw: str
    received_at: float

    @classmethod
    def fetched(
        cls,
        alert: dict[str, Any],
        *,
        reference_id: str,
        alert_id: str,
        service_id: str | None,
        received_at: float,
    ) -> Incoming:
        """An alert as Opsgenie's Alert API returned it, as a ``Fetched`` event.

        Written canonically (sorted keys, no spaces) and keyed by that text's hash, so the
        same answer read twice, by enrichment or by a backfill, is stored once.
        """
        raw = json.dumps(alert, sort_keys=True, separators=(",", ":"))
        return cls(
            reference_id=reference_id,
            alert_id=alert_id,
            action=Action.FETCHED.value,
            service_id=service_id,
            dedup_key=hashlib.sha256(raw.encode()).hexdigest(),
            raw=raw,
            received_at=received_at,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """A reference whose latest state DX does not hold yet."""

    reference_id: str
    service_id: str | None
    state: AlertState
    version: int
    attempts: int
    ever_delivered: bool
    pending_since: float | None
    #: The body DX last acknowledged for this reference; equal bodies need no request.
    delivered_request: dict[str, Any] | None = None
    #: The claim's fencing token, where several processes claim (PostgreSQL): a result is
    #: recorded only while it is still the reference's claim. 0 with one process (SQLite).
    claim: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try to make DX hold a version, as the operator sees it."""

    at: float
    version: int
    outcome: str
    http_status: int | None
    error_code: str | None
    detail: str | None
    duration_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A reference's delivery record for operators."""

    reference_id: str
    alert_id: str
    service_id: str | None
    status: Status
    version: int
    delivered_version: int
    attempts: int
    next_attempt_at: float | None
    last_error_code: str | None
    last_error: str | None
    last_request: dict[str, Any] | None
    last_response: str | None
    updated_at: float
    #: Folded from every stored event; None only if none of them could be read.
    state: AlertState | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    #: Unique in the store, growing with arrival: what pages and single reads name.
    id: int
    received_at: float
    action: str
    raw: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    pending: int
    failed: int
    oldest_pending_since: float | None


Region = Literal["us", "eu", "custom"]
REGIONS: tuple[Region, ...] = ("us", "eu", "custom")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceObject:
    """One Opsgenie account the relay works with (Datadog's "service object").

    The Opsgenie key stays sealed as stored until a request to Opsgenie reads ``api_key``,
    so the admin API and webhook routing work even when ``RELAY_SECRET_KEY`` no longer
    opens it. The database only ever holds it encrypted.
    """

    id: str
    name: str
    region: Region
    custom_url: str | None
    sealed_key: SealedKey | None
    created_at: float
    updated_at: float

    @property
    def api_key(self) -> Secret | None:
        """The decrypted key, wrapped in ``Secret`` so it never shows in a repr, a log line
        or a traceback; ``SecretKeyError`` when ``RELAY_SECRET_KEY`` did not seal it."""
        return None if self.sealed_key is None else self.sealed_key.open()


class ServiceObjectChanges(TypedDict, total=False):
    """A partial update: only the keys present change (``custom_url=None`` clears it)."""

    name: str
    region: Region
    custom_url: str | None
    api_key: Secret


class Intake(Protocol):
    """Storing one event: the part of the outbox a writer of events needs."""

    async def accept(self, incoming: Incoming) -> Outcome:
        """Store the event, its alert due from then on; durable on return.

        The event is appended and nothing else: its alert's row and state are the worker's
        side's to make (folding is commutative, so the order events commit in does not
        matter there), and every read of alerts sees the event in them.
        """
        ...


class Outbox(Intake, Protocol):
    """The event log and the delivery queue folded from it: what intake, the delivery
    worker, the retention pruner and the operators' deliveries API share."""

    async def ping(self) -> None:
        """Returns once the backend takes writes; ``StoreUnavailable`` otherwise."""
        ...

    async def due(self, *, now: float, limit: int, exclude: Sequence[str]) -> list[Pending]:
        """Claim references due for delivery, their states folded up to the newest event."""
        ...

    async def next_due_at(self) -> float | None: ...

    async def record_delivered(
        self, pending: Pending, *, request: dict[str, Any], response: str, attempt: Attempt
    ) -> None: ...

    async def record_retry(
        self,
        pending: Pending,
        *,
        request: dict[str, Any] | None,
        response: str | None = None,
        next_attempt_at: float,
        attempt: Attempt,
    ) -> None:
        """Schedule another try.

        ``request`` is None when no DX request was made: the last request and answer shown
        stay as they were. Otherwise ``response`` is DX's answer to it, None when none came
        (a timeout, the network), so an operator never sees an older answer beside it.
        """
        ...

    async def record_failed(
        self, pending: Pending, *, request: dict[str, Any], response: str | None, attempt: Attempt
    ) -> None:
        """DX rejected ``request``; ``response`` is its answer as it came, which names what
        it refused, while ``attempt.detail`` keeps our summary."""
        ...

    async def record_filtered(self, pending: Pending) -> None: ...

    async def retry(self, reference_id: str, *, now: float) -> bool: ...
    async def retry_all_failed(self, *, now: float) -> int: ...
    async def stats(self) -> OutboxStats: ...
    async def get(self, reference_id: str) -> Delivery | None: ...
    async def deliveries(
        self, *, status: Status | None, limit: int, after: str | None
    ) -> list[Delivery]: ...
    async def attempts(self, reference_id: str, *, limit: int) -> list[Attempt]: ...
    async def events(
        self, alert_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        """The latest ``limit`` events of the alert (older than event ``before``), oldest
        first."""
        ...

    async def event(self, alert_id: str, event_id: int) -> StoredEvent | None: ...
    async def prune_events(self, *, before: float, limit: int) -> int:
        """Delete up to ``limit`` events received before ``before``, each folded into its
        alert's state first; returns how many went (fewer than ``limit``: none are left)."""
        ...


class ServiceObjects(Protocol):
    """Opsgenie accounts for the Datadog-compatible admin API; keys encrypted at rest."""

    async def create_service_object(
        self, *, id: str, name: str, region: Region, custom_url: str | None, api_key: Secret
    ) -> ServiceObject:
        """Raises ``Conflict`` when the name (by ``names.name_key``) or id is taken."""
        ...

    async def list_service_objects(self) -> list[ServiceObject]: ...
    async def get_service_object(self, id: str) -> ServiceObject | None: ...
    async def find_service_object(self, id_or_name: str) -> ServiceObject | None:
        """By UUID id, else by name (``names.name_key``: case and Unicode forms alike)."""
        ...

    async def update_service_object(
        self, id: str, changes: ServiceObjectChanges
    ) -> ServiceObject | None:
        """``None`` when ``id`` is unknown; ``Conflict`` on a taken name; ``PayloadError``
        when the stored key would go to a new destination without being sent again
        (``destinations.destination_after``, checked in the write's transaction)."""
        ...

    async def delete_service_object(self, id: str) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenReference:
    """An alert the relay holds as open, with when a reconcile last asked Opsgenie about it."""

    reference_id: str
    alert_id: str
    state: AlertState
    #: ``None`` until a reconcile first reads it back.
    checked_at: float | None


@runtime_checkable
class Reconcilable(Protocol):
    """Which open alerts a reconcile should read back first, and remembering that it did.

    An alert is open while its folded state has no close and no delete; whatever the
    reconcile learns arrives through ``accept`` like any fetched alert, so these two
    methods only steer which alerts it spends its requests on.
    """

    async def open_references(self, service_id: str, *, limit: int) -> list[OpenReference]:
        """Up to ``limit`` of the service object's open alerts, never-checked ones first,
        then the longest unchecked."""
        ...

    async def mark_checked(self, reference_ids: Sequence[str], *, at: float) -> None:
        """Record that these references were read back from Opsgenie at ``at``."""
        ...


@runtime_checkable
class SharedClaims(Protocol):
    """What a store several replicas claim from (PostgreSQL) adds for the worker.

    A claim is a lease of ``lease_seconds`` on the database's clock; the worker renews the
    leases of its deliveries in flight (``renew`` returns the references no longer held:
    another replica has them), and sleeps in ``wait_for_work``, which any replica's
    stored work cuts short.
    """

    @property
    def lease_seconds(self) -> float: ...
    async def renew(self, claims: Sequence[Pending]) -> list[str]: ...
    async def wait_for_work(self, seconds: float) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedPause:
    """The pause every replica sees: ``seconds_left`` (0: none in force), why (``code``,
    ``message``, as the refusing answer gave them), and how many in a row."""

    seconds_left: float
    code: str | None
    message: str | None
    in_a_row: int


class DXBoard(Protocol):
    """DX's pace, 429 hold and pause, kept where every replica reads them (the database's
    clock, not each pod's); see ``service.dx_gate``."""

    async def take(self, rate: float, burst: float) -> float:
        """Take a request's token: 0 when taken, else seconds to wait before asking again."""
        ...

    async def hold(self, seconds: float) -> None:
        """No replica takes a token for ``seconds`` from now (a 429's Retry-After)."""
        ...

    async def pause(self, code: str, message: str, length: Callable[[int], float]) -> float:
        """Pause every replica for ``length(pauses before in a row)`` seconds, unless a
        pause for the same reason is already in force; returns the seconds it lasts."""
        ...

    async def resume(self) -> None: ...
    async def paused(self) -> SharedPause: ...
    def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed()`` when any replica begins or ends a pause (or when that news
        may have been missed)."""
        ...


class Store(Outbox, ServiceObjects, Protocol):
    """Everything one backend object provides, opened once by the app and closed last."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
