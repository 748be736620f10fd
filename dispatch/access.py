"""Who may see and act on a household: one rule for the staff API and the console alike.

Pure: a :class:`~schemas.users.User` and a household desk in, yes or no out.

>>> from schemas.households import Household
>>> from dispatch.desk import HouseholdDesk
>>> desk = HouseholdDesk(household_id="hh-1", roster=Household(household_id="hh-1", community="north",
...                      staff={"primary_worker": "w-1", "supervisor": "s-1"}))
>>> [may_see(User(user_id=u, role=r, communities=c), desk) for u, r, c in
...  [("w-1", "staff", ()), ("w-2", "staff", ()), ("s-9", "supervisor", ("north",)), ("s-8", "supervisor", ("south",)),
...   ("ops", "operator", ())]]
[True, False, True, False, False]
"""

from __future__ import annotations

from dispatch.desk import HouseholdDesk
from schemas.users import Role, User

#: Roles that look after households (the others never see one).
CARING_ROLES = frozenset({Role.STAFF, Role.SUPERVISOR})


def may_see(user: User, desk: HouseholdDesk) -> bool:
    """May ``user`` see this household and act on its tickets?

    Staff and supervisors named by its chain (roster, or a ticket's chain: the duty desk sees the
    tickets it was sent); a supervisor also every household of their communities. Nobody else."""
    if user.disabled or user.role not in CARING_ROLES:
        return False
    if user.user_id in desk.staff():
        return True
    return (user.role is Role.SUPERVISOR and desk.roster is not None
            and desk.roster.community in user.communities)


__all__ = ["may_see", "CARING_ROLES"]
