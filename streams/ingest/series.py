"""One household's meter series: de-duplication and cumulative registers -> interval consumption.

A series is one (household, meter). Its :class:`SeriesState` is small and JSON-serialisable,
so the streaming path keeps it in a changelog-backed table and the offline importers in a dict.

Rules, in the order they are applied to a reading at time ``t``:

1. **Too late** — ``t`` is older than the newest accepted reading minus the de-duplication
   horizon (default 48 h): we can no longer tell whether it is a duplicate -> dead-letter
   ``too_late``.
2. **Duplicate** — a reading with the same ``t`` was already accepted (or absorbed into the
   register baseline) for this series
   (same household, meter and ts; the value is not compared) -> counted, not passed on.
3. **Interval reading** — passed on as is, unless it is more than a home could use in its
   interval (``max_per_hour`` x interval, one day if the interval is unknown) -> ``implausible_value``.
4. **Register reading** — compared with the previous register reading of the series:

   * first register of a series: becomes the **baseline**; it tells nothing about use before
     it, so nothing is emitted (counted as valid, ``register_baselines_total{reason="first"}``);
   * earlier than the previous register read -> ``register_out_of_order`` (we would have to
     rewrite an interval already passed on);
   * rise ``d >= 0``: ``d`` was used between the two reads; the interval is the time between
     them, so irregular read times give irregular intervals (``interval_s`` says how long);
     a rise beyond ``max_per_hour`` x interval (at least 15 min, as read times jitter) is dead-lettered ``implausible_value`` and the
     baseline moves to the new register so one garbage read does not poison the series;
   * fall, with ``rollover_at`` given, previous read in the top 10% and new one in the bottom
     10% of the range: the register wrapped: use = ``rollover_at - previous + new``;
   * small fall (at most ``readback_tolerance``): a read-back or a stale read arriving late
     (real feeds have both). Emitted as 0 with flag ``register_readback``, and the baseline
     stays at the higher value, so the next rise is not counted twice;
   * large fall: the register was reset or the meter replaced. New baseline, nothing emitted
     for the interval (its use is unknown; ``register_baselines_total{reason="reset"}``).

>>> from schemas.readings import MeterRegisterReading
>>> state, limits = SeriesState(), IngestLimits()
>>> def reg(ts, value):
...     r = MeterRegisterReading(household_id="hh-1", meter="water", ts=ts, register=value)
...     return accept_reading(state, r, limits)
>>> reg("2026-03-01T07:00:00Z", 1000.0)
RegisterBaseline(reason='first')
>>> out = reg("2026-03-01T08:10:00Z", 1012.5)
>>> out.reading.value, out.reading.interval_s
(12.5, 4200)
>>> reg("2026-03-01T08:10:00Z", 1012.5)
Duplicate()
>>> reg("2026-03-01T09:00:00Z", 1011.0).reading.flags
('register_readback',)
>>> reg("2026-03-01T10:00:00Z", 1013.0).reading.value   # measured from the high-water mark 1012.5
0.5
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import timedelta

from schemas.dead_letter import RejectReason
from schemas.readings import Meter, MeterReading, MeterRegisterReading, ValidatedReading
from streams.ingest.parse import Rejection

_DAY_S = 86400


@dataclass(frozen=True)
class IngestLimits:
    """What a single home can plausibly do; beyond it a number is a fault, not use."""

    dedup_horizon: timedelta = timedelta(hours=48)
    # 60 L/min is more than a household connection delivers; 60 kW is a three-phase supply at full load.
    max_per_hour: dict[Meter, float] = field(default_factory=lambda: {Meter.WATER: 3600.0, Meter.ELECTRICITY: 60.0})
    # A fall of at most this much is a read-back or stale read; more is a reset or a new meter.
    readback_tolerance: dict[Meter, float] = field(default_factory=lambda: {Meter.WATER: 500.0, Meter.ELECTRICITY: 5.0})
    # Read times a few seconds apart are clock jitter, not a burst: judge rates over at least this long.
    min_rate_window: timedelta = timedelta(minutes=15)


@dataclass
class SeriesState:
    """What one (household, meter) series remembers. Times are epoch milliseconds."""

    newest_ms: int | None = None
    recent_ms: list[int] = field(default_factory=list)  # accepted timestamps within the horizon, ascending
    register: float | None = None  # high-water mark of the register series
    register_ms: int | None = None  # time of the latest register read
    # Offset (readings.by-household) of the last message applied to this series: the stream stage
    # skips a message at or below it, redelivered after a crash (Quix keeps the offset in each key's
    # state for the same reason). Without it a redelivered reading older than the horizon behind what
    # the restored state has seen would be dead-lettered as too_late although it was emitted.
    applied_offset: int | None = None
    # The same for readings.raw, per raw partition (a series' readings come from one raw partition
    # unless the utility re-keys its feed): ingest-validate, restarted or rebalanced, sends the raw
    # messages since its last commit to readings.by-household again, at new offsets there.
    raw_offsets: dict[int, int] = field(default_factory=dict)
    # The same for raw messages applied directly (keyed by household already: no re-key hop), apart
    # from ``raw_offsets``: a re-keyed reading of the series may still be on its way through
    # readings.by-household when a later direct one is applied, so one high-water mark would skip it.
    direct_offsets: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        # Every reading rewrites this record in the changelog, so keep it short: the timestamps as
        # runs of equal steps ([first, step, count]); a regular meter's 48 hours is a single run.
        data = {"n": self.newest_ms, "t": _as_runs(self.recent_ms), "r": self.register, "rt": self.register_ms}
        if self.applied_offset is not None:
            data["o"] = self.applied_offset
        if self.raw_offsets:
            data["ro"] = {str(partition): offset for partition, offset in self.raw_offsets.items()}
        if self.direct_offsets:
            data["do"] = {str(partition): offset for partition, offset in self.direct_offsets.items()}
        return data

    @classmethod
    def from_json(cls, data: dict | None) -> "SeriesState":
        if not data:
            return cls()
        return cls(newest_ms=data.get("n"), recent_ms=_from_runs(data.get("t", [])),
                   register=data.get("r"), register_ms=data.get("rt"), applied_offset=data.get("o"),
                   raw_offsets={int(partition): offset for partition, offset in data.get("ro", {}).items()},
                   direct_offsets={int(partition): offset for partition, offset in data.get("do", {}).items()})

    @staticmethod
    def progress(data: dict | None) -> int | None:
        """How far the series state ``data`` (:meth:`to_json`) has read: the sum of its offsets, which every applied
        message raises (each path's offsets only grow), so a restore can keep the furthest of two writers'
        states (streams/recovery.py ``newest_wins``). None when it has applied nothing from a topic.

        >>> SeriesState.progress({"o": 40, "ro": {"0": 7}, "do": {"1": 3}}), SeriesState.progress({"n": 1})
        (50, None)
        """
        if not isinstance(data, dict):
            return None
        offsets = [data["o"]] if data.get("o") is not None else []
        offsets += [*data.get("ro", {}).values(), *data.get("do", {}).values()]
        return sum(offsets) if offsets else None

    def applied(self, offset: int) -> bool:
        """Was the message at ``offset`` (readings.by-household) already applied to this series?

        >>> state = SeriesState(applied_offset=41)
        >>> state.applied(41), state.applied(42), SeriesState().applied(0)
        (True, False, False)
        """
        return self.applied_offset is not None and offset <= self.applied_offset

    def applied_raw(self, partition: int, offset: int) -> bool:
        """Was the readings.raw message at (``partition``, ``offset``) already applied to this series?

        >>> state = SeriesState(raw_offsets={3: 41})
        >>> state.applied_raw(3, 41), state.applied_raw(3, 42), state.applied_raw(0, 7)
        (True, False, False)
        """
        newest = self.raw_offsets.get(partition)
        return newest is not None and offset <= newest

    def applied_direct(self, partition: int, offset: int) -> bool:
        """Was the readings.raw message at (``partition``, ``offset``) already applied directly to this series?

        >>> state = SeriesState(direct_offsets={3: 41}, raw_offsets={3: 50})
        >>> state.applied_direct(3, 41), state.applied_direct(3, 42)
        (True, False)
        """
        newest = self.direct_offsets.get(partition)
        return newest is not None and offset <= newest

    def note_applied(self, offset: int, raw_partition: int, raw_offset: int) -> None:
        """A message of readings.by-household at ``offset``, from (``raw_partition``, ``raw_offset``) of readings.raw."""
        self.applied_offset = offset
        if raw_partition >= 0:  # -1: not from a topic partition (HTTP rejections never get this far)
            self.raw_offsets[raw_partition] = raw_offset

    def note_applied_direct(self, raw_partition: int, raw_offset: int) -> None:
        """A message of readings.raw applied without the re-key hop."""
        self.direct_offsets[raw_partition] = raw_offset

    def _seen(self, t: int) -> bool:
        i = bisect.bisect_left(self.recent_ms, t)
        return i < len(self.recent_ms) and self.recent_ms[i] == t

    def _remember(self, t: int, horizon_ms: int) -> None:
        if not self.recent_ms or t > self.recent_ms[-1]:
            self.recent_ms.append(t)
        else:
            bisect.insort(self.recent_ms, t)
        if self.newest_ms is None or t > self.newest_ms:
            self.newest_ms = t
        cutoff = self.newest_ms - horizon_ms
        if self.recent_ms[0] < cutoff:
            del self.recent_ms[: bisect.bisect_left(self.recent_ms, cutoff)]


def _as_runs(times: list[int]) -> list[list[int]]:
    """Ascending ints as arithmetic runs.

    >>> _as_runs([0, 900, 1800, 2700, 2710])
    [[0, 900, 4], [2710, 0, 1]]
    """
    runs: list[list[int]] = []
    i = 0
    while i < len(times):
        step = times[i + 1] - times[i] if i + 1 < len(times) else 0
        j = i + 1
        while step and j < len(times) and times[j] - times[j - 1] == step:
            j += 1
        runs.append([times[i], step, j - i])
        i = j
    return runs


def _from_runs(runs: list[list[int]]) -> list[int]:
    return [first + step * k for first, step, count in runs for k in range(count)]


@dataclass(frozen=True, slots=True)
class Emitted:
    reading: ValidatedReading


@dataclass(frozen=True, slots=True)
class Duplicate:
    pass


@dataclass(frozen=True, slots=True)
class RegisterBaseline:
    reason: str  # "first" or "reset"


Outcome = Emitted | Duplicate | RegisterBaseline | Rejection


def accept_reading(state: SeriesState, reading: MeterReading | MeterRegisterReading, limits: IngestLimits) -> Outcome:
    """Apply the rules above to one reading of this series; updates ``state`` in place."""
    t = int(reading.ts.timestamp() * 1000)
    horizon_ms = int(limits.dedup_horizon.total_seconds() * 1000)
    if state.newest_ms is not None and t < state.newest_ms - horizon_ms:
        return Rejection(RejectReason.TOO_LATE,
                         f"ts is {(state.newest_ms - t) / 3.6e6:.1f} h older than the newest reading of this "
                         f"series; beyond the {limits.dedup_horizon.total_seconds() / 3600:.0f} h de-duplication horizon",
                         reading.household_id)
    if state._seen(t):
        return Duplicate()
    if isinstance(reading, MeterRegisterReading):
        outcome = _register_step(state, reading, t, limits)
    else:
        outcome = _interval_step(reading, limits)
    # Remember what was accepted, or absorbed into the register baseline; a rejected interval reading
    # leaves no trace, so its corrected re-send is not mistaken for a duplicate.
    if not isinstance(outcome, Rejection) or (isinstance(reading, MeterRegisterReading)
                                              and outcome.reason is RejectReason.IMPLAUSIBLE_VALUE):
        state._remember(t, horizon_ms)
    return outcome


def _too_much(value: float, seconds: float, meter: Meter, limits: IngestLimits) -> bool:
    seconds = max(seconds, limits.min_rate_window.total_seconds())
    return value > limits.max_per_hour[meter] * seconds / 3600


def _interval_step(reading: MeterReading, limits: IngestLimits) -> Outcome:
    seconds = reading.interval_s or _DAY_S
    if _too_much(reading.value, seconds, reading.meter, limits):
        return Rejection(RejectReason.IMPLAUSIBLE_VALUE,
                         f"{reading.value:g} in {seconds / 3600:g} h exceeds {limits.max_per_hour[reading.meter]:g} per hour",
                         reading.household_id)
    return Emitted(ValidatedReading(
        household_id=reading.household_id, meter=reading.meter, ts=reading.ts, value=reading.value,
        interval_s=reading.interval_s, source="interval", reading_id=reading.reading_id, utility_id=reading.utility_id))


def _register_step(state: SeriesState, reading: MeterRegisterReading, t: int, limits: IngestLimits) -> Outcome:
    new, previous, previous_ms = reading.register_value, state.register, state.register_ms
    if previous is None or previous_ms is None:
        state.register, state.register_ms = new, t
        return RegisterBaseline("first")
    if t < previous_ms:
        return Rejection(RejectReason.REGISTER_OUT_OF_ORDER,
                         f"register read {(previous_ms - t) / 1000:.0f} s before the previous read of this series",
                         reading.household_id)
    seconds = (t - previous_ms) / 1000
    rise, flags = new - previous, ()
    if rise < 0 and reading.rollover_at and previous >= 0.9 * reading.rollover_at and new <= 0.1 * reading.rollover_at:
        rise, flags = reading.rollover_at - previous + new, ("register_rollover",)
    if rise < 0:
        if -rise <= limits.readback_tolerance[reading.meter]:
            state.register_ms = t  # keep the high-water mark: the next rise is measured from it
            return _emit_register(reading, 0.0, seconds, ("register_readback",))
        state.register, state.register_ms = new, t
        return RegisterBaseline("reset")
    state.register, state.register_ms = new, t
    if _too_much(rise, seconds, reading.meter, limits):
        return Rejection(RejectReason.IMPLAUSIBLE_VALUE,
                         f"register rose {rise:g} in {seconds / 3600:.2f} h, more than "
                         f"{limits.max_per_hour[reading.meter]:g} per hour; baseline moved to the new read",
                         reading.household_id)
    return _emit_register(reading, rise, seconds, flags)


def _emit_register(reading: MeterRegisterReading, value: float, seconds: float, flags: tuple[str, ...]) -> Emitted:
    return Emitted(ValidatedReading(
        household_id=reading.household_id, meter=reading.meter, ts=reading.ts, value=round(value, 6),
        interval_s=max(1, round(seconds)), source="register", flags=flags,
        reading_id=reading.reading_id, utility_id=reading.utility_id))
