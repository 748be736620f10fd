"""Tickets rebuilt from the acks alone (dispatch/audit.py): a whole loop driven through the desk, its
acks shuffled as four topics deliver them, rebuilt; then one case per thing the audit must notice."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone
from functools import cache

import pytest

from dispatch.audit import history_lines, loop_report, parse_ack, rebuild
from dispatch.desk import HouseholdDesk, RosterRules, due_commands, handle, with_away, with_roster
from dispatch.tickets import POLICY, Event, EventKind, Outcome, Policy, State
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.households import Household
from schemas.tickets import AckResult, AwayMode, Step, TicketAck, TicketCommand

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
HH = "hh-000007"
RULES = RosterRules()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def warning(kind: str, started_hours_before: float = 7) -> AnomalyWarning:
    return AnomalyWarning.for_episode(household_id=HH, kind=AnomalyKind(kind), meter=None,
                                      episode_start=T0 - timedelta(hours=started_hours_before), detected_at=T0,
                                      score=1.5, severity=Severity.HIGH, summary="no water since 02:00")


INACTIVITY, INACTIVITY_LATER, FLOW, DECLINE = (warning("inactivity"), warning("inactivity", 3),
                                              warning("continuous_flow"), warning("decline"))
TID, FLOW_TID = INACTIVITY.warning_id, FLOW.warning_id


class Loop:
    """The ticket stage in miniature: commands in, acks collected, follow-ups sent on, a deadline timer."""

    def __init__(self) -> None:
        roster = Household(household_id=HH, community="north",
                           staff={"primary_worker": "w-1", "backup_worker": "w-2", "supervisor": "s-1"})
        self.desk = with_roster(HouseholdDesk(household_id=HH), roster)
        self.acks: list[TicketAck] = []

    def send(self, command: TicketCommand, now: datetime) -> TicketAck:
        r = handle(self.desk, command, now, RULES)
        self.desk = r.desk
        self.acks.extend(r.acks)
        for follow_up in r.follow_ups:
            self.send(follow_up, now)
        return r.acks[0]

    def warn(self, w: AnomalyWarning, minutes: float) -> TicketAck:
        return self.send(TicketCommand.warning_from(w, at=at(minutes)), at(minutes))

    def do(self, ticket_id: str, kind: EventKind, minutes: float, actor: str, key: str | None = None,
           **fields) -> TicketAck:
        event = Event(kind=kind, idempotency_key=key or f"{kind.value}:{minutes}", actor=actor, at=at(minutes), **fields)
        return self.send(TicketCommand.of(self.desk.tickets[ticket_id], event), at(minutes))

    def tick(self, minutes: float) -> None:
        for command in due_commands(self.desk, at(minutes)):
            self.send(command, at(minutes))


@cache
def full_loop() -> tuple[HouseholdDesk, tuple[TicketAck, ...]]:
    """Every kind of ack a loop produces; the results are asserted as it goes (a wrong set-up fails here)."""
    loop = Loop()
    assert loop.warn(INACTIVITY, 0).result is AckResult.APPLIED                     # t=0   opened, dispatched to w-1
    assert loop.warn(INACTIVITY_LATER, 5).reason == f"attached to open ticket {TID}"  # t=5   another episode attaches
    assert loop.warn(INACTIVITY_LATER, 6).result is AckResult.DUPLICATE             # t=6   ... delivered again
    loop.tick(15)                                                                   # t=15  not acknowledged: w-2
    assert loop.desk.tickets[TID].assignee == "w-2"
    assert loop.do(TID, EventKind.CLOSE, 16, "w-2").result is AckResult.REJECTED     # t=16  too early to close
    assert loop.do(TID, EventKind.ACKNOWLEDGE, 17, "w-2").result is AckResult.APPLIED
    assert loop.do(TID, EventKind.ACKNOWLEDGE, 17, "w-2").result is AckResult.DUPLICATE  # a double tap
    assert loop.warn(FLOW, 20).result is AckResult.APPLIED                          # t=20  a second ticket ...
    assert loop.do(FLOW_TID, EventKind.CANCEL, 25, "s-1", reason="test run").result is AckResult.APPLIED  # ... cancelled
    loop.desk = with_away(loop.desk, AwayMode(household_id=HH, until=at(600), set_by="w-2", set_at=T0))
    assert loop.warn(DECLINE, 30).result is AckResult.SUPPRESSED                    # t=30  away: no ticket
    assert loop.do(TID, EventKind.HANDLE, 60, "w-2", notes="visited; fell, helped up").result is AckResult.APPLIED
    feedback = loop.do(TID, EventKind.FEEDBACK, 70, "w-2", outcome=Outcome.NEEDED_HELP)
    assert feedback.result is AckResult.APPLIED
    # the detect stage acknowledges the feedback on the same topic (no ticket: it changes sensitivity)
    loop.acks.append(TicketAck(step=Step.FEEDBACK, by="detect", ticket_id=TID, household_id=HH,
                               idempotency_key=feedback.idempotency_key, command=feedback.command,
                               result=AckResult.APPLIED, reason="sensitivity unchanged", at=at(70)))
    assert loop.do(TID, EventKind.CLOSE, 71, "system", key=f"close:{TID}").result is AckResult.APPLIED
    assert loop.desk.tickets[TID].state is State.CLOSED and loop.desk.tickets[TID].version == 7
    return loop.desk, tuple(loop.acks)


def applied(acks, version: int, ticket_id: str = TID) -> TicketAck:
    """The ack that made this version of the ticket."""
    [found] = [a for a in acks if a.by == "tickets" and a.result is AckResult.APPLIED
               and a.ticket.ticket_id == ticket_id and a.ticket.version == version]
    return found


def shuffled(acks, seed: int) -> list[TicketAck]:
    acks = list(acks)
    random.Random(seed).shuffle(acks)
    return acks


# -- the rebuild -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_the_acks_in_any_order_rebuild_the_desks_tickets(seed):
    desk, acks = full_loop()
    audit = rebuild(shuffled(acks, seed))

    assert audit.problems == []
    assert audit.tickets == desk.tickets
    assert audit.state_counts() == {"closed": 1, "cancelled": 1}
    # the history is the applied acks in version order: what happened to the ticket, step by step
    assert [a.command.event.kind for a in audit.histories[TID]] == [
        EventKind.WARNING, EventKind.DISPATCH, EventKind.WARNING, EventKind.ACK_TIMEOUT, EventKind.ACKNOWLEDGE,
        EventKind.HANDLE, EventKind.FEEDBACK, EventKind.CLOSE]
    assert [a.ticket.version for a in audit.histories[TID]] == list(range(8))


def test_acks_read_back_from_json_rebuild_the_same():
    # what the topics hold is JSON: the datetimes and enums must come back equal
    desk, acks = full_loop()
    from_topics = [parse_ack(a.model_dump_json().encode()) for a in shuffled(acks, 7)]
    audit = rebuild(from_topics)
    assert audit.problems == [] and audit.tickets == desk.tickets


def test_acks_that_change_nothing_do_not_make_tickets():
    desk, acks = full_loop()
    unchanged = [a for a in acks if a.result is not AckResult.APPLIED or a.by == "detect"]
    assert {a.result for a in unchanged} == {AckResult.DUPLICATE, AckResult.REJECTED, AckResult.SUPPRESSED,
                                             AckResult.APPLIED}  # the last: the detect stage's
    audit = rebuild(unchanged)
    assert audit.tickets == {} and audit.histories == {} and audit.problems == []
    assert DECLINE.warning_id in audit.all_acks  # the suppressed warning is still on record


def test_the_policy_is_the_stages():
    # replayed deadlines depend on it: a different policy is a different recorded history
    _, acks = full_loop()
    other = Policy(ack_timeout={**POLICY.ack_timeout, "high": timedelta(minutes=5)})
    problems = rebuild(acks, other).problems
    assert problems and all("replay differs" in p for p in problems)


# -- what the audit notices ------------------------------------------------------------------------

def drop(version: int):
    def change(acks):
        target = applied(acks, version)
        return [a for a in acks if a is not target]
    return change


def edit_event(version: int, **fields):
    def change(acks):
        target = applied(acks, version)
        event = target.command.event.model_copy(update=fields)
        edited = target.model_copy(update={"command": target.command.model_copy(update={"event": event})})
        return [edited if a is target else a for a in acks]
    return change


def edit_ack(version: int, ticket_fields: dict | None = None, **fields):
    def change(acks):
        target = applied(acks, version)
        if ticket_fields:
            fields["ticket"] = target.ticket.model_copy(update=ticket_fields)
        edited = target.model_copy(update=fields)
        return [edited if a is target else a for a in acks]
    return change


def twice(version: int, **fields):
    def change(acks):
        target = applied(acks, version)
        return list(acks) + [target.model_copy(update=fields)]
    return change


PREFIX = f"ticket {TID}"

# (what happened to the acks, expected problems)
PROBLEM_CASES = [
    # an applied ack lost (a topic truncated by retention, a stage writing around the topics)
    pytest.param(drop(3), [f"{PREFIX}: missing version 3"], id="dropped-ack-missing-version"),
    pytest.param(drop(0), [f"{PREFIX}: missing version 0"], id="dropped-opening-missing-version-0"),
    pytest.param(lambda acks: drop(4)(drop(3)(acks)), [f"{PREFIX}: missing versions 3-4"], id="dropped-two"),
    # the recorded event does not lead to the recorded ticket: someone edited one of them
    pytest.param(edit_event(5, notes="nobody was there"),
                 [f"{PREFIX} version 5: replay differs from the recorded ack (notes)"], id="tampered-event"),
    pytest.param(edit_event(4, actor="w-9"),
                 [f"{PREFIX} version 4: replay differs from the recorded ack (assignee)"], id="tampered-actor"),
    pytest.param(edit_event(6, outcome=None),
                 [f"{PREFIX} version 6: replay differs from the recorded ack (replay rejected: feedback: an outcome is "
                  "required)"], id="tampered-event-now-rejected"),
    # a wrong snapshot shows twice: its own replay, and the next one's (replayed from it)
    pytest.param(edit_ack(5, {"notes": ("edited",)}),
                 [f"{PREFIX} version 5: replay differs from the recorded ack (notes)",
                  f"{PREFIX} version 6: replay differs from the recorded ack (notes)"], id="tampered-snapshot"),
    pytest.param(edit_ack(3, notify=("s-1",)),
                 [f"{PREFIX} version 3: replay differs from the recorded ack (notify ['w-2'] != ['s-1'])"],
                 id="tampered-notify"),
    # version 0 must be what its warning opens (the chain is taken as recorded)
    pytest.param(edit_ack(0, {"severity": "low"}),
                 [f"{PREFIX} version 0: not the ticket its warning opens (severity)",
                  f"{PREFIX} version 1: replay differs from the recorded ack (severity, deadline)"],
                 id="opening-not-its-warnings"),
    # the stage crashed between sending an ack and storing the desk: the same ack twice is fine
    pytest.param(twice(4, at=at(18)), [], id="redelivered-ack-is-fine"),
    # ... two different changes recorded as one version are not
    pytest.param(twice(4, idempotency_key="acknowledge:other"),
                 [f"{PREFIX} version 4: two different acks (acknowledge:17, acknowledge:other)"], id="two-acks-one-version"),
]


@pytest.mark.parametrize("change, problems", PROBLEM_CASES)
def test_the_audit_notices(change, problems):
    desk, acks = full_loop()
    audit = rebuild(shuffled(change(list(acks)), 3))

    assert sorted(audit.problems) == sorted(problems)
    # the replay goes on from the recorded ticket after a problem, so it ends where the desk did
    assert audit.tickets[TID] == desk.tickets[TID]
    assert audit.tickets[FLOW_TID] == desk.tickets[FLOW_TID]


def test_tampering_with_the_last_ack_leaves_the_recorded_ticket():
    desk, acks = full_loop()
    audit = rebuild(edit_event(7, at=at(99))(list(acks)))
    assert audit.problems == [f"{PREFIX} version 7: replay differs from the recorded ack (closed_at)"]
    assert audit.tickets[TID] == desk.tickets[TID]


# -- the history view ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_history_lines_tell_the_whole_story_in_time_order(seed):
    _, acks = full_loop()
    lines = history_lines(rebuild(shuffled(acks, seed)), TID)

    attached = f"reason: attached to open ticket {TID}"
    too_early = ("reason: close: not allowed from escalated (allowed: warning, acknowledge, escalate, handle, "
                 "condition_cleared, cancel)")
    # time, step, event, actor, result, state after, who was told, why: everything, applied or not, either stage
    assert [tuple(re.split(r"\s{2,}", line)) for line in lines] == [
        ("2026-03-01T09:00:00+00:00", "warning", "warning", "system", "applied", "open v0", "notify -"),
        ("2026-03-01T09:00:00+00:00", "dispatch", "dispatch", "system", "applied", "dispatched v1", "notify w-1"),
        ("2026-03-01T09:05:00+00:00", "warning", "warning", "system", "applied", "dispatched v2", "notify -", attached),
        ("2026-03-01T09:06:00+00:00", "warning", "warning", "system", "duplicate", "dispatched v2", "notify -"),
        ("2026-03-01T09:15:00+00:00", "dispatch", "ack_timeout", "system", "applied", "escalated v3", "notify w-2"),
        ("2026-03-01T09:16:00+00:00", "feedback", "close", "w-2", "rejected", "escalated v3", "notify -", too_early),
        ("2026-03-01T09:17:00+00:00", "dispatch", "acknowledge", "w-2", "applied", "accepted v4", "notify -"),
        ("2026-03-01T09:17:00+00:00", "dispatch", "acknowledge", "w-2", "duplicate", "accepted v4", "notify -"),
        ("2026-03-01T10:00:00+00:00", "handle", "handle", "w-2", "applied", "handled v5", "notify -"),
        ("2026-03-01T10:10:00+00:00", "feedback", "feedback", "w-2", "applied", "feedback_recorded v6", "notify -"),
        ("2026-03-01T10:10:00+00:00", "feedback", "feedback", "w-2", "detect:applied", "-", "notify -",
         "reason: sensitivity unchanged"),
        ("2026-03-01T10:11:00+00:00", "feedback", "close", "system", "applied", "closed v7", "notify -"),
    ]


def test_a_suppressed_warning_has_a_history_but_no_ticket():
    _, acks = full_loop()
    audit = rebuild(acks)
    assert DECLINE.warning_id not in audit.tickets
    [line] = history_lines(audit, DECLINE.warning_id)
    assert re.split(r"\s{2,}", line)[4:] == [
        "suppressed", "-", "notify -", f"reason: household away until {at(600).isoformat()} (set by w-2)"]


def test_history_of_an_unknown_ticket_is_empty():
    _, acks = full_loop()
    assert history_lines(rebuild(acks), "hh-000007/surge/never") == []


def test_the_loop_report_measures_the_loop_from_the_record():
    _, acks = full_loop()
    report = loop_report(rebuild(shuffled(acks, 3)))
    assert report["tickets"] == 2 and report["by_kind"] == {"continuous_flow": 1, "inactivity": 1}
    assert report["escalations"] == 1                      # w-1 did not answer in 15 minutes
    assert report["outcomes"] == {"needed_help": 1} and report["valid_alert_rate"] == 1.0
    # opened at t=0: acknowledged at 17, handled at 60, closed at 71 (the cancelled one is not "closed")
    assert report["minutes_to_acknowledge"] == {"n": 1, "median": 17.0, "p90": 17.0}
    assert report["minutes_to_handle"]["median"] == 60.0
    assert report["minutes_to_close"] == {"n": 1, "median": 71.0, "p90": 71.0}
