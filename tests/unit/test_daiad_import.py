"""DAIAD importer: unit tests of its pieces, and checks on the real trial file (skipped when absent).

Expectations are computed independently from the raw rows, not from the importer's own output.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from elderwatch.importers.daiad import LocalClock, import_daiad, read_rows, register_messages
from streams.ingest import OfflineIngest

DATA = Path(__file__).resolve().parents[3] / "shared/data/daiad/swm_trialA_dev.csv.gz"
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
HEADER = "user key;datetime;meter reading;diff"
FMT = "%d/%m/%Y %H:%M:%S"

needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"DAIAD trial file not present at {DATA}")


def write_daiad(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def raw_lines(select) -> list[str]:
    """Data lines of the real file for which ``select(fields)`` is true."""
    with gzip.open(DATA, "rt", newline="") as handle:
        next(handle)
        return [line.rstrip("\r\n") for line in handle if select(line.split(";"))]


# --- pieces, on made-up rows -----------------------------------------------------------------------

def test_register_messages_make_register_readings(tmp_path):
    path = write_daiad(tmp_path / "a.csv", ["u1;01/03/2016 00:32:20;47098;73", "u1;01/03/2016 01:32:17;47100;2"])
    (row1, m1), (row2, m2) = list(register_messages(path))
    assert (row1.line, row2.line) == (2, 3)
    first = json.loads(m1)
    assert first == {"household_id": "u1", "meter": "water", "ts": "2016-03-01T00:32:20+01:00", "register": 47098.0,
                     "unit": "L", "utility_id": "daiad-trial-a"}


def test_unreadable_rows_are_rejected_not_dropped(tmp_path):
    path = write_daiad(tmp_path / "bad.csv", ["u1;01/03/2016 00:32:20;47098;73", "u1;31/02/2016 01:00:00;47099;1",
                                              "u1;01/03/2016 02:32:20;lots;0", "u1", "u1;01/03/2016 03:32:20;47110;11"])
    rejects = tmp_path / "rejects.jsonl"
    summary = import_daiad(path, tmp_path / "out.csv", rejects=rejects, now=NOW)
    assert summary.rows == 5
    assert summary.counts["dead_lettered"] == 3 and summary.readings_written == 1
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in lines] == [3, 4, 5]
    assert {r["reason"] for r in lines} == {"not_json"}
    assert lines[1]["original"] == "u1;01/03/2016 02:32:20;lots"


def test_diff_column_is_ignored(tmp_path):
    path = write_daiad(tmp_path / "d.csv", ["u1;01/03/2016 00:00:00;100;999", "u1;01/03/2016 01:00:00;130;-5"])
    out = tmp_path / "out.csv"
    import_daiad(path, out, now=NOW)
    rows = list(csv.DictReader(out.open()))
    assert [float(r["value"]) for r in rows] == [30.0]


def test_local_clock_standard_and_summer_time():
    clock = LocalClock("Europe/Madrid")
    assert clock.localize("h", datetime(2016, 1, 10, 8, 0)).utcoffset() == timedelta(hours=1)
    assert clock.localize("h", datetime(2016, 7, 10, 8, 0)).utcoffset() == timedelta(hours=2)


def test_local_clock_autumn_sequence_never_steps_back():
    clock = LocalClock("Europe/Madrid")
    naive = ["30/10/2016 01:21:58", "30/10/2016 02:22:00", "30/10/2016 02:22:00", "30/10/2016 03:22:00"]
    aware = [clock.localize("h", datetime.strptime(s, FMT)) for s in naive]
    utc = [a.astimezone(timezone.utc) for a in aware]
    assert utc == sorted(utc)
    assert aware[0].utcoffset() == timedelta(hours=2) and aware[-1].utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(("first", "second"), [("02:22:00", "02:22:00"), ("02:50:00", "02:10:00")],
                         ids=["same-wall-time", "wall-time-steps-back"])
def test_local_clock_places_repeated_autumn_hour_in_second_occurrence(first, second):
    clock = LocalClock("Europe/Madrid")
    clock.localize("h", datetime.strptime(f"30/10/2016 {first}", FMT))
    again = clock.localize("h", datetime.strptime(f"30/10/2016 {second}", FMT))
    assert again.utcoffset() == timedelta(hours=1)  # the second 02:xx of the night is CET


def test_local_clock_is_per_household():
    clock = LocalClock("Europe/Madrid")
    clock.localize("a", datetime(2016, 10, 30, 2, 30))
    assert clock.localize("b", datetime(2016, 10, 30, 2, 10)).utcoffset() == timedelta(hours=2)


# --- the real file ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_import(tmp_path_factory):
    """One full import of the real file (~8 s), shared by the tests below."""
    if not DATA.exists():
        pytest.skip(f"DAIAD trial file not present at {DATA}")
    out_dir = tmp_path_factory.mktemp("daiad")
    out, rejects = out_dir / "readings.csv", out_dir / "rejects.jsonl"
    summary = import_daiad(DATA, out, rejects=rejects, now=NOW)
    return summary, out, rejects


@pytest.fixture(scope="module")
def raw_registers():
    """Per household, the register column in file order, read with csv only."""
    if not DATA.exists():
        pytest.skip(f"DAIAD trial file not present at {DATA}")
    registers: dict[str, list[float]] = defaultdict(list)
    rows = 0
    with gzip.open(DATA, "rt", newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        assert next(reader) == HEADER.split(";")
        for user, _, register, _ in reader:
            rows += 1
            registers[user].append(float(register))
    return rows, registers


@needs_data
def test_counts_balance_and_cover_every_row(full_import, raw_registers):
    summary, out, _ = full_import
    rows, registers = raw_registers
    c = summary.counts
    assert summary.rows == rows == c["received"]
    assert c["received"] == c["valid"] + c.get("duplicates", 0) + c.get("dead_lettered", 0)
    assert c["valid"] == c["emitted"] + c["register_baselines"]
    assert c["register_baselines"] == len(registers)  # one first read per household, no resets
    assert summary.readings_written == c["emitted"] == sum(1 for _ in out.open()) - 1


@needs_data
def test_emitted_litres_per_household_match_the_registers(full_import, raw_registers):
    _, out, _ = full_import
    _, registers = raw_registers
    # Premise: no resets in this file -- nothing falls by more than the read-back tolerance (500 L)
    # below the running maximum, so every household's use is max register - first register.
    for user, values in registers.items():
        high = values[0]
        for v in values:
            assert high - v <= 500, f"{user}: fall of {high - v} L is a reset; premise broken"
            high = max(high, v)
    emitted: Counter[str] = Counter()
    for row in csv.DictReader(out.open()):
        emitted[row["household_id"]] += float(row["value"])
    assert set(emitted) == set(registers)
    for user, values in registers.items():
        assert emitted[user] == pytest.approx(max(values) - values[0], abs=1e-6), user


@needs_data
def test_output_csv_header_and_offsets(full_import):
    _, out, _ = full_import
    with out.open() as handle:
        assert handle.readline() == "household_id,meter,ts,value\n"
        reader = csv.reader(handle)
        last: dict[str, datetime] = {}
        offsets = Counter()
        for household_id, meter, ts, value in reader:
            assert meter == "water"
            parsed = datetime.fromisoformat(ts)
            offsets[parsed.utcoffset()] += 1
            assert float(value) >= 0
            previous = last.get(household_id)
            assert previous is None or parsed > previous, (household_id, ts)  # strictly increasing in UTC
            last[household_id] = parsed
    assert set(offsets) == {timedelta(hours=1), timedelta(hours=2)}  # CET and CEST, never naive or UTC


@needs_data
def test_no_register_out_of_order_anywhere(full_import):
    summary, _, rejects = full_import
    reasons = Counter(json.loads(line)["reason"] for line in rejects.read_text().splitlines())
    assert reasons["register_out_of_order"] == 0
    assert sum(reasons.values()) == summary.counts.get("dead_lettered", 0)


@pytest.fixture(scope="module")
def autumn_night(tmp_path_factory):
    """Rows of 29..31 October 2016 (DST ends 30/10 at 03:00 CEST) of the first three households."""
    if not DATA.exists():
        pytest.skip(f"DAIAD trial file not present at {DATA}")
    wanted: list[str] = []
    lines = raw_lines(lambda f: len(f) > 1 and f[1][:10] in ("29/10/2016", "30/10/2016", "31/10/2016"))
    for line in lines:
        user = line.split(";")[0]
        if user not in wanted and len(wanted) < 3:
            wanted.append(user)
    selected = [line for line in lines if line.split(";")[0] in wanted]
    assert len(wanted) == 3 and len(selected) > 100
    return write_daiad(tmp_path_factory.mktemp("autumn") / "autumn.csv", selected), selected


@needs_data
def test_autumn_dst_hour_is_not_out_of_order(autumn_night, tmp_path):
    path, selected = autumn_night
    assert sum(1 for line in selected if ";30/10/2016 02:" in line) >= 6  # the repeated hour is in the slice
    ingest = OfflineIngest(now=NOW)
    reasons = Counter()
    for _, message in register_messages(path):
        outcome = ingest.feed(message)
        reasons[getattr(getattr(outcome, "reason", None), "value", type(outcome).__name__)] += 1
    assert reasons["register_out_of_order"] == 0
    assert ingest.counts["dead_lettered"] == 0
    assert ingest.counts["received"] == len(selected)
    out = tmp_path / "out.csv"
    import_daiad(path, out, now=NOW)
    stamps = [row["ts"] for row in csv.DictReader(out.open()) if row["ts"].startswith("2016-10-30T0")]
    assert any(s.startswith("2016-10-30T01:") and s.endswith("+02:00") for s in stamps)
    assert any(s.startswith("2016-10-30T03:") and s.endswith("+01:00") for s in stamps)


@needs_data
def test_autumn_second_occurrence_is_kept(autumn_night, tmp_path):
    path, _ = autumn_night
    out = tmp_path / "out.csv"
    import_daiad(path, out, now=NOW)
    stamps = [row["ts"] for row in csv.DictReader(out.open())]
    assert any(s.startswith("2016-10-30T02:") and s.endswith("+01:00") for s in stamps)


@needs_data
def test_read_rows_first_rows_of_real_file():
    from itertools import islice

    rows = list(islice(read_rows(DATA), 3))
    assert [r.line for r in rows] == [2, 3, 4]
    assert all(len(r.household_id) == 36 and datetime.strptime(r.local_time, FMT) for r in rows)
    assert all(float(r.register) >= 0 for r in rows)
