"""The retry policy: backoff schedule, jitter, Retry-After."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from pycontainerd import errdefs
from pycontainerd.remotes.transport import (
    NO_RETRY,
    RETRY_STATUSES,
    RetryPolicy,
    parse_retry_after,
    proxy_for,
)


def test_default_schedule_doubles_to_the_cap() -> None:
    assert RetryPolicy().schedule() == [0.5, 1.0, 2.0, 4.0]
    policy = RetryPolicy(max_attempts=8, initial_delay=1, multiplier=3, max_delay=20)
    assert policy.schedule() == [1, 3, 9, 20, 20, 20, 20]
    assert NO_RETRY.schedule() == []


def test_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(initial_delay=1.0, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.delay(2, rng) for _ in range(1000)]
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 900  # spread, not constant
    assert RetryPolicy(jitter=0).delay(3) == 4.0


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"jitter": -0.1}, {"jitter": 1.0}])
def test_invalid_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_retry_statuses() -> None:
    assert {429, 500, 502, 503, 504, 408} == RETRY_STATUSES
    assert 501 not in RETRY_STATUSES


def test_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://r.example/v2/") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy.example:8080")
    monkeypatch.setenv("NO_PROXY", "internal.example, .corp, 10.0.0.0/8, special.example:444")
    assert proxy_for("https://r.example/v2/") == "http://proxy.example:3128"
    assert proxy_for("http://r.example/v2/") == "http://plain-proxy.example:8080"
    for bypassed in (
        "https://internal.example/v2/",
        "https://a.internal.example/v2/",
        "https://x.corp/v2/",
        "https://10.1.2.3:5000/v2/",
        "https://special.example:444/v2/",
        "http://127.0.0.1:5000/v2/",  # loopback never goes through a proxy
        "http://localhost/v2/",
    ):
        assert proxy_for(bypassed) is None, bypassed
    assert proxy_for("https://special.example/v2/") == "http://proxy.example:3128"
    assert proxy_for("https://notinternal.example/v2/") == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "*")
    assert proxy_for("https://r.example/v2/") is None
