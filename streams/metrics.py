"""Prometheus metrics of the ingest and detect stages.

Ingest identity that must hold once the pipeline is drained (tested):
    received = valid + duplicate + dead_lettered
and ``valid = emitted + register_baselines`` (a first or reset register read is valid but
carries no interval of use, so nothing is emitted for it).

Detect identity (tested):
    received = processed + redelivered + dead_lettered + failed
Labels come from small fixed sets; never a household id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# *_created samples double the page and nobody graphs them.
disable_created_metrics()

from schemas.anomaly import AnomalyKind
from schemas.dead_letter import RejectReason


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("elderwatch_ingest_received", "Messages read from readings.raw.", registry=r)
        self.valid = Counter("elderwatch_ingest_valid", "Readings accepted (emitted or absorbed as a register baseline).", registry=r)
        self.emitted = Counter("elderwatch_ingest_emitted", "Interval readings written to readings.validated.", registry=r)
        self.duplicates = Counter("elderwatch_ingest_duplicates", "Readings dropped as exact duplicates (household, meter, ts).", registry=r)
        self.dead_lettered = Counter("elderwatch_ingest_dead_lettered", "Messages written to readings.deadletter.",
                                     ["reason"], registry=r)
        self.register_baselines = Counter("elderwatch_ingest_register_baselines",
                                          "Register reads that start or restart a series (valid, nothing emitted).",
                                          ["reason"], registry=r)
        for reason in RejectReason:  # export zeros too, so rate() works from the start
            self.dead_lettered.labels(reason=reason.value)
        for reason in ("first", "reset"):
            self.register_baselines.labels(reason=reason)


class DetectMetrics:
    """The detect stage: readings in, warnings out, and what the per-household state costs."""

    #: Seconds per reading for each step of the detect agent (fixed set: a label).
    PHASES = ("load", "process", "dump")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("elderwatch_detect_received", "Messages read from readings.validated.", registry=r)
        self.processed = Counter("elderwatch_detect_processed", "Readings given to their household's monitor.", registry=r)
        self.redelivered = Counter("elderwatch_detect_redelivered",
                                   "Readings already in the household's state (a redelivery after a restart): skipped.",
                                   registry=r)
        self.dead_lettered = Counter("elderwatch_detect_dead_lettered",
                                     "Messages on readings.validated that are not a validated reading.", ["reason"], registry=r)
        self.failed = Counter("elderwatch_detect_failed",
                              "Readings on which a detector raised (state left as before the reading).", registry=r)
        self.warnings = Counter("elderwatch_detect_warnings", "Warnings written to anomalies.", ["kind"], registry=r)
        self.state_bytes = Histogram("elderwatch_detect_state_bytes",
                                     "Size of a household's state record (table value and changelog record).",
                                     buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576), registry=r)
        self.seconds = Histogram("elderwatch_detect_seconds", "Time per reading of each step of the detect agent.",
                                 ["phase"], buckets=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
                                 registry=r)
        self.cached_monitors = Gauge("elderwatch_detect_cached_monitors",
                                     "Household monitors kept live in memory by this worker.", registry=r)
        for kind in AnomalyKind:  # export zeros too, so rate() works from the start
            self.warnings.labels(kind=kind.value)
        for reason in RejectReason:
            self.dead_lettered.labels(reason=reason.value)
        for phase in self.PHASES:
            self.seconds.labels(phase=phase)


def read_counts(text: str, stage: str = "ingest") -> dict[str, float]:
    """Sum ``elderwatch_<stage>_*_total`` samples from a /metrics page, across labels.

    >>> read_counts('elderwatch_ingest_received_total 5.0\\nelderwatch_ingest_dead_lettered_total{reason="not_json"} 2.0\\n')
    {'received': 5.0, 'dead_lettered': 2.0}
    >>> read_counts('elderwatch_detect_warnings_total{kind="surge"} 2.0\\nelderwatch_ingest_received_total 5.0\\n', "detect")
    {'warnings': 2.0}
    """
    prefix = f"elderwatch_{stage}_"
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(prefix) or "_total" not in line:
            continue
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0].removeprefix(prefix).removesuffix("_total")
        counts[metric] = counts.get(metric, 0.0) + float(value)
    return counts
