"""Conformance suite: the contract of ``detectors/base.py``, checked for every detector.

Every test is parametrized over the classes of :func:`detectors.monitor.default_detectors`, so a new
detector is covered as soon as it is in the default set. A new *kind* also needs an anomalous
scenario in :data:`SCENARIOS` (``test_every_kind_has_a_scenario`` fails until it has one).

What is checked, per detector:

1. pickle and state-record (``to_state`` -> JSON -> ``from_state``) round trips (fresh, after 5 days,
   trained, in the middle of a flagged episode): the copy
   scores, explains and learns exactly like the original; ``HouseholdMonitor.dumps/loads``
   mid-stream (also while episodes are open) gives the same warnings;
2. ``score_one`` before any learning is a finite float ≥ 0 for every meter the detector reads (and
   stays so on all data); ``describe_one`` gives a well-formed :class:`Finding` once trained,
   wherever the monitor may call it (score × the highest sensitivity ≥ 1);
3. ``score_one``/``learn_one``/``describe_one`` never mutate ``x``;
4. determinism (same seeded data, same scores; also across interpreters with different hash
   seeds) and ``clone()`` (same parameters, fresh state);
5. ``score_one`` (and ``describe_one``, which the monitor calls before ``learn_one``) are pure;
6. a flagged interval is never learned as normal, on one anomalous scenario per kind
   (:data:`SCENARIOS`):

   * strict form, asserted for all: ``baseline()`` is unchanged by ``learn_one`` of every interval
     that scored ≥ 1 (hence also from just before the first flag to just after the last);
   * whole-episode form, asserted for the kinds whose baseline by design learns nothing from an
     episode at all, not even its not-yet-flagged start (:attr:`Scenario.stretch_unlearned`), with
     the ratchet off;
   * behaviour, asserted for all: the same anomaly a few days later is flagged about as soon as in
     a twin household that never had the first. This catches an episode learned as normal when it
     *ends* (the interval that ends it is not flagged, so the strict form cannot);

7. state stays small: a monitor's ``dumps()`` after 90 days ≤ 50 KB, and no detector's pickle grows
   between day 30 and day 90 (≤ 1.2×);
8. households are independent (through ``detectors.offline.detect_readings``, warnings and
   learned state);
9. every detector module's docstring has a doctest, and it passes;
10. missing data is not zero: a water meter silent for 12 hours adds a ``meter_offline`` warning and
    no ``inactivity`` one (while the same 12 hours reported as zeros do add ``inactivity``).

Data: the simulator's households generated in memory (``simulate_household``, 140 days, both
meters; most tests use 90 days or fewer): household 2 of seed 3 without anomalies (``NORMAL_HH``)
for the scenarios, household 9 with anomalies and offline meters (``BUSY_HH``) for the
monitor-level tests.
"""

from __future__ import annotations

import copy
import doctest
import hashlib
import json
import math
import os
import pickle
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detectors.base import Detector, Finding, observation
from detectors.monitor import SENSITIVITY_BOUNDS, HouseholdMonitor, default_detectors
from elderwatch.simulator.core import simulate_household
from elderwatch.simulator.grid import build_grid, outdoor_temperature
from schemas.anomaly import AnomalyKind, Severity

TZ = "Europe/London"
ZONE = ZoneInfo(TZ)
START = date(2026, 1, 5)
DAYS = 140  # simulated; most tests use the first 90 days or fewer
SEED = 3
NORMAL_HH = 2  # with anomaly_rate=0: no anomalies; one trip away, on days 106-111
BUSY_HH = 9    # with anomaly_rate=1, in 90 days: meters offline, surges, continuous flow, night activity
BUSY_ID = "hh-000010"

#: The monitor calls ``describe_one`` when ``score × sensitivity ≥ 1``: from this score on.
DESCRIBED_FROM = 1.0 / SENSITIVITY_BOUNDS[1]

DETECTOR_CLASSES: list[type[Detector]] = [type(d) for d in default_detectors()]
by_detector = pytest.mark.parametrize("cls", DETECTOR_CLASSES, ids=[c.kind.value for c in DETECTOR_CLASSES])

Row = tuple[str, datetime, float]  # meter, ts (end of the interval, UTC), value


# -- data ----------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _grid():
    grid = build_grid(START, DAYS, TZ)
    return grid, outdoor_temperature(grid, SEED), tuple(datetime.fromisoformat(t) for t in grid.ts)


@lru_cache(maxsize=None)
def household_rows(index: int, anomaly_rate: float) -> tuple[Row, ...]:
    """One simulated household, both meters, in time order (electricity first at each ts)."""
    grid, temp, stamps = _grid()
    hd = simulate_household(index, SEED, grid, temp, anomaly_rate=anomaly_rate)
    rows: list[Row] = []
    for k, ts in enumerate(stamps):
        if hd.present_e is None or hd.present_e[k]:
            rows.append(("electricity", ts, float(hd.electricity[k])))
        if hd.present_w is None or hd.present_w[k]:
            rows.append(("water", ts, float(hd.water[k])))
    return tuple(rows)


def local_midnight(day: int) -> datetime:
    """UTC time of local midnight at the start of simulated day ``day``."""
    return datetime.combine(START + timedelta(days=day), time(0), ZONE).astimezone(timezone.utc)


def until(rows: Sequence[Row], day: int) -> list[Row]:
    """The rows of the first ``day`` local days (an interval ending at midnight is the day before's)."""
    cut = local_midnight(day)
    return [r for r in rows if r[1] <= cut]


def observe(rows: Sequence[Row], zone: ZoneInfo = ZONE) -> list[dict]:
    """The observations ``HouseholdMonitor`` builds from ``rows`` (15-minute data, gaps marked)."""
    last: dict[str, datetime] = {}
    out = []
    for meter, ts, value in rows:
        prev = last.get(meter)
        minutes, gap = 15.0, True
        if prev is not None:
            step = (ts - prev).total_seconds() / 60
            minutes, gap = (step, False) if step <= 45 else (15.0, True)
        last[meter] = ts
        out.append(observation(meter, ts, value, minutes, local=ts.astimezone(zone), gap=gap))
    return out


def random_rows(seed: int, days: int = 20) -> list[Row]:
    """A seeded random household: daytime water, a noisy electricity base, rare night uses, a
    missing reading now and then, and one afternoon of water running."""
    rng = random.Random(seed)
    rows: list[Row] = []
    t = local_midnight(0)
    for k in range(days * 96):
        t += timedelta(minutes=15)
        hour = t.astimezone(ZONE).hour
        day = 7 <= hour < 22
        kwh = 0.03 + rng.expovariate(12.0) + (0.5 if rng.random() < (0.04 if day else 0.005) else 0.0)
        litres = rng.uniform(1.0, 12.0) if rng.random() < (0.3 if day else 0.02) else 0.0
        if k // 96 == days - 2 and 56 <= k % 96 < 80:
            litres += 8.0  # 14:00-20:00 on the day before last: water running
        rows.append(("electricity", t, round(kwh, 3)))
        if rng.random() > 0.003:
            rows.append(("water", t, round(litres, 1)))
    return rows


def reads(det: Detector, xs: Sequence[dict]) -> list[dict]:
    return [x for x in xs if x["meter"] in det.meters]


def run(det: Detector, xs: Sequence[dict]) -> list[float]:
    """Feed ``xs`` (those ``det`` reads) the way the monitor does; the scores."""
    scores = []
    for x in reads(det, xs):
        scores.append(det.score_one(x))
        det.learn_one(x)
    return scores


def snapshot(det: Detector) -> Any:
    return copy.deepcopy(det.baseline())


def check_finding(finding: Finding, x: dict) -> None:
    assert isinstance(finding, Finding)
    assert isinstance(finding.severity, Severity)
    assert isinstance(finding.summary, str) and finding.summary.strip()
    assert isinstance(finding.episode_start, datetime) and finding.episode_start.utcoffset() is not None
    assert finding.episode_start <= x["ts"]
    assert isinstance(finding.evidence, dict)
    assert finding.evidence.get("meter") in (None, "water", "electricity")


class _Recorder(Detector):
    kind = AnomalyKind.METER_OFFLINE
    meters = ("electricity", "water")

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def score_one(self, x: dict) -> float:
        return 0.0

    def learn_one(self, x: dict) -> None:
        self.seen.append(x)


def test_the_suites_observations_are_the_monitors():
    """:func:`observe` builds exactly what ``HouseholdMonitor`` gives its detectors (gaps included)."""
    rows = until(household_rows(BUSY_HH, 1.0), 60)
    recorder = _Recorder()
    monitor = HouseholdMonitor(BUSY_ID, TZ, detectors=[recorder])
    for row in rows:
        monitor.process(*row)
    ours = observe(rows)
    assert sum(x["gap"] for x in ours) > 2  # the water meter was offline: there are gaps to compare
    assert recorder.seen == ours


# -- anomalous scenarios, one per kind ------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """Normal life for ``train_days`` days, then ``alter`` applied to the readings whose interval
    ends inside one of ``windows`` (hours after local midnight of day ``train_days``), then
    ``tail_days`` of normal life. With ``repeat_after_days`` the same anomaly happens again that
    many days later (to check it has not become normal by happening once)."""

    what: str
    train_days: int
    windows: tuple[tuple[float, float], ...]
    alter: Callable[[str, datetime, float], float | None]  # (meter, local ts, value) -> value; None: no reading
    #: The baseline by design learns nothing from any of the episode (not even from its start,
    #: before the threshold is crossed, nor when it ends), once the ratchet (if any) is off;
    #: otherwise only flagged intervals are checked.
    stretch_unlearned: bool = False
    repeat_after_days: float | None = None
    tail_days: float = 1.0


def _only(meter: str, f: Callable[[datetime, float], float | None]):
    return lambda m, t, v: f(t, v) if m == meter else v


SCENARIOS: dict[AnomalyKind, Scenario] = {
    AnomalyKind.INACTIVITY: Scenario(  # the use at 07:00 makes the silence begin at the same hour each time
        "water used at 07:00, then none until 19:00, and no appliance switched on (a fall after getting up)",
        28, ((6.75, 19),),
        lambda m, t, v: (5.0 if (t.hour, t.minute) == (7, 0) else 0.0) if m == "water" else min(v, 0.05),
        repeat_after_days=3),
    AnomalyKind.CONTINUOUS_FLOW: Scenario(
        "a tap left on: +6 L every quarter-hour 13:00-19:00",
        28, ((13, 19),), _only("water", lambda t, v: v + 6.0), repeat_after_days=3,
        stretch_unlearned=True),  # a run is learned only when it ends unflagged
    AnomalyKind.SURGE: Scenario(  # a heater used days running is this week's usual (the heating season,
        # issue 9); one left on again a fortnight after the last is not
        "a 2.5 kW heater left on 10:00-14:00",
        28, ((10, 14),), _only("electricity", lambda t, v: v + 0.625), repeat_after_days=14),
    AnomalyKind.NIGHT_ACTIVITY: Scenario(
        "up 02:00-03:30 three nights running: water in every quarter-hour, lights on",
        28, ((26, 27.5), (50, 51.5), (74, 75.5)),
        lambda m, t, v: v + 5.0 if m == "water" else v + 0.1, repeat_after_days=7),
    AnomalyKind.METER_OFFLINE: Scenario(
        "the water meter sends nothing 07:00-19:00; electricity keeps reporting",
        28, ((7, 19),), _only("water", lambda t, v: None), repeat_after_days=3,
        stretch_unlearned=True),  # an outage never becomes the usual interval
    AnomalyKind.DECLINE: Scenario(
        "for 30 days water is used only in intervals ending on the hour (about a quarter as often)",
        56, ((0, 30 * 24),), _only("water", lambda t, v: v if t.minute == 0 else 0.0), repeat_after_days=50),
}


@dataclass(frozen=True)
class Stream:
    observations: tuple[dict, ...]
    stretch: tuple[datetime, datetime]  # (start, end] of the first altered episode
    repeat: tuple[datetime, datetime] | None = None  # (start, end] of the repeat


def scenario_stream(kind: AnomalyKind, episodes: tuple[float, ...] = (0.0,)) -> Stream:
    """The scenario with its anomaly at each of ``episodes`` (days after ``train_days``); new
    observation dicts on every call, so a detector that mutates one cannot spoil other tests."""
    rows, first, repeat = _scenario_rows(kind, episodes)
    return Stream(tuple(observe(rows)), first, repeat)


@lru_cache(maxsize=None)
def _scenario_rows(kind: AnomalyKind, episodes: tuple[float, ...]):
    sc = SCENARIOS[kind]
    spans = []
    for offset in episodes:
        midnight = local_midnight(sc.train_days) + timedelta(days=offset)
        spans.append([(midnight + timedelta(hours=a), midnight + timedelta(hours=b)) for a, b in sc.windows])
    stop = spans[-1][-1][1] + timedelta(days=sc.tail_days)
    rows = []
    for meter, ts, value in household_rows(NORMAL_HH, 0.0):
        if ts > stop:
            break
        if any(a < ts <= b for windows in spans for a, b in windows):
            value = sc.alter(meter, ts.astimezone(ZONE), value)
            if value is None:
                continue
        rows.append((meter, ts, value))
    first = (spans[0][0][0], spans[0][-1][1])
    repeat = (spans[1][0][0], spans[1][-1][1]) if len(spans) > 1 else None
    return tuple(rows), first, repeat


def stream_for(cls: type[Detector]) -> Stream:
    """The detector's own scenario; a kind without one gets 60 days of the busy household (its own
    scenario test fails)."""
    if cls.kind in SCENARIOS:
        return scenario_stream(cls.kind)
    xs = tuple(observe(until(household_rows(BUSY_HH, 1.0), 60)))
    return Stream(xs, (local_midnight(28), local_midnight(60)))


def in_stretch(x: dict, stream: Stream) -> bool:
    return stream.stretch[0] < x["ts"] <= stream.stretch[1]


#: The interval right after an episode: where a returning meter reports, a run or a silence ends.
ENDING = timedelta(minutes=15)


@dataclass
class ScenarioRun:
    scores: list[float]
    flagged: list[int]               # indexes (into the detector's stream) scored >= 1
    flagged_in_stretch: list[int]
    learned_while_flagged: list[int] # flagged intervals whose learn_one changed baseline()
    baseline_fresh: Any
    baseline_trained: Any            # just before the stretch
    baseline_after_stretch: Any      # after its last interval and the one that ends it
    baseline_before_first_flag: Any
    baseline_after_last_flag: Any    # of the stretch
    unflagged_between: int           # intervals between the first and last flag that did not flag


def no_ratchet(cls: type[Detector]) -> dict:
    """Parameters that turn off the deliberate raise of the bar after a flagged episode ends."""
    return {"ratchet": 1.0} if "ratchet" in cls()._get_params() else {}


def run_scenario(cls: type[Detector], **params) -> ScenarioRun:
    stream = stream_for(cls)
    det = cls(**params)
    xs = reads(det, stream.observations)
    fresh = snapshot(det)
    scores, flagged, learned_while_flagged = [], [], []
    marks: dict[str, Any] = {}
    for i, x in enumerate(xs):
        s = det.score_one(x)
        scores.append(s)
        inside = in_stretch(x, stream)
        if inside and "trained" not in marks:
            marks["trained"] = snapshot(det)
        if s >= 1.0:
            flagged.append(i)
            before = snapshot(det)
            if inside and "first_flag" not in marks:
                marks["first_flag"] = before
            check_finding(det.describe_one(x), x)
        det.learn_one(x)
        if s >= 1.0:
            after = snapshot(det)
            if after != before:
                learned_while_flagged.append(i)
            if inside:
                marks["last_flag"] = after
        if stream.stretch[0] < x["ts"] <= stream.stretch[1] + ENDING:
            marks["after_stretch"] = snapshot(det)
    in_s = [i for i in flagged if in_stretch(xs[i], stream)]
    between = (in_s[-1] - in_s[0] + 1 - len(in_s)) if in_s else 0
    return ScenarioRun(scores, flagged, in_s, learned_while_flagged, fresh, marks.get("trained"),
                       marks.get("after_stretch"), marks.get("first_flag"), marks.get("last_flag"), between)


@lru_cache(maxsize=None)
def scenario_run(cls: type[Detector], ratchet_off: bool = False) -> ScenarioRun:
    return run_scenario(cls, **(no_ratchet(cls) if ratchet_off else {}))


def first_flag_delay(cls: type[Detector], stream: Stream, episode: tuple[datetime, datetime]) -> timedelta | None:
    """From the start of ``episode`` to its first interval scored >= 1 (None: never flagged)."""
    det = cls()
    start, end = episode
    for x in reads(det, stream.observations):
        if start < x["ts"] <= end + ENDING and det.score_one(x) >= 1.0:
            return x["ts"] - start
        det.learn_one(x)
    return None


# -- 6. no learning from flagged intervals (first: every kind has a scenario) -------------------

@by_detector
def test_every_kind_has_a_scenario(cls):
    assert cls.kind in SCENARIOS, f"add an anomalous scenario for {cls.kind.value!r} to SCENARIOS"


@by_detector
def test_flagged_intervals_are_not_learned(cls):
    if cls.kind not in SCENARIOS:
        pytest.fail(f"no scenario for {cls.kind.value!r}: add one to SCENARIOS")
    r = scenario_run(cls)
    sc = SCENARIOS[cls.kind]
    # the scenario is meaningful: the detector learned something, and then flagged the anomaly
    assert r.baseline_trained != r.baseline_fresh, "baseline() did not change while learning normal data"
    assert r.flagged_in_stretch, f"{sc.what}: no interval scored >= 1 (max {max(r.scores):.2f})"
    # strict form of the contract: learn_one(x) of an interval scored >= 1 leaves the baseline alone
    assert not r.learned_while_flagged, (
        f"baseline() changed while learning {len(r.learned_while_flagged)} flagged intervals, first at "
        f"index {r.learned_while_flagged[0]}")
    # episode form: from just before the first flag to just after the last one
    if r.unflagged_between == 0:
        assert r.baseline_after_last_flag == r.baseline_before_first_flag
    # whole-stretch form, for the kinds whose baseline learns nothing from an episode at all (with
    # the ratchet, a flagged episode raises the bar a little when it ends: that is checked below)
    if sc.stretch_unlearned:
        plain = scenario_run(cls, ratchet_off=True)
        assert plain.flagged_in_stretch
        assert plain.baseline_after_stretch == plain.baseline_trained


@by_detector
def test_an_anomaly_does_not_become_normal_by_happening(cls):
    """The same anomaly again a few days later is flagged about as soon as in a twin household that
    never had the first one: a flagged episode learned as normal (when it ends, say) raises the bar.
    The per-interval check above cannot see that: the interval that ends an episode is not flagged."""
    sc = SCENARIOS.get(cls.kind)
    if sc is None:
        pytest.fail(f"no scenario for {cls.kind.value!r}: add one to SCENARIOS")
    if sc.repeat_after_days is None:
        pytest.skip(f"{cls.kind.value}: the scenario has no repeat")
    twice = scenario_stream(cls.kind, (0.0, sc.repeat_after_days))
    once = scenario_stream(cls.kind, (sc.repeat_after_days,))
    assert twice.repeat == once.stretch
    again = first_flag_delay(cls, twice, twice.repeat)
    only_once = first_flag_delay(cls, once, once.stretch)
    assert only_once is not None, "the twin never flagged the anomaly"
    assert again is not None, "the repeat was not flagged: the first episode was learned as normal"
    # the first episode's not-yet-flagged start may be learned (its quiet hours are a little
    # quieter now): allow a quarter of the episode's length, far less than a learned episode costs
    slack = (once.stretch[1] - once.stretch[0]) / 4
    assert again <= only_once + slack, f"flagged after {again} the second time, {only_once} in a twin"


# -- 1. pickle ------------------------------------------------------------------------------------

def _cut_index(cls: type[Detector], cut: str) -> int:
    if cut == "fresh":
        return 0
    stream = stream_for(cls)
    xs = reads(cls(), stream.observations)
    if cut == "early":  # hourly means still plain means (river Mean), not yet EWMean
        return next(i for i, x in enumerate(xs) if x["ts"] > local_midnight(5))
    if cut == "trained":
        return next(i for i, x in enumerate(xs) if in_stretch(x, stream))
    flagged = scenario_run(cls).flagged_in_stretch if cls.kind in SCENARIOS else scenario_run(cls).flagged
    if not flagged:
        pytest.fail("no flagged interval to cut the stream at")
    return flagged[0] + 1  # after learning the first flagged interval: inside the episode


def _state_round_trip(det: Detector) -> Detector:
    """Through the state record's format: JSON text, nothing executed on load (detectors/state.py)."""
    return type(det).from_state(json.loads(json.dumps(det.to_state(), allow_nan=False)))


@by_detector
@pytest.mark.parametrize("via", ["pickle", "state"])
@pytest.mark.parametrize("cut", ["fresh", "early", "trained", "mid-episode"])
def test_pickle_round_trip(cls, cut, via):
    xs = reads(cls(), stream_for(cls).observations)
    k = _cut_index(cls, cut)
    reference = cls()
    ref_scores, ref_findings = [], {}
    for i, x in enumerate(xs):
        ref_scores.append(reference.score_one(x))
        if ref_scores[-1] >= DESCRIBED_FROM:
            ref_findings[i] = reference.describe_one(x)
        reference.learn_one(x)

    det = cls()
    run(det, xs[:k])
    restored = (pickle.loads(pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL)) if via == "pickle"
                else _state_round_trip(det))
    assert type(restored) is cls and restored is not det
    assert restored.baseline() == det.baseline()
    assert restored._get_params() == det._get_params()
    scores = []
    for i in range(k, len(xs)):
        x = xs[i]
        scores.append(restored.score_one(x))
        if i in ref_findings:
            assert restored.describe_one(x) == ref_findings[i], f"describe_one differs at index {i}"
        restored.learn_one(x)
    assert scores == ref_scores[k:]
    assert restored.baseline() == reference.baseline()
    if cut != "fresh":
        assert any(s > 0 for s in scores)


@pytest.fixture(scope="module")
def busy_run():
    """One HouseholdMonitor over 90 days of the busy household: warnings per reading, state sizes."""
    rows = until(household_rows(BUSY_HH, 1.0), 90)
    day30 = local_midnight(30)
    monitor = HouseholdMonitor(BUSY_ID, TZ)
    per_reading = []
    sizes: dict[str, Any] = {}
    for meter, ts, value in rows:
        per_reading.append(monitor.process(meter, ts, value))
        if ts == day30 and meter == "water":
            sizes["dumps_30"] = len(monitor.dumps())
            sizes["detectors_30"] = {d.kind: len(pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL))
                                     for d in monitor.detectors}
    sizes["dumps_90"] = len(monitor.dumps())
    sizes["detectors_90"] = {d.kind: len(pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)) for d in monitor.detectors}
    return rows, per_reading, sizes, monitor


def test_monitor_dumps_loads_mid_stream_gives_the_same_warnings(busy_run):
    rows, reference, _, final = busy_run
    warned = {i for i, w in enumerate(reference) if w}
    # round trip now and then, at every warning and on the few readings after it (episodes open)
    cuts = {i for i in range(0, len(rows), 1500)} | {i + d for i in warned for d in range(4)}
    monitor = HouseholdMonitor(BUSY_ID, TZ)
    got = []
    for i, (meter, ts, value) in enumerate(rows):
        got.append(monitor.process(meter, ts, value))
        if i in cuts:
            monitor = HouseholdMonitor.loads(monitor.dumps())
    flat = [w for ws in reference for w in ws]
    assert len({w.kind for w in flat}) >= 3, "too few kinds of warnings for the comparison to mean much"
    assert got == reference
    assert [d.baseline() for d in monitor.detectors] == [d.baseline() for d in final.detectors]
    assert monitor.readings == final.readings


# -- 2. scoring before learning, describing after ------------------------------------------------

@by_detector
def test_score_before_learning_is_finite_and_non_negative(cls):
    t = datetime(2026, 1, 5, 7, 15, tzinfo=timezone.utc)
    assert cls().meters, "a detector must say which meters it reads"
    for meter in cls().meters:
        for value in (0.0, 0.4, 60.0):
            for gap in (False, True):
                s = cls().score_one(observation(meter, t, value, 15, local=t.astimezone(ZONE), gap=gap))
                assert isinstance(s, float) and math.isfinite(s) and s >= 0, (meter, value, gap, s)


@by_detector
def test_scores_are_finite_and_non_negative_throughout(cls):
    r = scenario_run(cls) if cls.kind in SCENARIOS else None
    scores = list(r.scores) if r else run(cls(), stream_for(cls).observations)
    scores += run(cls(), observe(random_rows(11)))
    assert all(isinstance(s, float) and math.isfinite(s) and s >= 0 for s in scores)


@by_detector
def test_describe_after_learning(cls):
    """Once trained, ``describe_one`` gives a well-formed Finding wherever the monitor may call it."""
    stream = stream_for(cls)
    det = cls()
    described = 0
    for x in reads(det, stream.observations):
        if in_stretch(x, stream) and det.score_one(x) >= DESCRIBED_FROM:
            check_finding(det.describe_one(x), x)
            described += 1
        det.learn_one(x)
    assert described


# -- 3. inputs not mutated -------------------------------------------------------------------------

@by_detector
def test_inputs_are_not_mutated(cls):
    stream = stream_for(cls)
    det = cls()
    described = 0
    for x in reads(det, stream.observations):
        before = copy.deepcopy(x)
        s = det.score_one(x)
        assert x == before, "score_one mutated x"
        if s >= DESCRIBED_FROM:
            det.describe_one(x)
            described += 1
            assert x == before, "describe_one mutated x"
        det.learn_one(x)
        assert x == before, "learn_one mutated x"
    assert described


# -- 4. determinism, clone -------------------------------------------------------------------------

@by_detector
def test_deterministic_with_a_seed(cls):
    a, b, fresh = cls(), cls(), cls()
    scores_a = run(a, observe(random_rows(7)))
    scores_b = run(b, observe(random_rows(7)))  # generated again: equal data, not the same objects
    assert scores_a == scores_b
    assert a.baseline() == b.baseline()
    assert a.baseline() != fresh.baseline(), "learned nothing from 20 days of data"


def fingerprint() -> dict[str, str]:
    """Digest of every default detector's scores and baseline on seeded random data."""
    out = {}
    for cls in DETECTOR_CLASSES:
        det = cls()
        scores = run(det, observe(random_rows(5, days=16)))
        out[cls.kind.value] = hashlib.sha256(repr((scores, det.baseline())).encode()).hexdigest()[:16]
    return out


def test_deterministic_across_interpreters():
    """Same results under different hash seeds (no set/hash-order dependence)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import test_detector_conformance as t; print(t.fingerprint())")
    root = Path(__file__).resolve().parents[2]
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())
    assert outputs[0] == outputs[1] and outputs[0].startswith("{")


@by_detector
def test_clone_is_fresh_with_the_same_parameters(cls):
    params = cls()._get_params()
    name = "margin" if "margin" in params else next(k for k, v in params.items() if isinstance(v, float))
    changed = {**params, name: params[name] * 1.25}
    det = cls(**changed)
    run(det, stream_for(cls).observations[: 96 * 2 * 20])
    clone = det.clone()
    assert type(clone) is cls and clone is not det
    assert clone._get_params() == det._get_params() == changed
    assert clone.baseline() == cls(**changed).baseline() != det.baseline()
    data = observe(random_rows(3))
    assert run(clone, data) == run(cls(**changed), data)


# -- 5. score_one (and describe_one) pure ----------------------------------------------------------

@by_detector
def test_score_one_is_pure(cls):
    stream = stream_for(cls)
    once, often = cls(), cls()
    xs = reads(once, stream.observations)
    scores_once, scores_often = [], []
    for x in xs:
        scores_once.append(once.score_one(x))
        once.learn_one(x)
        # the other detector is asked ten times, about other meters at the same time, and to explain
        repeated = [often.score_one(x) for _ in range(10)]
        assert len(set(repeated)) == 1, "score_one gave different answers for the same x"
        for meter in often.meters:
            if meter != x["meter"]:
                often.score_one({**x, "meter": meter, "value": 0.0, "active": False})
        if repeated[0] >= DESCRIBED_FROM:
            often.describe_one(x)
            often.describe_one(x)
        assert often.score_one(x) == repeated[0]
        scores_often.append(repeated[0])
        often.learn_one(x)
    assert scores_once == scores_often
    assert once.baseline() == often.baseline()
    assert pickle.dumps(once) == pickle.dumps(often), "the states differ"
    tail = observe(random_rows(13))
    assert run(once, tail) == run(often, tail)


# -- 7. bounded state ------------------------------------------------------------------------------

def test_monitor_state_is_small(busy_run):
    _, _, sizes, _ = busy_run
    print(f"\nHouseholdMonitor.dumps(): {sizes['dumps_30']} B after 30 days, {sizes['dumps_90']} B after 90 days")
    assert sizes["dumps_90"] <= 50_000


@by_detector
def test_detector_state_does_not_grow(cls, busy_run):
    _, _, sizes, _ = busy_run
    at30, at90 = sizes["detectors_30"][cls.kind], sizes["detectors_90"][cls.kind]
    print(f"\n{cls.kind.value}: pickled {at30} B after 30 days, {at90} B after 90 days")
    assert at90 <= 1.2 * at30


# -- 8. households are independent -----------------------------------------------------------------

def _wild_rows(household_id: str, seed: int, rows: Sequence[Row]) -> list[tuple[str, str, datetime, float]]:
    """Another household on the same clock, from a broken gateway: huge values, long gaps, odd
    intervals, replays of the past, a meter silent for days."""
    rng = random.Random(seed)
    out = []
    for meter, ts, value in rows:
        r = rng.random()
        if r < 0.05 or (meter == "water" and local_midnight(20) < ts <= local_midnight(23)):
            continue  # missing
        if r < 0.10:
            value = rng.uniform(0, 1e6)
        elif r < 0.30:
            value = value * rng.uniform(0, 20)
        elif r < 0.40:
            value = 0.0
        out.append((household_id, meter, ts + timedelta(minutes=rng.choice([0, 0, 0, 1, 7])), value))
        if rng.random() < 0.005:
            out.append((household_id, meter, ts - timedelta(hours=3), 5.0))  # out of order
    return out


def _detect(rows, zones):
    from detectors.offline import detect_readings, new_monitor

    monitors = {}

    def factory(household_id, zone, config):
        monitors[household_id] = new_monitor(household_id, zone, config)
        return monitors[household_id]

    warnings = list(detect_readings(rows, zones, monitor_factory=factory))
    return warnings, monitors


def test_households_are_independent():
    """Through ``detectors.offline.detect_readings``: a wild household next door, interleaved by
    time or all first, changes neither household A's warnings nor its learned state."""
    own = until(household_rows(BUSY_HH, 1.0), 60)
    outage = (local_midnight(40) + timedelta(hours=10), local_midnight(40) + timedelta(hours=16))
    a_rows = [(BUSY_ID, m, ts, v) for m, ts, v in own if not (m == "water" and outage[0] < ts <= outage[1])]
    wild = _wild_rows("hh-000099", 5, own)
    zones = {BUSY_ID: TZ, "hh-000099": "Asia/Kolkata"}
    alone, monitors = _detect(a_rows, zones)
    assert len({w.kind for w in alone}) >= 3 and AnomalyKind.METER_OFFLINE in {w.kind for w in alone}
    baselines = [d.baseline() for d in monitors[BUSY_ID].detectors]

    by_time = sorted(a_rows + wild, key=lambda r: r[2])  # stable: A keeps its order
    for mixed_rows in (by_time, wild + a_rows):
        mixed, monitors = _detect(mixed_rows, zones)
        assert [w for w in mixed if w.household_id == BUSY_ID] == alone
        assert [d.baseline() for d in monitors[BUSY_ID].detectors] == baselines
        assert any(w.household_id == "hh-000099" for w in mixed), "the wild household raised nothing"


# -- 9. doctests -----------------------------------------------------------------------------------

@by_detector
def test_module_docstring_has_a_passing_doctest(cls):
    module = sys.modules[cls.__module__]
    assert ">>>" in (module.__doc__ or "")
    tests = [t for t in doctest.DocTestFinder().find(module) if t.name == module.__name__ and t.examples]
    assert tests, "no doctest in the module docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t, out=lambda s: None)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {module.__name__}'s docstring"


# -- 10. missing data is not zero ------------------------------------------------------------------

def _warnings_with_water(change: Callable[[float], float | None], day: int = 31, still: bool = False):
    """Warnings through ``HouseholdMonitor`` for the normal household up to the end of ``day``, its
    water readings 07:00-19:00 of ``day`` changed by ``change`` (None: not sent); with ``still``
    nothing is switched on or off in those hours either (electricity held at its standby level)."""
    start, end = local_midnight(day) + timedelta(hours=7), local_midnight(day) + timedelta(hours=19)
    monitor = HouseholdMonitor("hh-000001", TZ)
    found = []
    for meter, ts, value in until(household_rows(NORMAL_HH, 0.0), day + 1):
        if meter == "water" and start < ts <= end:
            value = change(value)
            if value is None:
                continue
        if still and meter == "electricity" and start < ts <= end:
            value = 0.02
        found += monitor.process(meter, ts, value)
    return found


def test_a_silent_meter_is_offline_not_inactive():
    """Twelve hours without water readings (electricity reporting) add a ``meter_offline`` warning
    and no ``inactivity`` warning; the same twelve hours reported as zeros do add one."""
    def kinds(warnings):
        return sorted(w.kind.value for w in warnings)

    as_usual = _warnings_with_water(lambda v: v)
    silent = _warnings_with_water(lambda v: None)
    zeros = _warnings_with_water(lambda v: 0.0, still=True)
    new = [w for w in silent if w not in as_usual]
    assert kinds(new) == ["meter_offline"], kinds(new)
    assert new[0].meter.value == "water"
    # control: the same hours as zeros, with nothing switched either, are a silence, and flagged
    # (else the check above means nothing)
    assert "inactivity" in kinds(w for w in zeros if w not in as_usual), "control: zeros raised no inactivity"
