"""Ingest: raw utility messages in, validated interval readings out, the rest dead-lettered.

Pure code only (no Kafka here); the ingest stage in ``streams/readings_loop.py`` and the offline
importers call the same functions, so a reading is treated alike on every path.

    parse.py      bytes -> a typed reading, or a rejection with a reason
    enrolment.py  a utility's meter id -> our household id, at the reading's time
    series.py     per household+meter: de-duplication and cumulative registers -> intervals
"""

from streams.ingest.enrolment import Enrolment, MeterMatch, resolve
from streams.ingest.offline import OfflineIngest
from streams.ingest.parse import Parsed, Rejection, parse_raw
from streams.ingest.series import (
    Duplicate,
    Emitted,
    IngestLimits,
    RegisterBaseline,
    SeriesState,
    accept_reading,
)

__all__ = [
    "Duplicate",
    "Emitted",
    "Enrolment",
    "IngestLimits",
    "MeterMatch",
    "OfflineIngest",
    "Parsed",
    "RegisterBaseline",
    "Rejection",
    "SeriesState",
    "accept_reading",
    "parse_raw",
    "resolve",
]
