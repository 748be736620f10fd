"""Plain-text table of one or more reports side by side (detector, kizuki, shanghai, seoul)."""

from __future__ import annotations

from collections.abc import Sequence

from elderwatch.evaluation.scoring import EvaluationReport
from schemas.anomaly import AnomalyKind

_LABEL_W, _EVENTS_W, _CELL_W = 30, 7, 15


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _row(label: str, cells: Sequence[str], events: str = "") -> str:
    return (f"{label:<{_LABEL_W}}{events:>{_EVENTS_W}}" + "".join(f"{c:>{_CELL_W}}" for c in cells)).rstrip()


def format_reports(reports: Sequence[EvaluationReport], title: str = "") -> str:
    """The reports as one table, one column per report (all must cover the same households).

    >>> from elderwatch.evaluation.scoring import evaluate
    >>> print(format_reports([evaluate(None, [], {}, name="kizuki")]))   # doctest: +ELLIPSIS
    0 households, 0.0 household-months after warm-up (away time excluded)
    <BLANKLINE>
    warnings per household-month                   kizuki
      all                                               -
    ...
    """
    first = reports[0]
    names = [r.name for r in reports]
    lines = [f"{title}{first.households} households, {first.household_months:.1f} household-months "
             f"after warm-up (away time excluded)", ""]
    kinds = [k.value for k in AnomalyKind]
    if first.labelled:
        lines.append(_row("recall (same-kind recall)", names, "events"))
        for e in first.by_event_kind:
            cells = []
            for r in reports:
                s = r.event(e.kind)
                cells.append("-" if s.recall is None else f"{s.recall:.2f} ({s.same_kind_recall:.2f})")
            lines.append(_row(f"  {e.kind}", cells, str(e.events)))
        lines.append(_row("time to detect, h: median/p90", [""] * len(reports)))
        for e in first.by_event_kind:
            cells = [f"{_num(r.event(e.kind).ttd_median_h, 1)} / {_num(r.event(e.kind).ttd_p90_h, 1)}"
                     for r in reports]
            lines.append(_row(f"  {e.kind}", cells))
        lines.append(_row("warnings", [""] * len(reports)))
        for label, get in (("total", lambda r: r.totals.total), ("true positives", lambda r: r.totals.true_positives),
                           ("false alarms", lambda r: r.totals.false_alarms),
                           ("ignored: warm-up", lambda r: r.totals.ignored_warmup),
                           ("ignored: away", lambda r: r.totals.ignored_away)):
            lines.append(_row(f"  {label}", [f"{get(r):,}" for r in reports]))
        lines.append(_row("  precision", [_num(r.precision, 3) for r in reports]))
        lines.append(_row("false alarms per household-month", [""] * len(reports)))
        for kind in ["all", "welfare", *kinds]:
            lines.append(_row(f"  {kind}", [_num(r.warnings(kind).false_alarms_per_household_month, 3)
                                            for r in reports]))
        if first.events_unscored:
            lines.append(f"({first.events_unscored} events began before the warm-up ended and were not scored)")
    else:
        lines.append(_row("warnings per household-month", names))
        for kind in ["all", "welfare", *kinds]:
            lines.append(_row(f"  {kind}", [_num(r.warnings(kind).warnings_per_household_month, 3)
                                            for r in reports]))
        lines.append(_row("warnings", [""] * len(reports)))
        lines.append(_row("  total", [f"{r.totals.total:,}" for r in reports]))
        lines.append(_row("  ignored: warm-up", [f"{r.totals.ignored_warmup:,}" for r in reports]))
    return "\n".join(lines)
