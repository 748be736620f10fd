"""Reading what evaluation needs: labels, warnings, households, the simulator's manifest.

>>> label = EventLabel.model_validate_json('{"household_id": "hh-1", "kind": "surge", '
...     '"start": "2026-02-01T22:00:00+00:00", "end": "2026-02-02T03:00:00+00:00", "meter": "electricity", "note": ""}')
>>> label.kind, (label.end - label.start).total_seconds() / 3600
('surge', 5.0)
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.anomaly import AnomalyWarning
from schemas.households import Household

#: Label kinds that are events to detect; ``away`` is not one (it marks time not to score).
WELFARE_EVENT_KINDS = ("inactivity", "surge", "continuous_flow", "night_activity")
EVENT_KINDS = WELFARE_EVENT_KINDS + ("meter_offline",)
LabelKind = Literal["inactivity", "surge", "continuous_flow", "night_activity", "meter_offline", "away"]


class EventLabel(BaseModel):
    """One line of the simulator's labels.jsonl."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    household_id: str
    kind: LabelKind
    start: AwareDatetime
    end: AwareDatetime
    meter: str | None = None
    note: str = ""


class SimulationManifest(BaseModel):
    """The parts of the simulator's manifest.json that evaluation uses."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    start: date
    end: date
    days: int
    timezone: str = "UTC"
    warmup_days: int = 28
    households: int | None = None
    files: dict[str, str] = {}

    def local_midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), ZoneInfo(self.timezone))

    def warmup_end(self, warmup_days: float | None = None) -> datetime:
        """Local midnight ``warmup_days`` after the first day (the simulator counts local days)."""
        days = self.warmup_days if warmup_days is None else warmup_days
        return self.local_midnight(self.start) + timedelta(days=days)


def _jsonl(path: Path):
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def _load(path: Path | str, model, what: str) -> list:
    out = []
    for number, line in _jsonl(Path(path)):
        try:
            out.append(model.model_validate_json(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not {what}: {exc}") from None
    return out


def load_labels(path: Path | str) -> list[EventLabel]:
    return _load(path, EventLabel, "a label")


def load_warnings(path: Path | str) -> list[AnomalyWarning]:
    return _load(path, AnomalyWarning, "an AnomalyWarning")


def write_warnings(path: Path | str, warnings: list[AnomalyWarning]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for w in warnings:
            handle.write(w.model_dump_json() + "\n")


def load_households(path: Path | str) -> list[Household]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [Household.from_csv_row(row) for row in csv.DictReader(handle)]


def load_manifest(path: Path | str) -> SimulationManifest:
    return SimulationManifest.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
