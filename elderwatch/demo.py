"""``make demo``: a local broker, the worker and a simulated messy feed, with live counts.

Everything it starts it stops: after ``--seconds`` or on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from streams.metrics import read_counts

_COLUMNS = ("received", "valid", "emitted", "duplicates", "dead_lettered")


def _scrape(port: int) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return read_counts(response.read().decode())
    except OSError:
        return None


def _in_flight(counts: dict[str, float]) -> int:
    settled = counts.get("valid", 0) + counts.get("duplicates", 0) + counts.get("dead_lettered", 0)
    return int(counts.get("received", 0) - settled)


def _line(elapsed: float, counts: dict[str, float], sent: int) -> str:
    cells = "  ".join(f"{name.replace('_', '-')} {int(counts.get(name, 0)):>8,}" for name in _COLUMNS)
    return f"[{elapsed:6.1f}s] sent {sent:>8,}  {cells}  in-flight {_in_flight(counts):>6,}"


def run_demo(*, seconds: float, households: int, days: int, speed: str) -> int:
    from elderwatch.feed import canonical_messages, feed, parse_speed, with_mess
    from elderwatch.localkafka import bootstrap_or_start, free_port
    from elderwatch.simulator import simulate

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    workdir = Path(tempfile.mkdtemp(prefix="elderwatch-demo-"))
    print(f"elderwatch demo: working in {workdir}", flush=True)
    print("starting the local Kafka broker ...", flush=True)
    bootstrap, broker = bootstrap_or_start()
    worker = None
    try:
        print(f"broker at {bootstrap}; simulating {households} households x {days} days ...", flush=True)
        summary = simulate(households=households, days=days, seed=7, out_dir=workdir / "sim", warmup_days=min(28, days // 2))
        print(f"  {summary.rows:,} readings, labelled anomalies: {summary.labels_by_kind}", flush=True)

        port = free_port()
        app_id = f"elderwatch-demo-{uuid.uuid4().hex[:6]}"
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELDERWATCH_APP_ID": app_id,
               "ELDERWATCH_TOPIC_PREFIX": f"{app_id}.", "ELDERWATCH_WEB_PORT": str(port),
               "ELDERWATCH_DATA_DIR": str(workdir / "worker")}
        print(f"starting the worker (metrics on http://127.0.0.1:{port}/metrics) ...", flush=True)
        worker = subprocess.Popen([sys.executable, "-m", "elderwatch.cli", "worker"], env=env,
                                  stdout=open(workdir / "worker.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        while _scrape(port) is None:
            if worker.poll() is not None or stop.is_set():
                print(f"worker did not start; see {workdir / 'worker.log'}", file=sys.stderr)
                return 1
            time.sleep(0.5)

        sent = [0]

        def pump() -> None:
            messages = with_mess(canonical_messages(summary.out_dir / "readings.csv"), fraction=0.03)
            feed(messages, bootstrap=bootstrap, topic=f"{app_id}.readings.raw", speed=parse_speed(speed),
                 progress=False, should_stop=stop.is_set, on_sent=lambda n: sent.__setitem__(0, n))

        feeder = threading.Thread(target=pump, name="feed", daemon=True)
        feeder.start()
        print("feeding readings (3% duplicates and garbage mixed in, as real feeds have) ...\n", flush=True)
        started = time.monotonic()
        deadline = started + seconds if seconds > 0 else None
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            counts = _scrape(port) or {}
            print(_line(time.monotonic() - started, counts, sent[0]), flush=True)
            stop.wait(2.0)
        stop.set()
        feeder.join(timeout=30)  # the feed flushes what it sent before returning
        # Let the worker drain what was sent (up to a minute), then check the books.
        print("feed stopped; letting the worker drain ...", flush=True)
        counts: dict[str, float] = {}
        drain_deadline = time.monotonic() + 60
        while time.monotonic() < drain_deadline:
            counts = _scrape(port) or counts
            if counts.get("received", 0) >= sent[0] and _in_flight(counts) == 0:
                break
            time.sleep(1.0)
        print("\n" + _line(time.monotonic() - started, counts, sent[0]))
        received = int(counts.get("received", 0))
        balanced = received == sent[0] and _in_flight(counts) == 0
        print(f"identity: sent {sent[0]:,} = received {received:,} = valid {int(counts.get('valid', 0)):,} "
              f"+ duplicates {int(counts.get('duplicates', 0)):,} + dead-lettered {int(counts.get('dead_lettered', 0)):,}"
              f"  -> {'OK' if balanced else 'NOT DRAINED (see in-flight)'}")
        return 0 if balanced else 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        if broker is not None:
            broker.stop()
        print("demo stopped: worker and broker shut down.", flush=True)
