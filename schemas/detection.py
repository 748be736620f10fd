"""The detection config file: which settings the detectors warn at, and where they came from.

``elderwatch tune`` writes it (``detection.toml``); the worker (``ELDERWATCH_DETECTION_CONFIG``) and
``elderwatch detect --detection-config`` load it. Only settings that gate *warnings* are in it: what a
detector learns never depends on it, so a household's learned baseline stays valid when an operator
changes the file (see README, "Tuning on your own history").

Every warning raised under a file records its ``version`` (``AnomalyWarning.config_version``), so an
audit can tell which setting produced a ticket.

>>> cfg = DetectionConfig.from_toml('''
... version = "tune-20261202-a1b2c3"
... [sensitivity]
... inactivity = 0.9
... surge = 0.7
... ''')
>>> cfg.version, cfg.sensitivity["inactivity"], cfg.warmup_days
('tune-20261202-a1b2c3', 0.9, 21.0)
>>> DetectionConfig.from_toml('version = "x"\\n[sensitivity]\\nflood = 1.0')
Traceback (most recent call last):
...
schemas.detection.DetectionConfigError: sensitivity: unknown kind 'flood' (known: continuous_flow, decline, inactivity, meter_offline, night_activity, surge)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.anomaly import AnomalyKind

#: A kind's sensitivity multiplies its scores; outside these bounds a setting is a mistake, not a choice.
SENSITIVITY_RANGE = (0.1, 5.0)
_VERSION = re.compile(r"^[A-Za-z0-9._:+-]{1,80}$")


class DetectionConfigError(ValueError):
    """A detection config that cannot be used; the message is one line saying why."""


class ConfigSource(BaseModel):
    """Where the settings came from (written by ``elderwatch tune``; informative, never read back)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    readings: str | None = None
    labels: str | None = None
    households: int | None = None
    household_months: float | None = None
    created_at: str | None = None
    code_version: str | None = None
    rule: str | None = None


class DetectionConfig(BaseModel):
    """The settings that decide when a score becomes a warning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(description="Recorded on every warning raised under this file: letters, digits, . _ : + -")
    #: kind -> sensitivity (scores are multiplied by it before the 1.0 threshold); kinds not named keep the built-in point
    sensitivity: dict[str, float] = Field(default_factory=dict)
    warmup_days: float = Field(default=21.0, ge=0, le=365, description="No welfare warning before this much data.")
    source: ConfigSource = Field(default_factory=ConfigSource)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError(f"version {value!r}: 1-80 characters of letters, digits and . _ : + -")
        return value

    @field_validator("sensitivity")
    @classmethod
    def _sensitivity(cls, value: dict[str, float]) -> dict[str, float]:
        known = {k.value for k in AnomalyKind}
        low, high = SENSITIVITY_RANGE
        for kind, level in value.items():
            if kind not in known:
                raise ValueError(f"unknown kind {kind!r} (known: {', '.join(sorted(known))})")
            if not low <= level <= high:
                raise ValueError(f"{kind} = {level}: outside {low}-{high}")
        return value

    @classmethod
    def from_toml(cls, text: str, *, where: str = "") -> "DetectionConfig":
        """``where`` (a file name) starts the error message when given."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DetectionConfigError(f"{_at(where)}not TOML: {exc}") from None
        return cls.from_mapping(data, where=where)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, where: str = "") -> "DetectionConfig":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]  # one line: the first problem is enough to fix the file
            field = ".".join(str(p) for p in first["loc"]) or "file"
            message = first["msg"].removeprefix("Value error, ")
            raise DetectionConfigError(f"{_at(where)}{field}: {message}") from None

    @classmethod
    def load(cls, path: Path | str) -> "DetectionConfig":
        """Read a ``.toml`` or ``.json`` file; :class:`DetectionConfigError` (one line) if it cannot be used."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DetectionConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if path.suffix == ".json":
            import json

            try:
                data = json.loads(text)
            except ValueError as exc:
                raise DetectionConfigError(f"{path}: not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise DetectionConfigError(f"{path}: not a JSON object")
            return cls.from_mapping(data, where=str(path))
        return cls.from_toml(text, where=str(path))

    def to_toml(self, comment: str = "") -> str:
        """The file as ``elderwatch tune`` writes it (a small TOML writer: strings, numbers, two tables)."""
        lines = [f"# {line}".rstrip() for line in comment.splitlines()] if comment else []
        lines += [f"version = {_toml_value(self.version)}", f"warmup_days = {_toml_value(self.warmup_days)}", "",
                  "[sensitivity]"]
        lines += [f"{kind} = {_toml_value(level)}" for kind, level in sorted(self.sensitivity.items())]
        source = {k: v for k, v in self.source.model_dump().items() if v is not None}
        if source:
            lines += ["", "[source]"] + [f"{k} = {_toml_value(v)}" for k, v in source.items()]
        return "\n".join(lines) + "\n"


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


__all__ = ["ConfigSource", "DetectionConfig", "DetectionConfigError", "SENSITIVITY_RANGE"]
