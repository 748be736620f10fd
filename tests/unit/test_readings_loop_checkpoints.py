"""When the readings loop stores its states and commits: every commit interval, sooner when it has caught up (a fetch
came back empty) or holds many households open, and never commits an offset before a checkpoint stored the states
behind it. A stop lets the batch in hand finish; after a batch that raised, nothing more is stored. Driven with a
consumer and a stage of our own: no broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from elderwatch.settings import Settings
from streams.metrics import IngestMetrics
from streams.readings_loop import IngestStage, IngestTopics, LeftTheGroup, Message, ReadingsLoop

TOPICS = IngestTopics("readings.raw", "readings.by-household", "readings.validated", "readings.deadletter",
                      "series-changelog")
RAW = TopicPartition("readings.raw", 0)


class Stop(Exception):
    """The scripted fetches are used up."""


class Consumer:
    """Gives the scripted fetches (``None``: an empty one), records each commit with what was stored before it, and
    counts apart the loop's membership checks (the offsets committed last, committed again). ``dropped``: the group
    no longer counts this worker in, so every commit is refused as the broker refuses it."""

    def __init__(self, fetches: list, stage: "Stage", *, dropped: bool = False) -> None:
        self.fetches, self.stage, self.commits, self.dropped = list(fetches), stage, [], dropped
        self.last, self.checks = {RAW: 0}, []

    async def getmany(self, timeout_ms, max_records):
        if not self.fetches:
            raise Stop
        offsets = self.fetches.pop(0)
        if offsets is None:
            return {}
        return {RAW: [SimpleNamespace(topic=RAW.topic, partition=0, offset=o, timestamp=0, key=b"h", value=b"{}")
                      for o in offsets]}

    async def commit(self, offsets):
        if self.dropped:
            raise CommitFailedError("the group has already rebalanced")
        if offsets == self.last:
            self.checks.append(self.stage.stored)
            return
        self.commits.append((dict(offsets), self.stage.stored))
        self.last = dict(offsets)


class Stage:
    """Counts readings held open (one household each), those a checkpoint in progress has still to store, how many
    were stored, and the checkpoints completed."""

    def __init__(self) -> None:
        self.open, self.to_store, self.stored, self.checkpoints, self.slices = 0, 0, 0, 0, []

    async def run(self, messages):
        self.open += len(messages)

    def pending(self) -> int:
        return self.open + self.to_store

    def begin_checkpoint(self):
        self.to_store += self.open
        self.open = 0

    async def store_slice(self, limit):
        n = self.to_store if limit is None else min(limit, self.to_store)
        self.slices.append(n)
        self.stored += n
        self.to_store -= n
        if not self.to_store:
            self.checkpoints += 1
        return not self.to_store

    def drop(self, partitions):
        self.open = self.to_store = 0


def consume(fetches: list, *, interval: float, max_pending: int = 1000,
            checkpoint_slice: int = 1000) -> tuple[Consumer, Stage]:
    loop = ReadingsLoop(Settings(), TOPICS, IngestMetrics(), clock=lambda: None, commit_interval_s=interval,
                        max_pending=max_pending, checkpoint_slice=checkpoint_slice)
    stage = loop.stage = Stage()
    consumer = Consumer(fetches, stage)
    loop._held, loop.committed = {RAW}, {RAW: 0}
    with pytest.raises(Stop):
        asyncio.run(loop._consume(consumer))
    return consumer, stage


def test_busy_batches_wait_for_the_interval_and_an_empty_fetch_checkpoints_at_once():
    consumer, stage = consume([[0, 1], [2, 3], [4], None, None], interval=3600)
    # three busy batches, no commit; caught up: stored, then committed up to the last offset; nothing new after
    assert consumer.commits == [({RAW: 5}, 5)]
    assert stage.checkpoints == 1
    assert consumer.checks == [0]  # the group was asked before anything was stored


def test_many_households_open_checkpoint_before_the_interval():
    consumer, _ = consume([[0, 1, 2], [3, 4, 5], [6]], interval=3600, max_pending=4)
    assert consumer.commits == [({RAW: 6}, 6)]  # the second batch reached 4 open: stored and committed


def test_the_interval_alone_checkpoints_a_stream_that_never_pauses():
    consumer, _ = consume([[0], [1], [2]], interval=0.0)
    assert [offsets for offsets, _ in consumer.commits] == [{RAW: 1}, {RAW: 2}, {RAW: 3}]
    assert all(stored == offsets[RAW] for offsets, stored in consumer.commits)  # each offset's states stored first


def test_a_checkpoint_stores_a_slice_after_each_batch_and_commits_its_offsets_once_all_are_stored():
    consumer, stage = consume([[0, 1, 2, 3, 4], [5], [6]], interval=3600, max_pending=5, checkpoint_slice=2)
    # begun after the first batch (5 open) with its offsets; reading went on between the slices
    assert stage.slices == [2, 2, 1]
    assert consumer.commits == [({RAW: 5}, 5)]  # not 7: the readings of the later batches wait for the next one
    assert len(consumer.checks) == 3  # the group asked before each slice


def test_caught_up_a_checkpoint_in_progress_stores_the_rest_at_once():
    consumer, stage = consume([[0, 1, 2, 3, 4], None], interval=3600, max_pending=5, checkpoint_slice=2)
    assert stage.slices == [2, 3] and consumer.commits == [({RAW: 5}, 5)]


def test_far_too_many_open_a_checkpoint_in_progress_stores_the_rest_at_once():
    consumer, stage = consume([[0, 1, 2], [3, 4, 5, 6]], interval=3600, max_pending=3, checkpoint_slice=1)
    # after the second batch 2 + 4 wait, twice max_pending: everything is stored (the new ones join the next one)
    assert stage.slices == [1, 2] and consumer.commits == [({RAW: 3}, 3)]
    assert stage.open == 4


def loop_with(stage) -> ReadingsLoop:
    loop = ReadingsLoop(Settings(), TOPICS, IngestMetrics(), clock=lambda: None, commit_interval_s=3600)
    loop.stage, loop._held, loop.committed = stage, {RAW}, {RAW: 0}
    return loop


class SlowStage(Stage):
    """A batch that takes a while (awaiting the broker's acknowledgements), then ends or raises."""

    def __init__(self, fails: bool = False) -> None:
        super().__init__()
        self.started, self.fails = asyncio.Event(), fails

    async def run(self, messages):
        self.started.set()
        for _ in range(20):
            await asyncio.sleep(0)
        if self.fails:
            raise ConnectionError("the broker went away mid-batch")
        await super().run(messages)


def test_a_stop_in_the_middle_of_a_batch_lets_it_finish_and_the_last_commit_covers_it():
    stage = SlowStage()
    loop = loop_with(stage)
    consumer = Consumer([[0, 1, 2]], stage)

    async def main():
        running = asyncio.ensure_future(loop._consume(consumer))
        await stage.started.wait()
        running.cancel()  # SIGTERM: faust cancels the loop's task
        with pytest.raises(asyncio.CancelledError):
            await running
        await loop._commit(consumer)  # what the session does on its way out

    asyncio.run(main())
    assert consumer.commits == [({RAW: 3}, 3)]  # the batch ran to its end, was stored, then committed


def test_after_a_batch_that_raised_nothing_is_stored_or_committed():
    stage = SlowStage(fails=True)
    loop = loop_with(stage)
    consumer = Consumer([[0, 1, 2]], stage)
    with pytest.raises(ConnectionError):
        asyncio.run(loop._consume(consumer))
    asyncio.run(loop._commit(consumer))
    assert stage.checkpoints == 0 and consumer.commits == []  # the next session reads it all again


def test_after_a_checkpoint_that_raised_nothing_is_committed():
    class FailingCheckpoint(Stage):
        async def store_slice(self, limit):
            self.checkpoints += 1
            raise ConnectionError("the broker went away while the states were written")

    stage = FailingCheckpoint()
    loop = loop_with(stage)
    consumer = Consumer([[0, 1], None], stage)
    with pytest.raises(ConnectionError):
        asyncio.run(loop._consume(consumer))  # caught up: the checkpoint fails
    asyncio.run(loop._commit(consumer))  # the session's way out
    assert stage.checkpoints == 1 and consumer.commits == []


def test_a_worker_out_of_its_group_stores_nothing_and_ends_its_session():
    # Paused past its session timeout: its partitions went to another worker, which started again from the same
    # committed offsets. What this one holds must not reach the changelog beside what the other writes.
    stage = Stage()
    loop = loop_with(stage)
    consumer = Consumer([[0, 1], None, [2]], stage, dropped=True)
    with pytest.raises(LeftTheGroup):
        asyncio.run(loop._consume(consumer))
    asyncio.run(loop._commit(consumer))  # the session's way out
    assert stage.checkpoints == 0 and consumer.commits == []
    assert stage.pending() == 2 and not consumer.fetches  # the batch fetched after the refusal was not processed


def test_found_out_in_a_rebalance_the_states_are_dropped_unstored_and_the_session_ends():
    stage = Stage()
    loop = loop_with(stage)
    consumer = Consumer([[0, 1], [2]], stage)

    async def main():
        await loop._consume(consumer)  # raises Stop once the two fetches are used: no checkpoint due (interval)

    with pytest.raises(Stop):
        asyncio.run(main())
    assert stage.open == 3
    consumer.dropped = True  # meanwhile the group dropped it; rejoining, aiokafka revokes what it held
    asyncio.run(loop.on_revoked(consumer, {RAW}))
    assert stage.checkpoints == 0 and stage.stored == 0 and consumer.commits == []
    consumer.fetches = [[3]]
    with pytest.raises(LeftTheGroup):
        asyncio.run(loop._consume(consumer))
    assert stage.open == 0  # the batch at offset 3 was not processed


def test_an_outcome_in_a_batch_asks_the_group_before_detection_writes_states():
    handled = []

    class Detect:
        opened: dict = {}

        async def handle_other(self, value, key, source):
            handled.append(source.offset)

    async def dropped():
        raise LeftTheGroup

    topics = IngestTopics("readings.raw", "readings.by-household", "readings.validated", "readings.deadletter",
                          "series-changelog", feedback_acks="tickets.feedback.ack")
    outcome = Message("tickets.feedback.ack", 0, 7, 0, b"h", b"{}")
    stage = IngestStage(topics, None, IngestMetrics(), Settings(), clock=lambda: None, detect=Detect(),
                        still_in_group=dropped)
    with pytest.raises(LeftTheGroup):
        asyncio.run(stage.run([outcome]))
    assert handled == []
    stage.still_in_group = None
    asyncio.run(stage.run([outcome]))
    assert handled == [7]
