"""A household's last 48 hours of one meter as an inline SVG, drawn on the server (no JavaScript).

Input is one meter of a ticket's ``recent_usage`` (:meth:`detectors.usage.RecentUsage.summary`):
hourly totals in the household's local time, ``None`` for an hour without any reading. Drawn:

* one bar per hour; an hour without data is a grey tick under the axis, never a zero bar (missing
  data is not zero use, as everywhere in elderwatch);
* the usual band where the summary has one per hour (``usual_low``/``usual_high`` on each hour, or
  ``usual: [low, high]``), as a shaded area; otherwise the usual day's hourly average
  (``usual_per_day / 24``) as a dashed line: "what a normal hour looks like on average";
* local midnight as a line with the date, and every sixth hour labelled.

Colours and sizes come from presentation attributes and ``console.css`` classes (the console's
Content-Security-Policy allows no inline styles).

>>> hours = [{"hour": f"2026-03-10T{h:02d}:00:00+08:00", "value": None if h == 3 else float(h)} for h in range(24)]
>>> svg = usage_chart("water", {"unit": "L", "hours": hours, "usual_per_day": 240.0}, ChartText(
...     title="Water, last 48 hours", no_data="no data", usual_average="usual hourly average", unit="L"))
>>> svg.count('class="bar"'), svg.count('class="gap"'), 'class="usual-line"' in svg
(23, 1, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

from markupsafe import Markup, escape

# A phone's width at about 1:1 (text stays readable there); wider screens scale it up a little.
WIDTH, HEIGHT = 480, 210
LEFT, RIGHT, TOP, BOTTOM = 38, 6, 24, 40
FONT = 13


@dataclass(frozen=True)
class ChartText:
    """The words on a chart, in the reader's language."""

    title: str
    no_data: str
    usual_average: str
    unit: str
    usual_band: str = "usual range"


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value`` (an axis that reads well)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value * (1 - 1e-12))


def _band(hour: dict) -> tuple[float, float] | None:
    if isinstance(hour.get("usual"), (list, tuple)) and len(hour["usual"]) == 2:
        low, high = hour["usual"]
    else:
        low, high = hour.get("usual_low"), hour.get("usual_high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return float(low), float(high)
    return None


def _number(value: float) -> str:
    return f"{value:g}" if value >= 10 or value == int(value) else f"{value:.2g}"


def usage_chart(meter: str, summary: dict, text: ChartText) -> Markup:
    """The SVG (safe to put in a page: every text is escaped)."""
    hours = summary.get("hours") or []
    n = max(len(hours), 1)
    values = [h.get("value") for h in hours]
    bands = [_band(h) for h in hours]
    average = summary.get("usual_per_day") / 24 if isinstance(summary.get("usual_per_day"), (int, float)) else None
    highest = max([v for v in values if v is not None] + [b[1] for b in bands if b] + ([average] if average else []),
                  default=0.0)
    top = _nice_max(highest * 1.05)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / n
    y = lambda v: TOP + plot_h - plot_h * (v / top)  # noqa: E731
    parts = [f'<svg class="usage-chart usage-{escape(meter)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
             f"<title>{escape(text.title)}</title>"]
    # the usual band, under the bars
    if any(bands):
        upper = [(LEFT + step * (i + 0.5), y(b[1])) for i, b in enumerate(bands) if b]
        lower = [(LEFT + step * (i + 0.5), y(b[0])) for i, b in enumerate(bands) if b]
        points = " ".join(f"{px:.1f},{py:.1f}" for px, py in upper + lower[::-1])
        parts.append(f'<polygon class="usual-band" points="{points}" fill="#cfe3f5"><title>{escape(text.usual_band)}'
                     f"</title></polygon>")
    # axis and grid
    for fraction in (0.0, 0.5, 1.0):
        gy = y(top * fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" '
                     f'stroke="#d8d8d8" stroke-width="1"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{gy + 4:.1f}" text-anchor="end" font-size="{FONT}" '
                     f'fill="#555">{escape(_number(top * fraction))}</text>')
    parts.append(f'<text class="axis unit" x="{LEFT - 4}" y="{TOP - 10}" text-anchor="end" font-size="{FONT}" '
                 f'fill="#555">{escape(text.unit)}</text>')
    # bars and gaps
    for i, (hour, value) in enumerate(zip(hours, values)):
        x = LEFT + step * i + step * 0.12
        width = step * 0.76
        label = _hour_label(hour.get("hour"))
        if value is None:
            parts.append(f'<rect class="gap" x="{x:.1f}" y="{TOP + plot_h + 2:.1f}" width="{width:.1f}" height="4" '
                         f'fill="#b0b0b0"><title>{escape(label)}: {escape(text.no_data)}</title></rect>')
            continue
        by = y(value)
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{by:.1f}" width="{width:.1f}" '
                     f'height="{max(TOP + plot_h - by, 0.5):.1f}" fill="#2f6db5"><title>{escape(label)}: '
                     f'{escape(_number(value))} {escape(text.unit)}</title></rect>')
    if average is not None:
        ay = y(average)
        parts.append(f'<line class="usual-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ay:.1f}" y2="{ay:.1f}" '
                     f'stroke="#d9822b" stroke-width="2" stroke-dasharray="6 4"><title>{escape(text.usual_average)}'
                     f"</title></line>")
    # time labels: local midnight with the date, every sixth hour
    for i, hour in enumerate(hours):
        when = _parse(hour.get("hour"))
        if when is None:
            continue
        x = LEFT + step * i
        if when.hour == 0:
            parts.append(f'<line class="midnight" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h + 8}" '
                         f'stroke="#888" stroke-width="1"/>')
            parts.append(f'<text class="axis" x="{x + 3:.1f}" y="{HEIGHT - 4}" font-size="{FONT}" fill="#333">'
                         f"{when:%m-%d}</text>")
        if when.hour % 6 == 0:
            parts.append(f'<text class="axis" x="{x:.1f}" y="{TOP + plot_h + 19}" text-anchor="middle" '
                         f'font-size="{FONT}" fill="#555">{when:%H}:00</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def daily_chart(per_day: list[tuple[date, int]], *, title: str) -> Markup:
    """Tickets per day as bars with their counts, dates under them (the supervisor page).

    >>> from datetime import date
    >>> svg = daily_chart([(date(2026, 3, d), n) for d, n in [(1, 0), (2, 3), (3, 1)]], title="per day")
    >>> svg.count('class="bar"'), ">3</text>" in svg
    (2, True)
    """
    width, height, left, bottom, top_pad = 720, 180, 10, 30, 18
    n = max(len(per_day), 1)
    step = (width - 2 * left) / n
    highest = max((count for _, count in per_day), default=0) or 1
    plot_h = height - bottom - top_pad
    parts = [f'<svg class="daily-chart" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{left}" x2="{width - left}" y1="{height - bottom}" y2="{height - bottom}" stroke="#999"/>']
    for i, (day, count) in enumerate(per_day):
        x = left + step * i
        if count:
            h = plot_h * count / highest
            parts.append(f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{height - bottom - h:.1f}" '
                         f'width="{step * 0.7:.1f}" height="{h:.1f}" fill="#2f6db5"/>')
        parts.append(f'<text x="{x + step / 2:.1f}" y="{height - bottom - plot_h * count / highest - 4:.1f}" '
                     f'text-anchor="middle" font-size="12" fill="#333">{count}</text>')
        parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 10}" text-anchor="middle" font-size="11" '
                     f'fill="#555">{day:%m-%d}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _parse(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _hour_label(text: str | None) -> str:
    when = _parse(text)
    return f"{when:%m-%d %H}:00" if when else ""


__all__ = ["usage_chart", "daily_chart", "ChartText"]
