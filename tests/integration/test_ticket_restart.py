"""Faults in the ticket loop, on the real broker: nothing is forgotten.

A worker opens and dispatches tickets while the webhook receiver is down, and is stopped (SIGTERM).
A second worker with the same app id takes over: the tickets come back from the changelog, their
deadlines pass (the clock moved), each escalates exactly once; the receiver comes up and gets
every notification (the dispatches the first worker could not deliver included), each id at least
once; the audit of the ack topics is clean.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

from conftest import WorkerProcess, produce
from test_ticket_loop import Webhook, acks

from dispatch.audit import rebuild
from elderwatch.topic_reader import read_acks, read_to_end
from elderwatch.localkafka import free_port
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.dead_letter import DeadLetter
from schemas.households import Household
from schemas.tickets import TicketCommand

HOUSEHOLDS = [Household(household_id=f"hh-r{i:04d}", community="east",
                        staff={"primary_worker": f"w-e-{i % 2}", "backup_worker": "w-e-9", "supervisor": "s-e"})
              for i in range(6)]


def warning(household: Household, kind: AnomalyKind) -> AnomalyWarning:
    start = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
    return AnomalyWarning.for_episode(household_id=household.household_id, kind=kind, meter=None,
                                      episode_start=start, detected_at=start + timedelta(hours=3), score=1.5,
                                      severity=Severity.HIGH, summary="no water since 06:00")


def test_tickets_survive_a_restart_and_a_receiver_that_was_down(kafka_bootstrap, tmp_path):
    prefix = f"r{uuid.uuid4().hex[:8]}"
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    hook_port = free_port()  # nothing listens there yet: the receiver is down
    env = {"ELDERWATCH_CLOCK_OFFSET_FILE": str(clock), "ELDERWATCH_TICKET_TIMER_INTERVAL_S": "1",
           "ELDERWATCH_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook", "ELDERWATCH_WEBHOOK_MAX_BACKOFF_S": "2"}
    warnings = [warning(h, kind) for h in HOUSEHOLDS for kind in (AnomalyKind.INACTIVITY, AnomalyKind.SURGE)]

    first = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "first", extra_env=env).start()
    try:
        produce(kafka_bootstrap, first.topic("households.roster"),
                [(h.household_id.encode(), h.model_dump_json().encode()) for h in HOUSEHOLDS])
        produce(kafka_bootstrap, first.topic("anomalies"),
                [(w.household_id.encode(), w.model_dump_json().encode()) for w in warnings])
        dispatched = acks(kafka_bootstrap, first, "dispatch", timeout=60, settle=0.5, predicate=lambda found: len(
            {a.ticket_id for a in found if a.result.value == "applied"}) == len(warnings))
        assert len({a.ticket_id for a in dispatched}) == len(warnings)
    finally:
        first.stop()  # with every dispatch notification still undelivered (the receiver is down)

    clock.write_text(str(16 * 60))  # while no worker runs, the high-severity deadlines pass
    second = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "second", extra_env=env).start()
    webhook = None
    try:
        escalated = acks(kafka_bootstrap, second, "dispatch", timeout=90, settle=3, predicate=lambda found: len(
            {a.ticket_id for a in found if a.command.event.kind.value == "ack_timeout"}) == len(warnings))
        timeouts = [a for a in escalated if a.command.event.kind.value == "ack_timeout"]
        applied = Counter(a.ticket_id for a in timeouts if a.result.value == "applied")
        # every ticket escalated to the backup, exactly once, although the timer ticks every second
        assert applied == {w.warning_id: 1 for w in warnings}, applied
        assert all(a.notify == ("w-e-9",) for a in timeouts if a.result.value == "applied")

        webhook = Webhook(port=hook_port)  # the receiver comes back
        deadline = time.monotonic() + 60
        expected = {("dispatched", w.warning_id) for w in warnings} | {("escalated", w.warning_id) for w in warnings}
        while time.monotonic() < deadline:
            got = {(body["reason"], body["ticket_id"]) for _, body in webhook.received}
            if got >= expected:
                break
            time.sleep(0.5)
        assert got == expected  # none lost while it was down or across the restart
        for key, body in webhook.received:
            assert key == body["notification_id"]
    finally:
        second.stop()
        if webhook is not None:
            webhook.stop()

    # The first worker stopped at once (SIGTERM, not killed after a timeout) by parking what it was retrying.
    assert "Killed" not in first.log_tail(50) and first.process.returncode == 0, first.log_tail()
    parked = read_to_end(kafka_bootstrap, [first.topic("notifications.pending")])
    assert parked, "the dispatch being retried at the stop must have been parked on notifications.pending"

    everything, unreadable = read_acks(kafka_bootstrap, f"{prefix}.")
    audit = rebuild(everything)
    assert not unreadable and not audit.problems, (unreadable, audit.problems)
    assert {t.state.value for t in audit.tickets.values()} == {"escalated"}
    assert {t.escalation_level for t in audit.tickets.values()} == {1}


def test_bad_messages_on_the_ticket_topics_are_dead_lettered_and_the_loop_goes_on(kafka_bootstrap, tmp_path):
    prefix = f"p{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "worker").start()
    home = HOUSEHOLDS[0]
    good = warning(home, AnomalyKind.SURGE)
    command = TicketCommand.warning_from(good, at=datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc))
    poison = [
        ("anomalies", b"hh-r0000", b"{not json"),                                   # not JSON
        ("tickets.warning", b"hh-r0000", b'{"step": "warning"}'),                   # not a command
        ("tickets.dispatch", b"hh-r0000", command.model_dump_json().encode()),      # a warning on the dispatch topic
        ("tickets.handle", b"hh-other", command.model_dump_json().encode()),        # keyed by another household
        ("households.roster", b"hh-r0000", b'{"household_id": "hh-r0000"}'),        # a roster entry without staff
        ("households.away", b"hh-r0000", b'{"until": "soon"}'),                     # not an away mode
    ]
    try:
        for topic, key, value in poison:
            produce(kafka_bootstrap, worker.topic(topic), [(key, value)])
        produce(kafka_bootstrap, worker.topic("households.roster"), [(home.household_id.encode(), home.model_dump_json().encode())])
        produce(kafka_bootstrap, worker.topic("anomalies"), [(good.household_id.encode(), good.model_dump_json().encode())])
        # the stage is alive: the good warning after all that opens and dispatches its ticket
        dispatched = acks(kafka_bootstrap, worker, "dispatch", timeout=60, settle=0.5, predicate=lambda found: any(
            a.ticket_id == good.warning_id and a.result.value == "applied" for a in found))
        assert any(a.notify == (home.staff.primary_worker,) for a in dispatched)
    finally:
        worker.stop()
    dead = [DeadLetter.model_validate_json(r.value) for r in read_to_end(kafka_bootstrap, [worker.topic("readings.deadletter")])]
    assert sorted((d.stage, d.source_topic.removeprefix(f"{prefix}.")) for d in dead) == sorted(
        ("tickets", topic) for topic, _, _ in poison)
    for d, (topic, key, value) in zip(sorted(dead, key=lambda d: d.source_topic), sorted(poison)):
        assert d.original_value() == value  # kept exactly as it came
