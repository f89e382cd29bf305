"""``opsgenie-dx-relay serve`` with no way out: ``python -m tests.fakes.offline_relay``.

The same settings (``RELAY_*``), logging and uvicorn server as ``cli.serve``, but every
request that carries a stored Opsgenie key is refused before a name is looked up. A
fuzzer creates service objects pointing at regions and hosts of its choosing, then
posts webhooks and backfills for them; none of that may reach Opsgenie or a stranger's
host from a test run. Refused egress is what an unreachable Opsgenie looks like to the
relay (enrichment waits, a backfill answers 502), which the contract already describes.
"""

from __future__ import annotations

import os

from service import logs, server
from service.app import create_app, handles
from service.errors import DestinationRefused
from service.settings import Settings


async def no_dns(host: str, port: int) -> list[str]:
    raise DestinationRefused("the fuzzing relay resolves no names", host=host)


def main() -> None:
    settings = Settings.from_environ(os.environ)
    secrets = (*settings.webhook_tokens, settings.api_key, settings.app_key)
    events = logs.configure(fmt=settings.log_format, level=settings.log_level, secrets=secrets)
    app = create_app(settings, events=events, resolver=no_dns)
    server.run(app, settings, stop_worker=handles(app).worker.stop)


if __name__ == "__main__":
    main()
