"""What a supervisor needs to see across their communities, from the household desks they may see.

Pure: desks and the time in, numbers out. Over the tickets on the desks (finished ones stay there
30 days, :data:`dispatch.desk.KEEP_FINISHED`, so a 14-day window is complete):

* **escalations**: open tickets now escalated (nobody acknowledged in time, or someone asked for
  the next person), oldest first, and how many tickets of the window were escalated at all;
* **overdue acknowledgements**: open tickets dispatched or escalated whose acknowledgement
  deadline has passed (the timer escalates them on its next tick: these are the ones nobody took);
* **tickets per day**: opened per local day, the last ``days`` days, today included;
* **valid-alert rate**: of the welfare outcomes recorded for tickets opened in the window, the share
  that confirmed a real need (:data:`dispatch.audit.VALID_OUTCOMES`: confirmed emergency, needed
  help), as in ``elderwatch demo`` and the audit's loop report. ``meter_fault`` is data quality,
  not a judgement on an alert, and is left out.

>>> from datetime import datetime, timezone
>>> from dispatch.tickets import Ticket
>>> from schemas.households import Household
>>> now = datetime(2026, 3, 14, 12, 0, tzinfo=timezone.utc)
>>> def ticket(n, state, outcome=None, level=0, deadline=None):
...     return Ticket(ticket_id=f"hh-1/inactivity/{n}", household_id="hh-1", kind="inactivity", severity="high",
...                   state=state, chain=("w-1", "w-2"), opened_at=datetime(2026, 3, 10 + n, 9, tzinfo=timezone.utc),
...                   outcome=outcome, escalation_level=level, deadline=deadline)
>>> desk = HouseholdDesk(household_id="hh-1", roster=Household(household_id="hh-1", community="north",
...     staff={"primary_worker": "w-1"}), tickets={t.ticket_id: t for t in [
...     ticket(1, "closed", "needed_help"), ticket(2, "closed", "false_alarm"), ticket(3, "escalated", level=1,
...     deadline=datetime(2026, 3, 14, 11, 0, tzinfo=timezone.utc))]})
>>> s = supervisor_stats([desk], now, days=7)
>>> [t.ticket_id for t in s.escalations], [t.ticket_id for t in s.overdue], s.valid, s.judged, s.rate
(['hh-1/inactivity/3'], ['hh-1/inactivity/3'], 1, 2, 0.5)
>>> [n for _, n in s.per_day]
[0, 0, 0, 1, 1, 1, 0]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from dispatch.audit import VALID_OUTCOMES
from dispatch.desk import HouseholdDesk
from dispatch.tickets import TERMINAL, WELFARE_KINDS, Outcome, State, Ticket

WAITING = frozenset({State.DISPATCHED, State.ESCALATED})


@dataclass
class CommunityStats:
    community: str
    households: int = 0
    open: int = 0
    escalated: int = 0
    overdue: int = 0
    opened: int = 0  # in the window
    valid: int = 0
    judged: int = 0

    @property
    def rate(self) -> float | None:
        return round(self.valid / self.judged, 3) if self.judged else None


@dataclass
class SupervisorStats:
    days: int
    timezone: str
    escalations: list[Ticket] = field(default_factory=list)
    escalated_in_window: int = 0
    overdue: list[Ticket] = field(default_factory=list)
    per_day: list[tuple[date, int]] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)  # Outcome -> count, welfare, in the window
    valid: int = 0
    judged: int = 0
    communities: list[CommunityStats] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return round(self.valid / self.judged, 3) if self.judged else None

    @property
    def busiest_day(self) -> int:
        return max((n for _, n in self.per_day), default=0)


def common_zone(desks: Iterable[HouseholdDesk], default: str = "UTC") -> str:
    """The time zone most of these households are in (the days of the per-day count are its days)."""
    zones = Counter(d.roster.timezone for d in desks if d.roster is not None)
    return zones.most_common(1)[0][0] if zones else default


def supervisor_stats(desks: Iterable[HouseholdDesk], now: datetime, *, days: int = 14,
                     timezone: str | None = None) -> SupervisorStats:
    desks = list(desks)
    zone_name = timezone or common_zone(desks)
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    first_day = today - timedelta(days=days - 1)
    window_start = datetime.combine(first_day, datetime.min.time(), tzinfo=zone)
    per_day = Counter()
    stats = SupervisorStats(days=days, timezone=zone_name)
    communities: dict[str, CommunityStats] = {}
    for desk in desks:
        name = desk.roster.community if desk.roster is not None else ""
        community = communities.setdefault(name, CommunityStats(community=name))
        community.households += 1
        for ticket in desk.tickets.values():
            is_open = ticket.state not in TERMINAL
            if is_open:
                community.open += 1
                if ticket.state is State.ESCALATED:
                    stats.escalations.append(ticket)
                    community.escalated += 1
                if ticket.state in WAITING and ticket.deadline is not None and ticket.deadline < now:
                    stats.overdue.append(ticket)
                    community.overdue += 1
            if ticket.opened_at < window_start:
                continue
            per_day[ticket.opened_at.astimezone(zone).date()] += 1
            community.opened += 1
            if ticket.escalation_level > 0:
                stats.escalated_in_window += 1
            if ticket.outcome is not None and ticket.outcome is not Outcome.METER_FAULT and ticket.kind in WELFARE_KINDS:
                stats.outcomes[ticket.outcome] += 1
                stats.judged += 1
                community.judged += 1
                if ticket.outcome in VALID_OUTCOMES:
                    stats.valid += 1
                    community.valid += 1
    stats.escalations.sort(key=lambda t: (t.opened_at, t.ticket_id))
    stats.overdue.sort(key=lambda t: (t.deadline, t.ticket_id))
    stats.per_day = [(first_day + timedelta(days=i), per_day[first_day + timedelta(days=i)]) for i in range(days)]
    stats.communities = sorted(communities.values(), key=lambda c: c.community)
    return stats


__all__ = ["supervisor_stats", "SupervisorStats", "CommunityStats", "common_zone"]
