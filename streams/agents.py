"""Faust agents: the ingest stage.

``ingest-validate`` checks each raw message on its own (no state), maps a utility's meter id to
our household id (the roster's enrolments, as of the reading's time) and re-keys it by household;
``ingest-normalize`` applies the per-series rules (duplicates, registers) with state in a table.
A bad message never stops an agent: every rejection goes to ``readings.deadletter``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime

import faust

from elderwatch.settings import Settings
from schemas.dead_letter import DeadLetter
from schemas.routing import RawOrigin, RoutedReading
from streams.ingest import (Duplicate, Emitted, Enrolment, RegisterBaseline, Rejection, SeriesState, accept_reading,
                            parse_raw, resolve)
from streams.metrics import IngestMetrics

log = logging.getLogger(__name__)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def register_ingest_agents(app: faust.App, topics, series_table: faust.Table, metrics: IngestMetrics,
                           settings: Settings, *, clock: Callable[[], datetime], enrolment_reader=None) -> None:
    """``enrolment_reader`` (a :class:`streams.enrolment.EnrolmentReader`) maps meter ids; without one,
    every reading that names a meter is ``unknown_meter``."""
    limits = settings.ingest_limits()
    no_enrolment = Enrolment()

    async def enrolment() -> Enrolment:
        if enrolment_reader is None:
            return no_enrolment
        await enrolment_reader.wait_ready()  # a cold start maps nothing until it knows every enrolment
        return enrolment_reader.enrolment

    async def dead_letter(value: bytes | None, key: bytes | None, rejection: Rejection, *, stage: str,
                          topic: str, partition: int, offset: int, timestamp_ms: int | None) -> None:
        envelope = DeadLetter.for_message(
            value, key, rejection.reason, rejection.detail, stage=stage, topic=topic, partition=partition,
            offset=offset, at=clock(), timestamp_ms=timestamp_ms, household_id=rejection.household_id)
        hh_key = rejection.household_id.encode() if rejection.household_id else None
        await topics.deadletter.send(key=hh_key, value=envelope.model_dump_json().encode())
        metrics.dead_lettered.labels(reason=rejection.reason.value).inc()
        # Reason and coordinates only: the payload may describe a person's day.
        log.info("dead-lettered %s:%s@%s: %s", topic, partition, offset, rejection.reason.value)

    @app.agent(topics.raw, name="ingest-validate")
    async def ingest_validate(stream):
        async for event in stream.events():
            message = event.message
            metrics.received.inc()
            value = event.value if isinstance(event.value, (bytes, type(None))) else bytes(event.value)
            timestamp_ms = int(message.timestamp * 1000) if message.timestamp else None
            result = parse_raw(value, now=clock(), max_future=settings.max_future)
            if isinstance(result, Rejection):
                await dead_letter(value, event.key, result, stage="ingest.validate", topic=message.topic,
                                  partition=message.partition, offset=message.offset, timestamp_ms=timestamp_ms)
                continue
            reading = result.reading
            if reading.meter_id is not None:
                reading = resolve(reading, await enrolment())
                if isinstance(reading, Rejection):
                    await dead_letter(value, event.key, reading, stage="ingest.validate", topic=message.topic,
                                      partition=message.partition, offset=message.offset, timestamp_ms=timestamp_ms)
                    continue
            routed = RoutedReading(
                form=result.form, **{f"{result.form}_reading": reading},
                origin=RawOrigin(topic=message.topic, partition=message.partition, offset=message.offset,
                                 timestamp_ms=timestamp_ms, value_b64=_b64(value), key_b64=_b64(event.key)))
            await topics.by_household.send(key=reading.household_id.encode(),
                                           value=routed.model_dump_json(by_alias=True).encode())

    @app.agent(topics.by_household, name="ingest-normalize")
    async def ingest_normalize(stream):
        async for event in stream.events():
            routed = RoutedReading.model_validate_json(event.value)
            reading = routed.reading
            series_key = f"{reading.household_id}/{reading.meter.value}"
            state = SeriesState.from_json(series_table.get(series_key))
            before = state.to_json()
            outcome = accept_reading(state, reading, limits)
            after = state.to_json()
            if after != before:
                series_table[series_key] = after  # reassigned, so the changelog is written
            if isinstance(outcome, Emitted):
                await topics.validated.send(key=reading.household_id.encode(),
                                            value=outcome.reading.model_dump_json().encode())
                metrics.valid.inc()
                metrics.emitted.inc()
            elif isinstance(outcome, RegisterBaseline):
                metrics.valid.inc()
                metrics.register_baselines.labels(reason=outcome.reason).inc()
            elif isinstance(outcome, Duplicate):
                metrics.duplicates.inc()
            else:
                origin = routed.origin
                await dead_letter(origin.value(), origin.key(), outcome, stage="ingest.normalize",
                                  topic=origin.topic, partition=origin.partition, offset=origin.offset,
                                  timestamp_ms=origin.timestamp_ms)

    app.elderwatch_agents = (ingest_validate, ingest_normalize)


__all__ = ["register_ingest_agents"]
