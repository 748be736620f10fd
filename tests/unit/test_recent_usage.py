"""Recent usage (``detectors/usage.py``): hourly buckets, gaps, the ring, state, and the detect stage's read.

What a community worker sees of a household's last 48 hours next to a ticket: local hours (also
across a DST change), ``None`` where no reading arrived (missing data is not zero use), nothing
older than the ring, and the same after the monitor's state went through the changelog.
"""

from __future__ import annotations

import logging
import pickle
import zlib
from datetime import datetime, timedelta, timezone

from detectors.monitor import HouseholdMonitor
from detectors.usage import MIN_DAYS, RecentUsage
from schemas.readings import ValidatedReading
from streams.detect import HouseholdStates, encode_state

UTC = timezone.utc
T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, GMT in Europe/London


def hours(summary: dict, meter: str = "water") -> list[tuple[str, float | None]]:
    return [(h["hour"], h["value"]) for h in summary["meters"][meter]["hours"]]


def feed(usage: RecentUsage, meter: str, start: datetime, count: int, value=1.0, step_minutes: int = 15,
         skip=()) -> datetime:
    """``count`` readings every ``step_minutes`` after ``start`` (``value``: a number or f(ts)); returns the last ts."""
    t = start
    for i in range(1, count + 1):
        t = start + timedelta(minutes=step_minutes * i)
        if t not in skip:
            usage.update(meter, t, value(t) if callable(value) else value, step_minutes)
    return t


# -- buckets ---------------------------------------------------------------------------------------

def test_a_reading_counts_in_the_hour_its_interval_ends_in():
    usage = RecentUsage("Europe/London")
    t = T0 + timedelta(hours=9)
    for minutes, litres in [(15, 1.0), (30, 2.0), (45, 3.0), (60, 4.0), (75, 10.0)]:  # 09:15 .. 10:15
        usage.update("water", t + timedelta(minutes=minutes), litres, 15)
    summary = usage.summary()
    # 10:00 ends 09:45-10:00: it belongs to 09:00-10:00, not to 10:00-11:00
    assert hours(summary)[-3:] == [("2026-01-05T08:00:00+00:00", None), ("2026-01-05T09:00:00+00:00", 10.0),
                                   ("2026-01-05T10:00:00+00:00", 10.0)]
    water = summary["meters"]["water"]
    assert water["last_reading"] == "2026-01-05T10:15:00+00:00" and water["unit"] == "L"
    assert water["today"] == 20.0 and water["usual_per_day"] is None


def test_hours_are_local_across_the_spring_dst_change():
    """Europe/London, Sunday 29 March 2026: 01:00 GMT becomes 02:00 BST; that day has 23 hours."""
    usage = RecentUsage("Europe/London")
    start = datetime(2026, 3, 28, 0, 0, tzinfo=UTC)  # Saturday 00:00 GMT
    last = feed(usage, "water", start, 4 * 36, value=1.0)  # 36 h of quarter-hours: to Sunday 13:00 BST
    summary = usage.summary()
    labels = [label for label, _ in hours(summary)]
    assert labels[-12:-7] == ["2026-03-29T00:00:00+00:00", "2026-03-29T02:00:00+01:00", "2026-03-29T03:00:00+01:00",
                              "2026-03-29T04:00:00+01:00", "2026-03-29T05:00:00+01:00"]
    assert "2026-03-29T01:00:00+00:00" not in labels and "2026-03-29T01:00:00+01:00" not in labels
    assert all(value == 4.0 for _, value in hours(summary)[-36:])  # every hour has its four quarter-hours
    # Sunday so far: 00:00 GMT to 13:00 BST is 12 hours, not 13
    assert summary["meters"]["water"]["today"] == 48.0
    assert summary["meters"]["water"]["last_reading"] == "2026-03-29T13:00:00+01:00" == last.astimezone(
        usage._tz).isoformat()


def test_the_autumn_dst_change_has_two_one_oclocks_and_a_25_hour_day_counts():
    usage = RecentUsage("Europe/London")
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # Sunday 25 Oct 00:00 BST
    feed(usage, "water", start, 25, value=2.0, step_minutes=60)  # the whole 25-hour day, hourly
    usage.update("water", start + timedelta(hours=26), 2.0, 60)  # Monday's first reading closes Sunday
    labels = [label for label, _ in hours(usage.summary())]
    assert "2026-10-25T01:00:00+01:00" in labels and "2026-10-25T01:00:00+00:00" in labels
    assert usage._meters["water"].daily.n == 1 and usage._meters["water"].daily.get() == 50.0


def test_hours_follow_a_half_hour_zone():
    usage = RecentUsage("Asia/Kolkata")  # UTC+05:30: local hours start at :30 UTC
    usage.update("electricity", datetime(2026, 1, 5, 4, 45, tzinfo=UTC), 0.5, 15)   # 10:15 local
    usage.update("electricity", datetime(2026, 1, 5, 5, 30, tzinfo=UTC), 0.25, 15)  # 11:00 local: still 10:00-11:00
    summary = usage.summary()
    assert hours(summary, "electricity")[-1] == ("2026-01-05T10:00:00+05:30", 0.75)
    assert summary["meters"]["electricity"]["unit"] == "kWh"


def test_a_gap_is_none_not_zero():
    usage = RecentUsage("Europe/London")
    missing = {T0 + timedelta(hours=10, minutes=15 * k) for k in range(1, 9)}  # 10:00-12:00 never arrived
    feed(usage, "water", T0, 4 * 14, value=lambda t: 0.0 if t.hour < 7 else 3.0, skip=missing)
    got = dict(hours(usage.summary()))
    assert got["2026-01-05T09:00:00+00:00"] == 12.0
    assert got["2026-01-05T10:00:00+00:00"] is None and got["2026-01-05T11:00:00+00:00"] is None  # missing
    assert got["2026-01-05T03:00:00+00:00"] == 0.0  # reported, nothing used: zero
    assert got["2026-01-04T23:00:00+00:00"] is None  # before the first reading
    # what was reported (06:00-10:00 and 12:00-14:00; the 07:00 reading is 06:45-07:00); the gap adds nothing
    assert usage.summary()["meters"]["water"]["today"] == 63.0


def test_a_silent_meter_shows_none_while_the_other_reports():
    usage = RecentUsage("Europe/London")
    feed(usage, "electricity", T0, 4 * 10, value=0.1)
    feed(usage, "water", T0, 4 * 6, value=1.0)  # water stopped at 06:00
    summary = usage.summary()
    assert list(summary["meters"]) == ["water", "electricity"]
    assert [v for _, v in hours(summary)[-4:]] == [None] * 4
    assert [v for _, v in hours(summary, "electricity")[-4:]] == [0.4] * 4
    assert summary["meters"]["water"]["last_reading"] == "2026-01-05T06:00:00+00:00"


def test_now_ends_the_window_later_than_the_data():
    usage = RecentUsage("Europe/London")
    feed(usage, "water", T0, 4, value=1.0)  # 00:00-01:00
    summary = usage.summary(now=T0 + timedelta(hours=3, minutes=20))
    assert hours(summary)[-4:] == [("2026-01-05T00:00:00+00:00", 4.0), ("2026-01-05T01:00:00+00:00", None),
                                   ("2026-01-05T02:00:00+00:00", None), ("2026-01-05T03:00:00+00:00", None)]


# -- the ring -------------------------------------------------------------------------------------

def test_the_ring_keeps_48_hours_and_drops_older_ones():
    usage = RecentUsage("Europe/London")
    feed(usage, "water", T0, 60, value=lambda t: float(t.hour), step_minutes=60)  # 60 hourly readings, to 12:00
    got = hours(usage.summary())
    assert len(got) == 48
    # the 13:00 reading (12:00-13:00) is the oldest kept, the 12:00 reading two days later the newest
    assert got[0] == ("2026-01-05T12:00:00+00:00", 13.0) and got[-1] == ("2026-01-07T11:00:00+00:00", 12.0)
    assert all(v is not None for _, v in got)
    assert len(usage._meters["water"].values) == 48  # the ring itself stays 48 long (state size)
    # after two days of nothing, only the new reading is left
    usage.update("water", T0 + timedelta(hours=60 + 50), 5.0, 60)
    after = hours(usage.summary())
    assert [v for _, v in after[:-1]] == [None] * 47 and after[-1][1] == 5.0


def test_usual_per_day_counts_complete_days_only():
    usage = RecentUsage("Europe/London")
    t = feed(usage, "water", T0, 96 * MIN_DAYS, value=1.0)  # MIN_DAYS complete days of 96 L
    assert usage.summary()["meters"]["water"]["usual_per_day"] is None  # the last day is not closed yet
    t = feed(usage, "water", t, 48, value=5.0)  # half a day, then a day of nothing reported: not a day
    t = feed(usage, "water", t + timedelta(days=1, hours=12), 96, value=0.0)  # a day at home using nothing? away
    usage.update("water", t + timedelta(minutes=15), 1.0, 15)
    water = usage.summary()["meters"]["water"]
    assert water["usual_per_day"] == 96.0 and usage._meters["water"].daily.n == MIN_DAYS


# -- state ----------------------------------------------------------------------------------------

def _monitor_with_readings(days: int = 3) -> HouseholdMonitor:
    monitor = HouseholdMonitor("hh-000001", "Europe/London")
    for i in range(1, 96 * days + 1):
        t = T0 + timedelta(minutes=15 * i)
        monitor.process("electricity", t, 0.05 + (i % 7) / 100)
        if i % 50:
            monitor.process("water", t, 2.0 if 7 <= t.hour < 22 and i % 3 == 0 else 0.0)
    return monitor


def test_monitor_feeds_every_accepted_reading_and_state_round_trips():
    monitor = _monitor_with_readings()
    summary = monitor.recent_usage()
    assert set(summary["meters"]) == {"water", "electricity"}
    # one water reading in 50 missing leaves its hour short, not empty
    assert all(v is not None for _, v in hours(summary))
    assert hours(summary)[-2:] == [("2026-01-07T22:00:00+00:00", 0.0), ("2026-01-07T23:00:00+00:00", 0.0)]
    assert hours(summary)[-16] == ("2026-01-07T08:00:00+00:00", 4.0)  # two of its four quarter-hours used 2 L
    copy = HouseholdMonitor.loads(monitor.dumps())
    assert copy.recent_usage() == summary
    t = T0 + timedelta(days=3, minutes=15)
    assert monitor.process("water", T0 + timedelta(hours=1), 99.0) == []  # out of order: not accepted, not counted
    assert monitor.recent_usage() == summary
    for m in (monitor, copy):
        m.process("water", t, 7.0)
    assert copy.recent_usage() == monitor.recent_usage() != summary
    assert hours(copy.recent_usage())[-1] == ("2026-01-08T00:00:00+00:00", 7.0)


def test_old_monitor_state_without_usage_loads_and_starts_empty():
    monitor = _monitor_with_readings(days=1)
    del monitor.__dict__["usage"]  # as pickled before recent usage existed
    old_state = zlib.compress(pickle.dumps(monitor, protocol=pickle.HIGHEST_PROTOCOL), 1)  # as dumps() wrote then
    loaded = HouseholdMonitor.loads(old_state, migrate_pickled=True)  # pickles load only when asked
    assert loaded.recent_usage() == {"timezone": "Europe/London", "meters": {}}
    loaded.process("water", T0 + timedelta(days=1, minutes=15), 3.0)
    assert hours(loaded.recent_usage())[-1] == ("2026-01-06T00:00:00+00:00", 3.0)


# -- the detect stage's read ----------------------------------------------------------------------

def _reading(household: str, meter: str, ts: datetime, value: float) -> ValidatedReading:
    return ValidatedReading(household_id=household, meter=meter, ts=ts, value=value)


def test_household_states_recent_usage_reads_the_stored_monitor(caplog):
    table: dict[bytes, bytes] = {}
    states = HouseholdStates(table, {"hh-000001": "Europe/London"}, "UTC")
    for i in range(1, 9):
        step = states.process(_reading("hh-000001", "water", T0 + timedelta(minutes=15 * i), 1.5), i)
        states.store(step)
    cached = len(states.cache)
    usage = states.recent_usage("hh-000001")
    assert usage["timezone"] == "Europe/London"
    assert hours(usage)[-2:] == [("2026-01-05T00:00:00+00:00", 6.0), ("2026-01-05T01:00:00+00:00", 6.0)]
    assert usage == HouseholdMonitor.loads(table[b"hh-000001"][8:]).recent_usage()
    assert len(states.cache) == cached and states.cache.take("hh-000001", table[b"hh-000001"]) is not None

    assert states.recent_usage("hh-999999") is None  # no state

    table[b"hh-000002"] = encode_state(3, b"not a monitor")
    with caplog.at_level(logging.WARNING, logger="streams.detect"):
        assert states.recent_usage("hh-000002") is None  # unreadable: None, never an exception
    # the exception type only (one type for any unreadable state record), never the household
    assert "recent usage unavailable: StateFormatError" in caplog.text and "hh-000002" not in caplog.text
    table[b"hh-000003"] = b"\x00"  # shorter than its offset
    assert states.recent_usage("hh-000003") is None
