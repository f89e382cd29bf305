"""Hostile clients against ``opsgenie-dx-relay serve``: memory and connections stay bounded.

Memory is read from the relay process's ``/proc/<pid>/status``: its high-water mark
(``VmHWM``) catches a spike that is freed again before the test could look.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import RelayProcess
from tests.fakes.polling import wait_for

MIB = 1024 * 1024


def high_water_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_64_mb_header_before_authentication_costs_no_memory(
    relay: Callable[..., RelayProcess],
) -> None:
    process = relay()
    assert process.proc is not None
    before = high_water_mib(process.proc.pid)
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        sock.sendall(b"POST /webhooks/opsgenie HTTP/1.1\r\nHost: relay\r\nX-Big: ")
        chunk = b"a" * 65536
        sent = 0
        try:
            while sent < 64 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # closed by the relay, as it should be
        try:
            answer = sock.recv(65536)
        except OSError:
            answer = b""  # an RST may overtake the 431
    assert sent < 64 * MIB, "the relay read a 64 MB header to the end"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    grown = high_water_mib(process.proc.pid) - before
    assert grown < 16, f"peak memory grew {grown:.1f} MiB"
    assert process.client.get("/healthz").status_code == 200


def test_idle_and_slow_connections_are_closed_and_webhooks_still_served(
    relay: Callable[..., RelayProcess],
) -> None:
    process = relay(RELAY_HEADER_TIMEOUT="1s", RELAY_MAX_CONNECTIONS="120")
    idle = [socket.create_connection(("127.0.0.1", process.port)) for _ in range(100)]
    slow = socket.create_connection(("127.0.0.1", process.port))
    slow.sendall(b"POST /webhooks/opsgenie HTTP/1.1\r\nHost: relay\r\n")
    try:

        def all_closed() -> bool:
            closed = 0
            for sock in [*idle, slow]:
                sock.setblocking(False)
                try:
                    while chunk := sock.recv(65536):
                        del chunk
                    closed += 1
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed += 1
            return closed == len(idle) + 1

        wait_for(all_closed, timeout=20.0, message="idle and slow connections closed")
        answer = process.post({"action": "Create", "alert": {"alertId": "after-the-flood"}})
        assert answer.status_code == 202
    finally:
        for sock in [*idle, slow]:
            sock.close()
