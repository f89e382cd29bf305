"""Outbound connections that check the address they reach, not only the name they were given.

``service.destinations`` refuses a ``custom_url`` whose host *names* a forbidden address,
but names resolve at request time: a public name can answer 127.0.0.1 or the metadata
service's address tomorrow (DNS rebinding). So the client that carries stored keys
connects through ``GuardedBackend``: it resolves the host itself, refuses the connection
if any answer is an address the relay must not reach, and connects to the checked
address, so a second DNS answer cannot differ from the one checked. httpcore still
starts TLS with ``server_hostname`` taken from the URL's host (``_async/connection.py``,
``_connect``), so certificates are verified against the name, not the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from service.destinations import address_refusal, name_refusal
from service.dx import make_http_client
from service.errors import DestinationRefused
from service.settings import Settings

#: ``(host, port) -> addresses``: the system resolver by default; tests pass their own.
Resolver = Callable[[str, int], Awaitable[list[str]]]
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host``, in its order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to allowed addresses.

    Every answer of the lookup must be allowed, not just the one used: a name that mixes
    a public address with 127.0.0.1 is an attack or a mistake, and either way the
    operator should hear about it rather than have the relay pick the safe half.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._backend = backend if backend is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.allowed_addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        error: httpcore.ConnectError | None = None
        for address in addresses:  # as the system resolver orders them
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
            try:
                return await self._backend.connect_tcp(
                    address,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None  # allowed_addresses never answers an empty list
        raise error

    async def allowed_addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to, all checked; ``DestinationRefused`` if any is not."""
        reason = name_refusal(host, allow_private=self._allow_private)
        if reason is not None:
            raise DestinationRefused(f"refused to connect to {host}: {reason}", host=host)
        try:
            answers = await self._resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        if not answers:
            raise httpcore.ConnectError(f"{host} has no address")
        for answer in answers:
            # A scope id (fe80::1%eth0) says which interface, not which address.
            address = ipaddress.ip_address(answer.partition("%")[0])
            reason = address_refusal(address, allow_private=self._allow_private)
            if reason is not None:
                raise DestinationRefused(
                    f"refused to connect to {host}: {reason}", host=host, address=str(address)
                )
        return answers

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A local socket is the local host: never where a stored key goes."""
        raise DestinationRefused("refused to connect to a Unix socket", host=path)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its exception mapping, its response streams) over a pool
    that connects through a ``GuardedBackend``.

    httpx takes no network backend, so the pool its constructor built (never opened,
    holding nothing) is replaced. ``tests/test_egress.py`` connects for real through
    this class, so an httpx that stops using ``_pool`` fails there, not in production.
    """

    def __init__(
        self,
        *,
        backend: GuardedBackend,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(verify=verify, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def make_guarded_client(
    settings: Settings,
    *,
    allow_private: bool,
    resolver: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """The client for requests that carry a stored key: ``make_http_client``'s timeouts,
    headers and no redirects (a redirect would carry the key to wherever it points),
    over a ``GuardedTransport`` with the same pool limits. Passing a transport also keeps
    httpx from routing through ``HTTPS_PROXY``, which would bypass the check."""
    limits = httpx.Limits(
        max_connections=settings.dx_concurrency * 2,
        max_keepalive_connections=settings.dx_concurrency,
        keepalive_expiry=30.0,
    )
    backend = GuardedBackend(allow_private=allow_private, resolver=resolver)
    transport = GuardedTransport(backend=backend, limits=limits, verify=verify)
    return make_http_client(settings, transport=transport)
