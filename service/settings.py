"""Process configuration: read once from ``RELAY_*`` variables, then passed around frozen.

Nothing reads the environment after start-up, so tests build as many differently
configured apps as they like, and a typo fails at start with one line naming the variable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from starlette.config import Config
from starlette.datastructures import Secret

from service.errors import ConfigError

LogFormat = Literal["json", "text"]
T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
#: Shortest secret an operator chooses. The log redactor replaces every occurrence of each
#: secret in every line, so a short one garbles ordinary words (a webhook token "opsgenie"
#: turns each reference_id into "[redacted]-...") and so tells any reader what it is; a
#: short secret is also guessable.
MIN_SECRET_LENGTH = 16
_MAKE_ONE = "generate one with e.g. `openssl rand -hex 32`"
#: The shortest ``RELAY_DELIVERY_LEASE``.
MIN_LEASE_SECONDS = 3.0


def parse_duration(text: str) -> float:
    """``"7d"``, ``"90s"``, ``"1.5h"`` or bare seconds, to seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration (e.g. 30s, 15m, 7d): {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


#: The SQLite file when ``RELAY_DATABASE_URL`` names none.
DEFAULT_DATABASE = Path("relay.db")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_path: Path = DEFAULT_DATABASE
    #: ``RELAY_DATABASE_URL`` when it names PostgreSQL (several replicas share it); then
    #: ``database_path`` is unused. A Secret: the URL may carry a password.
    postgres_url: Secret | None = None
    dx_base_url: str | None = None
    dx_token: Secret | None = None
    webhook_tokens: tuple[Secret, ...] = ()
    api_key: Secret | None = None
    app_key: Secret | None = None
    readonly_app_key: Secret | None = None
    secret_key: Secret | None = None
    config_path: Path | None = None
    opsgenie_web_url: str = "https://app.opsgenie.com"
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    access_log: bool = False
    max_body_bytes: int = 1024 * 1024
    event_retention_seconds: float = 7 * 86400.0
    dx_rate_limit: float = 10.0
    dx_concurrency: int = 4
    dx_timeout_seconds: float = 10.0
    #: Largest upstream (DX, Opsgenie) answer read, once decompressed; past it, a bad answer.
    upstream_max_bytes: int = 1024 * 1024
    retry_max_backoff_seconds: float = 300.0
    shutdown_deadline_seconds: float = 20.0
    keep_alive_seconds: int = 75
    #: A request's line and headers, in bytes (431 past it; before any credential is read).
    max_header_bytes: int = 32 * 1024
    #: Seconds for a request's line and headers to arrive, from its first byte or from the
    #: connection's opening (408 and closed past it: slow and idle clients).
    header_timeout_seconds: float = 10.0
    #: Open client connections; one more is closed at once.
    max_connections: int = 1000
    #: Seconds for a request's body to arrive once its headers have (408 and closed past it).
    body_timeout_seconds: float = 30.0
    #: Admin API requests allowed per API key per 60-second window (then 429).
    admin_rate_limit: int = 60
    #: Whether a service object's ``custom_url`` may reach loopback or private addresses
    #: (an Opsgenie proxy inside the network); link-local and metadata never may.
    allow_private_upstreams: bool = False
    #: Seconds between automatic reconciles of every service object with a key; 0: off.
    reconcile_interval_seconds: float = 300.0
    #: Opsgenie requests one reconcile may make per service object (list pages and reads).
    reconcile_budget: int = 100
    #: How far back the first reconcile after start-up looks for alerts never seen.
    reconcile_lookback_seconds: float = 3600.0
    #: PostgreSQL: how long a replica's claim on a reference holds without renewal, so how
    #: soon a dead replica's deliveries pass to the others (renewed every third of it).
    delivery_lease_seconds: float = 120.0

    @property
    def delivery_enabled(self) -> bool:
        """Without a DX URL and token the relay still accepts and stores; it just waits."""
        return self.dx_base_url is not None and self.dx_token is not None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, isatty: bool = False) -> Settings:
        """Build settings from ``environ``; raise ``ConfigError`` naming the first bad variable."""
        config = Config(environ=environ, env_prefix="RELAY_")

        def get(name: str, cast: Callable[[str], T], default: str) -> T:
            raw = config(name, default=default)
            try:
                return cast(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"RELAY_{name}: {exc}") from None

        database = get("DATABASE_URL", _database, "sqlite:///relay.db")
        dx_base_url = get("DX_BASE_URL", _dx_base_url, "")
        web_url = get("OPSGENIE_WEB_URL", _http_url, "https://app.opsgenie.com")
        webhook_tokens = get("WEBHOOK_TOKENS", _webhook_tokens, "")
        config_path = config("CONFIG", default="").strip()
        default_format = "text" if isatty else "json"
        settings = cls(
            host=config("HOST", default="127.0.0.1"),
            port=get("PORT", _port, "8080"),
            database_path=database if isinstance(database, Path) else DEFAULT_DATABASE,
            postgres_url=database if isinstance(database, Secret) else None,
            dx_base_url=dx_base_url,
            dx_token=get("DX_TOKEN", _secret, ""),
            webhook_tokens=webhook_tokens,
            api_key=get("API_KEY", _chosen_secret, ""),
            app_key=get("APP_KEY", _chosen_secret, ""),
            readonly_app_key=get("READONLY_APP_KEY", _chosen_secret, ""),
            secret_key=get("SECRET_KEY", _chosen_secret, ""),
            config_path=Path(config_path) if config_path else None,
            opsgenie_web_url=web_url,
            log_format=get("LOG_FORMAT", _log_format, default_format),
            log_level=get("LOG_LEVEL", _log_level, "INFO"),
            access_log=get("ACCESS_LOG", _boolean, "false"),
            max_body_bytes=get("MAX_BODY_BYTES", _positive_int, str(1024 * 1024)),
            event_retention_seconds=get("EVENT_RETENTION", _positive_duration, "7d"),
            dx_rate_limit=get("DX_RATE_LIMIT", _positive_float, "10"),
            dx_concurrency=get("DX_CONCURRENCY", _positive_int, "4"),
            dx_timeout_seconds=get("DX_TIMEOUT", _positive_duration, "10s"),
            upstream_max_bytes=get("UPSTREAM_MAX_BYTES", _positive_int, str(1024 * 1024)),
            retry_max_backoff_seconds=get("RETRY_MAX_BACKOFF", _positive_duration, "5m"),
            shutdown_deadline_seconds=get("SHUTDOWN_DEADLINE", _positive_duration, "20s"),
            keep_alive_seconds=get("KEEP_ALIVE", _positive_int, "75"),
            max_header_bytes=get("MAX_HEADER_BYTES", _positive_int, str(32 * 1024)),
            header_timeout_seconds=get("HEADER_TIMEOUT", _positive_duration, "10s"),
            max_connections=get("MAX_CONNECTIONS", _positive_int, "1000"),
            body_timeout_seconds=get("BODY_TIMEOUT", _positive_duration, "30s"),
            admin_rate_limit=get("ADMIN_RATE_LIMIT", _positive_int, "60"),
            allow_private_upstreams=get("ALLOW_PRIVATE_UPSTREAMS", _boolean, "false"),
            reconcile_interval_seconds=get("RECONCILE_INTERVAL", parse_duration, "5m"),
            reconcile_budget=get("RECONCILE_BUDGET", _positive_int, "100"),
            reconcile_lookback_seconds=get("RECONCILE_LOOKBACK", _positive_duration, "1h"),
            delivery_lease_seconds=get("DELIVERY_LEASE", _lease, "2m"),
        )
        if settings.postgres_url is not None and settings.secret_key is None:
            # Each pod would otherwise make a key file of its own, and a key one replica
            # sealed could not be opened by the next.
            raise ConfigError(
                "RELAY_SECRET_KEY: required with PostgreSQL (every replica must open the keys"
                f" any other one sealed); {_MAKE_ONE}"
            )
        return settings


def _database(url: str) -> Path | Secret:
    """A SQLite file's path, or a PostgreSQL URL (kept secret: it may hold a password,
    so a bad one is never echoed)."""
    url = url.strip()
    if url.startswith(("postgresql://", "postgres://")):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            raise ValueError("not a valid postgresql:// URL (its port?)") from None
        return Secret(url)
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ValueError(f"expected sqlite:///PATH or postgresql://..., got {url!r}")
    return Path(url.removeprefix("sqlite:///"))


def database_label(settings: Settings) -> str:
    """Where the data lives, for logs and ``check-config``: a PostgreSQL URL without its
    password (nor its query, which may carry one)."""
    if settings.postgres_url is None:
        return str(settings.database_path)
    parts = urlsplit(str(settings.postgres_url))
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL {user}{parts.hostname or ''}{port}{parts.path}"


def database_password(settings: Settings) -> Secret | None:
    """The PostgreSQL URL's password, which the log redactor must know."""
    if settings.postgres_url is None:
        return None
    password = urlsplit(str(settings.postgres_url)).password
    return Secret(password) if password else None


def _http_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {url!r}")
    return url.strip().rstrip("/")


def _dx_base_url(url: str) -> str | None:
    """The DX instance root only: the relay appends ``/api/incidents.upsert`` itself, so a
    base URL ending in ``/api`` sends every request to ``/api/api/...``, and each reference
    then fails with 404 one by one instead of the relay refusing to start. The URL is not
    echoed: a query may hold a credential."""
    if not url.strip():
        return None
    root = _http_url(url)
    parts = urlsplit(url.strip())
    if parts.path not in ("", "/"):
        wrong = f"the path {parts.path!r}"
    elif "?" in url:  # even an empty query: "{base}?/api/..." would not reach DX
        wrong = "a query"
    elif "#" in url:
        wrong = "a fragment"
    else:
        return root
    raise ValueError(
        "expected the DX instance root, e.g. https://acme.getdx.net"
        f" (the relay adds /api/incidents.upsert), but it has {wrong}"
    )


def _secret(text: str) -> Secret | None:
    """Any length: for the DX token, which DX issues, so the operator cannot make it longer
    (and DX does not document a minimum that refusing a short one could rely on)."""
    value = text.strip()
    return Secret(value) if value else None


def _check_length(secret: str, which: str) -> None:
    """The message gives a short secret's length, never its value."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"must be at least {MIN_SECRET_LENGTH} characters: {which} {len(secret)}; {_MAKE_ONE}"
        )


def _chosen_secret(text: str) -> Secret | None:
    """A secret the operator chooses."""
    secret = _secret(text)
    if secret is not None:
        _check_length(str(secret), "got")
    return secret


def _webhook_tokens(text: str) -> tuple[Secret, ...]:
    """Comma-separated, each one a chosen secret; a short one is named by its position.

    Not CommaSeparatedStrings: it splits with shlex, which drops everything after a "#",
    eats backslashes and quotes, and raises on an unpaired quote. Secrets are opaque.
    """
    tokens = [token.strip() for token in text.split(",") if token.strip()]
    for number, token in enumerate(tokens, start=1):
        _check_length(token, f"token {number} of {len(tokens)} has")
    return tuple(Secret(token) for token in tokens)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return port


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be positive, got {text!r}")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"must be positive, got {text!r}")
    return value


def _lease(text: str) -> float:
    """Renewed every third of it, each renewal a round trip to the database: shorter than
    a few seconds would lose claims to a slow query."""
    value = parse_duration(text)
    if value < MIN_LEASE_SECONDS:
        raise ValueError(f"must be at least {MIN_LEASE_SECONDS:g}s, got {text!r}")
    return value


def _log_format(text: str) -> LogFormat:
    if text == "json":
        return "json"
    if text == "text":
        return "text"
    raise ValueError(f"expected json or text, got {text!r}")


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {text!r}")
    return level


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")
