"""The CLI's client of the admin API: ``deliveries``, ``delivery``, ``retry``, ``backfill``.

These talk to the RUNNING relay (``/api/v1/deliveries``, ``/api/v1/backfill``), never to the
database: the relay owns its single SQLite writer, and an operator at 3 a.m. should not need to
know where the file lives. The URL comes from ``--url``, else ``RELAY_URL``, else
``http://RELAY_HOST:RELAY_PORT``; the keys from ``RELAY_API_KEY`` and ``RELAY_APP_KEY`` (or
``RELAY_READONLY_APP_KEY`` to read).

Exit codes: 0 done; 1 not found, or the relay refused or failed the request; 2 configuration
error: a bad variable, ``--url`` or argument, or admin keys the relay refuses (403), since
those are the caller's ``RELAY_API_KEY``/``RELAY_APP_KEY`` to fix.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from service.backfill import since_seconds
from service.backfill_api import BACKFILL_PATH, NDJSON
from service.config_check import check_config
from service.deliveries_api import DEFAULT_LIMIT, MAX_LIMIT, PATH
from service.delivery_text import deliveries_table, delivery_text, event_text, table
from service.errors import (
    CommandFailed,
    ConfigError,
    Conflict,
    NotFound,
    PayloadError,
    RelayError,
    UnexpectedAnswer,
)
from service.settings import Settings
from service.store import Status

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
#: A backfill streams a line per Opsgenie page; a page may wait out rate limits.
BACKFILL_TIMEOUT = httpx.Timeout(300.0, connect=3.0)


class RelayAPI:
    """The admin API of a running relay; HTTP errors become the relay's named errors."""

    def __init__(self, base_url: httpx.URL, api_key: str, app_key: str) -> None:
        self.base_url = str(base_url)
        self._client = httpx.Client(
            base_url=base_url,
            timeout=TIMEOUT,
            headers={"DD-API-KEY": api_key, "DD-APPLICATION-KEY": app_key},
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], url: str | None) -> RelayAPI:
        settings = Settings.from_environ(environ)
        app_key = settings.app_key or settings.readonly_app_key
        if settings.api_key is None or app_key is None:
            raise ConfigError("RELAY_API_KEY and RELAY_APP_KEY must be set to call the relay")
        return cls(relay_url(environ, settings, url), str(settings.api_key), str(app_key))

    def close(self) -> None:
        self._client.close()

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        body: dict[str, Any] | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> Any:
        try:
            response = self._client.request(method, path, params=params, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise CommandFailed(f"cannot reach the relay at {self.base_url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        _raise_for(response, body)
        return body

    def stream(
        self, path: str, body: dict[str, Any], *, timeout: httpx.Timeout
    ) -> Iterator[dict[str, Any]]:
        """POST asking for NDJSON and yield each line's object as it arrives."""
        headers = {"Accept": NDJSON}
        try:
            with self._client.stream(
                "POST", path, json=body, headers=headers, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    response.read()
                    try:
                        refusal = response.json()
                    except ValueError:
                        refusal = {}
                    _raise_for(response, refusal)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.HTTPError as exc:
            raise CommandFailed(f"lost the relay at {self.base_url}: {exc}") from None
        except ValueError:
            raise CommandFailed("the relay streamed a line that is not JSON") from None


def relay_url(environ: Mapping[str, str], settings: Settings, url: str | None) -> httpx.URL:
    """``--url``, else ``RELAY_URL``, else the address the relay listens on (a wildcard
    address means this machine). A bad one is a configuration error naming its source."""
    if url:
        return _http_url(url, "--url")
    if environ.get("RELAY_URL"):
        return _http_url(environ["RELAY_URL"], "RELAY_URL")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal: bare, its colons would read as a port
    return _http_url(f"http://{host}:{settings.port}", "RELAY_HOST")


def _http_url(text: str, source: str) -> httpx.URL:
    try:
        parsed = httpx.URL(text.strip().rstrip("/"))
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{source}: not a valid URL ({exc}): {text!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"{source}: expected an http(s) URL such as http://127.0.0.1:8080, got {text!r}"
        )
    return parsed


def _raise_for(response: httpx.Response, body: Any) -> None:
    """The relay's refusal as the named error the exit code follows."""
    status_code = response.status_code
    errors = body.get("errors") if isinstance(body, dict) else None
    message = str(errors[0]) if isinstance(errors, list) and errors else f"HTTP {status_code}"
    if status_code == 403:
        raise ConfigError(
            f"the relay refused the admin keys ({message}): check RELAY_API_KEY and RELAY_APP_KEY"
        )
    if status_code == 404:
        raise NotFound(message if message not in NO_ROUTE else _no_route(response.request.url))
    if status_code == 409:
        raise Conflict(message)
    if status_code != 200:
        raise CommandFailed(f"the relay answered {status_code}: {message}")


#: What a 404 says when no route matched. The relay names what it did not find ("no
#: delivery X", "unknown service object: X"), so these mean the URL is wrong, not the id.
NO_ROUTE = ("Not Found", "HTTP 404")


def _no_route(url: httpx.URL) -> str:
    return (
        f"nothing at {url.copy_with(query=None)} (404): --url or RELAY_URL must be the"
        " relay's base URL, such as http://127.0.0.1:8080"
    )


def list_deliveries(
    api: RelayAPI, status: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Follow ``next`` until ``limit`` deliveries are in hand or there are no more; and
    whether the relay has more than that (it said ``next``), so a cut list is never silent."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(found) < limit:
        params: dict[str, Any] = {"limit": min(MAX_LIMIT, limit - len(found))}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        page = api.call("GET", PATH, params)
        found += page["data"]
        cursor = page["next"]
        if cursor is None:
            break
    return found, cursor is not None


def progress_line(progress: dict[str, Any]) -> str:
    """The status line redrawn in place (carriage return): a busy week takes minutes."""
    counts = ", ".join(f"{n} {outcome}" for outcome, n in progress["counts"].items())
    line = f"backfill: page {progress['page']}, {progress['alerts_seen']} alerts"
    if counts:
        line += f" ({counts})"
    if progress.get("retries"):
        line += f", {progress['retries']} retries"
    return line


def run_backfill(api: RelayAPI, document: dict[str, Any], err: TextIO) -> dict[str, Any]:
    """Stream the backfill; redraw a progress line on ``err`` only when it is a terminal."""
    draw = err.isatty()
    width = 0
    report: dict[str, Any] | None = None
    try:
        for line in api.stream(BACKFILL_PATH, document, timeout=BACKFILL_TIMEOUT):
            if "progress" in line and draw:
                text = progress_line(line["progress"])
                err.write("\r" + text.ljust(width))
                err.flush()
                width = len(text)
            elif "data" in line:
                report = line["data"]
            elif "errors" in line:
                raise CommandFailed(f"backfill failed: {line['errors'][0]}")
    finally:
        if width:
            err.write("\n")
    if report is None:
        raise CommandFailed("the relay ended the backfill without a report")
    return report


def backfill_text(report: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {outcome}" for outcome, n in report["counts"].items()) or "none"
    mode = "would fold" if report["dry_run"] else "folded"
    lines = [f"{report['service']}: alerts created since {report['since']} {mode}: {counts}"]
    # A partial backfill must not pass for a whole one; older relays send no warnings.
    lines += [f"INCOMPLETE: {warning}" for warning in report.get("warnings", [])]
    rows = [(a["reference_id"], a["outcome"]) for a in report["alerts"]]
    if rows:
        lines += ["", table(rows, ("REFERENCE_ID", "OUTCOME"))]
    return "\n".join(lines)


# ---- wiring into the ``opsgenie-dx-relay`` parser ------------------------------------

COMMANDS = ("deliveries", "delivery", "retry", "backfill", "check-config")


def add_commands(commands: Any) -> None:
    """Add the operator commands to ``main``'s subparsers."""

    def with_client(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--url",
            help="the relay's base URL (default RELAY_URL, else http://RELAY_HOST:RELAY_PORT)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON, not a table")
        return parser

    listing = with_client(commands.add_parser("deliveries", help="list deliveries"))
    listing.add_argument("--status", choices=[s.value for s in Status])
    listing.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most this many")
    show = with_client(commands.add_parser("delivery", help="show one delivery and its story"))
    show.add_argument("reference_id")
    shown = show.add_mutually_exclusive_group()
    shown.add_argument("--event", metavar="ID", help="show this raw event whole")
    shown.add_argument("--events-cursor", help="older raw events (what the listing says)")
    retry = with_client(commands.add_parser("retry", help="retry a failed or pending delivery"))
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("reference_id", nargs="?")
    target.add_argument("--all-failed", action="store_true", help="retry every failed delivery")
    backfill = with_client(
        commands.add_parser("backfill", help="fold a service object's recent alerts into DX")
    )
    backfill.add_argument("--service", required=True, help="service object name or id")
    backfill.add_argument("--since", required=True, help="how far back, e.g. 7d or 12h")
    backfill.add_argument("--dry-run", action="store_true", help="only list what it would do")
    commands.add_parser("check-config", help="validate the environment and the rules file")


def run(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Run one operator command; the exit code says how it went."""
    if args.command == "check-config":
        return check_config(environ, out, err)
    try:
        api = RelayAPI.from_environ(environ, args.url)
        try:
            out.write(_answer(api, args, err) + "\n")
        finally:
            api.close()
    except ConfigError as error:
        err.write(f"opsgenie-dx-relay: configuration error: {error.message}\n")
        return 2
    except RelayError as error:
        err.write(f"opsgenie-dx-relay: {error.message}\n")
        return 1
    return 0


def _answer(api: RelayAPI, args: argparse.Namespace, err: TextIO) -> str:
    """``_call``, with an answer shaped unlike this version's relay as one line, not a
    traceback: ``--url`` may name another server, or a relay older or newer than this CLI."""
    try:
        return _call(api, args, err)
    except (LookupError, TypeError, ValueError, AttributeError) as exc:
        raise UnexpectedAnswer(
            f"{api.base_url} answered something this command cannot read"
            f" ({type(exc).__name__}: {exc}); is it a relay of the same version?"
        ) from None


def _call(api: RelayAPI, args: argparse.Namespace, err: TextIO) -> str:
    if args.command == "deliveries":
        if args.limit < 1:
            raise ConfigError("--limit: must be at least 1")
        found, more = list_deliveries(api, args.status, args.limit)
        if more:  # on stderr, so --json output stays one document
            err.write(
                f"opsgenie-dx-relay: more deliveries than --limit {args.limit}:"
                " use a larger --limit (it pages through them)\n"
            )
        return json.dumps(found, indent=2) if args.json else deliveries_table(found)
    if args.command == "delivery":
        path = f"{PATH}/{quote(args.reference_id, safe='')}"
        if args.event is not None:
            event = api.call("GET", f"{path}/events/{quote(args.event, safe='')}")["data"]
            return json.dumps(event, indent=2) if args.json else event_text(event)
        params = {"events_cursor": args.events_cursor} if args.events_cursor else None
        shown = api.call("GET", path, params)["data"]
        return json.dumps(shown, indent=2) if args.json else delivery_text(shown)
    if args.command == "backfill":
        try:
            since_seconds(args.since)  # the relay's own check, before any request
        except PayloadError as error:
            raise ConfigError(f"--{error.message}") from None
        document = {"service": args.service, "since": args.since, "dry_run": args.dry_run}
        report = run_backfill(api, document, err)
        return json.dumps(report, indent=2) if args.json else backfill_text(report)
    if args.all_failed:
        answer = api.call("POST", f"{PATH}/retry-failed")
        return (
            json.dumps(answer) if args.json else f"retrying {answer['retried']} failed deliveries"
        )
    answer = api.call("POST", f"{PATH}/{quote(args.reference_id, safe='')}/retry")["data"]
    return (
        json.dumps(answer)
        if args.json
        else f"{answer['reference_id']}: {answer['status']}, due now"
    )
