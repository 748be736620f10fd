"""What the batched agents share: the size of a batch and the event a table write belongs to.

Stages read their input in batches (faust's ``stream.take_events(n, within=…)``): each state touched by a
batch is loaded once, the batch's readings run against it, what they produced is sent and acknowledged by
the broker, and then each state is written once. A crash inside a batch repeats its readings (each state
keeps the offset it has applied up to, so the repeat is recognised), never loses one.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

from faust.streams import _current_event

#: at most this many messages a batch, or what arrived within this many seconds (the added latency's bound)
BATCH_SIZE, BATCH_WITHIN_S = 500, 0.02


@contextmanager
def in_hand(event):
    """faust writes a table key to the changelog partition of the event in hand (a context variable), which a
    batch from ``take_events`` leaves unset. Private to faust, as streams/recovery.py's patches are: the
    versions are pinned and checked at start. ``None`` (a test calling a handler directly) changes nothing."""
    if event is None:
        yield
        return
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


async def delivered(sends: list) -> None:
    """Wait until the broker has acknowledged each of ``sends`` (what ``await topic.send(...)`` returned)."""
    for sent in sends:
        if sent is not None:  # a test double's send may return nothing to wait for
            await sent


__all__ = ["BATCH_SIZE", "BATCH_WITHIN_S", "delivered", "in_hand"]
