"""Settings from ``RELAY_*`` variables: defaults, every variable, one clear error per bad one."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from starlette.datastructures import Secret

from service.config_check import check_config
from service.errors import ConfigError
from service.settings import Settings, database_label, database_password, parse_duration


def test_defaults_from_an_empty_environ() -> None:
    settings = Settings.from_environ({})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.database_path == Path("relay.db")
    assert settings.dx_base_url is None
    assert settings.dx_token is None
    assert settings.webhook_tokens == ()
    assert settings.api_key is None
    assert settings.app_key is None
    assert settings.readonly_app_key is None
    assert settings.secret_key is None
    assert settings.config_path is None
    assert settings.opsgenie_web_url == "https://app.opsgenie.com"
    assert settings.log_format == "json"
    assert settings.log_level == "INFO"
    assert settings.access_log is False
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.event_retention_seconds == 7 * 86400.0
    assert settings.dx_rate_limit == 10.0
    assert settings.dx_concurrency == 4
    assert settings.dx_timeout_seconds == 10.0
    assert settings.upstream_max_bytes == 1024 * 1024
    assert settings.retry_max_backoff_seconds == 300.0
    assert settings.shutdown_deadline_seconds == 20.0
    assert settings.keep_alive_seconds == 75
    assert settings.admin_rate_limit == 60
    assert settings.delivery_enabled is False


def test_variables_without_the_prefix_are_ignored() -> None:
    assert Settings.from_environ({"PORT": "1", "DX_TOKEN": "x", "HOST": "0.0.0.0"}) == Settings()


def test_every_variable_is_parsed() -> None:
    settings = Settings.from_environ(
        {
            "RELAY_HOST": "0.0.0.0",
            "RELAY_PORT": "9090",
            "RELAY_DATABASE_URL": "sqlite:////var/lib/relay/relay.db",
            "RELAY_DX_BASE_URL": "https://acme.getdx.net/",
            "RELAY_DX_TOKEN": "dx-token",
            "RELAY_WEBHOOK_TOKENS": "old-webhook-token-1, new-webhook-token-2",
            "RELAY_API_KEY": "admin-api-key-0001",
            "RELAY_APP_KEY": "admin-app-key-0001",
            "RELAY_READONLY_APP_KEY": "readonly-app-key-0001",
            "RELAY_SECRET_KEY": "relay-secret-key-0001",
            "RELAY_CONFIG": "/etc/relay/rules.yaml",
            "RELAY_OPSGENIE_WEB_URL": "https://acme.app.opsgenie.com/",
            "RELAY_LOG_FORMAT": "text",
            "RELAY_LOG_LEVEL": "debug",
            "RELAY_ACCESS_LOG": "yes",
            "RELAY_MAX_BODY_BYTES": "2048",
            "RELAY_EVENT_RETENTION": "30d",
            "RELAY_DX_RATE_LIMIT": "2.5",
            "RELAY_DX_CONCURRENCY": "8",
            "RELAY_DX_TIMEOUT": "1500ms",
            "RELAY_UPSTREAM_MAX_BYTES": "4096",
            "RELAY_RETRY_MAX_BACKOFF": "1h",
            "RELAY_SHUTDOWN_DEADLINE": "45",
            "RELAY_KEEP_ALIVE": "90",
            "RELAY_ADMIN_RATE_LIMIT": "5",
            "RELAY_DELIVERY_LEASE": "30s",
        }
    )
    assert settings.host == "0.0.0.0"
    assert settings.port == 9090
    assert settings.database_path == Path("/var/lib/relay/relay.db")
    assert settings.dx_base_url == "https://acme.getdx.net"  # no trailing slash
    assert str(settings.dx_token) == "dx-token"
    assert [str(t) for t in settings.webhook_tokens] == [
        "old-webhook-token-1",
        "new-webhook-token-2",
    ]
    assert str(settings.api_key) == "admin-api-key-0001"
    assert str(settings.app_key) == "admin-app-key-0001"
    assert str(settings.readonly_app_key) == "readonly-app-key-0001"
    assert str(settings.secret_key) == "relay-secret-key-0001"
    assert settings.config_path == Path("/etc/relay/rules.yaml")
    assert settings.opsgenie_web_url == "https://acme.app.opsgenie.com"
    assert settings.log_format == "text"
    assert settings.log_level == "DEBUG"
    assert settings.access_log is True
    assert settings.max_body_bytes == 2048
    assert settings.event_retention_seconds == 30 * 86400.0
    assert settings.dx_rate_limit == 2.5
    assert settings.dx_concurrency == 8
    assert settings.dx_timeout_seconds == 1.5
    assert settings.upstream_max_bytes == 4096
    assert settings.retry_max_backoff_seconds == 3600.0
    assert settings.shutdown_deadline_seconds == 45.0
    assert settings.keep_alive_seconds == 90
    assert settings.admin_rate_limit == 5
    assert settings.delivery_lease_seconds == 30.0
    assert settings.delivery_enabled is True


def test_a_relative_sqlite_path() -> None:
    settings = Settings.from_environ({"RELAY_DATABASE_URL": "sqlite:///data/relay.db"})
    assert settings.database_path == Path("data/relay.db")


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({"RELAY_DX_BASE_URL": "https://acme.getdx.net"}, False),
        ({"RELAY_DX_TOKEN": "t"}, False),
        ({"RELAY_DX_BASE_URL": "http://dx.local:8000", "RELAY_DX_TOKEN": "t"}, True),
        ({"RELAY_DX_BASE_URL": "  ", "RELAY_DX_TOKEN": "  "}, False),
    ],
)
def test_delivery_needs_both_url_and_token(environ: dict[str, str], enabled: bool) -> None:
    assert Settings.from_environ(environ).delivery_enabled is enabled


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RELAY_PORT", "http"),
        ("RELAY_PORT", "80.5"),
        ("RELAY_PORT", "-1"),
        ("RELAY_PORT", "65536"),
        ("RELAY_DATABASE_URL", "postgresql://relay@db:five/relay"),
        ("RELAY_DATABASE_URL", "postgres://relay@db:99999/relay"),
        ("RELAY_DATABASE_URL", "sqlite:///"),
        ("RELAY_DATABASE_URL", "sqlite://relay.db"),
        ("RELAY_DATABASE_URL", "/var/lib/relay.db"),
        ("RELAY_DATABASE_URL", "mysql://db/relay"),
        ("RELAY_DX_BASE_URL", "acme.getdx.net"),
        ("RELAY_DX_BASE_URL", "ftp://acme.getdx.net"),
        ("RELAY_DX_BASE_URL", "https://"),
        ("RELAY_OPSGENIE_WEB_URL", "app.opsgenie.com"),
        ("RELAY_LOG_FORMAT", "yaml"),
        ("RELAY_LOG_FORMAT", "JSON "),
        ("RELAY_LOG_LEVEL", "verbose"),
        ("RELAY_ACCESS_LOG", "maybe"),
        ("RELAY_MAX_BODY_BYTES", "0"),
        ("RELAY_MAX_BODY_BYTES", "1MiB"),
        ("RELAY_UPSTREAM_MAX_BYTES", "0"),
        ("RELAY_UPSTREAM_MAX_BYTES", "-1"),
        ("RELAY_DX_RATE_LIMIT", "0"),
        ("RELAY_DX_RATE_LIMIT", "-2"),
        ("RELAY_DX_RATE_LIMIT", "nan"),
        ("RELAY_DX_RATE_LIMIT", "fast"),
        ("RELAY_DX_CONCURRENCY", "0"),
        ("RELAY_DX_CONCURRENCY", "2.5"),
        ("RELAY_EVENT_RETENTION", "forever"),
        ("RELAY_EVENT_RETENTION", "0d"),
        ("RELAY_EVENT_RETENTION", "-7d"),
        ("RELAY_EVENT_RETENTION", "1w"),
        ("RELAY_DX_TIMEOUT", "0s"),
        ("RELAY_DX_TIMEOUT", "ten"),
        ("RELAY_RETRY_MAX_BACKOFF", ""),
        ("RELAY_SHUTDOWN_DEADLINE", "soon"),
        ("RELAY_KEEP_ALIVE", "0"),
        ("RELAY_ADMIN_RATE_LIMIT", "lots"),
        ("RELAY_DELIVERY_LEASE", "1s"),
        ("RELAY_DELIVERY_LEASE", "soon"),
    ],
)
def test_an_invalid_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message  # one clear line
    assert "Traceback" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.getdx.net",
        "https://acme.getdx.net/",
        "http://127.0.0.1:18941",
        "http://127.0.0.1:18941/",
    ],
)
def test_dx_base_url_is_the_instance_root(url: str) -> None:
    settings = Settings.from_environ({"RELAY_DX_BASE_URL": url})
    assert settings.dx_base_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "wrong"),
    [
        ("http://127.0.0.1:18941/api", "the path '/api'"),
        ("https://acme.getdx.net/api/", "the path '/api/'"),
        ("https://acme.getdx.net/api/incidents.upsert", "the path '/api/incidents.upsert'"),
        ("https://acme.getdx.net//", "the path '//'"),
        ("https://acme.getdx.net/?region=eu", "a query"),
        ("https://acme.getdx.net?", "a query"),
        ("https://acme.getdx.net/#api", "a fragment"),
    ],
)
def test_dx_base_url_with_a_path_query_or_fragment_is_refused(url: str, wrong: str) -> None:
    """The relay appends /api/incidents.upsert itself: a base URL that already holds /api
    would send every request to /api/api/incidents.upsert, each failing with 404."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"RELAY_DX_BASE_URL": url})
    assert str(caught.value) == (
        "RELAY_DX_BASE_URL: expected the DX instance root, e.g. https://acme.getdx.net"
        f" (the relay adds /api/incidents.upsert), but it has {wrong}"
    )


SHORT = "fifteen-chars-x"  # one character short of the minimum
LONG = "sixteen-chars-xx"


def test_the_secret_literals_here_are_either_side_of_the_minimum() -> None:
    assert (len(SHORT), len(LONG)) == (15, 16)


@pytest.mark.parametrize(
    "variable", ["RELAY_API_KEY", "RELAY_APP_KEY", "RELAY_READONLY_APP_KEY", "RELAY_SECRET_KEY"]
)
def test_a_short_secret_is_refused_without_showing_it(variable: str) -> None:
    """Every line logged has each secret replaced: a short one garbles ordinary words (and
    so tells a reader what it is), and it is guessable."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({variable: f"  {SHORT}  "})
    message = str(caught.value)
    assert message == (
        f"{variable}: must be at least 16 characters: got 15;"
        " generate one with e.g. `openssl rand -hex 32`"
    )
    assert SHORT not in message


@pytest.mark.parametrize(
    ("variable", "attribute"),
    [
        ("RELAY_API_KEY", "api_key"),
        ("RELAY_APP_KEY", "app_key"),
        ("RELAY_READONLY_APP_KEY", "readonly_app_key"),
        ("RELAY_SECRET_KEY", "secret_key"),
    ],
)
def test_a_secret_of_the_minimum_length_is_accepted(variable: str, attribute: str) -> None:
    assert str(getattr(Settings.from_environ({variable: LONG}), attribute)) == LONG


@pytest.mark.parametrize(
    ("value", "which"),
    [
        ("opsgenie", "token 1 of 1"),
        (f"{LONG},{SHORT}", "token 2 of 2"),
        (f"{LONG}, Zq ,,{LONG}", "token 2 of 3"),
    ],
)
def test_a_short_webhook_token_is_refused_without_showing_it(value: str, which: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"RELAY_WEBHOOK_TOKENS": value})
    message = str(caught.value)
    assert message.startswith(f"RELAY_WEBHOOK_TOKENS: must be at least 16 characters: {which} has ")
    assert message.endswith("; generate one with e.g. `openssl rand -hex 32`")
    assert "\n" not in message
    for token in value.split(","):
        if token.strip() and token.strip() != LONG:
            assert token.strip() not in message


def test_check_config_lists_every_short_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """check-config sets each bad variable aside and reads the rest again: a short secret is
    one of its problems like any other, and is not printed."""
    environ = {
        "RELAY_WEBHOOK_TOKENS": f"{LONG},hook-8ch",
        "RELAY_API_KEY": "api-7ch",
        "RELAY_APP_KEY": LONG,
        "RELAY_READONLY_APP_KEY": "ro-key",
        "RELAY_SECRET_KEY": "Zq",
    }
    assert check_config(environ, sys.stdout, sys.stderr) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "RELAY_WEBHOOK_TOKENS",
        "RELAY_API_KEY",
        "RELAY_READONLY_APP_KEY",
        "RELAY_SECRET_KEY",
    ]
    assert all("must be at least 16 characters" in line for line in lines)
    for short in ("hook-8ch", "api-7ch", "ro-key", "Zq"):
        assert short not in err


def test_the_dx_token_has_no_minimum_length() -> None:
    """DX issues it, so the operator cannot choose a longer one: refusing a real token would
    only stop deliveries."""
    assert str(Settings.from_environ({"RELAY_DX_TOKEN": "dx-3333"}).dx_token) == "dx-3333"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_is_kept_secret_and_labelled_without_its_password(scheme: str) -> None:
    url = f"{scheme}://relay:pg-password-1@db.internal:6432/relay?sslmode=require"
    settings = Settings.from_environ(
        {"RELAY_DATABASE_URL": url, "RELAY_SECRET_KEY": "relay-secret-key-0001"}
    )
    assert str(settings.postgres_url) == url
    assert "pg-password-1" not in repr(settings)
    assert database_label(settings) == "PostgreSQL relay@db.internal:6432/relay"
    assert str(database_password(settings)) == "pg-password-1"
    assert database_label(Settings()) == "relay.db"
    assert database_password(Settings()) is None


def test_postgresql_without_a_secret_key_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"RELAY_DATABASE_URL": "postgresql://relay:pw@db/relay"})
    message = str(caught.value)
    assert message.startswith("RELAY_SECRET_KEY: required with PostgreSQL")
    assert "\n" not in message
    assert "pw@" not in message


def test_the_first_bad_variable_wins_and_good_ones_do_not_matter() -> None:
    with pytest.raises(ConfigError, match=r"^RELAY_PORT: "):
        Settings.from_environ({"RELAY_PORT": "x", "RELAY_DX_TOKEN": "fine"})


def test_webhook_tokens_are_secrets_that_hide_their_value() -> None:
    settings = Settings.from_environ(
        {
            "RELAY_WEBHOOK_TOKENS": "tok-alpha-11111111,tok-beta-22222222",
            "RELAY_DX_TOKEN": "dx-3333",
        }
    )
    assert all(isinstance(t, Secret) for t in settings.webhook_tokens)
    assert [str(t) for t in settings.webhook_tokens] == ["tok-alpha-11111111", "tok-beta-22222222"]
    text = repr(settings) + str(settings) + repr(settings.webhook_tokens)
    for value in ("tok-alpha-11111111", "tok-beta-22222222", "dx-3333"):
        assert value not in text


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("", []),
        ("   ", []),
        (",,", []),
        ("token-number-one", ["token-number-one"]),
        (
            " token-number-one , token-number-two ,, token-number-three ",
            ["token-number-one", "token-number-two", "token-number-three"],
        ),
        # Secrets are opaque: no comment, quote or escape processing.
        ("token-abc#def-0123", ["token-abc#def-0123"]),
        ("token-ab#cd-01234,token-ef-0123456", ["token-ab#cd-01234", "token-ef-0123456"]),
        ('token-ab"cd-01234', ['token-ab"cd-01234']),
        ("token-it's-012345", ["token-it's-012345"]),
        ("token-back\\slash-0", ["token-back\\slash-0"]),
        ("token with space inside", ["token with space inside"]),
    ],
)
def test_comma_separated_webhook_tokens(value: str, tokens: list[str]) -> None:
    settings = Settings.from_environ({"RELAY_WEBHOOK_TOKENS": value})
    assert [str(t) for t in settings.webhook_tokens] == tokens


@pytest.mark.parametrize(
    "name", ["DX_TOKEN", "API_KEY", "APP_KEY", "READONLY_APP_KEY", "SECRET_KEY"]
)
def test_an_empty_secret_is_unset(name: str) -> None:
    settings = Settings.from_environ({f"RELAY_{name}": "  "})
    assert getattr(settings, name.lower()) is None


@pytest.mark.parametrize(
    ("isatty", "environ", "expected"),
    [
        (True, {}, "text"),
        (False, {}, "json"),
        (True, {"RELAY_LOG_FORMAT": "json"}, "json"),
        (False, {"RELAY_LOG_FORMAT": "text"}, "text"),
    ],
)
def test_log_format_default_depends_on_the_terminal(
    isatty: bool, environ: dict[str, str], expected: str
) -> None:
    assert Settings.from_environ(environ, isatty=isatty).log_format == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("ON", True), ("0", False), ("off", False), ("No", False)],
)
def test_access_log_booleans(value: str, expected: bool) -> None:
    assert Settings.from_environ({"RELAY_ACCESS_LOG": value}).access_log is expected


def test_settings_are_frozen() -> None:
    settings = Settings.from_environ({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * 86400.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("30", 30.0),
        ("0", 0.0),
        (" 2 m ", 120.0),
        ("0.5d", 43200.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", " ", "d", "7 days", "1w", "-5s", "1e3s", "5M", "1h30m", ".5s"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


class _Recording(dict[str, str]):
    """An environ that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def test_the_readme_table_names_every_variable_settings_reads() -> None:
    environ = _Recording()
    Settings.from_environ(environ)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n#", 1)[0]
    documented = set(
        re.findall(
            r"`(RELAY_[A-Z_]+)`",
            "\n".join(
                line.split("|")[1] for line in table.splitlines() if line.startswith("| `RELAY_")
            ),
        )
    )
    assert environ.asked == documented


def test_private_upstreams_are_refused_unless_the_operator_allows_them() -> None:
    assert Settings.from_environ({}).allow_private_upstreams is False
    allowed = Settings.from_environ({"RELAY_ALLOW_PRIVATE_UPSTREAMS": "true"})
    assert allowed.allow_private_upstreams is True
    with pytest.raises(ConfigError, match=r"^RELAY_ALLOW_PRIVATE_UPSTREAMS: "):
        Settings.from_environ({"RELAY_ALLOW_PRIVATE_UPSTREAMS": "sometimes"})
