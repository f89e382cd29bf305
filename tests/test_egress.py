"""The guarded client against a real TLS server on 127.0.0.1, reached by names an injected
resolver answers: what it refuses, what it allows, and that TLS still checks the name."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.egress import GuardedBackend, Resolver, make_guarded_client
from service.errors import DestinationRefused
from service.settings import Settings
from tests.fakes.certs import self_signed_for, trusting
from tests.fakes.servers import UvicornThread
from tests.fakes.tls import https_server, self_signed

NAME = "opsgenie.test"  # reserved (RFC 2606): no real resolver answers it
KEY = "GenieKey 0f3c2a8e-1111-2222-3333-444455556666"


class Recorder:
    """A fake upstream that records who asked what, with which Authorization header."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.answer)])

    async def answer(self, request: Request) -> JSONResponse:
        self.seen.append((request.url.path, request.headers.get("authorization")))
        return JSONResponse({"data": {"name": "acme"}})


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Recorder, UvicornThread, ssl.SSLContext]]:
    """A TLS server on 127.0.0.1 whose certificate names ``NAME`` only."""
    tls = self_signed_for(tmp_path, NAME)
    recorder = Recorder()
    with https_server(recorder.app, tls) as server:
        yield recorder, server, trusting(tls)


def answering(table: dict[str, list[str]], calls: list[str] | None = None) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(f"{host}:{port}")
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


def fetch(
    settings: Settings,
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.Response:
    async def run() -> httpx.Response:
        extra: dict[str, Any] = {} if resolver is None else {"resolver": resolver}
        client = make_guarded_client(settings, allow_private=allow_private, verify=verify, **extra)
        async with client:
            return await client.get(url, headers={"Authorization": KEY})

    return asyncio.run(run())


def test_a_name_that_resolves_to_loopback_is_refused_before_a_byte_is_sent(
    upstream: tuple[Recorder, UvicornThread, ssl.SSLContext],
    make_settings: Callable[..., Settings],
) -> None:
    recorder, server, context = upstream
    resolver = answering({NAME: ["127.0.0.1"]})
    with pytest.raises(DestinationRefused) as refused:
        fetch(
            make_settings(),
            f"https://{NAME}:{server.port}/v2/account",
            allow_private=False,
            resolver=resolver,
            verify=context,
        )
    assert refused.value.host == NAME
    assert refused.value.address == "127.0.0.1"
    assert "loopback" in refused.value.message
    assert "RELAY_ALLOW_PRIVATE_UPSTREAMS" in refused.value.message
    assert "GenieKey" not in refused.value.message
    assert recorder.seen == []


def test_with_private_upstreams_allowed_it_connects_to_the_address_it_checked(
    upstream: tuple[Recorder, UvicornThread, ssl.SSLContext],
    make_settings: Callable[..., Settings],
) -> None:
    """``opsgenie.test`` resolves nowhere but through the injected resolver, so a 200 shows
    the connection went to the checked address; the certificate names only
    ``opsgenie.test``, so it shows TLS verified the name, not the address."""
    recorder, server, context = upstream
    calls: list[str] = []
    response = fetch(
        make_settings(),
        f"https://{NAME}:{server.port}/v2/account",
        allow_private=True,
        resolver=answering({NAME: ["127.0.0.1"]}, calls),
        verify=context,
    )
    assert response.status_code == 200
    assert recorder.seen == [("/v2/account", KEY)]
    assert calls == [f"{NAME}:{server.port}"]


def test_tls_still_verifies_the_hostname_not_the_address(
    upstream: tuple[Recorder, UvicornThread, ssl.SSLContext],
    make_settings: Callable[..., Settings],
) -> None:
    recorder, server, context = upstream
    with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|[Hh]ostname mismatch"):
        fetch(
            make_settings(),
            f"https://impostor.test:{server.port}/v2/account",
            allow_private=True,
            resolver=answering({"impostor.test": ["127.0.0.1"]}),
            verify=context,
        )
    assert recorder.seen == []


def test_the_next_address_is_tried_when_one_does_not_answer(
    upstream: tuple[Recorder, UvicornThread, ssl.SSLContext],
    make_settings: Callable[..., Settings],
) -> None:
    _, server, context = upstream  # listens on 127.0.0.1 only: 127.0.0.2 refuses
    response = fetch(
        make_settings(),
        f"https://{NAME}:{server.port}/",
        allow_private=True,
        resolver=answering({NAME: ["127.0.0.2", "127.0.0.1"]}),
        verify=context,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("answers", "allow_private", "words"),
    [
        (["93.184.216.34", "127.0.0.1"], False, "loopback"),  # rebinding: one bad answer is enough
        (["10.0.0.7"], False, "private"),
        (["169.254.169.254"], True, "metadata"),
        (["::ffff:169.254.169.254"], True, "metadata"),
        (["fd00:ec2::254"], True, "metadata"),
        (["fe80::1%lo"], True, "link-local"),
        (["0.0.0.0"], True, "not a public"),
    ],
)
def test_any_forbidden_answer_refuses_the_connection(
    upstream: tuple[Recorder, UvicornThread, ssl.SSLContext],
    make_settings: Callable[..., Settings],
    answers: list[str],
    allow_private: bool,
    words: str,
) -> None:
    recorder, server, context = upstream
    with pytest.raises(DestinationRefused, match=words):
        fetch(
            make_settings(),
            f"https://{NAME}:{server.port}/",
            allow_private=allow_private,
            resolver=answering({NAME: answers}),
            verify=context,
        )
    assert recorder.seen == []


def test_an_address_in_the_url_goes_through_the_system_resolver_and_the_same_rules(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    tls = self_signed(tmp_path)  # names 127.0.0.1 and localhost
    recorder = Recorder()
    with https_server(recorder.app, tls) as server:
        url = f"https://127.0.0.1:{server.port}/v2/account"
        with pytest.raises(DestinationRefused, match="loopback"):
            fetch(make_settings(), url, allow_private=False, verify=trusting(tls))
        assert recorder.seen == []
        response = fetch(make_settings(), url, allow_private=True, verify=trusting(tls))
        assert response.status_code == 200
        # An odd spelling stored before validation existed is still 127.0.0.1 here.
        odd = f"https://2130706433:{server.port}/v2/account"
        with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1"):
            fetch(make_settings(), odd, allow_private=False, verify=trusting(tls))
    assert recorder.seen == [("/v2/account", KEY)]


@pytest.mark.parametrize("host", ["localhost", "api.localhost", "metadata.google.internal"])
def test_loopback_and_metadata_names_are_refused_without_a_lookup(
    host: str, make_settings: Callable[..., Settings]
) -> None:
    calls: list[str] = []
    with pytest.raises(DestinationRefused) as refused:
        fetch(
            make_settings(), f"https://{host}/", allow_private=False, resolver=answering({}, calls)
        )
    assert refused.value.host == host
    assert calls == []


def test_a_name_that_does_not_resolve_is_a_connect_error(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.test"):
        fetch(make_settings(), "https://nowhere.test/", allow_private=False, resolver=answering({}))


def test_a_resolver_that_hangs_is_a_connect_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    async def hang(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(httpx.ConnectTimeout):
        fetch(
            make_settings(dx_timeout_seconds=0.2),
            "https://slow.test/",
            allow_private=False,
            resolver=hang,
        )


def test_a_unix_socket_is_never_a_destination() -> None:
    async def run() -> None:
        await GuardedBackend(allow_private=True).connect_unix_socket("/run/docker.sock")

    with pytest.raises(DestinationRefused, match="Unix socket"):
        asyncio.run(run())


def test_the_backend_still_sleeps_for_httpcore() -> None:
    asyncio.run(GuardedBackend().sleep(0))


def test_the_guarded_client_keeps_the_shared_clients_timeouts_and_ignores_proxies(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``HTTPS_PROXY`` would connect on the relay's behalf, past the check."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    settings = make_settings(dx_timeout_seconds=12.0, dx_concurrency=3)

    async def run() -> tuple[httpx.Timeout, bool, str, Any, dict[Any, Any]]:
        client = make_guarded_client(settings, allow_private=False)
        async with client:
            pool = client._transport._pool  # type: ignore[attr-defined]
            mounts = client._mounts
            return (
                client.timeout,
                client.follow_redirects,
                client.headers["User-Agent"],
                pool,
                mounts,
            )

    timeout, follows, agent, pool, mounts = asyncio.run(run())
    assert timeout == httpx.Timeout(connect=5.0, read=12.0, write=12.0, pool=12.0)
    assert follows is False
    assert agent == "opsgenie-dx-relay"
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, GuardedBackend)
    assert pool._max_connections == 6
    assert pool._max_keepalive_connections == 3
    assert mounts == {}
