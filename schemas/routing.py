"""Internal wire format of ``readings.by-household``: a parsed reading, re-keyed by household,
carrying where it came from so a later rejection can still dead-letter the original bytes."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.readings import MeterReading, MeterRegisterReading


class RawOrigin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    value_b64: str
    key_b64: str | None = None

    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)

    def key(self) -> bytes | None:
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)


class RoutedReading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    form: Literal["interval", "register"]
    interval_reading: MeterReading | None = None
    register_reading: MeterRegisterReading | None = None
    origin: RawOrigin

    @property
    def reading(self) -> MeterReading | MeterRegisterReading:
        return self.interval_reading if self.form == "interval" else self.register_reading  # type: ignore[return-value]
