"""Staff feedback: does it cut false alarms without losing real emergencies?

    python -m bench.bench_feedback [--households 500 --days 90 --seed 7 --data /tmp/sim500]
        [--processes 2] [--delay-hours 6] [--error-rate 0.1] [--staff-seed 7] [--check-households 10]

Three arms on the same simulated readings, in one pass:

* ``no feedback``: every household's monitor as ``elderwatch detect`` runs it (its operating points);
  it must give the recorded s=1.0 numbers of ``bench/results/detect_quality.json`` (checked in the run);
* ``feedback``: every warning is handled by simulated staff, who know the truth (the labels):
  ``--delay-hours`` after its ``detected_at`` (data time) the outcome goes to that household's
  monitor through ``record_feedback(kind, outcome, key=warning_id)``, applied just before the
  household's first reading at or after that time (events in data-time order, as in the stream).
  The outcome (:func:`staff_outcome`) is ``needed_help`` when the evaluation's scoring rule
  (``elderwatch.evaluation.evaluate``) matches the warning to a labelled event of the household,
  ``not_home`` when it falls in a labelled ``away`` window, else ``false_alarm``;
  ``meter_offline`` warnings get ``meter_fault``;
* ``feedback, 10% staff errors``: the same, but ``--error-rate`` of the needed_help / false_alarm
  outcomes are flipped (a real anomaly judged a false alarm and the reverse), chosen by a hash of
  ``--staff-seed`` and the warning id (so the choice does not depend on how households are split).

Learning never depends on sensitivity (``detectors.monitor``: sensitivity multiplies scores for the
warning decision only), so each household runs one :class:`FeedbackArmsMonitor`: every detector
scores and learns once per reading; each arm keeps its own sensitivity and feedback memory (in a
detector-less ``HouseholdMonitor``, so the real ``record_feedback`` turns it) and its own open
episodes. On ``--check-households`` households every arm also runs as a plain ``HouseholdMonitor``
fed the same staff; the bench stops unless warnings, final sensitivities and learned state agree.

Each arm is scored by :mod:`elderwatch.evaluation` over the same household-months as detect_quality.
Writes bench/results/feedback.md and .json (every number). ``--from-json`` re-renders the .md from a .json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import pickle
import shlex
import statistics
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_detect_quality import (  # noqa: E402
    EVENT_COLUMNS,
    KINDS,
    _h,
    _pct,
    detectors_hash,
    ensure_data,
    machine,
    own_rows,
    summarize,
    tables,
)
from detectors.feedback import LOWER_AFTER, LOWER_BY, NEEDED, NOT_NEEDED  # noqa: E402
from detectors.monitor import SENSITIVITY_BOUNDS, HouseholdMonitor, MonitorConfig  # noqa: E402
from detectors.offline import new_monitor  # noqa: E402
from elderwatch.evaluation import EvaluationReport, EventLabel, evaluate, load_inputs, load_manifest  # noqa: E402
from elderwatch.evaluation.files import EVENT_KINDS  # noqa: E402
from elderwatch.tuning.sweep import MultiLevelMonitor  # noqa: E402
from schemas.anomaly import WELFARE_KINDS, AnomalyKind, AnomalyWarning  # noqa: E402
from schemas.readings import Meter  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BASELINE_JSON = RESULTS / "detect_quality.json"
BASELINE_RUN = "s=1.0"
NO_FEEDBACK = "no feedback"
WELFARE = sorted(k.value for k in WELFARE_KINDS)
#: what a staff error turns an outcome into (not_home and meter_fault are not judged, so never flipped)
FLIP = {"needed_help": "false_alarm", "false_alarm": "needed_help"}


def arm_names(error_rate: float) -> list[str]:
    return [NO_FEEDBACK, "feedback", f"feedback, {error_rate:.0%} staff errors"]


# ------------------------------------------------------------------------------------------------
# Simulated staff
# ------------------------------------------------------------------------------------------------
def staff_outcome(warning: AnomalyWarning, labels: Sequence[EventLabel]) -> str:
    """What a visit finds, from the household's labels (events and ``away`` windows).

    The scoring rule decides (``elderwatch.evaluation.evaluate`` on this one warning, no warm-up, so
    an event in the scoring warm-up is as real as any): a true positive is ``needed_help``, a warning
    it ignores as inside an ``away`` window is ``not_home``, anything else ``false_alarm``.
    ``meter_offline`` warnings are ``meter_fault``.

    >>> from datetime import datetime as dt
    >>> from schemas.anomaly import Severity
    >>> t = lambda s: dt.fromisoformat(f"2026-02-10T{s}+00:00")
    >>> labels = [EventLabel(household_id="hh-1", kind="surge", start=t("10:00"), end=t("11:00")),
    ...           EventLabel(household_id="hh-1", kind="away", start=t("15:00"), end=t("20:00"))]
    >>> def warn(at, kind=AnomalyKind.INACTIVITY):
    ...     return AnomalyWarning.for_episode(household_id="hh-1", kind=kind, meter=None, episode_start=t(at),
    ...         detected_at=t(at), score=1.2, severity=Severity.MEDIUM, summary="")
    >>> [staff_outcome(warn(at), labels) for at in ("12:30", "13:30", "16:00")]
    ['needed_help', 'false_alarm', 'not_home']
    >>> staff_outcome(warn("10:30", AnomalyKind.METER_OFFLINE), labels)
    'meter_fault'
    """
    if warning.kind == AnomalyKind.METER_OFFLINE:
        return "meter_fault"
    mine = [label for label in labels if label.household_id == warning.household_id]
    report = evaluate(mine, [warning], {}, warmup_end=None, name="staff")
    if report.totals.true_positives:
        return "needed_help"
    if report.totals.ignored_away:
        return "not_home"
    return "false_alarm"


def staff_errs(warning_id: str, seed: int, rate: float) -> bool:
    """Whether staff misjudge this warning: a hash of seed and id below ``rate`` (no shared RNG state)."""
    if rate <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}/{warning_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64 < rate


class Staff:
    """The staff of one household: judge each warning once (cached by warning id and time)."""

    def __init__(self, labels: Sequence[EventLabel], seed: int) -> None:
        self.labels = list(labels)
        self.seed = seed
        self._truth: dict[tuple[str, datetime], str] = {}

    def judge(self, warning: AnomalyWarning, error_rate: float = 0.0) -> tuple[str, str]:
        """``(truth, outcome given)``: the outcome is the truth unless staff err (needed_help <-> false_alarm)."""
        key = (warning.warning_id, warning.detected_at)
        truth = self._truth.get(key)
        if truth is None:
            truth = self._truth[key] = staff_outcome(warning, self.labels)
        given = truth
        if truth in FLIP and staff_errs(warning.warning_id, self.seed, error_rate):
            given = FLIP[truth]
        return truth, given


class ArmFeed:
    """One arm of one household: its warnings, the staff's pending outcomes, and where they go.

    ``target`` is the monitor whose ``record_feedback`` turns this arm's sensitivity (``None``: the
    arm gets no feedback). Outcomes wait in ``pending`` (due time order: warnings come in data-time
    order and the delay is fixed) until :meth:`apply_due` sees a reading at or after their time."""

    __slots__ = ("target", "error_rate", "delay", "pending", "warnings", "judged", "effects")

    def __init__(self, target: HouseholdMonitor | None, error_rate: float, delay: timedelta) -> None:
        self.target, self.error_rate, self.delay = target, error_rate, delay
        self.pending: deque[tuple[datetime, str, str, str, str]] = deque()
        self.warnings: list[AnomalyWarning] = []
        self.judged: list[tuple[str, str]] = []  # (truth, given) per warning
        self.effects: list[tuple] = []

    def apply_due(self, ts: datetime) -> None:
        pending = self.pending
        while pending and pending[0][0] <= ts:
            _, kind, truth, given, key = pending.popleft()
            e = self.target.record_feedback(kind, given, key)
            self.effects.append((kind, truth, given, ts.isoformat(), e.sensitivity_before, e.sensitivity_after,
                                 e.duplicate))

    def warned(self, warnings: list[AnomalyWarning], staff: Staff) -> None:
        for w in warnings:
            truth, given = staff.judge(w, self.error_rate)
            self.warnings.append(w)
            self.judged.append((truth, given))
            if self.target is not None:
                self.pending.append((w.detected_at + self.delay, w.kind.value, truth, given, w.warning_id))


# ------------------------------------------------------------------------------------------------
# Every arm in one pass
# ------------------------------------------------------------------------------------------------
class FeedbackArmsMonitor(MultiLevelMonitor):
    """:class:`elderwatch.tuning.sweep.MultiLevelMonitor` whose levels are arms with feedback.

    Each arm has its own sensitivity and feedback memory, kept in ``arms[i]``: a detector-less
    ``HouseholdMonitor`` (so ``arms[i].record_feedback`` is the real rule), and its own open
    episodes. Per reading every detector's ``score_one`` and ``learn_one`` run once; arm ``i``
    multiplies the raw score by the kind's operating point and ``arms[i].sensitivity[kind]`` before
    the episode rule, exactly as :meth:`HouseholdMonitor.process` multiplies by its own.
    """

    def __init__(self, household_id: str, timezone: str, arms: int, *, config: MonitorConfig | None = None) -> None:
        super().__init__(household_id, timezone, [1.0] * arms, config=config or MonitorConfig())
        self.arms = [HouseholdMonitor(household_id, timezone, config=config, detectors=[]) for _ in range(arms)]

    def factors(self, kind: AnomalyKind) -> tuple[list[float], float]:
        factors = [self._points[kind] * arm.sensitivity.get(kind, 1.0) for arm in self.arms]
        return factors, max(factors)

    def process_arms(self, meter: Meter | str, ts: datetime, value: float) -> list[list[AnomalyWarning]]:
        return self.process_levels(meter, ts, value)


def run_share(job: dict) -> dict:
    """One worker: its share of the households, every arm; plain monitors per arm for the checked ones."""
    path, zones, default_zone = job["path"], job["zones"], job["default_zone"]
    processes, index, arms = job["processes"], job["index"], job["arms"]  # arms: [(feedback?, error rate)]
    labels, seed, delay = job["labels"], job["staff_seed"], timedelta(hours=job["delay_h"])
    check_ids = set(job["check_ids"])
    monitors: dict[str, FeedbackArmsMonitor] = {}
    feeds: dict[str, list[ArmFeed]] = {}
    staffs: dict[str, Staff] = {}
    plain: dict[str, list[tuple[HouseholdMonitor, ArmFeed]]] = {}
    counted = [0]
    handled = 0
    plain_s = 0.0
    began, cpu_began = time.perf_counter(), time.process_time()
    for hid, meter, ts, value in own_rows(path, processes, index, counted):
        monitor = monitors.get(hid)
        if monitor is None:
            zone = zones.get(hid, default_zone)
            monitor = monitors[hid] = FeedbackArmsMonitor(hid, zone, len(arms))
            feeds[hid] = [ArmFeed(arm if fb else None, rate, delay) for arm, (fb, rate) in zip(monitor.arms, arms)]
            staffs[hid] = Staff(labels.get(hid, []), seed)
            if hid in check_ids:
                plain[hid] = []
                for fb, rate in arms:
                    p = new_monitor(hid, zone)
                    plain[hid].append((p, ArmFeed(p if fb else None, rate, delay)))
            if len(monitors) % 50 == 0:
                print(f"  [worker {index}] {len(monitors)} households, {handled:,} readings, "
                      f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        staff = staffs[hid]
        arm_feeds = feeds[hid]
        for feed in arm_feeds:
            if feed.pending:
                feed.apply_due(ts)
        for feed, new in zip(arm_feeds, monitor.process_arms(meter, ts, value)):
            if new:
                feed.warned(new, staff)
        handled += 1
        if hid in plain:
            t = time.perf_counter()
            for p, feed in plain[hid]:
                feed.apply_due(ts)
                feed.warned(p.process(meter, ts, value), staff)
            plain_s += time.perf_counter() - t
    seconds = time.perf_counter() - began

    problems = []
    for hid, plains in plain.items():
        multi = monitors[hid]
        for i, ((p, pfeed), feed, arm) in enumerate(zip(plains, feeds[hid], multi.arms)):
            got, ours = [w.model_dump() for w in pfeed.warnings], [w.model_dump() for w in feed.warnings]
            if got != ours:
                first = next((j for j, (a, b) in enumerate(zip(got, ours)) if a != b), min(len(got), len(ours)))
                problems.append(f"{hid} arm {i}: plain monitor gave {len(got)} warnings, arms monitor {len(ours)}; "
                                f"first difference at #{first}")
            if p.sensitivity != arm.sensitivity or p.feedback.streaks != arm.feedback.streaks:
                problems.append(f"{hid} arm {i}: sensitivity {p.sensitivity} / streaks {p.feedback.streaks} vs "
                                f"{arm.sensitivity} / {arm.feedback.streaks}")
            if pfeed.effects != feed.effects:
                problems.append(f"{hid} arm {i}: feedback effects differ")
            if pickle.dumps(p.detectors) != pickle.dumps(multi.detectors):
                problems.append(f"{hid} arm {i}: learned detector state differs from the plain monitor's")
            if (p.readings, p.out_of_order) != (multi.readings, multi.out_of_order):
                problems.append(f"{hid} arm {i}: reading counts differ")

    out_arms = []
    for i in range(len(arms)):
        out_arms.append({
            "warnings": [w for f in feeds.values() for w in f[i].warnings],
            "judged": [j for f in feeds.values() for j in f[i].judged],
            "effects": [(hid, *e) for hid, f in feeds.items() for e in f[i].effects],
            "undelivered": sum(len(f[i].pending) for f in feeds.values()),
            "sensitivity": {hid: {k.value: v for k, v in m.arms[i].sensitivity.items()}
                            for hid, m in monitors.items() if m.arms[i].sensitivity},
        })
    return {"index": index, "arms": out_arms, "rows": counted[0], "readings": handled, "households": len(monitors),
            "household_ids": sorted(monitors), "seconds": seconds, "cpu_seconds": time.process_time() - cpu_began,
            "plain_check_seconds": plain_s, "checked": sorted(plain),
            "check_warnings": sum(len(f.warnings) for ps in plain.values() for _, f in ps),
            "check_effects": sum(len(f.effects) for ps in plain.values() for _, f in ps),
            "problems": problems}


def run_arms(path: Path, zones: dict[str, str], labels: dict[str, list[EventLabel]], arms: Sequence[tuple[bool, float]],
             processes: int, *, default_zone: str = "UTC", delay_h: float = 6.0, staff_seed: int = 7,
             check_ids: Sequence[str] = ()) -> dict:
    jobs = [{"path": str(path), "zones": zones, "default_zone": default_zone, "arms": list(arms), "labels": labels,
             "staff_seed": staff_seed, "delay_h": delay_h, "processes": processes, "index": i,
             "check_ids": list(check_ids)} for i in range(processes)]
    began = time.perf_counter()
    if processes == 1:
        parts = [run_share(jobs[0])]
    else:
        with mp.get_context("fork").Pool(processes) as pool:
            parts = pool.map(run_share, jobs)
    wall = time.perf_counter() - began
    problems = [p for part in parts for p in part["problems"]]
    if problems:
        raise SystemExit("FeedbackArmsMonitor differs from plain HouseholdMonitors:\n  " + "\n  ".join(problems))
    merged = []
    for i in range(len(arms)):
        pairs = sorted(((w, j) for part in parts for w, j in zip(part["arms"][i]["warnings"], part["arms"][i]["judged"])),
                       key=lambda wj: (wj[0].detected_at, wj[0].warning_id))
        merged.append({"warnings": [w for w, _ in pairs], "judged": [j for _, j in pairs],
                       "effects": sorted((e for part in parts for e in part["arms"][i]["effects"]), key=lambda e: (e[4], e[0])),
                       "undelivered": sum(part["arms"][i]["undelivered"] for part in parts),
                       "sensitivity": {h: s for part in parts for h, s in part["arms"][i]["sensitivity"].items()}})
    return {"arms": merged, "wall_s": wall, "rows": parts[0]["rows"],
            "readings": sum(p["readings"] for p in parts), "households": sum(p["households"] for p in parts),
            "household_ids": sorted(h for p in parts for h in p["household_ids"]),
            "checked": sorted(h for p in parts for h in p["checked"]),
            "check_warnings": sum(p["check_warnings"] for p in parts),
            "check_effects": sum(p["check_effects"] for p in parts),
            "workers": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in p.items()
                         if k in ("index", "readings", "households", "seconds", "cpu_seconds", "plain_check_seconds")}
                        for p in parts]}


# ------------------------------------------------------------------------------------------------
# Analysis: everything the report shows, as plain JSON-ready numbers
# ------------------------------------------------------------------------------------------------
def lowering_steps(value: float) -> str:
    """``1.0`` -> ``"0"``, ``0.85`` -> ``"1"``, ... the bound ``0.5`` -> ``"floor"``."""
    if value >= 1.0:
        return "0"
    if value <= SENSITIVITY_BOUNDS[0] + 1e-9:
        return "floor"
    return str(round(math.log(value) / math.log(LOWER_BY)))


def sensitivity_summary(final: dict[str, dict[str, float]], household_ids: Sequence[str],
                        effects: Sequence[tuple]) -> dict:
    """Final sensitivity per household x welfare kind: how many pairs lowered, histogram of values."""
    pairs = [(h, k) for h in household_ids for k in WELFARE]
    values = [final.get(h, {}).get(k, 1.0) for h, k in pairs]
    hist: dict[str, dict[str, int]] = {}
    for (h, k), v in zip(pairs, values):
        key = f"{v:.4f}"
        hist.setdefault(key, Counter())[k] += 1
    hist = {v: {k: c[k] for k in WELFARE} | {"all": sum(c.values())} for v, c in sorted(hist.items(), reverse=True)}
    lowered_ever = {(e[0], e[1]) for e in effects if e[6] < e[5]}
    restored = [(e[0], e[1]) for e in effects if e[6] > e[5]]
    return {"pairs": len(pairs), "households": len(household_ids),
            "lowered_at_end": sum(v < 1.0 for v in values),
            "lowered_at_end_by_kind": {k: sum(final.get(h, {}).get(k, 1.0) < 1.0 for h in household_ids) for k in WELFARE},
            "households_with_a_lowered_kind": sum(any(final.get(h, {}).get(k, 1.0) < 1.0 for k in WELFARE)
                                                  for h in household_ids),
            "lowered_ever": len(lowered_ever), "restores": len(restored),
            "lowering_steps": sum(e[6] < e[5] for e in effects),
            "min": min(values) if values else None,
            "lowest_ever": min([1.0] + [e[6] for e in effects]), "histogram": hist}


def feedback_summary(arm: dict, start: datetime) -> dict:
    """What staff said and what it did."""
    judged = arm["judged"]
    effects = arm["effects"]  # (hid, kind, truth, given, applied_at, before, after, duplicate)
    lowering_days = [(datetime.fromisoformat(e[4]) - start).total_seconds() / 86400 for e in effects if e[6] < e[5]]
    return {"warnings": len(judged),
            "truth": dict(Counter(t for t, _ in judged)),
            "given": dict(Counter(g for _, g in judged)),
            "flipped": dict(Counter(f"{t}->{g}" for t, g in judged if t != g)),
            "applied": len(effects), "duplicates": sum(bool(e[7]) for e in effects),
            "undelivered": arm["undelivered"],
            "lowering_day_first": round(min(lowering_days), 1) if lowering_days else None,
            "lowering_day_median": round(statistics.median(lowering_days), 1) if lowering_days else None}


def false_alarm_pattern(arm: dict, warmup_end: datetime) -> dict:
    """In one arm's warnings (all of them, from the monitor's warm-up on): per household x welfare kind,
    how many the staff judged not needed, how many pairs ever reached LOWER_AFTER in a row (the rule's
    streak: needed resets it, not_home neither counts nor resets), and how many scored false alarms
    (``false_alarm`` after ``warmup_end``) arrive while their pair would already be lowered by this
    sequence of outcomes (lowered from the streak's end until a needed outcome): all feedback could touch."""
    per_pair: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    scores_fa = []
    for w, (truth, _) in zip(arm["warnings"], arm["judged"]):
        if w.kind.value in WELFARE:
            per_pair[(w.household_id, w.kind.value)].append((truth, w.detected_at >= warmup_end))
            if truth in NOT_NEEDED:
                scores_fa.append(w.score)
    counts = Counter()
    reach = scored = reachable = 0
    for seq in per_pair.values():
        n = sum(t in NOT_NEEDED for t, _ in seq)
        if n:
            counts[min(n, 4)] += 1
        streak, hit, lowered = 0, False, False
        for truth, after in seq:
            if truth == "false_alarm" and after:
                scored += 1
                reachable += lowered
            if truth in NEEDED:
                streak, lowered = 0, False
            elif truth in NOT_NEEDED:
                streak += 1
                if streak >= LOWER_AFTER:
                    hit = lowered = True
                    streak = 0
        reach += hit
    one_step = 1.0 / LOWER_BY
    return {"false_alarm_warnings": len(scores_fa),
            "pairs_with_false_alarms": {("4+" if n == 4 else str(n)): c for n, c in sorted(counts.items())},
            "pairs_reaching_streak": reach,
            "scored_false_alarms": scored,
            "scored_false_alarms_while_lowered": reachable,
            "score_quiet_after_one_step": one_step,
            "false_alarms_scored_below_one_step": sum(s < one_step for s in scores_fa),
            "false_alarm_score_median": round(statistics.median(scores_fa), 3) if scores_fa else None}


def compare_events(base: EvaluationReport, arm: EvaluationReport) -> dict:
    """Events detected without feedback but missed with it (and the reverse), and later detections."""
    def key(o):
        return (o.household_id, o.kind, o.start.isoformat())
    b = {key(o): o for o in base.outcomes}
    a = {key(o): o for o in arm.outcomes}
    lost, gained, later, earlier = [], [], Counter(), Counter()
    delays = defaultdict(list)
    for k, ob in b.items():
        oa = a[k]
        if ob.ttd_h is not None and oa.ttd_h is None:
            lost.append({"household_id": k[0], "kind": k[1], "start": k[2], "ttd_h_without_feedback": ob.ttd_h})
        elif ob.ttd_h is None and oa.ttd_h is not None:
            gained.append({"household_id": k[0], "kind": k[1], "start": k[2]})
        elif ob.ttd_h is not None:
            if oa.ttd_h > ob.ttd_h + 1e-9:
                later[k[1]] += 1
                delays[k[1]].append(oa.ttd_h - ob.ttd_h)
            elif oa.ttd_h < ob.ttd_h - 1e-9:
                earlier[k[1]] += 1
    return {"lost": lost, "gained": gained, "later": dict(later), "earlier": dict(earlier),
            "later_by_h_median": {k: round(statistics.median(v), 2) for k, v in delays.items()}}


def compare_baseline(report: EvaluationReport, path: Path, params: dict) -> dict:
    """The no-feedback arm against the recorded detect_quality s=1.0 run: equal, or the differences."""
    if not path.exists():
        return {"compared": False, "why": f"{path} not found"}
    recorded = json.loads(path.read_text())
    data = recorded.get("data", {})
    theirs = (data.get("households"), data.get("days"), data.get("seed"))
    if theirs != (params["households"], params["days"], params["seed"]):
        return {"compared": False, "why": f"recorded run is households/days/seed {theirs}, this one "
                f"{(params['households'], params['days'], params['seed'])}"}
    old = recorded["reports"][BASELINE_RUN]
    new = json.loads(json.dumps(summarize(report)))
    diffs = []
    for field in ("household_months", "events_unscored", "totals", "welfare", "by_warning_kind", "by_event_kind",
                  "precision"):
        if old.get(field) != new.get(field):
            diffs.append(field)
    return {"compared": True, "equal": not diffs, "differing_fields": diffs,
            "recorded_detectors_sha1": recorded.get("detectors", {}).get("sha1"),
            "recorded_false_alarms": old["totals"]["false_alarms"],
            "recorded_fa_per_hh_month": old["totals"]["false_alarms_per_household_month"],
            "false_alarms": new["totals"]["false_alarms"],
            "fa_per_hh_month": new["totals"]["false_alarms_per_household_month"]}


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _report(d: dict) -> EvaluationReport:
    return EvaluationReport.model_validate({**d, "outcomes": []})


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None or not a:
        return "-"
    return f"{100 * (b - a) / a:+.0f}%"


def render(res: dict) -> str:
    names = res["arm_names"]
    reps = {n: _report(res["arms"][n]["report"]) for n in names}
    base = reps[NO_FEEDBACK]
    fb_name, err_name = names[1], names[2]
    p, mach, code, data = res["params"], res["machine"], res["detectors"], res["data"]
    chk, bl = res["check"], res["baseline"]
    t = res["timing_s"]

    lines = [
        "# Staff feedback: false alarms and real emergencies",
        "",
        f"Command: `{res['command']}`",
        "",
        f"- Machine: {mach['cpu']}, nproc {mach['nproc']}; Python {mach['python']} on {mach['os']}",
        f"- Detector code: `git hash-object detectors/*.py | sha1sum` = `{code['sha1'][:12]}` (HEAD {code['git_head']}"
        f"{', detectors/ has uncommitted changes' if code['uncommitted'] else ''}). Default `MonitorConfig` "
        f"(warm-up {res['monitor_warmup_days']:g} days); feedback rule `detectors/feedback.py`: {LOWER_AFTER} not-needed "
        f"outcomes in a row → ×{LOWER_BY} (floor {SENSITIVITY_BOUNDS[0]}), needed → back to ≥ 1.0, not_home / meter_fault "
        f"change nothing.",
        f"- Data: simulator seed {p['seed']}, {data['households']} households × {data['days']} days "
        f"({data['start']} .. {data['end']}, {data['timezone']}), {data['readings']:,} readings, anomaly rate "
        f"{data['anomaly_rate']:g}; `{data['dir']}`. Scoring as detect_quality: warm-up ends {data['warmup_end'][:10]} "
        f"(day {data['warmup_days']}), {base.household_months:.1f} household-months (away time excluded), events "
        + ", ".join(f"{k} {base.event(k).events}" for k in EVENT_KINDS) + ".",
        f"- Staff: every warning gets an outcome {p['delay_hours']:g} h (data time) after its `detected_at`, applied "
        f"before the household's first reading at or after that time, key = warning id. `needed_help` if the "
        f"evaluation's rule matches it to a labelled event of the household (any welfare warning in "
        f"`[start, end + 2 h]` of a welfare event; events in the scoring warm-up count too: staff cannot tell), "
        f"`not_home` if it is in a labelled away window, else `false_alarm`; `meter_offline` → `meter_fault`. "
        f"Staff-error arm: {p['error_rate']:.0%} of needed_help / false_alarm outcomes flipped "
        f"(hash of staff seed {p['staff_seed']} and warning id).",
        f"- Runtime: spans {t['scan']:.0f} s; the three arms in one pass {t['arms_wall']:.0f} s wall over "
        f"{p['processes']} processes; scoring {t['scoring']:.0f} s; total {t['total']:.0f} s. Load average "
        f"{res['load_average']['start']:.1f} at start, {res['load_average']['end']:.1f} at end.",
        f"- Check: on {len(chk['households'])} households each arm also ran as a plain `HouseholdMonitor` "
        f"(`detectors.offline.new_monitor`) fed by the same staff: same warnings ({chk['warnings']}), feedback effects "
        f"({chk['effects']}), final sensitivities and learned state as the one-pass monitor (the bench stops otherwise).",
    ]
    if bl.get("compared"):
        if bl["equal"]:
            lines.append(f"- **No-feedback arm = recorded baseline**: every number of the `{BASELINE_RUN}` row of "
                         f"`bench/results/detect_quality.json` (false alarms {bl['recorded_false_alarms']}, "
                         f"{bl['recorded_fa_per_hh_month']:.3f} per household-month, recall and time to detect per kind, "
                         f"household-months) is reproduced exactly, although `detectors/` changed since that run "
                         f"(recorded hash `{(bl['recorded_detectors_sha1'] or '?')[:12]}`).")
        else:
            lines.append(f"- **No-feedback arm differs from the recorded baseline** (`{BASELINE_RUN}` of "
                         f"`bench/results/detect_quality.json`, detector hash `{(bl['recorded_detectors_sha1'] or '?')[:12]}`) "
                         f"in {', '.join(bl['differing_fields'])}: false alarms {bl['false_alarms']} "
                         f"({bl['fa_per_hh_month']:.3f}/hh-month) vs recorded {bl['recorded_false_alarms']} "
                         f"({bl['recorded_fa_per_hh_month']:.3f}).")
    else:
        lines.append(f"- Recorded baseline not compared: {bl.get('why')}.")

    # ---- headline ------------------------------------------------------------------------------
    lines += ["", "## Headline", "",
              "| arm | false alarms / hh-month | false alarms | change | warnings scored | precision | "
              + " | ".join(f"recall {k}" for k in EVENT_KINDS) + " | events lost vs no feedback |",
              "|---|---:|---:|---:|---:|---:|" + "---:|" * len(EVENT_KINDS) + "---:|"]
    for n in names:
        r = reps[n]
        cmp_ = res["arms"][n].get("vs_no_feedback")
        lost = "-" if cmp_ is None else f"{len(cmp_['lost'])} (gained {len(cmp_['gained'])})"
        lines.append(f"| {n} | {_h(r.totals.false_alarms_per_household_month, 3)} | {r.totals.false_alarms} | "
                     f"{'-' if n == NO_FEEDBACK else _change(base.totals.false_alarms, r.totals.false_alarms)} | "
                     f"{r.totals.true_positives + r.totals.false_alarms:,} | {_h(r.precision, 3)} | "
                     + " | ".join(f"{_pct(r.event(k).recall)} ({r.event(k).detected})" for k in EVENT_KINDS)
                     + f" | {lost} |")

    # ---- full tables ---------------------------------------------------------------------------
    lines += ["", "## Per arm: recall, time to detect, false alarms by kind", "",
              *tables([reps[n] for n in names], NO_FEEDBACK)]

    # ---- effect on events ---------------------------------------------------------------------
    lines += ["", "## What feedback did to the events", "",
              "Against the no-feedback arm, event by event (same labels): lost = detected without feedback, missed "
              "with it; later = detected by both, later with feedback (median delay in brackets).", "",
              "| arm | lost | gained | later | earlier |", "|---|---:|---:|---|---|"]
    for n in names[1:]:
        c = res["arms"][n]["vs_no_feedback"]
        later = ", ".join(f"{k} {v} ({c['later_by_h_median'][k]:.2f} h)" for k, v in sorted(c["later"].items())) or "none"
        earlier = ", ".join(f"{k} {v}" for k, v in sorted(c["earlier"].items())) or "none"
        lines.append(f"| {n} | {len(c['lost'])} | {len(c['gained'])} | {later} | {earlier} |")
    for n in names[1:]:
        c = res["arms"][n]["vs_no_feedback"]
        if c["lost"]:
            lines += ["", f"Lost in `{n}`: " + "; ".join(
                f"{e['household_id']} {e['kind']} {e['start'][:16]}" for e in c["lost"][:20])
                + (" …" if len(c["lost"]) > 20 else "")]

    # ---- feedback and sensitivity -------------------------------------------------------------
    lines += ["", "## Feedback given and where sensitivity ended", "",
              "Outcomes are over every warning from the monitors' own warm-up (day 21) on, including the week before the "
              "scoring warm-up ends; pairs are household × welfare kind "
              f"({', '.join(WELFARE)}).", "",
              "| arm | warnings judged | truth: needed_help / false_alarm / not_home / meter_fault | flipped | "
              "feedback applied (duplicate keys) | not yet due at end | lowering steps | restores to 1.0 | "
              "pairs ever lowered | pairs lowered at end (households) | first / median lowering, day |",
              "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for n in names:
        f, s = res["arms"][n]["feedback"], res["arms"][n]["sensitivity"]
        truth = " / ".join(str(f["truth"].get(o, 0)) for o in ("needed_help", "false_alarm", "not_home", "meter_fault"))
        flipped = ", ".join(f"{k} {v}" for k, v in sorted(f["flipped"].items())) or "-"
        lines.append(f"| {n} | {f['warnings']:,} | {truth} | {flipped} | {f['applied']:,} ({f['duplicates']}) | "
                     f"{f['undelivered']} | {s['lowering_steps']} | {s['restores']} | {s['lowered_ever']} | "
                     f"{s['lowered_at_end']} of {s['pairs']:,} ({s['households_with_a_lowered_kind']}) | "
                     f"{_h(f['lowering_day_first'], 1)} / {_h(f['lowering_day_median'], 1)} |")
    for n in names[1:]:
        s = res["arms"][n]["sensitivity"]
        lines += ["", f"Final sensitivity, `{n}` (household × kind pairs; 1 step = ×{LOWER_BY}):", "",
                  "| sensitivity | steps down | " + " | ".join(WELFARE) + " | all |",
                  "|---:|---:|" + "---:|" * (len(WELFARE) + 1)]
        for v, row in s["histogram"].items():
            lines.append(f"| {float(v):.4f} | {lowering_steps(float(v))} | " + " | ".join(str(row[k]) for k in WELFARE)
                         + f" | {row['all']} |")

    # ---- why ----------------------------------------------------------------------------------
    pat = res["arms"][NO_FEEDBACK]["pattern"]
    lines += ["", "## How the false alarms are spread (no-feedback arm)", "",
              f"Welfare warnings staff judge not needed: {pat['false_alarm_warnings']} from day 21 (the monitors' "
              f"warm-up) on; {pat['scored_false_alarms']} of them are the scored false alarms (after day "
              f"{data['warmup_days']}, not in an away window). By household × kind pair: "
              + ", ".join(f"{c} pairs with {n}" for n, c in pat["pairs_with_false_alarms"].items())
              + f". Pairs whose not-needed outcomes ever reach {LOWER_AFTER} in a row (what lowers): "
              f"{pat['pairs_reaching_streak']}. Scored false alarms that arrive while their pair would already be "
              f"lowered by that sequence (from its 2nd not-needed in a row until a needed outcome), the most feedback "
              f"could remove: {pat['scored_false_alarms_while_lowered']}. One step down silences a warning only if its "
              f"score was below 1/{LOWER_BY} = {pat['score_quiet_after_one_step']:.3f}: "
              f"{pat['false_alarms_scored_below_one_step']} of {pat['false_alarm_warnings']} not-needed warnings scored "
              f"below that (median score {_h(pat['false_alarm_score_median'], 3)}).", ""]

    # ---- conclusions --------------------------------------------------------------------------
    lines += ["## What this says", "", *conclusions(res, reps), ""]
    return "\n".join(lines)


def conclusions(res: dict, reps: dict[str, EvaluationReport]) -> list[str]:
    """Plain sentences, each number taken from this run."""
    names = res["arm_names"]
    base, fb, err = reps[names[0]], reps[names[1]], reps[names[2]]
    cf, ce = res["arms"][names[1]]["vs_no_feedback"], res["arms"][names[2]]["vs_no_feedback"]
    sf, se = res["arms"][names[1]]["sensitivity"], res["arms"][names[2]]["sensitivity"]
    ff = res["arms"][names[1]]["feedback"]
    pat = res["arms"][NO_FEEDBACK]["pattern"]
    days = res["data"]["days"]
    fa0, fa1, fa2 = (r.totals.false_alarms_per_household_month for r in (base, fb, err))
    drop = (fa0 - fa1) / fa0 if fa0 else 0.0
    size = "barely lowers" if drop < 0.1 else ("modestly lowers" if drop < 0.25 else "lowers")
    moved = [k for k in KINDS if abs(base.warnings(k).false_alarms - fb.warnings(k).false_alarms) > 3]

    def fa_kinds(r: EvaluationReport) -> str:
        return ", ".join(f"{k} {_h(base.warnings(k).false_alarms_per_household_month, 3)} → "
                         f"{_h(r.warnings(k).false_alarms_per_household_month, 3)}" for k in KINDS
                         if base.warnings(k).false_alarms or r.warnings(k).false_alarms)

    def events(c: dict) -> str:
        later = ", ".join(f"{k} {v} (median +{c['later_by_h_median'][k]:.2f} h)" for k, v in sorted(c["later"].items()))
        return (f"{len(c['lost'])} events detected without feedback were missed with it, {len(c['gained'])} gained, "
                f"{sum(c['later'].values())} detected later" + (f": {later}" if later else ""))

    recall = "unchanged for every kind" if all(base.event(k).detected == fb.event(k).detected for k in EVENT_COLUMNS) \
        else ", ".join(f"{k} {_pct(base.event(k).recall)} → {_pct(fb.event(k).recall)}" for k in EVENT_COLUMNS
                       if base.event(k).detected != fb.event(k).detected)
    ttd = ", ".join(f"{k} {_h(base.event(k).ttd_median_h)} → {_h(fb.event(k).ttd_median_h)} h" for k in EVENT_COLUMNS
                    if base.event(k).ttd_median_h != fb.event(k).ttd_median_h) or "unchanged for every kind"
    pairs = pat["pairs_with_false_alarms"]
    with_any = sum(pairs.values())
    floor = SENSITIVITY_BOUNDS[0]
    lowest = min(sf["lowest_ever"], se["lowest_ever"])
    low_recall = [f"{k} {_pct(base.event(k).recall)}" for k in EVENT_KINDS
                  if base.event(k).recall is not None and base.event(k).recall < 0.95]
    return [
        f"- **False alarms: feedback {size} them.** With staff who always judge right: {fa0:.3f} → {fa1:.3f} per "
        f"household-month ({base.totals.false_alarms} → {fb.totals.false_alarms} false alarms, "
        f"{_change(base.totals.false_alarms, fb.totals.false_alarms)}); precision {_h(base.precision, 3)} → "
        f"{_h(fb.precision, 3)}. By kind: {fa_kinds(fb)}"
        + (f" (only {', '.join(moved)} changed by more than 3 false alarms)" if 0 < len(moved) <= 2 else "") + ".",
        f"- **Real emergencies: none lost here.** {events(cf)}. Recall: {recall}. Median time to detect: {ttd}. "
        f"A later detection is the price of a lowered kind: for night activity it means the next night.",
        f"- **Why so little.** The rule needs {LOWER_AFTER} not-needed outcomes in a row for one household and kind, "
        f"and false alarms are spread thin: of the {with_any} household × kind pairs with any, {pairs.get('1', 0)} had "
        f"exactly one in {days} days, and the first {LOWER_AFTER} of every pair are never prevented. Only "
        f"{pat['scored_false_alarms_while_lowered']} of the {pat['scored_false_alarms']} scored false alarms arrive "
        f"while their pair would already be lowered (counted on the no-feedback sequence): roughly the most it "
        f"could remove; it removed "
        f"{base.totals.false_alarms - fb.totals.false_alarms}. Lowering came late ({sf['lowered_ever']} of "
        f"{sf['pairs']:,} pairs, first on day {_h(ff['lowering_day_first'], 1)}, median day "
        f"{_h(ff['lowering_day_median'], 1)} of {days}; {sf['restores']} restored to 1.0 by a real event; "
        f"{sf['lowered_at_end']} pairs lowered at the end). The step size is not what limits it: "
        f"{pat['false_alarms_scored_below_one_step']} of {pat['false_alarm_warnings']} not-needed warnings opened at a "
        f"score below {pat['score_quiet_after_one_step']:.3f} (= 1/{LOWER_BY}), low enough for one step to matter.",
        f"- **Staff who err {res['params']['error_rate']:.0%} of the time.** False alarms {fa0:.3f} → {fa2:.3f} per "
        f"household-month ({_change(base.totals.false_alarms, err.totals.false_alarms)}); {events(ce)}; "
        f"{se['lowered_ever']} pairs ever lowered (vs {sf['lowered_ever']}). The lowest sensitivity any pair reached "
        f"in either arm is {lowest:.4f}"
        + (f", so the floor ({floor}) was never reached: this run does not show the bound at work. No event was "
           f"lost with erring staff either: lowering stays rare and one step small, and a real event judged "
           f"needed restores 1.0."
           if lowest > floor + 1e-9 else f", the floor ({floor})."),
        f"- **What it cannot fix.** Feedback only quiets a household's kind after repeated not-needed visits: "
        f"it cannot prevent one-off false alarms ({pairs.get('1', 0)} pairs here) or the first {LOWER_AFTER} of any "
        f"household and kind, and it does nothing for missed events"
        + (f" (recall below 95%: {', '.join(low_recall)})" if low_recall else "")
        + f": a needed outcome only restores a lowered kind to 1.0, it never raises one above it. Over {days} "
        f"simulated days there is little feedback history; a longer run could lower more pairs, this run cannot "
        f"say by how much.",
    ]


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--households", type=int, default=500)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=None, help="simulated data set (default as bench_detect_quality: "
                    "/tmp/sim500 for the defaults, else /tmp/sim{households}x{days}s{seed}); generated when missing")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--delay-hours", type=float, default=6.0, help="data time from a warning to its staff outcome")
    ap.add_argument("--error-rate", type=float, default=0.1, help="share of needed_help / false_alarm outcomes "
                    "flipped in the staff-error arm")
    ap.add_argument("--staff-seed", type=int, default=None, help="which outcomes staff get wrong (default --seed)")
    ap.add_argument("--check-households", type=int, default=10,
                    help="households also run as plain HouseholdMonitors per arm")
    ap.add_argument("--baseline", type=Path, default=BASELINE_JSON,
                    help="recorded detect_quality JSON the no-feedback arm is compared with")
    ap.add_argument("--out", type=Path, default=RESULTS / "feedback.md")
    ap.add_argument("--from-json", type=Path, default=None, help="only re-render the .md from a results .json")
    args = ap.parse_args(argv)
    if args.from_json:
        res = json.loads(args.from_json.read_text())
        args.out.write_text(render(res), encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
        return 0
    if args.data is None:
        args.data = Path("/tmp/sim500") if (args.households, args.days, args.seed) == (500, 90, 7) else \
            Path(f"/tmp/sim{args.households}x{args.days}s{args.seed}")
    staff_seed = args.seed if args.staff_seed is None else args.staff_seed
    names = arm_names(args.error_rate)
    arms = [(False, 0.0), (True, 0.0), (True, args.error_rate)]
    code = detectors_hash()
    began = time.perf_counter()
    load = os.getloadavg()

    data_dir = ensure_data(args)
    manifest = load_manifest(data_dir / "manifest.json")
    info = json.loads((data_dir / "manifest.json").read_text())
    readings = data_dir / manifest.files.get("readings", "readings.csv.gz")
    print(f"scanning {readings}: spans", file=sys.stderr, flush=True)
    t = time.perf_counter()
    data = load_inputs(labels=data_dir / "labels.jsonl", readings=readings)
    scan_s = time.perf_counter() - t
    hids = sorted(data.spans)
    by_hid: dict[str, list[EventLabel]] = defaultdict(list)
    for label in data.labels or []:
        by_hid[label.household_id].append(label)
    check_ids = hids[::max(1, len(hids) // max(1, args.check_households))][:args.check_households]
    print(f"{len(names)} arms over {len(hids)} households in {args.processes} processes (checking {len(check_ids)} "
          f"against plain monitors)", file=sys.stderr, flush=True)
    run = run_arms(readings, data.timezones, dict(by_hid), arms, args.processes, default_zone=manifest.timezone,
                   delay_h=args.delay_hours, staff_seed=staff_seed, check_ids=check_ids)
    print(f"  {run['readings']:,} readings in {run['wall_s']:.1f} s; check passed on {len(run['checked'])} households",
          file=sys.stderr, flush=True)

    t = time.perf_counter()
    reports = {n: data.evaluate(arm["warnings"], name=n) for n, arm in zip(names, run["arms"])}
    score_s = time.perf_counter() - t
    start = manifest.local_midnight(manifest.start)
    params = {"households": args.households, "days": args.days, "seed": args.seed, "processes": args.processes,
              "delay_hours": args.delay_hours, "error_rate": args.error_rate, "staff_seed": staff_seed,
              "check_households": args.check_households}
    arms_out = {}
    for n, arm in zip(names, run["arms"]):
        arms_out[n] = {"report": summarize(reports[n]),
                       "feedback": feedback_summary(arm, start),
                       "sensitivity": sensitivity_summary(arm["sensitivity"], run["household_ids"], arm["effects"]),
                       "pattern": false_alarm_pattern(arm, data.warmup_end),
                       "vs_no_feedback": None if n == NO_FEEDBACK else compare_events(reports[NO_FEEDBACK], reports[n])}
    total_s = time.perf_counter() - began
    cmd = "python -m bench.bench_feedback " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    res = {"command": cmd.strip(), "machine": machine(), "detectors": code,
           "monitor_warmup_days": MonitorConfig().warmup_days, "params": params, "arm_names": names,
           "data": {"dir": str(data_dir), "households": len(hids), "days": manifest.days, "start": str(manifest.start),
                    "end": str(manifest.end), "timezone": manifest.timezone, "readings": data.readings_rows,
                    "anomaly_rate": info.get("anomaly_rate"), "warmup_days": manifest.warmup_days,
                    "warmup_end": data.warmup_end.isoformat(), "labels": dict(Counter(l.kind for l in data.labels or []))},
           "baseline": compare_baseline(reports[NO_FEEDBACK], args.baseline, params),
           "check": {"households": run["checked"], "warnings": run["check_warnings"], "effects": run["check_effects"]},
           "timing_s": {"scan": round(scan_s, 2), "arms_wall": round(run["wall_s"], 2), "scoring": round(score_s, 2),
                        "total": round(total_s, 2)},
           "load_average": {"start": load[0], "end": os.getloadavg()[0]},
           "workers": run["workers"], "arms": arms_out}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    args.out.write_text(render(res), encoding="utf-8")
    print(args.out.read_text())
    print(f"wrote {args.out} and {args.out.with_suffix('.json').name} in {total_s:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
