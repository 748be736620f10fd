"""The dead-letter envelope: what was rejected, exactly as it arrived, and why."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class RejectReason(StrEnum):
    """A small fixed set, so it can label a metric. ``detail`` carries the specifics."""

    NOT_JSON = "not_json"                      # not UTF-8 or not parseable JSON
    NOT_AN_OBJECT = "not_an_object"            # JSON, but not an object
    UNKNOWN_FORM = "unknown_form"              # neither ``value`` nor ``register`` (or both)
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    UNKNOWN_METER_KIND = "unknown_meter_kind"  # ``meter`` is not electricity or water
    UNKNOWN_METER = "unknown_meter"            # utility_id + meter_id enrolled for no household at ts (or as another kind)
    FORBIDDEN = "forbidden"                    # HTTP door: another utility's id, or a household this utility does not serve
    NAIVE_TIMESTAMP = "naive_timestamp"        # no UTC offset: we cannot know when it happened
    INVALID_TIMESTAMP = "invalid_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    NEGATIVE_VALUE = "negative_value"
    NOT_FINITE = "not_finite"                  # NaN or infinity
    INVALID_FIELD = "invalid_field"            # any other field that fails its type or range
    TOO_LATE = "too_late"                      # older than the de-duplication horizon
    REGISTER_OUT_OF_ORDER = "register_out_of_order"
    IMPLAUSIBLE_VALUE = "implausible_value"    # more than a home could use in that time
    PROCESSING_ERROR = "processing_error"      # readable, but an agent raised on it (a bug): the detail names the exception type


class DeadLetter(BaseModel):
    """One rejected message on ``readings.deadletter``.

    >>> dl = DeadLetter.for_message(b'{"meter": "gas"}', None, RejectReason.UNKNOWN_METER_KIND,
    ...     "meter: 'gas' is not one of electricity, water", stage="ingest.validate",
    ...     topic="readings.raw", partition=0, offset=41, at=datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    >>> dl.original_value()
    b'{"meter": "gas"}'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    reason: RejectReason
    detail: str = Field(description="Human-readable explanation; never contains the payload itself.")
    stage: str = Field(description="Where it was rejected: 'ingest.validate', 'ingest.normalize', "
                       "'ingest.http', 'detect', 'tickets' or 'notify'.")
    original_value_b64: str | None = Field(description="The message value exactly as received, base64.")
    original_key_b64: str | None = None
    source_topic: str = Field(description="The topic it was read from; 'http:/api/v1/readings' for the HTTP door.")
    source_partition: int = Field(description="Its partition; -1 for the HTTP door.")
    source_offset: int = Field(description="Its offset; for the HTTP door, its line (or array element) number in the body.")
    source_timestamp_ms: int | None = None
    household_id: str | None = Field(default=None, description="Set when the message got far enough to tell.")
    dead_lettered_at: AwareDatetime

    @classmethod
    def for_message(cls, value: bytes | None, key: bytes | None, reason: RejectReason, detail: str, *, stage: str,
                    topic: str, partition: int, offset: int, at: datetime, timestamp_ms: int | None = None,
                    household_id: str | None = None) -> "DeadLetter":
        b64 = lambda b: None if b is None else base64.b64encode(b).decode("ascii")  # noqa: E731
        return cls(reason=reason, detail=detail, stage=stage, original_value_b64=b64(value),
                   original_key_b64=b64(key), source_topic=topic, source_partition=partition,
                   source_offset=offset, source_timestamp_ms=timestamp_ms, household_id=household_id,
                   dead_lettered_at=at)

    def original_value(self) -> bytes | None:
        return None if self.original_value_b64 is None else base64.b64decode(self.original_value_b64)
