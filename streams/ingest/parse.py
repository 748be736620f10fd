"""Raw bytes to a typed reading, or a rejection that says why.

>>> from datetime import datetime, timezone
>>> now = datetime(2026, 3, 1, tzinfo=timezone.utc)
>>> parse_raw(b'{"household_id": "hh-1", "meter": "water", "ts": "2026-02-28T07:15:00", "value": 3}', now=now)
Rejection(reason=<RejectReason.NAIVE_TIMESTAMP: 'naive_timestamp'>, detail='ts: Input should have timezone info', household_id='hh-1')
>>> parse_raw(b'{"household_id": "hh-1", "meter": "water", "ts": "2026-02-28T07:15:00Z", "register": 41.0}', now=now).form
'register'
>>> parse_raw(b'{"household_id": "hh-1", "meter": "water", "ts": 1772348100, "value": 3}', now=now).reason.value
'invalid_timestamp'

It accepts what the exported JSON Schema (``schemas/export.py``) accepts, and nothing else, apart
from the checks a schema cannot make (the clock; see ``tests/unit/test_ingest_contract.py``).
A reading that names ``utility_id`` + ``meter_id`` parses here; mapping it to a household is
``streams/ingest/enrolment.py``'s.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from schemas.dead_letter import RejectReason
from schemas.readings import HOUSEHOLD_ID_PATTERN, MeterReading, MeterRegisterReading


@dataclass(frozen=True, slots=True)
class Parsed:
    reading: MeterReading | MeterRegisterReading

    @property
    def form(self) -> str:
        return "register" if isinstance(self.reading, MeterRegisterReading) else "interval"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str
    household_id: str | None = None


def parse_model(model, value: bytes | None):
    """``value`` as an instance of the pydantic ``model`` (a message an internal topic carries), or a
    :class:`Rejection` saying why not: ``not_json``, or ``invalid_field`` naming the first error's type and place.

    >>> from schemas.readings import ValidatedReading
    >>> parse_model(ValidatedReading, b"").detail, parse_model(ValidatedReading, b"{").reason.value
    ('empty message', 'not_json')
    >>> parse_model(ValidatedReading, b"{}").detail
    'not a ValidatedReading: missing at household_id'
    """
    if not value:
        return Rejection(RejectReason.NOT_JSON, "empty message")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = RejectReason.NOT_JSON if first["type"] == "json_invalid" else RejectReason.INVALID_FIELD
        where = ".".join(map(str, first["loc"])) or "top level"
        return Rejection(reason, f"not a {model.__name__}: {first['type']} at {where}")


# pydantic error type (and field) -> our reason. The first error decides; detail lists them all.
_ERROR_REASONS = {
    "missing": RejectReason.MISSING_FIELD,
    "extra_forbidden": RejectReason.UNKNOWN_FIELD,
    "timezone_aware": RejectReason.NAIVE_TIMESTAMP,
    "finite_number": RejectReason.NOT_FINITE,
    "greater_than_equal": RejectReason.NEGATIVE_VALUE,
    "no_household": RejectReason.MISSING_FIELD,      # neither household_id nor utility_id + meter_id
    "no_utility": RejectReason.MISSING_FIELD,        # meter_id without utility_id
    "two_ways": RejectReason.INVALID_FIELD,          # household_id and meter_id both
}
_TIMESTAMP_ERRORS = {"datetime_parsing", "datetime_from_date_parsing", "datetime_type", "datetime_object_invalid",
                     "rfc3339", "rfc3339_type"}
_MAX_DETAIL = 400
_HOUSEHOLD_ID = re.compile(HOUSEHOLD_ID_PATTERN)


def _reason_for(error: dict) -> RejectReason:
    kind, field = error["type"], (error["loc"] or ("",))[0]
    if field == "meter" and kind in ("enum", "string_type", "literal_error"):
        return RejectReason.UNKNOWN_METER_KIND
    if field == "ts" and (kind in _TIMESTAMP_ERRORS or kind == "value_error"):
        return RejectReason.INVALID_TIMESTAMP
    return _ERROR_REASONS.get(kind, RejectReason.INVALID_FIELD)


def _describe(exc: ValidationError) -> str:
    # Field names and pydantic's message, never the rejected input itself (it may be personal data).
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors(include_input=False)]
    return "; ".join(parts)[:_MAX_DETAIL]


def _reject_non_finite(_token: str) -> float:
    # json.loads would turn NaN/Infinity into floats; a meter never sends them.
    raise ValueError("NaN or Infinity is not a meter value")


def parse_raw(value: bytes | None, *, now: datetime, max_future: timedelta = timedelta(hours=1)) -> Parsed | Rejection:
    """Decode and validate one raw message; never raises for bad input."""
    if not value:
        return Rejection(RejectReason.NOT_JSON, "empty message")
    try:
        payload = json.loads(value.decode("utf-8"), parse_constant=_reject_non_finite)
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.NOT_JSON, f"not UTF-8 at byte {exc.start}")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, so is our NaN refusal
        reason = RejectReason.NOT_FINITE if "NaN or Infinity" in str(exc) else RejectReason.NOT_JSON
        return Rejection(reason, f"invalid JSON: {str(exc)[:200]}")
    except RecursionError:
        return Rejection(RejectReason.NOT_JSON, "invalid JSON: nested too deeply")
    if not isinstance(payload, dict):
        return Rejection(RejectReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(payload).__name__}")

    # Only a well-formed pseudonymous id is carried into the dead letter; anything else might be a name.
    household_id = payload.get("household_id")
    household_id = household_id if isinstance(household_id, str) and _HOUSEHOLD_ID.fullmatch(household_id) else None
    has_value, has_register = "value" in payload, "register" in payload
    if has_value == has_register:
        detail = ("both 'value' and 'register'" if has_value else "neither 'value' (interval) nor 'register' (cumulative)")
        return Rejection(RejectReason.UNKNOWN_FORM, detail, household_id)

    model = MeterReading if has_value else MeterRegisterReading
    try:
        reading = model.model_validate(payload)
        factor = reading.unit_factor()
    except ValidationError as exc:
        return Rejection(_reason_for(exc.errors()[0]), _describe(exc), household_id)
    except ValueError as exc:  # unknown unit
        return Rejection(RejectReason.INVALID_FIELD, f"unit: {exc}", household_id)

    if reading.ts > now + max_future:
        return Rejection(RejectReason.FUTURE_TIMESTAMP,
                         f"ts is {_hours(reading.ts - now):.1f} h ahead of the ingest clock (allowed {_hours(max_future):.1f} h)",
                         household_id)
    if factor != 1.0:
        reading = _to_canonical_unit(reading, factor)
    return Parsed(reading)


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _to_canonical_unit(reading: MeterReading | MeterRegisterReading, factor: float):
    if isinstance(reading, MeterReading):
        return reading.model_copy(update={"value": reading.value * factor, "unit": None})
    rollover = None if reading.rollover_at is None else reading.rollover_at * factor
    return reading.model_copy(update={"register_value": reading.register_value * factor,
                                      "rollover_at": rollover, "unit": None})


__all__ = ["Parsed", "Rejection", "parse_raw"]
