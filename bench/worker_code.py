"""The worker's own code for a batch of raw messages, without Kafka or Faust: what any runtime pays per reading.

Used twice by ``bench/bench_throughput.py``: alone in one process (the floor: :func:`run_alone`), and inside a bare
aiokafka batch loop (``bench/passthrough_app.py``, mode ``worker-code``: what a runtime without Faust's per-message
path could reach).

A batch goes as the readings loop takes one (``getmany``, ``streams/readings_loop.py``): ingest's parse and series
rules (:class:`~streams.ingest.offline.OfflineIngest`, the stage's code with a dict for its states); each emitted
reading's ``readings.validated`` JSON (sent, not read back) and the reading itself applied to its household's
monitor (:class:`~streams.detect.HouseholdStates` over a dict, with its metrics); at each checkpoint (every commit
interval, as the loop), each household touched since the last one has its detect state dumped once, then its series
states written once (``to_json`` and orjson, as the loop writes its changelog). The garbage collector runs with the
worker's thresholds (:func:`elderwatch.worker.tune_gc`).

Not in it: the enrolment lookup (the bench's readings name no meter ids), ingest's metrics, its direct-route
check, and the redelivery offsets the series state keeps. Warnings are built and kept, as the stage sends them.
"""

from __future__ import annotations

import time

import orjson

from elderwatch.settings import Settings
from elderwatch.worker import tune_gc
from schemas.readings import Meter
from streams.batches import BATCH_SIZE
from streams.detect import HouseholdStates
from streams.ingest.offline import OfflineIngest
from streams.ingest.parse import Rejection
from streams.ingest.series import Emitted
from streams.metrics import DetectMetrics
from streams.readings_loop import changelog_key

class WorkerCode:
    """Ingest then detect for batches of ``(offset, key, value)`` raw messages, state in dicts; the states stored at
    checkpoints, as the loop stores them before each commit."""

    def __init__(self) -> None:
        self.ingest = OfflineIngest()
        self.states = HouseholdStates({}, {}, "UTC", metrics=DetectMetrics())
        self.processed = 0
        self.opened: dict = {}  # households read since the last checkpoint (the detect stage's ``opened``)
        self.touched: set[str] = set()  # and their series

    def run(self, messages: list[tuple[int, bytes | None, bytes | None]]) -> list:
        """What the batch sends, validated readings and warnings, as ``(key, value)`` bytes. Offsets must grow per
        household (a household's messages share a partition)."""
        sends = []
        emitted = []
        for offset, key, value in messages:
            outcome = self.ingest.feed(value)
            if key is not None and not isinstance(outcome, Rejection):
                self.touched.add(key.decode())
            if isinstance(outcome, Emitted):
                reading = outcome.reading
                sends.append((reading.household_id.encode(), reading.model_dump_json().encode()))
                emitted.append((offset, reading))
        for offset, reading in emitted:  # at its readings.validated offset (here: its raw one, also growing)
            applied = self.states.apply(self.opened, reading, offset)
            if applied is not None:
                self.processed += 1
                key = reading.household_id.encode()
                sends.extend((key, warning.model_dump_json().encode()) for warning in applied[0])
        return sends

    def pending(self) -> int:
        return len(self.opened)

    def checkpoint(self) -> list:
        """The state records written since the last checkpoint, each household's and series' once, as ``(key,
        value)`` bytes: each touched household's detect state, then its series states (``to_json`` and orjson, as
        the loop writes its changelog)."""
        records = []
        for step in self.states.steps(self.opened):
            self.states.store(step)
            records.append((step.household_id.encode(), step.record))
        for household_id in self.touched:  # its meters' states: what the loop writes for a household's readings
            for series in ((household_id, meter.value) for meter in Meter):
                state = self.ingest.series.get(series)
                if state is not None:
                    records.append((changelog_key("/".join(series)), orjson.dumps(state.to_json())))
        self.touched.clear()
        return records

    def counts(self) -> dict:
        return {"ingest": dict(self.ingest.counts), "detect": {"processed": self.processed}}


def run_alone(messages: list, batch_size: int = BATCH_SIZE, settings: Settings | None = None) -> dict:
    """``messages`` (``Outgoing``, in the order one partition would hold them) through :class:`WorkerCode` in
    batches, in this process, checkpointed as the loop does (every commit interval, or sooner once
    ``max_pending_states`` wait): CPU seconds and readings per CPU second."""
    settings = settings or Settings()
    tune_gc()
    code = WorkerCode()
    started = time.process_time()
    last = time.monotonic()
    for first in range(0, len(messages), batch_size):
        code.run([(offset, m.key, m.value) for offset, m in enumerate(messages[first:first + batch_size], first)])
        if time.monotonic() - last >= settings.commit_interval_s or code.pending() >= settings.max_pending_states:
            code.checkpoint()
            last = time.monotonic()
    code.checkpoint()
    seconds = time.process_time() - started
    return {"messages": len(messages), "seconds": seconds, "rate": len(messages) / seconds if seconds else 0.0,
            "worker_cpu_share": 1.0, "counts": code.counts()}
