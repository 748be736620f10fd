"""The detect stage on the real broker gives exactly what ``elderwatch detect`` gives offline.

Simulated households go the whole way: readings.raw -> ingest -> readings.validated -> detect ->
anomalies, in a real worker process. The warnings on ``anomalies`` must equal ``detect_file`` on
the same CSV, compared as JSON text: same warnings, each once. Time zones come from a
households.csv given to the worker (two households left out get the default zone), so a zone
that did not reach the stream's monitors would show as different warnings.
"""

from __future__ import annotations

import csv
import json
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import WorkerProcess, consume, consumer_group, produce

from detectors.offline import detect_file
from elderwatch.feed import canonical_messages
from elderwatch.simulator import simulate
from schemas.anomaly import AnomalyWarning
from streams.metrics import identity_gaps, read_counts

HOUSEHOLDS = 4
DAYS = 40            # the monitor warms up for 21 days, the simulator injects anomalies after day 28
DEFAULT_ZONE = "America/New_York"
LEFT_OUT = ("hh-000002", "hh-000004")  # not in the worker's households.csv: DEFAULT_ZONE


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("detect-sim")
    # ~30,000 readings; seed 11 gives warnings of five kinds, some of them depending on the zones.
    summary = simulate(households=HOUSEHOLDS, days=DAYS, seed=11, out_dir=out, warmup_days=28, anomaly_rate=3.0)
    households = out / "households-partial.csv"
    with open(out / "households.csv", newline="") as source, open(households, "w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(row for row in reader if row["household_id"] not in LEFT_OUT)
    readings = out / "readings.csv"
    expected = [w.model_dump_json() for w in detect_file(readings, households, default_timezone=DEFAULT_ZONE)]
    all_london = [w.model_dump_json() for w in detect_file(readings, out / "households.csv")]
    assert set(expected) != set(all_london), "the zones must change the warnings, or the stream's zones go untested"
    messages = [(m.key, m.value, m.ts) for m in canonical_messages(readings)]
    assert len(messages) == summary.rows
    return {"readings": readings, "households": households, "expected": expected, "messages": messages}


def _worker(bootstrap: str, prefix: str, data_dir: Path, dataset: dict) -> WorkerProcess:
    return WorkerProcess(bootstrap, prefix, data_dir, extra_env={
        "ELDERWATCH_HOUSEHOLDS_FILE": str(dataset["households"]), "ELDERWATCH_DEFAULT_TIMEZONE": DEFAULT_ZONE})


def _scrape(worker: WorkerProcess) -> tuple[dict[str, float], dict[str, float]]:
    """(ingest counts, detect counts) from the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return read_counts(text, "ingest"), read_counts(text, "detect")


def _page(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        return response.read().decode()


def _samples(page: str, name: str, label: str) -> dict[str, float]:
    """{label value: sample} of one labelled metric of a /metrics page."""
    out = {}
    for line in page.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            out[labels.split(f'{label}="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def _lag_until(worker: WorkerProcess, predicate, timeout: float = 60.0) -> dict[str, float]:
    """``elderwatch_consumer_lag{topic}`` polled until ``predicate(lags)`` (or the timeout: the last lags)."""
    deadline = time.monotonic() + timeout
    while True:
        lags = _samples(_page(worker), "elderwatch_consumer_lag", "topic")
        if predicate(lags) or time.monotonic() > deadline:
            return lags
        time.sleep(0.5)


def _wait(worker: WorkerProcess, predicate, *, idle: float = 60.0, timeout: float = 900.0):
    """Poll the worker's counts until ``predicate(ingest, detect)``, or until nothing moved for ``idle``
    seconds (a stall, not a slow machine: the pace depends on what else the machine runs)."""
    deadline = time.monotonic() + timeout
    ingest, detect = _scrape(worker)
    last_change, last = time.monotonic(), None
    while not predicate(ingest, detect) and time.monotonic() < deadline:
        progress = (ingest.get("received"), detect.get("received"))
        if progress != last:
            last_change, last = time.monotonic(), progress
        elif time.monotonic() - last_change > idle:
            break
        time.sleep(1.0)
        ingest, detect = _scrape(worker)
    return ingest, detect


def _warnings(bootstrap: str, worker: WorkerProcess, expected: int) -> list[str]:
    records = consume(bootstrap, worker.topic("anomalies"), expected=expected, timeout=60, settle=5)
    for record in records:
        assert record.key == json.loads(record.value)["household_id"].encode()
    return [record.value.decode() for record in records]


def _positions(bootstrap: str, group: str, topics: list[str]) -> tuple[str, list[int]]:
    """(per partition ``end/committed`` of each topic for the worker's group, messages of each topic
    not yet committed): where a stall is, and whether the pipeline is drained."""
    from kafka import KafkaConsumer, TopicPartition

    parts, lags = [], []
    for topic in topics:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=consumer_group(group, topic),
                                 enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            ends = consumer.end_offsets(tps)
            committed = {tp: consumer.committed(tp) or 0 for tp in tps}
        finally:
            consumer.close()
        parts.append(f"{topic}: " + " ".join(f"p{tp.partition}={ends[tp]}/{committed[tp]}" for tp in tps))
        lags.append(sum(ends[tp] - committed[tp] for tp in tps))
    return "; ".join(parts), lags


def test_detect_stage_warnings_equal_the_offline_run(kafka_bootstrap, tmp_path, dataset):
    expected = dataset["expected"]
    # REAL-DETECTORS ASSERTION: the simulated anomalies must raise warnings (the placeholder monitor
    # raised none, and equal empty sets would prove nothing).
    assert expected, "the simulated anomalies raised no warnings: are the real detectors in place?"
    assert len(set(expected)) == len(expected)

    prefix = f"d{uuid.uuid4().hex[:8]}"
    worker = _worker(kafka_bootstrap, prefix, tmp_path / "worker", dataset).start()
    try:
        started = time.time()
        sent = produce(kafka_bootstrap, worker.topic("readings.raw"), ((k, v) for k, v, _ in dataset["messages"]))
        raw = worker.topic("readings.raw")
        behind = _lag_until(worker, lambda lags: lags.get(raw, 0) > 0, timeout=30)  # ~30,000 take a while
        ingest, detect = _wait(worker, lambda i, d: d.get("received", 0) >= sent)
        assert ingest["received"] == ingest["emitted"] == sent, (ingest, worker.log_tail())
        # detect gets what ingest emitted in the same batch (streams/readings_loop.py): none read back
        assert detect["received"] == sent, (detect, worker.log_tail())
        assert detect["processed"] == sent and detect.get("dead_lettered", 0) == 0
        assert detect.get("redelivered", 0) == 0 and detect.get("failed", 0) == 0
        assert detect["warnings"] == len(expected)
        # Drained: both counter identities hold on the worker's own /metrics page (streams/metrics.py) ...
        page = _page(worker)
        assert identity_gaps(page) == [], page
        # ... the consumer lag the alert rules watch was there while it worked and is 0 once every topic is
        # committed (ops/prometheus/rules.yml: ElderwatchConsumerLagGrowing) ...
        assert 0 < behind[raw] <= sent, behind
        drained = _lag_until(worker, lambda lags: not any(lags.values()))
        assert raw in drained and worker.topic("readings.validated") not in drained, drained  # written, not read
        assert not any(drained.values()), drained
        # ... and the readings' utility (no roster here: "unknown") last read now (ElderwatchNoReadings)
        last = _samples(page, "elderwatch_ingest_last_reading_timestamp_seconds", "utility")
        assert set(last) == {"unknown"} and started <= last["unknown"] <= time.time(), last
    finally:
        worker.stop()

    streamed = _warnings(kafka_bootstrap, worker, len(expected))
    assert Counter(streamed) == Counter(expected)  # the same warnings, each exactly once



def test_detect_state_survives_a_worker_restart(kafka_bootstrap, tmp_path, dataset):
    """The first worker is stopped (SIGTERM) in the middle of its backlog, with readings in flight at
    every stage; a second worker with the same app id takes over. Every warning comes out once."""
    expected = dataset["expected"]
    messages = dataset["messages"]
    # The first part ends where half of the warnings have been raised (warm-up takes the first three
    # weeks), and the first worker stops at three quarters of it: the second worker must carry on
    # from baselines and open episodes it did not see being built.
    raised_at = sorted(AnomalyWarning.model_validate_json(w).detected_at for w in expected)
    middle = raised_at[len(raised_at) // 2]
    first_part = [(k, v) for k, v, ts in messages if ts < middle]
    second_part = [(k, v) for k, v, ts in messages if ts >= middle]
    stop_at = len(first_part) * 3 // 4
    prefix = f"d{uuid.uuid4().hex[:8]}"

    first = _worker(kafka_bootstrap, prefix, tmp_path / "first", dataset).start()
    try:
        produce(kafka_bootstrap, first.topic("readings.raw"), first_part)
        _, detect = _wait(first, lambda i, d: d.get("processed", 0) >= stop_at, idle=30)
        assert stop_at <= detect["processed"] < len(first_part), (detect, first.log_tail())
    finally:
        first.stop()  # SIGTERM, as a deployment does, with a backlog left

    # A new process, same app id: detect-household-state comes back from its changelog.
    second = _worker(kafka_bootstrap, prefix, tmp_path / "second", dataset).start()
    inputs = [second.topic(t) for t in ("readings.raw", "readings.by-household")]  # readings.validated: not read
    try:
        produce(kafka_bootstrap, second.topic("readings.raw"), second_part)
        # Drained: every input topic committed to its end (how many readings the first worker
        # applied after the last scrape is not known, so no count can say it).
        ingest, detect2 = _wait(second, lambda i, d: i.get("received", 0) >= len(second_part)
                                and not any(_positions(kafka_bootstrap, prefix, inputs)[1]))
        positions, lags = _positions(kafka_bootstrap, prefix, inputs)
        if any(lags):
            pytest.fail(f"after the restart the pipeline stopped short (uncommitted raw, by-household, validated: "
                        f"{lags}): ingest {ingest}; detect {detect2}; end/committed offsets: {positions}; "
                        f"log: {second.log_tail(6)}")
        # Readings the first worker applied but had not committed come again and are skipped.
        assert detect2.get("failed", 0) == 0 and detect2.get("dead_lettered", 0) == 0, detect2
    finally:
        second.stop()

    streamed = _warnings(kafka_bootstrap, second, len(expected))
    # None lost, none repeated, none different: the monitors' state came back from the changelog.
    assert Counter(streamed) == Counter(expected), (detect, detect2)
