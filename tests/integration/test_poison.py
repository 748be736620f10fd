"""Poison on every topic a worker reads never crashes an agent, and never stops the good messages behind it.

One real worker (``elderwatch worker`` in a subprocess) on the session's real broker, for the whole module.
On each topic it reads, on the partition of one household: messages that are not JSON, of the wrong shape,
keyed by another household, empty, tombstones where none is expected, huge, and a feedback command without
an outcome (which crashed the detect agent when detection read the raw command). Then good messages on the
same partitions: a reading must reach ``readings.validated`` and a warning must open a ticket.

Every poison message is accounted for: dead-lettered on ``readings.deadletter`` with its bytes and its
topic, partition and offset, or, on an ``.ack`` topic the notifier alone reads, counted in
``elderwatch_notify_unreadable_total``; the feedback command without an outcome is answered by the ticket
stage (rejected: "an outcome is required"). No agent raised (``elderwatch_agent_errors_total`` stays 0:
every poison was recognised as bad input) and none crashed (faust logs "Agent ... crashed" and a traceback).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2

from dispatch.tickets import Event, EventKind, Outcome
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.dead_letter import DeadLetter, RejectReason
from schemas.households import Household
from schemas.readings import MeterReading, ValidatedReading
from schemas.routing import RawOrigin, RoutedReading
from schemas.ticket import Ticket
from schemas.tickets import AckResult, AwayMode, Step, TicketAck, TicketCommand
from streams.metrics import identity_gaps, read_counts

from conftest import WorkerProcess, consume

PARTITIONS = 4
HH, OTHER = "hh-000001", "hh-000002"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
HUGE = b'{"household_id": "' + b"x" * 500_000 + b'"}'  # ~0.5 MB: its dead letter (base64) still fits a message


def _partition(key: str) -> int:
    """The partition a keyed message goes to (murmur2, as faust's producer and Java's choose)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def _reading(household_id: str) -> MeterReading:
    return MeterReading(household_id=household_id, meter="water", ts=NOW - timedelta(minutes=15), value=1.5)


def _warning(household_id: str, hour: int) -> AnomalyWarning:
    start = NOW.replace(minute=0, second=0) - timedelta(hours=hour)
    return AnomalyWarning.for_episode(household_id=household_id, kind=AnomalyKind.INACTIVITY, meter=None,
                                      episode_start=start, detected_at=start + timedelta(hours=1), score=1.4,
                                      severity=Severity.HIGH, summary="no water used since the morning")


def _command(household_id: str, step: Step, kind: EventKind, key: str, **event) -> TicketCommand:
    return TicketCommand(step=step, ticket_id=f"{household_id}/inactivity/x", household_id=household_id,
                         ticket_kind="inactivity",
                         event=Event(kind=kind, idempotency_key=key, actor="w-1", at=NOW, **event))


def _ack(household_id: str) -> TicketAck:
    """An ack as the ticket stage writes it for an applied outcome (valid: only its key is wrong, below)."""
    command = _command(household_id, Step.FEEDBACK, EventKind.FEEDBACK, "k-ack", outcome=Outcome.FALSE_ALARM)
    ticket = Ticket(ticket_id=command.ticket_id, household_id=household_id, kind="inactivity", severity="high",
                    state="feedback_recorded", chain=("w-1",), opened_at=NOW, outcome=Outcome.FALSE_ALARM)
    return TicketAck(step=Step.FEEDBACK, by="tickets", ticket_id=command.ticket_id, household_id=household_id,
                     idempotency_key="k-ack", command=command, result=AckResult.APPLIED, ticket=ticket, at=NOW)


def _wrong_key(model) -> tuple[bytes, bytes]:
    """A valid message of another household, keyed (and partitioned) as ours."""
    return HH.encode(), model.model_dump_json().encode()


GENERIC = [(HH.encode(), b"{not json"), (HH.encode(), b'{"surprise": [1, 2, 3]}'), (HH.encode(), b"[1, 2]"),
           (HH.encode(), b""), (HH.encode(), None)]
FEEDBACK_WITHOUT_OUTCOME = _command(HH, Step.FEEDBACK, EventKind.FEEDBACK, "k-no-outcome")

# topic -> poison (key, value) messages; every one goes to the partition of HH
POISON: dict[str, list[tuple[bytes | None, bytes | None]]] = {
    "readings.raw": GENERIC + [(HH.encode(), HUGE), (None, b"\xff\xfe not utf-8")],
    "readings.by-household": GENERIC + [(HH.encode(), HUGE), _wrong_key(RoutedReading(
        form="interval", interval_reading=_reading(OTHER),
        origin=RawOrigin(topic="readings.raw", partition=0, offset=0, value_b64="e30="))),
        (HH.encode(), b'{"form": "interval", "origin": {"topic": "t", "partition": 0, "offset": 0, "value_b64": ""}}')],
    # readings.validated is written, not read: detection gets its readings from ingest in the same batch
    "anomalies": GENERIC + [_wrong_key(_warning(OTHER, 30))],
    "tickets.warning": GENERIC + [_wrong_key(_command(OTHER, Step.WARNING, EventKind.CONDITION_CLEARED, "k-w"))],
    "tickets.dispatch": GENERIC + [(HH.encode(), HUGE),
                                   # a handle command on the dispatch topic
                                   (HH.encode(), _command(HH, Step.HANDLE, EventKind.HANDLE, "k-h",
                                                          notes="n").model_dump_json().encode())],
    "tickets.handle": GENERIC + [_wrong_key(_command(OTHER, Step.HANDLE, EventKind.HANDLE, "k-h2", notes="n"))],
    "tickets.feedback": GENERIC + [_wrong_key(_command(OTHER, Step.FEEDBACK, EventKind.FEEDBACK, "k-f",
                                                       outcome=Outcome.FALSE_ALARM))],
    "tickets.feedback.ack": GENERIC + [_wrong_key(_ack(OTHER))],
    "tickets.dispatch.ack": GENERIC,
    "households.roster": GENERIC + [_wrong_key(Household(household_id=OTHER, community="north",
                                                         staff={"primary_worker": "w-9"})),
                                    (HH.encode(), b'{"household_id": "hh-000001", "community": "north", '
                                                  b'"timezone": "Mars/Olympus", "staff": {"primary_worker": "w-1"}}')],
    # an empty value or a tombstone ends away mode there: legitimate, not poison
    "households.away": GENERIC[:3] + [_wrong_key(AwayMode(household_id=OTHER, until=NOW + timedelta(days=1),
                                                          set_by="w-1", set_at=NOW))],
    "notifications.pending": GENERIC + [(HH.encode(), b'{"notification_id": 7}')],
}
#: read by the notifier alone, which counts what it cannot read (no dead letter)
COUNTED_ONLY = {"tickets.dispatch.ack"}
#: the notifier counts these, and detect dead-letters them too
ACK_TOPICS = {"tickets.feedback.ack", "tickets.dispatch.ack"}


def _wait_ready(worker: WorkerProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"worker not ready: {worker.log_tail()}")


def _metrics(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        return response.read().decode()


def _settled_metrics(worker: WorkerProcess, timeout: float = 30.0) -> str:
    """The /metrics page once the counter identities hold (each outcome is counted around its send), or at
    ``timeout`` the last page (the identity test then says what does not add up)."""
    deadline = time.monotonic() + timeout
    page = _metrics(worker)
    while identity_gaps(page) and time.monotonic() < deadline:
        time.sleep(0.5)
        page = _metrics(worker)
    return page


def _sample(page: str, name: str) -> float:
    return sum(float(line.rpartition(" ")[2]) for line in page.splitlines() if line.startswith(name))


@pytest.fixture(scope="module")
def poisoned(kafka_bootstrap: str, tmp_path_factory):
    prefix = f"p{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp(prefix), partitions=PARTITIONS)
    try:
        worker.start()
        _wait_ready(worker)  # topics declared, tables recovered, every agent running
        partition = _partition(HH)
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2_000_000)
        try:
            roster = Household(household_id=HH, community="north", staff={"primary_worker": "w-1"})
            producer.send(worker.topic("households.roster"), key=HH.encode(),
                          value=roster.model_dump_json().encode()).get(30)
            sent = []  # (topic, partition, offset, value)
            for topic, messages in POISON.items():
                for key, value in messages:
                    meta = producer.send(worker.topic(topic), key=key, value=value, partition=partition).get(30)
                    sent.append((topic, meta.partition, meta.offset, value))
            command = producer.send(worker.topic("tickets.feedback"), key=HH.encode(), partition=partition,
                                    value=FEEDBACK_WITHOUT_OUTCOME.model_dump_json().encode()).get(30)
            # then good messages, behind the poison on the same partitions
            reading = {"household_id": HH, "meter": "water", "ts": _reading(HH).ts.isoformat(), "value": 1.5}
            producer.send(worker.topic("readings.raw"), key=HH.encode(), value=json.dumps(reading).encode(),
                          partition=partition).get(30)
            warning = _warning(HH, 5)
            producer.send(worker.topic("anomalies"), key=HH.encode(), value=warning.model_dump_json().encode(),
                          partition=partition).get(30)
        finally:
            producer.close()
        dead_letters = sum(1 for topic, *_ in sent if topic not in COUNTED_ONLY)
        letters = [DeadLetter.model_validate_json(r.value)
                   for r in consume(kafka_bootstrap, worker.topic("readings.deadletter"), expected=dead_letters,
                                    timeout=180)]
        validated = consume(kafka_bootstrap, worker.topic("readings.validated"), expected=1)
        warning_acks = [TicketAck.model_validate_json(r.value) for r in
                        consume(kafka_bootstrap, worker.topic("tickets.warning.ack"), expected=1, timeout=60)]
        feedback_acks = [TicketAck.model_validate_json(r.value) for r in
                         consume(kafka_bootstrap, worker.topic("tickets.feedback.ack"),
                                 expected=len(POISON["tickets.feedback.ack"]) + 1, timeout=60)
                         if _parses(r.value)]
        yield {"worker": worker, "sent": sent, "letters": letters, "validated": validated, "warning": warning,
               "warning_acks": warning_acks, "feedback_acks": feedback_acks, "command_offset": command.offset,
               "partition": partition, "page": _settled_metrics(worker)}
    finally:
        worker.stop()


def _parses(value: bytes | None) -> bool:
    try:
        TicketAck.model_validate_json(value or b"")
        return True
    except ValueError:
        return False


def test_every_poison_message_is_dead_lettered_with_its_bytes(poisoned):
    prefix = poisoned["worker"].prefix + "."
    by_source = {}
    for letter in poisoned["letters"]:
        by_source.setdefault((letter.source_topic.removeprefix(prefix), letter.source_partition,
                              letter.source_offset), []).append(letter)
    missing = []
    for topic, partition, offset, value in poisoned["sent"]:
        if topic in COUNTED_ONLY:
            continue
        found = by_source.get((topic, partition, offset), [])
        if len(found) != 1:
            missing.append((topic, offset, len(found)))
            continue
        letter = found[0]
        assert letter.original_value() == value, (topic, offset)
        assert letter.reason is not RejectReason.PROCESSING_ERROR, (topic, offset, letter.detail)  # recognised
        assert value is None or len(value) < 1000 or (value.decode(errors="replace")[:40] not in letter.detail)
    assert not missing, f"poison not dead-lettered exactly once (topic, offset, dead letters): {missing}"
    stages = {letter.stage for letter in poisoned["letters"]}
    assert stages == {"ingest.validate", "ingest.normalize", "detect", "tickets", "notify"}


def test_ack_topic_poison_is_counted_and_no_agent_raised_or_crashed(poisoned):
    page, worker = poisoned["page"], poisoned["worker"]
    unreadable_acks = sum(1 for topic, _, _, value in poisoned["sent"] if topic in ACK_TOPICS and not _parses(value))
    assert _sample(page, "elderwatch_notify_unreadable_total") == unreadable_acks
    assert _sample(page, "elderwatch_agent_errors_total") == 0  # every poison was recognised, none was a "bug"
    log = worker.log_path.read_text(errors="replace")
    assert "crashed" not in log and "Traceback" not in log, worker.log_tail(40)
    # the worker is still ready: every agent runs
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/ready", timeout=5) as response:
        assert response.status == 200


def test_the_feedback_command_without_an_outcome_is_rejected_by_the_ticket_stage(poisoned):
    [ack] = [a for a in poisoned["feedback_acks"] if a.idempotency_key == FEEDBACK_WITHOUT_OUTCOME.event.idempotency_key]
    assert ack.by == "tickets" and ack.result is AckResult.REJECTED
    # detection learned nothing from it, nor from the poison acks: no feedback applied, no ack of its own
    page = poisoned["page"]
    assert _sample(page, 'elderwatch_detect_feedback_total{result="applied"}') == 0
    assert not [a for a in poisoned["feedback_acks"] if a.by == "detect"]


def test_good_messages_behind_the_poison_are_processed(poisoned):
    readings = [json.loads(r.value) for r in poisoned["validated"] if _is_reading(r.value)]
    assert [(r["household_id"], r["value"]) for r in readings if r["household_id"] == HH] == [(HH, 1.5)]
    warning = poisoned["warning"]
    opened = [a for a in poisoned["warning_acks"] if a.ticket_id == warning.warning_id]
    assert [a.result for a in opened] == [AckResult.APPLIED] and opened[0].ticket is not None
    counts = read_counts(poisoned["page"], "detect")
    assert counts.get("processed", 0) == 1  # the good reading reached its monitor


def _is_reading(value: bytes | None) -> bool:
    try:
        ValidatedReading.model_validate_json(value or b"")
        return True
    except ValueError:
        return False


def test_the_counter_identities_hold_with_poison_on_every_topic(poisoned):
    # ingest: received = valid + duplicates + dead_lettered + raw_redelivered, valid = emitted + register_baselines;
    # detect: received = processed + redelivered + dead_lettered + failed (internal-topic poison is counted apart)
    page = poisoned["page"]
    assert identity_gaps(page) == []
    assert read_counts(page, "ingest")["dead_lettered"] > 0
    assert _sample(page, 'elderwatch_agent_unreadable_total{agent="detect"}') > 0  # the ack topic's poison
