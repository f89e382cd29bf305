"""The pause every delivery shares: its reasons, its doubling, its gauge."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from service.errors import DXAuthError, DXRedirected
from service.metrics import Metrics
from service.pause import Pause


def paused(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("relay_delivery_paused", {"reason": reason})
    return float(value or 0.0)


def test_without_dx_configured_the_pause_says_so_for_good() -> None:
    metrics = Metrics(CollectorRegistry())
    pause = Pause(metrics.paused, configured=False, max_backoff=300.0)
    assert pause.reason(0.0) == "DX is not configured (RELAY_DX_BASE_URL and RELAY_DX_TOKEN)"
    assert paused(metrics, "not_configured") == 1


def test_a_refused_token_pauses_with_a_doubling_wait_until_dx_takes_a_request() -> None:
    metrics = Metrics(CollectorRegistry())
    pause = Pause(metrics.paused, configured=True, max_backoff=300.0)
    assert (pause.reason(0.0), paused(metrics, "not_configured")) == (None, 0)
    refused = DXAuthError("DX refused the token: not_authed (HTTP 401)")
    assert [pause.begin(refused, now=100.0) for _ in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert pause.until == 400.0
    assert (
        pause.reason(399.0) == "DX refused the token: not_authed (HTTP 401); retrying with backoff"
    )
    assert pause.reason(400.0) is None  # the pause is over; the next request will tell
    assert paused(metrics, "not_authed") == 1
    pause.end()
    assert paused(metrics, "not_authed") == 0
    assert pause.begin(refused, now=500.0) == 5  # a new run of refusals starts short again


def test_the_doubling_stops_even_under_a_high_ceiling() -> None:
    pause = Pause(Metrics(CollectorRegistry()).paused, configured=True, max_backoff=10**6)
    refused = DXAuthError("no")
    waits = [pause.begin(refused, now=0.0) for _ in range(14)]
    assert waits[10:] == [5.0 * 2**10] * 4


def test_a_new_reason_takes_over_the_gauge() -> None:
    metrics = Metrics(CollectorRegistry())
    pause = Pause(metrics.paused, configured=True, max_backoff=300.0)
    pause.begin(DXAuthError("refused"), now=0.0)
    pause.begin(DXRedirected("moved"), now=0.0)
    assert (paused(metrics, "not_authed"), paused(metrics, "redirected")) == (0, 1)
