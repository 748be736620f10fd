"""Three fixed rules used by deployed services, as baselines for the learned detectors.

Each rule reads one meter of the canonical readings and emits :class:`AnomalyWarning` objects
exactly like a detector, so both are scored by the same code on the same data:

* ``kizuki`` (Japan's water-meter watch services): **no water for 8 h** -> ``inactivity``;
  **water in every interval for 2 h** -> ``continuous_flow``.
* ``shanghai``: **under 10 L of water in the last 12 h** (rolling) -> ``inactivity``.
* ``seoul``: **no change in electricity use for 24 h** -> ``inactivity``. "No change": over the
  last 24 h no interval's average power is more than 0.35 kW above the lowest one. A fridge
  (0.07-0.13 kW), a freezer (0.06-0.11 kW) and a boiler pump (0.09 kW) cycling together stay
  under it; a 2.2-3 kW kettle boiling for 3 minutes adds at least 0.44 kW to its 15-minute
  interval, so it is a change. (On hourly data a kettle adds only ~0.13 kW: not seen.)

Conventions shared by all rules:

* Time, not interval counts. A reading covers ``(previous ts, ts]`` of its series; intervals
  may be irregular (DAIAD: roughly hourly at odd minutes).
* A missing stretch is unknown, never zero use. An interval longer than ``GAP_FACTOR`` (3) x
  the series' usual interval (lower median of its last 32 intervals) is a gap; so is the first
  interval of a series if longer than 3 h, and the first reading, whose interval we cannot see.
  After a gap a rule starts counting again from the reading that ends it, so no rule fires over
  missing data.
* One warning per episode. Once fired, a rule re-arms only when its condition clears
  (water used, flow stopped, 10 L reached, a change in electricity), not after a gap.
* A reading at or before the previous one of its series is skipped (ingest never passes one on).
* ``detected_at`` is the ts of the reading that completed the condition; ``severity`` is
  ``medium`` for all (a fixed rule has no notion of how unusual something is for the household);
  ``score`` is the measured duration (or shortfall) over the rule's threshold.

>>> rows = [("hh-1", "water", f"2026-03-01T{h:02d}:00:00+00:00", 5.0 if h == 0 else 0.0) for h in range(12)]
>>> [(w.kind.value, w.detected_at.hour, w.episode_start.hour) for w in run_baseline_rows("kizuki", rows)]
[('inactivity', 8, 0)]
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from elderwatch.canonical_csv import HEADER, open_csv
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.readings import Meter

BASELINES = ("kizuki", "shanghai", "seoul")
GAP_FACTOR = 3.0
_RECENT = 32  # intervals kept per series for its usual interval
# Before a series has a usual interval, its first interval counts as data up to this long
# (three hours of the coarsest smart-meter interval we expect, hourly).
FIRST_INTERVAL_MAX_S = 3 * 3600.0

KIZUKI_QUIET_S = 8 * 3600.0
KIZUKI_FLOW_S = 2 * 3600.0
SHANGHAI_WINDOW_S = 12 * 3600.0
SHANGHAI_MIN_LITRES = 10.0
SEOUL_WINDOW_S = 24 * 3600.0
SEOUL_CHANGE_KW = 0.35


class IntervalClock:
    """Where one series' readings begin, and whether the interval before a reading is a gap.

    >>> c = IntervalClock()
    >>> [c.interval_start(t) for t in (0.0, 900.0, 1800.0, 1800.0, 9000.0, 9900.0)]
    [None, 0.0, 900.0, False, None, 9000.0]

    ``None``: the interval is unknown (first reading, or a gap); ``False``: out of order, skip.
    """

    __slots__ = ("last", "recent", "usual", "since")

    def __init__(self) -> None:
        self.last: float | None = None
        self.recent: list[float] = []
        self.usual: float | None = None
        self.since = 0  # intervals added since `usual` was computed

    def interval_start(self, t: float) -> float | None | bool:
        last = self.last
        if last is None:
            self.last = t
            return None
        dt = t - last
        if dt <= 0:
            return False
        usual = self.usual
        self.last = t
        recent = self.recent
        recent.append(dt)
        if len(recent) > _RECENT:
            del recent[0]
        self.since += 1
        # the median is recomputed while the series is young, then every _RECENT intervals
        if len(recent) < _RECENT or self.since >= _RECENT:
            self.usual = sorted(recent)[(len(recent) - 1) // 2]
            self.since = 0
        if dt > (FIRST_INTERVAL_MAX_S if usual is None else GAP_FACTOR * usual):
            return None
        return last


def _dt(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def _at(t: float, like: datetime) -> datetime:
    """Epoch seconds as a datetime in the same UTC offset as ``like``."""
    return datetime.fromtimestamp(t, timezone.utc).astimezone(like.tzinfo)


def _warning(rule: str, hid: str, kind: AnomalyKind, meter: Meter, start: datetime, detected: datetime,
             score: float, summary: str, **evidence) -> AnomalyWarning:
    return AnomalyWarning.for_episode(household_id=hid, kind=kind, meter=meter, episode_start=start,
                                      detected_at=detected, score=score, severity=Severity.MEDIUM,
                                      summary=summary, evidence={"rule": rule, **evidence})


class _KizukiState:
    __slots__ = ("hid", "quiet_since", "quiet_ts", "quiet_fired", "flow_since", "flow_fired")

    def __init__(self, hid: str) -> None:
        self.hid = hid
        self.quiet_since: float | None = None  # no water known from here on
        self.quiet_ts = ""
        self.quiet_fired = False
        self.flow_since: float | None = None  # water in every interval from here on
        self.flow_fired = False

    def step(self, t: float, ts: str, start: float | None, value: float) -> AnomalyWarning | None:
        if start is None:  # unknown interval: start counting again at t
            self.quiet_since, self.quiet_ts = t, ts
            if value > 0:
                self.quiet_fired = False
                self.flow_since = t
            else:
                self.flow_since, self.flow_fired = None, False
            return None
        if value > 0:
            self.quiet_since, self.quiet_ts, self.quiet_fired = t, ts, False
            if self.flow_since is None:
                self.flow_since = start
            run = t - self.flow_since
            if run >= KIZUKI_FLOW_S and not self.flow_fired:
                self.flow_fired = True
                detected = _dt(ts)
                return _warning("kizuki", self.hid, AnomalyKind.CONTINUOUS_FLOW, Meter.WATER,
                                _at(self.flow_since, detected), detected, run / KIZUKI_FLOW_S,
                                f"water has flowed in every interval for {run / 3600:.1f} h (kizuki rule: 2 h)",
                                flow_hours=round(run / 3600, 2), threshold_hours=KIZUKI_FLOW_S / 3600)
            return None
        self.flow_since, self.flow_fired = None, False
        quiet = t - self.quiet_since
        if quiet >= KIZUKI_QUIET_S and not self.quiet_fired:
            self.quiet_fired = True
            detected = _dt(ts)
            return _warning("kizuki", self.hid, AnomalyKind.INACTIVITY, Meter.WATER, _dt(self.quiet_ts), detected,
                            quiet / KIZUKI_QUIET_S,
                            f"no water used for {quiet / 3600:.1f} h (kizuki rule: 8 h)",
                            hours_without_water=round(quiet / 3600, 2), threshold_hours=KIZUKI_QUIET_S / 3600)
        return None


class _ShanghaiState:
    # Water in millilitres as integers, so the rolling sum has no floating-point drift.
    __slots__ = ("hid", "window", "total", "known_since", "fired")

    def __init__(self, hid: str) -> None:
        self.hid = hid
        self.window: deque[tuple[float, float, int]] = deque()  # (start, end, mL)
        self.total = 0
        self.known_since: float | None = None
        self.fired = False

    def step(self, t: float, ts: str, start: float | None, value: float) -> AnomalyWarning | None:
        ml = round(value * 1000)
        if start is None:
            self.window.clear()
            self.total = 0
            self.known_since = t
            if ml >= SHANGHAI_MIN_LITRES * 1000:
                self.fired = False
            return None
        window = self.window
        window.append((start, t, ml))
        self.total += ml
        lo = t - SHANGHAI_WINDOW_S
        while window[0][1] <= lo:
            self.total -= window.popleft()[2]
        used = self.total
        a, b, first = window[0]
        if a < lo:  # the oldest interval straddles the window's start: count its share
            used -= first * (lo - a) / (b - a)
        if used >= SHANGHAI_MIN_LITRES * 1000:
            self.fired = False
            return None
        if self.known_since > lo or self.fired:
            return None
        self.fired = True
        detected = _dt(ts)
        litres = used / 1000
        return _warning("shanghai", self.hid, AnomalyKind.INACTIVITY, Meter.WATER, _at(lo, detected), detected,
                        (SHANGHAI_MIN_LITRES - litres) / SHANGHAI_MIN_LITRES,
                        f"{litres:.1f} L of water in the last 12 h (shanghai rule: under 10 L)",
                        litres_12h=round(litres, 1), threshold_litres=SHANGHAI_MIN_LITRES)


class _SeoulState:
    # Monotonic deques of (end, kW): the window's highest and lowest interval power in O(1).
    __slots__ = ("hid", "high", "low", "known_since", "fired")

    def __init__(self, hid: str) -> None:
        self.hid = hid
        self.high: deque[tuple[float, float]] = deque()
        self.low: deque[tuple[float, float]] = deque()
        self.known_since: float | None = None
        self.fired = False

    def step(self, t: float, ts: str, start: float | None, value: float) -> AnomalyWarning | None:
        if start is None:
            self.high.clear()
            self.low.clear()
            self.known_since = t
            return None
        kw = value * 3600.0 / (t - start)
        high, low = self.high, self.low
        while high and high[-1][1] <= kw:
            high.pop()
        high.append((t, kw))
        while low and low[-1][1] >= kw:
            low.pop()
        low.append((t, kw))
        lo = t - SEOUL_WINDOW_S
        while high[0][0] <= lo:
            high.popleft()
        while low[0][0] <= lo:
            low.popleft()
        spread = high[0][1] - low[0][1]
        if spread > SEOUL_CHANGE_KW:
            self.fired = False
            return None
        if self.known_since > lo or self.fired:
            return None
        self.fired = True
        detected = _dt(ts)
        return _warning("seoul", self.hid, AnomalyKind.INACTIVITY, Meter.ELECTRICITY, _at(lo, detected), detected,
                        SEOUL_CHANGE_KW / max(spread, 0.01),
                        f"electricity use has not changed for 24 h (within {spread:.2f} kW; seoul rule: 0.35 kW)",
                        spread_kw=round(spread, 3), threshold_kw=SEOUL_CHANGE_KW)


_RULES = {"kizuki": (Meter.WATER, _KizukiState), "shanghai": (Meter.WATER, _ShanghaiState),
          "seoul": (Meter.ELECTRICITY, _SeoulState)}
#: The meter each rule reads.
BASELINE_METERS = {name: meter for name, (meter, _) in _RULES.items()}


class Span(NamedTuple):
    """First and last reading time of a household (any meter)."""

    first: datetime
    last: datetime


@dataclass
class ReadingsScan:
    """What one pass over a readings file gives: each household's span and each rule's warnings."""

    spans: dict[str, Span]
    warnings: dict[str, list[AnomalyWarning]]
    rows: int = 0
    out_of_order: int = 0
    meters: dict[str, int] = field(default_factory=dict)  # rows per meter


class _Series:
    __slots__ = ("clock", "states")

    def __init__(self, states: list) -> None:
        self.clock = IntervalClock()
        self.states = states


class BaselineRunner:
    """Feeds readings, in any household order, to the chosen rules; per-household state in a dict.

    Within one (household, meter) series, readings must come in time order (as ingest emits them);
    any other row is skipped and counted.
    """

    def __init__(self, names: Sequence[str] = BASELINES) -> None:
        unknown = set(names) - set(_RULES)
        if unknown:
            raise ValueError(f"unknown baseline {sorted(unknown)}; choose from {', '.join(BASELINES)}")
        self.names = tuple(dict.fromkeys(names))
        self.warnings: dict[str, list[AnomalyWarning]] = {n: [] for n in self.names}
        self._series: dict[tuple[str, str], _Series] = {}
        self._span: dict[str, list[float]] = {}  # hid -> [first, last, first_ts, last_ts]
        self.rows = 0
        self.out_of_order = 0
        self.meters: dict[str, int] = {}

    def _new_series(self, hid: str, meter: str) -> _Series:
        states = [(name, _RULES[name][1](hid)) for name in self.names if _RULES[name][0].value == meter]
        series = self._series[(hid, meter)] = _Series(states)
        return series

    def feed(self, hid: str, meter: str, ts: str, t: float, value: float) -> None:
        """One reading: ``t`` is ``ts`` as epoch seconds (the caller may cache the parse)."""
        self.rows += 1
        self.meters[meter] = self.meters.get(meter, 0) + 1
        span = self._span.get(hid)
        if span is None:
            self._span[hid] = [t, t, ts, ts]
        else:
            if t < span[0]:
                span[0], span[2] = t, ts
            if t > span[1]:
                span[1], span[3] = t, ts
        series = self._series.get((hid, meter))
        if series is None:
            series = self._new_series(hid, meter)
        start = series.clock.interval_start(t)
        if start is False:
            self.out_of_order += 1
            return
        for name, state in series.states:
            warning = state.step(t, ts, start, value)
            if warning is not None:
                self.warnings[name].append(warning)

    def result(self) -> ReadingsScan:
        spans = {hid: Span(_dt(s[2]), _dt(s[3])) for hid, s in self._span.items()}
        return ReadingsScan(spans=spans, warnings=self.warnings, rows=self.rows, out_of_order=self.out_of_order,
                            meters=dict(self.meters))


def iter_readings(path: Path | str) -> Iterator[tuple[str, str, str, float]]:
    """``(household_id, meter, ts, value)`` rows of a canonical readings CSV (``.gz`` ok), streamed."""
    with open_csv(Path(path)) as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        missing = set(HEADER) - set(header)
        if missing:
            raise ValueError(f"{path}: not a readings CSV, missing columns {sorted(missing)}")
        i, m, s, v = (header.index(c) for c in HEADER)
        if (i, m, s, v) == (0, 1, 2, 3) and len(header) == 4:
            for hid, meter, ts, value in reader:
                yield hid, meter, ts, float(value)
        else:
            for row in reader:
                yield row[i], row[m], row[s], float(row[v])


def scan_rows(rows: Iterable[tuple[str, str, str, float]], names: Sequence[str] = BASELINES) -> ReadingsScan:
    """Runs the rules ``names`` (may be empty: spans only) over ``(household_id, meter, ts, value)`` rows."""
    runner = BaselineRunner(names)
    feed = runner.feed
    # Simulated files repeat the same few thousand timestamps for every household: parse each once.
    cache: dict[str, float] = {}
    for hid, meter, ts, value in rows:
        t = cache.get(ts)
        if t is None:
            if len(cache) > 1_000_000:
                cache.clear()
            parsed = datetime.fromisoformat(ts)
            if parsed.tzinfo is None:
                raise ValueError(f"timestamp without a UTC offset in readings: {ts!r}")
            t = cache[ts] = parsed.timestamp()
        feed(hid, meter, ts, t, value)
    return runner.result()


def scan_readings(path: Path | str, names: Sequence[str] = BASELINES) -> ReadingsScan:
    """One streaming pass over a readings file: household spans plus the warnings of every rule in ``names``."""
    return scan_rows(iter_readings(path), names)


def run_baseline_rows(name: str, rows: Iterable[tuple[str, str, str, float]]) -> list[AnomalyWarning]:
    """Warnings of one rule over in-memory ``(household_id, meter, ts, value)`` rows."""
    return scan_rows(rows, [name]).warnings[name]


def run_baseline(name: str, readings_path: Path | str) -> list[AnomalyWarning]:
    """Warnings of one rule (``kizuki``, ``shanghai`` or ``seoul``) over a canonical readings file."""
    return scan_readings(readings_path, [name]).warnings[name]


def run_baselines(readings_path: Path | str, names: Sequence[str] = BASELINES) -> dict[str, list[AnomalyWarning]]:
    """Warnings of several rules from one pass over the file."""
    return scan_readings(readings_path, names).warnings


__all__ = ["BASELINES", "BASELINE_METERS", "BaselineRunner", "IntervalClock", "ReadingsScan", "Span", "iter_readings",
           "run_baseline", "run_baseline_rows", "run_baselines", "scan_readings", "scan_rows"]
