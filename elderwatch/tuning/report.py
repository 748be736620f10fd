"""``report.html``: one self-contained page (PNG plots embedded) an operator can mail around.

Curves per kind with the chosen point, time to detect, tickets per day over the history, and example
episodes: a household's hourly use around a warning, the warning marked, caught events and false
alarms both. Household ids are the pseudonymous ids of the input; nothing else about a person is shown.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

from elderwatch.tuning.choose import RULE, KindPoint  # noqa: E402
from schemas.anomaly import AnomalyWarning  # noqa: E402

COLOURS = {"inactivity": "#d62728", "continuous_flow": "#1f77b4", "surge": "#ff7f0e", "night_activity": "#9467bd",
           "meter_offline": "#7f7f7f", "decline": "#8c564b"}


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def curves_png(curves: Mapping[str, Sequence[KindPoint]], chosen: Mapping[str, float], labelled: bool) -> str:
    kinds = list(curves)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        points = curves[kind]
        colour = COLOURS.get(kind, "k")
        if labelled:
            xs = [p.alarms for p in points]
            ys = [100 * (p.recall or 0.0) for p in points]
            ax.set_xlabel("false alarms per household-month")
            ax.set_ylabel("recall, same kind (%)")
        else:
            xs = [p.level for p in points]
            ys = [p.warnings_per_household_month for p in points]
            ax.set_xlabel("sensitivity")
            ax.set_ylabel("warnings per household-month")
        ax.plot(xs, ys, "o-", color=colour)
        for p, x, y in zip(points, xs, ys):
            ax.annotate(f"{p.level:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
            if p.level == chosen.get(kind):
                ax.plot([x], [y], "s", markersize=12, markerfacecolor="none", markeredgecolor="k", markeredgewidth=2)
        ax.set_title(f"{kind} (chosen {chosen.get(kind, 0):g})")
        ax.grid(alpha=0.3)
    return _png(fig)


def ttd_png(ttd: Mapping[str, list[float]]) -> str | None:
    kinds = [k for k, v in ttd.items() if v]
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        ax.hist(ttd[kind], bins=20, color=COLOURS.get(kind, "k"))
        ax.set_title(f"{kind}: time to detect")
        ax.set_xlabel("hours from onset to warning")
        ax.set_ylabel("events")
    return _png(fig)


def tickets_png(daily: Mapping[str, Counter]) -> str | None:
    days = sorted({d for counts in daily.values() for d in counts})
    if not days:
        return None
    fig, ax = plt.subplots(figsize=(12, 3.2))
    bottom = [0] * len(days)
    for kind, counts in daily.items():
        values = [counts.get(d, 0) for d in days]
        ax.bar(days, values, bottom=bottom, color=COLOURS.get(kind, "k"), label=kind, width=0.9)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("tickets (warnings) per day")
    ax.legend(fontsize=8, ncol=len(daily))
    fig.autofmt_xdate()
    return _png(fig)


def example_png(warning: AnomalyWarning, zone: str, rows: Sequence[tuple[str, datetime, float]],
                event: tuple[datetime, datetime] | None, title: str) -> str:
    """Hourly use per meter, 36 h before to 12 h after the warning; the warning a line, the event a band."""
    tz = ZoneInfo(zone)
    hourly: dict[str, Counter] = defaultdict(Counter)
    for meter, ts, value in rows:
        hourly[meter][ts.astimezone(tz).replace(minute=0, second=0, microsecond=0)] += value
    meters = [m for m in ("water", "electricity") if m in hourly] or ["water"]
    fig, axes = plt.subplots(len(meters), 1, figsize=(10, 1.9 * len(meters) + 0.6), sharex=True, squeeze=False)
    at = warning.detected_at.astimezone(tz)
    for ax, meter in zip(axes[:, 0], meters):
        hours = sorted(hourly[meter])
        ax.bar(hours, [hourly[meter][h] for h in hours], width=1 / 24, align="edge",
               color="#1f77b4" if meter == "water" else "#ff7f0e")
        ax.set_ylabel("L/h" if meter == "water" else "kWh/h")
        if event is not None:
            ax.axvspan(event[0].astimezone(tz), event[1].astimezone(tz), color="#2ca02c", alpha=0.2)
        ax.axvline(at, color=COLOURS.get(warning.kind.value, "k"), linewidth=2)
        ax.axvline(warning.episode_start.astimezone(tz), color="k", linestyle=":", linewidth=1)
    axes[0, 0].set_title(title, fontsize=9)
    fig.autofmt_xdate()
    return _png(fig)


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt(value, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def render(*, title: str, facts: list[tuple[str, str]], curves: Mapping[str, Sequence[KindPoint]],
           chosen: Mapping[str, float], budget: Mapping[str, float], labelled: bool, overall: list[tuple[str, str]],
           curves_img: str, ttd_img: str | None, tickets_img: str | None,
           examples: list[tuple[str, str]]) -> str:
    chosen_rows = []
    for kind, points in curves.items():
        p = next(p for p in points if p.level == chosen[kind])
        chosen_rows.append([kind, f"{p.level:g}", f"{budget.get(kind, 0):g}", fmt(p.alarms),
                            fmt(p.recall, "{:.0%}") if labelled else "–", fmt(p.ttd_median_h, "{:.1f} h"),
                            f"{p.tickets_per_day:.2f}", f"{p.busiest_day or '–'} ({p.busiest_day_tickets})"])
    sweep_rows = [[p.kind, f"{p.level:g}", p.warnings, fmt(p.warnings_per_household_month),
                   fmt(p.false_alarms_per_household_month), fmt(p.recall, "{:.0%}"),
                   fmt(p.ttd_median_h, "{:.1f}"), fmt(p.ttd_p90_h, "{:.1f}"), f"{p.tickets_per_day:.2f}",
                   p.busiest_day_tickets] for points in curves.values() for p in points]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}.rule{background:#f8f8e8;padding:.6em}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table([[k, v] for k, v in facts], ["", ""]),
        "<h2>Chosen setting per kind</h2>",
        f"<p class='rule'><b>Rule.</b> {html.escape(RULE)}.</p>",
        _table(chosen_rows, ["kind", "sensitivity", "budget", "false alarms / hh-month" if labelled else
                             "warnings / hh-month", "recall (same kind)", "median time to detect",
                             "tickets / day", "busiest day"]),
        "<h3>All kinds at the chosen setting</h3>",
        _table([[k, v] for k, v in overall], ["", ""]),
        "<h2>Curves</h2>" + ("" if labelled else "<p>No labels: volumes only (every warning counts as an alarm).</p>"),
        f"<img alt='curves per kind' src='{curves_img}'>",
    ]
    if ttd_img:
        parts += ["<h2>Time to detect at the chosen setting</h2>", f"<img alt='time to detect' src='{ttd_img}'>"]
    if tickets_img:
        parts += ["<h2>Tickets per day over the history, chosen setting</h2>",
                  "<p>Warnings after the warm-up, by local day of the household: an upper bound on tickets "
                  "(a warning while a ticket of its kind is open joins it; a household marked away opens none).</p>",
                  f"<img alt='tickets per day' src='{tickets_img}'>"]
    if examples:
        parts.append("<h2>Example episodes</h2><p>Hourly use; the coloured line is the warning, the dotted line the "
                     "episode start it reports, the green band the labelled event.</p>")
        parts += [f"<h4>{html.escape(caption)}</h4><img alt='{html.escape(caption)}' src='{img}'>"
                  for caption, img in examples]
    parts += ["<h2>Every setting swept</h2>",
              _table(sweep_rows, ["kind", "sensitivity", "warnings", "warnings / hh-month", "false alarms / hh-month",
                                  "recall", "TTD median h", "TTD p90 h", "tickets / day", "busiest day"]),
              "</body></html>"]
    return "\n".join(parts)


def example_window(warning: AnomalyWarning) -> tuple[datetime, datetime]:
    return warning.detected_at - timedelta(hours=36), warning.detected_at + timedelta(hours=12)


__all__ = ["curves_png", "example_png", "example_window", "fmt", "render", "tickets_png", "ttd_png"]
