"""``elderwatch tune`` and the detection config file: one pass gives every setting's warnings exactly,
the file it writes loads into ``elderwatch detect`` and the detect stage, a bad file is refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from detectors.monitor import MonitorConfig
from detectors.offline import detect_file, load_household_timezones
from elderwatch.cli import main
from elderwatch.tuning.choose import DEFAULT_LEVELS, TUNED_KINDS
from elderwatch.tuning.sweep import sweep
from schemas.anomaly import AnomalyKind, AnomalyWarning
from schemas.detection import DetectionConfig, DetectionConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "replay_data" / "sample"
READINGS, LABELS, HOUSEHOLDS = SAMPLE / "readings.csv.gz", SAMPLE / "labels.jsonl", SAMPLE / "households.csv"


def _key(w: AnomalyWarning) -> tuple:
    return (w.detected_at, w.warning_id)


def _plain(warnings) -> list[dict]:
    """Warnings without the config version (the sweep's are raised under none), in a fixed order."""
    return [w.model_dump(mode="json", exclude={"config_version"}) for w in sorted(warnings, key=_key)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    assert main(["tune", "--readings", str(READINGS), "--labels", str(LABELS), "--out", str(out),
                 "--processes", "2", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def swept():
    return sweep(READINGS, DEFAULT_LEVELS, zones=load_household_timezones(HOUSEHOLDS), processes=1)


def test_tune_writes_report_config_and_sweep(tuned):
    config = DetectionConfig.load(tuned / "detection.toml")
    assert set(config.sensitivity) == {k.value for k in AnomalyKind}  # every kind named
    assert config.version.startswith("tune-") and config.source.code_version and config.source.rule
    with open(tuned / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["kind"], float(r["level"])) for r in rows] == [(k, v) for k in TUNED_KINDS for v in DEFAULT_LEVELS]
    assert all(r["recall"] != "" or r["events"] == "0" for r in rows)  # labelled: recall wherever there are events
    # not monotone per level (a more sensitive level can join two episodes into one), but the sweep moves
    at = {v: sum(int(r["warnings"]) for r in rows if float(r["level"]) == v) for v in DEFAULT_LEVELS}
    assert at[max(DEFAULT_LEVELS)] > at[min(DEFAULT_LEVELS)]
    page = (tuned / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") >= 4  # curves, time to detect, tickets per day, an example
    assert "Rule." in page and config.version in page and "caught:" in page
    lines = (tuned / "warnings.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["config_version"] == config.version for line in lines)


def test_the_config_tune_writes_gives_its_warnings_in_detect(tuned, tmp_path):
    """The parity the operator relies on: `elderwatch detect` with the file gives exactly tune's warnings."""
    out = tmp_path / "w.jsonl"
    assert main(["detect", "--readings", str(READINGS), "--households", str(HOUSEHOLDS),
                 "--detection-config", str(tuned / "detection.toml"), "--out", str(out)]) == 0
    detected = [AnomalyWarning.model_validate_json(line) for line in out.read_text().splitlines()]
    tuned_warnings = [AnomalyWarning.model_validate_json(line) for line in (tuned / "warnings.jsonl").read_text().splitlines()]
    assert detected and sorted(detected, key=_key) == sorted(tuned_warnings, key=_key)


@pytest.mark.parametrize("choice", [
    {"inactivity": 1.3, "continuous_flow": 0.5, "surge": 0.9, "night_activity": 1.15, "meter_offline": 0.6, "decline": 1.3},
    {k.value: 0.8 for k in AnomalyKind},
])
def test_any_per_kind_choice_is_what_a_plain_monitor_gives(swept, choice):
    """Sensitivity gates warnings, never learning: one pass, thresholded per kind afterwards, equals a run
    of the detectors under that config."""
    config = MonitorConfig.from_detection(DetectionConfig(version="parity", sensitivity=choice))
    plain = list(detect_file(READINGS, HOUSEHOLDS, config=config))
    assert plain and _plain(swept.at(choice)) == _plain(plain)
    assert {w.config_version for w in plain} == {"parity"}


def test_sweep_splits_households_over_processes_without_changing_a_warning(swept):
    two = sweep(READINGS, DEFAULT_LEVELS, zones=load_household_timezones(HOUSEHOLDS), processes=2)
    assert two.households == swept.households == 12 and two.readings == swept.readings
    assert [_plain(a) for a in two.warnings] == [_plain(b) for b in swept.warnings]


def test_tune_without_labels_reports_volumes(tmp_path):
    assert main(["tune", "--readings", str(READINGS), "--households", str(HOUSEHOLDS), "--out", str(tmp_path),
                 "--levels", "0.7,1.3", "--processes", "1", "--quiet"]) == 0
    with open(tmp_path / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {float(r["level"]) for r in rows} == {0.7, 1.0, 1.3}  # 1.0 is always swept
    assert all(r["recall"] == "" and r["false_alarms"] == "" for r in rows)
    assert "volumes only" in (tmp_path / "report.html").read_text()


def test_tune_stops_on_a_bad_history_with_one_line(tmp_path, capsys):
    bad = tmp_path / "r.csv"
    bad.write_text("household_id,meter,ts,value\nhh-1,water,2026-01-01T00:15:00+00:00,1\nhh-1,water,garbage,1\n")
    assert main(["tune", "--readings", str(bad), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"elderwatch tune: error: {bad}:3: ts is not an ISO-8601 timestamp"
    assert main(["tune", "--readings", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "none.csv: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out" / "detection.toml").exists()


@pytest.mark.parametrize("text, reason", [
    ('version = "v1"\n[sensitivity]\nflood = 1.0\n', "unknown kind 'flood'"),
    ('version = "v1"\n[sensitivity]\nsurge = 9.0\n', "surge = 9.0: outside 0.1-5.0"),
    ('version = "has space"\n', "version 'has space'"),
    ('[sensitivity]\nsurge = 1.0\n', "version: Field required"),
    ('version = "v1"\ncolour = "red"\n', "colour: Extra inputs are not permitted"),
    ('version = "v1"\n[sensitivity\n', "not TOML"),
])
def test_a_bad_config_is_refused_in_one_line(tmp_path, text, reason):
    path = tmp_path / "detection.toml"
    path.write_text(text)
    with pytest.raises(DetectionConfigError) as caught:
        DetectionConfig.load(path)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_detect_and_worker_refuse_a_bad_config_at_start(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "detection.toml"
    bad.write_text('version = "v1"\n[sensitivity]\nsurge = -1\n')
    assert main(["detect", "--readings", str(READINGS), "--detection-config", str(bad),
                 "--out", str(tmp_path / "w.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("elderwatch detect: bad detection config:") and "surge" in err and "\n" not in err
    assert not (tmp_path / "w.jsonl").exists()
    # the worker refuses before it touches Kafka (nothing listens on this port)
    monkeypatch.setenv("ELDERWATCH_DETECTION_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.setenv("ELDERWATCH_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("elderwatch worker: bad ELDERWATCH_DETECTION_CONFIG:") and "cannot read" in err


def test_the_detect_stage_warns_under_its_config_even_with_state_saved_under_another():
    """The worker's path: HouseholdStates applies its config to every state it loads. A table written under
    the built-in points, continued under a file's config, gives that config's version on every new warning;
    run under the config from the start it gives exactly `elderwatch detect --detection-config`'s warnings."""
    from detectors.offline import read_readings
    from schemas.readings import ValidatedReading
    from streams.detect import HouseholdStates

    zones = load_household_timezones(HOUSEHOLDS)
    rows = [r for r in read_readings(READINGS) if r[0] in {"hh-000001", "hh-000002", "hh-000003"}]
    choice = {"inactivity": 1.3, "continuous_flow": 1.3, "surge": 1.3, "night_activity": 1.3}
    config = MonitorConfig.from_detection(DetectionConfig(version="ops-7", sensitivity=choice))

    def run(states, part, first_offset=0):
        out = []
        for offset, (hid, meter, ts, value) in enumerate(part, start=first_offset):
            step = states.process(ValidatedReading(household_id=hid, meter=meter, ts=ts, value=value), offset)
            if step is not None:
                out += step.warnings
                states.store(step)
        return out

    table: dict[bytes, bytes] = {}
    half = len(rows) // 2
    before = run(HouseholdStates(table, zones, "UTC"), rows[:half])
    after = run(HouseholdStates(table, zones, "UTC", config=config), rows[half:], half)
    assert {w.config_version for w in before} <= {"builtin"} and after
    assert {w.config_version for w in after} == {"ops-7"}

    whole = run(HouseholdStates({}, zones, "UTC", config=config), rows)
    offline = [w for w in detect_file(READINGS, HOUSEHOLDS, config=config)
               if w.household_id in {"hh-000001", "hh-000002", "hh-000003"}]
    assert whole and sorted(whole, key=_key) == sorted(offline, key=_key)
