"""``streams.tickets.TicketDesks`` over a dict: the indexes the timer and the staff API use instead of
reading every desk."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dispatch.desk import HouseholdDesk, RosterRules, with_roster
from dispatch.tickets import open_ticket
from schemas.households import Household
from streams.tickets import TicketDesks

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def household(household_id: str, primary: str, supervisor: str = "s-1") -> Household:
    return Household(household_id=household_id, community="north",
                     staff={"primary_worker": primary, "supervisor": supervisor})


def desks() -> TicketDesks:
    return TicketDesks({}, topics=None, rules=RosterRules(), clock=lambda: T0)


def test_staff_see_the_households_on_their_chain_and_follow_roster_changes():
    d = desks()
    d.store(with_roster(HouseholdDesk(household_id="hh-1"), household("hh-1", "w-1")))
    d.store(with_roster(HouseholdDesk(household_id="hh-2"), household("hh-2", "w-2")))
    assert [x.household_id for x in d.of_staff("w-1")] == ["hh-1"]
    assert [x.household_id for x in d.of_staff("s-1")] == ["hh-1", "hh-2"]  # the supervisor sees both
    # the roster changes: hh-1 moves from w-1 to w-3
    d.store(with_roster(d.get("hh-1"), household("hh-1", "w-3")))
    assert d.of_staff("w-1") == [] and [x.household_id for x in d.of_staff("w-3")] == ["hh-1"]
    assert d.of_staff("nobody") == []


def test_after_a_rebalance_the_indexes_are_rebuilt_from_the_table():
    d = desks()
    ticket = open_ticket("hh-1/surge/2026-03-01T08:00:00+00:00", household_id="hh-1", kind="surge",
                         severity="high", chain=("w-1",), at=T0)
    desk = with_roster(HouseholdDesk(household_id="hh-1"), household("hh-1", "w-1"))
    d.store(desk.model_copy(update={"tickets": {ticket.ticket_id: ticket}}))
    fresh = TicketDesks(d.table, topics=None, rules=RosterRules(), clock=lambda: T0 + timedelta(minutes=1))
    assert fresh.index_stale and fresh.deadlines == {}
    assert [x.household_id for x in fresh.of_staff("w-1")] == ["hh-1"]  # rebuilt on first use
    assert fresh.deadlines == {"hh-1": T0}  # a new ticket is due at once (its dispatch)


def test_the_open_gauge_counts_tickets_without_a_deadline_too():
    import asyncio

    from dispatch.tickets import Outcome, State
    from streams.metrics import TicketMetrics
    from streams.tickets import check_deadlines

    d = desks()
    ticket = open_ticket("hh-1/surge/2026-03-01T08:00:00+00:00", household_id="hh-1", kind="surge",
                         severity="high", chain=("w-1",), at=T0)
    waiting = ticket.model_copy(update={"state": State.FEEDBACK_RECORDED, "deadline": None,
                                        "outcome": Outcome.FALSE_ALARM})  # for detection to close it
    d.store(HouseholdDesk(household_id="hh-1", tickets={waiting.ticket_id: waiting}))
    metrics = TicketMetrics()
    asyncio.run(check_deadlines(d, metrics, 10.0))
    assert metrics.open.labels(state="feedback_recorded")._value.get() == 1
