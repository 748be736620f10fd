"""The 48-hour usage chart (inline SVG, server-rendered) from a ticket's ``recent_usage``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from detectors.usage import RecentUsage
from elderwatch.console.chart import ChartText, _nice_max, daily_chart, usage_chart

SVG = "{http://www.w3.org/2000/svg}"
TEXT = ChartText(title="Water <last 48 h>", no_data="no data", usual_average="usual", unit="L")


def sample() -> dict:
    """Nine days of quarter-hours in Shanghai, then two hours without any water reading."""
    usage = RecentUsage("Asia/Shanghai")
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    for i in range(1, 96 * 9 + 1):
        t = t0 + timedelta(minutes=15 * i)
        usage.update("electricity", t, 0.1, 15)
        if i <= 96 * 9 - 8:
            usage.update("water", t, 2.0 if 7 <= t.astimezone(usage._tz).hour < 22 else 0.0, 15)
    return usage.summary()


def test_bars_gaps_and_the_usual_line_from_a_real_summary():
    water = sample()["meters"]["water"]
    svg = usage_chart("water", water, TEXT)
    root = ET.fromstring(svg)  # well-formed XML
    rects = root.findall(f"{SVG}rect")
    bars = [r for r in rects if r.get("class") == "bar"]
    gaps = [r for r in rects if r.get("class") == "gap"]
    assert len(water["hours"]) == 48
    assert len(gaps) == 2 == sum(h["value"] is None for h in water["hours"])  # missing is not zero
    assert len(bars) == 46
    heights = [float(b.get("height")) for b in bars]
    assert max(heights) > 10 * min(heights)  # day hours tall, night hours (0 L) flat
    usual = root.find(f"{SVG}line[@class='usual-line']")
    assert usual is not None and water["usual_per_day"] == 120.0  # 15 h x 8 L: the dashed line at 5 L an hour
    y0 = float(root.find(f"{SVG}line[@class='grid']").get("y1"))  # the zero grid line comes first
    top = float(usual.get("y1"))
    day_bar = min(float(b.get("y")) for b in bars)  # a daytime hour: four quarter-hours of 2 L
    assert top < y0 and abs((y0 - top) / (y0 - day_bar) - 5 / 8) < 0.01  # 5 L of the 8 L bar's height


def test_midnights_and_hours_are_labelled_in_local_time():
    svg = usage_chart("water", sample()["meters"]["water"], TEXT)
    labels = re.findall(r">(\d\d:00|\d\d-\d\d)</text>", svg)
    assert "03-10" in labels and "00:00" in labels and "06:00" in labels
    assert svg.count('class="midnight"') == 2


def test_text_is_escaped_and_a_band_is_drawn_when_given():
    hours = [{"hour": f"2026-03-10T{h:02d}:00:00+08:00", "value": 1.0, "usual_low": 0.5, "usual_high": 2.0}
             for h in range(24)]
    svg = usage_chart("water", {"unit": "L", "hours": hours}, TEXT)
    assert "<last 48 h>" not in svg and "&lt;last 48 h&gt;" in svg
    assert 'class="usual-band"' in svg and 'class="usual-line"' not in svg
    ET.fromstring(svg)


def test_an_empty_summary_still_draws_an_axis():
    svg = usage_chart("electricity", {"unit": "kWh", "hours": []}, TEXT)
    ET.fromstring(svg)
    assert 'class="bar"' not in svg


def test_axis_tops_read_well():
    assert [_nice_max(v) for v in (0, 0.7, 1, 3.2, 24, 26, 230, 999)] == [1.0, 1.0, 1.0, 5.0, 25.0, 50.0, 250.0,
                                                                            1000.0]


def test_daily_chart():
    from datetime import date

    svg = daily_chart([(date(2026, 3, d), n) for d, n in [(1, 0), (2, 4), (3, 2)]], title="per day")
    root = ET.fromstring(svg)
    heights = [float(r.get("height")) for r in root.findall(f"{SVG}rect")]
    assert len(heights) == 2 and heights[0] == 2 * heights[1]
