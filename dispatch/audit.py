"""Tickets rebuilt from the ``.ack`` topics alone, and checked by doing every step again.

Each applied ack of the ticket stage carries the command it applied and the ticket after it, so
the four ack topics are a complete, checkable record of the loop 预警—派单—处置—反馈:

1. keep the acks of stage ``tickets`` that were ``applied``, grouped by their ticket
   (``ack.ticket.ticket_id``: an attached warning's ack belongs to the ticket it attached to);
   duplicates, rejections, suppressed warnings and the detect stage's acks change no ticket, but
   stay in :attr:`Audit.all_acks` for :func:`history_lines`;
2. order each ticket's acks by ``ticket.version`` (the topics interleave arbitrarily; one ack
   delivered twice, after a crash of the stage, counts once);
3. version 0 is the opening warning: its snapshot is the starting ticket (the chain came from the
   roster of that time, which the acks do not carry);
4. every later ack: :func:`dispatch.tickets.apply` its ``command.event`` to the ticket so far; the
   result must equal the ack's snapshot (and whom it told), else ``replay differs``. A version
   that is not there is ``missing version N``.

After a problem the replay goes on from the recorded snapshot, so a bad event is one problem, not
a cascade (a bad snapshot is two: its own version and the next, replayed from it). The policy must be the stage's (``Settings().ticket_policy()``): deadlines are replayed.

>>> from datetime import datetime, timezone
>>> from dispatch.desk import HouseholdDesk, RosterRules, handle
>>> from schemas.anomaly import AnomalyWarning
>>> from schemas.tickets import TicketCommand
>>> now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
>>> warning = AnomalyWarning.model_validate({"warning_id": "hh-1/inactivity/2026-03-01T02:00:00+00:00",
...     "household_id": "hh-1", "kind": "inactivity", "episode_start": "2026-03-01T02:00:00Z",
...     "detected_at": "2026-03-01T08:55:00Z", "score": 1.3, "severity": "high", "evidence": {"summary": "no water"}})
>>> opened = handle(HouseholdDesk(household_id="hh-1"), TicketCommand.warning_from(warning, at=now), now, RosterRules())
>>> dispatched = handle(opened.desk, opened.follow_ups[0], now, RosterRules())
>>> audit = rebuild(dispatched.acks + opened.acks)  # any order
>>> audit.problems, audit.tickets == dispatched.desk.tickets, audit.state_counts()
([], True, {'dispatched': 1})
>>> for line in history_lines(audit, warning.warning_id):
...     print(line)
2026-03-01T09:00:00+00:00  warning   warning           system        applied          open v0              notify -
2026-03-01T09:00:00+00:00  dispatch  dispatch          system        applied          dispatched v1        notify duty-desk
>>> rebuild(dispatched.acks).problems
['ticket hh-1/inactivity/2026-03-01T02:00:00+00:00: missing version 0']
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from dispatch.tickets import POLICY, EventKind, Outcome, Policy, State, Ticket, apply
from schemas.tickets import AckResult, TicketAck


@dataclass
class Audit:
    #: ticket_id -> the ticket as the replay of its applied acks leaves it
    tickets: dict[str, Ticket] = field(default_factory=dict)
    #: ticket_id -> its applied acks, in version order
    histories: dict[str, list[TicketAck]] = field(default_factory=dict)
    #: what does not add up, one sentence each, naming the ticket
    problems: list[str] = field(default_factory=list)
    #: ticket_id (or the command's, when no ticket) -> every ack about it, applied or not, either stage, in time order
    all_acks: dict[str, list[TicketAck]] = field(default_factory=dict)

    def state_counts(self) -> dict[str, int]:
        """How many tickets are in each state (only the states that occur), in the state machine's order."""
        counts = Counter(t.state.value for t in self.tickets.values())
        return {state.value: counts[state.value] for state in State if counts[state.value]}


#: Outcomes that mean the alert was needed: the seed system's "valid alerts".
VALID_OUTCOMES = frozenset({Outcome.CONFIRMED_EMERGENCY, Outcome.NEEDED_HELP})


def loop_report(audit: Audit) -> dict:
    """How the loop performed, from the record alone: tickets by kind, escalations, re-alerts,
    outcomes, the valid-alert rate (needed / all welfare outcomes), and the median and 90th
    percentile minutes from a ticket's warning to acknowledgement, handling and close.

    >>> loop_report(Audit())["valid_alert_rate"] is None
    True
    """
    tickets = list(audit.tickets.values())
    kinds = Counter(t.kind for t in tickets)
    outcomes = Counter(t.outcome.value for t in tickets if t.outcome is not None)
    welfare = [t.outcome for t in tickets if t.outcome is not None and t.outcome is not Outcome.METER_FAULT]
    events = Counter(a.command.event.kind for history in audit.histories.values() for a in history)

    def minutes(attribute: str) -> dict[str, float | None]:
        values = sorted((getattr(t, attribute) - t.opened_at).total_seconds() / 60 for t in tickets
                        if getattr(t, attribute) is not None and (attribute != "closed_at" or t.state is State.CLOSED))
        if not values:
            return {"n": 0, "median": None, "p90": None}
        return {"n": len(values), "median": round(values[len(values) // 2], 1),
                "p90": round(values[min(len(values) - 1, int(0.9 * len(values)))], 1)}

    return {
        "tickets": len(tickets), "by_kind": dict(sorted(kinds.items())),
        "escalations": events[EventKind.ACK_TIMEOUT] + events[EventKind.ESCALATE],
        "realerts": events[EventKind.HANDLE_TIMEOUT] + events[EventKind.WAKE] + events[EventKind.FEEDBACK_TIMEOUT],
        "outcomes": dict(sorted(outcomes.items())),
        "valid_alert_rate": round(sum(o in VALID_OUTCOMES for o in welfare) / len(welfare), 3) if welfare else None,
        "minutes_to_acknowledge": minutes("acknowledged_at"),
        "minutes_to_handle": minutes("handled_at"),
        "minutes_to_close": minutes("closed_at"),
    }


def rebuild(acks: Iterable[TicketAck], policy: Policy = POLICY) -> Audit:
    """The tickets the ack topics record, replayed and checked (see the module docstring)."""
    audit = Audit()
    applied: dict[str, list[TicketAck]] = defaultdict(list)
    everything: dict[str, list[TicketAck]] = defaultdict(list)
    for ack in acks:
        ticket_id = ack.ticket.ticket_id if ack.ticket is not None else ack.ticket_id
        everything[ticket_id].append(ack)
        if ack.by != "tickets" or ack.result is not AckResult.APPLIED:
            continue
        if ack.ticket is None:
            audit.problems.append(f"ticket {ticket_id}: applied {ack.command.event.kind.value} ack "
                                  f"({ack.idempotency_key}) without the ticket after it")
            continue
        applied[ticket_id].append(ack)
    for ticket_id in sorted(applied):
        ticket, history = _replay(ticket_id, applied[ticket_id], policy, audit.problems)
        audit.tickets[ticket_id], audit.histories[ticket_id] = ticket, history
    audit.all_acks = {tid: sorted(found, key=_time_order) for tid, found in sorted(everything.items())}
    return audit


def _replay(ticket_id: str, acks: list[TicketAck], policy: Policy, problems: list[str]) -> tuple[Ticket, list[TicketAck]]:
    by_version: dict[int, TicketAck] = {}
    for ack in sorted(acks, key=lambda a: a.ticket.version):
        version = ack.ticket.version
        seen = by_version.get(version)
        if seen is None:
            by_version[version] = ack
        elif (seen.idempotency_key, seen.ticket, seen.notify) != (ack.idempotency_key, ack.ticket, ack.notify):
            # the same ack delivered twice is fine; two different changes to one version are not
            problems.append(f"ticket {ticket_id} version {version}: two different acks "
                            f"({seen.idempotency_key}, {ack.idempotency_key})")
    history = [by_version[v] for v in sorted(by_version)]

    first = history[0]
    ticket = first.ticket
    if ticket.version != 0:
        problems.append(f"ticket {ticket_id}: {_missing(0, ticket.version - 1)}")
    else:
        problem = _opening_problem(first)
        if problem:
            problems.append(f"ticket {ticket_id} version 0: {problem}")
    for ack in history[1:]:
        recorded = ack.ticket
        if recorded.version != ticket.version + 1:
            problems.append(f"ticket {ticket_id}: {_missing(ticket.version + 1, recorded.version - 1)}")
            ticket = recorded  # nothing to replay across the gap: go on from what was recorded
            continue
        result = apply(ticket, ack.command.event, policy)
        if not result.changed or result.ticket != recorded or result.notify != ack.notify:
            problems.append(f"ticket {ticket_id} version {recorded.version}: replay differs from the recorded ack "
                            f"({_difference(result, recorded, ack.notify)})")
            ticket = recorded
            continue
        ticket = result.ticket
    return ticket, history


def _opening_problem(ack: TicketAck) -> str | None:
    """Why version 0 is not a ticket its warning opens, or None. (The chain, and what the desk copies from the
    warning for people to read, are taken as recorded: the acks do not carry the roster.)"""
    command, recorded = ack.command, ack.ticket
    if command.event.kind is not EventKind.WARNING or command.warning is None:
        return f"opened by {command.event.kind.value}, not by a warning"
    w = command.warning
    expected = {"ticket_id": w.warning_id, "household_id": w.household_id, "kind": w.kind.value,
                "severity": w.severity.value, "state": State.OPEN, "warning_ids": (w.warning_id,),
                "seen_keys": (command.event.idempotency_key,), "opened_at": command.event.at}
    differing = [name for name, value in expected.items() if getattr(recorded, name) != value]
    if differing:
        return f"not the ticket its warning opens ({', '.join(differing)})"
    return None


def _missing(first: int, last: int) -> str:
    return f"missing version {first}" if first == last else f"missing versions {first}-{last}"


def _fields_differing(a: Ticket, b: Ticket) -> list[str]:
    return [name for name in Ticket.model_fields if getattr(a, name) != getattr(b, name)]


def _difference(result, recorded: Ticket, notify: tuple[str, ...]) -> str:
    if result.rejected:
        return f"replay rejected: {result.rejected}"
    if result.duplicate:
        return "replay says duplicate"
    fields = _fields_differing(result.ticket, recorded)
    if result.notify != notify:
        fields.append(f"notify {list(result.notify)} != {list(notify)}")
    return ", ".join(fields)


def _time_order(ack: TicketAck):
    # when the stage acted; at the same instant: lower versions first, the change before its repeats,
    # the ticket stage before the detect stage (whose acks carry no ticket)
    version = ack.ticket.version if ack.ticket is not None else float("inf")
    return ack.at, version, ack.result is not AckResult.APPLIED, ack.by != "tickets"


# -- reading --------------------------------------------------------------------------------------

def history_lines(audit: Audit, ticket_id: str) -> list[str]:
    """One line per ack about the ticket, in time order: time, step, event, actor, result (the detect
    stage's marked ``detect:``), state and version after, who was told, and the reason if any."""
    lines = []
    for ack in audit.all_acks.get(ticket_id, []):
        event = ack.command.event
        result = ack.result.value if ack.by == "tickets" else f"{ack.by}:{ack.result.value}"
        state = f"{ack.ticket.state.value} v{ack.ticket.version}" if ack.ticket is not None else "-"
        line = (f"{ack.at.isoformat(timespec='seconds')}  {ack.step.value:<8}  {event.kind.value:<16}  "
                f"{event.actor:<12}  {result:<15}  {state:<20}  notify {','.join(ack.notify) or '-'}")
        if ack.reason:
            line += f"  reason: {ack.reason}"
        lines.append(line.rstrip())
    return lines


def parse_ack(value: bytes | None) -> TicketAck | None:
    """A message of an ``.ack`` topic, or None if it is not a TicketAck."""
    if not value:
        return None
    try:
        return TicketAck.model_validate_json(value)
    except ValidationError:
        return None


__all__ = ["Audit", "rebuild", "history_lines", "parse_ack"]
