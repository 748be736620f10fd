"""bench/bench_recovery.py writes the tables' changelogs itself: every record must be in the partition and
the format the worker would have written it in, or the bench times the recovery of a state the worker
never has (a household's desk and its detector state on different workers, keys it cannot decode)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from aiokafka.partitioner import DefaultPartitioner

from bench.bench_recovery import Case, Template, household_id, partition_for, state_records
from detectors.monitor import HouseholdMonitor
from detectors.offline import new_monitor
from dispatch.desk import HouseholdDesk
from schemas.households import Household
from schemas.readings import Meter, MeterReading
from streams.detect import decode_state
from streams.ingest import IngestLimits, SeriesState, accept_reading
from streams.tables import DETECT_STATE, SERIES_STATE, TICKET_DESKS


def test_partition_is_the_one_faust_producer_picks_for_the_household_key():
    # faust's aiokafka producer partitions the events that write the tables (keyed by household id)
    for partitions in (1, 4, 12):
        for i in range(500):
            hid = household_id(i)
            assert partition_for(hid, partitions) == DefaultPartitioner()(hid.encode(), list(range(partitions)), [])
    # what a real worker wrote (its changelog records read back from the broker)
    assert [partition_for(f"hh-00000{i}", 4) for i in (1, 2, 3)] == [2, 0, 0]


def template() -> Template:
    monitor = new_monitor("hh-template", "Europe/London")
    series = {}
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    for meter in (Meter.ELECTRICITY, Meter.WATER):
        state = SeriesState()
        for k in range(8):
            ts = start + timedelta(minutes=15 * (k + 1))
            monitor.process(meter, ts, 0.1)
            accept_reading(state, MeterReading(household_id="hh-template", meter=meter, ts=ts, value=0.1),
                           IngestLimits())
        series[meter.value] = state.to_json()
    roster = Household(household_id="hh-template", community="north", timezone="Europe/London",
                       staff={"primary_worker": "w-1"})
    return Template("hh-template", monitor.to_state(), monitor.readings, series, roster)


def test_each_household_has_its_state_in_its_partition_under_its_own_id():
    records = list(state_records([template()], households=40, partitions=4, offset_base=1000))
    assert Counter(table for table, *_ in records) == {DETECT_STATE: 40, SERIES_STATE: 80, TICKET_DESKS: 40}
    for table, partition, key, value in records:
        if table == SERIES_STATE:
            hid, meter = json.loads(key).split("/")  # faust's key codec for a str key: JSON
            assert meter in ("electricity", "water") and SeriesState.from_json(json.loads(value)).newest_ms
        else:
            hid = key.decode()
        assert partition == partition_for(hid, 4)  # the household's partition, also for "<household>/<meter>"
        if table == DETECT_STATE:
            offset, monitor = decode_state(value)
            assert offset >= 1000 and HouseholdMonitor.loads(monitor).household_id == hid
        elif table == TICKET_DESKS:
            desk = HouseholdDesk.model_validate_json(value)
            assert desk.household_id == hid and desk.roster.household_id == hid


def test_uncompacted_updates_are_what_each_reading_writes():
    records = list(state_records([template()], households=10, partitions=4, updates=3))
    updates = records[40:]  # after the state: 10 x (detect + 2 series + desk)
    assert Counter(table for table, *_ in updates) == {DETECT_STATE: 30, SERIES_STATE: 30}
    detect = [decode_state(value)[0] for table, _, key, value in updates if key == household_id(7).encode()]
    assert detect == sorted(detect) and len(set(detect)) == 3  # later readings, later offsets
    series_only = list(state_records([template()], households=10, partitions=4, updates=3, detect_updates=False))
    assert Counter(table for table, *_ in series_only[40:]) == {SERIES_STATE: 30}
    assert Case(15000, 8, detect_updates=False).label == "15,000 + 8 series-state writes each, uncompacted"
