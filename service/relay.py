"""The collaborators one running relay shares between its routes and its worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from service.accounts import Accounts
from service.delivery import Worker
from service.mapping import Rules
from service.metrics import Metrics
from service.settings import Settings
from service.store import Store


@dataclass(slots=True, kw_only=True)
class Relay:
    settings: Settings
    rules: Rules
    store: Store
    metrics: Metrics
    worker: Worker
    accounts: Accounts
    http: httpx.AsyncClient
    clock: Callable[[], float] = field(default=time.time)
