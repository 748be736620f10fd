"""The ingest stage's batch (streams/readings_loop.py ``IngestStage``) without a broker: what it sends, in which
order, what it writes to its changelog, and what it restores from one."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka.partitioner import DefaultPartitioner

from elderwatch.settings import Settings
from streams.ingest import Emitted, OfflineIngest
from streams.readings_loop import IngestStage, IngestTopics, Message, changelog_key
from streams.metrics import AgentMetrics, IngestMetrics

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
TOPICS = IngestTopics("readings.raw", "readings.by-household", "readings.validated", "readings.deadletter",
                      "series-changelog")
PARTITIONS = 4


def partition_of(household_id: str) -> int:
    every = range(PARTITIONS)
    return DefaultPartitioner()(household_id.encode(), every, every)


@dataclass
class Written:
    """aiokafka's RecordMetadata, what the stage reads of it."""

    offset: int


class Broker:
    """Records every send in order; each acknowledgement is a future the test may hold back."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.acks: list[asyncio.Future] = []
        self.hold = False

    async def send(self, topic, key, value, partition):
        self.sent.append((topic, key, value, partition))
        ack = asyncio.get_running_loop().create_future()
        ack.offset = sum(1 for name, *_ in self.sent if name == topic) - 1  # where the topic put it
        if not self.hold:
            ack.set_result(Written(ack.offset))
        self.acks.append(ack)
        return ack

    def release(self) -> None:
        self.hold = False
        for ack in self.acks:
            if not ack.done():
                ack.set_result(Written(ack.offset))

    def on(self, topic: str) -> list:
        return [(key, value, partition) for name, key, value, partition in self.sent if name == topic]


def stage_with(broker: Broker, metrics: IngestMetrics | None = None) -> IngestStage:
    async def counts():
        return {TOPICS.raw: PARTITIONS, TOPICS.by_household: PARTITIONS}

    stage = IngestStage(TOPICS, broker.send, metrics or IngestMetrics(), Settings(),
                        clock=lambda: T0 + timedelta(days=30), partition_counts=counts)
    for partition in range(PARTITIONS):
        stage.restore(partition, [])  # every partition held, none with a state yet
    return stage


def reading(household: str, i: int, meter: str = "water") -> bytes:
    return json.dumps({"household_id": household, "meter": meter,
                       "ts": (T0 + timedelta(minutes=15 * i)).isoformat(), "value": float(i % 3)}).encode()


def direct(household: str, i: int, offset: int, meter: str = "water") -> Message:
    """A raw message keyed by its household, in the partition that key has: the direct route."""
    return Message(TOPICS.raw, partition_of(household), offset, None, household.encode(), reading(household, i, meter))


def test_a_checkpoint_writes_each_changed_series_once_to_its_partition_after_the_batches_outputs():
    broker = Broker()
    stage = stage_with(broker)
    households = ["hh-000001", "hh-000002", "hh-000003"]
    messages = [direct(h, i, offset=i) for i in range(5) for h in households]

    async def main():
        broker.hold = True  # the outputs' acknowledgements do not come until released
        running = asyncio.ensure_future(stage.run(messages[:9]))
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(broker.on(TOPICS.validated)) == 9 and not running.done()  # the batch waits for its acks
        broker.release()
        await asyncio.wait_for(running, 5)
        await stage.run(messages[9:])  # a second batch changes the same series again
        assert broker.on(TOPICS.changelog) == []  # states wait for the checkpoint
        await stage.checkpoint()
        await stage.checkpoint()  # nothing changed since: nothing written

    asyncio.run(main())
    written = broker.on(TOPICS.changelog)
    assert sorted(key for key, _, _ in written) == sorted(changelog_key(f"{h}/water") for h in households)
    for key, value, partition in written:
        household = json.loads(key).split("/")[0]
        assert partition == partition_of(household)
        assert orjson.loads(value)["do"] == {str(partition): 4}  # applied up to the raw offset of its 5th reading
    assert [name for name, *_ in broker.sent].index(TOPICS.changelog) == 15  # every output before any state


def test_the_stage_emits_what_offline_ingest_emits_for_the_same_messy_feed():
    feed = [reading("hh-000007", i) for i in range(40)]
    feed[10:10] = [feed[3], b"not json", reading("hh-000007", 12)]  # a re-send, garbage, a duplicate
    feed += [reading("hh-000007", 1)]  # an early reading again, within the 48-hour horizon: a duplicate
    broker, offline = Broker(), OfflineIngest()
    expected = [outcome.reading.model_dump_json().encode() for outcome in map(offline.feed, feed)
                if isinstance(outcome, Emitted)]
    stage = stage_with(broker)
    p = partition_of("hh-000007")
    messages = [Message(TOPICS.raw, p, offset, None, b"hh-000007", value) for offset, value in enumerate(feed)]

    async def main():
        for first in range(0, len(messages), 7):  # batches of 7
            await stage.run(messages[first:first + 7])

    asyncio.run(main())
    assert [value for _, value, _ in broker.on(TOPICS.validated)] == expected
    assert len(broker.on(TOPICS.deadletter)) == 1


def test_a_message_read_again_after_a_restore_is_skipped_not_judged_again():
    broker, metrics = Broker(), IngestMetrics()
    stage = stage_with(broker, metrics)
    messages = [direct("hh-000009", i, offset=i) for i in range(6)]
    asyncio.run(stage.run(messages))
    asyncio.run(stage.checkpoint())
    changelog = [(key, value) for key, value, _ in broker.on(TOPICS.changelog)]

    again, again_broker = None, Broker()
    again = stage_with(again_broker, metrics)
    again.restore(partition_of("hh-000009"), changelog)  # a new worker: the state from the changelog
    asyncio.run(again.run(messages[3:] + [direct("hh-000009", 6, offset=6)]))
    assert len(again_broker.on(TOPICS.validated)) == 1  # only the new reading
    assert metrics.raw_redelivered._value.get() == 3


def test_a_restore_keeps_the_state_that_has_read_furthest_not_the_last_written():
    broker = Broker()
    stage = stage_with(broker)
    key = changelog_key("hh-000001/water")
    ahead = orjson.dumps({"n": 2000, "t": [], "r": None, "rt": None, "do": {"1": 90}})
    behind = orjson.dumps({"n": 1000, "t": [], "r": None, "rt": None, "do": {"1": 40}})  # a resumed old worker's
    other = changelog_key("hh-000002/water")
    stage.restore(1, [(key, ahead), (key, behind), (other, behind), (other, None)])  # a tombstone removes
    assert set(stage.series[1]) == {"hh-000001/water"}
    assert stage.series[1]["hh-000001/water"].direct_offsets == {1: 90}
    assert AgentMetrics.of(stage.metrics.registry).stale_records.labels(table="ingest-series-state")._value.get() == 1


def test_a_raw_partition_held_without_its_series_partition_is_re_keyed_not_applied():
    broker = Broker()
    stage = stage_with(broker)
    message = direct("hh-000004", 0, offset=0)
    stage.drop([message.partition])
    asyncio.run(stage.run([message]))
    assert len(broker.on(TOPICS.by_household)) == 1 and broker.on(TOPICS.validated) == []


def test_detect_gets_each_emitted_reading_at_its_validated_offset_and_its_state_is_stored_before_the_series():
    """Ingest and detect in one batch (the readings loop's): the detect stage applies each reading once readings.validated
    has acknowledged it, with that offset as its redelivery mark; its warnings are sent before the household's state;
    detect states reach their changelog before the series states do (a crash between the two re-emits readings the
    monitor passes over, never loses one for detection)."""
    from detectors.monitor import HouseholdMonitor
    from streams.detect import DetectStage, DetectTopics, decode_state
    from streams.metrics import DetectMetrics

    broker, metrics = Broker(), DetectMetrics()
    detect = DetectStage(DetectTopics("readings.validated", "anomalies", "tickets.warning", "tickets.feedback",
                                      "tickets.feedback.ack", "households.roster", "readings.deadletter",
                                      "detect-changelog"), broker.send, metrics, Settings(), timezones={},
                         clock=lambda: T0)
    detect.table.partitions = PARTITIONS
    stage = stage_with(broker)
    stage.detect = detect
    households = ["hh-000001", "hh-000002"]
    async def main():
        await stage.run([direct(h, i, offset=i) for i in range(2) for h in households])
        await stage.run([direct(h, i, offset=i) for i in range(2, 4) for h in households])
        assert stage.pending() == len(households)  # opened in the first batch, held through the second
        await stage.checkpoint()
        assert stage.pending() == 0

    asyncio.run(main())
    names = [name for name, *_ in broker.sent]
    assert names.index("detect-changelog") > max(i for i, n in enumerate(names) if n == TOPICS.validated)
    assert max(i for i, n in enumerate(names) if n == "detect-changelog") < names.index(TOPICS.changelog)
    assert metrics.processed._value.get() == 8
    for household in households:
        [(key, record, partition)] = [(k, v, p) for k, v, p in broker.on("detect-changelog") if k == household.encode()]
        offset, state = decode_state(record)
        validated = [i for i, (k, _, _) in enumerate(broker.on(TOPICS.validated)) if k == household.encode()]
        assert offset == validated[-1] and partition == partition_of(household)  # its last reading's offset
        assert HouseholdMonitor.loads(state).readings == 4


def test_the_detect_states_restore_keeps_the_furthest_and_a_revoked_partition_is_dropped():
    from streams.detect import ChangelogTable, encode_state

    table, skipped = ChangelogTable(PARTITIONS), []
    key = b"hh-000001"
    table.restore([(key, encode_state(90, b"ahead")), (key, encode_state(40, b"behind")),
                   (b"hh-000002", encode_state(5, b"x")), (b"hh-000002", None)], lambda: skipped.append(1))
    assert dict(table.data) == {key: encode_state(90, b"ahead")} and skipped == [1]
    table.drop({partition_of("hh-000001")})
    assert len(table) == 0


def test_a_checkpoint_in_slices_stores_each_household_it_began_with_once_and_leaves_later_changes_for_the_next():
    """A checkpoint begun after a batch stores its households a slice at a time while batches go on: each household
    its detect state, then its series state; one changed again after its slice waits for the next checkpoint, one
    changed again before its slice is stored with its newest state (ahead of the checkpoint's offsets: harmless)."""
    from detectors.monitor import HouseholdMonitor
    from streams.detect import DetectStage, DetectTopics, decode_state
    from streams.metrics import DetectMetrics

    broker = Broker()
    detect = DetectStage(DetectTopics("readings.validated", "anomalies", "tickets.warning", "tickets.feedback",
                                      "tickets.feedback.ack", "households.roster", "readings.deadletter",
                                      "detect-changelog"), broker.send, DetectMetrics(), Settings(), timezones={},
                         clock=lambda: T0)
    detect.table.partitions = PARTITIONS
    stage = stage_with(broker)
    stage.detect = detect
    first, second, third = "hh-000001", "hh-000002", "hh-000003"

    def stored() -> list[tuple[str, str]]:  # (which changelog, household) in the order written
        return [("detect" if name == "detect-changelog" else "series", (key.decode() if name == "detect-changelog"
                 else json.loads(key).split("/")[0])) for name, key, _, _ in broker.sent
                if name in ("detect-changelog", TOPICS.changelog)]

    async def main():
        await stage.run([direct(h, 0, offset=0) for h in (first, second, third)])
        stage.begin_checkpoint()
        assert await stage.store_slice(1) is False
        assert stored() == [("detect", first), ("series", first)]
        await stage.run([direct(first, 1, offset=1), direct(third, 1, offset=1)])  # reading goes on
        assert await stage.store_slice(1) is False
        assert await stage.store_slice(None) is True
        assert stored()[2:] == [("detect", second), ("series", second), ("detect", third), ("series", third)]
        assert stage.pending() == 1 and list(detect.opened) == [first]  # its second reading: the next checkpoint's
        await stage.checkpoint()
        assert stored()[6:] == [("detect", first), ("series", first)]

    asyncio.run(main())
    latest = {key.decode(): value for name, key, value, _ in broker.sent if name == "detect-changelog"}
    # the second batch's readings went to readings.validated at offsets 3 (first) and 4 (third): both stored
    assert decode_state(latest[first])[0] == 3 and decode_state(latest[third])[0] == 4
    assert HouseholdMonitor.loads(decode_state(latest[third])[1]).to_state()["series"]["water"][0].startswith(
        (T0 + timedelta(minutes=15)).isoformat()[:16])
