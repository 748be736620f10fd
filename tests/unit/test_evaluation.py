"""Evaluation: the scoring rule case by case, the three fixed-rule baselines on constructed series,
and a run on the committed sample.

Expected numbers are worked out by hand from the rule (window [start, end + 2 h], away and warm-up
ignored, 30.44-day months), never copied from the code's output.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from elderwatch.cli import main
from elderwatch.evaluation import (
    EventLabel,
    Span,
    evaluate,
    load_inputs,
    load_labels,
    run_baseline_rows,
    scan_readings,
)
from elderwatch.evaluation.baselines import BaselineRunner, scan_rows
from elderwatch.evaluation.files import write_warnings
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity

SAMPLE = Path(__file__).resolve().parents[2] / "replay_data" / "sample"
UTC = timezone.utc
T0 = datetime(2026, 2, 1, tzinfo=UTC)  # warm-up end in the scoring cases
MONTH_DAYS = 30.44


def at(hours: float) -> datetime:
    """T0 + hours."""
    return T0 + timedelta(hours=hours)


def label(kind: str, start: float, end: float, hid: str = "hh-1", meter: str | None = None) -> EventLabel:
    return EventLabel(household_id=hid, kind=kind, start=at(start), end=at(end), meter=meter)


def warning(kind: str, hours: float, hid: str = "hh-1") -> AnomalyWarning:
    return AnomalyWarning.for_episode(household_id=hid, kind=AnomalyKind(kind), meter=None, episode_start=at(hours),
                                      detected_at=at(hours), score=1.0, severity=Severity.MEDIUM, summary="test")


def spans_for(*hids: str, first: float = -30 * 24, last: float = 30 * 24) -> dict[str, Span]:
    return {h: Span(at(first), at(last)) for h in hids}


# --- scoring, case by case ---------------------------------------------------------------------------

# (case, labels, warnings, expected: event kind -> (events, detected, same-kind detected),
#  expected warning outcome (true positives, false alarms, ignored warm-up, ignored away))
CASES = [
    ("inside the window", [label("inactivity", 10, 20)], [warning("inactivity", 15)],
     {"inactivity": (1, 1, 1)}, (1, 0, 0, 0)),
    ("at the start", [label("inactivity", 10, 20)], [warning("inactivity", 10)],
     {"inactivity": (1, 1, 1)}, (1, 0, 0, 0)),
    ("exactly end + 2 h", [label("surge", 10, 20)], [warning("surge", 22)],
     {"surge": (1, 1, 1)}, (1, 0, 0, 0)),
    ("one minute after end + 2 h: missed", [label("surge", 10, 20)], [warning("surge", 22 + 1 / 60)],
     {"surge": (1, 0, 0)}, (0, 1, 0, 0)),
    ("before the start: missed", [label("continuous_flow", 10, 20)], [warning("continuous_flow", 9.9)],
     {"continuous_flow": (1, 0, 0)}, (0, 1, 0, 0)),
    ("other welfare kind detects, not same-kind", [label("surge", 10, 20)], [warning("inactivity", 12)],
     {"surge": (1, 1, 0)}, (1, 0, 0, 0)),
    ("decline counts as a welfare warning", [label("night_activity", 10, 80)], [warning("decline", 50)],
     {"night_activity": (1, 1, 0)}, (1, 0, 0, 0)),
    ("another household's warning does not detect", [label("inactivity", 10, 20)],
     [warning("inactivity", 15, hid="hh-2")], {"inactivity": (1, 0, 0)}, (0, 1, 0, 0)),
    ("meter_offline needs meter_offline", [label("meter_offline", 10, 20, meter="water")],
     [warning("inactivity", 15)], {"meter_offline": (1, 0, 0)}, (0, 1, 0, 0)),
    ("meter_offline detected", [label("meter_offline", 10, 20, meter="water")], [warning("meter_offline", 21)],
     {"meter_offline": (1, 1, 1)}, (1, 0, 0, 0)),
    ("meter_offline warning does not detect a welfare event", [label("inactivity", 10, 20)],
     [warning("meter_offline", 15)], {"inactivity": (1, 0, 0)}, (0, 1, 0, 0)),
    ("away window: ignored", [label("away", 100, 200)], [warning("inactivity", 150), warning("inactivity", 200)],
     {}, (0, 0, 0, 2)),
    ("just after away: false alarm", [label("away", 100, 200)], [warning("inactivity", 200.5)], {}, (0, 1, 0, 0)),
    ("before warm-up end: ignored", [], [warning("inactivity", -1), warning("surge", -500)], {}, (0, 0, 2, 0)),
    ("event starting in warm-up: not scored, its warnings ignored", [label("inactivity", -5, 3)],
     [warning("inactivity", 2)], {"inactivity": (0, 0, 0)}, (0, 0, 1, 0)),
    ("several warnings for one event are all true positives", [label("night_activity", 0, 72)],
     [warning("night_activity", h) for h in (3, 27, 51)], {"night_activity": (1, 1, 1)}, (3, 0, 0, 0)),
    ("event + away right after: window wins over away", [label("inactivity", 10, 20), label("away", 20, 100)],
     [warning("inactivity", 21), warning("inactivity", 30)], {"inactivity": (1, 1, 1)}, (1, 0, 0, 1)),
]


@pytest.mark.parametrize("case, labels, warnings, events, outcome", CASES, ids=[c[0] for c in CASES])
def test_scoring_rule(case, labels, warnings, events, outcome):
    report = evaluate(labels, warnings, spans_for("hh-1", "hh-2"), warmup_end=T0)
    for kind, (n, detected, same) in events.items():
        score = report.event(kind)
        assert (score.events, score.detected, score.same_kind_detected) == (n, detected, same), case
    t = report.totals
    assert (t.true_positives, t.false_alarms, t.ignored_warmup, t.ignored_away) == outcome, case
    assert t.true_positives + t.false_alarms + t.ignored_warmup + t.ignored_away == t.total == len(warnings)


def test_time_to_detect_uses_the_first_matching_warning_and_linear_percentiles():
    labels = [label("inactivity", 10, 40), label("inactivity", 100, 140), label("inactivity", 200, 240)]
    # first matching warnings 1 h, 2 h and 10 h after onset; later ones and an earlier miss do not change that
    warnings = [warning("inactivity", 11), warning("inactivity", 12), warning("surge", 102), warning("inactivity", 130),
                warning("inactivity", 210), warning("inactivity", 199)]
    s = evaluate(labels, warnings, spans_for("hh-1"), warmup_end=T0).event("inactivity")
    assert (s.events, s.detected) == (3, 3)
    assert s.same_kind_detected == 3  # the 2nd event's first same-kind warning is at 130
    assert s.ttd_median_h == pytest.approx(2.0)
    assert s.ttd_p90_h == pytest.approx(2 + 0.8 * (10 - 2))  # numpy's linear rule: position 0.9 * 2 = 1.8


def test_same_kind_time_is_tracked_separately():
    r = evaluate([label("surge", 0, 10)], [warning("inactivity", 1), warning("surge", 5)], spans_for("hh-1"),
                 warmup_end=T0)
    outcome = r.outcomes[0]
    assert outcome.detected_by == "inactivity" and outcome.ttd_h == pytest.approx(1.0)
    assert outcome.same_kind_detected_at == at(5)


def test_false_alarms_per_household_month_and_precision():
    # hh-1: 60 days of data, warm-up ends after 30, away 3 days -> 27 days scored
    # hh-2: 40 days of data, warm-up ends after 30 -> 10 days; hh-3 has no data after the warm-up -> 0
    spans = {"hh-1": Span(at(-30 * 24), at(30 * 24)), "hh-2": Span(at(-30 * 24), at(10 * 24)),
             "hh-3": Span(at(-40 * 24), at(-24))}
    labels = [label("away", 48, 48 + 72), label("away", -100, -50), label("surge", 300, 305),
              label("away", 5 * 24, 5 * 24 + 12, hid="hh-2"), label("away", 12 * 24, 13 * 24, hid="hh-2")]
    # hh-2's second away window lies after its data ends: it must not be subtracted
    warnings = [warning("surge", 301), warning("inactivity", 400), warning("continuous_flow", 10, hid="hh-2"),
                warning("meter_offline", 100, hid="hh-2"), warning("inactivity", 60)]
    r = evaluate(labels, warnings, spans, warmup_end=T0)
    months = (27 + 9.5) / MONTH_DAYS
    assert r.household_months == pytest.approx(months, abs=1e-4)
    assert r.totals.false_alarms == 3 and r.totals.true_positives == 1 and r.totals.ignored_away == 1
    assert r.totals.false_alarms_per_household_month == pytest.approx(3 / months, rel=1e-4)
    assert r.welfare.false_alarms_per_household_month == pytest.approx(2 / months, rel=1e-4)
    assert r.warnings("meter_offline").false_alarms_per_household_month == pytest.approx(1 / months, rel=1e-4)
    assert r.warnings("inactivity").false_alarms == 1
    assert r.precision == pytest.approx(1 / 4)


def test_day_and_night_onsets_by_local_time():
    # 23:00 UTC is 08:00 in Tokyo (day) and 23:00 in London (night); 05:30 UTC is 00:30 in New York (night)
    # and 06:30 in London in winter (day); 20:30 UTC on 1 July is 21:30 BST in London (night)
    day, night = "inactivity_day", "inactivity_night"
    cases = [("hh-t", "Asia/Tokyo", datetime(2026, 2, 10, 23, tzinfo=UTC), day),
             ("hh-l", "Europe/London", datetime(2026, 2, 10, 23, tzinfo=UTC), night),
             ("hh-n", "America/New_York", datetime(2026, 2, 11, 5, 30, tzinfo=UTC), night),
             ("hh-w", "Europe/London", datetime(2026, 2, 11, 6, 30, tzinfo=UTC), day),
             ("hh-s", "Europe/London", datetime(2026, 7, 1, 20, 30, tzinfo=UTC), night)]
    labels = [EventLabel(household_id=h, kind="inactivity", start=s, end=s + timedelta(hours=10)) for h, _, s, _ in cases]
    warnings = [AnomalyWarning.for_episode(household_id=h, kind=AnomalyKind.INACTIVITY, meter=None, episode_start=s,
                                           detected_at=s + timedelta(hours=4), score=1.0, severity=Severity.HIGH,
                                           summary="x") for h, _, s, split in cases if split == night]
    r = evaluate(labels, warnings, spans_for(*[c[0] for c in cases]), {h: z for h, z, _, _ in cases}, T0)
    assert (r.event(day).events, r.event(night).events) == (2, 3)
    assert (r.event(day).detected, r.event(night).detected) == (0, 3)
    assert r.event("inactivity").events == 5


def test_unlabelled_data_counts_warnings_per_household_month_after_each_households_warmup():
    spans = {"a": Span(at(0), at(40 * 24)), "b": Span(at(24 * 5), at(24 * 65))}
    warmup = {h: s.first + timedelta(days=28) for h, s in spans.items()}
    warnings = [warning("inactivity", 24 * 20, hid="a"), warning("inactivity", 24 * 30, hid="a"),
                warning("continuous_flow", 24 * 30, hid="b"), warning("inactivity", 24 * 34, hid="b")]
    r = evaluate(None, warnings, spans, warmup_end=warmup, name="kizuki")
    months = (12 + 32) / MONTH_DAYS
    assert not r.labelled and r.household_months == pytest.approx(months, abs=1e-4)
    assert r.totals.ignored_warmup == 2  # a's at day 20, b's continuous_flow at day 25 of its own data
    assert r.totals.warnings_per_household_month == pytest.approx(2 / months, rel=1e-4)
    assert r.warnings("inactivity").warnings_per_household_month == pytest.approx(2 / months, rel=1e-4)
    assert r.warnings("continuous_flow").warnings_per_household_month == 0


# --- baselines on constructed series -----------------------------------------------------------------

def rows(values, *, meter="water", hid="hh-1", step_min=15.0, start=T0, skip=()):
    """Canonical rows: values[i] used in the interval ending at start + (i + 1) * step; ``skip``: missing indices."""
    out = []
    for i, v in enumerate(values):
        if i in skip:
            continue
        ts = start + timedelta(minutes=step_min * (i + 1))
        out.append((hid, meter, ts.isoformat(), float(v)))
    return out


def hours_after_t0(w: AnomalyWarning) -> float:
    return (w.detected_at - T0).total_seconds() / 3600


def test_kizuki_inactivity_fires_once_at_8_hours_and_rearms_after_use():
    # use in the interval ending 00:15, nothing until 12:15 (use again), nothing for another 12 h
    values = [3.0] + [0.0] * 47 + [4.0] + [0.0] * 48
    ws = [w for w in run_baseline_rows("kizuki", rows(values)) if w.kind == AnomalyKind.INACTIVITY]
    assert [hours_after_t0(w) for w in ws] == [0.25 + 8, 12.25 + 8]
    assert ws[0].episode_start == at(0.25) and ws[0].meter == "water"
    assert all(w.household_id == "hh-1" and w.evidence["rule"] == "kizuki" for w in ws)


def test_kizuki_does_not_fire_at_seven_and_three_quarter_hours():
    values = [3.0] + [0.0] * 31 + [1.0] + [0.0] * 31 + [2.0]
    assert run_baseline_rows("kizuki", rows(values)) == []


def test_a_gap_in_the_data_is_not_zero_use():
    # 3 h of no water, 6 h of missing rows, 3 h of no water: 12 h without a litre, but only 6 h known
    values = [3.0] + [0.0] * 48
    missing = set(range(13, 37))
    assert run_baseline_rows("kizuki", rows(values, skip=missing)) == []
    assert run_baseline_rows("shanghai", rows(values, skip=missing)) == []
    # once 8 h are known after the gap it does fire, counted from the first reading after it (09:30)
    more = [3.0] + [0.0] * 80
    ws = run_baseline_rows("kizuki", rows(more, skip=missing))
    assert [hours_after_t0(w) for w in ws] == [9.5 + 8]


def test_kizuki_continuous_flow_fires_at_2_hours():
    values = [0.0] * 4 + [2.0] * 8 + [0.0] * 4 + [2.0] * 7 + [0.0] * 2 + [2.0] * 12
    ws = [w for w in run_baseline_rows("kizuki", rows(values)) if w.kind == AnomalyKind.CONTINUOUS_FLOW]
    # 1st run: intervals 4..11 cover 01:00-03:00 -> fires at 03:00; 2nd run is 7 intervals (1 h 45): no;
    # 3rd run starts at 06:15, fires at 08:15 and only once although it lasts 3 h
    assert [hours_after_t0(w) for w in ws] == [3.0, 8.25]
    assert ws[0].episode_start == at(1.0)


def test_shanghai_fires_under_10_litres_in_12_hours():
    # 0.2 L every 15 min = 9.6 L in 12 h: fires when the first 12 h are known; 0.25 L = 12 L never fires
    ws = run_baseline_rows("shanghai", rows([0.2] * 96))
    assert len(ws) == 1 and ws[0].kind == AnomalyKind.INACTIVITY
    # the first reading (00:15) starts the known data, so the window is covered from 12:15
    assert hours_after_t0(ws[0]) == pytest.approx(12.25)
    assert run_baseline_rows("shanghai", rows([0.25] * 96)) == []


def test_shanghai_is_rolling_and_rearms():
    # 20 L in the interval ending 06:00, then nothing: the 20 L leaves the window at 18:00.
    # 30 L at 20:00 clears it; it fires again 12 h later.
    values = [0.0] * 150
    values[23], values[79] = 20.0, 30.0
    ws = run_baseline_rows("shanghai", rows(values))
    assert [hours_after_t0(w) for w in ws] == [18.0, 32.0]


def test_shanghai_on_irregular_hourly_data_prorates_by_time():
    # hourly at odd minutes; 16 L in the interval 10:07-11:07, then nothing. Extra reads at 22:22 and
    # 22:37: at 22:22 the window starts at 10:22 and 3/4 of the interval (12 L) still counts; at 22:37
    # only half (8 L): fires.
    start = T0 + timedelta(minutes=7)
    values = [0.0] * 10 + [16.0] + [0.0] * 14
    rs = rows(values, step_min=60, start=start)
    extra = [("hh-1", "water", (T0 + timedelta(hours=22, minutes=m)).isoformat(), 0.0) for m in (22, 37)]
    rs = sorted(rs + extra, key=lambda r: r[2])
    ws = run_baseline_rows("shanghai", rs)
    assert [w.detected_at for w in ws] == [T0 + timedelta(hours=22, minutes=37)]
    assert ws[0].evidence["litres_12h"] == 8.0


def seoul_rows(kw_per_interval, **kw):
    return rows([p / 4 for p in kw_per_interval], meter="electricity", **kw)


def test_seoul_flat_electricity_for_24_hours_fires_and_a_kettle_resets_it():
    fridge = [0.10, 0.22, 0.35, 0.12]  # kW: fridge + freezer + standby cycling, spread 0.25 < 0.35
    flat = (fridge * 30)[:110]
    kettle_at = 60  # interval ending 15:15 on day 2 (hour 15.25 + ... see below)
    power = list(flat)
    power[kettle_at] += 0.56  # 2.24 kW for 3.75 minutes in that 15-minute interval
    ws = run_baseline_rows("seoul", seoul_rows(power + flat))
    # known from the first reading (00:15): the first 24 h are complete at 24:15 (interval 96), but the
    # kettle (ending at (60 + 1) * 15 min = 15:15) is inside; it leaves the window at 15:15 next day
    assert [hours_after_t0(w) for w in ws] == [15.25 + 24]
    # without the kettle it fires at 24:15, once
    ws = run_baseline_rows("seoul", seoul_rows(flat + flat))
    assert [hours_after_t0(w) for w in ws] == [24.25]
    assert ws[0].meter == "electricity" and ws[0].kind == AnomalyKind.INACTIVITY


def test_seoul_does_not_fire_over_missing_electricity():
    flat = [0.1] * 200
    missing = set(range(50, 74))  # 6 h missing: 24 known hours are only complete 24 h after the gap
    ws = run_baseline_rows("seoul", seoul_rows(flat, skip=missing))
    assert [hours_after_t0(w) for w in ws] == [75 * 0.25 + 24]  # first reading after the gap ends 18:45


def test_gap_threshold_is_relative_to_the_series_usual_interval():
    # hourly readings: a 2.5 h interval is data (under 3 x 1 h), a 4 h one is a gap
    start = T0
    base = [("hh-1", "water", (start + timedelta(hours=h)).isoformat(), 0.0) for h in range(0, 6)]

    def tail(step_h):
        return [("hh-1", "water", (start + timedelta(hours=5 + step_h + h)).isoformat(), 0.0) for h in range(0, 4)]

    first_use = [("hh-1", "water", (start - timedelta(hours=1)).isoformat(), 5.0)]
    # 5 h + 2.5 h + 3 h = 10.5 h known without water -> fires; with a 4 h gap only 3 h are known after it
    assert len(run_baseline_rows("kizuki", first_use + base + tail(2.5))) == 1
    assert run_baseline_rows("kizuki", first_use + base + tail(4.0)) == []


def test_interleaved_households_and_meters_give_the_same_warnings_as_contiguous_rows():
    a = rows([3.0] + [0.0] * 40 + [2.0] * 10, hid="hh-a")
    b = rows([1.0] * 9 + [0.0] * 50, hid="hh-b")
    e = seoul_rows([0.1] * 120, hid="hh-a")
    contiguous = scan_rows(a + e + b).warnings
    interleaved = scan_rows(sorted(a + b + e, key=lambda r: r[2])).warnings  # by time: households mixed
    for name in contiguous:
        assert sorted(w.warning_id for w in contiguous[name]) == sorted(w.warning_id for w in interleaved[name])
    assert {w.household_id for w in contiguous["kizuki"]} == {"hh-a", "hh-b"}
    assert len(contiguous["seoul"]) == 1


def test_out_of_order_rows_are_skipped_and_counted():
    runner = BaselineRunner(["kizuki"])
    for hid, meter, ts, v in rows([1.0, 0.0, 0.0]) + rows([5.0])[:1]:
        runner.feed(hid, meter, ts, datetime.fromisoformat(ts).timestamp(), v)
    assert runner.result().out_of_order == 1


# --- the committed sample, through the files and the command -----------------------------------------

@pytest.fixture(scope="module")
def sample():
    data = load_inputs(labels=SAMPLE / "labels.jsonl", readings=SAMPLE / "readings.csv.gz",
                       baselines=("kizuki", "shanghai", "seoul"))
    return data


def test_sample_baselines_warn_and_the_counts_add_up(sample):
    labels = load_labels(SAMPLE / "labels.jsonl")
    warmup = sample.warmup_end
    assert warmup == datetime(2026, 2, 2, tzinfo=UTC)  # 28 local days after 2026-01-05 in London (GMT)
    assert len(sample.spans) == 12 and sample.readings_rows == 128_659
    for name in ("kizuki", "shanghai", "seoul"):
        warnings = sample.baseline_warnings[name]
        assert warnings, name
        r = sample.evaluate(warnings, name=name)
        t = r.totals
        assert t.true_positives + t.false_alarms + t.ignored_warmup + t.ignored_away == t.total == len(warnings)
        assert sum(w.total for w in r.by_warning_kind) == t.total
        # independent recount of the true positives and the warm-up count
        windows = [(lb.household_id, lb.kind, lb.start, lb.end + timedelta(hours=2)) for lb in labels
                   if lb.kind not in ("away", "meter_offline") and lb.start >= warmup]
        tp = sum(any(h == w.household_id and s <= w.detected_at <= e for h, _, s, e in windows) for w in warnings)
        assert t.true_positives == tp, name
        assert t.ignored_warmup == sum(w.detected_at < warmup for w in warnings), name
        assert r.event("inactivity").events == r.event("inactivity_day").events + r.event("inactivity_night").events
        assert r.event("inactivity").events == sum(lb.kind == "inactivity" and lb.start >= warmup for lb in labels)
    # kizuki's continuous-flow rule sees both injected leaks
    assert sample.evaluate(sample.baseline_warnings["kizuki"]).event("continuous_flow").same_kind_recall == 1.0


def test_sample_household_months_from_readings_match_the_manifest(sample):
    from_manifest = load_inputs(labels=SAMPLE / "labels.jsonl")
    a = sample.evaluate([]).household_months
    b = from_manifest.evaluate([]).household_months
    # 12 households x (56 - 28 days) minus away time; readings start 15 min late, offline rows may trim an end
    assert a == pytest.approx(b, rel=0.01)
    assert b < 12 * 28 / MONTH_DAYS


def test_cli_evaluate_detector_warnings_equal_the_baseline_column(tmp_path, sample, capsys):
    warnings = tmp_path / "w.jsonl"
    write_warnings(warnings, sample.baseline_warnings["shanghai"])
    out = tmp_path / "r.json"
    assert main(["evaluate", "--labels", str(SAMPLE / "labels.jsonl"), "--warnings", str(warnings),
                 "--baseline", "shanghai", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recall (same-kind recall)" in text and "shanghai" in text and "detector" in text
    reports = json.loads(out.read_text())["reports"]
    assert set(reports) == {"detector", "shanghai"}
    d, s = reports["detector"], reports["shanghai"]
    assert d["totals"] == s["totals"] and d["by_event_kind"] == s["by_event_kind"]
    assert d["totals"]["total"] == len(sample.baseline_warnings["shanghai"]) > 0


def test_cli_evaluate_unlabelled_needs_readings_and_reports_rates(tmp_path, capsys):
    assert main(["evaluate", "--baselines"]) == 2
    assert main(["evaluate", "--readings", str(SAMPLE / "readings.csv.gz")]) == 2  # nothing to score
    out = tmp_path / "r.json"
    assert main(["evaluate", "--readings", str(SAMPLE / "readings.csv.gz"), "--baseline", "kizuki",
                 "--warmup-days", "7", "--json", str(out)]) == 0
    assert "warnings per household-month" in capsys.readouterr().out
    report = json.loads(out.read_text())["reports"]["kizuki"]
    assert report["labelled"] is False and report["households"] == 12
    # 12 households x (56 - 7) days, less the first 15 minutes (the first reading ends the first interval)
    assert report["household_months"] == pytest.approx(12 * (49 - 1 / 96) / MONTH_DAYS, abs=0.01)
    assert report["totals"]["false_alarms"] + report["totals"]["ignored_warmup"] == report["totals"]["total"]


def test_scan_reads_plain_and_reordered_csv(tmp_path):
    path = tmp_path / "r.csv"
    lines = ["ts,value,household_id,meter"] + [f"{ts},{v},{h},{m}" for h, m, ts, v in rows([2.0] + [0.0] * 40)]
    path.write_text("\n".join(lines) + "\n")
    scan = scan_readings(path, ["kizuki"])
    assert scan.rows == 41 and len(scan.warnings["kizuki"]) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("household_id,ts,value\nhh-1,2026-01-01T00:00:00+00:00,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        scan_readings(bad, ["kizuki"])
