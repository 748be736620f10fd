"""The enrolment lookup (streams/ingest/enrolment.py): a utility's meter id to our household at a
reading's time, kept up to date by roster records; never a guess."""

from __future__ import annotations

from datetime import datetime

import pytest

from schemas.dead_letter import RejectReason
from schemas.households import Household
from schemas.readings import Meter, MeterReading, MeterRegisterReading
from streams.ingest import Enrolment, MeterMatch, OfflineIngest, Rejection, resolve
from streams.ingest.series import Emitted


def home(household_id: str, meters: str) -> Household:
    return Household(household_id=household_id, community="c", staff={"primary_worker": "w-1"}, meters=meters)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


MOVE = "2026-03-01T00:00:00+08:00"  # = 2026-02-28T16:00:00Z


@pytest.fixture
def moved() -> Enrolment:
    # WM-7 was hh-1's until it moved to hh-2; hh-1 never recorded an end (the usual case: the
    # office enrols the new home and forgets the old one): the latest since wins from the move on.
    return Enrolment([home("hh-1", "aqua:WM-7:water;aqua:EM-1:electricity"),
                      home("hh-2", f"aqua:WM-7:water@{MOVE}")])


@pytest.mark.parametrize(("ts", "household"), [
    ("2026-02-28T15:59:59Z", "hh-1"),
    ("2026-02-28T16:00:00Z", "hh-2"),   # exactly at since: the new home
    ("2026-03-01T00:00:00+08:00", "hh-2"),
    ("2027-01-01T00:00:00Z", "hh-2"),
], ids=["before", "at-since", "at-since-other-offset", "long-after"])
def test_moved_meter_takes_effect_from_its_since(moved, ts, household):
    assert moved.lookup("aqua", "WM-7", at(ts)) == MeterMatch(household, Meter.WATER)


def test_until_ends_an_enrolment():
    e = Enrolment([home("hh-1", "aqua:WM-7:water@2026-01-01T00:00:00Z/2026-02-01T00:00:00Z")])
    assert e.lookup("aqua", "WM-7", at("2025-12-31T23:59:59Z")) is None
    assert e.lookup("aqua", "WM-7", at("2026-01-15T00:00:00Z")).household_id == "hh-1"
    assert e.lookup("aqua", "WM-7", at("2026-02-01T00:00:00Z")) is None  # until is excluded


def test_ids_are_per_utility(moved):
    assert moved.lookup("grid", "WM-7", at("2026-03-02T00:00:00Z")) is None  # another utility's meter of that number
    assert moved.lookup("aqua", "wm-7", at("2026-03-02T00:00:00Z")) is None  # opaque: case matters


def test_two_households_from_the_same_time_is_no_answer():
    e = Enrolment([home("hh-1", "aqua:WM-7:water"), home("hh-2", "aqua:WM-7:water")])
    assert e.lookup("aqua", "WM-7", at("2026-03-02T00:00:00Z")) is None
    e.put("hh-2", None)  # the office fixes it
    assert e.lookup("aqua", "WM-7", at("2026-03-02T00:00:00Z")).household_id == "hh-1"


def test_roster_records_update_it(moved):
    # a new entry for hh-2 without the meter: the move is undone
    moved.put("hh-2", home("hh-2", "aqua:EM-9:electricity"))
    assert moved.lookup("aqua", "WM-7", at("2026-03-02T00:00:00Z")).household_id == "hh-1"
    assert moved.lookup("aqua", "EM-9", at("2026-03-02T00:00:00Z")).household_id == "hh-2"
    # a tombstone removes every meter of the household
    moved.put("hh-1", None)
    assert moved.lookup("aqua", "WM-7", at("2026-03-02T00:00:00Z")) is None
    assert moved.lookup("aqua", "EM-1", at("2026-03-02T00:00:00Z")) is None
    assert moved.served_by("aqua") == {"hh-2"} and len(moved) == 1
    # a household without meters is no enrolment
    moved.put("hh-2", home("hh-2", ""))
    assert moved.served_by("aqua") == set() and len(moved) == 0


def test_served_by(moved):
    assert moved.served_by("aqua") == {"hh-1", "hh-2"}
    assert moved.serves("aqua", "hh-1") and not moved.serves("grid", "hh-1")
    assert moved.served_by("grid") == set()


def test_resolve_maps_keeps_utility_and_drops_meter_id(moved):
    reading = MeterRegisterReading(utility_id="aqua", meter_id="WM-7", meter="water", ts="2026-03-02T00:00:00Z",
                                   register=41.0)
    mapped = resolve(reading, moved)
    assert (mapped.household_id, mapped.utility_id, mapped.meter_id, mapped.register_value) == ("hh-2", "aqua", None, 41.0)
    # the mapped reading is a valid household-form reading on the wire
    assert MeterRegisterReading.model_validate_json(mapped.model_dump_json()) == mapped


def test_resolve_leaves_household_readings_alone(moved):
    reading = MeterReading(household_id="hh-9", meter="water", ts="2026-03-02T00:00:00Z", value=1.0)
    assert resolve(reading, moved) is reading


@pytest.mark.parametrize(("utility", "meter_id", "kind"), [
    ("aqua", "WM-8", "water"),          # nobody enrolled it
    ("grid", "WM-7", "water"),          # another utility's
    ("aqua", "WM-7", "electricity"),    # enrolled as water: the reading is not from that meter, or the roster is wrong
], ids=["unenrolled", "other-utility", "other-kind"])
def test_resolve_refuses_unknown_meters(moved, utility, meter_id, kind):
    reading = MeterReading(utility_id=utility, meter_id=meter_id, meter=kind, ts="2026-03-02T00:00:00Z", value=1.0)
    result = resolve(reading, moved)
    assert isinstance(result, Rejection) and result.reason is RejectReason.UNKNOWN_METER
    assert result.household_id is None and meter_id not in result.detail


def test_offline_ingest_maps_meter_readings_into_the_households_series(moved):
    run = OfflineIngest(now=at("2026-03-03T00:00:00Z"), enrolment=moved)
    by_meter = (b'{"utility_id": "aqua", "meter_id": "WM-7", "meter": "water", "ts": "2026-02-28T15:45:00Z", '
                b'"value": 2}')
    by_household = b'{"household_id": "hh-1", "meter": "water", "ts": "2026-02-28T15:45:00Z", "value": 2}'
    first = run.feed(by_meter)
    assert isinstance(first, Emitted) and first.reading.household_id == "hh-1" and first.reading.utility_id == "aqua"
    assert run.counts["duplicates"] == 0
    run.feed(by_household)  # the same reading named our way: one series, so a duplicate
    assert run.counts["duplicates"] == 1
