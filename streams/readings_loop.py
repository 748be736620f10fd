"""The readings loop: ingest, then detect, on aiokafka's own consumer group, in batches.

Not faust agents: faust's per-message path (consumer thread hand-off, conductor, channel queues, events, a
``FutureMessage`` per send) cost about 0.45 ms a message a hop on two cores, more than ingest's or detection's
own work (bench/results/throughput.md). Here a batch of ``getmany`` goes straight to the code, the readings ingest
emits go straight to detection (:class:`streams.detect.DetectStage`) in the same batch, and sends go straight to
aiokafka's producer. ``readings.validated`` is still written, for other readers, and not read back.

Ingest has two steps, each with its own guard (named for it in metrics and logs):

- ``ingest-validate`` checks each raw message on its own (no state) and maps a utility's meter id to our
  household id (the roster's enrolments, as of the reading's time). A message keyed by that household id
  already, in the partition that key has, goes straight on to the per-series rules (the direct route);
  any other is re-keyed by household through readings.by-household (so its series state is local).
- ``ingest-normalize`` applies the per-series rules (duplicates, registers) with state per (household, meter).

Per batch (:meth:`IngestStage.run`): every message through its step; what the batch produced (re-keyed and
validated readings, dead letters) acknowledged by the broker; the emitted readings through detection at the
offsets readings.validated gave them. A checkpoint begins every commit interval, sooner when caught up or when
many monitors are held open: it notes the offsets processed so far and the households changed
(:meth:`IngestStage.begin_checkpoint`), and stores them a slice after each batch, so reading goes on
(:meth:`IngestStage.store_slice`): the warnings acknowledged, each household's detect state written once, then
its series states (``<app_id>-ingest-series-state-changelog``, the record format faust's table wrote), all
acknowledged. Once every household is stored, the offsets it noted are committed (a rebalance or a stop stores
everything at once first). A household's state is written once a checkpoint however many readings it had (Kafka
Streams' state stores do the same per commit interval): writing it was most of the worker's work per reading.
Outcomes (``tickets.feedback.ack``) and roster entries, which detection reads too, are handled one at a time after
the detect states so far are stored. A crash anywhere in between repeats readings (duplicates that detection
ignores: not newer than its meter's last), never loses one; a message the restored state has applied (by offset)
is skipped, not judged again.

The consumer group (``<app_id>-readings``) uses the range assignor: with every topic of one partition count, a
worker gets the same partition numbers of each, so a household's direct raw messages, its re-keyed ones, its
outcomes and roster entries meet the one series and detect state that partition holds. On assignment a worker
reads the new partitions' changelogs before it reads their messages (:class:`ReadingsLoop`); on revocation it
finishes the batch in hand, stores the states, commits and drops those states. A bad message never stops the stage: every rejection goes to ``readings.deadletter``, and
a message a step raises on (a bug) is dead-lettered ``processing_error`` by the guard (:mod:`streams.guard`).
A failure of the broker ends the session (nothing of the failed batch committed) and a new one starts from the
committed offsets and the changelog.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiokafka.abc import ConsumerRebalanceListener

from elderwatch.settings import Settings
from schemas.dead_letter import RejectReason
from schemas.routing import RawOrigin, RoutedReading
from streams.batches import BATCH_SIZE, delivered
from streams.guard import AgentGuard, DeadLetters, OutTopic, Source
from streams.ingest import (Duplicate, Emitted, Enrolment, RegisterBaseline, Rejection, SeriesState, accept_reading,
                            parse_raw, resolve)
from streams.ingest.parse import parse_model
from streams.metrics import AgentMetrics, IngestMetrics
from streams.partition_counts import PartitionCounts
from streams.partitioner import KeyPartitioner

log = logging.getLogger(__name__)

#: send(topic, key, value, partition) -> awaitable: awaiting it hands the message over and returns a future
#: that resolves once the broker has it (aiokafka's producer.send)
Send = Callable[[str, bytes | None, bytes, int | None], Awaitable[Awaitable]]


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed message (aiokafka's ConsumerRecord has these fields too)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # ms
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class IngestTopics:
    raw: str
    by_household: str
    validated: str
    deadletter: str
    changelog: str  # the series states'
    # what the detect stage reads besides the readings ingest hands it (None: no detect stage)
    feedback_acks: str | None = None
    roster: str | None = None


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def series_key(household_id: str, meter: str) -> str:
    return f"{household_id}/{meter}"


def changelog_key(key: str) -> bytes:
    """A series state's key on its changelog: JSON text, as faust's table (key type str) wrote it.

    >>> changelog_key("hh-1/water")
    b'"hh-1/water"'
    """
    return json.dumps(key).encode()


def parse_routed(value: bytes | None, key: bytes | None) -> RoutedReading | Rejection:
    """A message of readings.by-household, or why it is not one (never raises for bad input). ingest-validate
    wrote it, so a rejection means something else wrote to the topic.

    >>> parse_routed(b"not json", b"h1").reason.value
    'not_json'
    >>> parse_routed(b'{"form": "interval"}', b"h1").reason.value
    'invalid_field'
    """
    routed = parse_model(RoutedReading, value)
    if isinstance(routed, Rejection):
        return routed
    if routed.reading is None:
        return Rejection(RejectReason.INVALID_FIELD, f"not a RoutedReading: no {routed.form}_reading")
    if key != routed.reading.household_id.encode():  # its series state lives in the key's partition
        return Rejection(RejectReason.INVALID_FIELD, "message key is not the reading's household_id",
                         routed.reading.household_id)
    return routed


class _Batch:
    def __init__(self) -> None:
        self.changed: dict[str, int] = {}  # series key -> its partition (the message's: co-partitioned topics)
        self.sent: list = []
        self.emitted: list = []  # (ValidatedReading, the future of its readings.validated send), for detect


class IngestStage:
    """Ingest's two steps over batches of :class:`Message`, series states in dicts per partition. No consumer here:
    :class:`ReadingsLoop` feeds it from Kafka, tests call :meth:`run` with messages of their own."""

    def __init__(self, topics: IngestTopics, send: Send, metrics: IngestMetrics, settings: Settings, *,
                 clock: Callable[[], datetime], enrolment_reader=None,
                 partition_counts: Callable[[], Awaitable[dict[str, int]]] | None = None,
                 partition_of=None, detect=None,
                 still_in_group: Callable[[], Awaitable[None]] | None = None) -> None:
        """``enrolment_reader`` (a :class:`streams.enrolment.EnrolmentReader`) maps meter ids; without one, every
        reading that names a meter is ``unknown_meter``. ``partition_counts()`` gives the two topics' partition
        counts (the broker's, read once); without it nothing takes the direct route. ``detect`` (a
        :class:`streams.detect.DetectStage`) is given every emitted reading in the same batch.
        ``still_in_group()`` raises if this worker no longer owns its partitions: asked before an outcome or a
        roster entry writes detect states in the middle of a batch."""
        self.topics, self.send, self.metrics, self.settings, self.clock = topics, send, metrics, settings, clock
        self.detect, self.still_in_group = detect, still_in_group
        self._others = {topics.feedback_acks, topics.roster} - {None}
        self.enrolment_reader = enrolment_reader
        self.partition_counts, self.partition_of = partition_counts, partition_of or KeyPartitioner()
        self.limits, self.max_future = settings.ingest_limits(), settings.max_future
        #: partition -> series key -> state: the partitions of readings.by-household this worker holds
        self.series: dict[int, dict[str, SeriesState]] = {}
        self.changed: dict[str, int] = {}  # series key -> its partition: changed since the last checkpoint began
        #: the checkpoint in progress: household -> its series keys to store -> their partition (in order)
        self._round: dict[str, dict[str, int]] = {}
        self.agent_metrics = AgentMetrics.of(metrics.registry)
        self._no_enrolment = Enrolment()
        self._warned: set[str] = set()
        counted = lambda reason: metrics.dead_lettered.labels(reason=reason.value).inc()  # noqa: E731
        deadletter = OutTopic(topics.deadletter, send)
        self.dead_letters = DeadLetters(deadletter, clock, counted)
        # Internal-topic poison was never received from readings.raw: counted apart, so the ingest identity holds.
        self.unreadable = DeadLetters(deadletter, clock, lambda reason: self.agent_metrics.unreadable.labels(
            agent="ingest-normalize").inc())

        def processing_error(source: Source) -> None:  # received, so it must be one of the identity's terms
            counted(RejectReason.PROCESSING_ERROR)

        # processing_error keeps the books (once): the guards' own dead letters are not counted again by reason.
        guard_letters = DeadLetters(deadletter, clock)
        self.validate_guard = AgentGuard("ingest-validate", "ingest.validate", guard_letters, self.agent_metrics,
                                         on_error=processing_error)
        self.normalize_guard = AgentGuard("ingest-normalize", "ingest.normalize", guard_letters, self.agent_metrics,
                                          on_error=processing_error)

    # -- a batch -------------------------------------------------------------------------------
    async def run(self, messages: Iterable[Message]) -> None:
        """Every message through its step; the outputs acknowledged; the emitted readings through detection. The
        states they changed wait for :meth:`checkpoint`. Raises only if the broker fails (then nothing of the batch
        may be committed)."""
        batch = _Batch()
        for message in messages:
            source = Source(message.topic, message.partition, message.offset, message.timestamp)
            if message.topic in self._others:  # an outcome or a roster entry: the detect stage's, after the batch
                await self._finish(batch)
                batch = _Batch()
                if self.still_in_group is not None:
                    await self.still_in_group()
                await self.detect.handle_other(message.value, message.key, source)
                continue
            routed = message.topic == self.topics.by_household
            step, guard = (self._normalize, self.normalize_guard) if routed else (self._validate, self.validate_guard)
            await guard.handle(source, message.value, message.key,
                               lambda value, key, source: step(value, key, source, batch))
        await self._finish(batch)

    async def _finish(self, batch: _Batch) -> None:
        """The batch's outputs acknowledged; its readings through detection, at the offsets readings.validated gave
        them. The series states it changed join those waiting for :meth:`checkpoint`."""
        await delivered(batch.sent)
        if self.detect is not None:
            for reading, sent in batch.emitted:
                await self.detect.apply(reading, sent.result().offset)
        self.changed.update(batch.changed)

    def pending(self) -> int:
        """Households whose monitors are held open until stored (series states are small: not counted)."""
        return len(self.detect.opened) if self.detect is not None else 0

    def begin_checkpoint(self) -> None:
        """Every household changed so far joins the checkpoint in progress (or a new one): :meth:`store_slice` then
        stores them a slice at a time, between batches. A household's state stored later than this includes more
        readings than the checkpoint's offsets need: that is the crash-after-the-states case, which the offsets in
        the states make harmless (read again, skipped)."""
        for key, partition in self.changed.items():
            self._round.setdefault(key.rpartition("/")[0], {})[key] = partition
        self.changed = {}
        if self.detect is not None:
            for household_id in self.detect.opened:
                self._round.setdefault(household_id, {})

    async def store_slice(self, limit: int | None) -> bool:
        """Store up to ``limit`` households of the checkpoint in progress (None: all), each once: their detect states
        (after what their readings raised is acknowledged), then their series states, each acknowledged. True once
        the checkpoint is complete (the loop may then commit the offsets it began at).

        Detect states first: a crash after them and before the series states makes ingest emit those readings
        again, which the monitors pass over (not newer than their meter's last); the other way round the readings
        would never reach detection."""
        households = list(self._round) if limit is None else list(itertools.islice(self._round, limit))
        if self.detect is not None:
            await self.detect.store(households)
        written = []
        for household_id in households:
            for key, partition in self._round.pop(household_id).items():
                self.changed.pop(key, None)  # changed again since the checkpoint began: this writes that too
                state = self.series.get(partition, {}).get(key)
                if state is not None:  # None: its partition was handed over meanwhile
                    written.append(await self.send(self.topics.changelog, changelog_key(key),
                                                   orjson.dumps(state.to_json()), partition))
        await delivered(written)
        return not self._round

    async def checkpoint(self) -> None:
        """Store every state changed since the last checkpoint, each once (:meth:`begin_checkpoint` and
        :meth:`store_slice` of everything at once)."""
        self.begin_checkpoint()
        await self.store_slice(None)

    # -- ingest-validate -----------------------------------------------------------------------
    async def _enrolment(self) -> Enrolment:
        if self.enrolment_reader is None:
            return self._no_enrolment
        await self.enrolment_reader.wait_ready()  # a cold start maps nothing until it knows every enrolment
        return self.enrolment_reader.enrolment

    async def _direct(self, key: bytes | None, household_id: str, source: Source) -> bool:
        """May this raw message skip the re-key hop? Yes when the utility keyed it by our household id and it sits in
        the partition readings.by-household would put it in, with both topics of one partition count (so they are
        co-partitioned: this worker holds the series state's partition). Checked per message: one feed may mix.
        The answer for a message must never change (its series state remembers it per route), so the count is
        read from the broker once, not from a consumer's view that changes with rebalances."""
        if key is None or key != household_id.encode() or self.partition_counts is None:
            return False
        found = await self.partition_counts()
        raw, routed = found.get(self.topics.raw), found.get(self.topics.by_household)
        if not raw or raw != routed:
            self._warn_once("counts", "readings.raw and readings.by-household differ in partition count: every "
                                      "reading is re-keyed (no direct route)")
            return False
        every = range(raw)
        if self.partition_of(key, every, every) != source.partition:
            return False
        if source.partition not in self.series:  # the range assignor gives both topics' partition together
            self._warn_once("assignment", "a raw partition is held without its readings.by-household partition: "
                                          "its readings are re-keyed")
            return False
        return True

    def _warn_once(self, what: str, text: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(text)

    async def _validate(self, value: bytes | None, key: bytes | None, source: Source, batch: _Batch) -> None:
        self.metrics.received.inc()
        result = parse_raw(value, now=self.clock(), max_future=self.max_future)
        if isinstance(result, Rejection):
            return await self.dead_letters.send(value, key, result.reason, result.detail, stage="ingest.validate",
                                                source=source, household_id=result.household_id)
        reading = result.reading
        if reading.meter_id is not None:
            reading = resolve(reading, await self._enrolment())
            if isinstance(reading, Rejection):
                return await self.dead_letters.send(value, key, reading.reason, reading.detail,
                                                    stage="ingest.validate", source=source,
                                                    household_id=reading.household_id)
        self.metrics.reading_in(reading, self.enrolment_reader.enrolment if self.enrolment_reader is not None
                                else None)
        if await self._direct(key, reading.household_id, source):
            self.metrics.route["direct"].inc()
            return await self._apply_series(reading, batch, routed_offset=None, raw=source,
                                            raw_message=lambda: (value, key), partition=source.partition)
        self.metrics.route["rekeyed"].inc()
        routed = RoutedReading(
            form=result.form, **{f"{result.form}_reading": reading},
            origin=RawOrigin(topic=source.topic, partition=source.partition, offset=source.offset,
                             timestamp_ms=source.timestamp_ms, value_b64=_b64(value), key_b64=_b64(key)))
        batch.sent.append(await self.send(self.topics.by_household, reading.household_id.encode(),
                                          routed.model_dump_json(by_alias=True).encode(), None))

    # -- ingest-normalize ----------------------------------------------------------------------
    async def _normalize(self, value: bytes | None, key: bytes | None, source: Source, batch: _Batch) -> None:
        routed = parse_routed(value, key)
        if isinstance(routed, Rejection):
            return await self.unreadable.send(value, key, routed.reason, routed.detail, stage="ingest.normalize",
                                              source=source, household_id=routed.household_id)
        origin = routed.origin
        await self._apply_series(routed.reading, batch, routed_offset=source.offset,
                                 raw=Source(origin.topic, origin.partition, origin.offset, origin.timestamp_ms),
                                 raw_message=lambda: (origin.value(), origin.key()), partition=source.partition)

    async def _apply_series(self, reading, batch: _Batch, *, routed_offset: int | None, raw: Source,
                            raw_message: Callable[[], tuple[bytes | None, bytes | None]], partition: int) -> None:
        """The per-series rules for one reading: from readings.by-household (at ``routed_offset``) or straight from
        readings.raw (``routed_offset`` None). ``raw`` is where the utility's message sits, ``raw_message()`` its bytes,
        ``partition`` the one its series state lives in."""
        key = series_key(reading.household_id, reading.meter.value)
        states = self.series[partition]  # held: the loop passes only messages of partitions it has recovered
        state = states.get(key)
        if state is None:
            state = states[key] = SeriesState()
        # Read again after a crash or rebalance of this stage (same offset) or, re-keyed, of the step before (the
        # raw message sent here again): applied and sent already, so not judged again (it would be too_late).
        if routed_offset is None:
            if state.applied_direct(raw.partition, raw.offset):
                self.metrics.raw_redelivered.inc()
                return
        elif state.applied(routed_offset):
            self.metrics.redelivered.inc()
            return
        elif state.applied_raw(raw.partition, raw.offset):  # received twice, applied once
            self.metrics.raw_redelivered.inc()
            return
        outcome = accept_reading(state, reading, self.limits)
        if routed_offset is None:
            state.note_applied_direct(raw.partition, raw.offset)
        else:
            state.note_applied(routed_offset, raw.partition, raw.offset)
        batch.changed[key] = partition
        if isinstance(outcome, Emitted):
            sent = await self.send(self.topics.validated, reading.household_id.encode(),
                                   outcome.reading.model_dump_json().encode(), None)
            batch.sent.append(sent)
            if self.detect is not None:
                batch.emitted.append((outcome.reading, sent))
            self.metrics.valid.inc()
            self.metrics.emitted.inc()
        elif isinstance(outcome, RegisterBaseline):
            self.metrics.valid.inc()
            self.metrics.register_baselines.labels(reason=outcome.reason).inc()
        elif isinstance(outcome, Duplicate):
            self.metrics.duplicates.inc()
        else:  # rejected by the series rules: the raw message, with its raw coordinates
            value, key = raw_message()
            batch.sent.append(await self.dead_letters.send(
                value, key, outcome.reason, outcome.detail, stage="ingest.normalize", source=raw,
                household_id=outcome.household_id))

    # -- state held ----------------------------------------------------------------------------
    def restore(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Partition ``partition``'s series states from its changelog records ``(key, value)`` in log order, keeping
        per key the record that has read furthest (:meth:`SeriesState.progress`), not the last one written: a worker
        replaced after a pause may write older states when it resumes (streams/recovery.py ``newest_wins``)."""
        found: dict[str, dict] = {}
        for key, value in records:
            try:
                name = json.loads(key) if key else None
            except ValueError:
                name = None
            if not isinstance(name, str):
                self._warn_once("changelog-key", "a series-state changelog record without a readable key: passed over")
                continue
            if value is None:
                found.pop(name, None)
                continue
            data = orjson.loads(value)
            held = found.get(name)
            at, furthest = SeriesState.progress(data), SeriesState.progress(held)
            if at is not None and furthest is not None and at < furthest:
                self.agent_metrics.stale_records.labels(table="ingest-series-state").inc()
                continue
            found[name] = data
        self.series[partition] = {name: SeriesState.from_json(data) for name, data in found.items()}

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.series.pop(partition, None)
        self.changed = {key: p for key, p in self.changed.items() if p in self.series}
        for keys in self._round.values():
            for key in [key for key, p in keys.items() if p not in self.series]:
                del keys[key]


class ReadingsLoop:
    """Runs :class:`IngestStage` (and its detect stage) on its own consumer group and producer, as a task of the faust
    app (:meth:`run`, until cancelled). ``recovered`` is what readiness asks."""

    def __init__(self, settings: Settings, topics: IngestTopics, metrics: IngestMetrics, *,
                 clock: Callable[[], datetime], enrolment_reader=None, batch_size: int = BATCH_SIZE,
                 commit_interval_s: float | None = None, max_pending: int | None = None,
                 checkpoint_slice: int | None = None, detect_factory=None, detect_changelog: str | None = None) -> None:
        """``detect_factory(send)`` makes each session's :class:`streams.detect.DetectStage` (its states are
        recovered from ``detect_changelog``); without one, the loop runs ingest alone. A checkpoint begins every
        ``commit_interval_s``, or sooner once ``max_pending`` states wait, and stores ``checkpoint_slice``
        households after each batch before it commits (defaults: the settings')."""
        self.settings, self.topics, self.metrics, self.clock = settings, topics, metrics, clock
        self.detect_factory, self.detect_changelog = detect_factory, detect_changelog
        self.detect = None  # this session's DetectStage
        self.enrolment_reader, self.batch_size = enrolment_reader, batch_size
        self.commit_interval_s = settings.commit_interval_s if commit_interval_s is None else commit_interval_s
        self.max_pending = settings.max_pending_states if max_pending is None else max_pending
        self.checkpoint_slice = settings.checkpoint_slice if checkpoint_slice is None else checkpoint_slice
        self.group = f"{settings.app_id}-readings"
        self.counts = PartitionCounts(settings.kafka_bootstrap_servers, topics.raw, topics.by_household)
        self.stage: IngestStage | None = None
        self.recovered = False  # this session's assignment has its states: readiness
        self.running = False
        self._lock = asyncio.Lock()  # a batch, or a rebalance's commit and hand-over: never both
        self._held: set = set()  # the TopicPartitions whose messages may be processed
        self._done: dict = {}  # TopicPartition -> next offset: processed, states stored, not yet committed
        self.committed: dict = {}  # TopicPartition -> committed offset (for the lag)
        self._consumer = None
        self._warming: asyncio.Task | None = None
        self._broken = False  # a batch of this session raised: its states may disagree, store nothing more
        self._left = False  # this session's worker was found out of its group: end the session
        self._checkpoint_offsets: dict | None = None  # of the checkpoint in progress: committed once it is stored

    async def run(self) -> None:
        while True:
            try:
                self.running = True
                await self._session()
            except asyncio.CancelledError:
                raise
            except LeftTheGroup:  # said when found out: join again at once, restore everything from the changelog
                self.running = False
            except Exception as exc:  # noqa: BLE001 - the broker failed: start again from what was committed
                # the type only, as everywhere: a message may quote a household's data
                log.error("the readings loop stopped (%s); starting again from the committed offsets",
                          type(exc).__name__)
                self.running = False
                await asyncio.sleep(2.0)
            finally:
                self.running = self.recovered = False

    async def _session(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers, acks="all", linger_ms=s.producer_linger_ms,
            max_batch_size=s.producer_max_batch_size, partitioner=KeyPartitioner(),
            compression_type=None if s.producer_compression == "none" else s.producer_compression)
        session_ms = int(s.consumer_session_timeout_s * 1000)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers, group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=self.batch_size,
            partition_assignment_strategy=(RangePartitionAssignor,), session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(3000, session_ms // 3), rebalance_timeout_ms=session_ms)
        await producer.start()
        try:
            async def send(topic, key, value, partition):
                return await producer.send(topic, value, key=key, partition=partition)

            self.detect = self.detect_factory(send) if self.detect_factory is not None else None
            async def still_in_group() -> None:
                if not await self._still_in_group(consumer):
                    raise LeftTheGroup

            self.stage = IngestStage(self.topics, send, self.metrics, s, clock=self.clock,
                                     enrolment_reader=self.enrolment_reader, partition_counts=self.counts.get,
                                     detect=self.detect, still_in_group=still_in_group)
            self._held, self._done, self.committed, self._broken, self._left = set(), {}, {}, False, False
            self._checkpoint_offsets = None
            topics = [self.topics.raw, self.topics.by_household]
            if self.detect is not None:  # what detection reads besides the readings ingest hands it
                topics += [t for t in (self.topics.feedback_acks, self.topics.roster) if t is not None]
            try:
                await asyncio.to_thread(carry_over_offsets, s.kafka_bootstrap_servers, s.app_id, self.group, topics)
            except Exception as exc:  # noqa: BLE001 - then from the beginning, as a new deployment
                log.warning("could not carry the faust group's offsets over (%s)", type(exc).__name__)
            consumer.subscribe(topics, listener=_Rebalance(self, consumer))
            await consumer.start()
            self._consumer = consumer
            try:
                await self._consume(consumer)
            finally:
                self._consumer = None
                if self._warming is not None:
                    self._warming.cancel()
                try:
                    async with self._lock:
                        await self._commit(consumer)
                finally:
                    await consumer.stop()
        finally:
            await producer.stop()

    async def _consume(self, consumer) -> None:
        last_checkpoint = time.monotonic()
        while True:
            fetched = await consumer.getmany(timeout_ms=500, max_records=self.batch_size)
            async with self._lock:
                if self._left:  # found out of its group (maybe in a rebalance's callback): what it holds is void
                    raise LeftTheGroup
                messages = [Message(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
                            for tp, records in fetched.items() if tp in self._held for r in records]
                if messages:
                    try:
                        await self._unbroken(self.stage.run(messages))
                    finally:
                        if not self._broken:  # finished, maybe while the loop was being stopped
                            for tp, records in fetched.items():
                                if tp in self._held and records:
                                    self._done[tp] = records[-1].offset + 1
                # A checkpoint begins every interval, or sooner when many monitors are held open, or when caught up
                # (nothing came: idle). It stores a slice of its households after each batch, so reading goes on,
                # and commits the offsets it began at once every one is stored.
                if self._checkpoint_offsets is None and self._done and (
                        not fetched or time.monotonic() - last_checkpoint >= self.commit_interval_s
                        or self.stage.pending() >= self.max_pending):
                    self._checkpoint_offsets = dict(self._done)
                    self.stage.begin_checkpoint()
                    last_checkpoint = time.monotonic()
                if self._checkpoint_offsets is not None:
                    # idle, or far too many held open: the rest at once
                    rest = not fetched or self.stage.pending() >= 2 * self.max_pending
                    if await self._store_slice(consumer, None if rest else self.checkpoint_slice):
                        offsets, self._checkpoint_offsets = self._checkpoint_offsets, None
                        await self._commit_offsets(consumer, offsets)

    async def _unbroken(self, work: Awaitable):
        """``work`` (a batch, a checkpoint) to its end, even when the loop is stopped meanwhile (SIGTERM), so the last
        checkpoint stores states that agree with each other; its result. If it raises, they may not (ingest's series
        states ahead of what detection got, detect states taken for writing and not written): the session then
        stores and commits nothing more, and the next one reads it all again from the last commit."""
        task = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            try:
                await task
            except Exception:  # noqa: BLE001 - the stop goes on; what matters is not to store what it left
                self._broken = True
            raise
        except Exception:
            self._broken = True
            raise

    async def _store_slice(self, consumer, limit: int | None) -> bool:
        """Up to ``limit`` households of the checkpoint in progress stored (None: all); True once it is complete.
        Nothing after a batch or a checkpoint that raised, and nothing once this worker is out of its group."""
        if self._broken or not await self._still_in_group(consumer):
            return False
        return await self._unbroken(self.stage.store_slice(limit))

    async def _commit(self, consumer) -> None:
        """Store every changed state (a checkpoint in progress, and what changed since), then commit what was
        processed: before a rebalance and on the way out (call with the lock held)."""
        if self._broken or not self._done:  # nothing processed since the last commit: no state changed either
            return
        done = dict(self._done)
        self.stage.begin_checkpoint()
        if await self._store_slice(consumer, None):
            self._checkpoint_offsets = None
            await self._commit_offsets(consumer, done)

    async def _commit_offsets(self, consumer, done: dict) -> None:
        try:
            await consumer.commit(done)
        except Exception as exc:  # noqa: BLE001 - e.g. a rebalance took the partitions: their new owner re-reads
            log.warning("the readings loop could not commit its offsets (%s): those messages will be read again",
                        type(exc).__name__)
            return
        for tp, offset in done.items():
            self.committed[tp] = offset
            if self._done.get(tp) == offset:
                del self._done[tp]

    async def _still_in_group(self, consumer) -> bool:
        """Does the group still count this worker as the owner of its partitions? Asked before any state is written
        (a checkpoint, an outcome), by committing the offsets committed last once more (the broker refuses a commit
        from a member it has dropped). A worker paused past its session timeout (a frozen VM, SIGSTOP) wakes up holding
        states its partitions' new owner has gone past, from the same committed offsets: stored on the changelog,
        a household's series state from one worker and its detect state from the other would disagree (readings
        skipped by ingest that detection never saw). So a worker out of its group stores nothing, and the session
        ends (:class:`LeftTheGroup`): the next one joins again and restores every state from the changelog."""
        try:
            await consumer.commit({tp: self.committed[tp] for tp in self._held})
            return True
        except Exception as exc:  # noqa: BLE001 - CommitFailedError (dropped), or a broker that cannot say
            log.warning("the readings loop could not confirm its partitions (%s): it stores none of the states it "
                        "holds and starts again from the committed offsets and the changelog", type(exc).__name__)
            self._broken = self._left = True
            return False

    async def on_revoked(self, consumer, revoked) -> None:
        if self._warming is not None:
            self._warming.cancel()
        async with self._lock:  # the batch in hand is finished and stored
            self.recovered = False
            await self._commit(consumer)
            self._held -= set(revoked)
            for tp in revoked:
                self._done.pop(tp, None)
                self.committed.pop(tp, None)
            partitions = {tp.partition for tp in revoked if tp.topic == self.topics.by_household}
            if self.stage is not None:
                self.stage.drop(partitions)
            if self.detect is not None:
                self.detect.table.drop(partitions)
                self.detect.forget_live_monitors()

    async def on_assigned(self, consumer, assigned) -> None:
        async with self._lock:
            if self._left:  # the session is ending: the next one restores
                return
            started = time.monotonic()
            wanted = {tp.partition for tp in assigned if tp.topic == self.topics.by_household}
            new = sorted(wanted - set(self.stage.series))
            bootstrap = self.settings.kafka_bootstrap_servers
            for partition, records in (await read_changelog(bootstrap, self.topics.changelog, new)).items():
                self.stage.restore(partition, records)
            gone = set(self.stage.series) - wanted
            self.stage.drop(gone)
            if self.detect is not None:
                table = self.detect.table
                table.partitions = len(consumer.partitions_for_topic(self.topics.by_household) or ()) or table.partitions
                table.drop(gone)
                stale = self.detect.agent_metrics.stale_records.labels(table="detect-household-state").inc
                for partition, records in (await read_changelog(bootstrap, self.detect_changelog, new)).items():
                    table.restore(records, stale)
                self._warming = asyncio.ensure_future(self._warm(self.detect))
            for tp in assigned:
                if tp not in self.committed:  # nothing committed yet: where auto_offset_reset starts, the log's start
                    committed = await consumer.committed(tp)
                    self.committed[tp] = (committed if committed is not None
                                          else (await consumer.beginning_offsets([tp]))[tp])
            self._held = set(assigned)
            self.recovered = True
            if new:
                log.info("ingest recovered the series states of partitions %s in %.1f s", new,
                         time.monotonic() - started)

    async def _warm(self, detect) -> None:
        """Load the monitors of the households this worker now holds into the detect cache, one at a time between
        batches, so their first readings after a start or a rebalance do not each load a state (~0.5 ms for a
        60-day household). Cancelled at a revocation."""
        started, warmed = time.monotonic(), 0
        for key in list(detect.table.data):
            if not detect.states.cache.has_room():
                break
            try:
                warmed += detect.states.warm(key.decode())
            except Exception as exc:  # noqa: BLE001 - only ahead of time: the household's next reading loads it
                log.warning("could not load a monitor into the cache: %s", type(exc).__name__)
            await asyncio.sleep(0)  # the batches go first
        detect.metrics.cached_monitors.set(len(detect.states.cache))
        if warmed:
            log.info("loaded %d household monitors into the cache in %.1f s", warmed, time.monotonic() - started)

    def recent_usage(self, household_id: str) -> dict | None:
        """The household's recent use from its detect state, if this worker holds it (the staff API's chart)."""
        detect = self.detect
        return detect.states.recent_usage(household_id) if detect is not None else None

    def lag(self) -> dict[str, int]:
        """Per topic: messages of this worker's partitions not yet committed (log end - committed)."""
        lags = {t: 0 for t in (self.topics.raw, self.topics.by_household, self.topics.feedback_acks,
                               self.topics.roster) if t is not None}
        consumer = self._consumer
        if consumer is None:
            return lags
        for tp in list(self._held):
            try:
                end = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - revoked meanwhile
                end = None
            if end is not None:
                lags[tp.topic] = lags.get(tp.topic, 0) + max(0, end - self.committed.get(tp, 0))
        return lags


class LeftTheGroup(Exception):
    """The consumer group no longer counts this worker in (its partitions may have another owner): the session ends
    without storing what it held, and the next one starts from the committed offsets and the changelog."""


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka calls and awaits these two during a rebalance."""

    def __init__(self, loop: ReadingsLoop, consumer) -> None:
        self.loop, self.consumer = loop, consumer

    async def on_partitions_revoked(self, revoked) -> None:
        await self.loop.on_revoked(self.consumer, revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        await self.loop.on_assigned(self.consumer, assigned)


def carry_over_offsets(bootstrap: str, old_group: str, group: str, topics: list[str]) -> dict:
    """Ingest was a faust agent before, committing in the app's group (``old_group``). If ``group`` has committed
    nothing of ``topics`` yet, commit ``old_group``'s offsets of them to it, so a deployment upgraded from it does not
    read all of readings.raw again (that would be right, the series states skip what they applied, but slow).
    Before the consumer joins: the group is empty then (another worker joining at the same moment makes the commit
    fail, and this worker starts from the beginning). Blocks: run it in a thread. Returns what it committed."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    new, old = (KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=name, enable_auto_commit=False)
                for name in (group, old_group))
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in sorted(new.partitions_for_topic(topic) or ())]
        if not tps or any(new.committed(tp) is not None for tp in tps):
            return {}
        carried = {tp: OffsetAndMetadata(offset, "", -1) for tp in tps
                   if (offset := old.committed(tp)) is not None}
        if carried:
            new.commit(carried)
            log.info("ingest starts where faust's group %s stopped: %d partitions", old_group, len(carried))
        return carried
    finally:
        new.close()
        old.close()


async def read_changelog(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, list]:
    """Every record ``(key, value)`` of ``topic``'s ``partitions``, from the beginning to the end they had when asked."""
    if not partitions:
        return {}
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        records: dict[int, list] = {p: [] for p in partitions}
        pending = {tp for tp in tps if ends[tp] > 0}
        if pending:
            await consumer.seek_to_beginning(*pending)
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=10_000)
            for tp, batch in fetched.items():
                records[tp.partition].extend((r.key, r.value) for r in batch if r.offset < ends[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return records
    finally:
        await consumer.stop()


def start_readings_loop(app, topics, metrics: IngestMetrics, settings: Settings, *, clock: Callable[[], datetime],
                        enrolment_reader=None, detect_factory=None) -> ReadingsLoop:
    """A :class:`ReadingsLoop` of ``topics`` (faust topics: their names) run as a task of ``app``;
    ``detect_factory(send, table)`` makes its detect stage."""
    from schemas.tickets import Step
    from streams.detect import DetectTopics
    from streams.tables import DETECT_STATE, SERIES_STATE, changelog_topic

    detect_changelog = changelog_topic(settings.app_id, DETECT_STATE)
    loop = ReadingsLoop(settings, IngestTopics(
        raw=topics.raw.get_topic_name(), by_household=topics.by_household.get_topic_name(),
        validated=topics.validated.get_topic_name(), deadletter=topics.deadletter.get_topic_name(),
        changelog=changelog_topic(settings.app_id, SERIES_STATE),
        feedback_acks=topics.ticket_acks[Step.FEEDBACK].get_topic_name(), roster=topics.roster.get_topic_name()),
        metrics, clock=clock, enrolment_reader=enrolment_reader, detect_changelog=detect_changelog,
        detect_factory=None if detect_factory is None else lambda send: detect_factory(send, DetectTopics(
            validated=topics.validated.get_topic_name(), anomalies=topics.anomalies.get_topic_name(),
            warning_commands=topics.ticket_steps[Step.WARNING].get_topic_name(),
            feedback=topics.ticket_steps[Step.FEEDBACK].get_topic_name(),
            feedback_acks=topics.ticket_acks[Step.FEEDBACK].get_topic_name(), roster=topics.roster.get_topic_name(),
            deadletter=topics.deadletter.get_topic_name(), changelog=detect_changelog)))

    @app.task
    async def readings() -> None:
        await loop.run()

    return loop


__all__ = ["IngestStage", "IngestTopics", "LeftTheGroup", "Message", "ReadingsLoop", "carry_over_offsets", "changelog_key",
           "parse_routed", "read_changelog", "start_readings_loop"]
