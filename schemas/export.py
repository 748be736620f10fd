"""JSON Schema files a utility can validate its feed against (``elderwatch schema export DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.anomaly import AnomalyWarning
from schemas.dead_letter import DeadLetter
from schemas.households import Household
from schemas.readings import MeterReading, MeterRegisterReading, ValidatedReading

EXPORTED = {
    "meter-reading.v1.json": MeterReading,
    "meter-register-reading.v1.json": MeterRegisterReading,
    "validated-reading.v1.json": ValidatedReading,
    "household.v1.json": Household,
    "dead-letter.v1.json": DeadLetter,
    "anomaly-warning.v1.json": AnomalyWarning,
}


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, model in EXPORTED.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://elderwatch.invalid/schemas/{filename}"
        path = directory / filename
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written
