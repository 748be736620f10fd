"""The guard every agent runs its messages through (streams/guard.py): a message an agent raises on is
dead-lettered ``processing_error`` with its bytes and coordinates, counted per agent, logged by type (never
the exception's message), and the agent goes on with the next message."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import faust

from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.dead_letter import DeadLetter, RejectReason
from streams.guard import AgentGuard, DeadLetters, Source
from streams.metrics import AgentMetrics

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
SECRET = "she left at 07:12"  # what an exception message might quote: never in a log, a detail or a label


class FakeTopic:
    def __init__(self, name: str, fail: int = 0) -> None:
        self.name, self.sent, self.fail = name, [], fail

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key=None, value=None):
        if self.fail:
            self.fail -= 1
            raise RuntimeError(SECRET)
        self.sent.append((key, value))


@dataclass
class Message:
    topic: str = "anomalies"
    partition: int = 3
    offset: int = 41
    timestamp: float | None = 1_770_000_000.5


def guard(deadletter: FakeTopic, errors: list | None = None) -> tuple[AgentGuard, AgentMetrics]:
    metrics = AgentMetrics()
    on_error = errors.append if errors is not None else None
    return AgentGuard("ticket-warnings", "tickets", DeadLetters(deadletter, lambda: T0), metrics,
                      on_error=on_error), metrics


def test_a_message_the_handler_raises_on_is_dead_lettered_counted_and_logged_by_type(caplog):
    deadletter, seen, errors = FakeTopic("readings.deadletter"), [], []
    g, metrics = guard(deadletter, errors)

    async def handler(value, key, source):
        if value == b"boom":
            raise ValueError(SECRET)
        seen.append((value, source.offset))

    async def main():
        with caplog.at_level(logging.INFO, logger="streams.guard"):
            ok = await g.handle(Message(), b"boom", b"hh-000001", handler)
            next_ok = await g.handle(Message(offset=42), b"fine", b"hh-000001", handler)
        return ok, next_ok

    assert asyncio.run(main()) == (False, True)
    assert seen == [(b"fine", 42)]  # the agent went on with the next message
    [(key, value)] = deadletter.sent
    letter = DeadLetter.model_validate_json(value)
    assert letter.reason is RejectReason.PROCESSING_ERROR and letter.stage == "tickets"
    assert letter.detail == "ticket-warnings raised ValueError"
    assert letter.original_value() == b"boom" and letter.original_key_b64 is not None and key is None
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("anomalies", 3, 41)
    assert letter.source_timestamp_ms == 1_770_000_000_500
    assert metrics.errors.labels(agent="ticket-warnings")._value.get() == 1
    assert metrics.errors.labels(agent="detect")._value.get() == 0
    assert errors == [Source("anomalies", 3, 41, 1_770_000_000_500)]
    errors_logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors_logged) == 1 and "ValueError" in errors_logged[0] and "anomalies:3@41" in errors_logged[0]
    assert "test_agent_guard.py" in errors_logged[0]  # where it was raised: code, not values
    assert not any(SECRET in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)  # no traceback: its last line would quote the message


def test_when_even_the_dead_letter_fails_the_agent_still_goes_on(caplog):
    deadletter = FakeTopic("readings.deadletter", fail=1)
    g, metrics = guard(deadletter)

    async def handler(value, key, source):
        raise KeyError(SECRET)

    with caplog.at_level(logging.ERROR, logger="streams.guard"):
        assert asyncio.run(g.handle(Message(), b"x", None, handler)) is False
    assert deadletter.sent == [] and metrics.errors.labels(agent="ticket-warnings")._value.get() == 1
    assert any("could not dead-letter anomalies:3@41: RuntimeError" in r.getMessage() for r in caplog.records)
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_agent_metrics_are_one_per_registry():
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    assert AgentMetrics.of(registry) is AgentMetrics.of(registry)
    assert AgentMetrics.of(CollectorRegistry()) is not AgentMetrics.of(registry)


def _warning(household_id: str, hour: int) -> AnomalyWarning:
    return AnomalyWarning.for_episode(household_id=household_id, kind=AnomalyKind.INACTIVITY, meter=None,
                                      episode_start=T0.replace(hour=hour), detected_at=T0.replace(hour=hour + 1),
                                      score=1.4, severity=Severity.HIGH, summary="no water since 07:00")


def test_a_real_agent_survives_a_bug_on_one_message_and_processes_the_next():
    """ticket-warnings in faust (test_context, no broker): sending the first warning's command raises; the agent
    is not crashed (put would raise its crash reason), the message is dead-lettered, the next one goes through."""
    from elderwatch.settings import Settings
    from schemas.tickets import Step, TicketCommand
    from streams.app import Topics
    from streams.metrics import TicketMetrics
    from streams.tickets import register_ticket_agents

    t = FakeTopic
    topics = Topics(raw=t("readings.raw"), by_household=t("readings.by-household"), validated=t("readings.validated"),
                    deadletter=t("readings.deadletter"), anomalies=t("anomalies"),
                    ticket_steps={s: t(f"tickets.{s.value}", fail=1 if s is Step.WARNING else 0) for s in Step},
                    ticket_acks={s: t(f"tickets.{s.value}.ack") for s in Step},
                    roster=t("households.roster"), away=t("households.away"),
                    notifications_pending=t("notifications.pending"))
    metrics = TicketMetrics()

    async def main():
        app = faust.App("t-guard", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False,
                        web_enabled=False)
        anomalies = app.topic("anomalies", key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")  # the agent's input: a real faust topic
        register_ticket_agents(app, replace(topics, anomalies=anomalies), {}, metrics, Settings(), clock=lambda: T0)
        agent = next(a for a in app.agents.values() if a.name.endswith("ticket-warnings"))
        async with agent.test_context() as running:
            for hour in (7, 8):
                await running.put(_warning("hh-000001", hour).model_dump_json().encode(), key=b"hh-000001")

    asyncio.run(main())
    [(_, command)] = topics.ticket_steps[Step.WARNING].sent
    assert TicketCommand.model_validate_json(command).ticket_id == _warning("hh-000001", 8).warning_id
    [(_, letter)] = topics.deadletter.sent
    letter = DeadLetter.model_validate_json(letter)
    assert letter.reason is RejectReason.PROCESSING_ERROR and letter.detail == "ticket-warnings raised RuntimeError"
    assert AnomalyWarning.model_validate_json(letter.original_value()).warning_id == _warning("hh-000001", 7).warning_id
    assert AgentMetrics.of(metrics.registry).errors.labels(agent="ticket-warnings")._value.get() == 1


def test_a_reading_an_ingest_agent_raises_on_is_counted_once_so_the_ingest_identity_holds():
    """ingest's validate step (streams/readings_loop.py, fed a batch by hand): forwarding the first reading raises
    (keyed by a utility's batch id, so it is re-keyed, not applied directly). It is dead-lettered
    processing_error and counted once: received = valid + duplicates + dead_lettered + raw_redelivered."""
    from prometheus_client import generate_latest

    from elderwatch.settings import Settings
    from streams.readings_loop import IngestStage, IngestTopics, Message
    from streams.metrics import IngestMetrics, read_counts

    metrics = IngestMetrics()
    topics = {name: FakeTopic(name, fail=1 if name == "readings.by-household" else 0)
              for name in ("readings.raw", "readings.by-household", "readings.validated", "readings.deadletter",
                           "changelog")}

    async def send(topic, key, value, partition):
        await topics[topic].send(key=key, value=value)
        return asyncio.sleep(0)  # the broker's acknowledgement

    stage = IngestStage(IngestTopics("readings.raw", "readings.by-household", "readings.validated",
                                     "readings.deadletter", "changelog"), send, metrics, Settings(),
                        clock=lambda: T0 + timedelta(days=1))
    messages = [Message("readings.raw", 0, offset, None, b"utility-batch-1",
                        f'{{"household_id": "hh-000001", "meter": "water", "ts": "{(T0 + timedelta(minutes=15 * offset)).isoformat()}", "value": 1}}'.encode())
                for offset in (0, 1)]
    asyncio.run(stage.run(messages))
    assert len(topics["readings.by-household"].sent) == 1 and len(topics["readings.deadletter"].sent) == 1
    counts = read_counts(generate_latest(metrics.registry).decode())
    # received 2 = the one forwarded (normalize would judge it) + 1 dead-lettered, not 2
    assert counts["received"] == 2 and counts["dead_lettered"] == 1
