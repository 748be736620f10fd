"""Failed sign-ins, limited per user id and per client address (``Settings.signin_attempts_per_min``).

A sliding window of failure times per key. While a key has ``limit`` failures within the last
minute, sign-in is refused for it without checking the password (429), so a guesser gets ``limit``
tries a minute per id, and one address ``limit`` tries a minute across all ids. A successful
sign-in clears its user id's failures (not the address's: a guesser who knows one password
must not get a fresh budget for the others). Memory is bounded: at most ``max_keys`` keys, the
oldest dropped first.

>>> now = [0.0]
>>> limiter = FailureLimiter(3, clock=lambda: now[0])
>>> for _ in range(3):
...     limiter.failed("user:w-1", "addr:10.0.0.7")
>>> limiter.retry_after("user:w-1"), limiter.retry_after("user:w-2", "addr:10.0.0.7"), limiter.retry_after("user:w-2")
(60, 60, None)
>>> now[0] = 60.5
>>> limiter.retry_after("user:w-1") is None
True
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(self, limit: int, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        if limit < 1:
            raise ValueError("limit: at least 1")
        self.limit, self.window_s, self.clock, self.max_keys = limit, window_s, clock, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until every key may try again, or None if none is at its limit."""
        now = self.clock()
        waits = [times[0] + self.window_s - now for key in keys
                 if len(times := self._recent(key, now)) >= self.limit]
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            times = self._recent(key, now)
            if key not in self._failures:
                self._failures[key] = times
            times.append(now)
            self._failures.move_to_end(key)
            while len(times) > self.limit:  # older ones no longer decide anything
                times.popleft()
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


__all__ = ["FailureLimiter"]
