"""Which Opsgenie account an alert belongs to, and so where its web pages live."""

from __future__ import annotations

from service.settings import Settings
from service.translate import Account


class Accounts:
    """Resolves a service object id to its account; ``None`` is the default account."""

    def __init__(self, settings: Settings) -> None:
        self._default = Account(web_url=settings.opsgenie_web_url)

    async def account(self, service_id: str | None) -> Account:
        return self._default
