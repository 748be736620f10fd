"""The "city" simulator family: each real-life behaviour is present in the generated data."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from elderwatch.cli import main
from elderwatch.simulator import simulate
from elderwatch.simulator.anomalies import ALL_KINDS
from elderwatch.simulator.city import build_city_context, city_climate, simulate_city_household
from elderwatch.simulator.grid import build_grid

START = date(2026, 10, 1)
TZ = "Asia/Shanghai"  # UTC+8 all year: local minute = UTC minute since the grid start
DAYS = 92
GRID = build_grid(START, DAYS, TZ)
CTX = build_city_context(GRID, 4)
HH = [simulate_city_household(i, 4, CTX, anomaly_rate=1.0, warmup_days=28, profile="mixed", meters="both") for i in range(45)]


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _full_slots(u0: float, u1: float) -> np.ndarray:
    return np.arange(int(np.ceil(u0 / 15)), int(u1 // 15))


def _labelled_days(hd) -> set[int]:
    out: set[int] = set()
    for lab in hd.labels:
        out.update(range(int(lab.u0 // 1440) - 1, int(lab.u1 // 1440) + 2))
    return out


def _ordinary_days(hd) -> list[int]:
    """Days with no label near them and no visiting child."""
    bad = _labelled_days(hd) | set(np.flatnonzero(hd.detail["stay_days"]).tolist())
    return [d for d in range(DAYS) if d not in bad]


def _runs(x: np.ndarray) -> int:
    on = np.concatenate([[False], x > 0])
    return int(np.count_nonzero(on[1:] & ~on[:-1]))


# ---------------------------------------------------------------- API, determinism, classic untouched


def test_classic_output_unchanged_by_the_family_option(tmp_path):
    simulate(households=2, days=10, seed=5, out_dir=tmp_path / "a", warmup_days=2)
    simulate(households=2, days=10, seed=5, out_dir=tmp_path / "b", warmup_days=2, family="classic",
             start=date(2026, 1, 5), timezone="Europe/London")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert "family" not in json.loads((tmp_path / "a" / "manifest.json").read_text())
    with pytest.raises(ValueError):
        simulate(households=1, days=2, seed=1, out_dir=tmp_path / "c", profile="active")
    with pytest.raises(ValueError):
        simulate(households=1, days=2, seed=1, out_dir=tmp_path / "c", family="city", meters="gas")


def test_city_is_deterministic_and_households_independent(tmp_path):
    kw = dict(days=35, seed=8, warmup_days=5, family="city", profile="mixed", meters="mixed")
    simulate(households=3, out_dir=tmp_path / "few", **kw)
    simulate(households=3, out_dir=tmp_path / "again", **kw)
    simulate(households=6, out_dir=tmp_path / "many", workers=2, **kw)
    assert _files(tmp_path / "few") == _files(tmp_path / "again")
    few = (tmp_path / "few" / "readings.csv").read_text().splitlines()
    many = (tmp_path / "many" / "readings.csv").read_text().splitlines()
    first3 = ("hh-000001", "hh-000002", "hh-000003")
    assert few == [r for r in many if not r.startswith("hh-") or r.startswith(first3)]
    assert (tmp_path / "few" / "households.csv").read_text().splitlines() == \
        (tmp_path / "many" / "households.csv").read_text().splitlines()[:4]


def test_cli_city_defaults_manifest_and_tags(tmp_path, capsys):
    assert main(["simulate", "--family", "city", "--profile", "active", "--meters", "electricity",
                 "--households", "3", "--days", "30", "--seed", "2", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert (m["timezone"], m["start"], m["family"], m["profile"], m["meters"]) == (TZ, "2026-10-01", "city", "active", "electricity")
    assert m["rows"] == summary["rows"] > 0
    with open(tmp_path / "readings.csv", newline="") as f:
        assert {r["meter"] for r in csv.DictReader(f)} == {"electricity"}
    with open(tmp_path / "households.csv", newline="") as f:
        homes = list(csv.DictReader(f))
    for h in homes:
        tags = h["tags"].split(";")
        assert {"family:city", "profile:active", "meters:electricity"} <= set(tags)
        assert h["timezone"] == TZ
    assert main(["simulate", "--family", "city", "--households", "1", "--days", "3", "--start", "2026-12-01",
                 "--timezone", "Asia/Chongqing", "--out", str(tmp_path / "x")]) == 0
    m = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert (m["timezone"], m["start"], m["profile"], m["meters"]) == ("Asia/Chongqing", "2026-12-01", "mixed", "both")


# ---------------------------------------------------------------- climate


def test_climate_autumn_into_winter_with_cold_snaps():
    means_first, means_last, snaps = [], [], 0
    for seed in range(8):
        c = city_climate(build_grid(START, DAYS, TZ), seed)
        means_first.append(c.day_mean[:7].mean())
        means_last.append(c.day_mean[-7:].mean())
        snaps += int((c.snap >= 5).any())
        swing = c.slot.reshape(-1, 96).max(axis=1) - c.slot.reshape(-1, 96).min(axis=1)
        assert np.all(swing > 4)  # day/night
    assert 19 <= np.mean(means_first) <= 25 and 2 <= np.mean(means_last) <= 9
    assert snaps >= 5
    a, b = city_climate(GRID, 3), city_climate(GRID, 3)
    assert np.array_equal(a.slot, b.slot) and not np.array_equal(a.slot, city_climate(GRID, 4).slot)


# ---------------------------------------------------------------- trips, outings, naps, visitors, hospital


def test_unannounced_trips_are_labelled_away_and_nothing_runs_but_the_fridge():
    trips = {"traveller": [], "other": []}
    seen = 0
    more = [simulate_city_household(i, 4, CTX, anomaly_rate=0.0, profile=kind, meters="both")
            for kind in ("traveller", "active") for i in range(100, 130)]
    for hd in HH + more:
        mine = [lab for lab in hd.labels if lab.kind == "away" and "child" in lab.note]
        trips["traveller" if hd.profile.kind == "traveller" else "other"].append(len(mine))
        for lab in mine:
            seen += 1
            assert 1 <= (lab.u1 - lab.u0) / 1440 <= 5
            k = _full_slots(lab.u0, lab.u1)
            assert np.all(hd.water[k] == 0)
            assert np.all(hd.detail["human_e"][k] == 0) and np.all(hd.detail["heat_e"][k] == 0)
            assert np.all(hd.electricity[k] <= (hd.profile.standby_kw * 1.2 + hd.profile.fridge_kw + 0.04) / 4 + 0.01)
    assert seen >= 20
    per_quarter = {k: np.mean(v) * 91 / DAYS for k, v in trips.items()}
    assert 1.8 <= per_quarter["traveller"] <= 4.5 and 0.8 <= per_quarter["other"] <= 2.2
    assert per_quarter["traveller"] > per_quarter["other"] + 0.7


def test_daily_outings_not_labelled_and_nothing_used_while_out():
    share = {"active": [], "homebound": []}
    for hd in HH:
        outs = hd.detail["outings_u"]
        days_out = {int(a // 1440) for a, _ in outs}
        if hd.profile.kind in share:
            share[hd.profile.kind].append(len(days_out) / DAYS)
        for a, b in outs:
            assert 100 <= b - a <= 300
            k = _full_slots(a, b)
            assert np.all(hd.water[k] == 0)
            assert np.all(hd.detail["human_e"][k] == 0) and np.all(hd.detail["heat_e"][k] == 0)
            assert not any(lab.u0 < b and a < lab.u1 and lab.kind == "away" for lab in hd.labels)
        assert all(lab.kind in ALL_KINDS for lab in hd.labels)
    assert np.mean(share["active"]) >= 0.55 and np.mean(share["homebound"]) <= 0.15
    starts = {int((a % 1440) // 60) for hd in HH for a, _ in hd.detail["outings_u"]}
    assert len(starts) >= 8  # at varying times of day


def test_naps_after_lunch_use_nothing():
    naps = 0
    for hd in HH:
        for a, b in hd.detail["naps_u"]:
            if any(lab.u0 < b + 360 and a - 360 < lab.u1 for lab in hd.labels):
                continue
            k = _full_slots(a, b)
            naps += 1
            assert 60 <= b - a <= 120 and 11 * 60 <= a % 1440 <= 16 * 60  # after lunch
            assert np.all(hd.water[k] == 0) and np.all(hd.detail["human_e"][k] == 0)
    assert naps > 500


def test_visiting_child_means_more_water_and_later_evenings_without_labels():
    checked = 0
    water_ratio, later = [], []
    for hd in HH:
        stay = hd.detail["stay_days"]
        if not stay.any():
            continue
        ordinary = _ordinary_days(hd)
        W = hd.water.reshape(-1, 96).sum(axis=1)
        bed = int(np.median(hd.sleep) // 15)  # the usual bedtime, and the next 2 h
        late = np.array([hd.detail["human_e"][d * 96 + bed:d * 96 + bed + 8].sum() for d in range(DAYS)])
        sd = np.flatnonzero(stay)
        water_ratio.append(W[sd].mean() / W[ordinary].mean())
        later.append(late[sd].mean() > late[ordinary].mean())
        for lab in hd.labels:
            assert not stay[max(int(lab.u0 // 1440), 0): int(lab.u1 // 1440) + 1].any()
        checked += 1
    assert checked >= 10
    assert min(water_ratio) > 1.0 and np.mean(water_ratio) > 1.3
    assert np.mean(later) >= 0.75


def test_hospital_stays_are_labelled_away():
    found = 0
    for i in range(120):
        hd = HH[i] if i < len(HH) else simulate_city_household(i, 4, CTX, anomaly_rate=2.0, warmup_days=28,
                                                               profile="homebound", meters="both")
        for lab in hd.labels:
            if lab.kind == "away" and "hospital" in lab.note:
                found += 1
                k = _full_slots(lab.u0, lab.u1)
                assert np.all(hd.water[k] == 0)
        if found >= 5:
            break
    assert found >= 5


# ---------------------------------------------------------------- heating by hand


def test_heating_switched_on_by_hand_grows_with_cold_and_is_off_at_night():
    days = np.arange(DAYS)
    te = CTX.climate.at(days, 19.5)
    warm_h, cold_h, oct_kwh, dec_kwh = [], [], [], []
    for hd in HH:
        p = hd.profile
        H = hd.detail["heat_e"].reshape(-1, 96)
        if p.heating == "none":
            assert not H.any()
            continue
        ordinary = np.array(_ordinary_days(hd))
        assert np.all(H[ordinary][:, 8:20] == 0)  # 02:00-05:00: off at bedtime
        hours = (H[:, 64:] > 0).sum(axis=1) / 4.0  # evening, 16:00-24:00
        warm = ordinary[te[ordinary] > p.comfort_c + 3]
        cold = ordinary[te[ordinary] < p.comfort_c - 5]
        if warm.size and cold.size:
            warm_h.append(hours[warm].mean())
            cold_h.append(hours[cold].mean())
        oct_kwh.append(H[:31].sum(axis=1).mean())
        dec_kwh.append(H[61:].sum(axis=1).mean())
        if p.heating == "ac":  # compressor cycling: uneven within a session
            on = H[H > 0]
            assert on.size == 0 or np.std(on) > 0.02
    assert len(cold_h) >= 10
    assert np.mean(cold_h) > 2.0 and np.mean(warm_h) < 0.5
    assert np.mean(dec_kwh) > 3 * np.mean(oct_kwh) and np.mean(dec_kwh) > 1.5


def test_some_keep_an_electric_blanket_on_through_cold_nights():
    with_b = [hd for hd in HH if hd.profile.blanket_kw > 0]
    without = [hd for hd in HH if hd.profile.blanket_kw == 0]
    assert with_b and without
    cold_nights = np.flatnonzero(CTX.climate.at(np.arange(DAYS), 23.0) < 8)
    for hd in with_b:
        night = hd.detail["human_e"].reshape(-1, 96)[cold_nights][:, 8:16]  # 02:00-04:00
        assert np.median(night) >= hd.profile.blanket_kw / 4 * 0.9
    for hd in without[:10]:
        night = hd.detail["human_e"].reshape(-1, 96)[cold_nights][:, 8:16]
        assert np.median(night) < 0.005


# ---------------------------------------------------------------- nocturia, sparse water users, kitchen


def test_nocturia_night_toilet_visits():
    rates, counts = [], []
    for hd in HH:
        if hd.profile.sparse:
            continue
        per_night = []
        for d in _ordinary_days(hd)[:-1]:
            a = int(d * 96 + (hd.sleep[d] + 60) // 15)
            b = int((d + 1) * 96 + (hd.wake[d + 1] - 45) // 15)
            if b > a:
                per_night.append(_runs(hd.water[a:b]))
        rates.append(hd.profile.night_rate)
        counts.append(np.mean(per_night))
    rates, counts = np.array(rates), np.array(counts)
    assert np.all((rates >= 0.5) & (rates <= 3))
    assert np.mean(rates >= 2) >= 0.4  # two or three are common
    assert np.corrcoef(rates, counts)[0, 1] > 0.6
    assert counts[rates >= 2].mean() > 1.3


def test_sparse_water_users():
    sparse = [hd for hd in HH if hd.profile.sparse]
    normal = [hd for hd in HH if not hd.profile.sparse]
    assert len(sparse) >= 5
    for hd in sparse:
        days = _ordinary_days(hd)
        uses = [_runs(hd.water[d * 96:(d + 1) * 96]) for d in days]
        assert 5 <= np.median(uses) <= 13, np.median(uses)
    litres = lambda hds: np.median([np.median(hd.water.reshape(-1, 96)[_ordinary_days(hd)].sum(axis=1)) for hd in hds])  # noqa: E731
    assert litres(sparse) < 0.6 * litres(normal)
    assert 30 <= litres(sparse) and litres(normal) <= 200


def test_cooking_at_lunch_and_electric_water_heater_reheats():
    for hd in HH[:20]:
        E = hd.detail["human_e"].reshape(-1, 96)
        days = _ordinary_days(hd)
        lunch = E[days][:, 40:56].max(axis=1)  # 10:00-14:00: rice cooker / induction hob
        assert np.mean(lunch >= 0.2) >= 0.75
    gas = [hd for hd in HH if hd.profile.water_heater == "gas"]
    elec = [hd for hd in HH if hd.profile.water_heater == "electric"]
    assert gas and elec
    assert all(not hd.detail["machine_e"].any() or hd.labels for hd in gas)
    for hd in elec:
        if hd.profile.sparse:
            continue
        showers = np.flatnonzero((hd.water >= 25) & (np.arange(hd.water.size) % 96 >= 68))  # evening showers
        showers = showers[showers + 3 < hd.water.size]
        follow = [hd.detail["human_e"][k:k + 3].max() >= 0.25 for k in showers]
        assert np.mean(follow) >= 0.8
        assert hd.detail["machine_e"].sum() > 0  # standing losses


def test_inactivity_in_city_homes():
    found = 0
    for hd in HH:
        for lab in hd.labels:
            if lab.kind == "inactivity":
                k = _full_slots(lab.u0, lab.u1)
                assert np.all(hd.water[k] == 0) and np.all(hd.electricity[k] > 0)
                found += 1
    assert found >= 5


# ---------------------------------------------------------------- meters


def test_mixed_meters_rows_and_labels_match_what_the_home_can_show(tmp_path):
    simulate(households=40, days=60, seed=6, out_dir=tmp_path, warmup_days=7, anomaly_rate=3.0,
             family="city", profile="mixed", meters="mixed")
    with open(tmp_path / "households.csv", newline="") as f:
        meters = {}
        profiles = {}
        for h in csv.DictReader(f):
            tags = h["tags"].split(";")
            meters[h["household_id"]] = next(t for t in tags if t.startswith("meters:")).split(":")[1]
            profiles[h["household_id"]] = next(t for t in tags if t.startswith("profile:")).split(":")[1]
    assert set(meters.values()) == {"both", "electricity", "water"}
    assert set(profiles.values()) == {"homebound", "active", "traveller"}
    seen: dict[str, set[str]] = {}
    with open(tmp_path / "readings.csv", newline="") as f:
        for r in csv.DictReader(f):
            seen.setdefault(r["household_id"], set()).add(r["meter"])
    for hid, kind in meters.items():
        assert seen[hid] == ({"electricity", "water"} if kind == "both" else {kind})
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    for lab in labels:
        kind = meters[lab["household_id"]]
        if kind == "electricity":
            assert lab["kind"] != "continuous_flow"
        if kind == "water":
            assert lab["kind"] != "surge"
        if lab["kind"] == "meter_offline":
            assert kind in ("both", lab["meter"])
    kinds = {(meters[lab["household_id"]], lab["kind"]) for lab in labels}
    for m in ("electricity", "water"):
        assert (m, "inactivity") in kinds or (m, "night_activity") in kinds
