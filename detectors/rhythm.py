"""Building blocks of a household's learned rhythm: hourly rates and a slowly forgetting maximum.

Both are small on purpose (a few hundred bytes pickled): every household keeps several.
"""

from __future__ import annotations

import math
from datetime import datetime

from river import stats


class FadingMean:
    """A mean that becomes exponentially weighted once it has seen ``1 / fading_factor`` values.

    river's ``EWMean`` starts at its first value and, with a small fading factor, stays close
    to it for weeks: a household's first morning would shape its baseline for a month. So the
    first ``1 / fading_factor`` values are averaged plainly (river ``Mean``) and the ``EWMean``
    is seeded with that average.

    >>> m = FadingMean(0.1)
    >>> for v in [1.0, 0.0, 0.0, 0.0]:
    ...     m.update(v)
    >>> m.get(), m.n
    (0.25, 4)
    """

    __slots__ = ("fading_factor", "n", "_stat")

    def __init__(self, fading_factor: float) -> None:
        self.fading_factor = fading_factor
        self.n = 0
        self._stat = stats.Mean()

    def update(self, value: float) -> None:
        self.n += 1
        self._stat.update(value)
        if isinstance(self._stat, stats.Mean) and self.n * self.fading_factor >= 1.0:
            seeded = stats.EWMean(self.fading_factor)
            seeded.update(self._stat.get())  # an EWMean's first update sets its value exactly
            self._stat = seeded

    def get(self) -> float:
        return self._stat.get() if self.n else 0.0

    def __getstate__(self):
        # both river stats are fully described by their value and the count: store floats
        return self.fading_factor, self.n, self.get()

    def __setstate__(self, state) -> None:
        self.fading_factor, self.n, value = state
        if self.n * self.fading_factor >= 1.0:
            self._stat = stats.EWMean(self.fading_factor)
            self._stat.update(value)
        else:
            self._stat = stats.Mean()
            self._stat.n, self._stat._mean = self.n, value  # river's Mean is its count and mean

    def peek(self, value: float) -> float:
        """What :meth:`get` would return after ``update(value)``, without updating."""
        alpha = max(1.0 / (self.n + 1), self.fading_factor)
        return self.get() + alpha * (value - self.get())


class HourlyMean:
    """One :class:`FadingMean` per local hour of the day.

    >>> rates = HourlyMean(fading_factor=0.1)
    >>> for _ in range(50):
    ...     rates.update(7, 1.0)
    ...     rates.update(3, 0.0)
    >>> rates.get(7), rates.get(3), rates.count(7), rates.count(12)
    (1.0, 0.0, 50, 0)
    """

    __slots__ = ("fading_factor", "_means")

    def __init__(self, fading_factor: float = 0.02) -> None:
        self.fading_factor = fading_factor
        self._means = [FadingMean(fading_factor) for _ in range(24)]

    def update(self, hour: int, value: float) -> None:
        self._means[hour].update(value)

    def get(self, hour: int) -> float:
        return self._means[hour].get()

    def count(self, hour: int) -> int:
        return self._means[hour].n

    def snapshot(self) -> tuple[float, ...]:
        return tuple(round(self.get(h), 12) for h in range(24))

    def __getstate__(self):
        return self.fading_factor, [(m.n, m.get()) for m in self._means]

    def __setstate__(self, state) -> None:
        self.fading_factor, means = state
        self._means = []
        for n, value in means:
            m = FadingMean.__new__(FadingMean)
            m.__setstate__((self.fading_factor, n, value))
            self._means.append(m)


class HourlyPower:
    """Usual power per local hour and its spread: tells an appliance switched on from the fridge
    and the thermostat.

    >>> power = HourlyPower(fading_factor=0.1)
    >>> for kw in [0.1, 0.2] * 10:
    ...     power.update(3, kw)
    >>> excess, z = power.jump(3, 2.6)
    >>> round(excess, 2), z > 10
    (2.45, True)
    """

    def __init__(self, fading_factor: float = 0.01, min_samples: int = 7) -> None:
        self.min_samples = min_samples
        self._mean = HourlyMean(fading_factor)  # kW, and kW² for the spread
        self._square = HourlyMean(fading_factor)

    def update(self, hour: int, kw: float) -> None:
        self._mean.update(hour, kw)
        self._square.update(hour, kw * kw)

    def jump(self, hour: int, kw: float) -> tuple[float, float]:
        """(kW above this hour's usual, in standard deviations); (0, 0) before ``min_samples``."""
        if self._mean.count(hour) < self.min_samples:
            return 0.0, 0.0
        usual = self._mean.get(hour)
        spread = math.sqrt(max(self._square.get(hour) - usual * usual, 0.0)) + 0.02
        return kw - usual, (kw - usual) / spread

    def snapshot(self) -> tuple[float, ...]:
        return self._mean.snapshot()


class DecayingMax:
    """The largest value seen, forgetting with a half-life in data time.

    Per-household thresholds are "longer/larger than this household ever does"; ``ever`` fades so
    a habit given up years ago stops excusing a warning today.

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> m = DecayingMax(half_life_days=10)
    >>> m.update(8.0, t0); m.get(t0)
    8.0
    >>> m.update(3.0, t0 + timedelta(days=1)); round(m.get(t0 + timedelta(days=10)), 2)
    4.0
    """

    __slots__ = ("half_life_days", "_value", "_at", "n")

    def __init__(self, half_life_days: float = 60.0) -> None:
        self.half_life_days = half_life_days
        self._value = 0.0
        self._at: float | None = None  # POSIX seconds of the last update
        self.n = 0

    def get(self, now: datetime) -> float:
        if self._at is None:
            return 0.0
        days = max(now.timestamp() - self._at, 0.0) / 86400.0
        return self._value * math.exp(-math.log(2) * days / self.half_life_days)

    def update(self, value: float, now: datetime) -> None:
        current = self.get(now)
        self._value = max(current, value)
        self._at = now.timestamp()
        self.n += 1

    def nudge(self, floor: float, factor: float, now: datetime) -> None:
        """Raise the maximum to ``factor`` × max(itself, ``floor``): after a flagged episode ended.

        A flagged episode is never learned as normal, but if a household's life has changed
        (new job, new habit) the same "anomaly" recurs; each one raising the bar a little means
        it stops alarming after a few, while one real emergency hardly moves it.
        """
        self._value = max(self.get(now), floor) * factor
        self._at = now.timestamp()

    def __getstate__(self):
        return self.half_life_days, self._value, self._at, self.n

    def __setstate__(self, state) -> None:
        self.half_life_days, self._value, self._at, self.n = state
