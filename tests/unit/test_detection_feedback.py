"""Staff feedback turns a household's sensitivity (rules in detectors/feedback.py): one case per rule,
then state (idempotency, dumps/loads, old pickles), then what it is for: fewer warnings."""

from __future__ import annotations

import hashlib
import json
import pickle
import zlib
from datetime import datetime, timedelta, timezone

import pytest

from detectors.feedback import KEEP_KEYS, FeedbackEffect
from detectors.monitor import SENSITIVITY_BOUNDS, HouseholdMonitor, MonitorConfig
from schemas.anomaly import AnomalyKind

FA, BENIGN, HELP, EMERGENCY = "false_alarm", "benign_explained", "needed_help", "confirmed_emergency"
NOT_HOME, FAULT = "not_home", "meter_fault"


def _record(monitor: HouseholdMonitor, kind: str, outcomes: list[str]) -> list[FeedbackEffect]:
    return [monitor.record_feedback(kind, outcome, f"ticket-{i}/closed") for i, outcome in enumerate(outcomes)]


CASES = [
    # one not-needed visit can be chance: nothing changes yet
    pytest.param("inactivity", [FA], 1.0, 1.0, None, id="one-false-alarm-does-not-lower"),
    # two in a row are a pattern: x0.85
    pytest.param("inactivity", [FA, FA], 1.0, 0.85, None, id="two-false-alarms-lower"),
    # a benign explanation (heater, visitors) is as not-needed as a false alarm
    pytest.param("surge", [BENIGN, FA], 1.0, 0.85, None, id="benign-counts-the-same"),
    # the count restarts after lowering: the third alone does not lower again, the fourth does
    pytest.param("surge", [FA] * 3, 1.0, 0.85, None, id="count-restarts-after-lowering"),
    pytest.param("surge", [FA] * 4, 1.0, 0.85 ** 2, None, id="lowers-step-by-step"),
    # someone needed help in between: the count starts again
    pytest.param("night_activity", [FA, HELP, FA], 1.0, 1.0, None, id="needed-help-resets-the-count"),
    # however many false alarms, never below the bound
    pytest.param("inactivity", [FA] * 20, 1.0, SENSITIVITY_BOUNDS[0], None, id="stops-at-the-lower-bound"),
    # a real emergency after lowering: back to 1.0 (the lowered threshold nearly missed it)
    pytest.param("continuous_flow", [FA, FA, FA, FA, EMERGENCY], 1.0, 1.0, None, id="emergency-restores"),
    # ... and it never lowers a raised one
    pytest.param("continuous_flow", [EMERGENCY], 1.2, 1.2, None, id="emergency-never-lowers"),
    # nobody home: nothing changes, away mode proposed for the kinds an empty home explains
    pytest.param("inactivity", [NOT_HOME, NOT_HOME], 1.0, 1.0, "away_mode", id="not-home-proposes-away-mode"),
    pytest.param("decline", [NOT_HOME], 1.0, 1.0, "away_mode", id="not-home-decline"),
    pytest.param("continuous_flow", [NOT_HOME], 1.0, 1.0, None, id="not-home-no-proposal-for-flow"),
    # not_home neither counts nor resets: the two false alarms around it still lower
    pytest.param("inactivity", [FA, NOT_HOME, FA], 1.0, 0.85, None, id="not-home-is-not-counted"),
    # a faulty meter says nothing about the person
    pytest.param("surge", [FAULT, FAULT, FAULT], 1.0, 1.0, None, id="meter-fault-changes-nothing"),
    # meter_offline is about data, and an unknown kind has no sensitivity: nothing changes
    pytest.param("meter_offline", [FA, FA], 1.0, 1.0, None, id="meter-offline-changes-nothing"),
    pytest.param("gas_leak", [FA, FA], 1.0, 1.0, None, id="unknown-kind-changes-nothing"),
]


@pytest.mark.parametrize("kind, outcomes, start, expected, proposal", CASES)
def test_rule(kind, outcomes, start, expected, proposal):
    monitor = HouseholdMonitor("hh-000001")
    if start != 1.0:
        monitor.adjust_sensitivity(AnomalyKind(kind), start)
    effects = _record(monitor, kind, outcomes)
    last = effects[-1]
    assert last.sensitivity_after == pytest.approx(expected)
    assert monitor.sensitivity.get(kind, 1.0) == pytest.approx(expected)
    assert last.proposal == proposal and last.kind == kind and last.outcome == outcomes[-1]
    assert not any(e.duplicate for e in effects)
    # each effect reports its own step, and only the not-needed ones ever lower
    for effect, outcome in zip(effects, outcomes):
        assert effect.reason
        if effect.sensitivity_after < effect.sensitivity_before:
            assert outcome in (FA, BENIGN) and effect.sensitivity_after == pytest.approx(
                max(SENSITIVITY_BOUNDS[0], 0.85 * effect.sensitivity_before))
    # per kind: the other kinds are untouched
    assert all(k == kind for k in monitor.sensitivity)


def test_reasons_say_what_happened():
    monitor = HouseholdMonitor("hh-000001")
    reasons = [e.reason for e in _record(monitor, "inactivity", [FA, FA])]
    assert reasons[1] == "2 not needed in a row for inactivity: sensitivity 1.00 -> 0.85"
    reasons = [e.reason for e in _record(monitor, "surge", [FA] * 20)]
    assert reasons[-1] == "2 not needed in a row for surge: sensitivity 0.50 -> 0.50 (its lower bound)"
    assert "meter_offline" in monitor.record_feedback("meter_offline", FA, "x").reason
    assert "unknown kind 'gas_leak'" in monitor.record_feedback("gas_leak", FA, "y").reason


def test_a_repeated_key_changes_nothing():
    monitor = HouseholdMonitor("hh-000001")
    first = monitor.record_feedback("inactivity", FA, "ticket-1/closed")
    again = monitor.record_feedback("inactivity", FA, "ticket-1/closed")  # redelivered
    assert not first.duplicate and again.duplicate
    assert again.sensitivity_before == again.sensitivity_after == 1.0
    # the repeat did not count: one more *new* false alarm is needed to lower
    assert monitor.record_feedback("inactivity", FA, "ticket-2/closed").sensitivity_after == pytest.approx(0.85)


def test_only_the_last_keys_are_kept():
    monitor = HouseholdMonitor("hh-000001")
    for i in range(KEEP_KEYS + 10):
        monitor.record_feedback("surge", FAULT, f"k{i}")
    assert len(monitor.feedback.keys) == KEEP_KEYS
    assert monitor.record_feedback("surge", FAULT, f"k{KEEP_KEYS + 9}").duplicate  # recent: remembered
    assert not monitor.record_feedback("surge", FAULT, "k0").duplicate  # oldest: forgotten


def test_effect_is_json_ready():
    effect = _record(HouseholdMonitor("hh-000001"), "inactivity", [FA, FA])[-1]
    data = json.loads(json.dumps(effect.as_dict()))
    assert data == {"kind": "inactivity", "outcome": FA, "duplicate": False, "sensitivity_before": 1.0,
                    "sensitivity_after": 0.85, "proposal": None, "reason": effect.reason}


def test_state_survives_dumps_and_loads():
    monitor = HouseholdMonitor("hh-000001")
    monitor.record_feedback("inactivity", FA, "ticket-1/closed")
    copy = HouseholdMonitor.loads(monitor.dumps())
    assert copy.record_feedback("inactivity", FA, "ticket-1/closed").duplicate  # the key survived
    assert copy.record_feedback("inactivity", FA, "ticket-2/closed").sensitivity_after == pytest.approx(0.85)
    assert HouseholdMonitor.loads(copy.dumps()).sensitivity == {AnomalyKind.INACTIVITY: pytest.approx(0.85)}
    # bounded: a full memory of uuid-like keys (kept as digests) takes well under 1 KB of the ~4 KB
    for i in range(KEEP_KEYS):
        copy.record_feedback("surge", FAULT, f"{hashlib.sha256(bytes([i])).hexdigest()[:32]}/closed")
    assert len(copy.dumps()) - len(monitor.dumps()) < 1000


def test_a_monitor_pickled_before_feedback_still_loads_and_works():
    old = HouseholdMonitor("hh-000001", "Europe/London")
    old.adjust_sensitivity(AnomalyKind.SURGE, 0.9)
    del old.feedback  # what a monitor saved before feedback existed looks like
    data = zlib.compress(pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL), 1)
    # pickled records (before state format 1) load only when the operator asks (tests/unit/test_state_format.py)
    monitor = HouseholdMonitor.loads(data, migrate_pickled=True)
    assert monitor.sensitivity == {AnomalyKind.SURGE: 0.9}
    _record(monitor, "surge", [FA, FA])
    assert monitor.sensitivity[AnomalyKind.SURGE] == pytest.approx(0.9 * 0.85)


# -- what it is for: after false alarms, a borderline anomaly no longer warns ---------------------------

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
FLOW_FROM = 96 * 29 + 40  # day 30, 10:00


def _household(litres: float):
    """The monitor.py doctest's household: water now and then in the day; from day 30, 10:00,
    ``litres`` every quarter-hour (a tap left on)."""
    for i in range(1, 96 * 30):
        t = T0 + timedelta(minutes=15 * i)
        yield "water", t, (litres if i >= FLOW_FROM else 4.0 if 7 <= t.hour < 22 and i % 3 == 0 else 0.0)


@pytest.fixture(scope="module")
def warm() -> bytes:
    """A monitor after 29 days of normal life, saved just before the tap is left on. Every operating
    point at 1.0, so the scores below are the detector's and the feedback rule's alone."""
    monitor = HouseholdMonitor("hh-000001", config=MonitorConfig(sensitivity=()))
    for meter, t, litres in _household(0.0):
        if t >= T0 + timedelta(minutes=15 * FLOW_FROM):
            break
        monitor.process(meter, t, litres)
    return monitor.dumps()


def _flow_warnings(state: bytes, litres: float, outcomes: list[str]) -> list:
    monitor = HouseholdMonitor.loads(state)
    _record(monitor, "continuous_flow", outcomes)
    found = []
    for meter, t, value in _household(litres):
        if t >= T0 + timedelta(minutes=15 * FLOW_FROM):
            found += monitor.process(meter, t, value)
    return [w for w in found if w.kind is AnomalyKind.CONTINUOUS_FLOW]


def test_after_false_alarms_a_borderline_flow_no_longer_warns(warm):
    # 2.25 L a quarter-hour is 9 L/h, just over the 8 L/h floor: score 1.125
    assert [w.score for w in _flow_warnings(warm, 2.25, [])] == [1.125]
    assert _flow_warnings(warm, 2.25, [FA]) != []  # one false alarm is not enough
    assert _flow_warnings(warm, 2.25, [FA, BENIGN]) == []  # two: x0.85, below 1
    assert _flow_warnings(warm, 2.25, [FA, BENIGN, EMERGENCY]) != []  # an emergency restores it


def test_the_bound_keeps_a_strong_flow_warning(warm):
    # the doctest's tap (6 L a quarter-hour): even at the 0.5 bound it warns, and no later
    full, lowest = _flow_warnings(warm, 6.0, []), _flow_warnings(warm, 6.0, [FA] * 20)
    assert len(full) == len(lowest) == 1 and lowest[0].detected_at == full[0].detected_at
    assert lowest[0].score == pytest.approx(SENSITIVITY_BOUNDS[0] * full[0].score, abs=0.002)


# -- the detect stage learns from what the ticket stage applied (tickets.feedback.ack), nothing else ----------

class FakeTopic:
    """A topic that records what is sent to it (no broker)."""

    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key=None, value=None):
        self.sent.append((key, value))


def _fake_topics():
    from schemas.tickets import Step
    from streams.app import Topics

    t = lambda name: FakeTopic(name)  # noqa: E731
    return Topics(raw=t("readings.raw"), by_household=t("readings.by-household"), validated=t("readings.validated"),
                  deadletter=t("readings.deadletter"), anomalies=t("anomalies"),
                  ticket_steps={s: t(f"tickets.{s.value}") for s in Step},
                  ticket_acks={s: t(f"tickets.{s.value}.ack") for s in Step},
                  roster=t("households.roster"), away=t("households.away"),
                  notifications_pending=t("notifications.pending"))


def _detect_stage(body):
    """Runs ``body(handle, topics, table, metrics)`` against the real detect stage's handler (no broker)."""
    import asyncio

    from streams.metrics import DetectMetrics
    from test_detect_roster import detect_stage

    async def main():
        topics, metrics = _fake_topics(), DetectMetrics()
        stage = detect_stage(topics, metrics, timezones={}, clock=lambda: T0 + timedelta(days=40))
        await body(stage.handle, topics, stage.table, metrics)

    asyncio.run(main())


def _handled_desk(household_id: str):
    """A desk whose ticket w-1 has handled: it waits for its outcome."""
    from dispatch.desk import HouseholdDesk
    from dispatch.tickets import State, open_ticket

    ticket = open_ticket(f"{household_id}/inactivity/2026-02-05T10:00:00+00:00", household_id=household_id,
                         kind="inactivity", severity="high", chain=("w-1", "w-2"), at=T0)
    handled = ticket.model_copy(update={"state": State.HANDLED, "assignee": "w-1", "deadline": None})
    return HouseholdDesk(household_id=household_id, tickets={handled.ticket_id: handled}), handled


def _feedback(ticket, staff: str, key: str, outcome: str | None = FA):
    from dispatch.tickets import Event, EventKind
    from schemas.tickets import Step, TicketCommand

    event = Event(kind=EventKind.FEEDBACK, idempotency_key=key, actor=staff, at=T0 + timedelta(hours=3),
                  outcome=outcome)
    return TicketCommand(step=Step.FEEDBACK, ticket_id=ticket.ticket_id, household_id=ticket.household_id,
                         ticket_kind=ticket.kind, event=event)


def _ticket_stage(desk, commands):
    """What the ticket stage acks for each command, applied in order (dispatch.desk.handle: the real rules)."""
    from dispatch.desk import RosterRules, handle

    acks = []
    for command in commands:
        result = handle(desk, command, T0 + timedelta(hours=3), RosterRules())
        desk = result.desk
        acks += [a for a in result.acks if a.step.value == "feedback"]
    return acks


def test_only_the_applied_outcome_teaches_not_a_second_staff_members():
    from schemas.tickets import AckResult, TicketAck

    hh = "hh-000007"
    desk, ticket = _handled_desk(hh)
    # two staff at once, two keys: the ticket stage applies the first and rejects the second
    first, second = _feedback(ticket, "w-1", "k-first"), _feedback(ticket, "w-2", "k-second", BENIGN)
    acks = _ticket_stage(desk, [first, second])
    assert [(a.idempotency_key, a.result) for a in acks] == [("k-first", AckResult.APPLIED),
                                                            ("k-second", AckResult.REJECTED)]

    async def body(handle, topics, table, metrics):
        from streams.guard import Source

        for offset, ack in enumerate(acks):
            await handle(ack.model_dump_json().encode(), hh.encode(), Source("tickets.feedback.ack", 0, offset))
        replies = [TicketAck.model_validate_json(v) for _, v in topics.ticket_acks[Step.FEEDBACK].sent]
        assert [(r.by, r.idempotency_key, r.result) for r in replies] == [("detect", "k-first", AckResult.APPLIED)]
        closes = [TicketCommand.model_validate_json(v) for _, v in topics.ticket_steps[Step.FEEDBACK].sent]
        assert [c.event.kind.value for c in closes] == ["close"] and closes[0].ticket_id == ticket.ticket_id
        # one not-needed outcome learned, so one more lowers (had the rejected benign counted, this would be 0.85²)
        from streams.detect import decode_state
        monitor = HouseholdMonitor.loads(decode_state(table[hh.encode()])[1])
        assert monitor.record_feedback("inactivity", FA, "k-third").sensitivity_after == pytest.approx(0.85)
        assert metrics.feedback.labels(result="applied")._value.get() == 1
        assert topics.deadletter.sent == []  # a rejected outcome is legitimate, not poison

    from schemas.tickets import Step, TicketCommand
    _detect_stage(body)


def test_the_raw_command_its_own_acks_and_other_acks_teach_nothing():
    from dispatch.tickets import Outcome
    from schemas.tickets import AckResult, Step, TicketAck
    from streams.guard import Source

    hh = "hh-000008"
    desk, ticket = _handled_desk(hh)
    applied = _ticket_stage(desk, [_feedback(ticket, "w-1", "k-1")])[0]
    no_outcome = _ticket_stage(desk, [_feedback(ticket, "w-1", "k-none", None)])[0]  # the crash
    assert no_outcome.result is AckResult.REJECTED
    ours = applied.model_copy(update={"by": "detect"})
    duplicate = applied.model_copy(update={"result": AckResult.DUPLICATE})
    no_ticket = applied.model_copy(update={"ticket": None})
    without = applied.model_copy(update={"ticket": applied.ticket.model_copy(update={"outcome": None})})
    assert applied.ticket.outcome is Outcome.FALSE_ALARM

    async def body(handle, topics, table, metrics):
        for offset, ack in enumerate([no_outcome, ours, duplicate, no_ticket, without]):
            await handle(ack.model_dump_json().encode(), hh.encode(), Source("tickets.feedback.ack", 0, offset))
        assert table == {} and topics.ticket_acks[Step.FEEDBACK].sent == [] and topics.deadletter.sent == []
        # the ack topic is all detect reads of the loop: the command on tickets.feedback is not an input any more
        with pytest.raises(KeyError):
            await handle(_feedback(ticket, "w-1", "k-2").model_dump_json().encode(), hh.encode(),
                         Source("tickets.feedback", 0, 9))
        # the applied one teaches, once: a redelivery is acknowledged again as a duplicate and changes nothing
        for offset in (10, 11):
            await handle(applied.model_dump_json().encode(), hh.encode(), Source("tickets.feedback.ack", 0, offset))
        replies = [TicketAck.model_validate_json(v) for _, v in topics.ticket_acks[Step.FEEDBACK].sent]
        assert [r.result for r in replies] == [AckResult.APPLIED, AckResult.DUPLICATE]
        # poison on the ack topic is dead-lettered with its bytes, never a crash
        await handle(b"{not json", hh.encode(), Source("tickets.feedback.ack", 0, 12))
        await handle(applied.model_dump_json().encode(), b"hh-other", Source("tickets.feedback.ack", 0, 13))
        from schemas.dead_letter import DeadLetter
        letters = [DeadLetter.model_validate_json(v) for _, v in topics.deadletter.sent]
        assert [(d.reason.value, d.source_offset, d.stage) for d in letters] == [
            ("not_json", 12, "detect"), ("invalid_field", 13, "detect")]
        assert letters[0].original_value() == b"{not json"

    _detect_stage(body)
