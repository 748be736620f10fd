"""One household's desk (rules in dispatch/desk.py), table-driven: one commented case per rule,
then deadlines, pruning, and a timeline of the whole loop on an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dispatch.desk import KEEP_FINISHED, HouseholdDesk, RosterRules, due_commands, handle, with_away, with_roster
from dispatch.tickets import Event, EventKind, Outcome, State, Ticket, apply
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.households import Household
from schemas.tickets import AckResult, AwayMode, Step, TicketAck, TicketCommand

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
HH = "hh-000001"
RULES = RosterRules(contact_first={"east": "desk-east"})
SYSTEM_KINDS = {EventKind.DISPATCH, EventKind.ACK_TIMEOUT, EventKind.HANDLE_TIMEOUT, EventKind.WAKE,
                EventKind.FEEDBACK_TIMEOUT, EventKind.CONDITION_CLEARED, EventKind.CLOSE}


def at(minutes: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes)


def warning(kind: str = "inactivity", *, started_hours_before: float = 7, detected: datetime = T0,
            severity: str = "high") -> AnomalyWarning:
    """One episode; another ``started_hours_before`` is another episode (another warning id)."""
    return AnomalyWarning.for_episode(household_id=HH, kind=AnomalyKind(kind), meter=None,
                                      episode_start=T0 - timedelta(hours=started_hours_before), detected_at=detected,
                                      score=1.4, severity=Severity(severity), summary="no water since 02:00")


def roster(community: str = "north", primary: str = "w-1", backup: str | None = "w-2",
           supervisor: str | None = "s-1") -> Household:
    return Household(household_id=HH, community=community,
                     staff={"primary_worker": primary, "backup_worker": backup, "supervisor": supervisor})


def away(*, since: datetime | None = at(-60), until: datetime = at(60 * 24 * 3), set_at: datetime = at(-120)) -> AwayMode:
    return AwayMode(household_id=HH, since=since, until=until, set_by="w-1", reason="hospital stay", set_at=set_at)


def command(ticket: Ticket, kind: EventKind, minutes: float, actor: str | None = None, *, key: str | None = None,
            **fields) -> TicketCommand:
    """A well-formed command of this kind at T0 + ``minutes`` (the fields each kind needs are filled in)."""
    defaults = {EventKind.HANDLE: {"notes": "visited; she had a cold and slept in"},
                EventKind.FEEDBACK: {"outcome": Outcome.NEEDED_HELP},
                EventKind.CANCEL: {"reason": "test household"},
                EventKind.ESCALATE: {"reason": "the emergency contact did not answer"}}.get(kind, {})
    actor = actor or ("system" if kind in SYSTEM_KINDS else "w-1")
    event = Event(kind=kind, idempotency_key=key or f"{kind.value}:{minutes}", actor=actor, at=at(minutes),
                  **{**defaults, **fields})
    return TicketCommand.of(ticket, event)


def desk(*warnings: AnomalyWarning, household: Household | None = None, away_mode: AwayMode | None = None,
         rules: RosterRules = RULES) -> HouseholdDesk:
    """A desk that has already handled these warnings (opened or attached), at T0."""
    d = with_away(with_roster(HouseholdDesk(household_id=HH), household), away_mode)
    for w in warnings:
        d = handle(d, TicketCommand.warning_from(w, at=T0), T0, rules).desk
    return d


def one_ack(result) -> TicketAck:
    assert len(result.acks) == 1
    return result.acks[0]


def run(d: HouseholdDesk, *commands: TicketCommand, now: datetime | None = None) -> HouseholdDesk:
    """Apply commands that must all be applied (a set-up, not the thing under test)."""
    for c in commands:
        r = handle(d, c, now or c.event.at, RULES)
        assert one_ack(r).result is AckResult.APPLIED, one_ack(r).reason
        d = r.desk
    return d


INACTIVITY = warning("inactivity")
INACTIVITY_LATER = warning("inactivity", started_hours_before=3)  # same kind, another episode
FLOW = warning("continuous_flow")


# -- who a new ticket asks ----------------------------------------------------------------------

# (warning kind, roster entry, expected chain)
CHAIN_CASES = [
    # the roster's chain, in order: primary worker, backup, supervisor
    pytest.param("inactivity", roster(), ("w-1", "w-2", "s-1"), id="primary-backup-supervisor"),
    # someone twice in the chain is asked once (an escalation to the same person helps nobody)
    pytest.param("inactivity", roster(backup="w-1"), ("w-1", "s-1"), id="duplicate-backup-collapsed"),
    pytest.param("inactivity", roster(supervisor="w-2"), ("w-1", "w-2"), id="duplicate-supervisor-collapsed"),
    # missing backup and supervisor: just the primary worker
    pytest.param("inactivity", roster(backup=None, supervisor=None), ("w-1",), id="primary-only"),
    # a community that phones the emergency contact first puts its contact desk in front
    pytest.param("inactivity", roster(community="east"), ("desk-east", "w-1", "w-2", "s-1"),
                 id="contact-first-desk-in-front"),
    pytest.param("inactivity", roster(community="east", primary="desk-east"), ("desk-east", "w-2", "s-1"),
                 id="contact-desk-also-primary-collapsed"),
    # not on the roster: the duty desk, never nowhere
    pytest.param("inactivity", None, ("duty-desk",), id="no-roster-duty-desk"),
    # a silent meter is data quality: the data-quality desk, not a visit by a community worker
    pytest.param("meter_offline", roster(), ("data-quality-desk",), id="meter-offline-data-quality-desk"),
]


@pytest.mark.parametrize("kind, household, chain", CHAIN_CASES)
def test_a_warning_opens_a_ticket_along_the_chain_and_asks_for_its_dispatch(kind, household, chain):
    before = desk(household=household)
    incoming = warning(kind)
    r = handle(before, TicketCommand.warning_from(incoming, at=T0), at(1), RULES)

    ack = one_ack(r)
    tid = incoming.warning_id
    assert ack.result is AckResult.APPLIED and ack.reason is None
    assert ack.ticket.ticket_id == tid and ack.ticket.state is State.OPEN
    # opened when the warning entered the loop (the command's time); acknowledged when handled
    assert (ack.ticket.opened_at, ack.at) == (T0, at(1))
    assert ack.ticket.chain == chain
    assert r.desk.tickets == {tid: ack.ticket}
    assert r.desk.open_by_kind == {kind: tid}
    assert r.desk.warnings == {tid: incoming}
    # the follow-up is the dispatch, which tells the first person in the chain
    assert [(c.ticket_id, c.event.kind) for c in r.follow_ups] == [(tid, EventKind.DISPATCH)]
    dispatched = one_ack(handle(r.desk, r.follow_ups[0], at(1), RULES))
    assert dispatched.result is AckResult.APPLIED and dispatched.notify == (chain[0],)


# -- what a warning does ------------------------------------------------------------------------

SUPPRESSED_REASON = f"household away until {at(60 * 24 * 3).isoformat()} (set by w-1)"

# (warnings already on the desk, away mode, incoming warning,
#  expected result, reason, follow-up kinds, open ticket per kind afterwards)
WARNING_CASES = [
    # 1. the same warning again (a redelivery, a replay): duplicate, nothing changes
    pytest.param([INACTIVITY], None, INACTIVITY, AckResult.DUPLICATE, None, [],
                 {"inactivity": INACTIVITY.warning_id}, id="same-warning-again-duplicate"),
    # 3. same kind, another episode: attaches to the open ticket (one visit, not two), no new dispatch
    pytest.param([INACTIVITY], None, INACTIVITY_LATER, AckResult.APPLIED,
                 f"attached to open ticket {INACTIVITY.warning_id}", [],
                 {"inactivity": INACTIVITY.warning_id}, id="same-kind-attaches-to-the-open-ticket"),
    # 1. ... and the attached warning delivered again is a duplicate too
    pytest.param([INACTIVITY, INACTIVITY_LATER], None, INACTIVITY_LATER, AckResult.DUPLICATE, None, [],
                 {"inactivity": INACTIVITY.warning_id}, id="attached-warning-again-duplicate"),
    # 4. another kind: a ticket of its own, with its own dispatch
    pytest.param([INACTIVITY], None, FLOW, AckResult.APPLIED, None, [EventKind.DISPATCH],
                 {"inactivity": INACTIVITY.warning_id, "continuous_flow": FLOW.warning_id},
                 id="another-kind-opens-a-second-ticket"),
    # 2. away: absence explains inactivity and decline; no ticket, the away mode in the reason
    pytest.param([], away(), INACTIVITY, AckResult.SUPPRESSED, SUPPRESSED_REASON, [], {},
                 id="away-suppresses-inactivity"),
    pytest.param([], away(), warning("decline"), AckResult.SUPPRESSED, SUPPRESSED_REASON, [], {},
                 id="away-suppresses-decline"),
    # 2. ... but water running, a power surge or night activity in an empty home is what someone must check
    pytest.param([], away(), FLOW, AckResult.APPLIED, None, [EventKind.DISPATCH],
                 {"continuous_flow": FLOW.warning_id}, id="away-does-not-suppress-continuous-flow"),
    pytest.param([], away(), warning("surge"), AckResult.APPLIED, None, [EventKind.DISPATCH],
                 {"surge": warning("surge").warning_id}, id="away-does-not-suppress-surge"),
    pytest.param([], away(), warning("night_activity"), AckResult.APPLIED, None, [EventKind.DISPATCH],
                 {"night_activity": warning("night_activity").warning_id}, id="away-does-not-suppress-night-activity"),
    # 2. away is judged at the warning's data time (detected_at), not at handling time
    pytest.param([], away(since=at(10)), INACTIVITY, AckResult.APPLIED, None, [EventKind.DISPATCH],
                 {"inactivity": INACTIVITY.warning_id}, id="away-not-yet-begun-at-detected-at"),
    pytest.param([], away(since=at(-600), until=T0), INACTIVITY, AckResult.APPLIED, None, [EventKind.DISPATCH],
                 {"inactivity": INACTIVITY.warning_id}, id="away-over-at-detected-at-until-excluded"),
    pytest.param([], away(until=at(60 * 24 * 3)), warning(detected=at(60 * 24 * 3 + 1)), AckResult.APPLIED, None,
                 [EventKind.DISPATCH], {"inactivity": warning(detected=at(60 * 24 * 3 + 1)).warning_id},
                 id="away-over-after-until"),
    # 2. without 'since', away starts when it was set
    pytest.param([], away(since=None, set_at=at(-1)), INACTIVITY, AckResult.SUPPRESSED, SUPPRESSED_REASON, [], {},
                 id="away-without-since-starts-at-set-at"),
]


@pytest.mark.parametrize("before_warnings, away_mode, incoming, result, reason, follow_ups, open_by_kind", WARNING_CASES)
def test_warning_rule(before_warnings, away_mode, incoming, result, reason, follow_ups, open_by_kind):
    before = desk(*before_warnings, household=roster(), away_mode=away_mode)
    r = handle(before, TicketCommand.warning_from(incoming, at=at(5)), at(5), RULES)

    ack = one_ack(r)
    assert (ack.result, ack.reason) == (result, reason)
    assert [c.event.kind for c in r.follow_ups] == follow_ups
    assert r.desk.open_by_kind == open_by_kind
    if result is AckResult.DUPLICATE:
        assert r.desk == before
    if result is AckResult.SUPPRESSED:
        assert ack.ticket is None
        assert r.desk == before.model_copy(update={"suppressed": before.suppressed + 1,
                                                   "suppressed_ids": before.suppressed_ids + (incoming.warning_id,)})
    else:
        assert r.desk.suppressed == before.suppressed
    if reason and reason.startswith("attached"):
        # the warning is on the open ticket, and the ack speaks for that ticket
        assert ack.ticket_id == INACTIVITY.warning_id
        assert r.desk.tickets[INACTIVITY.warning_id].warning_ids == (INACTIVITY.warning_id, incoming.warning_id)
        assert set(r.desk.warnings) == {INACTIVITY.warning_id, incoming.warning_id}
        assert len(r.desk.tickets) == 1


def test_suppressed_warnings_are_counted_one_by_one():
    d = desk(household=roster(), away_mode=away())
    for hours in (7, 6, 5):
        d = handle(d, TicketCommand.warning_from(warning(started_hours_before=hours), at=T0), T0, RULES).desk
    assert d.suppressed == 3 and d.tickets == {}


def test_a_suppressed_warning_delivered_again_is_a_duplicate_not_counted_twice():
    d = desk(household=roster(), away_mode=away())
    command = TicketCommand.warning_from(warning(started_hours_before=7), at=T0)
    d = handle(d, command, T0, RULES).desk
    again = handle(d, command, T0, RULES)
    assert one_ack(again).result is AckResult.DUPLICATE and again.desk == d and d.suppressed == 1


def test_attached_warning_redelivered_after_its_ticket_finished_is_a_duplicate():
    # 1. a replay of the anomalies topic must not reopen an episode someone has already dealt with
    d = desk(INACTIVITY, INACTIVITY_LATER, household=roster())
    d = run(d, command(d.tickets[INACTIVITY.warning_id], EventKind.CANCEL, 10))
    r = handle(d, TicketCommand.warning_from(INACTIVITY_LATER, at=at(20)), at(20), RULES)
    assert one_ack(r).result is AckResult.DUPLICATE and r.follow_ups == [] and r.desk == d


# -- every other command is the state machine on its ticket ---------------------------------------

def _opened() -> HouseholdDesk:
    return desk(INACTIVITY, household=roster())


def _dispatched() -> HouseholdDesk:
    d = _opened()
    return run(d, command(d.tickets[INACTIVITY.warning_id], EventKind.DISPATCH, 0))


TICKET = desk(INACTIVITY, household=roster()).tickets[INACTIVITY.warning_id]
STRANGER = TICKET.model_copy(update={"ticket_id": f"{HH}/surge/2026-03-01T02:00:00+00:00", "kind": "surge"})

# (desk before, command, expected result, reason ('state machine': apply's own), notify)
COMMAND_CASES = [
    # a command for a ticket the desk does not have (never opened, or pruned)
    pytest.param(_dispatched, command(STRANGER, EventKind.ACKNOWLEDGE, 5), AckResult.REJECTED, "unknown ticket", (),
                 id="unknown-ticket-rejected"),
    # not allowed in this state: the state machine's reason, the desk unchanged
    pytest.param(_dispatched, command(TICKET, EventKind.CLOSE, 5), AckResult.REJECTED, "state machine", (),
                 id="illegal-transition-rejected"),
    # allowed, but incomplete: the state machine's reason too
    pytest.param(_dispatched, command(TICKET, EventKind.ACKNOWLEDGE, 5, actor="system"), AckResult.REJECTED,
                 "state machine", (), id="incomplete-command-rejected"),
    # the same command again: duplicate, nobody told twice
    pytest.param(_dispatched, command(TICKET, EventKind.DISPATCH, 0), AckResult.DUPLICATE, None, (),
                 id="same-command-again-duplicate"),
    # allowed: applied, and whoever must be told is named
    pytest.param(_opened, command(TICKET, EventKind.DISPATCH, 0), AckResult.APPLIED, None, ("w-1",),
                 id="allowed-command-applied"),
]


@pytest.mark.parametrize("make_desk, incoming, result, reason, notify", COMMAND_CASES)
def test_command_rule(make_desk, incoming, result, reason, notify):
    before = make_desk()
    r = handle(before, incoming, at(5), RULES)

    ack = one_ack(r)
    if reason == "state machine":
        reason = apply(before.tickets[incoming.ticket_id], incoming.event, RULES.policy).rejected
        assert reason
    assert (ack.result, ack.reason, ack.notify) == (result, reason, notify)
    assert r.follow_ups == []
    if result is AckResult.APPLIED:
        assert r.desk.tickets[incoming.ticket_id] == ack.ticket and ack.ticket.version == 1
    else:
        assert r.desk == before


def test_after_close_the_next_warning_of_the_kind_opens_a_new_ticket():
    d = _dispatched()
    t = d.tickets[INACTIVITY.warning_id]
    d = run(d, command(t, EventKind.ACKNOWLEDGE, 5), command(t, EventKind.HANDLE, 30),
            command(t, EventKind.FEEDBACK, 40), command(t, EventKind.CLOSE, 41))
    assert d.open_by_kind == {}

    # the closed episode's warning again: still a duplicate, the closed ticket is not reopened
    r = handle(d, TicketCommand.warning_from(INACTIVITY, at=at(50)), at(50), RULES)
    assert one_ack(r).result is AckResult.DUPLICATE and r.desk == d

    # a new episode: a new ticket, dispatched; the closed one stays on the desk, closed
    r = handle(d, TicketCommand.warning_from(INACTIVITY_LATER, at=at(60)), at(60), RULES)
    ack = one_ack(r)
    assert (ack.result, ack.reason, ack.ticket.ticket_id) == (AckResult.APPLIED, None, INACTIVITY_LATER.warning_id)
    assert [c.event.kind for c in r.follow_ups] == [EventKind.DISPATCH]
    assert r.desk.open_by_kind == {"inactivity": INACTIVITY_LATER.warning_id}
    assert r.desk.tickets[INACTIVITY.warning_id].state is State.CLOSED


# -- finished tickets leave the desk ---------------------------------------------------------------

# (how the ticket finished, how long before the next change to the desk, kept?)
PRUNE_CASES = [
    # finished a moment less than KEEP_FINISHED ago: still on the desk (and in the staff API)
    pytest.param(EventKind.CLOSE, KEEP_FINISHED - timedelta(seconds=1), True, id="closed-recently-kept"),
    # KEEP_FINISHED ago: off the desk, with its warnings (the topics keep the history)
    pytest.param(EventKind.CLOSE, KEEP_FINISHED, False, id="closed-long-ago-pruned"),
    pytest.param(EventKind.CANCEL, KEEP_FINISHED + timedelta(days=1), False, id="cancelled-long-ago-pruned"),
]


@pytest.mark.parametrize("finish, age, kept", PRUNE_CASES)
def test_finished_tickets_are_pruned_after_keep_finished(finish, age, kept):
    d = desk(INACTIVITY, INACTIVITY_LATER, household=roster())
    t = d.tickets[INACTIVITY.warning_id]
    if finish is EventKind.CLOSE:
        d = run(d, command(t, EventKind.DISPATCH, 0), command(t, EventKind.HANDLE, 30, actor="w-1"),
                command(t, EventKind.FEEDBACK, 40), command(t, EventKind.CLOSE, 41))
    else:
        d = run(d, command(t, EventKind.CANCEL, 41))
    finished_at = at(41)

    # any change to the desk prunes: here a new warning of another kind
    now = finished_at + age
    r = handle(d, TicketCommand.warning_from(FLOW, at=now), now, RULES)

    assert (INACTIVITY.warning_id in r.desk.tickets) is kept
    assert (INACTIVITY.warning_id in r.desk.warnings) is kept
    assert (INACTIVITY_LATER.warning_id in r.desk.warnings) is kept  # the attached warning goes with its ticket
    assert FLOW.warning_id in r.desk.tickets and FLOW.warning_id in r.desk.warnings  # the open one stays


# -- deadlines --------------------------------------------------------------------------------------

# (desk before, now, expected due command kinds)
DUE_CASES = [
    # a new ticket is due at once: its dispatch (sent again if the first was lost)
    pytest.param(_opened, T0, [EventKind.DISPATCH], id="new-ticket-due-dispatch"),
    # dispatched at T0 (high: 15 minutes to acknowledge): nothing before the deadline ...
    pytest.param(_dispatched, at(15) - timedelta(seconds=1), [], id="before-ack-deadline-nothing"),
    # ... and the ack timeout from the deadline on
    pytest.param(_dispatched, at(15), [EventKind.ACK_TIMEOUT], id="at-ack-deadline-ack-timeout"),
    pytest.param(_dispatched, at(40), [EventKind.ACK_TIMEOUT], id="after-ack-deadline-ack-timeout"),
    # nothing on the desk, nothing due
    pytest.param(lambda: desk(household=roster()), at(60), [], id="empty-desk-nothing"),
]


@pytest.mark.parametrize("make_desk, now, kinds", DUE_CASES)
def test_due_commands(make_desk, now, kinds):
    d = make_desk()
    commands = due_commands(d, now)
    assert [c.event.kind for c in commands] == kinds
    assert all(c.ticket_id == INACTIVITY.warning_id for c in commands)
    # asked twice (two timers, a restart): the same keys, so applied once
    assert [c.event.idempotency_key for c in due_commands(d, now)] == [c.event.idempotency_key for c in commands]


def test_a_lost_dispatch_is_sent_again_with_the_follow_ups_key():
    r = handle(desk(household=roster()), TicketCommand.warning_from(INACTIVITY, at=T0), T0, RULES)
    [again] = due_commands(r.desk, at(1))
    assert (again.event.kind, again.event.idempotency_key) == (EventKind.DISPATCH, r.follow_ups[0].event.idempotency_key)


# -- the whole loop, as a timeline -----------------------------------------------------------------

def test_timeline_escalation_to_the_supervisor_then_the_loop_closes():
    d = desk(household=roster())  # chain w-1, w-2, s-1; high severity: 15 minutes to acknowledge
    acks: list[TicketAck] = []

    def step(c: TicketCommand, now: datetime) -> TicketAck:
        nonlocal d
        r = handle(d, c, now, RULES)
        d = r.desk
        acks.extend(r.acks)
        for follow_up in r.follow_ups:  # the stage sends them; they come back on their topic
            step(follow_up, now)
        return r.acks[0]

    def tick(now: datetime) -> list[TicketAck]:
        """The deadline timer at ``now``."""
        return [step(c, now) for c in due_commands(d, now)]

    # t=0: the warning opens a ticket and its dispatch tells the primary worker
    opened = step(TicketCommand.warning_from(INACTIVITY, at=T0), T0)
    tid = opened.ticket.ticket_id
    assert (opened.result, opened.ticket.state) == (AckResult.APPLIED, State.OPEN)
    assert (acks[-1].command.event.kind, acks[-1].notify, acks[-1].ticket.state) == (
        EventKind.DISPATCH, ("w-1",), State.DISPATCHED)

    # t=14:59: nobody has acknowledged, but the deadline has not passed: the timer does nothing
    assert tick(at(15) - timedelta(seconds=1)) == []

    # t=15: not acknowledged in time: escalated to the backup
    [late] = tick(at(15))
    assert (late.command.event.kind, late.result, late.notify) == (EventKind.ACK_TIMEOUT, AckResult.APPLIED, ("w-2",))
    assert (late.ticket.state, late.ticket.assignee, late.ticket.escalation_level) == (State.ESCALATED, "w-2", 1)

    # t=30: the backup did not answer either: the supervisor
    [later] = tick(at(30))
    assert (later.result, later.notify, later.ticket.assignee, later.ticket.escalation_level) == (
        AckResult.APPLIED, ("s-1",), "s-1", 2)

    # t=32: the supervisor acknowledges: accepted, nobody else told
    accepted = step(command(d.tickets[tid], EventKind.ACKNOWLEDGE, 32, actor="s-1"), at(32))
    assert (accepted.result, accepted.notify, accepted.ticket.state, accepted.ticket.assignee) == (
        AckResult.APPLIED, (), State.ACCEPTED, "s-1")
    assert tick(at(40)) == []  # within the handle deadline: quiet

    # t=70: visited; t=75: outcome recorded; t=76: closed
    handled = step(command(d.tickets[tid], EventKind.HANDLE, 70, actor="s-1"), at(70))
    assert (handled.result, handled.ticket.state, handled.ticket.handled_at) == (AckResult.APPLIED, State.HANDLED, at(70))
    feedback = step(command(d.tickets[tid], EventKind.FEEDBACK, 75, actor="s-1"), at(75))
    assert (feedback.result, feedback.ticket.state, feedback.ticket.outcome) == (
        AckResult.APPLIED, State.FEEDBACK_RECORDED, Outcome.NEEDED_HELP)
    closed = step(command(d.tickets[tid], EventKind.CLOSE, 76), at(76))
    assert (closed.result, closed.notify, closed.ticket.state) == (AckResult.APPLIED, (), State.CLOSED)

    # done: nothing open, nothing due, and every step was applied exactly once, in order
    assert d.open_by_kind == {} and tick(at(60 * 24)) == []
    assert [(a.command.event.kind, a.result) for a in acks] == [
        (EventKind.WARNING, AckResult.APPLIED), (EventKind.DISPATCH, AckResult.APPLIED),
        (EventKind.ACK_TIMEOUT, AckResult.APPLIED), (EventKind.ACK_TIMEOUT, AckResult.APPLIED),
        (EventKind.ACKNOWLEDGE, AckResult.APPLIED), (EventKind.HANDLE, AckResult.APPLIED),
        (EventKind.FEEDBACK, AckResult.APPLIED), (EventKind.CLOSE, AckResult.APPLIED)]
    assert [a.ticket.version for a in acks] == list(range(8))


def test_condition_cleared_finds_the_ticket_its_episode_attached_to():
    # detect names the episode by its warning id; an attached warning's episode clears the open ticket
    d = desk(household=roster())
    first, second = warning(started_hours_before=7), warning(started_hours_before=3)
    for w in (first, second):
        d = handle(d, TicketCommand.warning_from(w, at=T0), T0, RULES).desk
    ticket = d.tickets[first.warning_id]
    cleared = Event(kind=EventKind.CONDITION_CLEARED, idempotency_key=f"cleared:{second.warning_id}",
                    actor="system", at=T0)
    command = TicketCommand(step=Step.WARNING, ticket_id=second.warning_id, household_id=ticket.household_id,
                            ticket_kind=ticket.kind, event=cleared)
    r = handle(d, command, T0, RULES)
    assert one_ack(r).result is AckResult.APPLIED and r.desk.tickets[first.warning_id].condition_cleared
    # an episode with no ticket (suppressed, or long finished): rejected, recorded, nothing changes
    orphan = command.model_copy(update={"ticket_id": f"{ticket.household_id}/inactivity/2026-01-01T00:00:00+00:00"})
    r = handle(d, orphan, T0, RULES)
    assert (one_ack(r).result, one_ack(r).reason, r.desk) == (AckResult.REJECTED, "unknown ticket", d)
