"""Prometheus metrics of the ingest stage.

Identity that must hold once the pipeline is drained (tested):
    received = valid + duplicate + dead_lettered
and ``valid = emitted + register_baselines`` (a first or reset register read is valid but
carries no interval of use, so nothing is emitted for it).
Labels come from small fixed sets; never a household id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics

# *_created samples double the page and nobody graphs them.
disable_created_metrics()

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


def read_counts(text: str) -> dict[str, float]:
    """Sum ``elderwatch_ingest_*_total`` samples from a /metrics page, across labels.

    >>> read_counts('elderwatch_ingest_received_total 5.0\\nelderwatch_ingest_dead_lettered_total{reason="not_json"} 2.0\\n')
    {'received': 5.0, 'dead_lettered': 2.0}
    """
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("elderwatch_ingest_") or "_total" not in line:
            continue
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0].removeprefix("elderwatch_ingest_").removesuffix("_total")
        counts[metric] = counts.get(metric, 0.0) + float(value)
    return counts
