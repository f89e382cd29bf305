"""The command line: ``translate`` (dry run) here; commands that need a running relay in e2e."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.cli import main
from service.config_check import check_database
from service.delivery_views import detail
from service.errors import ConfigError
from service.store import Delivery, Status
from tests.conftest import SAMPLES
from tests.fakes.servers import UvicornThread

NOBODY = 65534

KEYS = {"RELAY_API_KEY": "cli-api-key-0123456789", "RELAY_APP_KEY": "cli-app-key-0123456789"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    else:
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def test_translate_prints_the_dx_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "translate", str(SAMPLES / "Create.json"))
    assert code == 0
    result = json.loads(out)
    assert result["method"] == "incidents.upsert"
    body = result["body"]
    assert body["reference_id"] == "opsgenie-7ec331d7-f5f3-4f78-a49c-2ad886df69fe-1593475564295"
    assert body["priority"] == "P3"
    assert body["resolved_at"] is None
    assert body["metadata"]["teams"] == ["operations"]


def test_translate_folds_files_in_order_and_reports_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = ["Acknowledge", "CustomAction.TestAction", "Close", "Delete"]
    code, out, _ = run(capsys, "translate", *(str(SAMPLES / f"{name}.json") for name in files))
    assert code == 0
    result = json.loads(out)
    assert result["body"]["resolved_at"] == "2015-01-05T10:06:14.669Z"
    assert result["body"]["metadata"]["acknowledged"] is True
    assert len(result["ignored"]) == 2  # the custom action and Delete (not configured)


def test_translate_uses_the_rules_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("reference_prefix: og-\npriorities: {P3: SEV3}\n")
    monkeypatch.setenv("RELAY_CONFIG", str(rules))
    code, out, _ = run(capsys, "translate", str(SAMPLES / "Create.json"))
    assert code == 0
    body = json.loads(out)["body"]
    assert body["reference_id"].startswith("og-")
    assert body["priority"] == "SEV3"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"action": "Create", "alert": {}}', "alert.alertId is required"),
        (b'{"action": "Create", "alert": {"alertId": "a", "priority": true}}', "alert.priority"),
    ],
)
def test_translate_names_the_problem_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, out, err = run(capsys, "translate", str(path))
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_translate_refuses_files_about_different_alerts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(
        capsys, "translate", str(SAMPLES / "Create.json"), str(SAMPLES / "Close.json")
    )
    assert code == 2
    assert "different alert" in err


def test_invalid_environment_stops_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_PORT", "eighty")
    code, _, err = run(capsys, "translate", str(SAMPLES / "Create.json"))
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("opsgenie-dx-relay: configuration error: RELAY_PORT")


def test_check_config_describes_a_good_setup(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("reference_prefix: og-\n")
    for name, value in {
        "RELAY_CONFIG": str(rules),
        "RELAY_DX_BASE_URL": "https://acme.getdx.net",
        "RELAY_DX_TOKEN": "dx-secret-token",
        "RELAY_WEBHOOK_TOKENS": "hook-token-one-0123,hook-token-two-0123",
        "RELAY_API_KEY": "cli-api-key-0123456789",
        "RELAY_APP_KEY": "cli-app-key-0123456789",
        "RELAY_PORT": "9000",
    }.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "check-config")
    assert code == 0, err
    assert "http://127.0.0.1:9000" in out
    assert "https://acme.getdx.net/api/incidents.upsert" in out
    assert "webhook tokens:  2" in out
    assert "admin API:       enabled" in out
    assert "og-<alertId>" in out
    assert "dx-secret-token" not in out


def test_check_config_says_when_deliveries_are_paused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check-config")
    assert code == 0
    assert "deliveries paused" in out
    assert "webhook tokens:  0 (every webhook is refused with 401)" in out
    assert "admin API:       disabled" in out


def test_check_config_reports_postgresql_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_DATABASE_URL", "postgresql://relay:pg-pass-9@db.internal/relay")
    monkeypatch.setenv("RELAY_SECRET_KEY", "relay-secret-key-0001")
    code, out, err = run(capsys, "check-config")
    assert code == 0, err
    assert "database:        PostgreSQL relay@db.internal/relay (shared by every replica)" in out
    assert "pg-pass-9" not in out


def test_check_config_says_postgresql_needs_the_secret_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_DATABASE_URL", "postgresql://relay:pg-pass-9@db.internal/relay")
    code, out, err = run(capsys, "check-config")
    assert (code, out) == (2, "")
    assert err.startswith(
        "opsgenie-dx-relay: configuration error: RELAY_SECRET_KEY: required with PostgreSQL"
    )
    assert len(err.splitlines()) == 1
    assert "pg-pass-9" not in err


def test_check_config_lists_every_problem_one_line_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("priorities: [not, a, map]\n")
    monkeypatch.setenv("RELAY_PORT", "eighty")
    monkeypatch.setenv("RELAY_DX_BASE_URL", "ftp://dx")
    monkeypatch.setenv("RELAY_CONFIG", str(rules))
    code, out, err = run(capsys, "check-config")
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    named = {line.split(": ")[2] for line in lines}
    assert named == {"RELAY_PORT", "RELAY_DX_BASE_URL", "RELAY_CONFIG"}


def test_check_config_missing_rules_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_CONFIG", str(tmp_path / "missing.yaml"))
    code, _, err = run(capsys, "check-config")
    assert code == 2
    assert "missing.yaml" in err
    assert err.count("\n") == 1


def test_client_commands_need_admin_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "deliveries")
    assert code == 2
    assert "RELAY_API_KEY" in err


@contextlib.contextmanager
def relay_answering(
    monkeypatch: pytest.MonkeyPatch, body: Any, *, status: int = 200
) -> Iterator[list[str]]:
    """A stand-in relay on a real socket answering every request with ``body``; the
    commands find it through ``RELAY_URL``. Yields the paths it was asked for."""
    asked: list[str] = []

    async def answer(request: Request) -> Response:
        asked.append(request.url.path)
        if isinstance(body, str):
            return Response(body, status_code=status)
        return JSONResponse(body, status_code=status)

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
    with UvicornThread(app) as server:
        for name, value in {**KEYS, "RELAY_URL": server.url}.items():
            monkeypatch.setenv(name, value)
        yield asked


def unreadable() -> dict[str, Any]:
    """A delivery as the API shows one whose stored events none parse (so no alert state)."""
    delivery = Delivery(
        reference_id="opsgenie-a1",
        alert_id="a1",
        service_id=None,
        status=Status.FAILED,
        version=1,
        delivered_version=0,
        attempts=0,
        next_attempt_at=None,
        last_error_code="unreadable_events",
        last_error="none of the alert's stored events could be read; see the relay's log",
        last_request=None,
        last_response=None,
        updated_at=1767225600.0,
        state=None,
    )
    return detail(delivery, [], [])


def test_delivery_without_alert_state_says_why(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with relay_answering(monkeypatch, {"data": unreadable()}) as asked:
        code, out, err = run(capsys, "delivery", "opsgenie-a1")
    assert (code, err) == (0, "")
    assert asked == ["/api/v1/deliveries/opsgenie-a1"]
    assert "alert: unknown (stored events unreadable)" in out.splitlines()
    assert "last_error_code:   unreadable_events" in out


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (("delivery", "opsgenie-a1"), {"data": "not a delivery"}),
        (("delivery", "opsgenie-a1"), {"data": {**unreadable(), "alert": ["a", "list"]}}),
        (("deliveries",), [1, 2]),
        (("deliveries",), "<html>a proxy's page</html>"),
        (("retry", "--all-failed"), {"errors": {"not": "a list"}}),
    ],
)
def test_an_answer_this_command_cannot_read_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    body: Any,
) -> None:
    with relay_answering(monkeypatch, body):
        code, out, err = run(capsys, *args)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("opsgenie-dx-relay: http://127.0.0.1:")
    assert "answered something this command cannot read" in err


def test_an_ipv6_relay_host_is_bracketed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no URL, the commands call the relay where ``serve`` listens: here on ::1."""

    async def none_yet(request: Request) -> Response:
        return JSONResponse({"data": [], "next": None})

    app = Starlette(routes=[Route("/api/v1/deliveries", none_yet)])
    with UvicornThread(app, host="::1") as server:
        for name, value in {**KEYS, "RELAY_HOST": "::1", "RELAY_PORT": str(server.port)}.items():
            monkeypatch.setenv(name, value)
        code, out, err = run(capsys, "deliveries")
    assert (code, err) == (0, "")
    assert out == "no deliveries\n"


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--url", "http://relay:80a"), {}, "--url: not a valid URL (Invalid port: '80a')"),
        ((), {"RELAY_URL": "http://relay:80a"}, "RELAY_URL: not a valid URL"),
        ((), {"RELAY_URL": "relay:8080"}, "RELAY_URL: expected an http(s) URL"),
        (("--url", "ftp://relay"), {"RELAY_URL": "http://relay"}, "--url: expected an http(s)"),
        ((), {"RELAY_HOST": "fe80::1%"}, "RELAY_HOST: not a valid URL"),
    ],
)
def test_a_malformed_relay_url_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: dict[str, str],
    named: str,
) -> None:
    for name, value in {**KEYS, **env}.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "deliveries", *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"opsgenie-dx-relay: configuration error: {named}")


@pytest.mark.parametrize("refusal", ["Forbidden", "Forbidden: this application key may only read"])
def test_refused_admin_keys_are_a_configuration_error_naming_the_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    """Exit 2, as README says: the keys are the caller's environment to fix."""
    with relay_answering(monkeypatch, {"errors": [refusal]}, status=403):
        code, out, err = run(capsys, "retry", "--all-failed")
    assert (code, out) == (2, "")
    assert err == (
        f"opsgenie-dx-relay: configuration error: the relay refused the admin keys ({refusal}):"
        " check RELAY_API_KEY and RELAY_APP_KEY\n"
    )


def test_backfill_since_beyond_a_year_is_refused_before_any_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay's own check, as a bad argument: exit 2, like ``--limit 0``."""
    with relay_answering(monkeypatch, {"data": {}}) as asked:
        code, out, err = run(capsys, "backfill", "--service", "payments", "--since", "9999999999d")
    assert (code, out, asked) == (2, "", [])
    assert err == ("opsgenie-dx-relay: configuration error: --since: at most 365d back\n")


def unusable_databases(tmp_path: Path) -> list[tuple[Path, str]]:
    """Real paths the relay cannot open, each with the reason check-config must give."""
    directory = tmp_path / "dir.db"
    directory.mkdir()
    regular = tmp_path / "regular"
    regular.write_text("not a directory\n")
    return [
        (directory, "is a directory"),
        (regular / "x.db", f"{regular} is not a directory"),
        (regular / "deeper" / "x.db", f"{regular} is not a directory"),
    ]


def test_check_config_refuses_a_database_path_it_cannot_open(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path, reason in unusable_databases(tmp_path):
        monkeypatch.setenv("RELAY_DATABASE_URL", f"sqlite:///{path}")
        code, out, err = run(capsys, "check-config")
        assert (code, out) == (2, "")
        assert err == (
            f"opsgenie-dx-relay: configuration error: RELAY_DATABASE_URL: cannot open {path}:"
            f" {reason}\n"
        )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's own are root's alone, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="relay-perms-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.chmod(0o777)
        shutil.rmtree(path)


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """As the container's non-root user: root passes every permission check, so under root
    the process is ``nobody`` for the block (the saved uid lets it become root again)."""
    if os.geteuid() != 0:
        yield
        return
    os.setresgid(NOBODY, NOBODY, 0)
    os.setresuid(NOBODY, NOBODY, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)


def test_a_database_the_relay_may_not_write_is_refused(shared_dir: Path) -> None:
    """The usual Kubernetes mistake: a volume the pod's user may not write."""
    read_only = shared_dir / "read-only"
    read_only.mkdir(mode=0o555)
    read_only.chmod(0o555)
    writable = shared_dir / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    locked = writable / "locked.db"
    locked.write_text("")
    locked.chmod(0o444)
    for database, reason in (
        (read_only / "relay.db", f"cannot create files in {read_only}: permission denied"),
        (locked, "permission denied"),
    ):
        with unprivileged(), pytest.raises(ConfigError) as refused:
            check_database(database)
        assert str(refused.value) == f"RELAY_DATABASE_URL: cannot open {database}: {reason}"
    assert list(read_only.iterdir()) == []


def test_check_config_lists_the_database_with_the_other_problems(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_DATABASE_URL", f"sqlite:///{tmp_path}")
    monkeypatch.setenv("RELAY_PORT", "eighty")
    code, _, err = run(capsys, "check-config")
    assert code == 2
    named = [line.split(": ")[2] for line in err.splitlines()]
    assert named == ["RELAY_PORT", "RELAY_DATABASE_URL"]


def test_check_config_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database in directories that do not exist yet is fine: serve creates them."""
    monkeypatch.setenv("RELAY_DATABASE_URL", f"sqlite:///{tmp_path}/new/dirs/relay.db")
    code, out, err = run(capsys, "check-config")
    assert (code, err) == (0, "")
    assert f"database:        {tmp_path}/new/dirs/relay.db" in out
    assert list(tmp_path.iterdir()) == []
