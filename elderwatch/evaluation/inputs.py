"""Everything a scoring run needs besides the warnings, loaded once and reused.

A benchmark that scores many detector settings on one simulated data set loads it once:

>>> sample = Path(__file__).resolve().parents[2] / "replay_data/sample"
>>> data = load_inputs(labels=sample / "labels.jsonl")   # households.csv, manifest.json found beside it
>>> len(data.spans), data.warmup_end.isoformat(), data.timezones["hh-000001"]
(12, '2026-02-02T00:00:00+00:00', 'Europe/London')
>>> data.evaluate([], name="nothing").totals.total
0
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from elderwatch.evaluation.baselines import Span, scan_readings
from elderwatch.evaluation.files import (
    EventLabel,
    SimulationManifest,
    load_households,
    load_labels,
    load_manifest,
)
from elderwatch.evaluation.scoring import EvaluationReport, evaluate
from schemas.anomaly import AnomalyWarning

DEFAULT_WARMUP_DAYS = 28


@dataclass
class EvaluationInputs:
    labels: list[EventLabel] | None  # None: unlabelled (real) data
    spans: dict[str, Span]
    timezones: dict[str, str]
    warmup_end: datetime | dict[str, datetime]
    baseline_warnings: dict[str, list[AnomalyWarning]] = field(default_factory=dict)
    readings_rows: int = 0
    readings_meters: dict[str, int] = field(default_factory=dict)  # rows per meter
    readings_seconds: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)  # what was read from where, for the JSON report

    def evaluate(self, warnings: Iterable[AnomalyWarning], name: str = "detector") -> EvaluationReport:
        return evaluate(self.labels, warnings, self.spans, self.timezones, self.warmup_end, name=name)


def _beside(labels: Path | None, name: str) -> Path | None:
    if labels is None:
        return None
    path = labels.parent / name
    return path if path.exists() else None


def load_inputs(*, labels: Path | None = None, readings: Path | None = None, households: Path | None = None,
                manifest: Path | None = None, warmup_days: float | None = None,
                baselines: Sequence[str] = ()) -> EvaluationInputs:
    """Loads labels, spans, time zones and the warm-up; runs ``baselines`` over ``readings`` in the same pass.

    With labels (simulated data), households.csv and manifest.json default to the files beside
    labels.jsonl, and the warm-up ends at local midnight ``warmup_days`` (default: the manifest's)
    after the manifest's first day. Spans come from ``readings`` when given (first to last ts of
    each household), else from the manifest (start to end) for every household in households.csv.

    Without labels (real data), ``readings`` is required and each household's warm-up is
    ``warmup_days`` (default 28) from its own first reading.
    """
    households = households or _beside(labels, "households.csv")
    manifest = manifest or _beside(labels, "manifest.json")
    info: SimulationManifest | None = load_manifest(manifest) if manifest else None
    if readings is None and (baselines or labels is None) and info and info.files.get("readings"):
        guess = Path(manifest).parent / info.files["readings"]
        readings = guess if guess.exists() else None
    if baselines and readings is None:
        raise ValueError("baselines are computed from the readings: give --readings")
    if labels is None and readings is None:
        raise ValueError("without labels, --readings is needed (each household's span and warm-up come from it)")

    homes = load_households(households) if households else []
    default_zone = info.timezone if info else "UTC"
    timezones = {h.household_id: h.timezone for h in homes}

    spans: dict[str, Span]
    baseline_warnings: dict[str, list[AnomalyWarning]] = {}
    rows, seconds, meters = 0, 0.0, {}
    if readings is not None:
        began = time.perf_counter()
        scan = scan_readings(readings, baselines)
        seconds = time.perf_counter() - began
        spans, baseline_warnings, rows, meters = scan.spans, scan.warnings, scan.rows, scan.meters
    else:
        if info is None or not homes:
            raise ValueError("household spans need --readings, or a manifest.json and households.csv")
        span = Span(info.local_midnight(info.start), info.local_midnight(info.end))
        spans = {h.household_id: span for h in homes}
    for hid in spans:
        timezones.setdefault(hid, default_zone)

    warmup_end: datetime | dict[str, datetime]
    if labels is not None and info is not None:
        warmup_end = info.warmup_end(warmup_days)
    else:
        days = DEFAULT_WARMUP_DAYS if warmup_days is None else warmup_days
        warmup_end = {hid: s.first + timedelta(days=days) for hid, s in spans.items()}

    sources = {k: str(v) for k, v in (("labels", labels), ("readings", readings), ("households", households),
                                       ("manifest", manifest)) if v is not None}
    return EvaluationInputs(labels=load_labels(labels) if labels is not None else None, spans=spans,
                            timezones=timezones, warmup_end=warmup_end, baseline_warnings=baseline_warnings,
                            readings_rows=rows, readings_meters=meters, readings_seconds=seconds, sources=sources)


def spans_from(mapping: Mapping[str, tuple[datetime, datetime]]) -> dict[str, Span]:
    """Spans from plain ``(first, last)`` pairs."""
    return {hid: Span(*pair) for hid, pair in mapping.items()}
