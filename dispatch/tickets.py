"""The ticket state machine: pure functions, no I/O, the clock passed in.

A ticket follows one household's episode of one kind through the loop the seed system calls
预警—派单—处置—反馈 (warning → dispatch → handle → feedback)::

    open ──dispatch──► dispatched ──acknowledge──► accepted ──handle──► handled ──feedback──► feedback_recorded ──close──► closed
     │                 │   ▲   │                      │   ▲                                                     ▲
     │                 │   └───┘ ack deadline passed:  │   └── snooze (until) / ack timeout passed: re-alert     │
     │                 │   escalated to the next       ▼                                                         │
     │                 │   person in the chain       snoozed ──(until passed)──► accepted                        │
     └─────────────────┴──────────── cancel (with a reason) ──► cancelled          meter_offline cleared ────────┘

Decisions, so that they are written down:

* **Welfare kinds are never closed by the data alone.** When the condition clears before anyone
  has acted (water runs again after an inactivity warning) the ticket is marked
  ``condition_cleared`` (and lowered to ``low`` severity if nobody has acknowledged it yet),
  but a person still confirms: the water may
  be a rescuer's, a tap left running by someone confused. ``meter_offline`` (data quality) closes
  itself when the meter reports again, with outcome ``meter_fault``.
* **Every transition is idempotent**: an event carries an ``idempotency_key``; applying a key the
  ticket has already seen changes nothing and says so (``duplicate``). Keys are kept for the
  ticket's life (tickets are small and short-lived).
* **An illegal transition is rejected with a reason** (``Rejected``), the ticket unchanged; the
  caller records it. Nothing here raises on a bad event.
* **Deadlines** live on the ticket (``deadline``); :func:`due` turns a passed deadline into the
  event that handles it: escalation to the next person for an unacknowledged dispatch (after
  the chain's last person it re-sends to the supervisor and stays escalated), a re-alert for an
  acknowledged but unhandled ticket (PagerDuty's acknowledgement timeout), the end of a snooze.
* **New warnings of the same household and kind attach** to the open ticket (one open ticket per
  household and kind); they never reopen a closed one.

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
>>> chain = ("w-1", "w-2", "s-1")
>>> ticket = open_ticket("hh-000001/inactivity/2026-03-01T02:00:00+00:00", household_id="hh-000001",
...                      kind="inactivity", severity="high", chain=chain, at=t0)
>>> r = apply(ticket, Event(kind=EventKind.DISPATCH, idempotency_key="d1", actor="system", at=t0), POLICY)
>>> r.ticket.state, r.ticket.assignee, r.ticket.deadline - t0
(<State.DISPATCHED: 'dispatched'>, 'w-1', datetime.timedelta(seconds=900))
>>> late = due(r.ticket, t0 + timedelta(minutes=16))
>>> r = apply(r.ticket, late, POLICY); r.ticket.state, r.ticket.assignee, r.ticket.escalation_level
(<State.ESCALATED: 'escalated'>, 'w-2', 1)
>>> r = apply(r.ticket, Event(kind=EventKind.ACKNOWLEDGE, idempotency_key="a1", actor="w-2", at=t0 + timedelta(minutes=20)), POLICY)
>>> r.ticket.state
<State.ACCEPTED: 'accepted'>
>>> apply(r.ticket, Event(kind=EventKind.CLOSE, idempotency_key="c1", actor="w-2", at=t0), POLICY).rejected
'close: not allowed from accepted (allowed: warning, handle, escalate, snooze, condition_cleared, cancel)'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.ticket import TERMINAL, Event, EventKind, Outcome, State, Ticket

WELFARE_KINDS = frozenset({"inactivity", "continuous_flow", "surge", "night_activity", "decline"})


@dataclass(frozen=True)
class Policy:
    """Deadlines per severity (PagerDuty-style): how long a dispatch waits for an acknowledgement,
    and how long an accepted ticket may stay unhandled before it re-alerts."""

    ack_timeout: dict[str, timedelta] = field(default_factory=lambda: {
        "high": timedelta(minutes=15), "medium": timedelta(minutes=60), "low": timedelta(hours=8),
        "info": timedelta(hours=24)})
    handle_timeout: dict[str, timedelta] = field(default_factory=lambda: {
        "high": timedelta(hours=1), "medium": timedelta(hours=4), "low": timedelta(hours=24),
        "info": timedelta(days=3)})
    #: a handled ticket without an outcome reminds its assignee after this long
    feedback_timeout: timedelta = timedelta(hours=24)

    def ack_deadline(self, severity: str, at: datetime) -> datetime:
        return at + self.ack_timeout.get(severity, self.ack_timeout["medium"])

    def handle_deadline(self, severity: str, at: datetime) -> datetime:
        return at + self.handle_timeout.get(severity, self.handle_timeout["medium"])


POLICY = Policy()


@dataclass(frozen=True)
class Result:
    """What applying an event did. Exactly one of: changed (``ticket`` is new), ``duplicate``
    (already applied: ``ticket`` unchanged), ``rejected`` (a reason; ``ticket`` unchanged)."""

    ticket: Ticket
    changed: bool = False
    duplicate: bool = False
    rejected: str | None = None
    #: who must be told now (a dispatch, an escalation, a re-alert), for the notifier
    notify: tuple[str, ...] = ()


# Which events each state accepts. Anything else is rejected with this list as the reason.
ALLOWED: dict[State, tuple[EventKind, ...]] = {
    State.OPEN: (EventKind.WARNING, EventKind.DISPATCH, EventKind.CONDITION_CLEARED, EventKind.CANCEL),
    State.DISPATCHED: (EventKind.WARNING, EventKind.ACKNOWLEDGE, EventKind.ACK_TIMEOUT, EventKind.ESCALATE,
                       EventKind.HANDLE, EventKind.CONDITION_CLEARED, EventKind.CANCEL),
    State.ESCALATED: (EventKind.WARNING, EventKind.ACKNOWLEDGE, EventKind.ACK_TIMEOUT, EventKind.ESCALATE,
                      EventKind.HANDLE, EventKind.CONDITION_CLEARED, EventKind.CANCEL),
    State.ACCEPTED: (EventKind.WARNING, EventKind.HANDLE, EventKind.HANDLE_TIMEOUT, EventKind.ESCALATE,
                     EventKind.SNOOZE, EventKind.CONDITION_CLEARED, EventKind.CANCEL),
    State.SNOOZED: (EventKind.WARNING, EventKind.WAKE, EventKind.HANDLE, EventKind.CONDITION_CLEARED, EventKind.CANCEL),
    State.HANDLED: (EventKind.WARNING, EventKind.FEEDBACK, EventKind.FEEDBACK_TIMEOUT, EventKind.CONDITION_CLEARED),
    State.FEEDBACK_RECORDED: (EventKind.WARNING, EventKind.CLOSE, EventKind.CONDITION_CLEARED),
    State.CLOSED: (),
    State.CANCELLED: (),
}


def open_ticket(warning_id: str, *, household_id: str, kind: str, severity: str, chain: tuple[str, ...],
                at: datetime, summary: str | None = None, config_version: str | None = None,
                community: str | None = None) -> Ticket:
    """A new ticket for a warning; its id is the warning's (stable, so a replay opens the same).

    It is due at once: :func:`due` turns an open ticket into its dispatch, so a dispatch lost on the
    way is sent again by the next timer tick. Its key ``warning:<id>`` is the warning command's, so
    the same warning delivered again is a duplicate."""
    if not chain:
        raise ValueError("a ticket needs at least one person to ask (the household's primary worker)")
    return Ticket(ticket_id=warning_id, household_id=household_id, kind=kind, severity=severity, summary=summary, chain=chain,
                  warning_ids=(warning_id,), opened_at=at, deadline=at, seen_keys=(f"warning:{warning_id}",),
                  config_version=config_version, community=community)


def apply(ticket: Ticket, event: Event, policy: Policy = POLICY) -> Result:
    """The one transition function."""
    if event.idempotency_key in ticket.seen_keys:
        return Result(ticket, duplicate=True)
    allowed = ALLOWED[ticket.state]
    if event.kind not in allowed:
        names = ", ".join(k.value for k in allowed if k not in _INTERNAL) or "none: the ticket is finished"
        return Result(ticket, rejected=f"{event.kind.value}: not allowed from {ticket.state.value} (allowed: {names})")
    problem = _check(ticket, event)
    if problem:
        return Result(ticket, rejected=f"{event.kind.value}: {problem}")
    update, notify = _TRANSITIONS[event.kind](ticket, event, policy)
    new = ticket.model_copy(update={**update, "seen_keys": ticket.seen_keys + (event.idempotency_key,),
                                    "version": ticket.version + 1})
    return Result(new, changed=True, notify=notify)


def due(ticket: Ticket, now: datetime) -> Event | None:
    """The event a passed deadline calls for, or None. Its key is tied to the deadline, so calling
    this twice (two timers, a restart) produces one escalation, not two."""
    if ticket.deadline is None or now < ticket.deadline or ticket.state in TERMINAL:
        return None
    kind = {State.OPEN: EventKind.DISPATCH, State.DISPATCHED: EventKind.ACK_TIMEOUT, State.ESCALATED: EventKind.ACK_TIMEOUT,
            State.ACCEPTED: EventKind.HANDLE_TIMEOUT, State.SNOOZED: EventKind.WAKE,
            State.HANDLED: EventKind.FEEDBACK_TIMEOUT}.get(ticket.state)
    if kind is None:
        return None
    return Event(kind=kind, idempotency_key=f"{kind.value}:{ticket.deadline.isoformat()}", actor="system", at=now)


# -- the transitions --------------------------------------------------------------------------

_INTERNAL = frozenset({EventKind.ACK_TIMEOUT, EventKind.HANDLE_TIMEOUT, EventKind.WAKE, EventKind.FEEDBACK_TIMEOUT})


def _check(ticket: Ticket, event: Event) -> str | None:
    staff_only = {EventKind.ACKNOWLEDGE, EventKind.HANDLE, EventKind.FEEDBACK, EventKind.SNOOZE, EventKind.CANCEL,
                  EventKind.ESCALATE}
    if event.kind in staff_only and event.actor == "system":
        return "needs a person, not the system"
    if event.kind is EventKind.FEEDBACK and event.outcome is None:
        return "an outcome is required"
    if event.kind is EventKind.HANDLE and not (event.notes or "").strip():
        return "notes are required (what was found, who was there)"
    if event.kind is EventKind.SNOOZE and (event.until is None or event.until <= event.at):
        return "'until' must be after the event time"
    if event.kind in (EventKind.CANCEL, EventKind.ESCALATE) and not (event.reason or "").strip():
        return "a reason is required"
    if event.kind is EventKind.WARNING and not event.warning_id:
        return "warning_id is required"
    return None


def _warning(t: Ticket, e: Event, p: Policy):
    ids = t.warning_ids if e.warning_id in t.warning_ids else t.warning_ids + (e.warning_id,)
    update = {"warning_ids": ids, "condition_cleared": False}
    if t.lowered_from is not None:
        # the condition is back: as urgent as before, and still waiting, so its deadline is that severity's
        update.update(severity=t.lowered_from, lowered_from=None)
        if t.state in (State.DISPATCHED, State.ESCALATED):
            update["deadline"] = min(t.deadline, p.ack_deadline(t.lowered_from, e.at)) if t.deadline else None
    return update, ()


def _dispatch(t: Ticket, e: Event, p: Policy):
    who = t.chain[0]
    return {"state": State.DISPATCHED, "assignee": who, "escalation_level": 0,
            "deadline": p.ack_deadline(t.severity, e.at)}, (who,)


def _ack_timeout(t: Ticket, e: Event, p: Policy):
    level = min(t.escalation_level + 1, len(t.chain) - 1)
    who = t.chain[level]
    return {"state": State.ESCALATED, "assignee": who, "escalation_level": level,
            "deadline": p.ack_deadline(t.severity, e.at)}, (who,)


def _escalate(t: Ticket, e: Event, p: Policy):
    # asked for by a person (the contact did not answer; I cannot go): like a timeout, now
    update, notify = _ack_timeout(t, e, p)
    return {**update, "notes": t.notes + (e.reason,)}, notify


def _acknowledge(t: Ticket, e: Event, p: Policy):
    return {"state": State.ACCEPTED, "assignee": e.actor, "acknowledged_at": e.at,
            "deadline": p.handle_deadline(t.severity, e.at)}, ()


def _handle_timeout(t: Ticket, e: Event, p: Policy):
    return {"realerts": t.realerts + 1, "deadline": p.handle_deadline(t.severity, e.at)}, (t.assignee or t.chain[0],)


def _snooze(t: Ticket, e: Event, p: Policy):
    return {"state": State.SNOOZED, "snoozed_until": e.until, "deadline": e.until}, ()


def _wake(t: Ticket, e: Event, p: Policy):
    return {"state": State.ACCEPTED, "snoozed_until": None, "deadline": p.handle_deadline(t.severity, e.at)}, (
        t.assignee or t.chain[0],)


def _handle(t: Ticket, e: Event, p: Policy):
    return {"state": State.HANDLED, "handled_at": e.at, "deadline": e.at + p.feedback_timeout, "notes": t.notes + (e.notes,),
            "assignee": t.assignee or e.actor, "acknowledged_at": t.acknowledged_at or e.at}, ()


def _feedback_timeout(t: Ticket, e: Event, p: Policy):
    return {"realerts": t.realerts + 1, "deadline": e.at + p.feedback_timeout}, (t.assignee or t.chain[0],)


def _feedback(t: Ticket, e: Event, p: Policy):
    notes = t.notes + ((e.notes,) if e.notes else ())
    return {"state": State.FEEDBACK_RECORDED, "outcome": e.outcome, "notes": notes, "deadline": None}, ()


def _close(t: Ticket, e: Event, p: Policy):
    # detection closes a ticket with what it did with the outcome (and any proposal, e.g. away mode)
    notes = t.notes + ((e.notes,) if e.notes else ())
    return {"state": State.CLOSED, "closed_at": e.at, "deadline": None, "notes": notes}, ()


def _cancel(t: Ticket, e: Event, p: Policy):
    return {"state": State.CANCELLED, "closed_at": e.at, "deadline": None, "notes": t.notes + (e.reason,)}, ()


def _condition_cleared(t: Ticket, e: Event, p: Policy):
    if t.kind not in WELFARE_KINDS:
        # data quality: the meter reports again, nothing for a person to check
        return {"state": State.CLOSED, "condition_cleared": True, "outcome": Outcome.METER_FAULT,
                "closed_at": e.at, "deadline": None}, ()
    # welfare: a person still confirms; the ticket stays where it is, less urgent if nobody has taken it yet
    waiting = t.state in (State.OPEN, State.DISPATCHED, State.ESCALATED)
    if not waiting or t.severity == "low":
        return {"condition_cleared": True}, ()
    update = {"condition_cleared": True, "severity": "low", "lowered_from": t.lowered_from or t.severity}
    if t.state is not State.OPEN:  # the person asked now has the low-severity time to answer
        update["deadline"] = p.ack_deadline("low", e.at)
    return update, ()


_TRANSITIONS = {
    EventKind.WARNING: _warning,
    EventKind.DISPATCH: _dispatch,
    EventKind.ACK_TIMEOUT: _ack_timeout,
    EventKind.ESCALATE: _escalate,
    EventKind.ACKNOWLEDGE: _acknowledge,
    EventKind.HANDLE_TIMEOUT: _handle_timeout,
    EventKind.SNOOZE: _snooze,
    EventKind.WAKE: _wake,
    EventKind.HANDLE: _handle,
    EventKind.FEEDBACK_TIMEOUT: _feedback_timeout,
    EventKind.FEEDBACK: _feedback,
    EventKind.CLOSE: _close,
    EventKind.CANCEL: _cancel,
    EventKind.CONDITION_CLEARED: _condition_cleared,
}

# The ticket's shapes are a wire format (schemas/ticket.py); named here too, beside the machine that moves them.
__all__ = ["State", "TERMINAL", "EventKind", "Outcome", "Event", "Ticket", "WELFARE_KINDS", "Policy", "POLICY",
           "Result", "ALLOWED", "open_ticket", "apply", "due"]
