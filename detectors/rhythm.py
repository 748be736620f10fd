"""Building blocks of a household's learned rhythm: hourly rates and a slowly forgetting maximum.

Both are small on purpose (a few hundred bytes pickled): every household keeps several.
"""

from __future__ import annotations

import math

from detectors.state import array, decode_floats, entry, integer, number, optional, pack_floats, real

_LN2 = math.log(2)



class FadingMean:
    """A mean that becomes exponentially weighted once it has seen ``1 / fading_factor`` values.

    An exponentially weighted mean (river ``EWMean``) starts at its first value and, with a small
    fading factor, stays close to it for weeks: a household's first morning would shape its baseline
    for a month. So the first ``1 / fading_factor`` values are averaged plainly (river ``Mean``), and
    the weighted mean starts from that average. The arithmetic is river's ``Mean`` and ``EWMean``,
    written out: these are read a dozen times per reading, and a float is faster than two objects.

    >>> m = FadingMean(0.1)
    >>> for v in [1.0, 0.0, 0.0, 0.0]:
    ...     m.update(v)
    >>> m.get(), m.n
    (0.25, 4)
    """

    __slots__ = ("fading_factor", "n", "value")

    def __init__(self, fading_factor: float) -> None:
        self.fading_factor = fading_factor
        self.n = 0
        self.value = 0.0

    def update(self, value: float) -> None:
        if self.n * self.fading_factor >= 1.0:  # weighted: river EWMean.update
            self.value = self.fading_factor * value + (1.0 - self.fading_factor) * self.value
            self.n += 1
        else:  # plain: river Mean.update
            self.n += 1
            self.value += (1.0 / self.n) * (value - self.value)

    def get(self) -> float:
        return self.value

    def __getstate__(self):
        return self.fading_factor, self.n, self.value

    def __setstate__(self, state) -> None:
        self.fading_factor, self.n, self.value = state
        self.value = float(self.value)

    def to_state(self) -> list:
        return [self.fading_factor, self.n, self.value]

    @classmethod
    def from_state(cls, state, where: str = "FadingMean") -> "FadingMean":
        fading_factor, n, value = array(state, where, 3)
        mean = cls(number(fading_factor, where))
        mean.n, mean.value = integer(n, where), real(value, where)
        return mean

    def peek(self, value: float) -> float:
        """What :meth:`get` would return after ``update(value)``, without updating."""
        alpha = max(1.0 / (self.n + 1), self.fading_factor)
        return self.value + alpha * (value - self.value)


class HourlyMean:
    """A :class:`FadingMean` per local hour of the day, kept as two lists (counts and values).

    >>> rates = HourlyMean(fading_factor=0.1)
    >>> for _ in range(50):
    ...     rates.update(7, 1.0)
    ...     rates.update(3, 0.0)
    >>> rates.get(7), rates.get(3), rates.count(7), rates.count(12)
    (1.0, 0.0, 50, 0)
    """

    __slots__ = ("fading_factor", "n", "values")

    def __init__(self, fading_factor: float = 0.02) -> None:
        self.fading_factor = fading_factor
        self.n = [0] * 24        # values seen, per hour
        self.values = [0.0] * 24  # the mean, per hour (read directly where speed matters)

    def update(self, hour: int, value: float) -> None:
        n = self.n[hour]
        if n * self.fading_factor >= 1.0:  # as FadingMean.update
            self.values[hour] = self.fading_factor * value + (1.0 - self.fading_factor) * self.values[hour]
            self.n[hour] = n + 1
        else:
            self.n[hour] = n = n + 1
            self.values[hour] += (1.0 / n) * (value - self.values[hour])

    def get(self, hour: int) -> float:
        return self.values[hour]

    def count(self, hour: int) -> int:
        return self.n[hour]

    def snapshot(self) -> tuple[float, ...]:
        return tuple(round(v, 12) for v in self.values)

    def __getstate__(self):
        return self.fading_factor, list(zip(self.n, self.values))

    def __setstate__(self, state) -> None:
        self.fading_factor, means = state
        self.n = [n for n, _ in means]
        self.values = [float(v) for _, v in means]

    def to_state(self) -> dict:
        return {"fading_factor": self.fading_factor, "n": self.n, "values": pack_floats(self.values)}

    @classmethod
    def from_state(cls, state, where: str = "HourlyMean") -> "HourlyMean":
        means = cls(number(entry(state, "fading_factor", where), where))
        means.n = [integer(n, where + ".n") for n in array(entry(state, "n", where), where + ".n", 24)]
        means.values = decode_floats(entry(state, "values", where), where + ".values", 24)
        return means


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

    Times are data time in POSIX seconds (an observation's ``x["t"]``).

    >>> t0, day = 1_767_225_600.0, 86_400  # 2026-01-01 00:00 UTC
    >>> m = DecayingMax(half_life_days=10)
    >>> m.update(8.0, t0); m.get(t0)
    8.0
    >>> m.update(3.0, t0 + day); round(m.get(t0 + 10 * day), 2)
    4.0
    """

    __slots__ = ("half_life_days", "_value", "_at", "n")

    def __init__(self, half_life_days: float = 60.0) -> None:
        self.half_life_days = half_life_days
        self._value = 0.0
        self._at: float | None = None  # POSIX seconds of the last update
        self.n = 0

    def get(self, now: float) -> float:
        at = self._at
        if at is None:
            return 0.0
        days = (now - at if now > at else 0.0) / 86400.0
        return self._value * math.exp(-_LN2 * days / self.half_life_days)

    def update(self, value: float, now: float) -> None:
        current = self.get(now)
        self._value = max(current, value)
        self._at = now
        self.n += 1

    def nudge(self, floor: float, factor: float, now: float) -> None:
        """Raise the maximum to ``factor`` × max(itself, ``floor``): after a flagged episode ended.

        A flagged episode is never learned as normal, but if a household's life has changed
        (new job, new habit) the same "anomaly" recurs; each one raising the bar a little means
        it stops alarming after a few, while one real emergency hardly moves it.
        """
        self._value = max(self.get(now), floor) * factor
        self._at = now

    def __getstate__(self):
        return self.half_life_days, self._value, self._at, self.n

    def __setstate__(self, state) -> None:
        self.half_life_days, self._value, self._at, self.n = state

    def to_state(self) -> list:
        return [self.half_life_days, self._value, self._at, self.n]

    @classmethod
    def from_state(cls, state, where: str = "DecayingMax") -> "DecayingMax":
        half_life_days, value, at, n = array(state, where, 4)
        top = cls(number(half_life_days, where))
        top._value, top._at, top.n = number(value, where), optional(number)(at, where), integer(n, where)
        return top


class DecayingTopK:
    """The ``k`` largest values seen, each forgetting with a half-life in data time.

    A robust "longest this household normally does": :meth:`get` with ``rank=2`` ignores the single
    most extreme value (one trip, one odd day), which a :class:`DecayingMax` would carry for months.
    All kept values decay together, so one time stamp serves them all.

    >>> t0, day = 1_767_225_600.0, 86_400  # POSIX seconds, as DecayingMax
    >>> top = DecayingTopK(k=3, half_life_days=10)
    >>> for v in [4.0, 30.0, 5.0, 3.0]:
    ...     top.update(v, t0)
    >>> top.get(t0, rank=1), top.get(t0, rank=2), top.values(t0)
    (30.0, 5.0, [30.0, 5.0, 4.0])
    >>> round(top.get(t0 + 10 * day, rank=2), 2)
    2.5
    """

    __slots__ = ("k", "half_life_days", "_values", "_at", "n")

    def __init__(self, k: int = 3, half_life_days: float = 60.0) -> None:
        self.k = k
        self.half_life_days = half_life_days
        self._values: list[float] = []  # largest first, as they stood at _at
        self._at: float | None = None   # POSIX seconds of the last update
        self.n = 0

    def decay(self, at: float, now: float) -> float:
        """How much a value kept at POSIX seconds ``at`` has faded by ``now``."""
        days = (now - at if now > at else 0.0) / 86400.0
        return math.exp(-_LN2 * days / self.half_life_days)

    def values(self, now: float) -> list[float]:
        """The kept values as they stand at ``now``, largest first."""
        if self._at is None:
            return []
        decay = self.decay(self._at, now)
        return [v * decay for v in self._values]

    def get(self, now: float, rank: int = 1) -> float:
        """The ``rank``-th largest value at ``now`` (0.0 when fewer are kept)."""
        values = self.values(now)
        return values[rank - 1] if len(values) >= rank else 0.0

    def update(self, value: float, now: float) -> None:
        values = self.values(now)
        if len(values) >= self.k and value <= values[-1] and self._at is not None:
            self.n += 1  # changes nothing kept: skip the restamp (cheap for the many short silences)
            return
        self._values = sorted(values + [float(value)], reverse=True)[: self.k]
        self._at = now
        self.n += 1

    def __getstate__(self):
        return self.k, self.half_life_days, self._values, self._at, self.n

    def __setstate__(self, state) -> None:
        self.k, self.half_life_days, self._values, self._at, self.n = state

    def to_state(self) -> list:
        return [self.k, self.half_life_days, self._values, self._at, self.n]

    @classmethod
    def from_state(cls, state, where: str = "DecayingTopK") -> "DecayingTopK":
        k, half_life_days, values, at, n = array(state, where, 5)
        top = cls(integer(k, where), number(half_life_days, where))
        top._values = [number(v, where) for v in array(values, where)]
        top._at, top.n = optional(number)(at, where), integer(n, where)
        return top

    @staticmethod
    def many_to_state(tops: list["DecayingTopK"]) -> dict:
        """Many alike (one ``k``, one half-life: a detector's 24 hours) as columns, the floats packed: a
        third of the text of a list of :meth:`to_state`, and written several times faster."""
        first = tops[0]
        if any(t.k != first.k or t.half_life_days != first.half_life_days for t in tops):
            raise ValueError("DecayingTopK.many_to_state: not alike")
        return {"k": first.k, "half_life_days": first.half_life_days, "n": [t.n for t in tops],
                "kept": [len(t._values) for t in tops],
                "values": pack_floats([v for t in tops for v in t._values]),
                "at": pack_floats([math.nan if t._at is None else t._at for t in tops])}

    @classmethod
    def many_from_state(cls, state, where: str = "DecayingTopK") -> list["DecayingTopK"]:
        k, half_life_days = integer(entry(state, "k", where), where), number(entry(state, "half_life_days", where), where)
        ns = [integer(n, where + ".n") for n in array(entry(state, "n", where), where + ".n")]
        kept = [integer(c, where + ".kept") for c in array(entry(state, "kept", where), where + ".kept", len(ns))]
        values = decode_floats(entry(state, "values", where), where + ".values", sum(kept))
        ats = decode_floats(entry(state, "at", where), where + ".at", len(ns))
        tops, i = [], 0
        for n, c, at in zip(ns, kept, ats):
            top = cls(k, half_life_days)
            top._values, top._at, top.n = values[i:i + c], None if math.isnan(at) else at, n
            tops.append(top)
            i += c
        return tops


class Switches:
    """Tells someone switching an appliance on or off from the loads that run by themselves.

    Electricity is occupant activity only where it *changes* more than the household's automatic
    loads make it change: a fridge or freezer cycling, standby, a thermostat. Those are learned from
    the change between consecutive readings in the small hours (``quiet_hours``, local), when the
    occupant is asleep: a switch is a change of at least ``min_kw`` and ``z`` standard deviations
    above that. A kettle, the hob, lights or the television going on or off is a switch; a light left
    on is not (it does not change), so a fall with the lights on still looks silent.

    >>> from datetime import datetime, timedelta, timezone
    >>> from detectors.base import observation
    >>> sw = Switches()
    >>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
    >>> def x(i, kwh):
    ...     t = t0 + timedelta(minutes=15 * i)
    ...     return observation("electricity", t, kwh, 15, local=t)
    >>> for i in range(96 * 7):  # a week of the fridge cycling: 0.02-0.05 kWh per quarter-hour
    ...     sw.update(x(i, 0.02 + 0.03 * (i % 3 == 0)))
    >>> sw.is_switch(x(96 * 7, 0.02)), sw.is_switch(x(96 * 7, 0.20))  # the fridge; a kettle
    (False, True)
    """

    __slots__ = ("min_kw", "z", "quiet_hours", "_last", "_mean", "_square", "_threshold")

    def __init__(self, min_kw: float = 0.1, z: float = 4.0, quiet_hours: tuple[int, ...] = (1, 2, 3, 4),
                 fading_factor: float = 0.01) -> None:
        self.min_kw = min_kw
        self.z = z
        self.quiet_hours = tuple(quiet_hours)
        self._last: float | None = None  # kW of the previous reading (None after missing data)
        self._mean = FadingMean(fading_factor)  # |change| in the quiet hours, kW
        self._square = FadingMean(fading_factor)
        self._threshold = self._compute_threshold()

    @staticmethod
    def _kw(x: dict) -> float:
        return x["value"] * 60.0 / x["minutes"]

    def change(self, x: dict) -> float:
        """|kW now - kW before|; 0.0 after missing data (the change is unknown)."""
        if self._last is None or x["gap"]:
            return 0.0
        return abs(self._kw(x) - self._last)

    def _compute_threshold(self) -> float:
        mean = self._mean.get()
        spread = math.sqrt(max(self._square.get() - mean * mean, 0.0))
        return max(self.min_kw, mean + self.z * spread)

    def threshold(self) -> float:
        return self._threshold  # changes only when the quiet hours teach something

    def is_switch(self, x: dict) -> bool:
        return self.change(x) >= self._threshold

    def follow(self, x: dict) -> None:
        """Remember this reading's power without learning from its change (a flagged interval)."""
        self._last = self._kw(x)

    def update(self, x: dict) -> None:
        change = self.change(x)
        if x["hour"] in self.quiet_hours and self._last is not None and not x["gap"]:
            self._mean.update(change)
            self._square.update(change * change)
            self._threshold = self._compute_threshold()
        self._last = self._kw(x)

    def __getstate__(self):
        return self.min_kw, self.z, self.quiet_hours, self._last, self._mean, self._square

    def __setstate__(self, state) -> None:
        self.min_kw, self.z, self.quiet_hours, self._last, self._mean, self._square = state
        self._threshold = self._compute_threshold()

    def to_state(self) -> dict:
        return {"min_kw": self.min_kw, "z": self.z, "quiet_hours": list(self.quiet_hours), "last": self._last,
                "mean": self._mean.to_state(), "square": self._square.to_state()}

    @classmethod
    def from_state(cls, state, where: str = "Switches") -> "Switches":
        switches = cls.__new__(cls)
        switches.min_kw = number(entry(state, "min_kw", where), where)
        switches.z = number(entry(state, "z", where), where)
        switches.quiet_hours = tuple(integer(h, where) for h in array(entry(state, "quiet_hours", where), where))
        switches._last = optional(number)(entry(state, "last", where), where)
        switches._mean = FadingMean.from_state(entry(state, "mean", where), where + ".mean")
        switches._square = FadingMean.from_state(entry(state, "square", where), where + ".square")
        switches._threshold = switches._compute_threshold()
        return switches
