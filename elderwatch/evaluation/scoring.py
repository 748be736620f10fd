"""Scoring warnings against labelled events.

The rule (from the evaluation issue):

* An **event** is a label of kind ``inactivity``, ``surge``, ``continuous_flow``,
  ``night_activity`` (welfare events) or ``meter_offline``. ``away`` labels are not events.
  Events that start before the warm-up ends are not scored.
* A welfare event is **detected** by any welfare warning (any kind except ``meter_offline``) of
  its household with ``detected_at`` in ``[start, end + 2 h]``; a ``meter_offline`` event needs a
  ``meter_offline`` warning. We also report **same-kind recall** (detected by a warning of the
  event's own kind), which shows a detector that sees something but names it wrongly.
* **Time to detect** = the first matching warning's ``detected_at`` - event start, clipped at 0.
* Each warning is, in this order: a **true positive** if it falls in such a window of a scored
  event; **ignored** if it is before the warm-up end (or matches an event that began in the
  warm-up) or inside an ``away`` label's ``[start, end]``; otherwise a **false alarm**.
  So ``true positives + false alarms + ignored = warnings``.
* **Household-months** = sum over households of (data span after warm-up - time inside ``away``
  windows) / 30.44 days. Rates are per household-month; precision = true positives / (true
  positives + false alarms).
* Inactivity is also split by onset: **day** if the label starts between 06:00 and 21:00 local
  time of the household, else **night**.

Without labels (real data) every warning after the warm-up counts, and the report is simply
warnings per household-month.

>>> from datetime import datetime as dt
>>> from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
>>> t = lambda s: dt.fromisoformat(f"2026-02-10T{s}+00:00")
>>> labels = [EventLabel(household_id="hh-1", kind="surge", start=t("22:00"), end=t("23:00"), meter="electricity")]
>>> def warn(at, kind=AnomalyKind.SURGE):
...     return AnomalyWarning.for_episode(household_id="hh-1", kind=kind, meter=None, episode_start=t(at),
...         detected_at=t(at), score=2.0, severity=Severity.HIGH, summary="")
>>> spans = {"hh-1": Span(dt.fromisoformat("2026-01-01T00:00:00+00:00"), dt.fromisoformat("2026-03-02T23:00:00+00:00"))}
>>> r = evaluate(labels, [warn("22:45"), warn("09:00", AnomalyKind.INACTIVITY)], spans, warmup_end=t("00:00"))
>>> s = r.event("surge")
>>> s.events, s.detected, s.ttd_median_h, r.totals.true_positives, r.totals.false_alarms
(1, 1, 0.75, 1, 1)
>>> round(r.household_months, 3), r.precision
(0.689, 0.5)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict

from elderwatch.evaluation.baselines import Span
from elderwatch.evaluation.files import EVENT_KINDS, WELFARE_EVENT_KINDS, EventLabel
from schemas.anomaly import AnomalyKind, AnomalyWarning

GRACE = timedelta(hours=2)  # a warning up to this long after an event's end still detects it
DAYS_PER_MONTH = 30.44
DAY_ONSET = (time(6, 0), time(21, 0))  # inactivity onset in [06:00, 21:00) local time is "day"
_OFFLINE = AnomalyKind.METER_OFFLINE.value
_MONTH_S = DAYS_PER_MONTH * 86400.0


class EventScore(BaseModel):
    """Recall and time to detect for one event kind (or inactivity by day / night onset)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    events: int
    detected: int
    recall: float | None
    same_kind_detected: int
    same_kind_recall: float | None
    ttd_median_h: float | None
    ttd_p90_h: float | None


class WarningScore(BaseModel):
    """What became of the warnings of one kind (or ``all``, or ``welfare``: every kind but meter_offline)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    total: int
    true_positives: int
    false_alarms: int
    ignored_warmup: int
    ignored_away: int
    false_alarms_per_household_month: float | None
    #: Warnings that were scored (true positives + false alarms) per household-month: the load on staff.
    warnings_per_household_month: float | None

    @property
    def ignored(self) -> int:
        return self.ignored_warmup + self.ignored_away


class EventOutcome(BaseModel):
    """One scored event and how (and when) it was detected."""

    model_config = ConfigDict(frozen=True)

    household_id: str
    kind: str
    start: AwareDatetime
    end: AwareDatetime
    day_onset: bool
    detected_at: AwareDatetime | None = None
    detected_by: str | None = None
    same_kind_detected_at: AwareDatetime | None = None
    ttd_h: float | None = None


class EvaluationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    labelled: bool
    households: int
    household_months: float
    events_unscored: int
    by_event_kind: list[EventScore]
    totals: WarningScore
    welfare: WarningScore
    by_warning_kind: list[WarningScore]
    precision: float | None
    outcomes: list[EventOutcome]

    def event(self, kind: str) -> EventScore:
        return next(e for e in self.by_event_kind if e.kind == kind)

    def warnings(self, kind: str) -> WarningScore:
        if kind in ("all", "welfare"):
            return self.totals if kind == "all" else self.welfare
        return next(w for w in self.by_warning_kind if w.kind == kind)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _overlap(a: float, b: float, windows: list[tuple[float, float]]) -> float:
    """Length of [a, b] covered by the union of ``windows``."""
    covered, reach = 0.0, a
    for lo, hi in sorted(windows):
        lo, hi = max(lo, reach), min(hi, b)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered


def household_months(spans: Mapping[str, Span], warmup_end: datetime | Mapping[str, datetime] | None,
                     away: Mapping[str, list[tuple[float, float]]] | None = None) -> float:
    """Sum over households of (span after warm-up - away time in it), in months of 30.44 days.

    >>> from datetime import datetime as dt
    >>> s = {"a": Span(dt.fromisoformat("2026-01-01T00:00Z"), dt.fromisoformat("2026-03-02T00:00Z"))}
    >>> round(household_months(s, dt.fromisoformat("2026-01-31T00:00Z")) * DAYS_PER_MONTH, 6)   # 30 days
    30.0
    """
    total = 0.0
    for hid, (first, last) in spans.items():
        w = warmup_end.get(hid) if isinstance(warmup_end, Mapping) else warmup_end
        a = first.timestamp() if w is None else max(first.timestamp(), w.timestamp())
        b = last.timestamp()
        if b > a:
            total += (b - a) - _overlap(a, b, (away or {}).get(hid, []))
    return total / _MONTH_S


def _day_onset(start: datetime, zone: str) -> bool:
    local = start.astimezone(ZoneInfo(zone)).time()
    return DAY_ONSET[0] <= local < DAY_ONSET[1]


def _event_score(kind: str, outcomes: list[EventOutcome]) -> EventScore:
    ttd = [o.ttd_h for o in outcomes if o.ttd_h is not None]
    q = np.percentile(ttd, [50, 90]).tolist() if ttd else [None, None]
    detected = sum(o.detected_at is not None for o in outcomes)
    same = sum(o.same_kind_detected_at is not None for o in outcomes)
    return EventScore(kind=kind, events=len(outcomes), detected=detected, recall=_ratio(detected, len(outcomes)),
                      same_kind_detected=same, same_kind_recall=_ratio(same, len(outcomes)),
                      ttd_median_h=None if q[0] is None else round(q[0], 4),
                      ttd_p90_h=None if q[1] is None else round(q[1], 4))


def evaluate(labels: Iterable[EventLabel] | None, warnings: Iterable[AnomalyWarning], spans: Mapping[str, Span],
             timezones: Mapping[str, str] | None = None,
             warmup_end: datetime | Mapping[str, datetime] | None = None, *, name: str = "detector") -> EvaluationReport:
    """Scores ``warnings`` against ``labels`` (None: unlabelled data) over the households in ``spans``.

    Parameters
    ----------
    labels
        Events and ``away`` windows; None for real, unlabelled data.
    warnings
        Detector or baseline output, any order.
    spans
        Per household, first and last reading time; the households counted in household-months.
    timezones
        IANA zone per household, for the day / night onset split (default UTC).
    warmup_end
        One time for all households (simulated data), or one per household (real data:
        first reading + warm-up), or None (no warm-up).
    name
        Column name in the report (``detector``, ``kizuki``, ...).
    """
    timezones = timezones or {}
    labelled = labels is not None
    labels = list(labels or [])

    def warm(hid: str) -> float | None:
        w = warmup_end.get(hid) if isinstance(warmup_end, Mapping) else warmup_end
        return None if w is None else w.timestamp()

    away: dict[str, list[tuple[float, float]]] = defaultdict(list)
    # per household: [start, window end, is meter_offline, scored, label, first, first kind, first same kind]
    events: dict[str, list[list]] = defaultdict(list)
    unscored = 0
    for label in labels:
        a, b = label.start.timestamp(), label.end.timestamp()
        if label.kind == "away":
            away[label.household_id].append((a, b))
            continue
        w = warm(label.household_id)
        scored = w is None or a >= w
        unscored += not scored
        events[label.household_id].append([a, b + GRACE.total_seconds(), label.kind == _OFFLINE, scored, label,
                                           None, None, None])

    kinds = [k.value for k in AnomalyKind]
    counts = {k: {"total": 0, "tp": 0, "fa": 0, "warmup": 0, "away": 0} for k in kinds}
    for warning in warnings:
        hid, kind, t = warning.household_id, warning.kind.value, warning.detected_at.timestamp()
        c = counts[kind]
        c["total"] += 1
        offline = kind == _OFFLINE
        hit = unscored_hit = False
        for ev in events.get(hid, ()):
            if ev[0] <= t <= ev[1] and ev[2] == offline:
                if not ev[3]:
                    unscored_hit = True
                    continue
                hit = True
                if ev[5] is None or t < ev[5]:
                    ev[5], ev[6] = t, warning
                if kind == ev[4].kind and (ev[7] is None or t < ev[7]):
                    ev[7] = t
        w = warm(hid)
        if hit:
            c["tp"] += 1
        elif (w is not None and t < w) or unscored_hit:
            c["warmup"] += 1
        elif any(a <= t <= b for a, b in away.get(hid, ())):
            c["away"] += 1
        else:
            c["fa"] += 1

    months = household_months(spans, warmup_end, away)
    outcomes: list[EventOutcome] = []
    for hid, evs in events.items():
        zone = timezones.get(hid, "UTC")
        for a, _, _, scored, label, first, first_warning, same in evs:
            if not scored:
                continue
            outcomes.append(EventOutcome(
                household_id=hid, kind=label.kind, start=label.start, end=label.end,
                day_onset=_day_onset(label.start, zone),
                detected_at=None if first is None else first_warning.detected_at,
                detected_by=None if first is None else first_warning.kind.value,
                same_kind_detected_at=None if same is None else datetime.fromtimestamp(same, label.start.tzinfo),
                ttd_h=None if first is None else round(max(0.0, first - a) / 3600.0, 4)))
    outcomes.sort(key=lambda o: (o.start, o.household_id))

    by_event = [_event_score(k, [o for o in outcomes if o.kind == k]) for k in EVENT_KINDS]
    inactivity = [o for o in outcomes if o.kind == "inactivity"]
    by_event.insert(1, _event_score("inactivity_day", [o for o in inactivity if o.day_onset]))
    by_event.insert(2, _event_score("inactivity_night", [o for o in inactivity if not o.day_onset]))

    def score(kind: str, selected: list[str]) -> WarningScore:
        s = {f: sum(counts[k][f] for k in selected) for f in ("total", "tp", "fa", "warmup", "away")}
        return WarningScore(kind=kind, total=s["total"], true_positives=s["tp"], false_alarms=s["fa"],
                            ignored_warmup=s["warmup"], ignored_away=s["away"],
                            false_alarms_per_household_month=_ratio(s["fa"], months),
                            warnings_per_household_month=_ratio(s["tp"] + s["fa"], months))

    totals = score("all", kinds)
    return EvaluationReport(
        name=name, labelled=labelled, households=len(spans), household_months=round(months, 4),
        events_unscored=unscored, by_event_kind=by_event, totals=totals,
        welfare=score("welfare", [k for k in kinds if k != _OFFLINE]),
        by_warning_kind=[score(k, [k]) for k in kinds],
        precision=_ratio(totals.true_positives, totals.true_positives + totals.false_alarms),
        outcomes=outcomes)


__all__ = ["DAYS_PER_MONTH", "GRACE", "EvaluationReport", "EventOutcome", "EventScore", "WarningScore", "evaluate",
           "household_months", "WELFARE_EVENT_KINDS"]
