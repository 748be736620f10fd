"""Faust agents: the ingest stage, one agent (``ingest``) reading readings.raw and readings.by-household.

Two steps, each with its own guard (named for it in metrics and logs):

- ``ingest-validate`` checks each raw message on its own (no state) and maps a utility's meter id to our
  household id (the roster's enrolments, as of the reading's time). A message keyed by that household id
  already, in the partition that key has, goes straight on to the per-series rules (the direct route);
  any other is re-keyed by household through readings.by-household (so its series state is local).
- ``ingest-normalize`` applies the per-series rules (duplicates, registers) with state in a table.

A bad message never stops the agent: every rejection goes to ``readings.deadletter``, and a message a step
raises on (a bug) is dead-lettered ``processing_error`` by the guard (:mod:`streams.guard`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime

import faust
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from elderwatch.settings import Settings
from schemas.dead_letter import RejectReason
from schemas.routing import RawOrigin, RoutedReading
from streams.ingest import (Duplicate, Emitted, Enrolment, RegisterBaseline, Rejection, SeriesState, accept_reading,
                            parse_raw, resolve)
from streams.batches import BATCH_SIZE, BATCH_WITHIN_S, delivered, in_hand
from streams.recovery import newest_wins
from streams.guard import AgentGuard, DeadLetters, Source, raw_bytes
from streams.partition_counts import PartitionCounts
from streams.metrics import AgentMetrics, IngestMetrics

log = logging.getLogger(__name__)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


class _Batch:
    """One batch of ingest: each series' state loaded once, the sends to wait for, the states to write."""

    def __init__(self) -> None:
        self.states: dict[str, SeriesState] = {}
        self.changed: dict[str, object] = {}  # series key -> the (last) event that changed it
        self.sent: list = []
        self.event = None  # the event in hand

    def state(self, series_key: str, table) -> SeriesState:
        if series_key not in self.states:
            self.states[series_key] = SeriesState.from_json(table.get(series_key))
        return self.states[series_key]


def parse_routed(value: bytes | None, key: bytes | None) -> RoutedReading | Rejection:
    """A message of readings.by-household, or why it is not one (never raises for bad input). ingest-validate
    wrote it, so a rejection means something else wrote to the topic.

    >>> parse_routed(b"not json", b"h1").reason.value
    'not_json'
    >>> parse_routed(b'{"form": "interval"}', b"h1").reason.value
    'invalid_field'
    """
    if not value:
        return Rejection(RejectReason.NOT_JSON, "empty message")
    try:
        routed = RoutedReading.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = RejectReason.NOT_JSON if first["type"] == "json_invalid" else RejectReason.INVALID_FIELD
        return Rejection(reason, f"not a RoutedReading: {first['type']} at {'.'.join(map(str, first['loc'])) or 'top level'}")
    if routed.reading is None:
        return Rejection(RejectReason.INVALID_FIELD, f"not a RoutedReading: no {routed.form}_reading")
    if key != routed.reading.household_id.encode():  # its series state lives in the key's partition
        return Rejection(RejectReason.INVALID_FIELD, "message key is not the reading's household_id",
                         routed.reading.household_id)
    return routed


def register_ingest_agents(app: faust.App, topics, series_table: faust.Table, metrics: IngestMetrics,
                           settings: Settings, *, clock: Callable[[], datetime], enrolment_reader=None) -> None:
    """``enrolment_reader`` (a :class:`streams.enrolment.EnrolmentReader`) maps meter ids; without one,
    every reading that names a meter is ``unknown_meter``."""
    limits = settings.ingest_limits()
    no_enrolment = Enrolment()
    agent_metrics = AgentMetrics.of(metrics.registry)
    if hasattr(series_table, "apply_changelog_batch"):  # a faust table (tests may pass a dict)
        newest_wins(series_table, SeriesState.progress,
                    agent_metrics.stale_records.labels(table=series_table.name).inc)

    async def enrolment() -> Enrolment:
        if enrolment_reader is None:
            return no_enrolment
        await enrolment_reader.wait_ready()  # a cold start maps nothing until it knows every enrolment
        return enrolment_reader.enrolment

    def counted(reason: RejectReason) -> None:
        metrics.dead_lettered.labels(reason=reason.value).inc()

    dead_letters = DeadLetters(topics.deadletter, clock, counted)
    # Internal-topic poison was never received from readings.raw: counted apart, so the ingest identity holds.
    unreadable = DeadLetters(topics.deadletter, clock, lambda reason: agent_metrics.unreadable.labels(
        agent="ingest-normalize").inc())

    def processing_error(source: Source) -> None:  # received, so it must be one of the identity's terms
        counted(RejectReason.PROCESSING_ERROR)

    # processing_error keeps the books (once): the guards' own dead letters are not counted again by reason.
    guard_letters = DeadLetters(topics.deadletter, clock)
    validate_guard = AgentGuard("ingest-validate", "ingest.validate", guard_letters, agent_metrics,
                                on_error=processing_error)
    normalize_guard = AgentGuard("ingest-normalize", "ingest.normalize", guard_letters, agent_metrics,
                                 on_error=processing_error)

    raw_name, routed_name = topics.raw.get_topic_name(), topics.by_household.get_topic_name()
    partition_of = app.conf.producer_partitioner or DefaultPartitioner()  # where by_household.send puts a key

    counts = PartitionCounts(settings.kafka_bootstrap_servers, raw_name, routed_name)
    warned = []

    async def direct(key: bytes | None, household_id: str, source: Source) -> bool:
        """May this raw message skip the re-key hop? Yes when the utility keyed it by our household id and it sits in
        the partition readings.by-household would put it in, with both topics of one partition count (so they are
        co-partitioned: this worker owns the series state's partition). Checked per message: one feed may mix.
        The answer for a message must never change (its series state remembers it per route), so the count is
        read from the broker once, not from a consumer's view that changes with rebalances."""
        if key is None or key != household_id.encode():
            return False
        found = await counts.get()
        shared = found[raw_name] if found[raw_name] and found[raw_name] == found[routed_name] else None
        if shared is None:
            if not warned:
                log.warning("readings.raw and readings.by-household differ in partition count: every reading is "
                            "re-keyed (no direct route)")
                warned.append(True)
            return False
        every = range(shared)
        return partition_of(key, every, every) == source.partition

    async def validate(value: bytes | None, key: bytes | None, source: Source, batch: "_Batch") -> None:
        metrics.received.inc()
        result = parse_raw(value, now=clock(), max_future=settings.max_future)
        if isinstance(result, Rejection):
            return await dead_letters.send(value, key, result.reason, result.detail, stage="ingest.validate",
                                           source=source, household_id=result.household_id)
        reading = result.reading
        if reading.meter_id is not None:
            reading = resolve(reading, await enrolment())
            if isinstance(reading, Rejection):
                return await dead_letters.send(value, key, reading.reason, reading.detail, stage="ingest.validate",
                                               source=source, household_id=reading.household_id)
        metrics.reading_in(reading, enrolment_reader.enrolment if enrolment_reader is not None else None)
        if await direct(key, reading.household_id, source):
            metrics.route["direct"].inc()
            return await apply_series(reading, batch, routed_offset=None, raw=source, raw_message=lambda: (value, key))
        metrics.route["rekeyed"].inc()
        routed = RoutedReading(
            form=result.form, **{f"{result.form}_reading": reading},
            origin=RawOrigin(topic=source.topic, partition=source.partition, offset=source.offset,
                             timestamp_ms=source.timestamp_ms, value_b64=_b64(value), key_b64=_b64(key)))
        batch.sent.append(await topics.by_household.send(key=reading.household_id.encode(),
                                                         value=routed.model_dump_json(by_alias=True).encode()))

    async def normalize(value: bytes | None, key: bytes | None, source: Source, batch: "_Batch") -> None:
        routed = parse_routed(value, key)
        if isinstance(routed, Rejection):
            return await unreadable.send(value, key, routed.reason, routed.detail, stage="ingest.normalize",
                                         source=source, household_id=routed.household_id)
        origin = routed.origin
        await apply_series(routed.reading, batch, routed_offset=source.offset,
                           raw=Source(origin.topic, origin.partition, origin.offset, origin.timestamp_ms),
                           raw_message=lambda: (origin.value(), origin.key()))

    async def apply_series(reading, batch: "_Batch", *, routed_offset: int | None, raw: Source,
                           raw_message: Callable[[], tuple[bytes | None, bytes | None]]) -> None:
        """The per-series rules for one reading: from readings.by-household (at ``routed_offset``) or straight from
        readings.raw (``routed_offset`` None). ``raw`` is where the utility's message sits, ``raw_message()`` its bytes."""
        series_key = f"{reading.household_id}/{reading.meter.value}"
        state = batch.state(series_key, series_table)
        # Read again after a crash or rebalance of this stage (same offset) or, re-keyed, of the step before (the
        # raw message sent here again): applied and sent already, so not judged again (it would be too_late).
        if routed_offset is None:
            if state.applied_direct(raw.partition, raw.offset):
                metrics.raw_redelivered.inc()
                return
        elif state.applied(routed_offset):
            metrics.redelivered.inc()
            return
        elif state.applied_raw(raw.partition, raw.offset):  # received twice, applied once
            metrics.raw_redelivered.inc()
            return
        outcome = accept_reading(state, reading, limits)
        if routed_offset is None:
            state.note_applied_direct(raw.partition, raw.offset)
        else:
            state.note_applied(routed_offset, raw.partition, raw.offset)
        batch.changed[series_key] = batch.event  # its changelog partition is the event's (either topic: co-partitioned)
        if isinstance(outcome, Emitted):
            batch.sent.append(await topics.validated.send(key=reading.household_id.encode(),
                                                          value=outcome.reading.model_dump_json().encode()))
            metrics.valid.inc()
            metrics.emitted.inc()
        elif isinstance(outcome, RegisterBaseline):
            metrics.valid.inc()
            metrics.register_baselines.labels(reason=outcome.reason).inc()
        elif isinstance(outcome, Duplicate):
            metrics.duplicates.inc()
        else:  # rejected by the series rules: the raw message, with its raw coordinates
            value, key = raw_message()
            batch.sent.append(await dead_letters.send(
                value, key, outcome.reason, outcome.detail, stage="ingest.normalize", source=raw,
                household_id=outcome.household_id))

    # One agent reads both topics, so a series' state is only ever changed by one batch at a time: a raw message
    # applied directly and a re-keyed one of the same series never interleave across an await.
    inputs = app.topic(raw_name, routed_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")

    @app.agent(inputs, name="ingest")
    async def ingest(stream):
        # In batches: what the batch's messages became (re-keyed and validated readings, dead letters) is
        # acknowledged by the broker before the states that say they were applied are written. A crash in
        # between repeats readings (duplicates that detection ignores: not newer than its meter's last), never
        # loses one; a message the restored state has applied (by offset) is skipped, not judged again. Output
        # and changelog are separate sends of one producer: nothing else orders their arrival.
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            batch = _Batch()
            for event in events:
                batch.event = event
                step, guard = (normalize, normalize_guard) if event.message.topic == routed_name else (
                    validate, validate_guard)
                await guard.handle(event.message, raw_bytes(event.value), raw_bytes(event.key),
                                   lambda value, key, source: step(value, key, source, batch))
            await delivered(batch.sent)
            for series_key, event in batch.changed.items():
                with in_hand(event):
                    series_table[series_key] = batch.states[series_key].to_json()  # reassigned: changelog written

    app.elderwatch_agents = (ingest,)


__all__ = ["parse_routed", "register_ingest_agents"]
