"""The pure parts of the latency and soak benchmarks (``bench/bench_latency.py``, ``bench/bench_soak.py`` and
their shared ``bench/live_feed.py``): the pacing schedule, the fleet's readings and how a record is matched
back to the reading that caused it, percentiles, the soak's rules and both reports. No broker here: a wrong
match or a wrong percentile would publish a wrong number without any broker noticing."""

from __future__ import annotations

import json
import math
from array import array
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import bench_latency, bench_soak
from bench.bench_recovery import Template, household_id
from bench.live_feed import (INTERVAL_MS, LIVE_RATE, SURGE_KWH, SURGE_ON, SURGE_PERIOD, WEEK_SLOTS, Fleet, Group,
                             Phase, Sent, _prime, consumer_lag, epoch_ms, iso, layout, own_state, phase_bounds,
                             plan_value, schedule)
from detectors.monitor import HouseholdMonitor
from detectors.offline import new_monitor
from schemas.households import Household
from streams.detect import decode_state
from streams.tables import DETECT_STATE, SERIES_STATE, TICKET_DESKS

LAST_MS = epoch_ms("2026-03-06T00:00:00+00:00")


def week(value: float = 0.1) -> list[float]:
    return [value] * WEEK_SLOTS


def groups(anomalous_primes: tuple[int, ...] = (2,), normal: int = 3) -> list[Group]:
    out = [Group(t, True, LAST_MS + t * INTERVAL_MS, {"electricity": week(), "water": week(1.0)}, prime)
           for t, prime in enumerate(anomalous_primes)]
    out += [Group(t, False, LAST_MS, {"electricity": week(0.2), "water": week(2.0)}) for t in range(normal)]
    return out


# -- pacing ------------------------------------------------------------------------------------------------

def test_live_rate_is_15000_homes_two_meters_every_quarter_hour():
    assert LIVE_RATE == pytest.approx(33.333, abs=1e-3)
    assert Phase("live", LIVE_RATE, 900).readings == 30_000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 400), st.floats(0.1, 30)), min_size=1, max_size=4))
def test_schedule_paces_each_phase_at_its_rate(specs):
    phases = [Phase(f"p{i}", rate, seconds) for i, (rate, seconds) in enumerate(specs)]
    items = list(schedule(phases))
    bounds = phase_bounds(phases)
    assert [n for n, _, _ in items] == list(range(bounds[-1]))
    assert all(b - a >= 0 for (_, _, a), (_, _, b) in zip(items, items[1:]))  # never goes back in time
    start = 0.0
    for p, phase in enumerate(phases):
        mine = [t for _, q, t in items if q == p]
        assert len(mine) == phase.readings == bounds[p + 1] - bounds[p]
        assert phase.readings % 2 == 0  # whole visits: both meters of a household
        assert abs(phase.readings - phase.rate * phase.seconds) <= 1.0 + 1e-9
        if mine:
            assert mine[0] == pytest.approx(start)
            assert all(b - a == pytest.approx(1 / phase.rate) for a, b in zip(mine, mine[1:]))
            assert mine[-1] < start + phase.seconds + 1 / phase.rate
        start += phase.seconds


def test_phase_of_matches_bounds():
    phases = [Phase("a", 2.0, 2), Phase("b", 4.0, 1), Phase("c", 2.0, 1)]
    bounds = phase_bounds(phases)
    for n, p, _ in schedule(phases):
        assert bench_latency.phase_of(n, bounds) == p


# -- the fleet's readings and matching ----------------------------------------------------------------------

def test_plan_value_repeats_last_week_and_adds_the_heater_in_the_surge_part():
    w = [float(j) for j in range(WEEK_SLOTS)]
    assert [plan_value(w, step, "water", False) for step in (1, 2, WEEK_SLOTS, WEEK_SLOTS + 1)] == [0.0, 1.0, 671.0, 0.0]
    surge = [plan_value(week(0.0), step, "electricity", True) > 0 for step in range(1, 2 * SURGE_PERIOD + 1)]
    assert surge == ([True] * SURGE_ON + [False] * (SURGE_PERIOD - SURGE_ON)) * 2
    assert plan_value(week(0.0), 1, "electricity", True) == SURGE_KWH
    assert plan_value(week(0.0), 1, "water", True) == 0.0  # the heater is electric


def test_layout_gives_the_share_of_anomalous_households_every_lead_alike():
    for templates, share, leads in ((24, 0.05, 1), (12, 0.03, 2), (5, 0.5, 3)):
        groups_ = layout(templates, share, leads)
        assert sum(a for _, a, _ in groups_) / len(groups_) == pytest.approx(1 / round(1 / share))
        assert {t for t, _, _ in groups_} == set(range(templates))
        for lead in range(1, leads + 1):
            assert sorted(t for t, a, x in groups_ if a and x == lead) == list(range(templates))
        assert all(x == 0 for _, a, x in groups_ if not a)
        m = round(1 / share)
        for prefix in range(m, len(groups_), m):  # a fleet smaller than the layout has the share too
            assert sum(a for _, a, _ in groups_[:prefix]) == prefix // m


def test_every_household_visited_once_per_cycle_in_shuffled_order():
    fleet = Fleet(groups(), households=50, seed=3)
    readings = [fleet.reading(n) for n in range(2 * 50 * 3)]
    for cycle in range(3):
        visited = [r.household for r in readings[cycle * 100:(cycle + 1) * 100:2]]
        assert sorted(visited) == list(range(50)) and visited == fleet.order
    assert fleet.order != list(range(50))
    for first, second in zip(readings[::2], readings[1::2]):  # electricity, then water of the same household and ts
        assert (first.meter, second.meter) == ("electricity", "water")
        assert (first.household, first.ts_ms, first.visit) == (second.household, second.ts_ms, second.visit)
    for r in readings:  # a household's visit v is v quarter-hours after its group's last reading (and priming)
        g = fleet.group(r.household)
        assert r.ts_ms == g.last_ms + (g.prime + r.visit) * INTERVAL_MS


def test_message_is_the_canonical_raw_reading_keyed_by_household():
    from schemas.readings import MeterReading

    fleet = Fleet(groups(), households=10)
    r = fleet.reading(0)
    key, value = r.message()
    body = json.loads(value)
    assert key == r.household_id.encode() == household_id(r.household).encode()
    assert set(body) == {"household_id", "meter", "ts", "value"}
    parsed = MeterReading.model_validate_json(value)
    assert parsed.ts == datetime.fromtimestamp(r.ts_ms / 1000, timezone.utc) and parsed.value == r.value
    assert iso(r.ts_ms) == body["ts"] and epoch_ms(body["ts"]) == r.ts_ms


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(0, 10_000), st.integers(0, 5))
def test_locate_finds_the_reading_back(households, n, seed):
    fleet = Fleet(groups((1, 3)), households=households, seed=seed)
    r = fleet.reading(n)
    assert fleet.locate(r.household_id, r.meter, r.ts_ms) == n
    # the same household and meter an hour later: four visits later
    assert fleet.locate(r.household_id, r.meter, r.ts_ms + 4 * INTERVAL_MS) == n + 4 * 2 * households


def test_locate_refuses_what_the_schedule_never_sent():
    fleet = Fleet(groups(), households=10)
    r = fleet.reading(5)
    assert fleet.locate(r.household_id, r.meter, r.ts_ms + 60_000) is None  # not on the quarter-hour grid
    g = fleet.group(r.household)
    assert fleet.locate(r.household_id, r.meter, g.last_ms + g.prime * INTERVAL_MS) is None  # before visit 1
    assert fleet.locate("hh-000001", "water", r.ts_ms) is None  # not the fleet's id
    assert fleet.locate(household_id(10), "water", r.ts_ms) is None  # beyond the fleet
    assert fleet.locate("hr-x", "water", r.ts_ms) is None
    assert fleet.locate(r.household_id, "gas", r.ts_ms) is None


def test_visits_count_what_the_schedule_gives_each_household():
    fleet = Fleet(groups(), households=7, seed=1)
    for readings in (0, 2, 14, 30, 100):
        counted = {}
        for n in range(0, readings, 2):
            h = fleet.reading(n).household
            counted[h] = counted.get(h, 0) + 1
        assert {h: fleet.visits(h, readings) for h in range(7)} == {h: counted.get(h, 0) for h in range(7)}


def sent_for(fleet: Fleet, readings: int, created_ms: float = 1_000_000.0, step_ms: float = 30.0) -> Sent:
    sent = Sent(array("d", [created_ms + n * step_ms for n in range(readings)]),
                array("d", [created_ms + n * step_ms + 2 for n in range(readings)]), array("d", [0.0] * readings))
    sent.began_wall = created_ms / 1000
    return sent


def test_validated_readings_matched_by_household_meter_and_ts():
    fleet = Fleet(groups(), households=20)
    sent = sent_for(fleet, 80)
    records = []
    for n in (3, 10, 10, 41):  # 10 validated twice
        r = fleet.reading(n)
        value = {"schema_version": 1, "household_id": r.household_id, "meter": r.meter,
                 "ts": iso(r.ts_ms).replace("+00:00", "Z"), "value": r.value, "interval_s": None}
        records.append((r.household_id.encode(), json.dumps(value).encode(), sent.created[n] + 25 + n, 0))
    records.append((b"x", json.dumps({"household_id": "hr-000001", "meter": "water",
                                      "ts": "2020-01-01T00:00:00Z"}).encode(), 5, 0))
    latencies, unmatched, repeats = bench_latency.match_readings(records, fleet, sent.created)
    assert latencies == {3: 28.0, 10: 35.0, 41: 66.0} and unmatched == 1 and repeats == 1


def warning(hid: str, kind: str, meter: str | None, at_ms: int) -> bytes:
    return json.dumps({"warning_id": f"{hid}/{kind}/x", "household_id": hid, "kind": kind, "meter": meter,
                       "detected_at": iso(at_ms), "episode_start": iso(at_ms)}).encode()


def test_warning_matched_to_the_reading_that_raised_it():
    fleet = Fleet(groups(), households=20)
    sent = sent_for(fleet, 80)
    e = fleet.reading(40)  # electricity; 41 is the same household's water at the same ts
    records = [(b"k", warning(e.household_id, "surge", "electricity", e.ts_ms), sent.created[40] + 120, 0),
               (b"k", warning(e.household_id, "inactivity", None, e.ts_ms), sent.created[41] + 50, 0),
               (b"k", warning(e.household_id, "surge", "electricity", e.ts_ms + 7 * 60_000), 1, 0)]
    matched, unmatched = bench_latency.match_warnings(records, fleet, sent.created)
    assert unmatched == 1
    assert [(m["n"], m["kind"], m["latency_ms"]) for m in matched] == [
        (40, "surge", 120.0),
        (40, "inactivity", 80.0),  # no meter: the earlier of the two readings at that time (the larger latency)
    ]
    assert matched[0]["key"] == (e.household_id, "surge", e.ts_ms)


def test_unsent_reading_is_not_matched():
    fleet = Fleet(groups(), households=4)
    sent = sent_for(fleet, 8)
    sent.created[2] = math.nan
    r = fleet.reading(2)
    matched, unmatched = bench_latency.match_warnings(
        [(b"k", warning(r.household_id, "surge", r.meter, r.ts_ms), 5.0, 0)], fleet, sent.created)
    assert matched == [] and unmatched == 1


# -- the fleet's state: what the changelogs get --------------------------------------------------------------

def warmed_monitor(days: int = 30) -> HouseholdMonitor:
    """A household 30 days in, quiet electricity and water every morning (past the 21-day warm-up)."""
    monitor = new_monitor("hh-template", "UTC")
    t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
    for i in range(1, 96 * days + 1):
        t = t0 + timedelta(minutes=15 * i)
        monitor.process("electricity", t, 0.1 + (0.4 if t.hour == 18 and t.minute < 30 else 0.0))
        monitor.process("water", t, 4.0 if 7 <= t.hour < 8 else 0.0)
    return monitor


@pytest.fixture(scope="module")
def template_group():
    monitor = warmed_monitor()
    state = monitor.to_state()
    last = epoch_ms(max(s[0] for s in state["series"].values()))
    roster = Household(household_id="hh-template", community="north", staff={"primary_worker": "w-1"})
    tpl = Template("hh-template", state, monitor.readings, {"electricity": {"n": last, "t": []}}, roster)
    week_values = {"electricity": [0.1] * WEEK_SLOTS, "water": [0.0] * WEEK_SLOTS}
    anomalous = Group(0, True, last, week_values, state=tpl)
    anomalous.prime = _prime(anomalous, HouseholdMonitor)
    primed = HouseholdMonitor.from_state(json.loads(json.dumps(state)))
    for step in range(1, anomalous.prime + 1):
        ts = datetime.fromtimestamp((last + step * INTERVAL_MS) / 1000, timezone.utc)
        for meter in ("electricity", "water"):
            primed.process(meter, ts, plan_value(week_values[meter], step, meter, True))
    anomalous.state = Template("hh-template", primed.to_state(), primed.readings, tpl.series, roster)
    normal = Group(0, False, last, week_values, state=tpl)
    return anomalous, normal


def test_primed_household_warns_at_its_first_visit(template_group):
    anomalous, normal = template_group
    assert 1 <= anomalous.prime < SURGE_ON
    fleet = Fleet([anomalous, normal], households=6, seed=0)
    expected = fleet.expected_warnings(2 * 6)  # one visit each
    raised = {hid: (kind, n) for (hid, kind, _), n in expected.items()}
    for h in range(6):
        if fleet.group(h).anomalous:
            first = fleet.reading(2 * fleet.position[h])
            assert raised[household_id(h)] == ("surge", first.n) and first.meter == "electricity"
        else:
            assert household_id(h) not in raised
    for (hid, _, at), n in expected.items():  # detected_at is the data time of the reading that raised it
        assert fleet.locate(hid, "electricity", at) == n


def test_state_records_are_the_households_own_with_offsets_below_any_new_one(template_group):
    anomalous, normal = template_group
    anomalous.state.monitor_state["open_warnings"] = {"surge": "hh-template/surge/2026-02-01T00:00:00+00:00"}
    anomalous.state.monitor_state["cleared"] = [["inactivity", "hh-template/inactivity/2026-02-02T00:00:00+00:00"]]
    fleet = Fleet([anomalous, normal], households=4)
    records = list(fleet.state_records())
    assert [table for table, *_ in records].count(DETECT_STATE) == 4
    assert [table for table, *_ in records].count(TICKET_DESKS) == 4
    assert [table for table, *_ in records].count(SERIES_STATE) == 4  # one series in this template
    for table, _, key, value in records:
        if table == DETECT_STATE:
            offset, record = decode_state(value)
            assert offset < 0  # a new readings.validated starts at 0: nothing taken for a redelivery
            monitor = HouseholdMonitor.loads(record)
            assert monitor.household_id == key.decode()
            state = monitor.to_state()
            for warning_id in [*state["open_warnings"].values(), *(w for _, w in state["cleared"])]:
                assert warning_id.startswith(f"{key.decode()}/")
        elif table == SERIES_STATE:
            series = json.loads(value)
            assert series["o"] < 0 and "ro" not in series


def test_own_state_leaves_other_ids_alone():
    state = own_state({"household_id": "hh-1", "open_warnings": {"surge": "hh-10/surge/t"}, "cleared": []}, "hr-2")
    assert state["open_warnings"] == {"surge": "hh-10/surge/t"} and state["household_id"] == "hr-2"


# -- statistics ----------------------------------------------------------------------------------------------

@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300), st.floats(0.1, 100))
def test_percentile_is_nearest_rank(values, q):
    ordered = sorted(values)
    p = bench_latency.percentile(ordered, q)
    assert p in ordered
    assert sum(v <= p for v in ordered) >= q / 100 * len(ordered) - 1e-9  # at least q % at or below
    assert sum(v < p for v in ordered) < q / 100 * len(ordered) + 1e-9  # and it is the smallest such value


def test_summary_and_by_phase():
    phases = [Phase("warm-up", 2.0, 1, measured=False), Phase("live", 2.0, 2), Phase("burst", 4.0, 1)]
    latencies = {0: 999.0, 2: 10.0, 3: 30.0, 5: 20.0, 6: 500.0, 9: 7.0}
    out = bench_latency.by_phase(latencies, phases)
    assert set(out) == {"live", "burst"}
    assert out["live"] == {"count": 3, "p50": 20.0, "p90": 30.0, "p99": 30.0, "max": 30.0, "mean": 20.0}
    assert out["burst"]["count"] == 2 and out["burst"]["max"] == 500.0
    assert bench_latency.summary(list(range(1, 1001)))["p99"] == 990


def test_consumer_lag_reads_every_topic():
    page = ('# HELP elderwatch_consumer_lag x\nelderwatch_consumer_lag{topic="a.readings.raw"} 3.0\n'
            'elderwatch_consumer_lag{topic="a.anomalies"} 0.0\nelderwatch_ready 1.0\n')
    assert consumer_lag(page) == {"a.readings.raw": 3.0, "a.anomalies": 0.0}


# -- the soak's rules ------------------------------------------------------------------------------------------

def rss_samples(mib_at) -> list[dict]:
    return [{"t": float(t), "rss_kib": mib_at(t) * 1024} for t in range(0, 1801, 10)]


def test_memory_flat_after_start_up_growth():
    m = bench_soak.memory(rss_samples(lambda t: 200 + min(t, 300) / 3 + (t % 20) / 10), 0.0, 1800.0, 1.0)
    assert m["flat"] and abs(m["slope_mib_per_min"]) < 0.1
    assert m["minutes_10_15_mib"] == pytest.approx(m["last_5_minutes_mib"], abs=0.2)


def test_memory_growing_slowly_is_not_flat():
    m = bench_soak.memory(rss_samples(lambda t: 300 + t / 60 * 1.5), 0.0, 1800.0, 1.0)
    assert not m["flat"] and m["slope_mib_per_min"] == pytest.approx(1.5)


def test_memory_ignores_samples_outside_the_feed():
    samples = rss_samples(lambda t: 300 + (50 if t > 1200 else 0))
    m = bench_soak.memory([{**s, "t": s["t"] - 100} for s in samples], -100.0, 1000.0, 1.0)
    assert m["flat"] and m["last_mib"] == 300  # the jump came after the feed's end


def test_behind_in_seconds_of_input():
    s = [{"t": t, "ingest_received": 100 * t - (500 if t == 80 else 0), "ingest_emitted": 100 * t,
          "detect_received": 100 * t - (1000 if t == 20 else 0)} for t in range(0, 101, 10)]
    out = bench_soak.behind(s, 0.0, 100.0, 100.0, 10_000)
    assert out == {"ingest_s": 5.0, "detect_s": 0.0, "ingest_all_s": 5.0, "detect_all_s": 10.0}


# -- the reports ----------------------------------------------------------------------------------------------------

def latency_results(live_p99: float = 60.0, burst_p99: float = 2500.0) -> dict:
    def s(count, p50, p99):
        return {"count": count, "p50": p50, "p90": p99 * 0.8, "p99": p99, "max": p99 * 1.1, "mean": p50}

    phases = {"live": s(68, 24.0, live_p99), "burst": s(18, 1150.0, burst_p99), "after the burst": s(0, *[math.nan] * 2)}
    args = {**bench_latency.DEFAULTS, "households": 1500, "live_seconds": 60.0, "burst_seconds": 30.0,
            "after_seconds": 20.0, "baseline_seconds": 30.0, "quiet_timeout": 0.0, "sample_seconds": 2.0}
    return {
        "args": args, "machine": "2 CPUs", "kafka": "3.9.2", "revision": "commit abc",
        "phases": [{"name": "warm-up", "rate": 33.3, "seconds": 10, "readings": 334, "measured": False},
                   {"name": "live", "rate": 33.3, "seconds": 60, "readings": 2000, "measured": True},
                   {"name": "burst", "rate": 333.3, "seconds": 30, "readings": 10000, "measured": True},
                   {"name": "after the burst", "rate": 33.3, "seconds": 20, "readings": 666, "measured": True}],
        "households": 1500, "anomalous_households": 96, "primed": [1, 2], "surge_kwh": SURGE_KWH,
        "ready_s": 3.3, "fed_s": 120.0, "drained_s": 1.0, "quiet": {}, "sent": 13000, "acked": 13000,
        "warnings": {"phases": phases, "received": 96, "matched": 96, "unmatched": 0, "expected": 96,
                     "expected_by_phase": {"warm-up": 10, "live": 68, "burst": 18, "after the burst": 0},
                     "missing": 0, "unexpected": 0, "missing_examples": [], "unexpected_examples": [],
                     "kinds": {"surge": 96}, "latencies": [[5, 20]]},
        "readings": {"phases": phases, "received": 13000, "matched": 13000, "unmatched": 0, "repeats": 0,
                     "worst_seconds": [{"second": 95, "phase": "burst", "readings": 332, "p50": 9778.0, "max": 10072.0}]},
        "acks": phases, "baseline": {"phases": phases, "forwarded": 12000, "sent": 12000, "cpu_cores": 0.17,
                                     "others_cores": 1.0, "acks": phases},
        "load": [{"phase": "live", "worker_cores": 0.46, "others_cores": 1.01, "max_lag": 531,
                  "max_lag_by_topic": {"readings.raw": 85}, "late_p99_ms": 4.0}],
        "timestamp_types": [0], "counts": {"ingest": {"received": 13000}, "detect": {"received": 13000}},
        "identity_gaps": [], "detect_step_ms": {"dump": 0.64}, "worker_log": {"error": 0, "warning": 0, "lines": []},
        "samples": [{"rss_kib": 200_000}],
    }


def test_latency_report_states_targets_and_how_it_was_measured():
    text = bench_latency.report(latency_results())
    assert "`python -m bench.bench_latency --households 1500 --live-seconds 60 --burst-seconds 30 --after-seconds 20 " \
           "--baseline-seconds 30 --quiet-timeout 0`" in text
    assert "A short development run" in text and "`python -m bench.bench_latency`" in text
    assert "| warning (raw → anomalies) | live | 68 | 24 | 48 | 60 | 66 | p50 ≤ 100 ms: yes; p99 ≤ 500 ms: yes |" in text
    assert "| warning (raw → anomalies) | burst | 18 | 1,150 | 2,000 | 2,500 | 2,750 | p99 ≤ 2,000 ms: **no** |" in text
    assert "| reading (raw → readings.validated) | after the burst | 0 | – | – | – | – | |" in text
    assert "CreateTime" in text and "nearest-rank" in text and "expect 96: the same" in text
    assert "identity on its `/metrics` at the end: holds" in text
    full = latency_results()
    full["args"] = {**bench_latency.DEFAULTS, "baseline_seconds": 60.0, "sample_seconds": 2.0}
    assert "A short development run" not in bench_latency.report(full)


def test_latency_report_says_when_warnings_differ_from_the_offline_ones():
    r = latency_results()
    r["warnings"].update(missing=2, unexpected=1, missing_examples=[["hr-000001", "surge", 1]],
                         unexpected_examples=[["hr-000002", "meter_offline", 2]])
    r["identity_gaps"] = ["detect: received 3 != processed 1 + redelivered 0 + dead_lettered 4 + failed 0"]
    text = bench_latency.report(r)
    assert "**not the same**: 2 expected and not received" in text
    assert "**detect: received 3 != processed 1" in text


def test_soak_report_has_the_verdicts_and_the_rss_along_the_run():
    samples = [{"t": float(t), "rss_kib": 400 * 1024, "cpu_s": t * 0.5, "ingest_received": 333.0 * t,
                "ingest_emitted": 333.0 * t, "detect_received": 333.0 * t, "warnings": 1.0, "lag": {"x": 10.0},
                "others_cores": 0.1} for t in range(0, 200, 10)]
    r = {"args": {**bench_soak.DEFAULTS, "minutes": 3.0, "quiet_timeout": 0.0}, "machine": "2 CPUs", "kafka": "3.9.2",
         "revision": "commit abc", "rate": 333.3, "readings": 60000, "households": 15000, "anomalous_households": 750,
         "data_hours": 0.5, "ready_s": 11.0, "fed_s": 180.0, "drained_s": 3.0, "quiet": {"waited_s": 0.0, "quiet": None},
         "verdict": {"memory_flat": True, "kept_up": False, "identity": True, "warnings_as_expected": True},
         "memory": bench_soak.memory(samples, 0.0, 180.0, 1.0), "behind": {"ingest_s": 40.0, "detect_s": 1.0,
                                                                            "ingest_all_s": 40.0, "detect_all_s": 2.0},
         "identity_gaps": [], "counts": {"ingest": {"received": 60000}, "detect": {"received": 60000},
                                         "validated": 60000, "unmatched": 0, "repeats": 0},
         "warnings": {"received": 750, "matched": 750, "unmatched": 0, "expected": 750, "missing": 0, "unexpected": 0},
         "latency": bench_latency.summary([10.0, 20.0]), "window_s": 60.0,
         "windows": [{"from_s": 0.0, **bench_latency.summary([10.0, 20.0])}], "detect_step_ms": {"load": 1.2},
         "worker_log": {"error": 0, "warning": 1, "lines": ["producer buffer full size 167"]}, "samples": samples}
    text = bench_soak.report(r)
    assert "`python -m bench.bench_soak --minutes 3 --quiet-timeout 0`" in text and "A short development run" in text
    assert "| memory flat: RSS slope over the second half < 1 MiB/min | yes | +0.00 MiB/min" in text
    assert "| kept up: second half never more than 30 s of input behind, drained within 60 s | **no** |" in text
    assert "| 3.2 (draining) | 400 MiB |" in text and "| 1.0 | 400 MiB | 19,980 |" in text
    assert "`producer buffer full size 167`" in text


@pytest.mark.parametrize("module", ["bench.live_feed", "bench.bench_latency", "bench.bench_soak"])
def test_doctests(module):
    # bench/ is not among pytest's testpaths: the examples in these modules' docstrings are checked here
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried and not failures
