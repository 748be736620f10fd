"""JSON Schema files a utility can validate its feed against, and the staff API's OpenAPI document
(``elderwatch schema export DIR``).

``raw-reading.v1.json`` is the contract of both doors, ``readings.raw`` and ``POST /api/v1/readings``:
a reading is either form, and ingest accepts exactly what it accepts, apart from the checks a
schema cannot make (the clock; listed in ``tests/unit/test_ingest_contract.py``, which holds
ingest and a standard validator to the same verdicts).

>>> schema = reading_schema()
>>> sorted(schema["$defs"]), [branch["$ref"] for branch in schema["oneOf"]]
(['Meter', 'MeterReading', 'MeterRegisterReading'], ['#/$defs/MeterReading', '#/$defs/MeterRegisterReading'])
>>> schema["$defs"]["MeterReading"]["properties"]["household_id"]["anyOf"][0]["pattern"]
'^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}(?![\\\\s\\\\S])'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.anomaly import AnomalyWarning
from schemas.dead_letter import DeadLetter
from schemas.households import Household
from schemas.openapi import OPENAPI_FILENAME, openapi_document
from schemas.readings import MeterReading, MeterRegisterReading, ValidatedReading

DRAFT = "https://json-schema.org/draft/2020-12/schema"
RAW_READING_FILENAME = "raw-reading.v1.json"

EXPORTED = {
    RAW_READING_FILENAME: None,  # both forms: reading_schema()
    "meter-reading.v1.json": MeterReading,
    "meter-register-reading.v1.json": MeterRegisterReading,
    "validated-reading.v1.json": ValidatedReading,
    "household.v1.json": Household,
    "dead-letter.v1.json": DeadLetter,
    "anomaly-warning.v1.json": AnomalyWarning,
}


def portable_patterns(schema: Any) -> Any:
    """``schema`` with each ``pattern``'s final ``$`` written ``(?![\\s\\S])`` (end of the text).

    JSON Schema patterns are ECMA-262, where ``$`` is the end of the text; in Python's ``re`` (and
    so in the ``jsonschema`` package) ``$`` also matches before a final newline, which would let
    ``"hh-1\\n"`` pass a validator that ingest refuses. The lookahead means the end in both."""
    if isinstance(schema, dict):
        out = {key: portable_patterns(value) for key, value in schema.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
            out["pattern"] = pattern[:-1] + r"(?![\s\S])"
        return out
    if isinstance(schema, list):
        return [portable_patterns(item) for item in schema]
    return schema


def model_schema(model) -> dict:
    """A model's exported JSON Schema (wire names, portable patterns)."""
    return portable_patterns(model.model_json_schema(by_alias=True))


def reading_schema() -> dict:
    """What ``readings.raw`` and ``POST /api/v1/readings`` accept per reading: an interval or a register
    reading (exactly one: a message with both ``value`` and ``register`` fits neither)."""
    schema = TypeAdapter(MeterReading | MeterRegisterReading).json_schema(by_alias=True)
    schema = {"title": "Raw meter reading",
              "description": "One reading as a utility sends it (readings.raw, POST /api/v1/readings): an interval "
                             "reading (value) or a register reading (register), naming its household by household_id "
                             "or by utility_id + meter_id.",
              "oneOf": schema.pop("anyOf"), **schema}
    return portable_patterns(schema)


def export_json_schemas(directory: Path) -> list[Path]:
    """Write the :data:`EXPORTED` JSON Schemas and :data:`OPENAPI_FILENAME` into ``directory``.

    Returns the JSON Schema files (the OpenAPI document is :func:`export_openapi`'s: it is not a JSON Schema)."""
    directory.mkdir(parents=True, exist_ok=True)
    export_openapi(directory)
    written = []
    for filename, model in EXPORTED.items():
        schema = reading_schema() if model is None else model_schema(model)
        schema = {"$schema": DRAFT, "$id": f"https://elderwatch.invalid/schemas/{filename}", **schema}
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
