"""Every worker's copy of the meter enrolments: the whole ``households.roster`` topic, followed.

``readings.raw`` is not keyed by household, so any worker may get a reading that names a utility's
meter, and must know every enrolment, not only those of the households whose partitions it owns.
:class:`EnrolmentReader` reads the compacted roster topic from the beginning with its own
aiokafka consumer (every partition assigned by hand, no consumer group, nothing committed) and
keeps following it, applying each record (and tombstone) to a :class:`~streams.ingest.enrolment.Enrolment`.

It is **ready** once it has read up to the end offsets it saw when it started; the ingest agent
and the HTTP door wait for that before they map a meter, so a cold start does not dead-letter the
readings of meters it has not loaded yet. Readings that name our household id never wait.

Not faust's GlobalTable: its record of keeping every worker's copy complete is poor (GlobalTables
missing records across workers, robinhood/faust#716, #541; standby records dropped after recovery,
faust-streaming/faust#212), and this project already replaces faust's recovery for its tables
(streams/recovery.py). A plain consumer is a few lines and does exactly this one thing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import ValidationError

from schemas.households import Household
from streams.ingest.enrolment import Enrolment

log = logging.getLogger(__name__)


class EnrolmentReader:
    """Follows ``topic`` (the roster) into :attr:`enrolment`; :meth:`run` until cancelled."""

    def __init__(self, bootstrap: str, topic: str, enrolment: Enrolment | None = None, *,
                 on_change: Callable[[Enrolment], None] | None = None, retry_s: float = 2.0) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.enrolment = enrolment if enrolment is not None else Enrolment()
        self.on_change = on_change
        self.retry_s = retry_s
        self.records = 0
        self._ready: asyncio.Event | None = None

    @property
    def ready(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    def is_ready(self) -> bool:
        return self._ready is not None and self._ready.is_set()

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """True once caught up (at once if already), False if ``timeout`` seconds pass first."""
        if self.is_ready():
            return True
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def apply(self, key: bytes | None, value: bytes | None, *, into: Enrolment | None = None) -> None:
        """One roster record. A record that is not a Household is skipped, as the ticket stage skips it."""
        target = self.enrolment if into is None else into
        if key is None:
            return
        household_id = key.decode(errors="replace")
        if not value:
            target.put(household_id, None)
        else:
            try:
                household = Household.model_validate_json(value)
            except ValidationError:
                log.warning("households.roster record for a household is not a Household: skipped")
                return
            target.put(household_id, household)
        self.records += 1
        if self.on_change is not None and target is self.enrolment:
            self.on_change(self.enrolment)

    async def run(self) -> None:
        """Read and follow the topic until cancelled; a broker error restarts the consumer (the
        enrolment is rebuilt from the beginning: records are whole entries, so replaying is harmless)."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken consumer must not end enrolment for good
                log.warning("enrolment reader: %s: %s; again in %.0f s", type(exc).__name__, exc, self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id="elderwatch-enrolment")
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            # After a restart the enrolment in use stays in use until a new one has caught up.
            target = self.enrolment if not self.is_ready() else Enrolment()
            caught_up = False
            while True:
                if not caught_up and await self._at(consumer, end):
                    caught_up = True
                    self.enrolment = target
                    self.ready.set()
                    if self.on_change is not None:
                        self.on_change(self.enrolment)
                    log.info("enrolment reader: caught up (%d roster records, %d meters)", self.records, len(target))
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    for record in batch:
                        self.apply(record.key, record.value, into=target)
        finally:
            await consumer.stop()

    @staticmethod
    async def _at(consumer, end: dict) -> bool:
        for tp, offset in end.items():
            if await consumer.position(tp) < offset:
                return False
        return True

    async def _partitions(self, consumer) -> set[int]:
        # A consumer without a subscription keeps no metadata of the topic (partitions_for_topic is None
        # until it is assigned): ask the cluster (aiokafka's client, pinned with faust).
        for _ in range(60):
            cluster = await consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.topic)
            if partitions:
                return set(partitions)
            await asyncio.sleep(0.5)
        raise RuntimeError(f"topic {self.topic} has no partitions (not created?)")


def start_enrolment_reader(app, settings, metrics) -> EnrolmentReader:
    """An :class:`EnrolmentReader` of the roster topic that runs as a task of ``app`` on every worker,
    with its gauges (``elderwatch_ingest_enrolled_meters``, ``elderwatch_ingest_enrolment_ready``)."""
    from streams.topics import HOUSEHOLDS_ROSTER, full_name

    def on_change(enrolment: Enrolment) -> None:
        metrics.enrolled_meters.set(len(enrolment))
        metrics.enrolment_ready.set(1 if reader.is_ready() else 0)

    reader = EnrolmentReader(settings.kafka_bootstrap_servers, full_name(HOUSEHOLDS_ROSTER, settings.topic_prefix),
                             on_change=on_change)

    @app.task
    async def enrolment_reader() -> None:
        await reader.run()

    return reader


__all__ = ["EnrolmentReader", "start_enrolment_reader"]
