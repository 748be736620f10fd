"""bench/bench_feedback.py: the simulated staff judge warnings by the scoring rule, their outcomes reach
the monitor after the delay, and a tiny run produces every arm with the numbers the report needs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from bench.bench_feedback import NO_FEEDBACK, ArmFeed, Staff, arm_names, main, staff_errs, staff_outcome
from detectors.monitor import HouseholdMonitor
from elderwatch.evaluation import EventLabel
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity

HH = "hh-000001"


def t(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-02-{text}+00:00")


LABELS = [
    EventLabel(household_id=HH, kind="inactivity", start=t("10T08:00"), end=t("10T14:00")),
    EventLabel(household_id=HH, kind="away", start=t("12T09:00"), end=t("14T18:00")),
    EventLabel(household_id=HH, kind="meter_offline", start=t("20T01:00"), end=t("20T03:00"), meter="water"),
    # another household's event at the same time is not this household's
    EventLabel(household_id="hh-000002", kind="surge", start=t("16T10:00"), end=t("16T12:00")),
]


def warning(at: str, kind: AnomalyKind = AnomalyKind.INACTIVITY) -> AnomalyWarning:
    return AnomalyWarning.for_episode(household_id=HH, kind=kind, meter=None, episode_start=t(at), detected_at=t(at),
                                      score=1.1, severity=Severity.MEDIUM, summary="")


@pytest.mark.parametrize("at, kind, expected", [
    ("10T09:00", AnomalyKind.INACTIVITY, "needed_help"),      # inside the labelled event
    ("10T15:59", AnomalyKind.NIGHT_ACTIVITY, "needed_help"),  # any welfare kind, up to end + 2 h (the rule's grace)
    ("10T16:01", AnomalyKind.INACTIVITY, "false_alarm"),      # just after the grace
    ("13T12:00", AnomalyKind.INACTIVITY, "not_home"),         # in the away window
    ("16T11:00", AnomalyKind.SURGE, "false_alarm"),           # another household's event
    ("20T02:00", AnomalyKind.INACTIVITY, "false_alarm"),      # a welfare warning does not detect meter_offline
    ("20T02:00", AnomalyKind.METER_OFFLINE, "meter_fault"),   # meter_offline warnings are about the meter
])
def test_staff_outcome_is_the_scoring_rule(at, kind, expected):
    assert staff_outcome(warning(at, kind), LABELS) == expected


def test_staff_errors_flip_only_judged_outcomes():
    staff = Staff(LABELS, seed=3)
    assert staff.judge(warning("10T09:00"), 0.0) == ("needed_help", "needed_help")
    assert staff.judge(warning("10T09:00"), 1.0) == ("needed_help", "false_alarm")
    assert staff.judge(warning("11T09:00"), 1.0) == ("false_alarm", "needed_help")
    assert staff.judge(warning("13T12:00"), 1.0) == ("not_home", "not_home")
    share = sum(staff_errs(f"w{i}", 7, 0.1) for i in range(5000)) / 5000
    assert 0.08 < share < 0.12


def test_outcomes_reach_the_monitor_after_the_delay():
    monitor = HouseholdMonitor(HH)
    feed = ArmFeed(monitor, 0.0, timedelta(hours=6))
    feed.warned([warning("11T09:00"), warning("11T20:00")], Staff(LABELS, seed=0))  # two false alarms
    feed.apply_due(t("12T01:59"))  # the second is due at 02:00
    assert monitor.sensitivity.get(AnomalyKind.INACTIVITY, 1.0) == 1.0 and len(feed.effects) == 1
    feed.apply_due(t("12T02:00"))
    assert monitor.sensitivity[AnomalyKind.INACTIVITY] == pytest.approx(0.85)
    assert [e[2] for e in feed.effects] == ["false_alarm", "false_alarm"]


def test_tiny_run_gives_every_arm(tmp_path):
    out = tmp_path / "feedback.md"
    argv = ["--households", "6", "--days", "35", "--processes", "1", "--data", str(tmp_path / "sim"),
            "--check-households", "2", "--out", str(out), "--baseline", str(tmp_path / "none.json")]
    assert main(argv) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    names = arm_names(0.1)
    assert res["arm_names"] == names and set(res["arms"]) == set(names)
    for name in names:
        arm = res["arms"][name]
        report = arm["report"]
        assert report["household_months"] > 0 and "false_alarms_per_household_month" in report["totals"]
        assert {e["kind"] for e in report["by_event_kind"]} >= {"inactivity", "surge", "continuous_flow",
                                                                "night_activity", "meter_offline"}
        assert "precision" in report and {w["kind"] for w in report["by_warning_kind"]} >= {"inactivity", "surge"}
        assert arm["sensitivity"]["pairs"] == 6 * 5 and sum(r["all"] for r in arm["sensitivity"]["histogram"].values()) == 30
        assert (arm["vs_no_feedback"] is None) == (name == NO_FEEDBACK)
    assert res["arms"][NO_FEEDBACK]["feedback"]["applied"] == 0
    fb = res["arms"][names[1]]["feedback"]
    assert fb["applied"] + fb["undelivered"] == fb["warnings"]
    assert len(res["check"]["households"]) == 2
    assert res["baseline"]["compared"] is False
    text = out.read_text()
    assert "## Headline" in text and all(f"| {n} |" in text for n in names)
