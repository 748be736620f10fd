"""JSON Schema files a utility can validate its feed against, and the staff API's OpenAPI document
(``elderwatch schema export DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.anomaly import AnomalyWarning
from schemas.dead_letter import DeadLetter
from schemas.households import Household
from schemas.openapi import OPENAPI_FILENAME, openapi_document
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
    """Write the :data:`EXPORTED` JSON Schemas and :data:`OPENAPI_FILENAME` into ``directory``.

    Returns the JSON Schema files (the OpenAPI document is :func:`export_openapi`'s: it is not a JSON Schema)."""
    directory.mkdir(parents=True, exist_ok=True)
    export_openapi(directory)
    written = []
    for filename, model in EXPORTED.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://elderwatch.invalid/schemas/{filename}"
        path = directory / filename
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written


def export_openapi(directory: Path) -> Path:
    """The staff API's OpenAPI 3.1 document as ``directory/staff-api.openapi.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / OPENAPI_FILENAME
    path.write_text(json.dumps(openapi_document(), indent=2) + "\n")
    return path
