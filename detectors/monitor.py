"""All detectors of one household, fed one validated reading at a time.

This is the unit of state: the detect stage keeps one :class:`HouseholdMonitor` per household in
a changelog-backed table (as :meth:`HouseholdMonitor.dumps` bytes), and ``elderwatch detect``
keeps one per household in a dict. Both call :meth:`process` with the household's readings in
the order they arrive, so both produce the same warnings.

What the monitor adds to the detectors:

* the observation ``x``: local time in the household's zone, the interval length, and whether
  the reading follows missing data (then its interval is the usual one: a gap is unknown, never
  zero use);
* episodes: a detector's score crossing 1.0 raises one warning; the episode lasts until the
  score falls back below 0.8, however many readings that takes;
* warm-up: no welfare warning before ``warmup_days`` of data (``meter_offline`` is about data and
  needs no history);
* sensitivity per kind, bounded, turned by staff feedback (:meth:`record_feedback`, rules in
  :mod:`detectors.feedback`). It multiplies scores for the warning decision only; what a detector
  learns follows its own threshold, so feedback that quiets a household's alarms never teaches a
  detector that an emergency is normal.

It also keeps the household's recent use (:class:`detectors.usage.RecentUsage`: hourly totals of the
last 48 local hours per meter, the usual day) for the staff API's ticket detail (:meth:`recent_usage`).

>>> from datetime import datetime, timedelta, timezone
>>> m = HouseholdMonitor("hh-000001", "Europe/London")
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> found = []
>>> for i in range(1, 96 * 30):
...     t = t0 + timedelta(minutes=15 * i)
...     litres = 4.0 if 7 <= t.hour < 22 and i % 3 == 0 else 0.0
...     if i >= 96 * 29 + 40:  # day 30, from 10:00: water running in every interval
...         litres = 6.0
...     found += m.process("water", t, litres)
>>> [(w.kind.value, f"{w.detected_at:%H:%M}") for w in found]
[('continuous_flow', '11:00')]
>>> len(m.dumps()) < 10_000
True
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from detectors.base import Detector, observation
from detectors.continuous_flow import ContinuousFlowDetector
from detectors.decline import DeclineDetector
from detectors.feedback import FeedbackEffect, FeedbackLog
from detectors.inactivity import InactivityDetector
from detectors.meter_offline import MeterOfflineDetector
from detectors.night_activity import NightActivityDetector
from detectors.surge import SurgeDetector
from detectors.state import (DATETIME, FORMAT as STATE_FORMAT, VERSION as STATE_VERSION, LegacyPickleState,
                             StateFormatError, array, dump_record, encode_datetime, entry, integer, load_record, number,
                             optional, real, text, unpickle_legacy)
from detectors.usage import RecentUsage
from schemas.anomaly import WELFARE_KINDS, AnomalyKind, AnomalyWarning
from schemas.detection import DetectionConfig
from schemas.readings import Meter

#: Feedback may move a kind's sensitivity only within these bounds.
SENSITIVITY_BOUNDS = (0.5, 1.5)


#: The detector classes a state record may name (by class name).
DETECTOR_TYPES: dict[str, type[Detector]] = {cls.__name__: cls for cls in (
    InactivityDetector, ContinuousFlowDetector, SurgeDetector, NightActivityDetector, MeterOfflineDetector,
    DeclineDetector)}


def default_detectors() -> list[Detector]:
    return [InactivityDetector(), ContinuousFlowDetector(), SurgeDetector(), NightActivityDetector(),
            MeterOfflineDetector(), DeclineDetector()]


#: An open episode ends when its score falls below this (hysteresis: a score hovering around 1.0
#: is one episode, not a warning each time it crosses).
EPISODE_ENDS_BELOW = 0.8


def episode_opens(open_kinds: set[AnomalyKind], kind: AnomalyKind, score: float, warm: bool) -> bool:
    """The episode rule: a score ≥ 1 opens an episode (once; welfare kinds only after the
    warm-up), a score below :data:`EPISODE_ENDS_BELOW` ends it. Updates ``open_kinds``; True when
    a warning is due."""
    if score < EPISODE_ENDS_BELOW or (score < 1.0 and kind not in open_kinds):
        open_kinds.discard(kind)
        return False
    if score < 1.0:
        return False
    if kind in open_kinds or not (warm or kind not in WELFARE_KINDS):
        return False
    open_kinds.add(kind)
    return True


#: ``MonitorConfig.version`` without a detection config file: the operating points below.
BUILTIN_VERSION = "builtin"

#: Operating point per kind: the sensitivity each kind's score is multiplied by before the ≥ 1 test,
#: chosen on each kind's own recall / false-alarm curve (``python -m bench.bench_detect_family``
#: recommends them from the tuning data sets; its report says how). Feedback multiplies on top.
OPERATING_POINTS: dict[str, float] = {
    "inactivity": 0.8,
    "continuous_flow": 0.7,
    "surge": 0.7,
    "night_activity": 0.7,
    "meter_offline": 1.0,
    "decline": 1.0,
}


@dataclass(frozen=True)
class MonitorConfig:
    """Household-independent settings. Everything else is learned per household."""

    warmup_days: float = 21.0
    #: A step longer than this many usual intervals is missing data, not one long interval.
    gap_factor: float = 3.0
    #: Interval assumed for a meter's first reading.
    first_interval_minutes: float = 15.0
    kinds: frozenset[AnomalyKind] = field(default_factory=lambda: frozenset(AnomalyKind))
    #: kind (value) -> operating point; a kind not named runs at 1.0
    sensitivity: tuple[tuple[str, float], ...] = field(default_factory=lambda: tuple(OPERATING_POINTS.items()))
    #: recorded on every warning (``AnomalyWarning.config_version``): which settings raised it
    version: str = BUILTIN_VERSION

    def operating_point(self, kind: AnomalyKind) -> float:
        return dict(self.sensitivity).get(kind.value, 1.0)

    @classmethod
    def from_detection(cls, detection: DetectionConfig, **overrides) -> "MonitorConfig":
        """The monitor settings of a detection config file: its kinds' sensitivities over the built-in
        operating points, its warm-up and its version."""
        points = {**OPERATING_POINTS, **detection.sensitivity}
        return cls(sensitivity=tuple(points.items()), warmup_days=detection.warmup_days, version=detection.version,
                   **overrides)


#: Configs in use, shared between monitors: a worker runs every household under one or two, and each
#: monitor's own copy (a frozenset, tuples, their strings) would be ~2 KB of its memory. Keyed by the exact
#: text of the numbers (21 and 21.0 are equal but written differently in a record). Read only, as is the
#: dict of operating points kept with each. Bounded: past this many, a config is simply not shared.
_SHARED_CONFIGS: dict[tuple, tuple[MonitorConfig, dict[AnomalyKind, float]]] = {}
_MAX_SHARED_CONFIGS = 64
_last_shared: tuple = (None, None)  # (the config last asked for, what it is shared as): the detect stage's one


def shared_config(config: MonitorConfig) -> tuple[MonitorConfig, dict[AnomalyKind, float]]:
    """A config equal to ``config`` in every digit, already in use by other monitors (else ``config``), and its
    operating point per kind."""
    global _last_shared
    last = _last_shared
    if last[0] is config:
        return last[1]
    key = (repr((config.warmup_days, config.gap_factor, config.first_interval_minutes, config.sensitivity,
                 config.version)), config.kinds)
    shared = _SHARED_CONFIGS.get(key)
    if shared is None:
        shared = (config, {kind: config.operating_point(kind) for kind in AnomalyKind})
        if len(_SHARED_CONFIGS) < _MAX_SHARED_CONFIGS:
            _SHARED_CONFIGS[key] = shared
    _last_shared = (config, shared)
    return shared


class _Series:
    """Per meter: when it last reported and its usual interval."""

    __slots__ = ("last", "usual")

    def __init__(self) -> None:
        self.last: datetime | None = None
        self.usual: float | None = None

    def __getstate__(self):
        return self.last, self.usual

    def __setstate__(self, state) -> None:
        self.last, self.usual = state


class HouseholdMonitor:
    """Per-household, per-meter baselines and the detectors that read them."""

    def __init__(self, household_id: str, timezone: str = "UTC", *, config: MonitorConfig | None = None,
                 detectors: list[Detector] | None = None) -> None:
        self.household_id = household_id
        self.timezone = timezone
        self.config, self._points = shared_config(config or MonitorConfig())  # _points: kind -> operating point
        self._tz = ZoneInfo(timezone)
        self.detectors = [d for d in (detectors if detectors is not None else default_detectors())
                          if d.kind in self.config.kinds]
        self.sensitivity: dict[AnomalyKind, float] = {}  # per household, from staff feedback
        self._reading: dict[str, list[Detector]] = {}  # meter -> the detectors reading it (not state)
        self.feedback = FeedbackLog()
        self.usage = RecentUsage(timezone)  # what staff see of the last 48 hours; no detector reads it
        self._series: dict[str, _Series] = {}
        self._open: set[AnomalyKind] = set()
        self._open_warnings: dict[AnomalyKind, str] = {}  # kind -> warning_id of its open episode
        self._cleared: list[tuple[AnomalyKind, str]] = []  # episodes ended, not yet taken
        self._first: datetime | None = None
        self.readings = 0
        self.out_of_order = 0

    # -- the one entry point -----------------------------------------------------------------
    def process(self, meter: Meter | str, ts: datetime, value: float) -> list[AnomalyWarning]:
        """Learn from one reading (``value`` consumed in the interval ending at ``ts``); return new warnings."""
        observed = self.observe(meter, ts, value)
        if observed is None:
            return []
        x, warm = observed
        meter = x["meter"]
        warnings = []
        reading = self._reading.get(meter)
        if reading is None:  # the detectors that read this meter, found once
            reading = self._reading[meter] = [d for d in self.detectors if meter in d.meters]
        for detector in reading:
            score = detector.score_one(x) * self._points[detector.kind] * self.sensitivity.get(detector.kind, 1.0)
            was_open = detector.kind in self._open
            if episode_opens(self._open, detector.kind, score, warm):
                warning = self._warning(detector, x, score)
                warnings.append(warning)
                self._open_warnings[detector.kind] = warning.warning_id
            elif was_open and detector.kind not in self._open:
                warning_id = self._open_warnings.pop(detector.kind, None)
                if warning_id is not None:  # bounded: offline runs never take them
                    self._cleared = self._cleared[-15:] + [(detector.kind, warning_id)]
            detector.learn_one(x)
        return warnings

    def use_config(self, config: MonitorConfig) -> None:
        """Warn under ``config`` from now on (the detection config the worker runs with, which may be newer
        than the one this state was saved under). What was learned stays: settings only gate warnings."""
        if config is not self.config:
            self.config, self._points = shared_config(config)

    def set_timezone(self, name: str) -> bool:
        """Read local time in the IANA zone ``name`` from the next reading on (the roster moved the household);
        True if the zone changed. An unknown zone raises before anything changes.

        What was learned stays, by local hour: a household that moves and keeps its habits keeps its rhythm;
        a wrong zone corrected shifts what was learned by the zones' difference until the detectors relearn it.

        >>> m = HouseholdMonitor("hh-000001", "Europe/London")
        >>> m.set_timezone("Asia/Shanghai"), m.set_timezone("Asia/Shanghai"), m.timezone
        (True, False, 'Asia/Shanghai')
        """
        if name == self.timezone:
            return False
        zone = ZoneInfo(name)
        self.timezone, self._tz = name, zone
        self.usage.timezone = name  # the staff's chart: local hours in the new zone from now on
        self.usage._init_zone()
        return True

    def take_cleared(self) -> list[tuple[AnomalyKind, str]]:
        """Episodes that ended since the last call: (kind, the warning_id that opened it). The detect
        stage tells the ticket loop (``condition_cleared``); offline runs may ignore them."""
        cleared, self._cleared = self._cleared, []
        return cleared

    def observe(self, meter: Meter | str, ts: datetime, value: float) -> tuple[dict, bool] | None:
        """The observation ``x`` detectors read, and whether the warm-up is over; ``None`` for a
        reading not newer than its meter's last (a replay: ingest has removed duplicates)."""
        meter = str(meter.value if isinstance(meter, Meter) else meter)
        series = self._series.get(meter)
        if series is None:
            series = self._series[meter] = _Series()
        if series.last is not None and ts <= series.last:
            self.out_of_order += 1
            return None
        x = self._observe(meter, series, ts, value)
        self.usage.update(meter, ts, x["value"], x["minutes"])
        self.readings += 1
        if self._first is None:
            self._first = ts
        return x, (ts - self._first).total_seconds() >= self.config.warmup_days * 86400

    def _observe(self, meter: str, series: _Series, ts: datetime, value: float) -> dict:
        gap = False
        if series.last is None:
            minutes, gap = self.config.first_interval_minutes, True
        else:
            minutes = (ts - series.last).total_seconds() / 60
            if series.usual is not None and minutes > self.config.gap_factor * series.usual:
                minutes, gap = series.usual, True
            else:
                series.usual = minutes if series.usual is None else 0.9 * series.usual + 0.1 * minutes
        series.last = ts
        return observation(meter, ts, float(value), minutes, local=ts.astimezone(self._tz), gap=gap)

    def _warning(self, detector: Detector, x: dict, score: float) -> AnomalyWarning:
        finding = detector.describe_one(x)
        meter = finding.evidence.get("meter")
        return AnomalyWarning.for_episode(
            household_id=self.household_id, kind=detector.kind, meter=Meter(meter) if meter else None,
            episode_start=finding.episode_start, detected_at=x["ts"], score=score, severity=finding.severity,
            summary=finding.summary, evidence={k: v for k, v in finding.evidence.items() if k != "meter"},
            config_version=self.config.version)

    def recent_usage(self, now: datetime | None = None) -> dict:
        """The household's recent use per meter, JSON-ready (:meth:`detectors.usage.RecentUsage.summary`)."""
        return self.usage.summary(now)

    # -- feedback (issue 4) ------------------------------------------------------------------
    def adjust_sensitivity(self, kind: AnomalyKind, factor: float) -> float:
        """Multiply one kind's sensitivity by ``factor``, kept within :data:`SENSITIVITY_BOUNDS`."""
        low, high = SENSITIVITY_BOUNDS
        value = min(max(self.sensitivity.get(kind, 1.0) * factor, low), high)
        self.sensitivity[kind] = value
        return value

    def record_feedback(self, kind: str, outcome: str, key: str) -> FeedbackEffect:
        """Apply a staff member's outcome for a warning of ``kind`` (rules in :mod:`detectors.feedback`);
        ``key`` makes a repeat harmless."""
        return self.feedback.record(self, kind, outcome, key)

    # -- state (format and versions: detectors/state.py) -----------------------------------------
    def dumps(self) -> bytes:
        """The state record: zlib-compressed JSON of :meth:`to_state`, what the detect stage stores."""
        return dump_record(self.to_state())

    @staticmethod
    def loads(data: bytes, *, migrate_pickled: bool = False) -> "HouseholdMonitor":
        """The monitor of a state record (older versions upgraded); :class:`StateFormatError` if it cannot be read.

        A pickled record (before state format version 1) is a :class:`~detectors.state.LegacyPickleState`
        unless ``migrate_pickled``: then it is unpickled allowing only our state classes
        (:func:`~detectors.state.unpickle_legacy`), and its next :meth:`dumps` is the current format."""
        try:
            record = load_record(data)
        except LegacyPickleState:
            if not migrate_pickled:
                raise
            monitor = unpickle_legacy(data)
            if not isinstance(monitor, HouseholdMonitor):
                raise StateFormatError("the pickled state is not a HouseholdMonitor") from None
            return monitor
        return HouseholdMonitor.from_state(record)

    def to_state(self) -> dict:
        """Everything the monitor has learned and needs to go on, as JSON values (a record of :data:`STATE_VERSION`)."""
        config = self.config
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION,
            "household_id": self.household_id, "timezone": self.timezone,
            "config": {"warmup_days": config.warmup_days, "gap_factor": config.gap_factor,
                       "first_interval_minutes": config.first_interval_minutes,
                       "kinds": sorted(k.value for k in config.kinds),
                       "sensitivity": [[k, v] for k, v in config.sensitivity], "version": config.version},
            "detectors": [{"type": type(d).__name__, **d.to_state()} for d in self.detectors],
            "sensitivity": {k.value: v for k, v in self.sensitivity.items()},
            "feedback": self.feedback.to_state(),
            "usage": self.usage.to_state(),
            "series": {meter: [encode_datetime(s.last), s.usual] for meter, s in self._series.items()},
            "open": sorted(k.value for k in self._open),
            "open_warnings": {k.value: w for k, w in self._open_warnings.items()},
            "cleared": [[k.value, w] for k, w in self._cleared],
            "first": encode_datetime(self._first), "readings": self.readings, "out_of_order": self.out_of_order,
        }

    @classmethod
    def from_state(cls, record: dict) -> "HouseholdMonitor":
        """The monitor of a record of the current version (:func:`detectors.state.load_record` upgrades older
        ones); :class:`StateFormatError` naming the first field that is missing or of the wrong type."""
        try:
            return cls._from_state(record)
        except StateFormatError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:  # an unknown kind or zone, ...
            raise StateFormatError(f"unreadable monitor state ({type(exc).__name__})") from None

    @classmethod
    def _from_state(cls, record: dict) -> "HouseholdMonitor":
        def get(state, key, where="monitor"):
            return entry(state, key, where)

        c = get(record, "config")
        config = MonitorConfig(
            warmup_days=number(get(c, "warmup_days", "config"), "config.warmup_days"),
            gap_factor=number(get(c, "gap_factor", "config"), "config.gap_factor"),
            first_interval_minutes=number(get(c, "first_interval_minutes", "config"), "config.first_interval_minutes"),
            kinds=frozenset(AnomalyKind(text(k, "config.kinds")) for k in array(get(c, "kinds", "config"), "config.kinds")),
            sensitivity=tuple((text(k, "config.sensitivity"), number(v, "config.sensitivity"))
                              for k, v in (array(p, "config.sensitivity", 2)
                                           for p in array(get(c, "sensitivity", "config"), "config.sensitivity"))),
            version=text(get(c, "version", "config"), "config.version"))
        detectors = []
        for i, state in enumerate(array(get(record, "detectors"), "detectors")):
            name = text(get(state, "type", f"detectors[{i}]"), f"detectors[{i}].type")
            detector_type = DETECTOR_TYPES.get(name)
            if detector_type is None:
                raise StateFormatError(f"detectors[{i}]: unknown detector type {name!r}")
            detectors.append(detector_type.from_state(state, name))
        timezone = sys.intern(text(get(record, "timezone"), "timezone"))  # one string per zone, not per household
        monitor = cls(text(get(record, "household_id"), "household_id"), timezone, config=config, detectors=detectors)
        if len(monitor.detectors) != len(detectors):
            raise StateFormatError("detectors: a detector of a kind the config does not run")
        sensitivity = get(record, "sensitivity")
        if not isinstance(sensitivity, dict):
            raise StateFormatError("sensitivity: expected an object")
        monitor.sensitivity = {AnomalyKind(k): real(v, "sensitivity") for k, v in sensitivity.items()}
        monitor.feedback = FeedbackLog.from_state(get(record, "feedback"))
        monitor.usage = RecentUsage.from_state(get(record, "usage"))
        series = get(record, "series")
        if not isinstance(series, dict):
            raise StateFormatError("series: expected an object")
        for meter, value in series.items():
            last, usual = array(value, f"series.{meter}", 2)
            s = monitor._series[sys.intern(text(meter, "series"))] = _Series()
            s.last, s.usual = DATETIME.decode(last, f"series.{meter}"), optional(number)(usual, f"series.{meter}")
        monitor._open = {AnomalyKind(text(k, "open")) for k in array(get(record, "open"), "open")}
        open_warnings = get(record, "open_warnings")
        if not isinstance(open_warnings, dict):
            raise StateFormatError("open_warnings: expected an object")
        monitor._open_warnings = {AnomalyKind(k): text(w, "open_warnings") for k, w in open_warnings.items()}
        monitor._cleared = [(AnomalyKind(text(k, "cleared")), text(w, "cleared"))
                            for k, w in (array(p, "cleared", 2) for p in array(get(record, "cleared"), "cleared"))]
        monitor._first = DATETIME.decode(get(record, "first"), "first")
        monitor.readings = integer(get(record, "readings"), "readings")
        monitor.out_of_order = integer(get(record, "out_of_order"), "out_of_order")
        return monitor

    # Pickling stays for unpickle_legacy (records of before state format version 1) and in-process copies.
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_tz"]  # rebuilt from the name
        del state["_points"]  # from the config
        state.pop("_reading", None)  # from the detectors
        return state

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._tz = ZoneInfo(self.timezone)
        if not hasattr(self.config, "sensitivity"):  # saved before operating points: ran at 1.0
            object.__setattr__(self.config, "sensitivity", ())
        if not hasattr(self.config, "version"):  # saved before detection config files
            object.__setattr__(self.config, "version", BUILTIN_VERSION)
        self.config, self._points = shared_config(self.config)
        self._reading = {}
        self.__dict__.setdefault("_open_warnings", {})  # states saved before episodes were reported cleared
        self.__dict__.setdefault("_cleared", [])
        if "feedback" not in state:  # pickled before feedback existed
            self.feedback = FeedbackLog()
        if "usage" not in state:  # pickled before recent usage was kept: it starts empty
            self.usage = RecentUsage(self.timezone)


