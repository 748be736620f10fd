"""Reading whole topics once, for the commands and tests that look back (``elderwatch tickets audit``,
``elderwatch roster show|export``, the demo): kafka-python, no consumer group, nothing committed.

Kept out of ``dispatch/`` (pure: the audit's rules have no I/O) and out of the Faust app.
"""

from __future__ import annotations

from collections.abc import Sequence

from dispatch.audit import parse_ack
from schemas.tickets import TicketAck
from streams.topics import TICKET_ACKS, full_name


def read_acks(bootstrap: str, topic_prefix: str = "", *, timeout_s: float = 30.0) -> tuple[list[TicketAck], list[str]]:
    """Every ack on the four ``.ack`` topics, from the beginning to their end now; and one line per
    message that is not a TicketAck (``topic[partition]@offset``)."""
    acks, unreadable = [], []
    for record in read_to_end(bootstrap, [full_name(spec, topic_prefix) for spec in TICKET_ACKS], timeout_s=timeout_s):
        ack = parse_ack(record.value)
        if ack is None:
            unreadable.append(f"{record.topic}[{record.partition}]@{record.offset}: not a TicketAck")
        else:
            acks.append(ack)
    return acks, unreadable


def read_to_end(bootstrap: str, topics: Sequence[str], *, timeout_s: float = 30.0) -> list:
    """Every record of ``topics`` from the beginning up to their end offsets at the time of the call
    (kafka-python ``ConsumerRecord``\\ s, in partition order). No consumer group, nothing committed. A topic
    that does not exist reads as empty. Raises ``TimeoutError`` if the end is not reached in ``timeout_s``."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic))]
        if not partitions:
            return []
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        consumer.seek_to_beginning(*partitions)
        records = []
        deadline = time.monotonic() + timeout_s
        while True:
            behind = [tp for tp in partitions if consumer.position(tp) < end[tp]]
            if not behind:
                return records
            if time.monotonic() > deadline:
                raise TimeoutError("not at the end after %.0f s: %s" % (timeout_s, ", ".join(
                    f"{tp.topic}[{tp.partition}] at {consumer.position(tp)} of {end[tp]}" for tp in behind)))
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend(r for r in batch if r.offset < end[tp])  # later arrivals: not in this snapshot
    finally:
        consumer.close()


__all__ = ["read_acks", "read_to_end"]
