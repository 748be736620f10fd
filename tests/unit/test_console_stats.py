"""The supervisor's numbers (``elderwatch/console/stats.py``), table-driven on hand-made desks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dispatch.desk import HouseholdDesk
from dispatch.tickets import Outcome, State, Ticket
from elderwatch.console.stats import common_zone, supervisor_stats
from schemas.households import Household

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=timezone.utc)  # 20:00 in Shanghai


def ticket(n: int, *, household: str = "hh-1", kind: str = "inactivity", state: State = State.CLOSED,
           opened: datetime, outcome: Outcome | None = None, level: int = 0,
           deadline: datetime | None = None) -> Ticket:
    return Ticket(ticket_id=f"{household}/{kind}/{n}", household_id=household, kind=kind, severity="high",
                  state=state, chain=("w-1", "w-2", "s-1"), opened_at=opened, outcome=outcome,
                  escalation_level=level, deadline=deadline)


def desk(household: str, community: str, *tickets: Ticket, zone: str = "Asia/Shanghai") -> HouseholdDesk:
    return HouseholdDesk(household_id=household, tickets={t.ticket_id: t for t in tickets},
                         roster=Household(household_id=household, community=community, timezone=zone,
                                          staff={"primary_worker": "w-1"}))


def test_valid_alert_rate_counts_welfare_outcomes_of_the_window():
    days = lambda d: NOW - timedelta(days=d)  # noqa: E731
    desks = [desk("hh-1", "north",
                  ticket(1, opened=days(1), outcome=Outcome.CONFIRMED_EMERGENCY),
                  ticket(2, opened=days(2), outcome=Outcome.NEEDED_HELP),
                  ticket(3, opened=days(3), outcome=Outcome.FALSE_ALARM),
                  ticket(4, opened=days(4), outcome=Outcome.BENIGN_EXPLAINED),
                  ticket(5, opened=days(20), outcome=Outcome.NEEDED_HELP),  # before the window
                  ticket(6, opened=days(1), kind="meter_offline", outcome=Outcome.METER_FAULT),  # not a judgement
                  ticket(7, opened=days(1), state=State.HANDLED))]  # no outcome yet
    s = supervisor_stats(desks, NOW)
    assert (s.valid, s.judged, s.rate) == (2, 4, 0.5)
    assert s.outcomes == {Outcome.CONFIRMED_EMERGENCY: 1, Outcome.NEEDED_HELP: 1, Outcome.FALSE_ALARM: 1,
                          Outcome.BENIGN_EXPLAINED: 1}
    assert supervisor_stats([], NOW).rate is None


@pytest.mark.parametrize("state, deadline, escalated, overdue", [
    (State.ESCALATED, NOW + timedelta(minutes=5), True, False),   # escalated, its new person still has time
    (State.ESCALATED, NOW - timedelta(minutes=1), True, True),    # and nobody took it in time either
    (State.DISPATCHED, NOW - timedelta(minutes=1), False, True),  # the first person did not answer in time
    (State.DISPATCHED, NOW + timedelta(minutes=1), False, False),
    (State.ACCEPTED, NOW - timedelta(minutes=1), False, False),   # taken: overdue handling is a re-alert, not this
    (State.CLOSED, None, False, False),
])
def test_escalations_and_overdue_acknowledgements(state, deadline, escalated, overdue):
    t = ticket(1, state=state, opened=NOW - timedelta(hours=1), deadline=deadline,
               level=1 if state is State.ESCALATED else 0)
    s = supervisor_stats([desk("hh-1", "north", t)], NOW)
    assert (bool(s.escalations), bool(s.overdue)) == (escalated, overdue)
    assert s.communities[0].escalated == int(escalated) and s.communities[0].overdue == int(overdue)


def test_tickets_per_local_day_for_fourteen_days():
    shanghai = timezone(timedelta(hours=8))
    opened = [datetime(2026, 3, 14, 0, 30, tzinfo=shanghai),   # today, just after local midnight
              datetime(2026, 3, 13, 23, 30, tzinfo=shanghai),  # yesterday (15:30 UTC: the same UTC day as today's)
              datetime(2026, 3, 1, 0, 0, tzinfo=shanghai),     # the first day of the window
              datetime(2026, 2, 28, 23, 59, tzinfo=shanghai)]  # the day before: out
    s = supervisor_stats([desk("hh-1", "north", *(ticket(i, opened=o) for i, o in enumerate(opened)))], NOW)
    assert len(s.per_day) == 14 and s.timezone == "Asia/Shanghai"
    assert s.per_day[0][0].isoformat() == "2026-03-01" and s.per_day[-1][0].isoformat() == "2026-03-14"
    assert [n for _, n in s.per_day] == [1] + [0] * 11 + [1, 1]
    assert s.busiest_day == 1 and s.communities[0].opened == 3


def test_communities_and_the_common_zone():
    desks = [desk("hh-1", "north", ticket(1, opened=NOW, state=State.DISPATCHED)),
             desk("hh-2", "south", zone="Europe/London"), desk("hh-3", "north")]
    s = supervisor_stats(desks, NOW)
    assert [(c.community, c.households, c.open) for c in s.communities] == [("north", 2, 1), ("south", 1, 0)]
    assert common_zone(desks) == "Asia/Shanghai" and common_zone([]) == "UTC"
