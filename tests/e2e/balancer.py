"""A load balancer in front of several relay replicas, as the tests of issue 18 need one.

Opsgenie posts each webhook once through the ingress; the ingress spreads them over the
replicas (round-robin here) and, when the replica it picked refuses the connection (a pod
SIGKILLed, or stopping in a rolling deploy), tries the next one, as ingress-nginx's default
``proxy_next_upstream error timeout`` does. nginx does not resend a POST whose connection
broke after it was sent (it answers 502); this balancer does, standing in for a sender that
retries, since either way the relay never said 2xx for it. Only a 2xx is an acknowledgement:
the body is remembered then and only then. Any other HTTP answer is not supposed to happen
with a healthy replica left, so it is recorded in ``refused`` (the tests assert it stays
empty) and the body is tried on the next replica, so one wrong answer does not also starve
the final-state check.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import httpx

from tests.conftest import WEBHOOK_TOKEN

__all__ = ["Balancer"]

HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


class Balancer:
    """Threads posting ``bodies`` through ``replicas`` (their base URLs, read on every try,
    so a restarted replica is used again at once) until each one gets a 2xx.

    ``bodies`` may be endless: the balancer stops taking new ones after ``finish()``.
    """

    def __init__(
        self,
        replicas: Callable[[], Sequence[str]],
        bodies: Iterator[bytes],
        *,
        threads: int = 4,
        give_up_after: float = 120.0,
    ) -> None:
        self._replicas = replicas
        self._bodies = bodies
        self._give_up_after = give_up_after
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._finish = threading.Event()
        self.acknowledged: list[bytes] = []
        #: 2xx answers by replica URL: the load really was spread.
        self.by_replica: Counter[str] = Counter()
        #: Connections refused, reset or timed out, each followed by a try elsewhere.
        self.connection_errors = 0
        #: Non-2xx HTTP answers ("<url> <status> <body>"): none may happen.
        self.refused: list[str] = []
        #: Bodies that never got a 2xx within ``give_up_after``: none may.
        self.given_up: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._run, name=f"balancer-{n}", daemon=True)
            for n in range(threads)
        ]

    def start(self) -> Balancer:
        for thread in self._threads:
            thread.start()
        return self

    def finish(self) -> None:
        """Take no new bodies; the ones being posted are still posted until acknowledged."""
        self._finish.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "the balancer did not finish"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def _take(self) -> bytes | None:
        with self._lock:
            if self._finish.is_set():
                return None
            return next(self._bodies, None)

    def _run(self) -> None:
        clients: dict[str, httpx.Client] = {}
        try:
            while (body := self._take()) is not None:
                self._post(clients, body)
        finally:
            for client in clients.values():
                client.close()

    def _post(self, clients: dict[str, httpx.Client], body: bytes) -> None:
        deadline = time.monotonic() + self._give_up_after
        turn = next(self._turn)
        failures = 0
        while time.monotonic() < deadline:
            if failures and failures % len(self._replicas()) == 0:
                time.sleep(0.05)  # every replica failed in turn: give them a moment
            replicas = self._replicas()
            url = replicas[(turn + failures) % len(replicas)]
            client = clients.get(url)
            if client is None:
                client = clients[url] = httpx.Client(base_url=url, headers=HEADERS, timeout=15.0)
            try:
                response = client.post("/webhooks/opsgenie", content=body)
            except httpx.TransportError:
                with self._lock:
                    self.connection_errors += 1
                failures += 1
                continue
            if 200 <= response.status_code < 300:
                with self._lock:
                    self.acknowledged.append(body)
                    self.by_replica[url] += 1
                return
            with self._lock:
                self.refused.append(f"{url} {response.status_code} {response.text[:200]}")
            failures += 1
        with self._lock:
            self.given_up.append(body)
