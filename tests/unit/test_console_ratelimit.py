"""Failed sign-ins per user id and per address (``elderwatch/console/ratelimit.py``), on an injected clock."""

from __future__ import annotations

import pytest

from elderwatch.console.ratelimit import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_limit_failures_a_minute_then_refused_until_the_oldest_leaves_the_window(clock):
    limiter = FailureLimiter(5, clock=clock)
    for second in range(5):
        clock.t = float(second * 10)  # failures at 0, 10, 20, 30, 40 s
        assert limiter.retry_after("user:w-1") is None
        limiter.failed("user:w-1")
    assert limiter.retry_after("user:w-1") == 20  # at 40 s: the one at 0 s leaves at 60 s
    clock.t = 59.9
    assert limiter.retry_after("user:w-1") == 1
    clock.t = 60.0
    assert limiter.retry_after("user:w-1") is None  # four left in the window


def test_per_user_and_per_address_independently(clock):
    limiter = FailureLimiter(3, clock=clock)
    for user in ("w-1", "w-2", "w-3"):  # one address guessing three ids
        limiter.failed(f"user:{user}", "addr:10.0.0.9")
    assert limiter.retry_after("user:w-4", "addr:10.0.0.9") == 60  # the address is at its limit
    assert limiter.retry_after("user:w-4", "addr:10.0.0.8") is None  # w-4 from elsewhere is not
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # many addresses guessing one id
        limiter.failed("user:w-5", f"addr:{address}")
    assert limiter.retry_after("user:w-5", "addr:10.0.0.4") == 60


def test_success_clears_the_user_not_the_address(clock):
    limiter = FailureLimiter(2, clock=clock)
    limiter.failed("user:w-1", "addr:a")
    limiter.failed("user:w-1", "addr:a")
    limiter.succeeded("user:w-1")
    assert limiter.retry_after("user:w-1") is None
    assert limiter.retry_after("addr:a") == 60


def test_memory_is_bounded(clock):
    limiter = FailureLimiter(2, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.failed(f"user:u{i}")
    assert len(limiter._failures) == 100
    assert limiter.retry_after("user:u999") is None  # one failure each: under the limit
    with pytest.raises(ValueError):
        FailureLimiter(0)
