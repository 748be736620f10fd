"""Sustained readings/s through the whole worker (ingest + detect + tickets), beside the bare Faust ceiling.

Same session, same local broker, same pre-loaded ``readings.raw`` (simulated households, 1% exact re-sends
and 1% garbage), one worker process each:

* the ceiling: a bare Faust agent forwarding each raw message unchanged (``bench/passthrough_app.py``),
  per message with ``send_soon`` and in batches (``take_events``), since batching can beat a per-message
  pass-through; beside it the same forwarding with aiokafka alone, no Faust (what Faust's per-message path costs),
  and that aiokafka loop running the worker's own code on each batch (a sketch of a runtime without Faust's
  per-message path: what one could reach);
* the worker as it runs in production (``elderwatch worker``): validate -> re-key -> normalize/dedup ->
  detect -> tickets, every table's changelog written. Its rate is readings received by ingest, from the
  first one settled to the moment detection has taken every reading ingest let through and the readings
  topics are committed, so every state they changed is stored (read from the worker's /metrics, so start-up
  is excluded);
* the floor: the worker's own code for the same messages in one process, without Kafka or Faust
  (``bench/worker_code.py``): what any runtime would still pay per reading.

A catch-up after an outage looks like this: the backlog is there, the worker reads it as fast as it can.

    python -m bench.bench_throughput [--messages 200000] [--households 2000] [--out bench/results/throughput.md]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.bench_recovery import cpu_seconds  # the same /proc reading the recovery bench uses
from bench.processes import stop
from bench.worker_code import run_alone
from elderwatch.feed import canonical_messages, feed, with_mess
from elderwatch.localkafka import bootstrap_or_start, create_topics, free_port
from elderwatch.simulator import simulate
from streams.metrics import read_counts, settled
from streams.topics import partition_plan

REPO = Path(__file__).resolve().parents[1]
ROUTE = re.compile(r'^elderwatch_ingest_routes_total\{route="(\w+)"\} (\S+)$', re.M)  # direct / rekeyed
PARTITIONS = 4
INTERVALS_PER_DAY = 96  # the simulator's 15-minute readings, two meters


def metrics_page(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


#: the readings topics' lag on /metrics: what is not yet committed, so not yet stored either
READINGS_LAG = re.compile(r'^elderwatch_consumer_lag\{topic="[^"]*readings\.(?:raw|by-household)"\} (\S+)$', re.M)


def pipeline_done(text: str) -> tuple[float, bool]:
    """(raw messages settled by ingest, whether detection has taken every reading ingest emitted and the readings
    topics are committed: every state those readings changed is stored).

    >>> pipeline_done('elderwatch_ingest_received_total 3.0\\nelderwatch_ingest_valid_total 2.0\\n'
    ...               'elderwatch_ingest_dead_lettered_total{reason="not_json"} 1.0\\n'
    ...               'elderwatch_ingest_emitted_total 2.0\\nelderwatch_detect_received_total 1.0\\n')
    (3.0, False)
    >>> pipeline_done('elderwatch_ingest_valid_total 2.0\\nelderwatch_ingest_emitted_total 2.0\\n'
    ...               'elderwatch_detect_received_total 2.0\\nelderwatch_consumer_lag{topic="t.readings.raw"} 0.0\\n')
    (2.0, True)
    >>> pipeline_done('elderwatch_ingest_valid_total 2.0\\nelderwatch_ingest_emitted_total 2.0\\n'
    ...               'elderwatch_detect_received_total 2.0\\nelderwatch_consumer_lag{topic="t.readings.raw"} 2.0\\n')
    (2.0, False)
    """
    ingest, detect = read_counts(text), read_counts(text, "detect")
    committed = all(float(lag) == 0 for lag in READINGS_LAG.findall(text))
    return settled(ingest), detect.get("received", 0.0) >= ingest.get("emitted", 0.0) and committed


def passthrough_done(text: str) -> tuple[float, bool]:
    return settled(read_counts(text)), True


def measure(command: list[str], env: dict, port: int, total: int, log: Path,
            done: Callable[[str], tuple[float, bool]], timeout: float = 1800, cwd: Path = REPO,
            poll: float = 0.5) -> dict:
    """Run ``command`` until ``done`` says all ``total`` messages went through; rate from the first one seen.

    ``poll``: seconds between reads of /metrics. Each read costs the worker CPU, so not too often for the worker;
    a pass-through's page is a line, and the fastest one is done in seconds (the rate's error is about ``poll``
    over the run's length)."""
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    cpu_before = None
    try:
        first_t = first_n = finished = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = metrics_page(port)
            now = time.monotonic()
            if text:
                n, caught_up = done(text)
                if n and first_t is None:
                    first_t, first_n, cpu_before = now, n, cpu_seconds(process.pid)
                if n >= total and caught_up:
                    finished = now
                    break
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited early; see {log}")
            time.sleep(poll)
        if finished is None or first_t is None or finished == first_t:
            raise RuntimeError(f"not finished within {timeout} s; see {log}")
        cpu = cpu_seconds(process.pid) - (cpu_before or 0.0)
        seconds = finished - first_t
        return {"messages": total, "seconds": seconds, "rate": (total - first_n) / seconds,
                "worker_cpu_share": cpu / seconds, "rss_mib": rss_mib(process.pid),
                "counts": {"ingest": read_counts(text), "detect": read_counts(text, "detect"),
                           "tickets": read_counts(text, "tickets")},
                "routes": {route: float(n) for route, n in ROUTE.findall(text)}}
    finally:
        stop(process)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def revision(checkout: Path = REPO) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "streams", "detectors", "dispatch",
                                "schemas", "elderwatch"], cwd=checkout, capture_output=True, text=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs, {cpu}; Python {platform.python_version()}; {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--households", type=int, default=2_000)
    parser.add_argument("--worker", action="append", default=[], metavar="LABEL:NAME=VALUE,...",
                        help="a worker row with extra environment (repeatable), e.g. "
                             "'faust producer defaults:ELDERWATCH_PRODUCER_LINGER_MS=0,ELDERWATCH_PRODUCER_MAX_BATCH_SIZE=16384'")
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also run the worker of another checkout (e.g. `git worktree add /tmp/before <commit>`) "
                             "on the same input: the code before a change, measured in the same run")
    parser.add_argument("--order", choices=("time", "household"), default="time",
                        help="time: every household's readings interleaved by time, as a fleet's live feed or its "
                             "catch-up after an outage (the default: the hard case for batching and caching); "
                             "household: the simulator's file order, each household's day in a row (a utility's backlog)")
    parser.add_argument("--skip-ceiling", action="store_true", help="only the worker (while tuning; not for results)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "throughput.md")
    args = parser.parse_args(argv)
    workers = [("elderwatch worker (its defaults)", {}, REPO)] + [(*parse_worker(spec), REPO) for spec in args.worker]
    if args.before:
        workers.append((f"the worker before (`{revision(args.before)}`)", {}, args.before.resolve()))

    work = Path(tempfile.mkdtemp(prefix="elderwatch-bench-"))
    bootstrap, broker = bootstrap_or_start()
    results: dict = {"command": "python -m bench.bench_throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "machine": machine(), "revision": revision(), "partitions": PARTITIONS}
    try:
        days = max(1, -(-args.messages // (args.households * 2 * INTERVALS_PER_DAY)))
        sim = simulate(households=args.households, days=days, seed=3, out_dir=work / "sim", anomaly_rate=0,
                       warmup_days=0)

        messages = canonical_messages(sim.out_dir / "readings.csv")
        if args.order == "time":  # stable: each household's meters keep their order
            messages = sorted(messages, key=lambda m: m.ts)[:args.messages]
        else:
            messages = list(itertools.islice(messages, args.messages))

        def preload() -> tuple[str, str, int]:
            """A fresh set of topics (each run reads its own) with the same messages in its readings.raw."""
            prefix = f"t{uuid.uuid4().hex[:6]}"
            create_topics(bootstrap, {**partition_plan(PARTITIONS, f"{prefix}."),
                                      f"{prefix}.passthrough.out": PARTITIONS})
            sent = feed(with_mess(messages, fraction=0.02, seed=1),
                        bootstrap=bootstrap, topic=f"{prefix}.readings.raw", limit=args.messages, progress=False)
            return prefix, f"{prefix}.readings.raw", sent

        rows = results["rows"] = {}
        if not args.skip_ceiling:
            prefix, raw, sent = preload()
            for mode in ("send_soon", "take", "aiokafka", "worker-code"):
                port = free_port()
                rows[f"passthrough-{mode}"] = measure(
                    [sys.executable, "-m", "bench.passthrough_app", bootstrap, raw, f"{prefix}.passthrough.out",
                     str(port), f"{prefix}-passthrough-{mode}", mode], dict(os.environ), port, sent,
                    work / f"passthrough-{mode}.log", passthrough_done, poll=0.05)
                print(f"pass-through ({mode}): {rows[f'passthrough-{mode}']['rate']:,.0f} msg/s", flush=True)
            if rows["passthrough-worker-code"]["counts"]["ingest"].get("received") != sent:
                raise RuntimeError("the worker-code sketch did not count every message it read")

        for n, (label, extra, checkout) in enumerate(workers):
            prefix, raw, sent = preload()
            port = free_port()
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELDERWATCH_APP_ID": prefix,
                   "ELDERWATCH_TOPIC_PREFIX": f"{prefix}.", "ELDERWATCH_WEB_PORT": str(port),
                   "ELDERWATCH_PARTITIONS": str(PARTITIONS), "ELDERWATCH_DATA_DIR": str(work / f"worker{n}"), **extra}
            row = rows[f"worker-{n}"] = measure([sys.executable, "-m", "elderwatch.cli", "worker", "--loglevel", "warn"],
                                                env, port, sent, work / f"worker{n}.log", pipeline_done, cwd=checkout)
            row["label"], row["env"] = label, extra
            print(f"{label}: {row['rate']:,.0f} readings/s, "
                  f"{1000 * row['worker_cpu_share'] / row['rate']:.2f} ms of CPU per reading", flush=True)
        # Last, on its own: nothing else runs but the broker, idle by now.
        floor = rows["our-code"] = run_alone(list(itertools.islice(with_mess(messages, fraction=0.02, seed=1),
                                                                   args.messages)))
        print(f"our code alone: {floor['rate']:,.0f} readings/s, {1000 / floor['rate']:.2f} ms of CPU per reading",
              flush=True)
        results.update(messages=sent, households=args.households, days=days, order=args.order,
                       households_in_feed=len({m.key for m in messages}))
    finally:
        if broker is not None:
            broker.stop()

    if not args.skip_ceiling:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        args.out.write_text(report(results))
        print(f"written {args.out}")
    return 0


def parse_worker(spec: str) -> tuple[str, dict[str, str]]:
    """``"label:NAME=VALUE,NAME=VALUE"`` -> (label, environment).

    >>> parse_worker("no linger:ELDERWATCH_PRODUCER_LINGER_MS=0,ELDERWATCH_PRODUCER_MAX_BATCH_SIZE=16384")
    ('no linger', {'ELDERWATCH_PRODUCER_LINGER_MS': '0', 'ELDERWATCH_PRODUCER_MAX_BATCH_SIZE': '16384'})
    """
    label, _, assignments = spec.partition(":")
    return label, dict(item.split("=", 1) for item in assignments.split(",") if item)


def report(results: dict) -> str:
    rows = results["rows"]
    ceiling = rows["passthrough-send_soon"]["rate"]

    def row(name: str, r: dict) -> str:
        return (f"| {name} | {r['messages']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {100 * r['rate'] / ceiling:.0f}% "
                f"| {r['worker_cpu_share']:.2f} | {1000 * r['worker_cpu_share'] / r['rate']:.2f} ms of CPU "
                f"| {r['rss_mib']:,.0f} |")

    lines = [row("bare Faust pass-through, `send_soon` per message (the ceiling)", rows["passthrough-send_soon"]),
             row("bare Faust pass-through, batches of `take_events(500, 0.02 s)`", rows["passthrough-take"])]
    if "passthrough-aiokafka" in rows:  # runs before this row was added have none
        lines.append(row("no Faust: aiokafka's consumer (`getmany`, 500) and producer (the worker's linger and batch "
                         "size)", rows["passthrough-aiokafka"]))
    lines += [row(r["label"] + (" (" + ", ".join(f"`{k}={v}`" for k, v in r["env"].items()) + ")" if r["env"] else ""), r)
              for name, r in rows.items() if name.startswith("worker-")]
    if "passthrough-worker-code" in rows:  # runs before these rows were added have neither
        lines.append(row("sketch: the worker's own code (`bench/worker_code.py`) in that aiokafka loop, ingest and detect "
                         "in one pass, no recovery or rebalancing", rows["passthrough-worker-code"]))
    if "our-code" in rows:
        floor = rows["our-code"]
        lines.append(f"| the worker's own code alone: no Kafka, no Faust, one process (the floor of any runtime) "
                     f"| {floor['messages']:,} | {floor['seconds']:.1f} of CPU | {floor['rate']:,.0f} "
                     f"| {100 * floor['rate'] / ceiling:.0f}% | 1.00 | {1000 / floor['rate']:.2f} ms of CPU | – |")
    worker = rows["worker-0"]
    detect, ingest = worker["counts"]["detect"], worker["counts"]["ingest"]
    routes = ("\nIngest's routes: " + ", ".join(f"{route} {n:,.0f}" for route, n in worker["routes"].items()) + "."
              if worker.get("routes") else "")
    return f"""# Throughput: ingest + detect + tickets, one worker

Command: `{results['command']}`

- Machine: {results['machine']}; Kafka 3.9.2 local broker (KRaft, same machine); code {results['revision']}
- Input: {results['messages']:,} messages pre-loaded in `readings.raw` ({results['partitions']} partitions), keyed by
  household: the first of {results['households']:,} simulated households' 15-minute electricity and water readings
  {"in time order (every household interleaved, as a fleet's feed)" if results.get('order') == 'time' else "in file order (each household's day in a row)"},
  {results.get('households_in_feed', results['households']):,} households in all, with 1% exact re-sends and 1% garbage mixed in. One process at a time; rate from the first
  message through to the last (start-up excluded). For the worker, "through" means detection has taken
  every reading ingest let through and the readings topics are committed (every state they changed stored).
- The pass-throughs produce with the worker's producer settings (linger, batch size, compression) and, like the
  worker, without faust's start-up spinner (which sets the root logger to DEBUG).

| pipeline | messages | seconds | messages/s | vs ceiling | process CPU (cores) | CPU per message | RSS MiB at end |
|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(lines)}

The default worker's counts at the end: ingest received {ingest.get('received', 0):,.0f}, valid {ingest.get('valid', 0):,.0f},
duplicates {ingest.get('duplicates', 0):,.0f}, dead-lettered {ingest.get('dead_lettered', 0):,.0f}; detect received
{detect.get('received', 0):,.0f}, processed {detect.get('processed', 0):,.0f}, warnings {detect.get('warnings', 0):,.0f}.{routes}
"""


if __name__ == "__main__":
    sys.exit(main())
