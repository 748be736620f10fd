"""The worker's own code for a batch of raw messages, without Kafka or Faust: what any runtime pays per reading.

Used twice by ``bench/bench_throughput.py``: alone in one process (the floor: :func:`run_alone`), and inside a bare
aiokafka batch loop (``bench/passthrough_app.py``, mode ``worker-code``: what a runtime without Faust's per-message
path could reach).

A batch goes as the readings loop takes one (``getmany``, ``streams/readings_loop.py``): ingest's parse and series
rules (:class:`~streams.ingest.offline.OfflineIngest`, the stage's code with a dict for its states); each emitted
reading's ``readings.validated`` JSON (sent, not read back) and the reading itself applied to its household's
monitor (:class:`~streams.detect.HouseholdStates` over a dict, with its metrics); each touched household's detect
state dumped once a batch, then its series states written once (``to_json`` and orjson, as the loop writes its
changelog).

Not in it: the enrolment lookup (the bench's readings name no meter ids), ingest's metrics, its direct-route
check, and the redelivery offsets the series state keeps. Warnings are built and kept, as the stage sends them.
"""

from __future__ import annotations

import time

import orjson

from schemas.readings import Meter
from streams.batches import BATCH_SIZE
from streams.detect import HouseholdStates
from streams.ingest.offline import OfflineIngest
from streams.ingest.parse import Rejection
from streams.ingest.series import Emitted
from streams.metrics import DetectMetrics
from streams.readings_loop import changelog_key

class WorkerCode:
    """Ingest then detect for batches of ``(offset, key, value)`` raw messages, state in dicts."""

    def __init__(self) -> None:
        self.ingest = OfflineIngest()
        self.states = HouseholdStates({}, {}, "UTC", metrics=DetectMetrics())
        self.processed = 0

    def run(self, messages: list[tuple[int, bytes | None, bytes | None]]) -> tuple[list, list]:
        """(what the batch sends: validated readings and warnings, the state records it writes), each a list of
        ``(key, value)`` bytes. Offsets must grow per household (a household's messages share a partition)."""
        sends, records = [], []
        touched: set[str] = set()
        emitted = []
        for offset, key, value in messages:
            outcome = self.ingest.feed(value)
            if key is not None and not isinstance(outcome, Rejection):
                touched.add(key.decode())
            if isinstance(outcome, Emitted):
                reading = outcome.reading
                sends.append((reading.household_id.encode(), reading.model_dump_json().encode()))
                emitted.append((offset, reading))
        opened: dict = {}
        for offset, reading in emitted:  # at its readings.validated offset (here: its raw one, also growing)
            applied = self.states.apply(opened, reading, offset)
            if applied is not None:
                self.processed += 1
                key = reading.household_id.encode()
                sends.extend((key, warning.model_dump_json().encode()) for warning in applied[0])
        for step in self.states.steps(opened):
            self.states.store(step)
            records.append((step.household_id.encode(), step.record))
        for household_id in touched:  # its meters' states: what the loop writes for a household's readings
            for series in ((household_id, meter.value) for meter in Meter):
                state = self.ingest.series.get(series)
                if state is not None:
                    records.append((changelog_key("/".join(series)), orjson.dumps(state.to_json())))
        return sends, records

    def counts(self) -> dict:
        return {"ingest": dict(self.ingest.counts), "detect": {"processed": self.processed}}


def run_alone(messages: list, batch_size: int = BATCH_SIZE) -> dict:
    """``messages`` (``Outgoing``, in the order one partition would hold them) through :class:`WorkerCode` in
    batches, in this process: CPU seconds and readings per CPU second."""
    code = WorkerCode()
    started = time.process_time()
    for first in range(0, len(messages), batch_size):
        code.run([(offset, m.key, m.value) for offset, m in enumerate(messages[first:first + batch_size], first)])
    seconds = time.process_time() - started
    return {"messages": len(messages), "seconds": seconds, "rate": len(messages) / seconds if seconds else 0.0,
            "worker_cpu_share": 1.0, "counts": code.counts()}
