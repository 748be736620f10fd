"""What the batched stages share: the size of a batch and waiting for the broker's acknowledgements.

The readings loop (:mod:`streams.readings_loop`) reads ``getmany`` batches: each state touched is loaded once,
the batches' readings run against it, what they produced is sent and acknowledged by the broker, and then, at
the next checkpoint, each state is written once. A crash before a checkpoint repeats the readings since the last
one (each state keeps the offset it has applied up to, so the repeat is recognised), never loses one.
"""

from __future__ import annotations

#: at most this many messages a batch
BATCH_SIZE = 500


async def delivered(sends: list) -> None:
    """Wait until the broker has acknowledged each of ``sends`` (what awaiting a send returned)."""
    for sent in sends:
        if sent is not None:  # a test double's send may return nothing to wait for
            await sent


__all__ = ["BATCH_SIZE", "delivered"]
