"""Stream a readings file into ``readings.raw``, as a utility would.

Canonical CSV rows become interval-reading JSON; DAIAD rows become register-reading JSON.
Messages are keyed by household id (utilities may use any key; ingest does not rely on it).
``--speed`` replays data time: ``1x`` real time, ``60x`` an hour per minute, ``max`` as fast
as the broker takes them. Paced replay sorts by time first, so households interleave as they
would live.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kafka import KafkaProducer
from tqdm import tqdm

from elderwatch.canonical_csv import iter_rows


def parse_speed(text: str) -> float | None:
    """``'max'`` -> None (no pacing); ``'60x'`` or ``'60'`` -> 60.0.

    >>> parse_speed("max"), parse_speed("60x"), parse_speed("1.5")
    (None, 60.0, 1.5)
    """
    text = text.strip().lower()
    if text == "max":
        return None
    factor = float(text.removesuffix("x"))
    if factor <= 0:
        raise ValueError("speed must be positive, e.g. 1x, 60x or max")
    return factor


@dataclass(frozen=True, slots=True)
class Outgoing:
    key: bytes | None
    value: bytes
    ts: datetime | None  # data time, for pacing; None when the row has no readable time


def canonical_messages(path: Path) -> Iterator[Outgoing]:
    for row in iter_rows(path):
        try:
            value: object = float(row["value"])
        except ValueError:
            value = row["value"]  # let ingest reject it with a reason
        message = {"household_id": row["household_id"], "meter": row["meter"], "ts": row["ts"], "value": value}
        yield Outgoing(row["household_id"].encode(), json.dumps(message).encode(), _time_or_none(row["ts"]))


def daiad_messages(path: Path, zone: str) -> Iterator[Outgoing]:
    from elderwatch.importers.daiad import register_messages

    for row, message in register_messages(path, zone):
        ts = _time_or_none(json.loads(message)["ts"]) if message.startswith(b"{") else None
        yield Outgoing(row.household_id.encode() or None, message, ts)


def _time_or_none(text: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo else None


def paced(messages: Iterable[Outgoing], speed: float | None, sleep=time.sleep, monotonic=time.monotonic) -> Iterator[Outgoing]:
    """Yield messages in data-time order, sleeping so data time advances ``speed`` times faster than wall time."""
    if speed is None:
        yield from messages
        return
    ordered = sorted(messages, key=lambda m: (m.ts is None, m.ts.timestamp() if m.ts else 0.0))
    start_wall, start_data = monotonic(), None
    for message in ordered:
        if message.ts is not None:
            start_data = start_data or message.ts
            due = (message.ts - start_data).total_seconds() / speed
            delay = due - (monotonic() - start_wall)
            if delay > 0:
                sleep(delay)
        yield message


def feed(messages: Iterable[Outgoing], *, bootstrap: str, topic: str, speed: float | None = None,
         limit: int | None = None, progress: bool = True, total: int | None = None,
         should_stop: Callable[[], bool] = lambda: False, on_sent: Callable[[int], None] | None = None) -> int:
    """Send messages until done, ``limit`` or ``should_stop()``; returns how many were sent (all
    acknowledged by the broker). ``on_sent(n)`` reports the running count.

    The producer is idempotent and retries until its delivery timeout (kafka-python's defaults, so a retry
    neither repeats nor reorders a message); a message the broker still did not acknowledge raises
    :class:`FeedError` naming how many, never a silent gap in the feed."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=20,
                             compression_type=None)
    sent = 0
    pending: list = []
    failed: list[BaseException] = []

    def settle(futures: list) -> None:
        for future in futures:
            if future.failed():
                failed.append(future.exception)

    bar = tqdm(total=limit or total, unit="msg", disable=not progress, mininterval=0.5)
    try:
        for message in paced(messages, speed):
            if (limit is not None and sent >= limit) or should_stop():
                break
            pending.append(producer.send(topic, key=message.key, value=message.value))
            sent += 1
            bar.update(1)
            if on_sent is not None:
                on_sent(sent)
            if len(pending) >= 10_000:  # bounded memory: what is done is settled
                settle([f for f in pending if f.is_done])
                pending = [f for f in pending if not f.is_done]
        producer.flush()
        settle(pending)
    finally:
        bar.close()
        producer.close()
    if failed:
        raise FeedError(f"{len(failed)} of {sent} messages were not acknowledged by the broker "
                        f"(first: {type(failed[0]).__name__}: {failed[0]})", sent - len(failed))
    return sent


class FeedError(RuntimeError):
    """Some messages of a feed were not acknowledged; ``acknowledged`` says how many were."""

    def __init__(self, message: str, acknowledged: int) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged


_GARBAGE = (
    b'{"household_id": "hh-000001", "meter": "water", "ts": "2026-01-05T07:15:00", "value": 3.2}',  # no offset
    b'{"household_id": "hh-000001", "meter": "gas", "ts": "2026-01-05T07:15:00Z", "value": 3.2}',
    b'{"household_id": "hh-000001", "meter": "water", "ts": "2026-01-05T07:15:00Z", "value": -1}',
    b'{"household_id": "hh-000001", "meter": "water", "ts": "2026-01-05T07:15:00Z", "value": NaN}',
    b'\x00\x01 corrupted frame',
    b'{"household_id": "hh-000001", "meter": "water", "ts": "2026-01-05T07:15',
)


def with_mess(messages: Iterable[Outgoing], *, fraction: float, seed: int = 0) -> Iterator[Outgoing]:
    """Make a clean feed look like a real one: re-send about ``fraction/2`` of the messages and add
    about ``fraction/2`` garbage, so duplicates and dead letters show up in the counts.

    Re-sends keep the household key, as a utility's retry would: an unkeyed copy can overtake its
    household's backlog in a max-speed replay and make days of data look late."""
    import random

    rng = random.Random(seed)
    for message in messages:
        yield message
        roll = rng.random()
        if roll < fraction / 2:
            yield Outgoing(message.key, message.value, message.ts)
        elif roll < fraction:
            yield Outgoing(None, rng.choice(_GARBAGE), message.ts)
