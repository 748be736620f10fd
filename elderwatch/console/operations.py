"""What an operator sees: dead letters, consumer lag, the broker and the worker's agents.

Each read opens a short-lived aiokafka client, bounded by a timeout, and closes it; a failure is
shown on the page as "unavailable" with the error's type (the page itself always renders: an
operator looks at it precisely when something is wrong).

* **Dead letters** (``readings.deadletter``), newest first, paged: the envelope's time, stage,
  reason, detail and household id. Never the original bytes (``original_value_b64``): they may
  hold a household's data, and the detail already says what was wrong with them. Page ``p`` reads
  the last ``(p + 1) × size`` records of every partition, which hold the newest ``(p + 1) × size``
  overall, and merges them by time; pages are capped at :data:`MAX_PAGES`.
* **Consumer lag** per consumer group and topic: end offsets minus the group's committed offsets,
  for the worker's groups and its replays' (``<app_id>``, ingest's ``<app_id>-readings``, and ``<app_id>-replay-*``).
* **Broker**: how long a metadata request takes, or why it failed.
* **Agents**: the worker's faust agents, whether each runs and how many of its actors crashed.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pydantic import ValidationError

from schemas.dead_letter import DeadLetter

#: Highest page number of the dead-letter list (each page reads ``(page + 1) × size`` per partition).
MAX_PAGES = 40
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DeadLetterRow:
    at: datetime | None
    stage: str
    reason: str
    detail: str
    household_id: str | None
    partition: int
    offset: int


@dataclass
class DeadLetterPage:
    rows: list[DeadLetterRow] = field(default_factory=list)
    page: int = 0
    size: int = 25
    total: int = 0
    error: str | None = None

    @property
    def pages(self) -> int:
        return min(MAX_PAGES, max(1, -(-self.total // self.size)))


@dataclass(frozen=True)
class LagRow:
    group: str
    topic: str
    partitions: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


@dataclass
class LagReport:
    rows: list[LagRow] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class BrokerCheck:
    reachable: bool
    millis: float | None = None
    brokers: int = 0
    error: str | None = None


@dataclass(frozen=True)
class AgentHealth:
    name: str
    state: str
    actors: int
    crashed: int

    @property
    def healthy(self) -> bool:
        return self.state == "running" and self.actors > 0 and self.crashed == 0


def console_consumer(bootstrap: str, *topics: str):
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None,
                            client_id="elderwatch-console", request_timeout_ms=int(TIMEOUT_S * 1000),
                            auto_offset_reset="earliest")


async def assigned(consumer, deadline: float, settle_s: float = 2.0) -> list:
    """Start a consumer made with topics and no group (it takes all their partitions once it has their
    metadata); the partitions, or none if the topics do not exist (yet)."""
    await asyncio.wait_for(consumer.start(), _left(deadline))
    until = min(deadline, time.monotonic() + settle_s)
    while not consumer.assignment() and time.monotonic() < until:
        await asyncio.sleep(0.05)
    return sorted(consumer.assignment())


def dead_letter_row(value: bytes | None, partition: int, offset: int, timestamp_ms: int | None) -> DeadLetterRow:
    """One record as a row; a record that is not an envelope says so (and still shows nothing of itself)."""
    try:
        letter = DeadLetter.model_validate_json(value or b"")
    except ValidationError:
        at = datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc) if timestamp_ms else None
        return DeadLetterRow(at=at, stage="?", reason="unreadable", detail="not a dead-letter envelope",
                             household_id=None, partition=partition, offset=offset)
    return DeadLetterRow(at=letter.dead_lettered_at, stage=letter.stage, reason=letter.reason.value,
                         detail=letter.detail, household_id=letter.household_id, partition=partition, offset=offset)


async def dead_letter_page(bootstrap: str, topic: str, page: int, *, size: int = 25,
                           timeout: float = TIMEOUT_S) -> DeadLetterPage:
    page = min(max(page, 0), MAX_PAGES - 1)
    result = DeadLetterPage(page=page, size=size)
    consumer = console_consumer(bootstrap, topic)
    deadline = time.monotonic() + timeout
    try:
        tps = await assigned(consumer, deadline)
        if not tps:
            return result
        begin = await asyncio.wait_for(consumer.beginning_offsets(tps), _left(deadline))
        end = await asyncio.wait_for(consumer.end_offsets(tps), _left(deadline))
        result.total = sum(end[tp] - begin[tp] for tp in tps)
        wanted = (page + 1) * size
        pending = set()
        for tp in tps:
            start = max(begin[tp], end[tp] - wanted)
            if start < end[tp]:
                consumer.seek(tp, start)
                pending.add(tp)
        records = []
        while pending:
            batches = await asyncio.wait_for(consumer.getmany(*pending, timeout_ms=300), _left(deadline))
            for tp, messages in batches.items():
                records.extend(m for m in messages if m.offset < end[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        records.sort(key=lambda m: (m.timestamp or 0, m.partition, m.offset), reverse=True)
        result.rows = [dead_letter_row(m.value, m.partition, m.offset, m.timestamp)
                       for m in records[page * size:(page + 1) * size]]
    except Exception as exc:  # shown on the page; the type only (a message could name a topic's data)
        result.error = type(exc).__name__
    finally:
        await _quietly(consumer.stop())
    return result


async def consumer_lag(bootstrap: str, app_id: str, *, timeout: float = TIMEOUT_S) -> LagReport:
    from aiokafka.admin import AIOKafkaAdminClient

    report = LagReport()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="elderwatch-console",
                                request_timeout_ms=int(timeout * 1000))
    consumer = console_consumer(bootstrap)
    deadline = time.monotonic() + timeout
    try:
        await asyncio.wait_for(admin.start(), timeout)
        groups = sorted(g[0] for g in await asyncio.wait_for(admin.list_consumer_groups(), _left(deadline))
                        if g[0] in (app_id, f"{app_id}-readings") or g[0].startswith(f"{app_id}-replay-"))
        committed = {}
        for group in groups:
            offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(group), _left(deadline))
            committed[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        tps = sorted({tp for offsets in committed.values() for tp in offsets})
        if tps:
            consumer.assign(tps)  # a consumer without topics: only asked for end offsets
            await asyncio.wait_for(consumer.start(), _left(deadline))
            end = await asyncio.wait_for(consumer.end_offsets(tps), _left(deadline))
            for group, offsets in committed.items():
                per_topic: dict[str, list[tuple[int, int]]] = defaultdict(list)
                for tp, offset in offsets.items():
                    per_topic[tp.topic].append((offset, end.get(tp, offset)))
                report.rows.extend(LagRow(group=group, topic=topic, partitions=len(pairs),
                                          committed=sum(c for c, _ in pairs), end=sum(e for _, e in pairs))
                                   for topic, pairs in sorted(per_topic.items()))
    except Exception as exc:
        report.error = type(exc).__name__
    finally:
        await _quietly(consumer.stop())
        await _quietly(admin.close())
    return report


async def check_broker(bootstrap: str, *, timeout: float = TIMEOUT_S) -> BrokerCheck:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="elderwatch-console",
                                request_timeout_ms=int(timeout * 1000))
    started = time.monotonic()
    try:
        await asyncio.wait_for(admin.start(), timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
        return BrokerCheck(reachable=True, millis=round(1000 * (time.monotonic() - started), 1),
                           brokers=len(cluster.get("brokers", [])))
    except Exception as exc:
        return BrokerCheck(reachable=False, error=type(exc).__name__)
    finally:
        await _quietly(admin.close())


def agent_health(app) -> list[AgentHealth]:
    """The app's faust agents and its readings loop: state, actors, crashed actors (no traceback: it could hold
    data)."""
    rows = []
    for name, agent in sorted(getattr(app, "agents", {}).items()):
        actors = list(getattr(agent, "_actors", ()))
        crashed = sum(1 for actor in actors if getattr(actor, "crashed", False)
                      or (getattr(actor, "actor_task", None) is not None and actor.actor_task.done()))
        rows.append(AgentHealth(name=name.rsplit(".", 1)[-1], state=str(getattr(agent, "state", "?")),
                                actors=len(actors), crashed=crashed))
    # ingest and detect are no faust agents: the readings loop on its own consumer group (streams/readings_loop.py)
    readings = getattr(app, "elderwatch_readings", None)
    if readings is not None:
        state = ("running" if readings.recovered else "recovering") if readings.running else "restarting"
        rows.insert(0, AgentHealth(name="readings", state=state, actors=1, crashed=0 if readings.running else 1))
    return rows


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.05)


async def _quietly(awaitable) -> None:
    try:
        await asyncio.wait_for(awaitable, 3.0)
    except Exception:
        pass


__all__ = ["dead_letter_page", "consumer_lag", "check_broker", "agent_health", "DeadLetterPage", "DeadLetterRow",
           "LagReport", "LagRow", "BrokerCheck", "AgentHealth", "MAX_PAGES"]
