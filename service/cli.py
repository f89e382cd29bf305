"""``opsgenie-dx-relay``: run the service, or look at what it would do."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from service import __version__, admin_client, config_check
from service.errors import ConfigError, PayloadError
from service.opsgenie import Action, parse_event
from service.rules_file import load_rules
from service.settings import Settings, database_password
from service.translate import Account, AlertState, fold, render


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="opsgenie-dx-relay", description="Relay Opsgenie alert webhooks to DX incidents."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the service (uvicorn, one process)")
    translate = commands.add_parser(
        "translate", help="print the DX request payloads would produce (dry run, no I/O)"
    )
    translate.add_argument("payloads", nargs="+", type=Path, help="Opsgenie webhook JSON files")
    admin_client.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in admin_client.COMMANDS:
        raise SystemExit(admin_client.run(args, os.environ, sys.stdout, sys.stderr))
    try:
        settings = Settings.from_environ(os.environ, isatty=sys.stderr.isatty())
        if args.command == "serve":
            serve(settings)
        elif args.command == "translate":
            sys.stdout.write(translate_files(settings, args.payloads) + "\n")
    except ConfigError as error:
        sys.stderr.write(f"opsgenie-dx-relay: configuration error: {error.message}\n")
        raise SystemExit(2) from None


def serve(settings: Settings) -> None:
    from service import logs, server
    from service.app import create_app, handles

    # Before anything creates a file: an unusable path is one line naming the variable,
    # not a traceback from the app's startup.
    if settings.postgres_url is None:
        config_check.check_database(settings.database_path)
    events = logs.configure(
        fmt=settings.log_format,
        level=settings.log_level,
        secrets=(
            settings.dx_token,
            *settings.webhook_tokens,
            settings.api_key,
            settings.app_key,
            settings.readonly_app_key,
            settings.secret_key,
            database_password(settings),
        ),
    )
    app = create_app(settings, events=events)
    server.run(app, settings, stop_worker=handles(app).worker.stop)


def translate_files(settings: Settings, paths: Sequence[Path]) -> str:
    """Fold the payloads in order and render what DX would receive."""
    rules = load_rules(settings.config_path)
    state: AlertState | None = None
    ignored: list[str] = []
    for path in paths:
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        try:
            event = parse_event(body, received_ns=time.time_ns())
        except PayloadError as error:
            raise ConfigError(f"{path}: {error.message}") from None
        kind = event.known_action
        if kind is None or (kind is Action.DELETE and not rules.delete_incidents):
            ignored.append(f"{path}: action {event.action!r} is ignored")
            continue
        if state is not None and state.alert_id != event.alert_id:
            raise ConfigError(f"{path}: a different alert ({event.alert_id}) than the files before")
        state = fold(state, event)
    result: dict[str, object] = {"ignored": ignored}
    if state is not None:
        method = "incidents.delete" if state.deleted else "incidents.upsert"
        result["method"] = method
        result["body"] = render(state, rules, Account(web_url=settings.opsgenie_web_url))
    return json.dumps(result, indent=2)
