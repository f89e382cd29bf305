"""Run an ASGI app on a real uvicorn server in a background thread.

In-process transports (`httpx.ASGITransport`, `TestClient`) skip the socket, the HTTP parser,
keep-alive and timeouts. End-to-end tests need those, so this module serves an app the way
production does, on 127.0.0.1 and an OS-chosen port, and hands back its URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Generator
from types import TracebackType
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

__all__ = ["UvicornThread", "free_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before you bind it; prefer `UvicornThread(port=0)`, which
    reads the port the server really bound. This is for subprocesses that need a number upfront.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the main thread.

    Signals can only be handled on the main thread, and the test runner owns them (Ctrl+C
    must stop pytest, not a fake). httpx's own test server makes the same override; uvicorn
    renamed the hook from `install_signal_handlers` to `capture_signals`, so both are no-ops.
    """

    def install_signal_handlers(self) -> None:
        """No-op: older uvicorn's hook; kept so the intent survives a version change."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """No-op: never touch the process's signal handlers from a test server."""
        yield


class UvicornThread:
    """Serve `app` on a real uvicorn server in a daemon thread, as a context manager.

    >>> with UvicornThread(app) as server:
    ...     httpx.get(server.url + "/healthz")

    Entering waits (with a deadline, never a bare sleep) until the server accepts connections;
    leaving asks it to exit and joins the thread, so no server outlives its test.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["auto", "on", "off"] = "on",
        log_level: str = "warning",
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        http: type[asyncio.Protocol] | str = "auto",
        timeout_keep_alive: int = 5,
    ) -> None:
        # lifespan="on": an app whose startup fails must fail the test, not run half-started.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan=lifespan,
            log_level=log_level,
            http=http,
            timeout_keep_alive=timeout_keep_alive,
            # Half the join budget, so in-flight requests are cut off before stop() gives up.
            timeout_graceful_shutdown=max(1, int(shutdown_timeout / 2)),
        )
        self.server = _ThreadServer(config)
        self.host = host
        self.port = port
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uvicorn-test-server", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, e.g. "http://127.0.0.1:54321"; valid once started."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        # A failed lifespan startup ends in sys.exit(); keep it so start() can report it.
        try:
            self.server.run()
        except BaseException as exc:
            self._error = exc

    def start(self) -> None:
        """Start the thread and block until the server listens, or raise RuntimeError."""
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"uvicorn exited during startup: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start within {self._startup_timeout}s")
            time.sleep(0.005)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Ask the server to exit, join it, and force it if graceful shutdown overruns."""
        if self._thread.ident is None:  # never started: nothing to stop
            return
        self.server.should_exit = True
        self._thread.join(self._shutdown_timeout)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(self._shutdown_timeout)

    def __enter__(self) -> UvicornThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
