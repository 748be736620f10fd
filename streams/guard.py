"""One guard for every agent: a message that cannot be processed is dead-lettered, never the end of an agent.

Two kinds of failure, one destination (``readings.deadletter``, a :class:`~schemas.dead_letter.DeadLetter`
with the message's original bytes and its topic, partition and offset):

* bad input, which each stage recognises itself and dead-letters with its own reason
  (:meth:`DeadLetters.send`, the one helper every stage uses);
* a bug: an agent raises on one message. :meth:`AgentGuard.handle` catches it, dead-letters the message as
  ``processing_error`` (the detail names the exception type, never its message, which may quote a
  person's readings), counts it in ``elderwatch_agent_errors_total{agent}``, logs the type, where it was
  raised and the message's coordinates, and the agent goes on with the next message.

Without the guard faust logs ``Agent ... crashed`` and restarts the agent, and every household on the worker
waits meanwhile; with it, one household's message is set aside and the others go on. What the handler had
already sent before it raised stays sent (at least once, as everywhere downstream).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from schemas.dead_letter import DeadLetter, RejectReason
from streams.metrics import AgentMetrics

log = logging.getLogger(__name__)


def raw_bytes(value) -> bytes | None:
    """A raw-serialized key or value as bytes (faust may hand over a memoryview or bytearray)."""
    return value if isinstance(value, (bytes, type(None))) else bytes(value)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message was read: what a dead letter and a log line name instead of its content."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None

    @classmethod
    def of(cls, message) -> "Source":
        """From a faust ``Message``."""
        timestamp_ms = int(message.timestamp * 1000) if message.timestamp else None
        return cls(message.topic, message.partition, message.offset, timestamp_ms)

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}@{self.offset}"


class OutTopic:
    """A topic name and a stage's ``send(topic, key, value, partition)`` (the readings loop's producer): what
    :class:`DeadLetters` writes to when the stage is not a faust agent."""

    def __init__(self, name: str, send) -> None:
        self.name, self._send = name, send

    async def send(self, *, key: bytes | None, value: bytes, partition: int | None = None):
        return await self._send(self.name, key, value, partition)


class DeadLetters:
    """Writes dead letters to ``readings.deadletter`` (key: the household id when known, else none).

    ``counted(reason)`` is called for each one sent, so a stage keeps its own counter by reason."""

    def __init__(self, topic, clock: Callable[[], datetime],
                 counted: Callable[[RejectReason], None] | None = None) -> None:
        self.topic, self.clock, self.counted = topic, clock, counted

    async def send(self, value: bytes | None, key: bytes | None, reason: RejectReason, detail: str, *, stage: str,
                   source: Source, household_id: str | None = None):
        """Send the envelope; returns the send's future (await it to know the broker has the envelope)."""
        envelope = DeadLetter.for_message(value, key, reason, detail, stage=stage, topic=source.topic,
                                          partition=source.partition, offset=source.offset, at=self.clock(),
                                          timestamp_ms=source.timestamp_ms, household_id=household_id)
        sent = await self.topic.send(key=household_id.encode() if household_id else None,
                                     value=envelope.model_dump_json().encode())
        if self.counted is not None:
            self.counted(reason)
        # Reason and coordinates only: the payload may describe a person's day.
        log.info("dead-lettered %s: %s", source, reason.value)
        return sent


#: handler(value, key, source): process one message
Handler = Callable[[bytes | None, bytes | None, Source], Awaitable[None]]


class AgentGuard:
    """Runs an agent's handler on each message; a message it raises on is dead-lettered and the agent goes on.

    ``on_error(source)`` lets a stage keep its own books too (e.g. ingest's
    received = valid + duplicates + dead_lettered, which a bug must not break).
    """

    def __init__(self, agent: str, stage: str, dead_letters: DeadLetters, metrics: AgentMetrics, *,
                 on_error: Callable[[Source], None] | None = None) -> None:
        self.agent, self.stage, self.dead_letters, self.metrics = agent, stage, dead_letters, metrics
        self.on_error = on_error

    async def run(self, stream, handler: Handler) -> None:
        """The agent's loop: every event of ``stream`` through :meth:`handle`."""
        async for event in stream.events():
            await self.handle(event.message, raw_bytes(event.value), raw_bytes(event.key), handler)

    async def handle(self, message, value: bytes | None, key: bytes | None, handler: Handler) -> bool:
        """True if ``handler`` processed the message; False if it raised (then the message is dead-lettered).
        ``message``: a faust ``Message``, or the :class:`Source` of one read some other way."""
        source = message if isinstance(message, Source) else Source.of(message)
        try:
            await handler(value, key, source)
            return True
        except Exception as exc:  # noqa: BLE001 - a bug on one message must not stop every household
            await self.failed(exc, value, key, source)
            return False

    async def failed(self, exc: Exception, value: bytes | None, key: bytes | None, source: Source) -> None:
        name = type(exc).__name__
        self.metrics.errors.labels(agent=self.agent).inc()
        # The type and where it was raised, never str(exc): it may quote a household's data.
        log.error("agent %s raised %s (%s) on %s; dead-lettered as processing_error, going on", self.agent, name,
                  _where(exc), source)
        if self.on_error is not None:
            self.on_error(source)
        try:
            await self.dead_letters.send(value, key, RejectReason.PROCESSING_ERROR, f"{self.agent} raised {name}",
                                         stage=self.stage, source=source)
        except Exception as again:  # noqa: BLE001 - the broker refused it too: the log line is what is left
            log.error("agent %s could not dead-letter %s: %s", self.agent, source, type(again).__name__)


def _where(exc: BaseException) -> str:
    """file:line in function of the innermost frame (code, not values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


__all__ = ["AgentGuard", "DeadLetters", "Handler", "OutTopic", "Source", "raw_bytes"]
