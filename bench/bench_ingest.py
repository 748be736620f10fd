"""Ingest throughput on the real broker, with a bare Faust pass-through as the ceiling.

Both run in the same session, against the same local broker, on the same pre-loaded raw topic
(simulated households, 1% exact re-sends and 1% garbage mixed in), one worker process each.
The rate is measured from the first processed message to the last, read from the worker's
/metrics, so start-up time is excluded.

    python -m bench.bench_ingest [--messages 100000] [--out bench/results/ingest.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from bench.processes import stop
from elderwatch.feed import canonical_messages, feed, with_mess
from elderwatch.localkafka import bootstrap_or_start, create_topics, free_port
from elderwatch.simulator import simulate
from streams.metrics import read_counts, settled
from streams.topics import partition_plan

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def _settled(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            c = read_counts(response.read().decode())
    except OSError:
        return None
    return settled(c)


def _measure(command: list[str], env: dict, port: int, total: int, log: Path, timeout: float = 900) -> dict:
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        first_t = first_n = None
        deadline = time.monotonic() + timeout
        done = None
        while time.monotonic() < deadline:
            n = _settled(port)
            now = time.monotonic()
            if n:
                if first_t is None:
                    first_t, first_n = now, n
                if n >= total:
                    done = now
                    break
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited early; see {log}")
            time.sleep(0.2)
        if done is None or first_t is None or done == first_t:
            raise RuntimeError(f"not finished within {timeout} s; see {log}")
        rate = (total - first_n) / (done - first_t)
        return {"messages": total, "seconds": done - first_t, "rate": rate}
    finally:
        stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.md")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="elderwatch-bench-"))
    bootstrap, broker = bootstrap_or_start()
    try:
        days = max(1, args.messages // (200 * 192) + 1)
        sim = simulate(households=200, days=days, seed=3, out_dir=work / "sim", anomaly_rate=0, warmup_days=0)
        prefix = f"b{uuid.uuid4().hex[:6]}"
        raw = f"{prefix}.readings.raw"
        create_topics(bootstrap, {**partition_plan(PARTITIONS, f"{prefix}."), f"{prefix}.passthrough.out": PARTITIONS})
        sent = feed(with_mess(canonical_messages(sim.out_dir / "readings.csv"), fraction=0.02, seed=1),
                    bootstrap=bootstrap, topic=raw, limit=args.messages, progress=False)
        print(f"pre-loaded {sent:,} messages into {raw}", flush=True)

        ceilings = {}
        for mode in ("send", "send_soon"):
            port = free_port()
            ceilings[mode] = _measure([sys.executable, "-m", "bench.passthrough_app", bootstrap, raw,
                                       f"{prefix}.passthrough.out", str(port), f"{prefix}-passthrough-{mode}", mode],
                                      dict(os.environ), port, sent, work / f"passthrough-{mode}.log")
            print(f"pass-through ({mode}): {ceilings[mode]['rate']:,.0f} msg/s", flush=True)
        ceiling = ceilings["send_soon"]

        port = free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELDERWATCH_APP_ID": prefix,
               "ELDERWATCH_TOPIC_PREFIX": f"{prefix}.", "ELDERWATCH_WEB_PORT": str(port),
               "ELDERWATCH_PARTITIONS": str(PARTITIONS), "ELDERWATCH_DATA_DIR": str(work / "worker")}
        ingest = _measure([sys.executable, "-m", "elderwatch.cli", "worker", "--loglevel", "warn"], env, port, sent,
                          work / "worker.log")
        print(f"ingest: {ingest['rate']:,.0f} readings/s", flush=True)
    finally:
        if broker is not None:
            broker.stop()

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"""# Ingest throughput

Command: `python -m bench.bench_ingest --messages {args.messages}` (also `make bench`)

- Machine: {os.cpu_count()} CPUs, {cpu}; Python {platform.python_version()}; Kafka 3.9.2 local broker (KRaft, same machine)
- Input: {sent:,} messages pre-loaded in `readings.raw` ({PARTITIONS} partitions): simulated households' interval
  readings with 1% exact re-sends and 1% garbage. One worker process each; rate from first to last processed message.

| pipeline | messages | seconds | messages/s | vs ceiling |
|---|---:|---:|---:|---:|
| bare Faust pass-through, `await topic.send()` per message | {ceilings['send']['messages']:,} | {ceilings['send']['seconds']:.1f} | {ceilings['send']['rate']:,.0f} | {100 * ceilings['send']['rate'] / ceiling['rate']:.0f}% |
| bare Faust pass-through, `topic.send_soon()` (ceiling, same run) | {ceiling['messages']:,} | {ceiling['seconds']:.1f} | {ceiling['rate']:,.0f} | 100% |
| elderwatch ingest (validate -> re-key -> normalize/dedup + table changelog) | {ingest['messages']:,} | {ingest['seconds']:.1f} | {ingest['rate']:,.0f} | {100 * ingest['rate'] / ceiling['rate']:.0f}% |
""")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
