"""Partition counts from the broker's metadata, read once per worker.

faust offers ``consumer.topic_partitions(topic)``, but it reads aiokafka's group metadata snapshot, which only
the group's leader keeps: on every other worker it is empty. Decisions that must come out the same on every
worker and across rebalances (which route a raw message takes, which households a worker holds) ask the
broker instead.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


def read_partition_counts(bootstrap: str, topics: tuple[str, ...]) -> dict[str, int]:
    """Topic -> its partition count (0: no such topic). Blocks: run it in a thread."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
    try:
        return {topic: len(consumer.partitions_for_topic(topic) or ()) for topic in topics}
    finally:
        consumer.close()


class PartitionCounts:
    """The counts of ``topics``, read from the broker at first use and then kept for the process's life (a topic's
    count is fixed when it is created); retried while the broker does not answer."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self._counts: dict[str, int] | None = None

    async def get(self) -> dict[str, int]:
        while self._counts is None:
            try:
                self._counts = await asyncio.to_thread(read_partition_counts, self.bootstrap, self.topics)
            except Exception as exc:  # the broker answers the consumer: try again
                log.warning("partition counts unavailable (%s); trying again", type(exc).__name__)
                await asyncio.sleep(1.0)
        return self._counts
