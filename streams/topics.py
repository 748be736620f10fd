"""Every topic elderwatch reads or writes: name, key, value and partitioning, in one place.

Keyed topics carry ``household_id`` as the key, so all of a household's readings land in one
partition, in order, next to that household's state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    keyed_by_household: bool
    description: str
    compacted: bool = False


READINGS_RAW = TopicSpec(
    "readings.raw", key="anything or none", value="JSON MeterReading or MeterRegisterReading (bytes as sent)",
    keyed_by_household=False, description="What utilities send. Validated by ingest; nothing here is trusted.")
READINGS_BY_HOUSEHOLD = TopicSpec(
    "readings.by-household", key="household_id", value="JSON RoutedReading (internal)",
    keyed_by_household=True, description="Parsed readings re-keyed by household, with their origin, for the per-series stage.")
READINGS_VALIDATED = TopicSpec(
    "readings.validated", key="household_id", value="JSON ValidatedReading",
    keyed_by_household=True, description="Interval consumption in kWh or litres, de-duplicated. Detectors read this.")
READINGS_DEADLETTER = TopicSpec(
    "readings.deadletter", key="household_id if known, else none", value="JSON DeadLetter (original bytes + reason)",
    keyed_by_household=False, description="Every rejected message, exactly as received, with why and where from.")

ANOMALIES = TopicSpec(
    "anomalies", key="household_id", value="JSON AnomalyWarning",
    keyed_by_household=True, description="One warning per anomaly episode, from the detect stage. Dispatch reads this.")

ALL_TOPICS = (READINGS_RAW, READINGS_BY_HOUSEHOLD, READINGS_VALIDATED, READINGS_DEADLETTER, ANOMALIES)


def full_name(spec: TopicSpec, prefix: str = "") -> str:
    return f"{prefix}{spec.name}"


def partition_plan(partitions: int, prefix: str = "") -> dict[str, int]:
    """Topic name -> partition count. Keyed topics must share one count (co-partitioning)."""
    return {full_name(spec, prefix): partitions for spec in ALL_TOPICS}
