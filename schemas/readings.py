"""Meter readings as utilities send them, and as ingest passes them on.

Two input forms share one topic (``readings.raw``) and one HTTP door (``POST /api/v1/readings``):

* :class:`MeterReading` — consumption in the interval that ends at ``ts``
  (kWh for electricity, litres for water).
* :class:`MeterRegisterReading` — the meter's cumulative register at ``ts``;
  ingest turns consecutive registers into interval consumption.

A message with ``value`` is an interval reading, one with ``register`` a register reading.

A reading names its household one of two ways, never both: our pseudonymous ``household_id``,
or the utility's own ids, ``utility_id`` + ``meter_id``, which ingest maps to a household through
the meters enrolled on the roster (``schemas.households.EnrolledMeter``).

``ts`` is an RFC 3339 date-time string with an offset (``Z`` or ``±HH:MM``): no epoch numbers,
no ``+0800``. The exported JSON Schema says exactly this (a ``pattern`` beside ``format:
date-time``), so a utility's validator and ingest agree (``tests/unit/test_ingest_contract.py``).

>>> r = MeterReading.model_validate_json(
...     '{"household_id": "hh-0001", "meter": "water", "ts": "2026-03-01T07:15:00+01:00", "value": 12.5}')
>>> r.meter, r.value, r.ts.isoformat()
(<Meter.WATER: 'water'>, 12.5, '2026-03-01T07:15:00+01:00')
>>> MeterReading.model_validate_json(
...     '{"utility_id": "aqua-north", "meter_id": "WM-0042", "meter": "water", "ts": "2026-03-01T06:15:00Z", "value": 3}'
... ).household_id is None
True
>>> parse_rfc3339("2026-03-01t07:15:00.1234567z").isoformat()
'2026-03-01T07:15:00.123456+00:00'
>>> parse_rfc3339("2026-03-01T07:15:00+0800")
Traceback (most recent call last):
ValueError: not an RFC 3339 date-time with an offset (Z or ±HH:MM)
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1


class Meter(StrEnum):
    ELECTRICITY = "electricity"
    WATER = "water"


#: The unit every validated reading is expressed in.
CANONICAL_UNIT = {Meter.ELECTRICITY: "kWh", Meter.WATER: "L"}

#: Units a utility may declare, and the factor to the canonical unit.
UNIT_FACTORS: dict[Meter, dict[str, float]] = {
    Meter.ELECTRICITY: {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0},
    Meter.WATER: {"L": 1.0, "l": 1.0, "m3": 1000.0},
}

# Pseudonymous ids only: short, no spaces, nothing that looks like a name or address.
HOUSEHOLD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
HouseholdId = Annotated[str, StringConstraints(pattern=HOUSEHOLD_ID_PATTERN)]
OptionalTag = Annotated[str, StringConstraints(min_length=1, max_length=128)] | None

# A utility's own ids (its company id, its meter or account numbers): opaque to us.
UTILITY_ID_PATTERN = r"^[A-Za-z0-9._:/-]{1,64}$"
UtilityRef = Annotated[str, StringConstraints(pattern=UTILITY_ID_PATTERN)]

# Nothing a meter reports is older than this; it catches epoch-zero and swapped day/year.
EARLIEST_TS = datetime.fromisoformat("2000-01-01T00:00:00+00:00")

#: RFC 3339 ``date-time`` (section 5.6) with the year from 2000 on, seconds 00-59 (no leap
#: second: nothing downstream can represent one) and ASCII digits only. ``$`` is the end of the
#: text here (pydantic's and the parser's full match); the exported schema spells it as a
#: lookahead so that validators whose ``$`` also matches before a final newline agree.
RFC3339_PATTERN = (r"^(?:2[0-9]{3}|[3-9][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
                   r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")
_RFC3339 = re.compile(RFC3339_PATTERN)
# A date, or a date and time, without an offset: a naive timestamp (we cannot know when it happened).
_NAIVE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?$")


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with an offset, as an aware datetime (fractions beyond microseconds are
    cut); a ValueError for anything else, including epoch numbers in a string and ``+0800``."""
    if not _RFC3339.fullmatch(text):
        raise ValueError("not an RFC 3339 date-time with an offset (Z or ±HH:MM)")
    text = text.upper()
    if "." in text:  # datetime keeps microseconds: cut longer fractions, keep the offset
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(text)  # raises for a day the month does not have


def _rfc3339_ts(value: Any) -> Any:
    if isinstance(value, datetime):  # built in Python, not read from the wire
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("rfc3339_type", "ts must be an RFC 3339 date-time string with an offset "
                                                  "(e.g. 2026-03-01T07:15:00+01:00), not a number or other type")
    if _NAIVE.fullmatch(value):
        raise PydanticCustomError("timezone_aware", "Input should have timezone info")
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise PydanticCustomError("rfc3339", "ts must be an RFC 3339 date-time with an offset, Z or ±HH:MM "
                                             "(e.g. 2026-03-01T07:15:00+01:00), from the year 2000 on") from None


def _whole_number(value: Any) -> Any:
    # JSON Schema's "integer": 900 and 900.0, never true or "900" (pydantic's lax int takes both).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise PydanticCustomError("int_type", "Input should be a whole number")
    return int(value)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # Literal[1] would take true (true == 1 in Python)
        raise PydanticCustomError("literal_error", "Input should be 1")
    return value


RfcTimestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_ts)]

# A number, not a string or a boolean: "12" or true in a value field is a feed bug worth seeing.
StrictNumber = Annotated[float, Strict()]

# Upper bounds far above anything a home uses; beyond them a number is garbage, not consumption.
MAX_VALUE = 1e9


def _units_by_meter() -> list[dict]:
    """JSON Schema: which ``unit`` each ``meter`` may declare (ingest's unit check, as a schema)."""
    return [{"if": {"properties": {"meter": {"const": meter.value}}, "required": ["meter"]},
             "then": {"properties": {"unit": {"enum": [*UNIT_FACTORS[meter], None]}}}} for meter in Meter]


#: JSON Schema: how a reading names its household (a present id is a non-null one).
ONE_WAY_TO_NAME_THE_HOUSEHOLD = [
    {"title": "by household_id", "required": ["household_id"],
     "properties": {"household_id": {"type": "string"}, "meter_id": {"type": "null"}}},
    {"title": "by the utility's meter", "required": ["utility_id", "meter_id"],
     "properties": {"utility_id": {"type": "string"}, "meter_id": {"type": "string"}, "household_id": {"type": "null"}}},
]


class _Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, use_enum_values=False,
                              json_schema_extra={"oneOf": ONE_WAY_TO_NAME_THE_HOUSEHOLD, "allOf": _units_by_meter()})

    schema_version: Literal[1] = SCHEMA_VERSION
    household_id: HouseholdId | None = Field(default=None, description="Our pseudonymous household id; or give "
                                             "utility_id and meter_id instead (not both ways).")
    utility_id: UtilityRef | None = Field(default=None, description="The utility's own id; required with meter_id.")
    meter_id: UtilityRef | None = Field(default=None, description="The utility's meter (or account) number, enrolled "
                                        "on the roster for a household; ingest maps it to household_id at ts.")
    meter: Meter
    ts: RfcTimestamp = Field(description="End of the interval (or time of the register read): an RFC 3339 date-time "
                                         "with an offset (Z or ±HH:MM), from the year 2000 on.",
                             json_schema_extra={"pattern": RFC3339_PATTERN})
    unit: Annotated[str, StringConstraints(max_length=16)] | None = Field(
        default=None, description="Optional unit; converted to kWh or litres. kWh/Wh/MWh or L/m3.")
    reading_id: OptionalTag = None

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_not_bool(cls, value: Any) -> Any:
        return _not_bool(value)

    @field_validator("ts")
    @classmethod
    def _not_before_2000(cls, ts: datetime) -> datetime:
        if ts < EARLIEST_TS:
            raise ValueError("timestamp before 2000-01-01 is not a meter reading")
        return ts

    @model_validator(mode="after")
    def _one_way_to_name_the_household(self):
        if self.household_id is not None and self.meter_id is not None:
            raise PydanticCustomError("two_ways", "household_id and meter_id: name the household one way, not both")
        if self.household_id is None and self.meter_id is None:
            raise PydanticCustomError("no_household", "household_id (or utility_id and meter_id) is required")
        if self.meter_id is not None and self.utility_id is None:
            raise PydanticCustomError("no_utility", "utility_id is required with meter_id")
        return self

    def unit_factor(self) -> float:
        if self.unit is None:
            return 1.0
        factors = UNIT_FACTORS[self.meter]
        if self.unit not in factors:
            # The rejected unit itself is not echoed: details never repeat input.
            raise ValueError(f"unit is not one known for {self.meter.value} (known: {', '.join(factors)})")
        return factors[self.unit]


class MeterReading(_Reading):
    """Consumption during the interval that ends at ``ts``."""

    value: StrictNumber = Field(ge=0, le=MAX_VALUE, description="kWh or litres consumed in the interval.")
    interval_s: int | None = Field(default=None, gt=0, le=31 * 86400, description="Interval length in seconds, if known.")

    @field_validator("interval_s", mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> Any:
        # a validator, not an annotation on the type: the JSON Schema keeps its exclusiveMinimum/maximum
        return None if value is None else _whole_number(value)


class MeterRegisterReading(_Reading):
    """A cumulative meter register, read at ``ts``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    # Called ``register`` on the wire; the attribute name avoids ABCMeta.register on the class.
    register_value: StrictNumber = Field(alias="register", ge=0, le=MAX_VALUE,
                                  description="Cumulative register value (kWh or litres).")
    rollover_at: StrictNumber | None = Field(
        default=None, gt=0, le=MAX_VALUE,
        description="Register value at which the meter wraps to zero (e.g. 100000 for a five-digit litre register).",
    )


class ValidatedReading(BaseModel):
    """What ingest writes to ``readings.validated``, keyed by ``household_id``.

    Always interval consumption in canonical units (kWh or litres).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    household_id: HouseholdId
    meter: Meter
    ts: AwareDatetime
    value: float = Field(ge=0)
    interval_s: int | None = None
    source: Literal["interval", "register"] = "interval"
    flags: tuple[str, ...] = Field(default=(), description="Ingest notes, e.g. 'register_readback' or 'register_rollover'.")
    reading_id: str | None = None
    utility_id: str | None = None
