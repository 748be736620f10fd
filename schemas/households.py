"""Households and who looks after them.

Only pseudonymous ids here: no names, addresses or phone numbers. Those stay with the
community office; staff see a household id and find the person in their own records.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from schemas.readings import HouseholdId

def check_timezone(name: str) -> str:
    """``name`` if it is an IANA zone this machine knows, else a ValueError saying so.

    >>> check_timezone("Europe/London")
    'Europe/London'
    >>> check_timezone("Mars/Olympus")
    Traceback (most recent call last):
    ValueError: unknown time zone 'Mars/Olympus'
    """
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


# households.csv columns, in order; tags are ';'-separated.
HOUSEHOLD_CSV_COLUMNS = ("household_id", "community", "tags", "timezone", "primary_worker", "backup_worker", "supervisor")

STAFF_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
StaffId = Annotated[str, StringConstraints(pattern=STAFF_ID_PATTERN)]


class StaffAssignment(BaseModel):
    """Who is called first, next, and last for a household."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_worker: StaffId
    backup_worker: StaffId | None = None
    supervisor: StaffId | None = None


class Household(BaseModel):
    """A watched household.

    >>> h = Household(household_id="hh-0001", community="north", staff={"primary_worker": "w-7"})
    >>> h.timezone, h.staff.primary_worker
    ('UTC', 'w-7')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    household_id: HouseholdId
    community: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    tags: tuple[str, ...] = Field(default=(), description="Free labels, e.g. 'heating:electric'. Never personal data.")
    timezone: str = Field(default="UTC", description="IANA zone of the home; the day rhythm is learned in local time.")
    staff: StaffAssignment

    @field_validator("tags")
    @classmethod
    def _csv_safe_tags(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        for tag in tags:
            if not tag or ";" in tag or len(tag) > 64:
                raise ValueError("a tag is 1-64 characters without ';' (households.csv separates tags with ';')")
        return tags

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return check_timezone(name)

    @classmethod
    def from_csv_row(cls, row: dict[str, str]) -> "Household":
        return cls(
            household_id=row["household_id"],
            community=row["community"],
            tags=tuple(t for t in (row.get("tags") or "").split(";") if t),
            timezone=row.get("timezone") or "UTC",
            staff=StaffAssignment(
                primary_worker=row["primary_worker"],
                backup_worker=row.get("backup_worker") or None,
                supervisor=row.get("supervisor") or None,
            ),
        )

    def to_csv_row(self) -> dict[str, str]:
        return {
            "household_id": self.household_id,
            "community": self.community,
            "tags": ";".join(self.tags),
            "timezone": self.timezone,
            "primary_worker": self.staff.primary_worker,
            "backup_worker": self.staff.backup_worker or "",
            "supervisor": self.staff.supervisor or "",
        }
