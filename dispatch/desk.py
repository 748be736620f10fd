"""One household's ticket desk: its roster entry, away mode and tickets, and what each command does to them.

Pure functions over a :class:`HouseholdDesk` (the value of the ``tickets-households`` table), no
I/O, the time passed in. The ticket stage (``streams/tickets.py``) feeds it the household's
commands in partition order and sends what it returns.

Rules, in the order :func:`handle` applies them to a warning:

1. **Same warning again** (a redelivery, a replay): the ticket it opened already has its key, so
   the ack says ``duplicate``.
2. **Away**: while the household's away mode is active, ``inactivity`` and ``decline`` warnings
   open no ticket (``suppressed``, with the away mode in the reason). Flow, surge and night
   activity in an empty home still do.
3. **Deduplication**: one open ticket per household and kind; a new warning of that kind
   attaches to it (Alertmanager's grouping), so staff get one visit, not three.
4. Otherwise a **new ticket**, asking the household's chain: the community's contact desk first
   where that community phones the emergency contact before a visit, then the primary worker,
   backup and supervisor. A household missing from the roster goes to the duty desk, never nowhere;
   ``meter_offline`` (data quality) goes to the data-quality desk, not to a community worker.
   The ticket is due at once, so its dispatch is the follow-up command.

Every other command is :func:`dispatch.tickets.apply` on its ticket. Roster changes affect tickets
opened afterwards; a ticket keeps the chain it was dispatched along.

>>> from datetime import datetime, timezone
>>> from schemas.anomaly import AnomalyWarning
>>> now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
>>> warning = AnomalyWarning.model_validate({"warning_id": "hh-1/inactivity/2026-03-01T02:00:00+00:00",
...     "household_id": "hh-1", "kind": "inactivity", "episode_start": "2026-03-01T02:00:00Z",
...     "detected_at": "2026-03-01T08:55:00Z", "score": 1.3, "severity": "high", "evidence": {"summary": "no water"}})
>>> desk = HouseholdDesk(household_id="hh-1")
>>> r = handle(desk, TicketCommand.warning_from(warning, at=now), now, RosterRules())  # not on the roster
>>> r.acks[0].result.value, r.acks[0].ticket.chain, [c.event.kind.value for c in r.follow_ups]
('applied', ('duty-desk',), ['dispatch'])
>>> handle(r.desk, TicketCommand.warning_from(warning, at=now), now, RosterRules()).acks[0].result.value
'duplicate'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from dispatch.tickets import POLICY, TERMINAL, WELFARE_KINDS, EventKind, Policy, Ticket, apply, due, open_ticket
from schemas.anomaly import AnomalyWarning
from schemas.households import Household
from schemas.tickets import SUPPRESSED_WHEN_AWAY, AckResult, AwayMode, Step, TicketAck, TicketCommand

#: Suppressed warning ids remembered per household (to recognise a redelivery).
KEEP_SUPPRESSED = 20
#: Finished tickets stay on the desk (and in the staff API) this long; their full history stays on the topics.
KEEP_FINISHED = timedelta(days=30)


class HouseholdDesk(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    household_id: str
    roster: Household | None = None
    away: AwayMode | None = None
    tickets: dict[str, Ticket] = Field(default_factory=dict)
    open_by_kind: dict[str, str] = Field(default_factory=dict, description="kind -> ticket_id of its open ticket")
    warnings: dict[str, AnomalyWarning] = Field(default_factory=dict,
                                                description="The warnings of the tickets on the desk: their evidence.")
    suppressed: int = Field(default=0, description="Warnings suppressed by away mode, ever.")
    suppressed_ids: tuple[str, ...] = Field(default=(), description="The last few suppressed warning ids: a "
                                            "redelivered one is a duplicate, not counted again.")

    def open_tickets(self) -> list[Ticket]:
        return [t for t in self.tickets.values() if t.state not in TERMINAL]

    def next_deadline(self) -> datetime | None:
        deadlines = [t.deadline for t in self.open_tickets() if t.deadline is not None]
        return min(deadlines) if deadlines else None

    def staff(self) -> frozenset[str]:
        """Everyone who may see this household: its roster chain and whoever its tickets were sent to."""
        people = set()
        if self.roster is not None:
            s = self.roster.staff
            people.update(p for p in (s.primary_worker, s.backup_worker, s.supervisor) if p)
        for t in self.tickets.values():
            people.update(t.chain)
        return frozenset(people)


@dataclass(frozen=True)
class RosterRules:
    """Who gets a ticket when the roster is silent, and which communities phone first."""

    duty_desk: str = "duty-desk"
    contact_first: dict[str, str] = field(default_factory=dict)  # community -> contact desk staff id
    policy: Policy = POLICY
    data_quality_desk: str = "data-quality-desk"

    def chain(self, roster: Household | None, kind: str) -> tuple[str, ...]:
        if kind not in WELFARE_KINDS:
            return (self.data_quality_desk,)  # a silent meter is the utility's job, not a visit
        if roster is None:
            return (self.duty_desk,)
        s = roster.staff
        people = [self.contact_first.get(roster.community), s.primary_worker, s.backup_worker, s.supervisor]
        chain: list[str] = []
        for person in people:
            if person and person not in chain:
                chain.append(person)
        return tuple(chain)


@dataclass(frozen=True)
class DeskResult:
    desk: HouseholdDesk
    acks: list[TicketAck]
    follow_ups: list[TicketCommand]  # commands this one causes (a new ticket's dispatch)


def handle(desk: HouseholdDesk, command: TicketCommand, now: datetime, rules: RosterRules) -> DeskResult:
    """Apply one command to its household's desk."""
    if command.event.kind is EventKind.WARNING:
        return _warning(desk, command, now, rules)
    ticket = desk.tickets.get(command.ticket_id)
    if ticket is None and command.event.kind is EventKind.CONDITION_CLEARED:
        # detect names the episode by its warning, which may have attached to another ticket
        ticket = next((t for t in desk.tickets.values() if command.ticket_id in t.warning_ids), None)
    if ticket is None:
        return DeskResult(desk, [_ack(command, AckResult.REJECTED, now, reason="unknown ticket")], [])
    result = apply(ticket, command.event, rules.policy)
    if result.duplicate:
        return DeskResult(desk, [_ack(command, AckResult.DUPLICATE, now, ticket=ticket)], [])
    if result.rejected:
        return DeskResult(desk, [_ack(command, AckResult.REJECTED, now, ticket=ticket, reason=result.rejected)], [])
    new = _store(desk, result.ticket, now)
    return DeskResult(new, [_ack(command, AckResult.APPLIED, now, ticket=result.ticket, notify=result.notify)], [])


def due_commands(desk: HouseholdDesk, now: datetime) -> list[TicketCommand]:
    """The commands the household's passed deadlines call for (dispatch, escalation, re-alert, reminder)."""
    commands = []
    for ticket in desk.open_tickets():
        event = due(ticket, now)
        if event is not None:
            commands.append(TicketCommand.of(ticket, event))
    return commands


def with_roster(desk: HouseholdDesk, roster: Household | None) -> HouseholdDesk:
    return desk.model_copy(update={"roster": roster})


def with_away(desk: HouseholdDesk, away: AwayMode | None) -> HouseholdDesk:
    return desk.model_copy(update={"away": away})


# -- warnings --------------------------------------------------------------------------------

def _warning(desk: HouseholdDesk, command: TicketCommand, now: datetime, rules: RosterRules) -> DeskResult:
    warning = command.warning
    assert warning is not None  # TicketCommand validates this
    kind = warning.kind.value
    seen = _ticket_with_key(desk, command.event.idempotency_key)
    if seen is not None:
        return DeskResult(desk, [_ack(command, AckResult.DUPLICATE, now, ticket=seen)], [])
    if desk.away is not None and desk.away.active(warning.detected_at) and kind in SUPPRESSED_WHEN_AWAY:
        reason = f"household away until {desk.away.until.isoformat()} (set by {desk.away.set_by})"
        if warning.warning_id in desk.suppressed_ids:
            return DeskResult(desk, [_ack(command, AckResult.DUPLICATE, now, reason=f"already suppressed: {reason}")], [])
        new = desk.model_copy(update={"suppressed": desk.suppressed + 1,
                                      "suppressed_ids": (desk.suppressed_ids + (warning.warning_id,))[-KEEP_SUPPRESSED:]})
        return DeskResult(new, [_ack(command, AckResult.SUPPRESSED, now, reason=reason)], [])
    open_id = desk.open_by_kind.get(kind)
    if open_id is not None:
        result = apply(desk.tickets[open_id], command.event, rules.policy)
        if result.rejected:  # cannot happen while every open state accepts warnings; recorded if it does
            return DeskResult(desk, [_ack(command, AckResult.REJECTED, now, ticket=result.ticket,
                                          reason=result.rejected)], [])
        new = _store(desk, result.ticket, now, warning)
        return DeskResult(new, [_ack(command, AckResult.APPLIED, now, ticket=result.ticket,
                                     reason=f"attached to open ticket {open_id}")], [])
    ticket = open_ticket(warning.warning_id, household_id=desk.household_id, kind=kind,
                         severity=warning.severity.value, chain=rules.chain(desk.roster, kind), at=command.event.at,
                         summary=warning.summary, config_version=warning.config_version,
                         community=desk.roster.community if desk.roster else None)
    new = _store(desk, ticket, now, warning)
    dispatch = due(ticket, ticket.opened_at)
    return DeskResult(new, [_ack(command, AckResult.APPLIED, now, ticket=ticket)], [TicketCommand.of(ticket, dispatch)])


def _ticket_with_key(desk: HouseholdDesk, key: str) -> Ticket | None:
    """The ticket that opened with or attached this warning, open or finished (a desk holds a few)."""
    return next((t for t in desk.tickets.values() if key in t.seen_keys), None)


def _store(desk: HouseholdDesk, ticket: Ticket, now: datetime, warning: AnomalyWarning | None = None) -> HouseholdDesk:
    tickets = {**desk.tickets, ticket.ticket_id: ticket}
    open_by_kind = dict(desk.open_by_kind)
    if ticket.state in TERMINAL:
        if open_by_kind.get(ticket.kind) == ticket.ticket_id:
            del open_by_kind[ticket.kind]
    else:
        open_by_kind[ticket.kind] = ticket.ticket_id
    # finished long ago: off the desk (the topics keep the history)
    tickets = {tid: t for tid, t in tickets.items()
               if t.state not in TERMINAL or t.closed_at is None or now - t.closed_at < KEEP_FINISHED}
    warnings = {**desk.warnings, **({warning.warning_id: warning} if warning else {})}
    kept = {wid for t in tickets.values() for wid in t.warning_ids}
    warnings = {wid: w for wid, w in warnings.items() if wid in kept}
    return desk.model_copy(update={"tickets": tickets, "open_by_kind": open_by_kind, "warnings": warnings})


def _ack(command: TicketCommand, result: AckResult, now: datetime, *, ticket: Ticket | None = None,
         reason: str | None = None, notify: tuple[str, ...] = ()) -> TicketAck:
    return TicketAck(step=command.step, by="tickets", ticket_id=ticket.ticket_id if ticket else command.ticket_id,
                     household_id=command.household_id, idempotency_key=command.event.idempotency_key,
                     command=command, result=result, reason=reason, ticket=ticket, notify=notify, at=now)


__all__ = ["HouseholdDesk", "RosterRules", "DeskResult", "handle", "due_commands", "with_roster", "with_away",
           "KEEP_FINISHED", "Step"]
