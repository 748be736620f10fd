"""The partition of a keyed message, as aiokafka's default partitioner (and Kafka's Java clients) choose it, remembered
per key.

aiokafka's ``DefaultPartitioner`` hashes the key with murmur2 written in Python: ~10 µs a key, paid for every
reading sent to ``readings.validated``, every direct-route check and every state stored, each time for one of the
same few thousand household ids (4.6 % of the worker's samples in a throughput run). The same answers, cached.
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import DefaultPartitioner, murmur2

#: keys remembered: a worker's households at a time, give or take (an evicted key is only hashed again)
CACHED_KEYS = 1 << 17


@functools.lru_cache(maxsize=CACHED_KEYS)
def _index(key: bytes, count: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % count


class KeyPartitioner:
    """aiokafka's ``DefaultPartitioner`` with the hash of each key remembered (a message without a key: a random
    partition, as there). Give it to the producer as its ``partitioner``.

    >>> keys = [f"hh-{i:06d}".encode() for i in range(40)]
    >>> all((KeyPartitioner()(k, every, every), KeyPartitioner()(k, every, every)) == (DefaultPartitioner()(k, every,
    ...      every),) * 2 for k in keys for every in (list(range(4)), list(range(3))))  # the count is in the cache key
    True
    """

    def __call__(self, key: bytes | None, all_partitions, available):
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        return all_partitions[_index(key, len(all_partitions))]


__all__ = ["CACHED_KEYS", "KeyPartitioner"]
