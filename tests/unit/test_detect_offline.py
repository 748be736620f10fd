"""``elderwatch detect`` and the detect stage's per-reading logic, without Kafka.

The plumbing is checked with a small fake monitor whose warnings depend on each household's own
history (so state shared or lost between households shows), then again with the real
``HouseholdMonitor``.
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
import shutil
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from detectors.monitor import HouseholdMonitor
from detectors.offline import (
    DetectStats,
    MalformedFile,
    ZoneInferenceError,
    detect_file,
    detect_readings,
    load_household_timezones,
    new_monitor,
    read_readings,
)
from elderwatch.cli import main
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.households import HOUSEHOLD_CSV_COLUMNS
from schemas.readings import Meter, ValidatedReading
from streams.detect import HouseholdStates, decode_state

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "replay_data" / "sample"
START = datetime(2026, 1, 5, tzinfo=timezone.utc)


class FakeMonitor:
    """Warns when a reading is the largest so far of its meter, after 8 readings of that meter.

    The warning carries how many readings the household had seen and its local hour, so a
    monitor fed another household's rows, or restarted from scratch, or given the wrong zone,
    gives different warnings."""

    def __init__(self, household_id: str, timezone: str = "UTC", config=None) -> None:
        self.household_id, self.timezone = household_id, timezone
        self.seen: Counter = Counter()
        self.peak: dict[str, float] = {}
        self.last_ts: dict[str, datetime] = {}

    def take_cleared(self) -> list:
        return []  # episodes never end here

    def process(self, meter, ts: datetime, value: float) -> list[AnomalyWarning]:
        meter = Meter(meter)
        assert ts.tzinfo is not None
        assert meter.value not in self.last_ts or ts > self.last_ts[meter.value], "out of order within a meter"
        self.last_ts[meter.value] = ts
        self.seen[meter.value] += 1
        peak = self.peak.get(meter.value, -1.0)
        self.peak[meter.value] = max(peak, value)
        if self.seen[meter.value] <= 8 or value <= peak:
            return []
        kind = AnomalyKind.SURGE if meter is Meter.ELECTRICITY else AnomalyKind.CONTINUOUS_FLOW
        return [AnomalyWarning.for_episode(
            household_id=self.household_id, kind=kind, meter=meter, episode_start=ts, detected_at=ts,
            score=value, severity=Severity.LOW, summary="new peak",
            evidence={"seen": sum(self.seen.values()), "timezone": self.timezone,
                      "local_hour": ts.astimezone(ZoneInfo(self.timezone)).hour})]

    def dumps(self) -> bytes:
        return pickle.dumps(self)

    @staticmethod
    def loads(data: bytes) -> "FakeMonitor":
        return pickle.loads(data)


def fake_factory(household_id: str, zone: str, config) -> FakeMonitor:
    return FakeMonitor(household_id, zone, config)


def _rows(households=("hh-a", "hh-b", "hh-c"), n: int = 60) -> list[tuple[str, Meter, datetime, float]]:
    """Grouped by household (as the simulator writes), meters interleaved by time."""
    rows = []
    for h, household in enumerate(households):
        for i in range(n):
            ts = START + timedelta(minutes=15 * (i + 1))
            rows.append((household, Meter.ELECTRICITY, ts, round(0.05 + ((i * 7 + h) % 13) * 0.01 * (1 + i / 20), 3)))
            rows.append((household, Meter.WATER, ts, float((i * 5 + h) % 11) * (1 + i / 30)))
    return rows


def _write_csv(path: Path, rows, header="household_id,meter,ts,value") -> Path:
    text = header + "\n" + "".join(f"{h},{Meter(m).value},{ts.isoformat()},{v!r}\n" for h, m, ts, v in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", newline="") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def _dumped(warnings) -> list[str]:
    return sorted(w.model_dump_json() for w in warnings)


def _households_csv(path: Path, zones: dict[str, str]) -> Path:
    lines = [",".join(HOUSEHOLD_CSV_COLUMNS)]
    lines += [f"{hh},c-01,occupancy:single,{zone},w-1,,s-1" for hh, zone in zones.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- reading the CSV


def test_plain_and_gzip_csv_give_the_same_rows(tmp_path):
    rows = _rows()
    plain = list(read_readings(_write_csv(tmp_path / "r.csv", rows)))
    gz = list(read_readings(_write_csv(tmp_path / "r.csv.gz", rows)))
    assert plain == gz == rows
    household, meter, ts, value = plain[0]
    assert isinstance(meter, Meter) and ts.utcoffset() == timedelta(0) and isinstance(value, float)


def test_the_simulators_file_is_read_whole():
    rows = list(read_readings(SAMPLE / "readings.csv.gz"))
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    assert len(rows) == manifest["rows"]


@pytest.mark.parametrize("bad_line, problem", [
    ("hh-b,water,2026-01-05T00:45:00+00:00", "expected 4 fields"),
    ("hh-b,water,2026-01-05T00:45:00+00:00,1.0,extra", "expected 4 fields"),
    ("hh-b,gas,2026-01-05T00:45:00+00:00,1.0", "meter must be"),
    ("hh-b,water,2026-01-05T00:45:00,1.0", "no UTC offset"),
    ("hh-b,water,yesterday,1.0", "not an ISO-8601"),
    ("hh-b,water,2026-01-05T00:45:00+00:00,twelve", "not a number"),
    ("hh-b,water,2026-01-05T00:45:00+00:00,-1", "finite number >= 0"),
    ("hh-b,water,2026-01-05T00:45:00+00:00,nan", "finite number >= 0"),
    ("Jane Doe,water,2026-01-05T00:45:00+00:00,1.0", "household_id"),
    (",water,2026-01-05T00:45:00+00:00,1.0", "household_id"),
])
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_malformed_row_is_an_error_with_its_line_number(tmp_path, bad_line, problem, suffix):
    good = "hh-a,water,2026-01-05T00:15:00+00:00,1.5\nhh-a,water,2026-01-05T00:30:00+00:00,0.0\n"
    text = "household_id,meter,ts,value\n" + good + bad_line + "\n" + good
    path = tmp_path / f"r{suffix}"
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    reader = read_readings(path)
    assert len([next(reader), next(reader)]) == 2  # rows before it are read
    with pytest.raises(MalformedFile) as excinfo:
        next(reader)
    assert excinfo.value.line == 4
    assert f"{path}:4: " in str(excinfo.value) and problem in str(excinfo.value)
    if "Jane" in bad_line:
        assert "Jane" not in str(excinfo.value)  # the error names the line, not its content


def test_a_wrong_header_or_an_empty_file_is_an_error(tmp_path):
    with pytest.raises(MalformedFile, match=r":1: header must be"):
        list(read_readings(_write_csv(tmp_path / "a.csv", _rows(n=1), header="household,meter,ts,value")))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(MalformedFile, match="empty file"):
        list(read_readings(tmp_path / "empty.csv"))


def test_detect_stops_at_a_malformed_row_instead_of_skipping_it(tmp_path):
    path = _write_csv(tmp_path / "r.csv", _rows(n=20))
    with open(path, "a") as handle:
        handle.write("hh-a,water,not-a-time,1.0\n")
    with pytest.raises(MalformedFile) as excinfo:
        list(detect_file(path, monitor_factory=fake_factory))
    assert excinfo.value.line == 1 + 3 * 20 * 2 + 1


# --------------------------------------------------------------------------- households and time zones


def test_timezones_from_households_csv_reach_the_monitor(tmp_path):
    readings = _write_csv(tmp_path / "r.csv", _rows())
    households = _households_csv(tmp_path / "households.csv", {"hh-a": "Europe/London", "hh-b": "Asia/Tokyo"})
    created: dict[str, str] = {}

    def factory(household_id, zone, config):
        created[household_id] = zone
        return FakeMonitor(household_id, zone, config)

    stats = DetectStats()
    warnings = list(detect_file(readings, households, default_timezone="America/New_York",
                                monitor_factory=factory, stats=stats))
    assert created == {"hh-a": "Europe/London", "hh-b": "Asia/Tokyo", "hh-c": "America/New_York"}
    assert stats.households == 3 and stats.households_without_timezone == 1
    by_household = {w.household_id: w for w in warnings}
    assert set(by_household) == {"hh-a", "hh-b", "hh-c"}
    assert by_household["hh-b"].evidence["timezone"] == "Asia/Tokyo"
    # The monitor's local hours really are in the household's zone (Tokyo is UTC+9).
    tokyo = [w for w in warnings if w.household_id == "hh-b"]
    assert all((w.detected_at.hour + 9) % 24 == w.evidence["local_hour"] for w in tokyo)


def test_the_real_monitor_gets_the_households_zone(tmp_path):
    households = _households_csv(tmp_path / "households.csv", {"hh-a": "Europe/Madrid"})
    made: dict[str, HouseholdMonitor] = {}

    def factory(household_id, zone, config):
        made[household_id] = new_monitor(household_id, zone, config)
        return made[household_id]

    list(detect_file(_write_csv(tmp_path / "r.csv", _rows(n=4)), households, default_timezone="Europe/Lisbon",
                     monitor_factory=factory))
    assert isinstance(made["hh-a"], HouseholdMonitor)
    assert made["hh-a"].timezone == "Europe/Madrid" and made["hh-b"].timezone == "Europe/Lisbon"


def test_households_csv_errors_name_the_line(tmp_path):
    path = _households_csv(tmp_path / "h.csv", {"hh-a": "Europe/London", "hh-b": "Mars/Olympus"})
    with pytest.raises(MalformedFile, match=r"h.csv:3: invalid household"):
        load_household_timezones(path)
    path = _households_csv(tmp_path / "h2.csv", {"hh-a": "Europe/London"})
    path.write_text(path.read_text() + "hh-a,c-02,,UTC,w-2,,\n")
    with pytest.raises(MalformedFile, match=r"h2.csv:3: household hh-a listed twice"):
        load_household_timezones(path)
    assert load_household_timezones(SAMPLE / "households.csv")["hh-000001"] == "Europe/London"


def test_an_unknown_default_timezone_is_refused():
    with pytest.raises(ValueError, match="unknown time zone"):
        list(detect_readings(_rows(n=1), default_timezone="Europe/Atlantis", monitor_factory=fake_factory))


# --------------------------------------------------------------------------- order


def _interleaved(rows):
    """Households interleaved by time, as a live feed (stable: per-meter order kept)."""
    return sorted(rows, key=lambda row: row[2])


def test_interleaved_households_give_the_same_warnings_as_grouped_ones():
    rows = _rows(households=("hh-a", "hh-b", "hh-c", "hh-d"))
    grouped = _dumped(detect_readings(rows, monitor_factory=fake_factory))
    assert len(grouped) >= 8, "the fake must warn, or this test proves nothing"
    assert _dumped(detect_readings(_interleaved(rows), monitor_factory=fake_factory)) == grouped
    other_way = sorted(rows, key=lambda row: (row[2], -ord(row[0][-1])))  # hh-d first at each time
    assert other_way != _interleaved(rows)
    assert _dumped(detect_readings(other_way, monitor_factory=fake_factory)) == grouped


#: Two simulated households whose 56 days raise every kind of warning the sample has, gaps included.
SAMPLE_HOUSEHOLDS = ("hh-000004", "hh-000009")


def _sample_rows(households=SAMPLE_HOUSEHOLDS):
    return [row for row in read_readings(SAMPLE / "readings.csv.gz") if row[0] in households]


@pytest.fixture(scope="module")
def sample_zones():
    return load_household_timezones(SAMPLE / "households.csv")


def test_real_monitor_interleaved_equals_grouped_on_simulated_households(sample_zones):
    rows = _sample_rows()
    grouped = _dumped(detect_readings(rows, sample_zones))
    assert len(grouped) >= 2, "no warnings from the real detectors on labelled anomalies: this test proves nothing"
    assert _dumped(detect_readings(_interleaved(rows), sample_zones)) == grouped


def test_real_monitor_state_survives_dumps_and_loads_mid_stream(sample_zones):
    """What the detect stage does without its cache, and after every restart: same warnings."""
    rows = _interleaved(_sample_rows())
    expected = _dumped(detect_readings(rows, sample_zones))
    # Every 7th reading: over the 56 days that hits every time of day, at a fraction of the cost.
    assert _dumped(detect_readings(rows, sample_zones, roundtrip_every=7)) == expected


# --------------------------------------------------------------------------- the command


def test_cli_writes_one_warning_per_line_and_a_summary(tmp_path, capsys, monkeypatch):
    readings = _write_csv(tmp_path / "r.csv.gz", _rows())
    out = tmp_path / "warnings.jsonl"
    assert main(["detect", "--readings", str(readings), "--out", str(out), "--timezone", "Europe/London"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["readings"] == 3 * 60 * 2 and summary["households"] == 3
    assert summary["households_default_timezone"] == 3
    lines = out.read_text().splitlines()
    assert summary["warnings"] == len(lines) == sum(summary["warnings_by_kind"].values())
    assert summary["readings_per_s"] > 0
    expected = [w.model_dump_json() for w in detect_file(readings, default_timezone="Europe/London")]
    assert lines == expected
    for line in lines:
        AnomalyWarning.model_validate_json(line)


def test_cli_with_a_fake_monitor_counts_warnings_by_kind(tmp_path, capsys, monkeypatch):
    import detectors.offline as offline

    monkeypatch.setattr(offline, "HouseholdMonitor", FakeMonitor)
    readings = _write_csv(tmp_path / "r.csv", _rows())
    households = _households_csv(tmp_path / "h.csv", {"hh-a": "Europe/London"})
    out = tmp_path / "w.jsonl"
    assert main(["detect", "--readings", str(readings), "--households", str(households), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    expected = Counter(w.kind.value for w in detect_readings(_rows(), {"hh-a": "Europe/London"}, monitor_factory=fake_factory))
    assert summary["warnings_by_kind"] == dict(expected) and sum(expected.values()) > 0
    assert summary["households_default_timezone"] == 2
    assert len(out.read_text().splitlines()) == summary["warnings"]


def test_cli_reports_a_malformed_row_and_leaves_no_output(tmp_path, capsys):
    readings = _write_csv(tmp_path / "r.csv", _rows(n=3))
    with open(readings, "a") as handle:
        handle.write("hh-a,water,2026-01-06T00:00:00+00:00,-5\n")
    out = tmp_path / "w.jsonl"
    assert main(["detect", "--readings", str(readings), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{readings}:{1 + 3 * 3 * 2 + 1}:" in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_cli_refuses_an_unknown_timezone(tmp_path, capsys):
    readings = _write_csv(tmp_path / "r.csv", _rows(n=3))
    assert main(["detect", "--readings", str(readings), "--timezone", "Nowhere/Town", "--out", str(tmp_path / "w")]) == 2
    assert "unknown time zone" in capsys.readouterr().err


# --------------------------------------------------------------------------- zones inferred from the readings' offsets

CST = timezone(timedelta(hours=8))  # a Chinese utility's feed: every reading stamped +08:00


def _restamped(rows, tz):
    """The same instants, stamped with ``tz``'s offset (as a utility in that zone writes them)."""
    return [(h, m, ts.astimezone(tz), v) for h, m, ts, v in rows]


def _zones_made(rows, **kwargs) -> tuple[dict[str, str], list[AnomalyWarning], DetectStats]:
    made: dict[str, str] = {}

    def factory(household_id, zone, config):
        made[household_id] = zone
        return FakeMonitor(household_id, zone, config)

    stats = DetectStats()
    warnings = list(detect_readings(rows, monitor_factory=factory, stats=stats, **kwargs))
    return made, warnings, stats


def test_plus_eight_readings_without_a_zone_are_taken_in_utc_plus_eight_not_utc():
    rows = _restamped(_rows(), CST)
    made, inferred, stats = _zones_made(rows)
    assert made == {"hh-a": "Etc/GMT-8", "hh-b": "Etc/GMT-8", "hh-c": "Etc/GMT-8"}
    assert stats.households_inferred_by_offset == {"+08:00": 3} and stats.inferred_zones == {"+08:00": "Etc/GMT-8"}
    assert stats.households_without_timezone == 3
    assert stats.summary()["households_inferred_by_offset"] == {"+08:00": 3}
    assert stats.summary()["inferred_timezones"] == {"+08:00": "Etc/GMT-8"}
    assert stats.inference_notice() == (
        "detect: no time zone given; 3 households' zones inferred from their readings' offsets "
        "(+08:00 -> Etc/GMT-8); pass --timezone or --households to set it")
    assert inferred, "the fake must warn, or this test proves nothing"
    assert all(w.evidence["local_hour"] == (w.detected_at.astimezone(timezone.utc).hour + 8) % 24 for w in inferred)
    _, explicit, explicit_stats = _zones_made(rows, default_timezone="Etc/GMT-8")
    assert _dumped(inferred) == _dumped(explicit) and not explicit_stats.households_inferred_by_offset
    _, as_utc, _ = _zones_made(rows, default_timezone="UTC")
    assert _dumped(inferred) != _dumped(as_utc)


def test_real_monitor_a_plus_eight_household_keeps_its_nights(sample_zones):
    """Simulated London households moved to China: the same local wall clock, stamped +08:00. With
    the inferred zone the detectors see the nights they saw in London; taken as UTC, the night
    falls eight hours early and night activity is raised in the morning."""
    london = _sample_rows()
    assert {sample_zones[h] for h in SAMPLE_HOUSEHOLDS} == {"Europe/London"}
    wall_clock = ZoneInfo("Europe/London")
    china = [(h, m, ts.astimezone(wall_clock).replace(tzinfo=CST), v) for h, m, ts, v in london]

    def local(warnings, tz):
        return sorted((w.household_id, w.kind.value, w.episode_start.astimezone(tz).replace(tzinfo=None),
                       w.evidence.get("summary")) for w in warnings)

    stats = DetectStats()
    inferred = list(detect_readings(china, stats=stats))
    assert stats.households_inferred_by_offset == {"+08:00": 2}
    assert any(w.kind is AnomalyKind.NIGHT_ACTIVITY for w in inferred), "no night warning: this test proves nothing"
    assert _dumped(inferred) == _dumped(detect_readings(china, default_timezone="Asia/Shanghai"))
    assert local(inferred, CST) == local(detect_readings(london, sample_zones), wall_clock)
    as_utc = list(detect_readings(china, default_timezone="UTC"))
    assert local(as_utc, CST) != local(inferred, CST)


def test_several_offsets_in_one_household_stop_the_run():
    """+01:00 in winter, +02:00 from the end of March (Europe/Madrid): the offsets cannot tell the rules."""
    madrid = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))
    rows = _restamped(_rows(households=("hh-b",), n=10), madrid[0]) + _restamped(_rows(households=("hh-a",), n=20), madrid[0])
    rows += [("hh-a", Meter.WATER, (START + timedelta(days=1)).astimezone(madrid[1]), 1.0)]
    with pytest.raises(ZoneInferenceError) as excinfo:
        _zones_made(rows)
    message = str(excinfo.value)
    assert "hh-a" in message and "+01:00" in message and "+02:00" in message and "hh-b" not in message
    assert "--timezone" in message and "--households" in message and "\n" not in message
    # A zone given (by default or for the household) reads them as what they are: instants.
    made, _, stats = _zones_made(rows, default_timezone="Europe/Madrid")
    assert made == {"hh-a": "Europe/Madrid", "hh-b": "Europe/Madrid"} and not stats.households_inferred_by_offset
    made, _, stats = _zones_made(rows, timezones={"hh-a": "Europe/Madrid"})
    assert made == {"hh-a": "Europe/Madrid", "hh-b": "Etc/GMT-1"} and stats.households_inferred_by_offset == {"+01:00": 1}


def test_households_in_different_offsets_each_get_their_own():
    rows = (_restamped(_rows(households=("hh-a",), n=4), CST) + _rows(households=("hh-b",), n=4)
            + _restamped(_rows(households=("hh-c",), n=4), timezone(timedelta(hours=-5))))
    made, _, stats = _zones_made(_interleaved(rows))
    assert made == {"hh-a": "Etc/GMT-8", "hh-b": "UTC", "hh-c": "Etc/GMT+5"}
    assert stats.households_inferred_by_offset == {"+08:00": 1, "+00:00": 1, "-05:00": 1}
    notice = stats.inference_notice()
    assert "-05:00 -> Etc/GMT+5: 1" in notice and "+08:00 -> Etc/GMT-8: 1" in notice and "stamped UTC" in notice


def test_an_offset_without_a_fixed_offset_zone_is_refused():
    with pytest.raises(ZoneInferenceError, match=r"household hh-a: .*\+05:30 has no fixed-offset IANA zone.*--timezone"):
        _zones_made(_restamped(_rows(n=2), timezone(timedelta(hours=5, minutes=30))))


def test_utc_stamped_readings_without_a_zone_stay_utc_and_say_so():
    made, _, stats = _zones_made(_rows())
    assert made == {"hh-a": "UTC", "hh-b": "UTC", "hh-c": "UTC"}
    assert stats.households_inferred_by_offset == {"+00:00": 3} and stats.inferred_zones == {"+00:00": "UTC"}
    notice = stats.inference_notice()
    assert "+00:00 -> UTC" in notice and "stamped UTC" in notice and "--timezone" in notice


def test_an_explicit_zone_overrides_inference():
    rows = _restamped(_rows(), CST)
    made, _, stats = _zones_made(rows, default_timezone="UTC")
    assert set(made.values()) == {"UTC"} and not stats.households_inferred_by_offset
    assert stats.inference_notice() is None and stats.households_without_timezone == 3


def _cli(tmp_path, capsys, readings: Path, *args: str) -> tuple[int, dict | None, str, Path]:
    out = tmp_path / f"w{len(list(tmp_path.glob('w*.jsonl')))}.jsonl"
    code = main(["detect", "--readings", str(readings), "--out", str(out), *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err, out


def test_cli_infers_plus_eight_and_says_so(tmp_path, capsys, monkeypatch):
    import detectors.offline as offline

    monkeypatch.setattr(offline, "HouseholdMonitor", FakeMonitor)
    readings = _write_csv(tmp_path / "r.csv", _restamped(_rows(), CST))
    code, summary, err, inferred = _cli(tmp_path, capsys, readings)
    assert code == 0
    assert err.strip() == ("detect: no time zone given; 3 households' zones inferred from their readings' offsets "
                           "(+08:00 -> Etc/GMT-8); pass --timezone or --households to set it")
    assert summary["households_inferred_by_offset"] == {"+08:00": 3}
    assert summary["inferred_timezones"] == {"+08:00": "Etc/GMT-8"}
    code, summary, err, explicit = _cli(tmp_path, capsys, readings, "--timezone", "Etc/GMT-8")
    assert code == 0 and err == "" and summary["households_inferred_by_offset"] == {}
    assert inferred.read_text() == explicit.read_text() != ""
    code, summary, err, as_utc = _cli(tmp_path, capsys, readings, "--timezone", "UTC")
    assert code == 0 and err == "" and summary["households_inferred_by_offset"] == {}
    assert as_utc.read_text() != inferred.read_text()


def test_cli_households_file_zones_are_not_inferred(tmp_path, capsys):
    readings = _write_csv(tmp_path / "r.csv", _restamped(_rows(n=4), CST))
    households = _households_csv(tmp_path / "h.csv", {"hh-a": "Asia/Shanghai", "hh-b": "Asia/Shanghai"})
    code, summary, err, _ = _cli(tmp_path, capsys, readings, "--households", str(households))
    assert code == 0 and summary["households_inferred_by_offset"] == {"+08:00": 1}
    assert "1 households' zones inferred" in err


def test_cli_utc_stamped_readings_get_a_notice(tmp_path, capsys):
    readings = _write_csv(tmp_path / "r.csv", _rows(n=4))
    code, summary, err, _ = _cli(tmp_path, capsys, readings)
    assert code == 0 and summary["households_inferred_by_offset"] == {"+00:00": 3}
    assert "+00:00 -> UTC" in err and "stamped UTC" in err and len(err.strip().splitlines()) == 1


def test_cli_mixed_offsets_is_an_error_and_leaves_no_output(tmp_path, capsys):
    rows = _restamped(_rows(households=("hh-a",), n=8), timezone(timedelta(hours=1)))
    rows += _restamped([("hh-a", Meter.WATER, START + timedelta(days=1), 1.0)], timezone(timedelta(hours=2)))
    readings = _write_csv(tmp_path / "r.csv", rows)
    code, _, err, out = _cli(tmp_path, capsys, readings)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("elderwatch detect: error: household hh-a: ") and "+01:00 and +02:00" in err
    assert "--timezone" in err and "--households" in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    code, _, err, out = _cli(tmp_path, capsys, readings, "--timezone", "Europe/Madrid")
    assert code == 0 and err == "" and out.exists()


def test_cli_subprocess_exit_code_and_message(tmp_path):
    import subprocess
    import sys

    readings = _write_csv(tmp_path / "r.csv", _restamped(_rows(n=2), timezone(timedelta(hours=5, minutes=30))))
    proc = subprocess.run([sys.executable, "-m", "elderwatch.cli", "detect", "--readings", str(readings),
                           "--out", str(tmp_path / "w.jsonl")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "+05:30 has no fixed-offset IANA zone" in proc.stderr and "--timezone" in proc.stderr


# --------------------------------------------------------------------------- the detect stage's state handling


def _validated(row) -> tuple[ValidatedReading, int]:
    household, meter, ts, value = row
    return ValidatedReading(household_id=household, meter=meter, ts=ts, value=value)


def _run_stage(states: HouseholdStates, rows, offsets) -> list[AnomalyWarning]:
    warnings = []
    for row, offset in zip(rows, offsets):
        step = states.process(_validated(row), offset)
        if step is not None:
            warnings.extend(step.warnings)
            states.store(step)
    return warnings


def _stage(table, *, factory=fake_factory, loads=FakeMonitor.loads, cache_size=100, zones=None):
    return HouseholdStates(table, zones or {}, "UTC", monitor_factory=factory, monitor_loads=loads,
                           cache_size=cache_size)


def _offsets(rows, partitions: int = 2):
    """Per-partition offsets as Kafka would give them (household -> partition by a stable hash)."""
    next_offset = Counter()
    offsets = []
    for household, *_ in rows:
        p = sum(household.encode()) % partitions
        offsets.append(next_offset[p])
        next_offset[p] += 1
    return offsets


@pytest.mark.parametrize("cache_size", [0, 1, 100])
def test_stage_gives_the_offline_warnings_with_or_without_its_cache(cache_size):
    rows = _interleaved(_rows())
    expected = _dumped(detect_readings(rows, monitor_factory=fake_factory))
    table: dict[bytes, bytes] = {}
    assert _dumped(_run_stage(_stage(table, cache_size=cache_size), rows, _offsets(rows))) == expected
    assert set(table) == {b"hh-a", b"hh-b", b"hh-c"}


def _first_worker_half():
    """Every household's readings interleaved, their offsets and offline warnings, and a first worker's stage run
    over the first half: (rows, offsets, expected, table, half, first)."""
    rows = _interleaved(_rows())
    offsets = _offsets(rows)
    expected = _dumped(detect_readings(rows, monitor_factory=fake_factory))
    table: dict[bytes, bytes] = {}
    half = len(rows) // 2
    first = _run_stage(_stage(table), rows[:half], offsets[:half])
    return rows, offsets, expected, table, half, first


def test_stage_after_a_restart_skips_redelivered_readings_and_loses_nothing():
    rows, offsets, expected, table, half, first = _first_worker_half()
    # A new worker: an empty cache, the table as restored from the changelog, and the last
    # 40 readings the first worker processed delivered again (their offsets were not committed).
    restored = dict(table)
    second_stage = _stage(restored)
    second = _run_stage(second_stage, rows[half - 40:], offsets[half - 40:])
    assert _dumped(first + second) == expected


def test_a_restarted_stage_with_a_warmed_cache_loads_no_state_on_readings_and_loses_nothing():
    rows, offsets, expected, table, half, first = _first_worker_half()
    loads = []

    def counting_loads(data):
        loads.append(data)
        return FakeMonitor.loads(data)

    full = _stage(dict(table), loads=counting_loads, cache_size=2)
    assert [full.warm(h) for h in ("hh-a", "hh-b", "hh-c")] == [True, True, False]  # two places only
    loads.clear()
    restarted = _stage(dict(table), loads=counting_loads, cache_size=3)
    assert [restarted.warm(h) for h in ("hh-a", "hh-b", "hh-c", "hh-unknown")] == [True, True, True, False]
    assert len(loads) == 3 and not restarted.warm("hh-a")  # cached already: not loaded again
    second = _run_stage(restarted, rows[half - 40:], offsets[half - 40:])
    assert _dumped(first + second) == expected
    assert len(loads) == 3, "a warmed household loads no state on its readings"


def test_a_warmed_monitor_is_not_used_once_the_table_has_moved_on():
    rows = _rows(households=("hh-a",))
    offsets = list(range(len(rows)))
    table: dict[bytes, bytes] = {}
    first = _run_stage(_stage(table), rows[:30], offsets[:30])
    mine = _stage(table)
    assert mine.warm("hh-a")  # from the record after 30 readings
    moved_on = _run_stage(_stage(table), rows[30:60], offsets[30:60])  # another worker, same table
    rest = _run_stage(mine, rows[60:], offsets[60:])
    assert _dumped(first + moved_on + rest) == _dumped(detect_readings(rows, monitor_factory=fake_factory))


def test_stage_uses_the_table_not_a_stale_cached_monitor():
    """Another worker moved a household on while this one cached it: the table's record wins."""
    rows = _rows(households=("hh-a",))
    offsets = list(range(len(rows)))
    table: dict[bytes, bytes] = {}
    mine = _stage(table)
    first = _run_stage(mine, rows[:30], offsets[:30])
    other = _stage(table)  # shares the table (as the changelog would), has its own cache
    moved_on = _run_stage(other, rows[30:60], offsets[30:60])
    rest = _run_stage(mine, rows[60:], offsets[60:])
    expected = _dumped(detect_readings(rows, monitor_factory=fake_factory))
    assert _dumped(first + moved_on + rest) == expected
    assert decode_state(table[b"hh-a"])[0] == offsets[-1]


def test_stage_reading_interrupted_before_its_state_is_stored_is_applied_again_from_the_table():
    """Sending a warning failed after process(): the household continues from the stored state,
    not from the cached monitor that already saw the reading."""
    rows = _rows(households=("hh-a",))
    table: dict[bytes, bytes] = {}
    states = _stage(table)
    warnings = _run_stage(states, rows[:40], range(40))
    interrupted = states.process(_validated(rows[40]), 40)  # never stored
    assert interrupted is not None
    warnings += _run_stage(states, rows[40:], range(40, len(rows)))  # redelivered, then the rest
    assert _dumped(warnings) == _dumped(detect_readings(rows, monitor_factory=fake_factory))


class Flaky(FakeMonitor):
    """Fails on a value of 999 after half-updating itself."""

    def process(self, meter, ts, value):
        if value == 999.0:
            self.seen["poisoned"] += 1000
            raise RuntimeError("detector bug")
        return super().process(meter, ts, value)


def test_stage_continues_from_the_stored_state_when_a_detector_raises():
    rows = _rows(households=("hh-a",))
    poisoned = list(rows)
    poisoned.insert(40, ("hh-a", Meter.WATER, rows[39][2] + timedelta(minutes=1), 999.0))
    table: dict[bytes, bytes] = {}
    states = _stage(table, factory=lambda h, z, c: Flaky(h, z, c))
    warnings = []
    for offset, row in enumerate(poisoned):
        try:
            step = states.process(_validated(row), offset)
        except RuntimeError:
            continue
        warnings.extend(step.warnings)
        states.store(step)
    # Same as if the poisoned reading had never come (nothing of its half-update kept).
    assert _dumped(warnings) == _dumped(detect_readings(rows, monitor_factory=fake_factory))


def test_stage_with_the_real_monitor_equals_offline_across_a_restart(sample_zones):
    rows = _interleaved(_sample_rows())
    offsets = _offsets(rows)
    expected = list(detect_readings(rows, sample_zones))
    assert len(expected) >= 2, "no warnings from the real detectors: this test proves nothing"
    # Restart where half of the warnings have been raised, so both workers raise some.
    raised = sorted(w.detected_at for w in expected)[len(expected) // 2]
    half = next(i for i, row in enumerate(rows) if row[2] >= raised)
    table: dict[bytes, bytes] = {}
    real = dict(factory=new_monitor, loads=HouseholdMonitor.loads, zones=sample_zones)
    first = _run_stage(_stage(table, **real), rows[:half], offsets[:half])
    second = _run_stage(_stage(dict(table), **real), rows[half - 100:], offsets[half - 100:])
    assert first and second and _dumped(first + second) == _dumped(expected)


# --------------------------------------------------------------------------- batches: what the agent runs


def _run_batches(states: HouseholdStates, rows, offsets, sizes) -> list[AnomalyWarning]:
    """As the detect agent does: each batch's readings applied, then each household's state stored once."""
    warnings, i = [], 0
    for size in sizes:
        opened: dict = {}
        for row, offset in zip(rows[i:i + size], offsets[i:i + size]):
            applied = states.apply(opened, _validated(row), offset)
            if applied is not None:
                warnings.extend(applied[0])
        for step in states.steps(opened):
            states.store(step)
        i += size
        if i >= len(rows):
            break
    return warnings


def _sizes(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice((1, 2, 3, 7, 50, 500)) for _ in range(n)]


@pytest.mark.parametrize("cache_size", [0, 100])
def test_batches_give_the_warnings_and_states_of_one_reading_at_a_time(sample_zones, cache_size):
    """The parity test: the real monitors, readings in batches of random sizes (a household's readings several
    to a batch), against one at a time: the same warnings, and the very same state records in the table."""
    rows = _interleaved(_sample_rows())
    offsets = _offsets(rows)
    real = dict(factory=new_monitor, loads=HouseholdMonitor.loads, zones=sample_zones, cache_size=cache_size)
    one_table: dict[bytes, bytes] = {}
    one_at_a_time = _run_stage(_stage(one_table, **real), rows, offsets)
    assert len(one_at_a_time) >= 2, "no warnings from the real detectors: this test proves nothing"
    batch_table: dict[bytes, bytes] = {}
    batched = _run_batches(_stage(batch_table, **real), rows, offsets, _sizes(1, len(rows)))
    assert _dumped(batched) == _dumped(one_at_a_time)
    assert batch_table == one_table


def test_batches_after_a_crash_inside_a_batch_repeat_its_readings_and_lose_nothing(sample_zones):
    """A crash after some batch's warnings were sent and before its states were written: a new worker gets the
    table as the changelog has it and the readings since the committed offsets again. Every warning is raised
    (those of the interrupted batch twice: at least once, same ids), and the final states are the same."""
    rows = _interleaved(_sample_rows())
    offsets = _offsets(rows)
    expected = list(detect_readings(rows, sample_zones))
    real = dict(factory=new_monitor, loads=HouseholdMonitor.loads, zones=sample_zones)
    reference: dict[bytes, bytes] = {}
    _run_batches(_stage(reference, **real), rows, offsets, [len(rows)])
    crash = sorted(w.detected_at for w in expected)[len(expected) // 2]
    half = next(i for i, row in enumerate(rows) if row[2] >= crash)
    table: dict[bytes, bytes] = {}
    states = _stage(table, **real)
    first = _run_batches(states, rows[:half - 60], offsets[:half - 60], [25] * len(rows))
    opened: dict = {}  # the interrupted batch: applied and sent, never stored
    interrupted = []
    for row, offset in zip(rows[half - 60:half + 40], offsets[half - 60:half + 40]):
        applied = states.apply(opened, _validated(row), offset)
        interrupted.extend(applied[0] if applied else [])
    assert interrupted, "no warning in the interrupted batch: this test proves less than it says"
    # the new worker: the batches since the last commit (some already stored) delivered again
    restored = dict(table)
    second = _run_batches(_stage(restored, **real), rows[half - 110:], offsets[half - 110:], [40] * len(rows))
    assert {w.warning_id for w in interrupted} <= {w.warning_id for w in second}  # sent again, same ids
    assert _dumped(first + second) == _dumped(expected)
    assert restored == reference  # the states are those of one pass over every reading


def test_batches_continue_from_the_state_before_a_reading_a_detector_raises_on():
    """A detector raises on a reading in the middle of a batch, after the household's earlier readings in the same
    batch: those stay applied, the poisoned one leaves nothing behind."""
    rows = _rows(households=("hh-a", "hh-b"))
    rows = _interleaved(rows)
    poisoned = list(rows)
    poisoned.insert(41, ("hh-a", Meter.WATER, rows[40][2] + timedelta(seconds=1), 999.0))
    table: dict[bytes, bytes] = {}
    states = _stage(table, factory=lambda h, z, c: Flaky(h, z, c))
    warnings, failed = [], 0
    for start in range(0, len(poisoned), 30):  # the poisoned reading is inside the second batch
        opened: dict = {}
        for offset, row in enumerate(poisoned[start:start + 30], start):
            try:
                applied = states.apply(opened, _validated(row), offset)
            except RuntimeError:
                failed += 1
                continue
            warnings.extend(applied[0])
        for step in states.steps(opened):
            states.store(step)
    assert failed == 1
    clean = _stage({}, factory=lambda h, z, c: Flaky(h, z, c))
    assert _dumped(warnings) == _dumped(_run_stage(clean, rows, range(len(rows))))
    assert _dumped(warnings) == _dumped(detect_readings(rows, monitor_factory=fake_factory))


def test_a_reading_whose_warnings_could_not_be_sent_is_taken_back_from_the_batch():
    """The agent dead-letters a reading when sending what it raised fails: undo_last leaves the household's state
    as if the reading had never come, the batch's earlier readings kept."""
    rows = _rows(households=("hh-a",))
    table: dict[bytes, bytes] = {}
    states = _stage(table)
    opened: dict = {}
    for offset, row in enumerate(rows[:20]):
        states.apply(opened, _validated(row), offset)
    states.apply(opened, _validated(rows[20]), 20)
    states.undo_last(opened, "hh-a")
    for step in states.steps(opened):
        states.store(step)
    assert decode_state(table[b"hh-a"])[0] == 19
    reference: dict[bytes, bytes] = {}
    _run_stage(_stage(reference), rows[:20], range(20))
    assert table == reference
