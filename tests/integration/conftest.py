"""Integration helpers: a real ``elderwatch worker`` process against the session's real broker.

The worker runs as a separate process, exactly as deployed: started with its settings in the
environment, stopped with SIGTERM, its /metrics scraped over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from elderwatch.localkafka import _die_with_parent_preexec, free_port
from streams.metrics import read_counts

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``elderwatch worker`` in a subprocess with its own app id, topic prefix and web port."""

    def __init__(self, bootstrap: str, prefix: str, data_dir: Path, *, partitions: int = 4,
                 extra_env: dict[str, str] | None = None) -> None:
        self.bootstrap, self.prefix, self.data_dir = bootstrap, prefix, data_dir
        self.port = free_port()
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELDERWATCH_APP_ID": prefix,
                    "ELDERWATCH_TOPIC_PREFIX": f"{prefix}.", "ELDERWATCH_WEB_PORT": str(self.port),
                    "ELDERWATCH_DATA_DIR": str(data_dir), "ELDERWATCH_PARTITIONS": str(partitions),
                    **(extra_env or {})}
        self.log_path = data_dir / "worker.log"
        self.process: subprocess.Popen | None = None

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def start(self, timeout: float = 90.0) -> "WorkerProcess":
        return self.launch().wait_healthy(timeout)

    def launch(self) -> "WorkerProcess":
        """Start the process without waiting for it (a worker started while its broker is down)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # Killed with the test process if it dies first (a timeout, a SIGKILL): no worker outlives its test.
        self.process = subprocess.Popen([sys.executable, "-m", "elderwatch.cli", "worker"], cwd=REPO, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_die_with_parent_preexec(os.getpid()))
        return self

    def wait_healthy(self, timeout: float = 90.0) -> "WorkerProcess":
        return self._wait_for("/health", "healthy", timeout)

    def wait_ready(self, timeout: float = 120.0) -> "WorkerProcess":
        """Until /ready answers 200: tables recovered, the readings loop holding its partitions, agents running."""
        return self._wait_for("/ready", "ready", timeout)

    def _wait_for(self, path: str, what: str, timeout: float) -> "WorkerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker not {what} after {timeout:.0f} s: {self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def metrics_page(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return response.read().decode()

    def counts(self) -> dict[str, float]:
        return read_counts(self.metrics_page())

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def ingest_worker(kafka_bootstrap: str, tmp_path_factory) -> Iterator[WorkerProcess]:
    prefix = f"i{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp(prefix)).start()
    yield worker
    worker.stop()


def consumer_group(app_id: str, topic: str) -> str:
    """The worker's consumer group that reads ``topic``: ingest's own (streams/readings_loop.py) for readings.raw and
    readings.by-household, faust's (the app id) for the rest."""
    return f"{app_id}-readings" if topic.endswith(("readings.raw", "readings.by-household")) else app_id


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    sent = 0
    for key, value in messages:
        producer.send(topic, key=key, value=value)
        sent += 1
    producer.flush()
    producer.close()
    return sent


def consume(bootstrap: str, topic: str, *, expected: int, timeout: float = 120.0, settle: float = 3.0) -> list:
    """Read a topic from the beginning until ``expected`` records arrived, then ``settle`` seconds more
    to catch any surplus (a test of exact counts must see extra records too)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=500)
    partitions = consumer.partitions_for_topic(topic) or set()
    deadline = time.monotonic() + 30
    while not partitions and time.monotonic() < deadline:
        time.sleep(0.5)
        partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()
    records: list = []
    deadline = time.monotonic() + timeout
    settle_until = None
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        if len(records) >= expected:
            settle_until = settle_until or time.monotonic() + settle
            if time.monotonic() >= settle_until:
                break
    consumer.close()
    return records


def wait_for_counts(worker: WorkerProcess, predicate, timeout: float = 60.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    counts: dict[str, float] = {}
    while time.monotonic() < deadline:
        counts = worker.counts()
        if predicate(counts):
            return counts
        time.sleep(0.5)
    return counts


def loads(record) -> dict:
    return json.loads(record.value)
