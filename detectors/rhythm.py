"""Building blocks of a household's learned rhythm: hourly rates and a slowly forgetting maximum.

Both are small on purpose (a few hundred bytes pickled): every household keeps several.

Small in memory too: the detect stage keeps thousands of live monitors, so a table per hour of the
day is one object holding ``array('d')`` columns (8 bytes a number), not 24 objects or lists of
float objects (32 bytes a number and ~70 per object). The arithmetic is the same on the same doubles.
"""

from __future__ import annotations

import math
from array import array as _array

from detectors.state import (StateFormatError, array, decode_float_array, decode_floats, entry, integer, integer_array,
                             number, optional, pack_floats, real, shared)

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
        mean = cls(shared(number(fading_factor, where)))
        mean.n, mean.value = integer(n, where), real(value, where)
        return mean

    def peek(self, value: float) -> float:
        """What :meth:`get` would return after ``update(value)``, without updating."""
        alpha = max(1.0 / (self.n + 1), self.fading_factor)
        return self.value + alpha * (value - self.value)


class HourlyMean:
    """A :class:`FadingMean` per local hour of the day, kept as two arrays (counts and values).

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
        self.n = _array("I", [0]) * 24            # values seen, per hour
        self.values = _array("d", [0.0]) * 24      # the mean, per hour (read directly where speed matters)

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
        self.n = _array("I", [n for n, _ in means])
        self.values = _array("d", [float(v) for _, v in means])

    def to_state(self) -> dict:
        return {"fading_factor": self.fading_factor, "n": self.n.tolist(), "values": pack_floats(self.values)}

    @classmethod
    def from_state(cls, state, where: str = "HourlyMean") -> "HourlyMean":
        means = cls.__new__(cls)
        means.fading_factor = shared(number(entry(state, "fading_factor", where), where))
        means.n = integer_array(entry(state, "n", where), where + ".n", 24)
        means.values = decode_float_array(entry(state, "values", where), where + ".values", 24)
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
        top = cls(shared(number(half_life_days, where)))
        top._value, top._at, top.n = number(value, where), optional(number)(at, where), integer(n, where)
        return top


class DecayingMaxima:
    """The :class:`DecayingMax` of each of a detector's windows, as one object.

    A detector updates its windows together (a run's sums over every window at once), so they share one
    time stamp and one count: an ``array('d')`` of the values, one time, one count, where a list of
    :class:`DecayingMax` is an object and three numbers per window. The arithmetic is DecayingMax's, and the
    state record is still each window's :meth:`DecayingMax.to_state`.

    >>> t0, day = 1_767_225_600.0, 86_400  # POSIX seconds, as DecayingMax
    >>> m = DecayingMaxima(2, half_life_days=10)
    >>> m.update_all([8.0, 3.0], t0)
    >>> m.values(t0), [round(v, 2) for v in m.values(t0 + 10 * day)], m.get(1, t0), m.n
    ([8.0, 3.0], [4.0, 1.5], 3.0, 1)
    """

    __slots__ = ("half_life_days", "_values", "_at", "n")

    def __init__(self, size: int, half_life_days: float = 60.0) -> None:
        self.half_life_days = half_life_days
        self._values = _array("d", [0.0]) * size
        self._at: float | None = None  # POSIX seconds of the last update
        self.n = 0

    def __len__(self) -> int:
        return len(self._values)

    def _decay(self, now: float) -> float:
        at = self._at
        days = (now - at if now > at else 0.0) / 86400.0
        return math.exp(-_LN2 * days / self.half_life_days)

    def get(self, i: int, now: float) -> float:
        """:meth:`DecayingMax.get` of window ``i``."""
        return 0.0 if self._at is None else self._values[i] * self._decay(now)

    def values(self, now: float) -> list[float]:
        """Every window's :meth:`get`."""
        if self._at is None:
            return [0.0] * len(self._values)
        decay = self._decay(now)
        return [value * decay for value in self._values]

    def update_all(self, values, now: float) -> None:
        """:meth:`DecayingMax.update` of every window, window ``i`` learning ``values[i]`` (none: nothing learned)."""
        if len(values) == 0:
            return
        self._values = self._of(max(current, value)
                                for current, value in zip(self.values(now), values, strict=True))
        self._at = now
        self.n += 1

    def nudge_all(self, floors, factor: float, now: float) -> None:
        """:meth:`DecayingMax.nudge` of every window, window ``i`` to at least ``floors[i]``."""
        self._values = self._of(max(current, floor) * factor
                                for current, floor in zip(self.values(now), floors, strict=True))
        self._at = now

    @staticmethod
    def _of(values) -> _array:
        return _array("d", list(values))

    def snapshot(self) -> tuple[tuple[float, int], ...]:
        return tuple((round(value, 9), self.n) for value in self._values)

    def __getstate__(self):
        return self.to_state()  # plain values, as HourlyTopK

    def __setstate__(self, state) -> None:
        maxima = DecayingMaxima.from_state(state)
        for name in DecayingMaxima.__slots__:
            setattr(self, name, getattr(maxima, name))

    @classmethod
    def of(cls, maxima: list[DecayingMax]) -> "DecayingMaxima":
        """The table holding what a list of :class:`DecayingMax` updated together hold (a pickled state of before)."""
        return cls.from_state([m.to_state() for m in maxima])

    def to_state(self) -> list:
        return [[self.half_life_days, value, self._at, self.n] for value in self._values]

    @classmethod
    def from_state(cls, state, where: str = "DecayingMaxima") -> "DecayingMaxima":
        windows = [array(item, where, 4) for item in array(state, where)]
        maxima = cls(len(windows))
        if windows:  # read as DecayingMax.from_state reads each
            half_life_days, _, at, n = windows[0]
            maxima.half_life_days = shared(number(half_life_days, where))
            maxima._at, maxima.n = optional(number)(at, where), integer(n, where)
            if any(repr(w[0]) != repr(half_life_days) or repr(w[2]) != repr(at) or w[3] != n for w in windows):
                raise StateFormatError(f"{where}: windows not updated together")
            maxima._values = cls._of(number(w[1], where) for w in windows)
        return maxima


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


class HourlyTopK:
    """A :class:`DecayingTopK` per local hour of the day, as one object: what the 24 would keep, in
    ``array`` columns (an hour's ``k`` slots of values, its time stamp, its count of updates). An hour keeps
    ``min(count, k)`` values: each update adds one until ``k`` are kept.

    The state record is :meth:`DecayingTopK.many_to_state` of the 24, so records do not change.

    >>> t0, day = 1_767_225_600.0, 86_400  # POSIX seconds, as DecayingTopK
    >>> tops = HourlyTopK(k=3, half_life_days=10)
    >>> for v in [4.0, 30.0, 5.0, 3.0]:
    ...     tops.update(7, v, t0)
    >>> tops.values(7, t0), tops.kept(7).tolist(), tops.values(8, t0), tops.n[7]
    ([30.0, 5.0, 4.0], [30.0, 5.0, 4.0], [], 4)
    >>> round(tops.values(7, t0 + 10 * day)[1], 2)
    2.5
    """

    __slots__ = ("k", "half_life_days", "_values", "_at", "n")

    def __init__(self, k: int = 3, half_life_days: float = 60.0) -> None:
        self.k = k
        self.half_life_days = half_life_days
        self._values = _array("d", [0.0]) * (24 * k)  # hour h: [h*k, h*k + min(n[h], k)), largest first
        self._at = _array("d", [math.nan]) * 24          # POSIX seconds of the hour's last update; NaN: none yet
        self.n = _array("I", [0]) * 24                   # updates per hour

    def decay(self, hour: int, now: float) -> float:
        """How much the values kept for ``hour`` have faded by ``now`` (:meth:`DecayingTopK.decay`)."""
        at = self._at[hour]
        days = (now - at if now > at else 0.0) / 86400.0
        return math.exp(-_LN2 * days / self.half_life_days)

    def kept(self, hour: int) -> _array:
        """The values kept for ``hour`` as they stood at its last update, largest first."""
        start = hour * self.k
        return self._values[start:start + min(self.n[hour], self.k)]

    def pooled(self, hours, now: float) -> list[tuple[float, float, int]]:
        """``(value as it stands at now, value kept, hour)`` for each value kept in ``hours``, in that order."""
        k, n, values = self.k, self.n, self._values
        out = []
        for hour in hours:
            kept = min(n[hour], k)
            if kept:
                decay = self.decay(hour, now)  # what DecayingTopK.decay gives for each of the hour's values
                out += [(v * decay, v, hour) for v in values[hour * k:hour * k + kept]]
        return out

    def values(self, hour: int, now: float) -> list[float]:
        """The kept values of ``hour`` as they stand at ``now``, largest first (:meth:`DecayingTopK.values`)."""
        if not self.n[hour]:
            return []
        decay = self.decay(hour, now)
        return [v * decay for v in self.kept(hour)]

    def update(self, hour: int, value: float, now: float) -> None:
        """:meth:`DecayingTopK.update` of ``hour``'s values."""
        values = self.values(hour, now)
        if len(values) >= self.k and value <= values[-1]:
            self.n[hour] += 1  # changes nothing kept: skip the restamp
            return
        values = sorted(values + [float(value)], reverse=True)[: self.k]
        start = hour * self.k
        self._values[start:start + len(values)] = _array("d", values)
        self._at[hour] = now
        self.n[hour] += 1

    def __getstate__(self):
        return self.to_state()  # plain values: pickles hold no arrays (the legacy unpickler allows none)

    def __setstate__(self, state) -> None:
        table = HourlyTopK.from_state(state)
        for name in HourlyTopK.__slots__:
            setattr(self, name, getattr(table, name))

    @classmethod
    def of(cls, tops: list["DecayingTopK"]) -> "HourlyTopK":
        """The table holding what 24 alike :class:`DecayingTopK` hold (a pickled state of before the table)."""
        return cls.from_state(DecayingTopK.many_to_state(tops))

    def to_state(self) -> dict:
        """As :meth:`DecayingTopK.many_to_state` of the 24 hours."""
        k = self.k
        kept = [n if n < k else k for n in self.n]
        held = sum(kept)
        if held == 24 * k:  # every hour full (a household past its first days): the whole table, in order
            values = self._values
        elif not held:  # nothing yet (a new household)
            values = _array("d")
        else:
            values = _array("d")
            for hour in range(24):
                values += self._values[hour * k:hour * k + kept[hour]]
        return {"k": k, "half_life_days": self.half_life_days, "n": self.n.tolist(), "kept": kept,
                "values": pack_floats(values), "at": pack_floats(self._at)}

    @classmethod
    def from_state(cls, state, where: str = "HourlyTopK") -> "HourlyTopK":
        k = integer(entry(state, "k", where), where)
        half_life_days = shared(number(entry(state, "half_life_days", where), where))
        if not 1 <= k <= 1000:
            raise StateFormatError(f"{where}.k: {k} is not a number of values to keep")
        tops = cls(k, half_life_days)
        tops.n = integer_array(entry(state, "n", where), where + ".n", 24)
        kept = [integer(c, where + ".kept") for c in array(entry(state, "kept", where), where + ".kept", 24)]
        if kept != [min(n, k) for n in tops.n]:
            raise StateFormatError(f"{where}.kept: expected min(n, k) values per hour")
        values = decode_float_array(entry(state, "values", where), where + ".values", sum(kept))
        tops._at = decode_float_array(entry(state, "at", where), where + ".at", 24)
        i = 0
        for hour, c in enumerate(kept):
            tops._values[hour * k:hour * k + c] = values[i:i + c]
            i += c
        return tops


class Steps:
    """The latest intervals' ``(minutes, amount)``, oldest first: a bounded deque of pairs, kept as one
    ``array('d')`` (an empty deque alone is 600 bytes, a pair of floats 100).

    >>> steps = Steps()
    >>> for i in range(4):
    ...     steps.append(15.0, float(i))
    >>> steps.popleft(), len(steps), list(reversed(steps)), steps.minutes()
    ((15.0, 0.0), 3, [(15.0, 3.0), (15.0, 2.0), (15.0, 1.0)], 45.0)
    """

    __slots__ = ("_flat",)

    def __init__(self, pairs=()) -> None:
        self._flat = _array("d")
        for minutes, amount in pairs:
            self.append(minutes, amount)

    def append(self, minutes: float, amount: float) -> None:
        self._flat.extend((minutes, amount))

    def popleft(self) -> tuple[float, float]:
        flat = self._flat
        pair = flat[0], flat[1]
        del flat[:2]
        return pair

    def clear(self) -> None:
        del self._flat[:]

    def minutes(self) -> float:
        """The minutes of all the steps (``sum`` in order, as of a deque's)."""
        return sum(self._flat[0::2])

    def __len__(self) -> int:
        return len(self._flat) // 2

    def __iter__(self):
        flat = self._flat
        return zip(flat[0::2], flat[1::2])

    def __reversed__(self):
        flat = self._flat
        return zip(flat[-2::-2], flat[::-2])

    def __eq__(self, other) -> bool:
        return isinstance(other, Steps) and self._flat == other._flat

    def __repr__(self) -> str:
        return f"Steps({list(self)!r})"

    def __getstate__(self):
        return (list(self),)  # plain values (and never empty: an empty state would not be restored)

    def __setstate__(self, state) -> None:
        self.__init__(state[0])

    def to_state(self) -> list:
        return [[minutes, amount] for minutes, amount in self]  # as a deque of pairs was written

    @classmethod
    def from_state(cls, state, where: str = "Steps") -> "Steps":
        return cls((number(minutes, where), number(amount, where))
                   for minutes, amount in (array(pair, where, 2) for pair in array(state, where)))


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
        switches.min_kw = shared(number(entry(state, "min_kw", where), where))
        switches.z = shared(number(entry(state, "z", where), where))
        quiet_hours = array(entry(state, "quiet_hours", where), where)
        switches.quiet_hours = shared(tuple(integer(h, where) for h in quiet_hours))
        switches._last = optional(number)(entry(state, "last", where), where)
        switches._mean = FadingMean.from_state(entry(state, "mean", where), where + ".mean")
        switches._square = FadingMean.from_state(entry(state, "square", where), where + ".square")
        switches._threshold = switches._compute_threshold()
        return switches
