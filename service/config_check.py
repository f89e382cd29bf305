"""``check-config``, and the database check ``serve`` makes before it starts: every bad
variable in one pass, each on one line naming it, and nothing created or changed.

Kept apart from ``admin_client`` (which talks to a running relay over HTTP): these read only
the environment and the filesystem, so they work before any relay runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from service.errors import ConfigError
from service.mapping import Rules
from service.rules_file import load_rules
from service.settings import Settings, database_label

#: More than this many bad variables is a broken deployment; stop listing.
MAX_PROBLEMS = 20


def _settings_problems(environ: Mapping[str, str]) -> tuple[Settings | None, list[str]]:
    """Every bad ``RELAY_*`` variable, not just the first: each found one is set aside
    and the rest read again, so a broken deployment is fixed in one pass."""
    env = dict(environ)
    problems: list[str] = []
    while len(problems) < MAX_PROBLEMS:
        try:
            settings = Settings.from_environ(env)
        except ConfigError as error:
            problems.append(error.message)
            name = error.message.partition(":")[0]
            if name not in env:
                return None, problems
            del env[name]
        else:
            unchanged = env.get("RELAY_DATABASE_URL") == environ.get("RELAY_DATABASE_URL")
            if unchanged and settings.postgres_url is None:  # a file that must open
                try:
                    check_database(settings.database_path)
                except ConfigError as error:
                    problems.append(error.message)
            return (settings if not problems else None), problems
    return None, problems


def check_database(path: Path) -> None:
    """``ConfigError`` when the relay could not open its SQLite file at ``path``.

    Found before anything is created (``serve`` runs it before uvicorn; ``check-config``
    must change nothing): the relay creates missing directories, the file, its ``-wal``
    and ``-shm`` beside it and maybe the key file, so the nearest existing directory must
    take new files, and the path must not be a directory.
    """
    try:
        reason = _database_problem(path)
    except OSError as exc:  # stat refused on the way (EACCES on a parent)
        reason = exc.strerror or str(exc)
    if reason is not None:
        raise ConfigError(f"RELAY_DATABASE_URL: cannot open {path}: {reason}")


def _database_problem(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory"
    directory = path.absolute().parent
    while not directory.exists():
        directory = directory.parent
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot create files in {directory}: permission denied"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "permission denied"
    return None


def check_config(environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Print what the relay would do with this environment; 2 when something is wrong."""
    settings, problems = _settings_problems(environ)
    rules: Rules | None = None
    # The rules file is checked even when other variables are wrong.
    named = environ.get("RELAY_CONFIG", "").strip()
    try:
        rules = load_rules(settings.config_path if settings else Path(named) if named else None)
    except ConfigError as error:
        problems.append(error.message)
    if problems or settings is None or rules is None:
        for problem in problems:
            err.write(f"opsgenie-dx-relay: configuration error: {problem}\n")
        return 2
    out.write(describe(settings, rules) + "\n")
    return 0


def describe(settings: Settings, rules: Rules) -> str:
    dx = (
        f"{settings.dx_base_url}/api/incidents.upsert"
        if settings.delivery_enabled
        else "deliveries paused (RELAY_DX_BASE_URL and RELAY_DX_TOKEN are needed)"
    )
    admin = "enabled" if settings.api_key and settings.app_key else "disabled (no keys)"
    if settings.api_key and settings.readonly_app_key:
        admin += ", read-only key set"
    criteria = rules.filter
    lines = [
        f"listen:          http://{settings.host}:{settings.port}",
        f"database:        {database_label(settings)}"
        + ("" if settings.postgres_url is None else " (shared by every replica)"),
        f"DX:              {dx}",
        f"webhook tokens:  {len(settings.webhook_tokens)}"
        + ("" if settings.webhook_tokens else " (every webhook is refused with 401)"),
        f"admin API:       {admin}",
        f"event retention: {settings.event_retention_seconds:g}s",
        f"rules:           {settings.config_path or 'built-in defaults'}",
        f"  reference ids: {rules.reference_prefix}<alertId>",
        f"  filter:        priorities={sorted(criteria.priorities) or 'any'}"
        f" tags={sorted(criteria.tags) or 'any'} teams={sorted(criteria.teams) or 'any'}",
        f"  services from: tag prefix {rules.tag_prefix!r}, details {list(rules.detail_keys)},"
        f" {len(rules.team_services)} team maps, {len(rules.service_map)} explicit maps,"
        f" {len(rules.fallback)} fallbacks",
        f"  priority map:  {dict(rules.priority_map) or 'none'}",
        f"  Delete:        {'deletes the incident' if rules.delete_incidents else 'ignored'}",
    ]
    return "\n".join(lines)
