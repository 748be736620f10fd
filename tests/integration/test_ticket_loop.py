"""The whole loop on the real broker: simulated anomalies -> warning -> dispatch -> acknowledge -> handle ->
feedback -> closed, in a real worker process, with its clock moved forward to make deadlines pass.

One timeline, one worker (module fixture), checked step by step:

1. the roster and one away mode go in; the simulated households' readings are fed to readings.raw;
2. every warning detect raises reaches tickets.warning.ack: the away household's inactivity is
   suppressed, the first warning of each household and kind opens a ticket, later ones attach;
3. each ticket is dispatched to its household's primary worker (ack + webhook notification);
4. the clock moves 16 minutes: high-severity tickets escalate to the backup worker, medium ones wait;
5. staff act through the HTTP API: acknowledge, handle, feedback; detection acknowledges the feedback
   and the ticket closes; two false alarms for one household and kind lower its sensitivity, a
   confirmed emergency does not;
6. the ticket table is rebuilt from the ack topics alone and equals the live one (its changelog);
7. the loop metrics agree with what happened.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import WorkerProcess, produce
from kafka import KafkaConsumer, TopicPartition

from detectors.offline import detect_file

from dispatch.desk import HouseholdDesk
from elderwatch.feed import canonical_messages
from elderwatch.localkafka import free_port
from elderwatch.simulator import simulate
from elderwatch.staff_client import StaffClient
from schemas.anomaly import AnomalyWarning
from schemas.households import Household
from schemas.tickets import TicketAck
from streams.tables import TICKET_DESKS, changelog_topic

HOUSEHOLDS, DAYS, SEED = 4, 40, 7  # 18 warnings of five kinds after warm-up, 3 of them high severity
STEPS = ("warning", "dispatch", "handle", "feedback")


class Webhook:
    """A receiver on 127.0.0.1 that records every POST (body and Idempotency-Key)."""

    def __init__(self, port: int | None = None) -> None:
        self.received: list[tuple[str, dict]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Idempotency-Key"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = port or free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


class Api(StaffClient):
    """The staff API as a community worker's app calls it, with the test's shorthands."""

    def act(self, ticket_id: str, action: str, staff: str, key: str | None = None, **body):
        return super().act(ticket_id, action, staff, key or f"{action}-{uuid.uuid4().hex[:8]}", body)

    def ticket(self, ticket_id: str, staff: str) -> dict:
        found = super().ticket(ticket_id, staff)
        assert found is not None, ticket_id
        return found


def read_topic(bootstrap: str, topic: str, *, until_count: int = 0, timeout: float = 120.0, settle: float = 2.0,
               predicate=None) -> list:
    """Records of ``topic`` from the beginning, polled until ``predicate(records)`` (or ``until_count`` records)
    holds, then ``settle`` seconds more so that surplus records show too."""
    predicate = predicate or (lambda records: len(records) >= until_count)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    partitions = set()
    while not partitions and time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic) or set()
        time.sleep(0.2)
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()
    records, settle_until = [], None
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        if predicate(records):
            settle_until = settle_until or time.monotonic() + settle
            if time.monotonic() >= settle_until:
                break
    consumer.close()
    return records


def acks(bootstrap: str, worker: WorkerProcess, step: str, predicate=None, **kwargs) -> list[TicketAck]:
    wrap = (lambda records: predicate([TicketAck.model_validate_json(r.value) for r in records])) if predicate else None
    records = read_topic(bootstrap, worker.topic(f"tickets.{step}.ack"), predicate=wrap, **kwargs)
    return [TicketAck.model_validate_json(r.value) for r in records]


@pytest.fixture(scope="module")
def loop(kafka_bootstrap, tmp_path_factory):
    """The worker after the simulated feed went through: every warning acknowledged, tickets dispatched."""
    out = tmp_path_factory.mktemp("ticket-loop")
    simulate(households=HOUSEHOLDS, days=DAYS, seed=SEED, out_dir=out, warmup_days=28, anomaly_rate=3.0)
    # Replayed at full speed, every episode also ends within seconds. One household's readings stop
    # right after its last high-severity warning, so that episode is still open, as in real time
    # when someone is lying on the floor: its ticket must escalate.
    full = list(detect_file(out / "readings.csv", out / "households.csv"))
    away_warning = next(w for w in full if w.kind.value == "inactivity")
    still_open = max((w for w in full if w.severity.value == "high" and w.warning_id != away_warning.warning_id),
                     key=lambda w: w.detected_at)
    readings = out / "readings-cut.csv"
    with open(out / "readings.csv") as source, open(readings, "w") as target:
        target.write(source.readline())
        for line in source:
            household, _, ts, _ = line.split(",")
            if household != still_open.household_id or ts <= still_open.detected_at.isoformat():
                target.write(line)
    warnings = list(detect_file(readings, out / "households.csv"))
    welfare = [w for w in warnings if w.kind.value != "meter_offline"]
    assert {w.kind.value for w in welfare} >= {"inactivity", "night_activity", "surge"}, Counter(
        w.kind.value for w in warnings)
    assert still_open in warnings and away_warning in warnings
    roster = {h.household_id: h for h in _households(out / "households.csv")}

    webhook = Webhook()
    clock_file = out / "clock-offset"
    clock_file.write_text("0")
    prefix = f"k{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(kafka_bootstrap, prefix, out / "worker", extra_env={
        "ELDERWATCH_HOUSEHOLDS_FILE": str(out / "households.csv"), "ELDERWATCH_CLOCK_OFFSET_FILE": str(clock_file),
        "ELDERWATCH_TICKET_TIMER_INTERVAL_S": "1", "ELDERWATCH_WEBHOOK_URL": f"http://127.0.0.1:{webhook.port}/hook",
    }).start()
    api = Api(worker.port)
    try:
        produce(kafka_bootstrap, worker.topic("households.roster"),
                [(h.household_id.encode(), h.model_dump_json().encode()) for h in roster.values()])
        # Away mode around the first inactivity warning (in data time), set by its primary worker.
        home = roster[away_warning.household_id]
        status, body = _until_ok(lambda: api.call(
            "PUT", f"/households/{home.household_id}/away", home.staff.primary_worker,
            {"since": (away_warning.detected_at - timedelta(hours=2)).isoformat(),
             "until": (away_warning.detected_at + timedelta(hours=1)).isoformat(), "reason": "hospital stay"}))
        assert status in (200, 202), body
        sent = produce(kafka_bootstrap, worker.topic("readings.raw"),
                       ((m.key, m.value) for m in canonical_messages(readings)))
        assert sent > 20_000
        # Every reading through detect, then every warning and every ended episode acknowledged.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            counts = _metrics(worker)
            if counts["elderwatch_detect_processed_total"] >= counts["elderwatch_ingest_emitted_total"] == sent:
                break
            time.sleep(1)
        ended = int(counts["elderwatch_detect_episodes_cleared_total"])
        step_acks = acks(kafka_bootstrap, worker, "warning", until_count=len(warnings) + ended, timeout=120, settle=3)
        warning_acks = [a for a in step_acks if a.command.event.kind.value == "warning"]
        cleared_acks = [a for a in step_acks if a.command.event.kind.value == "condition_cleared"]
        yield {"worker": worker, "api": api, "webhook": webhook, "clock": clock_file, "roster": roster,
               "warnings": warnings, "away_warning": away_warning, "warning_acks": warning_acks,
               "cleared_acks": cleared_acks, "still_open": still_open,
               "bootstrap": kafka_bootstrap}
    finally:
        worker.stop()
        webhook.stop()


def _households(path: Path) -> list[Household]:
    import csv

    with open(path, newline="") as f:
        return [Household.from_csv_row(row) for row in csv.DictReader(f)]


def _until_ok(call, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        status, body = call()
        if status < 400 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.5)


def _opened(loop) -> dict[str, TicketAck]:
    """ticket_id -> the ack that opened it."""
    return {a.ticket_id: a for a in loop["warning_acks"]
            if a.result.value == "applied" and a.ticket.ticket_id == a.command.ticket_id}


def test_every_warning_is_acknowledged_suppressed_attached_or_opened(loop):
    warning_acks = loop["warning_acks"]
    # Each of detect's warnings is acknowledged once on tickets.warning.ack (same set as offline).
    assert sorted(a.command.ticket_id for a in warning_acks) == sorted(w.warning_id for w in loop["warnings"])
    by_id = {a.command.ticket_id: a for a in warning_acks}
    # Away mode: the inactivity warning inside it opened no ticket.
    away = by_id[loop["away_warning"].warning_id]
    assert away.result.value == "suppressed" and "away until" in away.reason
    # Deduplication: per household and kind, one ticket; every later warning attached to it.
    opened = _opened(loop)
    per_kind = Counter((a.household_id, a.command.ticket_kind) for a in opened.values())
    assert per_kind and max(per_kind.values()) == 1, per_kind
    attached = [a for a in warning_acks if a.result.value == "applied" and a.ticket.ticket_id != a.command.ticket_id]
    assert attached, "the simulated data should give a household a second warning of one kind"
    for a in attached:
        assert a.reason == f"attached to open ticket {a.ticket.ticket_id}"
        assert a.command.ticket_id in a.ticket.warning_ids and a.ticket.ticket_id in opened
    assert len(opened) + len(attached) + 1 == len(warning_acks)


def test_ended_episodes_clear_their_tickets_as_decided(loop):
    """Welfare tickets stay for a person to confirm (lowered to low if nobody has taken them);
    a meter that reports again closes its meter_offline ticket itself."""
    cleared = loop["cleared_acks"]
    assert cleared, "the simulated episodes end: some must be reported cleared"
    for a in cleared:
        if a.result.value != "applied":  # its warning opened no ticket (the suppressed one)
            assert a.result.value == "rejected" and a.reason == "unknown ticket"
            continue
        assert a.ticket.condition_cleared
        if a.ticket.kind == "meter_offline":
            assert (a.ticket.state.value, a.ticket.outcome.value) == ("closed", "meter_fault")
        else:
            assert a.ticket.state.value not in ("closed", "cancelled")


def _current(loop) -> dict[str, TicketAck]:
    """ticket_id -> its latest ack on the warning step (what the warning step left it as)."""
    latest: dict[str, TicketAck] = {}
    for a in loop["warning_acks"] + loop["cleared_acks"]:
        if a.result.value == "applied" and a.ticket.version >= latest.get(a.ticket_id, a).ticket.version:
            latest[a.ticket_id] = a
    return latest


def test_tickets_are_dispatched_then_escalated_by_timeout(loop):
    bootstrap, worker, roster, opened = loop["bootstrap"], loop["worker"], loop["roster"], _opened(loop)
    dispatched = acks(bootstrap, worker, "dispatch", until_count=len(opened), timeout=60)
    # a timer tick may re-send a dispatch the ticket stage already applied: acknowledged as a duplicate;
    # a meter_offline ticket may have closed itself before its dispatch came round: rejected, recorded
    for a in dispatched:
        assert a.result.value in ("applied", "duplicate") or (
            a.ticket.kind == "meter_offline" and a.reason == "dispatch: not allowed from closed (allowed: none: the ticket is finished)")
    dispatched = [a for a in dispatched if a.result.value == "applied"]
    welfare = {t for t, a in opened.items() if a.ticket.kind != "meter_offline"}
    assert welfare <= {a.ticket_id for a in dispatched if a.command.event.kind.value == "dispatch"} <= set(opened)
    for a in dispatched:
        assert a.result.value == "applied" and a.ticket.state.value == "dispatched"
        first = "data-quality-desk" if a.ticket.kind == "meter_offline" else roster[a.household_id].staff.primary_worker
        assert a.notify == (first,)
    # high severity now (an ended episode lowered its ticket to low unless someone had taken it)
    high = {t for t, a in _current(loop).items() if a.ticket.severity == "high"}
    assert loop["still_open"].warning_id in high and high != set(opened)

    loop["clock"].write_text(str(16 * 60))  # 16 minutes later: past the 15-minute high-severity deadline
    escalations = [a for a in acks(bootstrap, worker, "dispatch", timeout=60, predicate=lambda acks: {
        a.ticket_id for a in acks if a.command.event.kind.value == "ack_timeout"} >= high)
        if a.command.event.kind.value == "ack_timeout"]
    assert {a.ticket_id for a in escalations} == high  # medium and low still wait for their deadline
    for a in escalations:
        backup = roster[a.household_id].staff.backup_worker
        assert a.ticket.state.value == "escalated" and a.ticket.escalation_level == 1 and a.notify == (backup,)
    assert len(escalations) == len(high), "one escalation per ticket and deadline, however many timer ticks"

    # The webhook heard of each dispatch and each escalation, once per notification id.
    deadline = time.monotonic() + 60
    n_dispatched = sum(a.command.event.kind.value == "dispatch" for a in dispatched)
    expected = n_dispatched + len(high)
    while len({k for k, _ in loop["webhook"].received}) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    reasons = Counter(body["reason"] for _, body in {k: b for k, b in loop["webhook"].received}.items())
    assert reasons == {"dispatched": n_dispatched, "escalated": len(high)}
    for key, body in loop["webhook"].received:
        assert key == body["notification_id"] and body["household_id"] in roster


def test_staff_close_the_loop_and_feedback_changes_detection(loop):
    bootstrap, worker, api, roster = loop["bootstrap"], loop["worker"], loop["api"], loop["roster"]
    opened = _opened(loop)
    high = sorted(t for t, a in _current(loop).items() if a.ticket.severity == "high")
    first = opened[loop["still_open"].warning_id]
    household, kind = first.household_id, first.command.ticket_kind
    staff = roster[household].staff

    # Escalated to the backup worker, who takes it.
    status, body = api.act(first.ticket_id, "acknowledge", staff.backup_worker, key="ack-1")
    assert status == 200 and body["ticket"]["state"] == "accepted", body
    again = api.act(first.ticket_id, "acknowledge", staff.backup_worker, key="ack-1")
    assert again[0] == 200 and again[1]["ticket"]["version"] == body["ticket"]["version"]  # idempotent
    status, body = api.act(first.ticket_id, "feedback", staff.backup_worker, outcome="false_alarm")
    assert status == 409 and "feedback: not allowed from accepted" in body["error"]  # handle first
    assert api.act(first.ticket_id, "handle", "w-another-community", notes="x")[0] == 403
    status, body = api.act(first.ticket_id, "handle", staff.backup_worker, notes="visited; cooking with gas today")
    assert status == 200 and body["ticket"]["state"] == "handled", body
    status, body = api.act(first.ticket_id, "feedback", staff.backup_worker, outcome="false_alarm")
    # detection may have closed it already by the time the API answers
    assert status == 200 and body["ticket"]["state"] in ("feedback_recorded", "closed"), body

    # Detection acknowledges the outcome (first false alarm: not lowered yet), then the ticket closes.
    learned = _detect_ack(loop, first.ticket_id)
    assert learned.result.value == "applied" and learned.detection["sensitivity_after"] == 1.0
    assert _closed(loop, first.ticket_id, staff.backup_worker)["outcome"] == "false_alarm"

    # The same kind again in that household: a new ticket (the old one is closed), a second false alarm.
    second = _inject_warning(loop, first, hours=30)
    status, body = api.act(second, "acknowledge", staff.primary_worker)
    assert status == 200, body
    api.act(second, "handle", staff.primary_worker, notes="she was in, the heating was on")
    assert api.act(second, "feedback", staff.primary_worker, outcome="false_alarm")[0] == 200
    learned = _detect_ack(loop, second)
    # Two false alarms in a row for this household and kind: its sensitivity went down, within bounds.
    assert (learned.detection["sensitivity_before"], learned.detection["sensitivity_after"]) == (1.0, 0.85), learned
    closed = _closed(loop, second, staff.primary_worker)
    assert closed["notes"][-1] == f"detection: {learned.reason}"  # the ticket says what detection learned

    # A confirmed emergency never lowers sensitivity (another household or kind).
    other = next(a for a in opened.values() if a.command.ticket_kind not in ("meter_offline", kind)
                 and a.household_id != household)
    person = roster[other.household_id].staff.primary_worker
    assert api.act(other.ticket_id, "handle", person, notes="found on the floor, ambulance called")[0] == 200
    assert api.act(other.ticket_id, "feedback", person, outcome="confirmed_emergency")[0] == 200
    learned = _detect_ack(loop, other.ticket_id)
    assert learned.detection["sensitivity_after"] >= learned.detection["sensitivity_before"]
    _closed(loop, other.ticket_id, person)

    # Loop metrics: outcomes, the valid-alert rate, escalations, times to handle and close.
    metrics = _metrics(worker)
    assert metrics['elderwatch_tickets_outcomes_total{outcome="false_alarm"}'] == 2
    assert metrics['elderwatch_tickets_outcomes_total{outcome="confirmed_emergency"}'] == 1
    assert metrics["elderwatch_tickets_valid_alert_ratio"] == pytest.approx(1 / 3)
    assert metrics["elderwatch_tickets_escalations_total"] >= len(high)
    assert metrics["elderwatch_tickets_seconds_to_close_count"] == 3
    assert metrics['elderwatch_detect_sensitivity_changes_total{direction="down"}'] == 1


def test_the_ticket_table_rebuilds_from_the_topics_alone(loop):
    bootstrap, worker = loop["bootstrap"], loop["worker"]
    everything = [a for step in STEPS for a in acks(bootstrap, worker, step, timeout=30, settle=2)]
    from dispatch.audit import rebuild

    audit = rebuild(everything)
    assert not audit.problems, audit.problems
    # The live table, as its changelog holds it (latest value per household).
    live: dict[str, dict] = {}
    for record in read_topic(bootstrap, changelog_topic(worker.prefix, TICKET_DESKS), timeout=30,
                             predicate=lambda records: bool(records)):
        if record.value:
            live[record.key.decode()] = HouseholdDesk.model_validate_json(record.value).tickets
    live_tickets = {tid: t for tickets in live.values() for tid, t in tickets.items()}
    assert live_tickets and audit.tickets == live_tickets
    # And every command applied was on its step topic (nothing reached a ticket around the topics).
    on_topics = defaultdict(set)
    for step in STEPS:
        for record in read_topic(bootstrap, worker.topic(f"tickets.{step}"), timeout=30,
                                 predicate=lambda records: bool(records)):
            command = json.loads(record.value)
            on_topics[command["ticket_id"]].add(command["event"]["idempotency_key"])
    for ack in everything:
        if ack.result.value == "applied":
            assert ack.idempotency_key in on_topics[ack.command.ticket_id]


# -- helpers ------------------------------------------------------------------------------------

def _detect_ack(loop, ticket_id: str) -> TicketAck:
    found = acks(loop["bootstrap"], loop["worker"], "feedback", timeout=60, settle=0.5, predicate=lambda acks: any(
        a.by == "detect" and a.ticket_id == ticket_id for a in acks))
    return next(a for a in found if a.by == "detect" and a.ticket_id == ticket_id)


def _closed(loop, ticket_id: str, staff: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        ticket = loop["api"].ticket(ticket_id, staff)
        if ticket["state"] == "closed" or time.monotonic() > deadline:
            assert ticket["state"] == "closed", ticket
            return ticket
        time.sleep(0.3)


def _inject_warning(loop, opening: TicketAck, hours: float) -> str:
    """Another episode of the same household and kind, ``hours`` after the first (as detect would send it)."""
    first = opening.command.warning
    later = AnomalyWarning.for_episode(
        household_id=first.household_id, kind=first.kind, meter=first.meter,
        episode_start=first.episode_start + timedelta(hours=hours), detected_at=first.detected_at + timedelta(hours=hours),
        score=first.score, severity=first.severity, summary=first.summary)
    produce(loop["bootstrap"], loop["worker"].topic("anomalies"),
            [(later.household_id.encode(), later.model_dump_json().encode())])
    opened = acks(loop["bootstrap"], loop["worker"], "dispatch", timeout=60, settle=0.5, predicate=lambda acks: any(
        a.ticket_id == later.warning_id for a in acks))
    assert any(a.ticket_id == later.warning_id and a.ticket.state.value == "dispatched" for a in opened)
    return later.warning_id


def _metrics(worker: WorkerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in lines if line and line[0] != "#"}
