"""Meter readings as utilities send them, and as ingest passes them on.

Two input forms share one topic (``readings.raw``):

* :class:`MeterReading` — consumption in the interval that ends at ``ts``
  (kWh for electricity, litres for water).
* :class:`MeterRegisterReading` — the meter's cumulative register at ``ts``;
  ingest turns consecutive registers into interval consumption.

A message with ``value`` is an interval reading, one with ``register`` a register reading.

>>> r = MeterReading.model_validate_json(
...     '{"household_id": "hh-0001", "meter": "water", "ts": "2026-03-01T07:15:00+01:00", "value": 12.5}')
>>> r.meter, r.value, r.ts.isoformat()
(<Meter.WATER: 'water'>, 12.5, '2026-03-01T07:15:00+01:00')
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, StringConstraints, field_validator

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

# Nothing a meter reports is older than this; it catches epoch-zero and swapped day/year.
EARLIEST_TS = datetime.fromisoformat("2000-01-01T00:00:00+00:00")

# A number, not a string or a boolean: "12" or true in a value field is a feed bug worth seeing.
StrictNumber = Annotated[float, Strict()]

# Upper bounds far above anything a home uses; beyond them a number is garbage, not consumption.
MAX_VALUE = 1e9


class _Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, use_enum_values=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    household_id: HouseholdId
    meter: Meter
    ts: AwareDatetime = Field(description="End of the interval (or time of the register read); must carry a UTC offset.")
    unit: Annotated[str, StringConstraints(max_length=16)] | None = Field(
        default=None, description="Optional unit; converted to kWh or litres. kWh/Wh/MWh or L/m3.")
    reading_id: OptionalTag = None
    utility_id: OptionalTag = None

    @field_validator("ts")
    @classmethod
    def _not_before_2000(cls, ts: datetime) -> datetime:
        if ts < EARLIEST_TS:
            raise ValueError("timestamp before 2000-01-01 is not a meter reading")
        return ts

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
