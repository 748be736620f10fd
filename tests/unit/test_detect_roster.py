"""The roster's time zone reaches detection: the detect stage reads households.roster, and a household whose
zone changed reads local time in the new zone from then on (HouseholdMonitor.set_timezone). The households
file (ELDERWATCH_HOUSEHOLDS_FILE) is only the start-up default."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from detectors.monitor import HouseholdMonitor
from elderwatch.settings import Settings
from schemas.households import Household
from schemas.readings import ValidatedReading
from schemas.tickets import Step
from streams.app import Topics
from streams.detect import DetectStage, DetectTopics, decode_state
from streams.guard import Source
from streams.metrics import DetectMetrics

T0 = datetime(2026, 1, 5, 6, 15, tzinfo=timezone.utc)
HH = "hh-000001"


class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key=None, value=None):
        self.sent.append((key, value))


def _topics() -> Topics:
    t = FakeTopic
    return Topics(raw=t("readings.raw"), by_household=t("readings.by-household"), validated=t("readings.validated"),
                  deadletter=t("readings.deadletter"), anomalies=t("anomalies"),
                  ticket_steps={s: t(f"tickets.{s.value}") for s in Step},
                  ticket_acks={s: t(f"tickets.{s.value}.ack") for s in Step},
                  roster=t("households.roster"), away=t("households.away"),
                  notifications_pending=t("notifications.pending"))


def _run(body, timezones: dict[str, str], app_states: list | None = None):
    app_states = [] if app_states is None else app_states

    async def main():
        topics = _topics()
        stage = detect_stage(topics, DetectMetrics(), timezones=timezones, clock=lambda: T0)
        app_states.append(stage.states)
        await body(stage.handle, topics, stage.table)

    asyncio.run(main())


def detect_stage(topics: Topics, metrics: DetectMetrics, *, timezones: dict[str, str], clock) -> DetectStage:
    """The detect stage sending to ``topics``' fakes (the changelog's writes stay in its table)."""
    by_name = {topic.get_topic_name(): topic for topic in (
        topics.validated, topics.deadletter, topics.anomalies, topics.roster, *topics.ticket_steps.values(),
        *topics.ticket_acks.values())}

    async def send(topic, key, value, partition):
        if topic in by_name:
            await by_name[topic].send(key=key, value=value)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    names = DetectTopics(validated="readings.validated", anomalies="anomalies", warning_commands="tickets.warning",
                         feedback="tickets.feedback", feedback_acks="tickets.feedback.ack", roster="households.roster",
                         deadletter="readings.deadletter", changelog="detect-changelog")
    return DetectStage(names, send, metrics, Settings(), timezones=timezones, clock=clock)


def roster(zone: str, household_id: str = HH) -> bytes:
    return Household(household_id=household_id, community="north", timezone=zone,
                     staff={"primary_worker": "w-1"}).model_dump_json().encode()


def reading(minutes: int) -> bytes:
    return ValidatedReading(household_id=HH, meter="water", ts=T0 + timedelta(minutes=minutes),
                            value=2.0).model_dump_json().encode()


def monitor(table) -> tuple[int, HouseholdMonitor]:
    offset, state = decode_state(table[HH.encode()])
    return offset, HouseholdMonitor.loads(state)


def local_hour(m: HouseholdMonitor, minutes: int) -> int:
    """The local hour the monitor gives the next reading (what the detectors learn by)."""
    x, _ = m.observe("water", T0 + timedelta(minutes=minutes), 1.0)
    return x["hour"]


def test_a_roster_zone_change_reaches_the_monitor_from_then_on():
    async def body(handle, topics, table):
        for offset in range(3):
            await handle(reading(15 * offset), HH.encode(), Source("readings.validated", 0, offset))
        before = table[HH.encode()]
        assert monitor(table)[1].timezone == "Europe/London"  # the households file at start
        await handle(roster("Europe/London"), HH.encode(), Source("households.roster", 0, 0))
        assert table[HH.encode()] is before  # the same zone: nothing rewritten
        await handle(roster("Asia/Shanghai"), HH.encode(), Source("households.roster", 0, 1))
        offset, moved = monitor(table)
        assert moved.timezone == "Asia/Shanghai" and offset == 2  # the readings offset is kept
        assert moved.recent_usage()["timezone"] == "Asia/Shanghai"
        # 06:15 + 45 min UTC is 06:52 mid-interval in London, 14:52 in Shanghai
        assert local_hour(HouseholdMonitor.loads(decode_state(before)[1]), 45) == 6 and local_hour(moved, 45) == 14
        # a redelivered reading is still recognised, a new one is processed in the new zone
        await handle(reading(30), HH.encode(), Source("readings.validated", 0, 2))
        assert monitor(table)[1].readings == 3
        await handle(reading(45), HH.encode(), Source("readings.validated", 0, 3))
        assert monitor(table) [1].readings == 4 and monitor(table)[1].timezone == "Asia/Shanghai"
        assert topics.deadletter.sent == []

    _run(body, {HH: "Europe/London"})


def test_a_household_named_by_the_roster_before_any_reading_keeps_its_zone():
    async def body(handle, topics, table):
        await handle(roster("America/New_York"), HH.encode(), Source("households.roster", 0, 0))
        offset, m = monitor(table)  # stored, so a restart (the roster offset committed) still knows it
        assert (offset, m.timezone, m.readings) == (-1, "America/New_York", 0)
        await handle(reading(0), HH.encode(), Source("readings.validated", 0, 0))  # offset 0 is not a redelivery
        offset, m = monitor(table)
        assert (offset, m.timezone, m.readings) == (0, "America/New_York", 1)

    _run(body, {HH: "Europe/London"})  # the roster wins over the households file


def test_poison_on_the_roster_is_left_to_the_ticket_stage():
    """The ticket stage reads households.roster too and dead-letters what it cannot read: once is enough."""
    async def body(handle, topics, table):
        await handle(b"{not json", HH.encode(), Source("households.roster", 0, 0))
        await handle(None, HH.encode(), Source("households.roster", 0, 1))  # a tombstone
        await handle(roster("Asia/Shanghai"), b"hh-000002", Source("households.roster", 0, 2))  # wrong key
        assert table == {} and topics.deadletter.sent == []

    _run(body, {})


def test_set_timezone_refuses_an_unknown_zone_and_changes_nothing():
    m = HouseholdMonitor(HH, "Europe/London")
    with pytest.raises(Exception):
        m.set_timezone("Mars/Olympus")
    assert m.timezone == "Europe/London" and local_hour(m, 45) == 6
    assert HouseholdMonitor.loads(m.dumps()).timezone == "Europe/London"
    assert m.set_timezone("Asia/Shanghai") and HouseholdMonitor.loads(m.dumps()).timezone == "Asia/Shanghai"


def test_a_state_made_by_the_roster_alone_shows_no_recent_usage():
    """The staff API shows no usage for a household without readings, as before the roster made its state."""
    states = []

    async def body(handle, topics, table):
        await handle(roster("Asia/Shanghai"), HH.encode(), Source("households.roster", 0, 0))
        assert table and states[0].recent_usage(HH) is None
        await handle(reading(0), HH.encode(), Source("readings.validated", 0, 0))
        assert states[0].recent_usage(HH)["timezone"] == "Asia/Shanghai"

    _run(body, {}, states)
