"""``elderwatch replay --namespace``: history through the live pipeline without touching live tickets.

A live worker runs the whole time; the replay runs its own worker next to it in its own namespace. After
the replay, the live topics hold nothing the replay produced, the namespace's topics hold its readings,
warnings and tickets, and ``--cleanup`` deletes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from elderwatch.replay import Namespace
from elderwatch.settings import Settings

from conftest import REPO, WorkerProcess

SAMPLE = REPO / "replay_data" / "sample"


def _end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        out = {}
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            out[topic] = sum(consumer.end_offsets(tps).values()) if tps else 0
        return out
    finally:
        consumer.close()


def _topics(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def _cli(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elderwatch.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_replay_runs_beside_the_live_worker_and_never_reaches_live_topics(kafka_bootstrap, unique_prefix, tmp_path):
    live = WorkerProcess(kafka_bootstrap, unique_prefix, tmp_path / "live").start()
    env = {**os.environ, "ELDERWATCH_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ELDERWATCH_APP_ID": unique_prefix,
           "ELDERWATCH_TOPIC_PREFIX": f"{unique_prefix}.", "ELDERWATCH_DATA_DIR": str(tmp_path / "live")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, app_id=unique_prefix,
                        topic_prefix=f"{unique_prefix}.", data_dir=tmp_path / "live")
    ns = Namespace.of("r1", settings)
    args = ["replay", str(SAMPLE / "readings.csv.gz"), "--namespace", "r1", "--households", "4", "--speed",
            "500000x", "--quiet", "--wait", "120"]
    try:
        # Ctrl-C part-way: it stops cleanly and keeps how far it got
        first = subprocess.Popen([sys.executable, "-m", "elderwatch.cli", *args], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            try:
                if json.loads((ns.data_dir / "replay.json").read_text())["sent"] >= 10_000:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=90)
        assert first.returncode == 130 and "the same command resumes" in err, err[-2000:]
        stopped_at = json.loads((ns.data_dir / "replay.json").read_text())["sent"]

        # the same command goes on from there and finishes
        done = _cli(env, *args)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"resuming after {stopped_at:,}" in done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert 10_000 <= stopped_at < summary["of"] and summary["sent"] == summary["of"]
        # this run's worker read the rest, plus what the stopped one had read but not committed (ingest
        # drops those as duplicates); the topic below shows every reading was sent exactly once
        assert summary["received"] >= summary["of"] - stopped_at
        assert summary["valid"] > 0 and summary["detected"] >= summary["valid"]  # counts of this run's worker
        assert summary["warnings"] > 0 and summary["tickets_opened"] > 0, summary
        assert live.process.poll() is None  # the live worker ran through it

        topics = _topics(kafka_bootstrap)
        mine = sorted(t for t in topics if ns.owns(t))
        live_topics = sorted(t for t in topics if t.startswith(f"{unique_prefix}.") and not ns.owns(t))
        assert any(t.endswith("tickets.warning") for t in mine) and live_topics
        assert all(t.startswith(ns.topic_prefix) or t.startswith(ns.app_id + "-") for t in mine)
        offsets = _end_offsets(kafka_bootstrap, live_topics)
        assert offsets and set(offsets.values()) == {0}, {t: n for t, n in offsets.items() if n}
        replayed = _end_offsets(kafka_bootstrap, [f"{ns.topic_prefix}readings.raw", f"{ns.topic_prefix}tickets.warning"])
        assert replayed[f"{ns.topic_prefix}readings.raw"] == summary["sent"]
        assert replayed[f"{ns.topic_prefix}tickets.warning"] >= summary["warnings"] > 0
        state = json.loads((ns.data_dir / "replay.json").read_text())
        assert state["sent"] == summary["sent"] and state["done"]

        cleaned = _cli(env, "replay", "--namespace", "r1", "--cleanup")
        assert cleaned.returncode == 0, cleaned.stderr[-2000:]
        assert sorted(json.loads(cleaned.stdout)["deleted_topics"]) == mine
        assert not (ns.data_dir).exists()
        assert not any(ns.owns(t) for t in _topics(kafka_bootstrap))
    finally:
        live.stop()


def test_replay_refuses_a_bad_namespace_before_starting_anything(tmp_path):
    done = _cli({**os.environ}, "replay", str(SAMPLE / "readings.csv.gz"), "--namespace", "Not OK")
    assert done.returncode == 2 and "namespace 'Not OK'" in done.stderr


def test_a_checkpoint_resumes_only_the_same_replay(tmp_path):
    from elderwatch.replay import _Checkpoint

    source = {"file": "/x.csv", "size": 10, "speed": "max", "households": None}
    point = _Checkpoint(tmp_path / "replay.json", source)
    assert point.sent() == 0
    point.save(1200)
    assert point.sent() == 1200
    assert _Checkpoint(tmp_path / "replay.json", {**source, "size": 11}).sent() == 0  # another file: from the start
    assert Path(tmp_path / "replay.json").exists()
