"""``elderwatch replay FILE --namespace NAME``: history through the live pipeline, in its own namespace.

A replay runs a worker of its own whose topics carry the prefix ``<topic prefix>replay.<NAME>.``, whose
consumer groups and state topics carry the app id ``<app id>-replay-<NAME>``, with its own data
directory and web port (its staff API shows the replay's tickets). Nothing it sends or consumes is a
live topic, so a replay never touches live tickets, and it can run next to the live worker.

It feeds FILE (canonical CSV) into the namespace's ``readings.raw`` at ``--speed``, with a progress bar
(rate, ETA), waits for detection to catch up, and prints what the replay's tickets were. Ctrl-C stops
feeding, keeps how far it got (``<data dir>/replay.json``) and stops the worker; the same command
resumes from there (ingest drops any reading sent twice). ``--cleanup`` deletes the namespace's topics,
state topics and data directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from elderwatch.settings import Settings

NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class Namespace:
    """Where a replay lives: topics, consumer groups and state, web port, data directory."""

    name: str
    topic_prefix: str
    app_id: str
    data_dir: Path

    @classmethod
    def of(cls, name: str, settings: Settings) -> "Namespace":
        if not NAMESPACE.match(name):
            raise ValueError(f"namespace {name!r}: 1-40 of a-z, 0-9 and '-', starting with a letter or digit")
        return cls(name=name, topic_prefix=f"{settings.topic_prefix}replay.{name}.",
                   app_id=f"{settings.app_id}-replay-{name}",
                   data_dir=settings.data_dir.parent / f"{settings.data_dir.name}-replay-{name}")

    def owns(self, topic: str) -> bool:
        """Is ``topic`` one of this replay's (its topics, or its app's state changelogs and repartitions)?"""
        return topic.startswith(self.topic_prefix) or topic.startswith(f"{self.app_id}-")

    def worker_env(self, settings: Settings, port: int, detection_config: Path | None,
                   households_file: Path | None) -> dict[str, str]:
        env = {**os.environ, "ELDERWATCH_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
               "ELDERWATCH_APP_ID": self.app_id, "ELDERWATCH_TOPIC_PREFIX": self.topic_prefix,
               "ELDERWATCH_DATA_DIR": str(self.data_dir / "worker"), "ELDERWATCH_WEB_PORT": str(port)}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # one broker list: the one above
        if detection_config is not None:
            env["ELDERWATCH_DETECTION_CONFIG"] = str(detection_config)
        if households_file is not None:
            env["ELDERWATCH_HOUSEHOLDS_FILE"] = str(households_file)
        return env


def cleanup(ns: Namespace, bootstrap: str) -> list[str]:
    """Delete the namespace's topics and its data directory; returns the topics deleted."""
    import shutil

    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="elderwatch-replay-cleanup")
    try:
        topics = sorted(t for t in admin.list_topics() if ns.owns(t))
        if topics:
            admin.delete_topics(topics)
    finally:
        admin.close()
    shutil.rmtree(ns.data_dir, ignore_errors=True)
    return topics


def _first_households(messages, limit: int | None):
    if limit is None:
        yield from messages
        return
    chosen: set[bytes] = set()
    for message in messages:
        if message.key not in chosen:
            if len(chosen) >= limit:
                continue
            chosen.add(message.key)
        yield message


def _count(messages) -> int:
    return sum(1 for _ in messages)


class _Checkpoint:
    """How many messages of which file this replay has sent (so Ctrl-C and the same command resume)."""

    def __init__(self, path: Path, source: dict) -> None:
        self.path, self.source = path, source

    def sent(self) -> int:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0
        return int(saved.get("sent", 0)) if saved.get("source") == self.source else 0

    def save(self, sent: int, done: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({"source": self.source, "sent": sent, "done": done}))
        partial.replace(self.path)


def run_replay(*, file: Path, namespace: str, speed: str = "max", households: int | None = None,
               households_file: Path | None = None, detection_config: Path | None = None, web_port: int | None = None,
               wait_s: float = 600.0, progress: bool = True, settings: Settings | None = None) -> int:
    from tqdm import tqdm

    from elderwatch.canonical_csv import count_rows
    from elderwatch.demo import _detect_behind, _metrics_page
    from elderwatch.feed import canonical_messages, feed, paced, parse_speed
    from elderwatch.localkafka import free_port
    from streams.metrics import read_counts, settled
    from streams.topics import HOUSEHOLDS_ROSTER, READINGS_RAW, full_name

    settings = settings or Settings()
    ns = Namespace.of(namespace, settings)
    pace = parse_speed(speed)
    households_file = households_file or (file.parent / "households.csv" if (file.parent / "households.csv").exists()
                                          else None)
    source = {"file": str(file.resolve()), "size": file.stat().st_size, "speed": speed, "households": households}
    checkpoint = _Checkpoint(ns.data_dir / "replay.json", source)
    done_before = checkpoint.sent()
    # how many will be sent, for the progress bar's ETA: raw lines, unless only some households are taken
    total = count_rows(file) if households is None else _count(_first_households(canonical_messages(file), households))
    port = web_port or free_port()
    ns.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"replay '{ns.name}': topics {ns.topic_prefix}*, consumer groups {ns.app_id}, staff API and metrics on "
          f"http://127.0.0.1:{port}" + (f"; resuming after {done_before:,} of {total:,} readings" if done_before else ""),
          file=sys.stderr)
    log = open(ns.data_dir / "worker.log", "ab")
    worker = subprocess.Popen([sys.executable, "-m", "elderwatch.cli", "worker"],
                              env=ns.worker_env(settings, port, detection_config, households_file),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    sent_now = [0]
    try:
        while _metrics_page(port) is None:  # the worker creates the namespace's topics before it serves
            if worker.poll() is not None:
                print(f"replay: the worker exited ({worker.returncode}); see {ns.data_dir / 'worker.log'}", file=sys.stderr)
                return 1
            if stop.is_set():
                return 130
            time.sleep(0.5)
        if households_file is not None:
            from elderwatch.roster import read_households_file, send_households

            roster, _bad = read_households_file(households_file)
            send_households(roster, bootstrap=settings.kafka_bootstrap_servers,
                            topic=full_name(HOUSEHOLDS_ROSTER, ns.topic_prefix))
        else:
            print("replay: no households.csv beside the file (--households-file): warnings open no tickets without "
                  "a roster", file=sys.stderr)
        messages = islice(paced(_first_households(canonical_messages(file), households), pace), done_before, None)
        bar = tqdm(total=total, initial=done_before, unit="readings", unit_scale=True, disable=not progress,
                   desc=f"replay {ns.name}", file=sys.stderr, mininterval=0.5)

        def sent(n: int) -> None:
            sent_now[0] = n
            bar.update(n + done_before - bar.n)
            if n % 10_000 == 0:
                checkpoint.save(done_before + n)

        feed(messages, bootstrap=settings.kafka_bootstrap_servers, topic=full_name(READINGS_RAW, ns.topic_prefix),
             speed=None, progress=False, should_stop=stop.is_set, on_sent=sent)
        bar.close()
        reached = done_before + sent_now[0]
        checkpoint.save(reached, done=reached >= total)
        if stop.is_set():
            print(f"\nreplay '{ns.name}' stopped after {reached:,} of {total:,} readings; the same command resumes",
                  file=sys.stderr)
            return 130
        deadline = time.monotonic() + wait_s
        page = _metrics_page(port) or ""
        while time.monotonic() < deadline and not stop.is_set():  # detection catches up with what was sent
            page = _metrics_page(port) or page
            counts = read_counts(page)
            if counts.get("received", 0) >= sent_now[0] and settled(counts) >= counts.get("received", 0) and \
                    _detect_behind(page) == 0:
                break
            time.sleep(1.0)
        quiet, last = 0, None  # then the ticket loop: until its command count holds for 3 s
        while quiet < 3 and time.monotonic() < deadline and not stop.is_set():
            time.sleep(1.0)
            page = _metrics_page(port) or page
            now = read_counts(page, "tickets").get("commands", 0)
            quiet, last = (quiet + 1 if now == last else 0), now
        summary = {"namespace": ns.name, "sent": reached, "of": total, **_summary(page),
                   "staff_api": f"http://127.0.0.1:{port}", "topic_prefix": ns.topic_prefix}
        print(json.dumps(summary))
        return 0
    finally:
        signal.signal(signal.SIGINT, previous)
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)


def _summary(page: str) -> dict:
    from streams.metrics import read_counts

    ingest, detect = read_counts(page), read_counts(page, "detect")
    return {"received": int(ingest.get("received", 0)), "valid": int(ingest.get("valid", 0)),
            "dead_lettered": int(ingest.get("dead_lettered", 0)), "detected": int(detect.get("processed", 0)),
            "warnings": int(detect.get("warnings", 0)),
            "tickets_opened": int(read_counts(page, "tickets").get("opened", 0))}


__all__ = ["Namespace", "cleanup", "run_replay"]
