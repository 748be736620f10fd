"""Each kind's recall / false-alarm curve over the levels swept, and the rule that picks one level per kind.

The rule (written into every report): per kind, the **highest** sensitivity whose alarms of that kind
per household-month stay within the kind's **budget above its floor**. Alarms are false alarms when
the history is labelled, and every warning when it is not (an upper bound: some were real). The floor
is the kind's alarms at the lowest level swept: what no sensitivity removes, so a budget is spent on
what a setting changes. The high-severity kinds (a fall, a heater left on) get the larger budgets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np

from elderwatch.evaluation.inputs import EvaluationInputs
from elderwatch.evaluation.scoring import EvaluationReport
from schemas.anomaly import AnomalyWarning

#: sensitivities swept by default (raw: the built-in operating points are replaced by them)
DEFAULT_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3)
#: the kinds tuned: the welfare kinds a community worker goes out for (meter_offline is a data check and
#: decline a slow trend; both keep their built-in points)
TUNED_KINDS = ("inactivity", "continuous_flow", "surge", "night_activity")
#: alarms per household-month each tuned kind may spend above its floor (0.22 in all)
BUDGET = {"inactivity": 0.10, "surge": 0.07, "night_activity": 0.03, "continuous_flow": 0.02}
RULE = ("per kind, the highest sensitivity whose alarms of that kind per household-month stay within its budget "
        "above its floor (alarms: false alarms with labels, every warning without; floor: the alarms at the lowest "
        "level swept, which no sensitivity removes)")


@dataclass(frozen=True)
class KindPoint:
    """One kind at one level."""

    kind: str
    level: float
    warnings: int                      # scored (after the warm-up, outside away windows)
    warnings_per_household_month: float
    false_alarms: int | None           # None without labels
    false_alarms_per_household_month: float | None
    events: int | None
    detected: int | None               # by a warning of the event's own kind
    recall: float | None
    ttd_median_h: float | None
    ttd_p90_h: float | None
    tickets_per_day: float             # warnings after the warm-up per day of history (an upper bound on tickets)
    busiest_day: str | None
    busiest_day_tickets: int

    @property
    def alarms(self) -> float:
        """What the rule budgets: false alarms with labels, else every warning."""
        if self.false_alarms_per_household_month is not None:
            return self.false_alarms_per_household_month
        return self.warnings_per_household_month

    def row(self) -> dict:
        return asdict(self)


def scored_after_warmup(inputs: EvaluationInputs, warning: AnomalyWarning) -> bool:
    w = inputs.warmup_end.get(warning.household_id) if isinstance(inputs.warmup_end, Mapping) else inputs.warmup_end
    return w is None or warning.detected_at >= w


def local_day(inputs: EvaluationInputs, warning: AnomalyWarning) -> date:
    return warning.detected_at.astimezone(ZoneInfo(inputs.timezones.get(warning.household_id, "UTC"))).date()


def history_days(inputs: EvaluationInputs) -> float:
    """Days from the earliest warm-up end to the last reading: what tickets per day divide by."""
    ends = [s.last for s in inputs.spans.values()]
    if not ends:
        return 0.0
    starts = (list(inputs.warmup_end.values()) if isinstance(inputs.warmup_end, Mapping)
              else [inputs.warmup_end] if inputs.warmup_end is not None else [s.first for s in inputs.spans.values()])
    return max((max(ends) - min(starts)).total_seconds() / 86400.0, 1.0)


def same_kind_ttd(report: EvaluationReport, kind: str) -> list[float]:
    return [max(0.0, (o.same_kind_detected_at - o.start).total_seconds() / 3600.0)
            for o in report.outcomes if o.kind == kind and o.same_kind_detected_at is not None]


def kind_point(kind: str, level: float, report: EvaluationReport, warnings: Sequence[AnomalyWarning],
               inputs: EvaluationInputs, days: float) -> KindPoint:
    ws = report.warnings(kind)
    labelled = report.labelled
    ev = report.event(kind) if labelled else None
    ttd = same_kind_ttd(report, kind) if labelled else []
    q = np.percentile(ttd, [50, 90]).tolist() if ttd else [None, None]
    per_day = Counter(local_day(inputs, w) for w in warnings if w.kind.value == kind and scored_after_warmup(inputs, w))
    busiest = max(per_day.items(), key=lambda item: (item[1], item[0]), default=(None, 0))
    return KindPoint(
        kind=kind, level=level, warnings=ws.true_positives + ws.false_alarms,
        warnings_per_household_month=round(ws.warnings_per_household_month or 0.0, 4),
        false_alarms=ws.false_alarms if labelled else None,
        false_alarms_per_household_month=round(ws.false_alarms_per_household_month or 0.0, 4) if labelled else None,
        events=ev.events if ev else None, detected=ev.same_kind_detected if ev else None,
        recall=None if not ev or ev.same_kind_recall is None else round(ev.same_kind_recall, 4),
        ttd_median_h=None if q[0] is None else round(q[0], 2), ttd_p90_h=None if q[1] is None else round(q[1], 2),
        tickets_per_day=round(sum(per_day.values()) / days, 3) if days else 0.0,
        busiest_day=None if busiest[0] is None else busiest[0].isoformat(), busiest_day_tickets=busiest[1])


def choose(curves: Mapping[str, Sequence[KindPoint]], budget: Mapping[str, float] = BUDGET) -> dict[str, float]:
    """One level per kind by :data:`RULE`. ``curves``: kind -> points in increasing level.

    >>> def p(level, fa):
    ...     return KindPoint("surge", level, 0, 0.0, 0, fa, None, None, None, None, None, 0.0, None, 0)
    >>> choose({"surge": [p(0.5, 0.01), p(0.7, 0.07), p(0.9, 0.2)]}, {"surge": 0.07})
    {'surge': 0.7}
    """
    chosen = {}
    for kind, points in curves.items():
        floor = points[0].alarms
        best = points[0].level
        for point in points:
            if point.alarms <= floor + budget.get(kind, 0.0) + 1e-9:
                best = point.level
        chosen[kind] = best
    return chosen


__all__ = ["BUDGET", "DEFAULT_LEVELS", "KindPoint", "RULE", "TUNED_KINDS", "choose", "history_days", "kind_point", "local_day",
           "same_kind_ttd", "scored_after_warmup"]
