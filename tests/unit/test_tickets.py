"""The ticket state machine, table-driven: every state against every event."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count

import pytest

from dispatch.tickets import (
    ALLOWED,
    POLICY,
    TERMINAL,
    Event,
    EventKind,
    Outcome,
    State,
    Ticket,
    apply,
    due,
    open_ticket,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
CHAIN = ("w-1", "w-2", "s-1")
_keys = count()


def ticket(kind: str = "inactivity", severity: str = "high") -> Ticket:
    return open_ticket(f"hh-000001/{kind}/2026-03-01T02:00:00+00:00", household_id="hh-000001", kind=kind,
                       severity=severity, chain=CHAIN, at=T0)


def event(kind: EventKind, minutes: float = 0, actor: str = "w-1", **fields) -> Event:
    """A well-formed event of this kind (the fields each kind needs are filled in)."""
    at = T0 + timedelta(minutes=minutes)
    defaults = {
        EventKind.HANDLE: {"notes": "visited; she had a cold and slept in"},
        EventKind.FEEDBACK: {"outcome": Outcome.BENIGN_EXPLAINED},
        EventKind.SNOOZE: {"until": at + timedelta(hours=2)},
        EventKind.CANCEL: {"reason": "test household"},
        EventKind.ESCALATE: {"reason": "the emergency contact did not answer"},
        EventKind.WARNING: {"warning_id": "hh-000001/inactivity/2026-03-01T09:00:00+00:00"},
    }.get(kind, {})
    if kind in (EventKind.DISPATCH, EventKind.ACK_TIMEOUT, EventKind.HANDLE_TIMEOUT, EventKind.WAKE,
                EventKind.FEEDBACK_TIMEOUT, EventKind.CONDITION_CLEARED, EventKind.CLOSE) and actor == "w-1":
        actor = "system"
    return Event(kind=kind, idempotency_key=f"k{next(_keys)}", actor=actor, at=at, **{**defaults, **fields})


def run(t: Ticket, *kinds: EventKind) -> Ticket:
    for i, kind in enumerate(kinds):
        r = apply(t, event(kind, minutes=i))
        assert r.changed, (kind, r.rejected)
        t = r.ticket
    return t


# a path into every state, from a fresh ticket
PATH = {
    State.OPEN: (),
    State.DISPATCHED: (EventKind.DISPATCH,),
    State.ESCALATED: (EventKind.DISPATCH, EventKind.ACK_TIMEOUT),
    State.ACCEPTED: (EventKind.DISPATCH, EventKind.ACKNOWLEDGE),
    State.SNOOZED: (EventKind.DISPATCH, EventKind.ACKNOWLEDGE, EventKind.SNOOZE),
    State.HANDLED: (EventKind.DISPATCH, EventKind.ACKNOWLEDGE, EventKind.HANDLE),
    State.FEEDBACK_RECORDED: (EventKind.DISPATCH, EventKind.ACKNOWLEDGE, EventKind.HANDLE, EventKind.FEEDBACK),
    State.CLOSED: (EventKind.DISPATCH, EventKind.ACKNOWLEDGE, EventKind.HANDLE, EventKind.FEEDBACK, EventKind.CLOSE),
    State.CANCELLED: (EventKind.CANCEL,),
}

# where each allowed event leads (the state machine in one table)
NEXT = {
    (State.OPEN, EventKind.DISPATCH): State.DISPATCHED,
    (State.DISPATCHED, EventKind.ACKNOWLEDGE): State.ACCEPTED,
    (State.DISPATCHED, EventKind.ACK_TIMEOUT): State.ESCALATED,
    (State.DISPATCHED, EventKind.HANDLE): State.HANDLED,
    (State.DISPATCHED, EventKind.ESCALATE): State.ESCALATED,
    (State.ESCALATED, EventKind.ESCALATE): State.ESCALATED,
    (State.ACCEPTED, EventKind.ESCALATE): State.ESCALATED,
    (State.HANDLED, EventKind.FEEDBACK_TIMEOUT): State.HANDLED,
    (State.ESCALATED, EventKind.ACKNOWLEDGE): State.ACCEPTED,
    (State.ESCALATED, EventKind.ACK_TIMEOUT): State.ESCALATED,
    (State.ESCALATED, EventKind.HANDLE): State.HANDLED,
    (State.ACCEPTED, EventKind.HANDLE): State.HANDLED,
    (State.ACCEPTED, EventKind.HANDLE_TIMEOUT): State.ACCEPTED,
    (State.ACCEPTED, EventKind.SNOOZE): State.SNOOZED,
    (State.SNOOZED, EventKind.WAKE): State.ACCEPTED,
    (State.SNOOZED, EventKind.HANDLE): State.HANDLED,
    (State.HANDLED, EventKind.FEEDBACK): State.FEEDBACK_RECORDED,
    (State.FEEDBACK_RECORDED, EventKind.CLOSE): State.CLOSED,
}


def test_every_state_has_a_path():
    assert set(PATH) == set(State)
    for state, path in PATH.items():
        assert run(ticket(), *path).state is state


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("kind", list(EventKind))
def test_every_state_against_every_event(state, kind):
    before = run(ticket(), *PATH[state])
    r = apply(before, event(kind, minutes=30))
    if kind in ALLOWED[state]:
        assert r.changed and r.rejected is None
        assert r.ticket.version == before.version + 1
        if kind not in (EventKind.WARNING, EventKind.CONDITION_CLEARED, EventKind.CANCEL):  # own tests below
            assert r.ticket.state is NEXT[(state, kind)]
    else:
        assert not r.changed and r.rejected and r.rejected.startswith(f"{kind.value}: not allowed from {state.value}")
        assert r.ticket is before  # a rejection changes nothing


def test_table_covers_every_allowed_transition():
    for state, kinds in ALLOWED.items():
        for kind in kinds:
            if kind not in (EventKind.WARNING, EventKind.CONDITION_CLEARED, EventKind.CANCEL):
                assert (state, kind) in NEXT, (state, kind)


@pytest.mark.parametrize("state", [s for s in State if s not in TERMINAL])
def test_every_transition_is_idempotent(state):
    t = run(ticket(), *PATH[state])
    for kind in ALLOWED[state]:
        e = event(kind, minutes=40)
        first = apply(t, e)
        assert first.changed
        again = apply(first.ticket, e)
        assert again.duplicate and not again.changed and again.ticket is first.ticket


def test_finished_tickets_reject_everything_with_a_clear_reason():
    for state in TERMINAL:
        t = run(ticket(), *PATH[state])
        r = apply(t, event(EventKind.ACKNOWLEDGE))
        assert r.rejected == f"acknowledge: not allowed from {state.value} (allowed: none: the ticket is finished)"


def test_the_whole_loop_records_who_and_when():
    t = ticket()
    steps = [(EventKind.DISPATCH, 0, "system"), (EventKind.ACKNOWLEDGE, 5, "w-1"), (EventKind.HANDLE, 50, "w-1"),
             (EventKind.FEEDBACK, 55, "w-1"), (EventKind.CLOSE, 60, "system")]
    for kind, minutes, actor in steps:
        t = apply(t, event(kind, minutes, actor)).ticket
    assert t.state is State.CLOSED
    assert (t.acknowledged_at - T0, t.handled_at - T0, t.closed_at - T0) == (
        timedelta(minutes=5), timedelta(minutes=50), timedelta(minutes=60))
    assert t.outcome is Outcome.BENIGN_EXPLAINED and t.notes == ("visited; she had a cold and slept in",)
    assert t.assignee == "w-1" and t.deadline is None


@pytest.mark.parametrize("severity,minutes", [("high", 15), ("medium", 60), ("low", 480)])
def test_unacknowledged_dispatch_escalates_along_the_chain(severity, minutes):
    t = apply(ticket(severity=severity), event(EventKind.DISPATCH)).ticket
    assert t.deadline == T0 + timedelta(minutes=minutes)
    assert due(t, T0 + timedelta(minutes=minutes) - timedelta(seconds=1)) is None
    seen = []
    now = T0
    for _ in range(4):
        now = t.deadline
        r = apply(t, due(t, now))
        assert r.changed and r.notify == (r.ticket.assignee,)
        t = r.ticket
        seen.append((t.assignee, t.escalation_level))
    # primary -> backup -> supervisor, then the supervisor again (never forgotten)
    assert seen == [("w-2", 1), ("s-1", 2), ("s-1", 2), ("s-1", 2)]
    assert t.state is State.ESCALATED and t.deadline == now + timedelta(minutes=minutes)


def test_a_deadline_handled_twice_escalates_once():
    t = apply(ticket(), event(EventKind.DISPATCH)).ticket
    late = T0 + timedelta(minutes=20)
    first, second = due(t, late), due(t, late + timedelta(minutes=1))  # two timers, or a restart
    assert first.idempotency_key == second.idempotency_key
    t = apply(t, first).ticket
    assert apply(t, second).duplicate
    assert t.escalation_level == 1


def test_acknowledged_but_unhandled_realerts_the_assignee():
    t = run(ticket(), EventKind.DISPATCH)
    t = apply(t, event(EventKind.ACKNOWLEDGE, 3, actor="w-1")).ticket
    assert t.deadline == T0 + timedelta(minutes=3, hours=1)
    r = apply(t, due(t, t.deadline))
    assert r.ticket.state is State.ACCEPTED and r.ticket.realerts == 1 and r.notify == ("w-1",)
    assert r.ticket.deadline == t.deadline + timedelta(hours=1)


def test_snooze_ends_in_a_realert():
    t = run(ticket(), EventKind.DISPATCH, EventKind.ACKNOWLEDGE)
    until = T0 + timedelta(hours=3)
    t = apply(t, event(EventKind.SNOOZE, 10, until=until)).ticket
    assert t.state is State.SNOOZED and t.deadline == until and due(t, until - timedelta(minutes=1)) is None
    r = apply(t, due(t, until))
    assert r.ticket.state is State.ACCEPTED and r.notify == ("w-1",) and r.ticket.snoozed_until is None


@pytest.mark.parametrize("kind,fields,problem", [
    (EventKind.HANDLE, {"notes": "  "}, "notes are required"),
    (EventKind.FEEDBACK, {"outcome": None}, "an outcome is required"),
    (EventKind.SNOOZE, {"until": T0 - timedelta(minutes=1)}, "'until' must be after the event time"),
    (EventKind.CANCEL, {"reason": ""}, "a reason is required"),
    (EventKind.ACKNOWLEDGE, {"actor": "system"}, "needs a person"),
])
def test_incomplete_events_are_rejected_with_what_is_missing(kind, fields, problem):
    state = {EventKind.HANDLE: State.ACCEPTED, EventKind.FEEDBACK: State.HANDLED, EventKind.SNOOZE: State.ACCEPTED,
             EventKind.CANCEL: State.OPEN, EventKind.ACKNOWLEDGE: State.DISPATCHED}[kind]
    t = run(ticket(), *PATH[state])
    actor = fields.pop("actor", "w-1")
    r = apply(t, event(kind, actor=actor, **fields))
    assert not r.changed and problem in r.rejected and r.ticket is t


def test_welfare_ticket_stays_open_when_the_condition_clears():
    t = run(ticket("inactivity"), EventKind.DISPATCH)
    r = apply(t, event(EventKind.CONDITION_CLEARED, 20))
    assert r.ticket.state is State.DISPATCHED and r.ticket.condition_cleared and r.ticket.severity == "low"
    # once someone has taken it, clearing keeps its severity
    t = run(ticket("surge", "medium"), EventKind.DISPATCH, EventKind.ACKNOWLEDGE)
    r = apply(t, event(EventKind.CONDITION_CLEARED, 20))
    assert r.ticket.state is State.ACCEPTED and r.ticket.severity == "medium"


def test_meter_offline_closes_itself_when_the_meter_reports_again():
    t = run(ticket("meter_offline", "info"), EventKind.DISPATCH)
    r = apply(t, event(EventKind.CONDITION_CLEARED, 90))
    assert r.ticket.state is State.CLOSED and r.ticket.outcome is Outcome.METER_FAULT


def test_new_warnings_attach_once_and_make_a_cleared_ticket_urgent_again():
    t = run(ticket(), EventKind.DISPATCH, EventKind.CONDITION_CLEARED)
    assert t.condition_cleared
    wid = "hh-000001/inactivity/2026-03-01T11:00:00+00:00"
    t = apply(t, event(EventKind.WARNING, 30, actor="system", warning_id=wid)).ticket
    t = apply(t, event(EventKind.WARNING, 31, actor="system", warning_id=wid)).ticket  # another key, same warning
    assert t.warning_ids.count(wid) == 1 and len(t.warning_ids) == 2 and not t.condition_cleared


def test_a_cleared_condition_gives_the_low_deadline_and_its_return_the_old_urgency():
    # timeline: dispatched at t=0 (high: answer within 15 min), cleared at t=5, back at t=40
    t = run(ticket("inactivity", "high"), EventKind.DISPATCH)
    cleared = apply(t, event(EventKind.CONDITION_CLEARED, 5)).ticket
    assert (cleared.severity, cleared.lowered_from) == ("low", "high")
    assert cleared.deadline == T0 + timedelta(minutes=5, hours=8)  # no escalation at 15 min for a cleared one
    assert due(cleared, T0 + timedelta(minutes=16)) is None
    back = apply(cleared, event(EventKind.WARNING, 40, actor="system",
                                warning_id="hh-000001/inactivity/2026-03-01T11:00:00+00:00")).ticket
    assert (back.severity, back.lowered_from) == ("high", None) and not back.condition_cleared
    assert back.deadline == T0 + timedelta(minutes=40 + 15)  # high again: 15 minutes from now
    # cleared twice: still remembers the first severity
    twice = apply(apply(t, event(EventKind.CONDITION_CLEARED, 5)).ticket, event(EventKind.CONDITION_CLEARED, 6)).ticket
    assert twice.lowered_from == "high"


def test_a_ticket_needs_someone_to_ask():
    with pytest.raises(ValueError, match="at least one person"):
        open_ticket("w", household_id="hh-1", kind="inactivity", severity="high", chain=(), at=T0)


def test_policy_defaults_follow_the_issue():
    assert POLICY.ack_timeout["high"] == timedelta(minutes=15)
