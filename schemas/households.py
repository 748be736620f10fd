"""Households, who looks after them, and which utility meters are theirs.

Only pseudonymous ids here: no names, addresses or phone numbers. Those stay with the
community office; staff see a household id and find the person in their own records.

A household's ``meters`` enrol the utilities' own meter (or account) numbers: a reading that
names ``utility_id`` + ``meter_id`` instead of our ``household_id`` is mapped through them
(``streams/ingest/enrolment.py``). A household is *served by* a utility when it has one of its meters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator,
                      model_validator)

from schemas.readings import HouseholdId, Meter, UtilityRef, parse_rfc3339

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
#: The optional last column: enrolled meters (:func:`format_meters`). Files without it still load.
METERS_COLUMN = "meters"
HOUSEHOLD_CSV_COLUMNS_WITH_METERS = (*HOUSEHOLD_CSV_COLUMNS, METERS_COLUMN)


class EnrolledMeter(BaseModel):
    """A utility's meter, enrolled for a household from ``since`` (none: always) until ``until``
    (excluded; none: still).

    >>> m = EnrolledMeter(utility_id="aqua-north", meter_id="WM-0042", kind="water", since="2026-01-01T00:00:00+08:00")
    >>> m.covers(datetime.fromisoformat("2025-12-31T16:00:00+00:00")), m.covers(datetime.fromisoformat("2025-12-31T15:59:59Z"))
    (True, False)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    utility_id: UtilityRef
    meter_id: UtilityRef = Field(description="The utility's own meter or account number (opaque to us).")
    kind: Meter
    since: AwareDatetime | None = Field(default=None, description="Enrolled from (included); none: from always.")
    until: AwareDatetime | None = Field(default=None, description="Enrolled until (excluded); none: still enrolled.")

    @model_validator(mode="after")
    def _since_before_until(self) -> "EnrolledMeter":
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("a meter's until must be after its since")
        return self

    def covers(self, ts: datetime) -> bool:
        return (self.since is None or self.since <= ts) and (self.until is None or ts < self.until)

    def overlaps(self, other: "EnrolledMeter") -> bool:
        starts_before_other_ends = other.until is None or self.since is None or self.since < other.until
        ends_after_other_starts = self.until is None or other.since is None or other.since < self.until
        return starts_before_other_ends and ends_after_other_starts


def _escape_id(text: str) -> str:
    return text.replace(":", "%3A")


def _unescape_id(text: str) -> str:
    return text.replace("%3A", ":").replace("%3a", ":")


def format_meter(meter: EnrolledMeter) -> str:
    """One households.csv ``meters`` entry: ``utility:meter_id:kind[@since[/until]]``.

    Unambiguous although ids and times may contain ':': a ':' inside an id is written ``%3A``
    (ids never contain '%', '@' or ';'), so before the '@' there are exactly three ':'-separated
    fields; after it, times are RFC 3339 (no '/') separated by '/'; ``@/until`` has no since.

    >>> format_meter(EnrolledMeter(utility_id="grid:east", meter_id="EM/7:1", kind="electricity",
    ...                            since="2026-01-01T00:00:00+08:00", until="2026-06-01T00:00:00Z"))
    'grid%3Aeast:EM/7%3A1:electricity@2026-01-01T00:00:00+08:00/2026-06-01T00:00:00Z'
    >>> format_meter(EnrolledMeter(utility_id="aqua", meter_id="WM-1", kind="water"))
    'aqua:WM-1:water'
    """
    text = f"{_escape_id(meter.utility_id)}:{_escape_id(meter.meter_id)}:{meter.kind.value}"
    if meter.since is None and meter.until is None:
        return text
    text += "@" + ("" if meter.since is None else _rfc3339(meter.since))
    return text + ("" if meter.until is None else "/" + _rfc3339(meter.until))


def _rfc3339(ts: datetime) -> str:
    text = ts.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_meter(text: str) -> EnrolledMeter:
    """The inverse of :func:`format_meter`; a ValueError saying what is wrong.

    >>> m = parse_meter("grid%3Aeast:EM/7%3A1:electricity@2026-01-01T00:00:00+08:00/2026-06-01T00:00:00Z")
    >>> m.utility_id, m.meter_id, m.kind.value, m.since.isoformat(), m.until.isoformat()
    ('grid:east', 'EM/7:1', 'electricity', '2026-01-01T00:00:00+08:00', '2026-06-01T00:00:00+00:00')
    >>> parse_meter("aqua:WM-1:water@/2026-06-01T00:00:00Z").since is None
    True
    >>> parse_meter("aqua:WM:1:water")
    Traceback (most recent call last):
    ValueError: meter 'aqua:WM:1:water' is not utility:meter_id:kind[@since[/until]] (write a ':' inside an id as %3A)
    """
    ids, at, times = text.strip().partition("@")
    fields = ids.split(":")
    if len(fields) != 3 or (at and not times):
        raise ValueError(f"meter {text!r} is not utility:meter_id:kind[@since[/until]] (write a ':' inside an id as %3A)")
    utility_id, meter_id, kind = fields
    since_text, _, until_text = times.partition("/")
    try:
        since = parse_rfc3339(since_text) if since_text else None
        until = parse_rfc3339(until_text) if until_text else None
    except ValueError as exc:
        raise ValueError(f"meter {text!r}: since and until are RFC 3339 times with an offset ({exc})") from None
    try:
        return EnrolledMeter(utility_id=_unescape_id(utility_id), meter_id=_unescape_id(meter_id), kind=kind,
                             since=since, until=until)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "meter"
        raise ValueError(f"meter {text!r}: {where}: {error['msg']}") from None


def format_meters(meters: tuple[EnrolledMeter, ...]) -> str:
    """The households.csv ``meters`` cell: entries separated by ';'."""
    return ";".join(format_meter(m) for m in meters)


def parse_meters(text: str | None) -> tuple[EnrolledMeter, ...]:
    """The inverse of :func:`format_meters` (an empty cell: no meters).

    >>> [m.meter_id for m in parse_meters("aqua:WM-1:water; grid:EM-9:electricity@2026-03-01T00:00:00Z")]
    ['WM-1', 'EM-9']
    """
    return tuple(parse_meter(entry) for entry in (text or "").split(";") if entry.strip())

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
    meters: tuple[EnrolledMeter, ...] = Field(default=(), description="The utilities' meters enrolled for this "
                                              "household; readings that name one are mapped to it.")

    @field_validator("meters", mode="before")
    @classmethod
    def _meters_cell(cls, meters):
        return parse_meters(meters) if isinstance(meters, str) else meters  # a households.csv cell

    @field_validator("meters")
    @classmethod
    def _no_meter_twice(cls, meters: tuple[EnrolledMeter, ...]) -> tuple[EnrolledMeter, ...]:
        for i, meter in enumerate(meters):
            for other in meters[:i]:
                if (meter.utility_id, meter.meter_id) == (other.utility_id, other.meter_id) and meter.overlaps(other):
                    raise ValueError("a meter is enrolled twice for overlapping times")
        return meters

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
        """A households.csv row (``meters`` optional; see :func:`parse_meters`)."""
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
            meters=row.get(METERS_COLUMN) or (),
        )

    def to_csv_row(self) -> dict[str, str]:
        """The households.csv row; ``meters`` only when there are some (so writers of the seven-column
        file keep working, and one that would drop meters fails loudly instead)."""
        row = {
            "household_id": self.household_id,
            "community": self.community,
            "tags": ";".join(self.tags),
            "timezone": self.timezone,
            "primary_worker": self.staff.primary_worker,
            "backup_worker": self.staff.backup_worker or "",
            "supervisor": self.staff.supervisor or "",
        }
        if self.meters:
            row[METERS_COLUMN] = format_meters(self.meters)
        return row
