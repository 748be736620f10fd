"""``HouseholdMonitor``: what it adds to the detectors (observations, episodes, warm-up, sensitivity,
kinds, out-of-order readings, state). The detectors' own contract is in test_detector_conformance.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pickle
import zlib

import pytest

from detectors.base import Detector, Finding
from detectors.monitor import SENSITIVITY_BOUNDS, HouseholdMonitor, MonitorConfig
from detectors.state import StateFormatError
from schemas.anomaly import AnomalyKind, Severity

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def _tap_left_on(days: int = 30, flow_from: int = 96 * 29 + 40, flow_to: int | None = None, litres: float = 6.0):
    """The module doctest's household: water now and then in the day; from ``flow_from`` (day 30,
    10:00) ``litres`` in every interval (until ``flow_to``)."""
    for i in range(1, 96 * days):
        t = T0 + timedelta(minutes=15 * i)
        value = 4.0 if 7 <= t.hour < 22 and i % 3 == 0 else 0.0
        if i >= flow_from and (flow_to is None or i < flow_to):
            value = litres
        yield "water", t, value


def _feed(monitor: HouseholdMonitor, rows) -> list:
    found = []
    for row in rows:
        found += monitor.process(*row)
    return found


def _flow_warnings(monitor: HouseholdMonitor, **kw):
    return [w for w in _feed(monitor, _tap_left_on(**kw)) if w.kind is AnomalyKind.CONTINUOUS_FLOW]


def test_a_warning_per_episode_not_per_reading():
    # day 30: water runs 10:00-16:00, stops for two hours, runs again from 18:00
    rows = list(_tap_left_on(flow_to=96 * 29 + 64))
    rows += [(m, t, v) for m, t, v in _tap_left_on(days=31, flow_from=96 * 29 + 72) if t > rows[-1][1]]
    warnings = [w for w in _feed(HouseholdMonitor("hh-000001"), rows) if w.kind is AnomalyKind.CONTINUOUS_FLOW]
    assert len(warnings) == 2
    first, second = warnings
    assert first.warning_id != second.warning_id and first.episode_start < second.episode_start
    assert first.household_id == "hh-000001" and first.meter.value == "water" and first.score >= 1.0
    assert first.detected_at > first.episode_start


def test_sensitivity_scales_the_score():
    found = {}
    for factor in (0.5, 1.0, 1.5):
        monitor = HouseholdMonitor("hh-000001")
        monitor.adjust_sensitivity(AnomalyKind.CONTINUOUS_FLOW, factor)
        found[factor] = _flow_warnings(monitor, litres=3.0)  # a weaker flow: 12 L/h
    assert found[1.0] and found[1.5] and not found[0.5]
    assert found[1.5][0].detected_at <= found[1.0][0].detected_at
    if found[1.5][0].detected_at == found[1.0][0].detected_at:
        assert found[1.5][0].score == pytest.approx(1.5 * found[1.0][0].score, abs=0.002)
    assert AnomalyKind.CONTINUOUS_FLOW not in HouseholdMonitor("hh-000001").sensitivity


def test_sensitivity_stays_within_bounds():
    low, high = SENSITIVITY_BOUNDS
    monitor = HouseholdMonitor("hh-000001")
    assert monitor.adjust_sensitivity(AnomalyKind.INACTIVITY, 1.2) == pytest.approx(1.2)
    for _ in range(10):
        value = monitor.adjust_sensitivity(AnomalyKind.INACTIVITY, 2.0)
    assert value == high
    for _ in range(10):
        value = monitor.adjust_sensitivity(AnomalyKind.INACTIVITY, 0.1)
    assert value == low
    assert AnomalyKind.SURGE not in monitor.sensitivity  # per kind


def test_no_welfare_warning_in_the_warm_up_but_meter_offline_is_reported():
    assert _flow_warnings(HouseholdMonitor("hh-000001", config=MonitorConfig(warmup_days=40))) == []
    assert _flow_warnings(HouseholdMonitor("hh-000001", config=MonitorConfig(warmup_days=21)))
    # on day 2, the water meter stops while electricity reports: data quality needs no history
    monitor = HouseholdMonitor("hh-000001")
    found = []
    for i in range(1, 96 * 2):
        t = T0 + timedelta(minutes=15 * i)
        found += monitor.process("electricity", t, 0.1)
        if i < 96 + 40:
            found += monitor.process("water", t, 0.0)
    assert [w.kind for w in found] == [AnomalyKind.METER_OFFLINE]


def test_kinds_select_the_detectors():
    monitor = HouseholdMonitor("hh-000001", config=MonitorConfig(kinds=frozenset({AnomalyKind.METER_OFFLINE})))
    assert [d.kind for d in monitor.detectors] == [AnomalyKind.METER_OFFLINE]
    assert _flow_warnings(monitor) == []


class Recorder(Detector):
    """Records what the monitor gives it; flags nothing."""

    kind = AnomalyKind.SURGE
    meters = ("water", "electricity")

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def score_one(self, x: dict) -> float:
        return 0.0

    def learn_one(self, x: dict) -> None:
        self.seen.append(dict(x))

    def describe_one(self, x: dict) -> Finding:  # pragma: no cover - never flags
        return Finding(Severity.LOW, "", x["ts"])

    def baseline(self):
        return len(self.seen)


def test_observations_mark_gaps_and_never_stretch_an_interval():
    recorder = Recorder()
    monitor = HouseholdMonitor("hh-000001", "Europe/London", detectors=[recorder])
    stamps = [T0 + timedelta(minutes=15 * i) for i in (1, 2, 3, 4, 20, 21)]  # 4 hours missing
    for t in stamps:
        monitor.process("water", t, 1.0)
    seen = recorder.seen
    assert [x["gap"] for x in seen] == [True, False, False, False, True, False]
    assert [x["minutes"] for x in seen] == [15.0] * 6  # the missing hours are not one long interval
    assert all(x["local"].utcoffset() == timedelta(0) and x["meter"] == "water" for x in seen)


def test_out_of_order_and_duplicate_readings_are_ignored():
    recorder = Recorder()
    monitor = HouseholdMonitor("hh-000001", detectors=[recorder])
    for i in (1, 2, 3):
        monitor.process("water", T0 + timedelta(minutes=15 * i), 1.0)
    state = monitor.dumps()
    assert monitor.process("water", T0 + timedelta(minutes=30), 9.0) == []
    assert monitor.process("water", T0 + timedelta(minutes=45), 9.0) == []  # duplicate of the last
    assert monitor.out_of_order == 2 and monitor.readings == 3 and len(recorder.seen) == 3
    monitor.out_of_order = 0
    assert monitor.dumps() == state
    # the other meter has its own clock
    assert monitor.process("electricity", T0 + timedelta(minutes=15), 0.2) == [] and monitor.readings == 4


def test_loads_rejects_what_is_not_a_monitor():
    with pytest.raises(StateFormatError):  # a pickle is not even unpickled by default
        HouseholdMonitor.loads(zlib.compress(pickle.dumps({"not": "a monitor"})))
    with pytest.raises(StateFormatError):
        HouseholdMonitor.loads(zlib.compress(pickle.dumps({"not": "a monitor"})), migrate_pickled=True)
    monitor = HouseholdMonitor("hh-000001", "Asia/Kolkata")
    copy = HouseholdMonitor.loads(monitor.dumps())
    assert copy.timezone == "Asia/Kolkata" and copy._tz.key == "Asia/Kolkata"
