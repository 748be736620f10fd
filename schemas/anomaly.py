"""What the detect stage emits: one :class:`AnomalyWarning` per episode, on ``anomalies``.

The same object is a line of ``elderwatch detect --out warnings.jsonl``.

>>> w = AnomalyWarning.for_episode(
...     household_id="hh-000001", kind=AnomalyKind.CONTINUOUS_FLOW, meter=Meter.WATER,
...     episode_start=datetime.fromisoformat("2026-02-14T14:00:00+00:00"),
...     detected_at=datetime.fromisoformat("2026-02-14T15:30:00+00:00"),
...     score=3.2, severity=Severity.HIGH, summary="water has run in every interval since 14:00",
...     evidence={"run_minutes": 90})
>>> w.warning_id
'hh-000001/continuous_flow/2026-02-14T14:00:00+00:00'
>>> AnomalyWarning.model_validate_json(w.model_dump_json()) == w
True
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.readings import HouseholdId, Meter


class AnomalyKind(StrEnum):
    INACTIVITY = "inactivity"              # expected activity is missing
    CONTINUOUS_FLOW = "continuous_flow"    # water in every interval for longer than ever
    SURGE = "surge"                        # electricity far above this time of day, sustained
    NIGHT_ACTIVITY = "night_activity"      # up in the usual sleep hours, several nights
    METER_OFFLINE = "meter_offline"        # a meter stopped reporting (data quality, not welfare)
    DECLINE = "decline"                    # daily activity down for weeks


#: Kinds about the person. ``meter_offline`` is for the utility, never a welfare ticket.
WELFARE_KINDS = frozenset({AnomalyKind.INACTIVITY, AnomalyKind.CONTINUOUS_FLOW, AnomalyKind.SURGE,
                           AnomalyKind.NIGHT_ACTIVITY, AnomalyKind.DECLINE})


class Severity(StrEnum):
    INFO = "info"      # data quality
    LOW = "low"        # worth a call this week
    MEDIUM = "medium"  # worth a call today
    HIGH = "high"      # someone should check now


class AnomalyWarning(BaseModel):
    """One episode of one kind for one household, raised once when the evidence crosses the threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    warning_id: str = Field(description="household/kind/episode_start: stable, so a re-run or a redelivery "
                                        "produces the same id (idempotency key downstream).")
    household_id: HouseholdId
    kind: AnomalyKind
    meter: Meter | None = Field(default=None, description="The meter the evidence comes from, if one.")
    episode_start: AwareDatetime = Field(description="Data time the condition began, e.g. the last water use.")
    detected_at: AwareDatetime = Field(description="Data timestamp of the reading that raised it (not wall-clock).")
    score: float = Field(description="Evidence over this household's threshold; 1.0 is the threshold.")
    severity: Severity
    evidence: dict[str, Any] = Field(description="'summary' is a sentence for a community worker; the rest are "
                                                 "the numbers behind it.")
    config_version: str | None = Field(default=None, description="The detection config it was raised under "
                                                                  "('builtin': no config file; None: before configs).")

    @classmethod
    def for_episode(cls, *, household_id: str, kind: AnomalyKind, meter: Meter | None, episode_start: datetime,
                    detected_at: datetime, score: float, severity: Severity, summary: str,
                    evidence: dict[str, Any] | None = None, config_version: str | None = None) -> "AnomalyWarning":
        return cls(warning_id=f"{household_id}/{kind.value}/{episode_start.isoformat()}", household_id=household_id,
                   kind=kind, meter=meter, episode_start=episode_start, detected_at=detected_at,
                   score=round(float(score), 3), severity=severity, evidence={"summary": summary, **(evidence or {})},
                   config_version=config_version)

    @property
    def summary(self) -> str:
        return self.evidence["summary"]
