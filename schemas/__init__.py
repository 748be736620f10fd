"""Wire formats of elderwatch: the only place they are defined.

Every model carries ``schema_version`` so a consumer can refuse a format it does not know.
Events are past tense (``ReadingDeadLettered``); what utilities send is a reading.
"""

from schemas.dead_letter import DeadLetter, RejectReason
from schemas.households import HOUSEHOLD_CSV_COLUMNS, Household, StaffAssignment
from schemas.readings import (
    Meter,
    MeterReading,
    MeterRegisterReading,
    ValidatedReading,
)

__all__ = [
    "DeadLetter",
    "HOUSEHOLD_CSV_COLUMNS",
    "Household",
    "Meter",
    "MeterReading",
    "MeterRegisterReading",
    "RejectReason",
    "StaffAssignment",
    "ValidatedReading",
]
