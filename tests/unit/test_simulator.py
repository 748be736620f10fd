"""The household simulator: formats, determinism, anomalies as labelled, and realism sanity."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from elderwatch.simulator import SimulationSummary, simulate
from elderwatch.simulator.anomalies import ALL_KINDS
from elderwatch.simulator.core import simulate_household
from elderwatch.simulator.grid import build_grid, outdoor_temperature
from schemas.households import HOUSEHOLD_CSV_COLUMNS, Household

TZ = "Europe/London"
START = date(2026, 1, 5)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _readings(d: Path) -> list[dict[str, str]]:
    p = d / "readings.csv"
    if p.exists():
        text = p.read_text()
    else:
        text = gzip.decompress((d / "readings.csv.gz").read_bytes()).decode()
    return list(csv.DictReader(text.splitlines()))


def _labels(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "labels.jsonl").read_text().splitlines()]


def _dt(s: str) -> datetime:
    t = datetime.fromisoformat(s)
    assert t.tzinfo is not None, s
    return t


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, SimulationSummary]:
    out = tmp_path_factory.mktemp("sim")
    summary = simulate(households=8, days=40, seed=11, out_dir=out, warmup_days=7, anomaly_rate=3.0)
    return out, summary


# Many anomalies of each kind, straight from the per-household generator.
GRID = build_grid(START, 40, TZ)
TEMP = outdoor_temperature(GRID, 5)
HH = [simulate_household(i, 5, GRID, TEMP, anomaly_rate=4.0, warmup_days=7) for i in range(14)]


def _slots(label, grid=GRID):
    """Slot indices overlapping a label (u in minutes since grid start)."""
    return np.arange(int(label.u0 // 15), int(np.ceil(label.u1 / 15)))


def _of_kind(kind):
    found = [(hd, lab) for hd in HH for lab in hd.labels if lab.kind == kind]
    assert found, f"no {kind} generated"
    return found


# ---------------------------------------------------------------- determinism and independence


def test_same_seed_gives_byte_identical_files(tmp_path):
    for name in ("a", "b"):
        simulate(households=3, days=30, seed=42, out_dir=tmp_path / name, warmup_days=5, compress=True)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(a) == {"readings.csv.gz", "labels.jsonl", "households.csv", "manifest.json"}
    assert a == b
    simulate(households=3, days=30, seed=43, out_dir=tmp_path / "c", warmup_days=5, compress=True)
    assert _files(tmp_path / "c")["readings.csv.gz"] != a["readings.csv.gz"]


def test_worker_count_does_not_change_output(tmp_path):
    # 75 households x 28 days is more than one chunk, so the process pool really is used
    simulate(households=75, days=28, seed=3, out_dir=tmp_path / "one", workers=1)
    simulate(households=75, days=28, seed=3, out_dir=tmp_path / "two", workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_household_data_does_not_depend_on_population_size(tmp_path):
    simulate(households=3, days=35, seed=8, out_dir=tmp_path / "few", warmup_days=5, anomaly_rate=3)
    simulate(households=6, days=35, seed=8, out_dir=tmp_path / "many", warmup_days=5, anomaly_rate=3)
    few, many = _readings(tmp_path / "few"), _readings(tmp_path / "many")
    first3 = {f"hh-00000{i}" for i in (1, 2, 3)}
    assert few == [r for r in many if r["household_id"] in first3]
    assert _labels(tmp_path / "few") == [lab for lab in _labels(tmp_path / "many") if lab["household_id"] in first3]
    hh_many = (tmp_path / "many" / "households.csv").read_text().splitlines()
    assert (tmp_path / "few" / "households.csv").read_text().splitlines() == hh_many[:4]


# ---------------------------------------------------------------- formats


def test_readings_format(run):
    out, summary = run
    text = (out / "readings.csv").read_text()
    assert text.startswith("household_id,meter,ts,value\n")
    rows = _readings(out)
    assert len(rows) == summary.rows
    last: dict[tuple[str, str], datetime] = {}
    grid_start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    for r in rows:
        assert r["meter"] in ("electricity", "water")
        ts = _dt(r["ts"])
        assert ts.utcoffset() == timedelta(0)
        assert (ts - grid_start) % timedelta(minutes=15) == timedelta(0)
        assert grid_start < ts <= grid_start + timedelta(days=40)
        key = (r["household_id"], r["meter"])
        assert key not in last or ts > last[key]
        last[key] = ts
        v = r["value"]
        assert float(v) >= 0 and not v.startswith("-")
        assert len(v.split(".")[1]) == (3 if r["meter"] == "electricity" else 1)
    # households are contiguous blocks, in order
    ids = [r["household_id"] for r in rows]
    assert ids == sorted(ids)


def test_labels_households_and_manifest(run):
    out, summary = run
    labels = _labels(out)
    assert labels
    for lab in labels:
        assert set(lab) == {"household_id", "kind", "start", "end", "meter", "note"}
        assert lab["kind"] in ALL_KINDS
        assert _dt(lab["start"]) < _dt(lab["end"])
        assert lab["note"]
        expected_meter = {"surge": "electricity", "continuous_flow": "water"}.get(lab["kind"])
        if lab["kind"] == "meter_offline":
            assert lab["meter"] in ("electricity", "water")
        else:
            assert lab["meter"] == expected_meter
    with open(out / "households.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == HOUSEHOLD_CSV_COLUMNS
        homes = [Household.from_csv_row(r) for r in reader]
    assert [h.household_id for h in homes] == [f"hh-{i:06d}" for i in range(1, 9)]
    assert all(h.timezone == TZ and h.community == "c-01" and h.staff.primary_worker == "w-c-01-1" for h in homes)
    assert all(any(t.startswith("heating:") for t in h.tags) for h in homes)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 11 and manifest["households"] == 8 and manifest["days"] == 40
    assert manifest["rows"] == summary.rows
    counts = {k: sum(1 for lab in labels if lab["kind"] == k) for k in ALL_KINDS}
    assert manifest["labels"] == counts == summary.labels_by_kind
    assert "generator_version" in manifest


def test_anomaly_rate_zero_gives_no_anomalies(tmp_path):
    s = simulate(households=4, days=60, seed=1, out_dir=tmp_path, anomaly_rate=0, warmup_days=0)
    assert all(v == 0 for k, v in s.labels_by_kind.items() if k != "away")


def test_labels_do_not_overlap_and_respect_warmup(run):
    out, _ = run
    by_hh: dict[str, list] = {}
    for lab in _labels(out):
        by_hh.setdefault(lab["household_id"], []).append(lab)
    tz = ZoneInfo(TZ)
    first_day = START + timedelta(days=7)
    kinds = set()
    for labs in by_hh.values():
        labs.sort(key=lambda lab: _dt(lab["start"]))
        for a, b in zip(labs, labs[1:]):
            assert _dt(a["end"]) <= _dt(b["start"]), (a, b)
        for lab in labs:
            kinds.add(lab["kind"])
            if lab["kind"] != "away":
                assert _dt(lab["start"]).astimezone(tz).date() >= first_day
    assert kinds >= {"inactivity", "surge", "continuous_flow", "night_activity", "meter_offline"}
    for hd in HH:
        for a, b in zip(hd.labels, hd.labels[1:]):
            assert a.u1 <= b.u0


# ---------------------------------------------------------------- anomalies do what the labels say


def test_meter_offline_rows_absent_for_that_meter_only(run):
    out, _ = run
    rows = _readings(out)
    offline = [lab for lab in _labels(out) if lab["kind"] == "meter_offline"]
    assert offline
    for lab in offline:
        s, e = _dt(lab["start"]), _dt(lab["end"])
        inside = [r for r in rows if r["household_id"] == lab["household_id"] and s < _dt(r["ts"]) <= e]
        assert inside
        assert all(r["meter"] != lab["meter"] for r in inside)
        other = "water" if lab["meter"] == "electricity" else "electricity"
        assert sum(r["meter"] == other for r in inside) == round((e - s) / timedelta(minutes=15))


def test_inactivity_no_water_but_baseload(run):
    for hd, lab in _of_kind("inactivity"):
        k0, k1 = int(np.ceil(lab.u0 / 15)), int(lab.u1 // 15)  # intervals fully inside
        assert k1 > k0
        assert np.all(hd.water[k0:k1] == 0)
        assert np.all(hd.electricity[k0:k1] > 0)


def test_inactivity_onsets_at_all_times_of_day():
    hours = {int((lab.u0 % 1440) // 60) for _, lab in _of_kind("inactivity")}
    assert any(h >= 17 for h in hours) and any(8 <= h < 17 for h in hours)


def test_continuous_flow_water_in_every_interval():
    for hd, lab in _of_kind("continuous_flow"):
        assert np.all(hd.water[_slots(lab)] > 0)
        assert len(_slots(lab)) >= 8


def test_surge_well_above_typical_for_that_hour():
    for hd, lab in _of_kind("surge"):
        e = hd.electricity.reshape(-1, 96)
        typical = np.median(e, axis=0)
        k = np.arange(int(np.ceil(lab.u0 / 15)), int(lab.u1 // 15))
        excess = hd.electricity[k] - typical[k % 96]
        assert excess.mean() > 0.35  # +2..3 kW is +0.5..0.75 kWh per interval
        assert np.all(hd.electricity[k] > 0.4)


def test_night_activity_in_sleep_window():
    tz = ZoneInfo(TZ)
    for hd, lab in _of_kind("night_activity"):
        start_local = (GRID.start_utc + timedelta(minutes=lab.u0)).astimezone(tz)
        assert start_local.hour >= 20 or start_local.hour < 6
        slots = _slots(lab)
        lmin = GRID.slot_lmin[slots]
        at_night = (lmin >= 22 * 60) | (lmin < 6 * 60)
        nights = int(lab.note.split(" on ")[1].split()[0])
        # each night: water (toilet/kettle) and lights in the small hours
        assert np.count_nonzero(hd.water[slots][at_night] > 0) >= nights
        ordinary = np.median(hd.electricity.reshape(-1, 96)[:, 8:20])  # 02:00-05:00 normally
        assert np.count_nonzero(hd.electricity[slots][at_night] > ordinary + 0.02) >= nights


# ---------------------------------------------------------------- realism


def test_daily_totals_plausible():
    g = build_grid(START, 21, TZ)
    t = outdoor_temperature(g, 9)
    water, elec_gas, elec_all = [], [], []
    for i in range(30):
        hd = simulate_household(i, 9, g, t, anomaly_rate=0)
        away = any(lab.kind == "away" for lab in hd.labels)
        w = hd.water.reshape(-1, 96).sum(axis=1)
        e = hd.electricity.reshape(-1, 96).sum(axis=1)
        if not away:
            water.append(np.median(w))
            elec_all.append(np.median(e))
            if hd.profile.heating == "gas":
                elec_gas.append(np.median(e))
    assert len(water) >= 15
    assert all(60 <= x <= 250 for x in water), water
    assert all(3 <= x <= 15 for x in elec_gas), elec_gas
    assert all(3 <= x <= 30 for x in elec_all), elec_all  # electric heating in January
    assert 3 <= np.median(elec_all) <= 15


def test_nights_without_toilet_visits_exist_and_wake_time_varies():
    zero_nights = 0
    spreads = []
    for hd in HH[:8]:
        quiet = [lab for lab in hd.labels]
        w = hd.water.reshape(-1, 96)
        busy_days = {int(lab.u0 // 1440) for lab in quiet} | {int(lab.u1 // 1440) for lab in quiet}
        days = [d for d in range(1, 40) if d not in busy_days and d - 1 not in busy_days]
        # 01:00-04:30 UTC (= local in January): normally asleep
        zero_nights += sum(1 for d in days if w[d, 4:18].sum() == 0)
        first_use = [np.flatnonzero(w[d, 20:] > 0)[0] for d in days if (w[d, 20:] > 0).any()]
        spreads.append(np.std(first_use) * 15)
    assert zero_nights > 10
    assert all(s > 10 for s in spreads), spreads  # minutes


def test_behaviour_follows_local_clock_across_dst():
    # clocks go forward on 2026-03-29 in London: the grid stays regular in UTC,
    # the morning routine stays at the same local time, so it moves an hour earlier in UTC
    g = build_grid(date(2026, 3, 16), 28, TZ)
    assert g.n == 28 * 96 - 4
    ts = [datetime.fromisoformat(t) for t in g.ts]
    assert all(b - a == timedelta(minutes=15) for a, b in zip(ts, ts[1:]))
    t = outdoor_temperature(g, 2)
    shift = []
    for i in range(12):
        hd = simulate_household(i, 2, g, t, anomaly_rate=0)
        if any(lab.kind == "away" for lab in hd.labels):
            continue
        u = np.arange(g.n) * 15
        day = u // 1440
        first = []
        for d in range(28):
            sel = np.flatnonzero((day == d) & (u % 1440 >= 240) & (hd.water > 0))
            if sel.size:
                first.append((d, u[sel[0]] % 1440))
        before = np.median([m for d, m in first if d < 13])
        after = np.median([m for d, m in first if d > 13])
        shift.append(before - after)
    assert 30 <= np.median(shift) <= 90
