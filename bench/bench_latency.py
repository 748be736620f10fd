"""Latency: a reading's append to ``readings.raw`` → its warning's append to ``anomalies``, live and in a burst.

One worker on a warmed-up fleet (``bench/live_feed.py``: ``--households`` households' detector, series and
ticket state in the changelogs before it starts, a share of them with a heater left on, primed so that a
chosen visit's reading raises a surge warning), fed live readings paced in wall time: a warm-up, then the live load of
15,000 homes (two meters every 15 minutes: 33.3 readings/s), then ``--burst-factor`` times that for
``--burst-seconds``, then the live load again (the backlog draining). Every reading is matched to what the
worker wrote for it:

* warnings: each ``AnomalyWarning`` on ``anomalies`` to the raw reading that raised it (household, meter and
  ``detected_at`` = the reading's data time);
* readings: each ``ValidatedReading`` on ``readings.validated`` to its raw reading (household, meter, ts).

Latency is the output record's CreateTime (set by the worker's producer when the agent sends it) less the
raw record's CreateTime (set by the bench's producer at the send, wall clock; same machine). The ceiling,
in the same run and at the same rates: a bare Faust agent forwarding each raw message to another topic
(``bench/passthrough_app.py``), raw → its output, the same way.

    python -m bench.bench_latency [--households 15000 --live-seconds 300 --burst-seconds 120]
                                  [--out bench/results/latency.md] [--report-only]
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.bench_recovery import PARTITIONS, REPO, OtherLoad, cpu_seconds, machine, revision
from bench.processes import stop
from bench.live_feed import (LIVE_RATE, SURGE_KWH, Fleet, Phase, Sent, build_fleet, epoch_ms, histogram_means,
                             leads_for, metrics_page, phase_bounds, produce, read_topic, run_live, wait_quiet,
                             worker_log_findings)

#: the issue's targets (ms): warnings at the live load, and in the burst
TARGETS = {"live": {"p50": 100.0, "p99": 500.0}, "burst": {"p99": 2000.0}}


# -- statistics ------------------------------------------------------------------------------------------

def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending ``ordered`` (the smallest value with at least ``q`` % of the values
    at or below it); nan when empty.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 51), percentile(list(range(1, 101)), 99)
    (2, 3, 99)
    >>> percentile([5.0], 99), math.isnan(percentile([], 50))
    (5.0, True)
    """
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> dict:
    """count, p50, p90, p99, max (and mean) of latencies in ms.

    >>> summary([30.0, 10.0, 20.0])
    {'count': 3, 'p50': 20.0, 'p90': 30.0, 'p99': 30.0, 'max': 30.0, 'mean': 20.0}
    >>> summary([])["count"]
    0
    """
    ordered = sorted(values)
    nan = float("nan")
    return {"count": len(ordered), "p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99), "max": ordered[-1] if ordered else nan,
            "mean": statistics.fmean(ordered) if ordered else nan}


def phase_of(n: int, bounds: Sequence[int]) -> int:
    """The phase of reading ``n`` (``bounds``: :func:`bench.live_feed.phase_bounds`).

    >>> [phase_of(n, [0, 4, 8]) for n in (0, 3, 4, 7)]
    [0, 0, 1, 1]
    """
    return bisect.bisect_right(bounds, n) - 1


# -- matching ---------------------------------------------------------------------------------------------

def match_warnings(records, fleet: Fleet, created: Sequence[float]) -> tuple[list[dict], int]:
    """Each ``anomalies`` record (key, value, timestamp ms, type) to the raw reading that raised it: the
    reading of its household and meter at ``detected_at``. A warning without a meter could come from either
    meter's reading at that time: the earlier send is taken (the larger latency). Returns the matched warnings
    (n, kind, latency ms, warning key) and how many matched no reading the bench sent."""
    matched, unmatched = [], 0
    for _, value, timestamp, _ in records:
        w = json.loads(value)
        at = epoch_ms(w["detected_at"])
        meters = [w["meter"]] if w.get("meter") else ["electricity", "water"]
        candidates = [n for n in (fleet.locate(w["household_id"], m, at) for m in meters)
                      if n is not None and n < len(created) and not math.isnan(created[n])]
        if not candidates:
            unmatched += 1
            continue
        n = min(candidates, key=lambda c: created[c])
        matched.append({"n": n, "kind": w["kind"], "latency_ms": timestamp - created[n],
                        "key": (w["household_id"], w["kind"], at)})
    return matched, unmatched


def match_readings(records, fleet: Fleet, created: Sequence[float]) -> tuple[dict[int, float], int, int]:
    """Each ``readings.validated`` record to its raw reading (household, meter, ts): {n: latency ms}, records
    that matched nothing sent, and repeats (a reading validated twice: the first kept)."""
    latencies: dict[int, float] = {}
    unmatched = repeats = 0
    for _, value, timestamp, _ in records:
        r = json.loads(value)
        n = fleet.locate(r["household_id"], r["meter"], epoch_ms(r["ts"]))
        if n is None or n >= len(created) or math.isnan(created[n]):
            unmatched += 1
        elif n in latencies:
            repeats += 1
        else:
            latencies[n] = timestamp - created[n]
    return latencies, unmatched, repeats


def match_forwarded(records, sent_values: dict[bytes, int], created: Sequence[float]) -> dict[int, float]:
    """The pass-through's output records to what was sent, by their bytes (forwarded unchanged): {n: latency ms}.

    >>> match_forwarded([(b"k", b"v1", 1050, 0), (b"k", b"zz", 9, 0)], {b"v1": 0}, [1000.0])
    {0: 50.0}
    """
    out = {}
    for _, value, timestamp, _ in records:
        n = sent_values.get(value)
        if n is not None and n not in out:
            out[n] = timestamp - created[n]
    return out


def by_phase(latencies: dict[int, float] | list[tuple[int, float]], phases: Sequence[Phase]) -> dict[str, dict]:
    """A :func:`summary` per measured phase of {reading number: latency}."""
    bounds = phase_bounds(phases)
    grouped: dict[int, list[float]] = {p: [] for p in range(len(phases))}
    for n, latency in (latencies.items() if isinstance(latencies, dict) else latencies):
        grouped[phase_of(n, bounds)].append(latency)
    return {phases[p].name: summary(values) for p, values in grouped.items() if phases[p].measured}


def worst_seconds(latencies: dict[int, float], sent: Sent, phases: Sequence[Phase], top: int = 5) -> list[dict]:
    """The seconds of the run (by when the reading was sent) with the highest latency: second, phase, readings,
    p50 and max (ms)."""
    bounds = phase_bounds(phases)
    seconds: dict[int, list[float]] = {}
    phase: dict[int, str] = {}
    for n, latency in latencies.items():
        s = int(max(0.0, sent.created[n] - sent.began_wall * 1000) // 1000)
        seconds.setdefault(s, []).append(latency)
        phase[s] = phases[phase_of(n, bounds)].name
    rows = [{"second": s, "phase": phase[s], "readings": len(v), "p50": percentile(sorted(v), 50), "max": max(v)}
            for s, v in seconds.items()]
    return sorted(rows, key=lambda r: -r["max"])[:top]


# -- the run ------------------------------------------------------------------------------------------------

def plan(args) -> list[Phase]:
    burst = LIVE_RATE * args.burst_factor if args.live_rate is None else args.live_rate * args.burst_factor
    live = LIVE_RATE if args.live_rate is None else args.live_rate
    phases = [Phase("warm-up", live, args.warmup_seconds, measured=False), Phase("live", live, args.live_seconds),
              Phase("burst", burst, args.burst_seconds)]
    if args.after_seconds > 0:
        phases.append(Phase("after the burst", live, args.after_seconds))
    return [p for p in phases if p.seconds > 0]


def passthrough_baseline(bootstrap: str, fleet: Fleet, phases: list[Phase], work: Path, load: OtherLoad,
                         log=print) -> dict:
    """The bare Faust pass-through (``await topic.send()`` per message) at the same rates: raw → its output."""
    from elderwatch.localkafka import _die_with_parent_preexec, create_topics, free_port

    tag = f"lp{uuid.uuid4().hex[:6]}"
    source, sink = f"{tag}.raw", f"{tag}.out"
    create_topics(bootstrap, {source: PARTITIONS, sink: PARTITIONS})
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.passthrough_app", bootstrap, source, sink, str(port),
                                f"{tag}-app", "send"], cwd=REPO, stdout=open(work / "passthrough.log", "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=_die_with_parent_preexec(os.getpid()))  # gone if the bench dies first
    load.own.add(process.pid)
    try:
        _wait_forwarding(bootstrap, source, port, process)
        snap = load.snapshot()
        cpu0 = cpu_seconds(process.pid)
        messages: dict[bytes, int] = {}

        def message(n: int) -> tuple[bytes, bytes]:
            key, value = fleet.reading(n).message()
            messages[value] = n
            return key, value

        sent = produce(bootstrap, source, phases, message)
        cpu = cpu_seconds(process.pid) - cpu0
        others = load.cores_since(snap)
        time.sleep(3)
        forwarded = match_forwarded(read_topic(bootstrap, sink), messages, sent.created)
    finally:
        stop(process)
    total = sum(p.seconds for p in phases)
    log(f"pass-through: {len(forwarded):,} of {phase_bounds(phases)[-1]:,} forwarded, "
        f"{_line(by_phase(forwarded, phases))}")
    return {"phases": by_phase(forwarded, phases), "forwarded": len(forwarded), "sent": phase_bounds(phases)[-1],
            "cpu_cores": cpu / total, "others_cores": others,
            "acks": by_phase(_acks(sent), phases)}


def _wait_forwarding(bootstrap: str, source: str, port: int, process, timeout: float = 180.0) -> None:
    """Until the pass-through has forwarded a probe message (its group has its partitions)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")
    try:
        for p in range(PARTITIONS):
            producer.send(source, key=b"probe", value=b"probe", partition=p)
        producer.flush()
    finally:
        producer.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the pass-through exited; see passthrough.log")
        page = metrics_page(port, timeout=2)
        if page and any(line.startswith("elderwatch_ingest_received_total") and float(line.split()[-1]) >= PARTITIONS
                        for line in page.splitlines()):
            return
        time.sleep(0.5)
    raise RuntimeError("the pass-through forwarded nothing")


def _acks(sent: Sent) -> dict[int, float]:
    """{n: broker acknowledgement - CreateTime} of the bench's own sends (ms): the produce round trip."""
    return {n: a - c for n, (c, a) in enumerate(zip(sent.created, sent.acked)) if not (math.isnan(a) or math.isnan(c))}


def _line(phases: dict[str, dict]) -> str:
    return "; ".join(f"{name}: n={s['count']:,} p50 {s['p50']:.0f} p99 {s['p99']:.0f} max {s['max']:.0f} ms"
                     for name, s in phases.items())


def measure(args) -> dict:
    from elderwatch.localkafka import bootstrap_or_start
    from streams.metrics import identity_gaps, read_counts

    work = Path(tempfile.mkdtemp(prefix="elderwatch-bench-latency-"))
    phases = plan(args)
    total = phase_bounds(phases)[-1]
    print(f"work directory {work}; phases: " + ", ".join(f"{p.name} {p.rate:.1f}/s x {p.seconds:g} s" for p in phases),
          flush=True)
    bootstrap, broker = (args.bootstrap, None) if args.bootstrap else bootstrap_or_start()
    load = OtherLoad()
    if broker is not None and broker.pid:
        load.own.add(broker.pid)
    try:
        fleet = build_fleet(args.households, args.anomalous, args.templates, args.days, work,
                            leads=leads_for(phases, args.households))
        began = time.monotonic()
        expected = fleet.expected_warnings(total)
        bounds = phase_bounds(phases)
        print(f"expected warnings (offline monitors): {len(expected):,} ({time.monotonic() - began:.0f} s)", flush=True)

        baseline_phases = [Phase(p.name, p.rate, min(p.seconds, args.baseline_seconds), p.measured) for p in phases]
        quiet = {"baseline": wait_quiet(load, args.quiet_timeout)}
        baseline = passthrough_baseline(bootstrap, fleet, baseline_phases, work, load)
        run, quiet["worker"] = run_live(bootstrap, fleet, phases, work, load, sample_seconds=args.sample_seconds,
                                        drain_timeout=args.timeout, quiet_timeout=args.quiet_timeout, tag="lat")
        app_id, sent, samples, page = run.app_id, run.sent, run.samples, run.page
        gaps = identity_gaps(page)
        ingest, detect = read_counts(page, "ingest"), read_counts(page, "detect")
        detect_steps = {k: v * 1000 for k, v in histogram_means(page, "elderwatch_detect_seconds", "phase").items()}
        validated_records = read_topic(bootstrap, f"{app_id}.readings.validated")
        anomaly_records = read_topic(bootstrap, f"{app_id}.anomalies")
    finally:
        if broker is not None:
            broker.stop()

    warnings, unmatched_warnings = match_warnings(anomaly_records, fleet, sent.created)
    readings, unmatched_readings, repeats = match_readings(validated_records, fleet, sent.created)
    received = {tuple(w["key"]) for w in warnings}
    missing = [k for k in expected if k not in received]
    unexpected = [k for k in received if k not in expected]
    kinds: dict[str, int] = {}
    for w in warnings:
        kinds[w["kind"]] = kinds.get(w["kind"], 0) + 1
    timestamp_types = sorted({r[3] for r in validated_records} | {r[3] for r in anomaly_records})
    phase_marks = run.marks + [run.fed_s]
    per_phase_load = []
    for p, phase in enumerate(phases):
        lo, hi = phase_marks[p], phase_marks[p + 1]
        inside = [s for s in samples if lo <= s["t"] <= hi]
        cpu = [s["cpu_s"] for s in samples if lo - args.sample_seconds <= s["t"] <= hi + args.sample_seconds]
        span = [s["t"] for s in samples if lo - args.sample_seconds <= s["t"] <= hi + args.sample_seconds]
        per_phase_load.append({
            "phase": phase.name,
            "worker_cores": (cpu[-1] - cpu[0]) / (span[-1] - span[0]) if len(cpu) > 1 and span[-1] > span[0] else None,
            "others_cores": _mean([s["others_cores"] for s in inside]),
            "ingest_per_s": _rate(inside, "ingest_received"), "detect_per_s": _rate(inside, "detect_received"),
            "max_lag": max((sum(s["lag"].values()) for s in inside), default=None),
            "max_lag_by_topic": _max_by_topic(inside, app_id),
            "late_p99_ms": percentile(sorted(x for x in sent.late[bounds[p]:bounds[p + 1]] if not math.isnan(x)), 99),
        })
    expected_by_phase = {phases[p].name: 0 for p in range(len(phases))}
    for n in expected.values():
        expected_by_phase[phases[phase_of(n, bounds)].name] += 1
    return {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("report_only",)},
        "machine": machine(), "kafka": broker.version if broker is not None else "external", "revision": revision(),
        "phases": [{"name": p.name, "rate": p.rate, "seconds": p.seconds, "readings": p.readings, "measured": p.measured}
                   for p in phases],
        "households": fleet.households, "anomalous_households": fleet.anomalous(),
        "primed": sorted({g.prime for g in fleet.groups if g.anomalous}), "surge_kwh": SURGE_KWH,
        "leads": leads_for(phases, args.households),
        "ready_s": run.ready_s, "fed_s": run.fed_s, "drained_s": run.drained_s, "drained": run.drained, "quiet": quiet,
        "sent": total, "acked": sum(not math.isnan(a) for a in sent.acked),
        "warnings": {"phases": by_phase([(w["n"], w["latency_ms"]) for w in warnings], phases),
                     "received": len(anomaly_records), "matched": len(warnings), "unmatched": unmatched_warnings,
                     "expected": len(expected), "expected_by_phase": expected_by_phase,
                     "missing": len(missing), "unexpected": len(unexpected), "missing_examples": missing[:5],
                     "unexpected_examples": unexpected[:5], "kinds": kinds,
                     "latencies": sorted(((w["n"], round(w["latency_ms"])) for w in warnings))},
        "readings": {"phases": by_phase(readings, phases), "received": len(validated_records),
                     "matched": len(readings), "unmatched": unmatched_readings, "repeats": repeats,
                     "worst_seconds": worst_seconds(readings, sent, phases)},
        "acks": by_phase(_acks(sent), phases),
        "baseline": baseline,
        "load": per_phase_load,
        "timestamp_types": timestamp_types,
        "counts": {"ingest": ingest, "detect": detect}, "identity_gaps": gaps, "detect_step_ms": detect_steps,
        "worker_log": worker_log_findings(run.log),
        "samples": samples,
    }


def _rate(samples: list[dict], counter: str) -> float | None:
    """Per second of a counter between the first and the last sample.

    >>> _rate([{"t": 0.0, "n": 5.0}, {"t": 2.0, "n": 9.0}, {"t": 4.0, "n": 25.0}], "n"), _rate([], "n")
    (5.0, None)
    """
    if len(samples) < 2 or samples[-1]["t"] <= samples[0]["t"]:
        return None
    return (samples[-1][counter] - samples[0][counter]) / (samples[-1]["t"] - samples[0]["t"])


def _mean(values: list) -> float | None:
    """Mean of the values that are there; None if none is.

    >>> _mean([1.0, None, 3.0]), _mean([None])
    (2.0, None)
    """
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _max_by_topic(samples: list[dict], app_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        for topic, lag in s["lag"].items():
            short = topic.removeprefix(f"{app_id}.")
            out[short] = max(out.get(short, 0.0), lag)
    return {k: v for k, v in out.items() if v}


# -- the report -------------------------------------------------------------------------------------------------

def _leads(leads: int) -> str:
    """
    >>> _leads(1)
    'their first visit'
    >>> _leads(3)
    "their 1st, 2nd or 3rd visit, a third of them each (a household's k-th visit comes in the fleet's k-th round through its households: the warnings are spread over the whole run)"
    """
    if leads <= 1:
        return "their first visit"
    names = {1: "1st", 2: "2nd", 3: "3rd"}
    ordinals = [names.get(k, f"{k}th") for k in range(1, leads + 1)]
    share = {2: "half", 3: "a third", 4: "a quarter"}.get(leads, f"1/{leads}")
    return (f"their {', '.join(ordinals[:-1])} or {ordinals[-1]} visit, {share} of them each (a household's k-th visit "
            "comes in the fleet's k-th round through its households: the warnings are spread over the whole run)")


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _ms(v: float | None) -> str:
    """
    >>> _ms(12.4), _ms(1234.0), _ms(float("nan")), _ms(None)
    ('12', '1,234', '–', '–')
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.0f}"


def _target(name: str, s: dict) -> str:
    """The targets of a phase and whether the warnings met them.

    >>> _target("live", {"count": 3, "p50": 80.0, "p99": 600.0})
    'p50 ≤ 100 ms: yes; p99 ≤ 500 ms: **no**'
    >>> _target("after the burst", {"count": 3, "p50": 1.0, "p99": 1.0}), _target("burst", {"count": 0})
    ('', 'no warnings')
    """
    targets = TARGETS.get(name)
    if not targets:
        return ""
    if not s.get("count"):
        return "no warnings"
    return "; ".join(f"{q} ≤ {limit:,.0f} ms: " + ("yes" if s[q] <= limit else "**no**") for q, limit in targets.items())


def _quiet(quiet: dict, timeout: float) -> str:
    """What the run did about the shared machine.

    >>> _quiet({"baseline": {"waited_s": 20.0, "quiet": True}, "worker": {"waited_s": 700.0, "quiet": False}}, 600)
    'Shared machine: before each part the bench waited for other processes to use under 0.1 core for 15 s (at most 600 s): pass-through 20 s (quiet), worker 700 s (**still busy**).'
    >>> _quiet({}, 0)
    'Shared machine: the bench did not wait for other processes to go quiet (`--quiet-timeout 0`).'
    """
    if not timeout or not quiet:
        return "Shared machine: the bench did not wait for other processes to go quiet (`--quiet-timeout 0`)."
    parts = [f"{'pass-through' if k == 'baseline' else k} {v['waited_s']:.0f} s ("
             + ("quiet" if v["quiet"] else "**still busy**") + ")" for k, v in quiet.items()]
    return ("Shared machine: before each part the bench waited for other processes to use under 0.1 core for 15 s "
            f"(at most {timeout:g} s): " + ", ".join(parts) + ".")


def _rows(label: str, phases: dict[str, dict], targets: bool = False) -> list[str]:
    rows = []
    for name, s in phases.items():
        rows.append(f"| {label} | {name} | {s['count']:,} | {_ms(s.get('p50'))} | {_ms(s.get('p90'))} "
                    f"| {_ms(s.get('p99'))} | {_ms(s.get('max'))} |" + (f" {_target(name, s)} |" if targets else " |"))
    return rows


def _rss(samples: list[dict]) -> str:
    """
    >>> _rss([{"rss_kib": 102400}, {"rss_kib": 204800}, {"rss_kib": None}])
    '100 MiB at the first sample, 200 MiB at the last, 200 MiB at most'
    """
    values = [s["rss_kib"] for s in samples if s.get("rss_kib")]
    if not values:
        return "not sampled"
    return (f"{values[0] / 1024:,.0f} MiB at the first sample, {values[-1] / 1024:,.0f} MiB at the last, "
            f"{max(values) / 1024:,.0f} MiB at most")


def command(a: dict) -> str:
    """The command line of a run's arguments (only what differs from the defaults).

    >>> command({"households": 1500, "live_seconds": 60.0, "burst_seconds": 30.0, "after_seconds": 60.0})
    'python -m bench.bench_latency --households 1500 --live-seconds 60 --burst-seconds 30'
    """
    parts = ["python -m bench.bench_latency"]
    for key, default in DEFAULTS.items():
        if key in a and a[key] != default and key not in ("out", "bootstrap"):
            parts.append(f"--{key.replace('_', '-')} {a[key]:g}" if isinstance(a[key], float) else
                         f"--{key.replace('_', '-')} {a[key]}")
    return " ".join(parts)


def report(r: dict) -> str:
    a = r["args"]
    w, rd, b = r["warnings"], r["readings"], r["baseline"]
    phases = {p["name"]: p for p in r["phases"]}
    phase_lines = "; ".join(f"{p['name']} {p['rate']:,.1f} readings/s for {p['seconds']:g} s ({p['readings']:,})"
                            for p in r["phases"])
    full = a["households"] == DEFAULTS["households"] and a["live_seconds"] >= DEFAULTS["live_seconds"]
    status = ("" if full else f"""
> **A short development run**, not the full measurement: {a['households']:,} households' state, {a['live_seconds']:g} s
> live and {a['burst_seconds']:g} s of burst. The full one: `{command(DEFAULTS)}` (the defaults; ~15 min).
""")
    rows = (_rows("warning (raw → anomalies)", w["phases"], targets=True)
            + _rows("reading (raw → readings.validated)", rd["phases"])
            + _rows("pass-through (raw → its output)", b["phases"])
            + _rows("bench producer (send → broker ack)", r["acks"]))
    load_rows = [f"| {x['phase']} | {phases[x['phase']]['rate']:,.1f} | {_num(x.get('ingest_per_s'))} "
                 f"| {_num(x.get('detect_per_s'))} | "
                 + (f"{x['worker_cores']:.2f}" if x["worker_cores"] is not None else "–") + " | "
                 + (f"{x['others_cores']:.2f}" if x["others_cores"] is not None else "–") + " | "
                 + (f"{x['max_lag']:,.0f}" if x["max_lag"] is not None else "–") + " | "
                 + (", ".join(f"{k} {v:,.0f}" for k, v in sorted(x["max_lag_by_topic"].items())) or "–") + " | "
                 + f"{_ms(x['late_p99_ms'])} |" for x in r["load"]]
    worst = "\n".join(f"| {s['second']} | {s['phase']} | {s['readings']} | {_ms(s['p50'])} | {_ms(s['max'])} |"
                      for s in rd["worst_seconds"])
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(w["kinds"].items())) or "none"
    counts = r["counts"]
    steps = ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(r["detect_step_ms"].items())) or "–"
    log = r["worker_log"]
    log_lines = "\n".join(f"  - `{line}`" for line in log["lines"]) or "  - none"
    ts_types = {0: "CreateTime", 1: "LogAppendTime"}
    types = ", ".join(ts_types.get(t, str(t)) for t in r["timestamp_types"])
    check = ("the same" if not w["missing"] and not w["unexpected"] else
             f"**not the same**: {w['missing']:,} expected and not received (e.g. {w['missing_examples'][:2]}), "
             f"{w['unexpected']:,} received and not expected (e.g. {w['unexpected_examples'][:2]})")
    return f"""# Latency: raw reading → warning

Command: `{command(a)}` (`--report-only` writes this file again from `latency.json`)
{status}
- Machine: {r['machine']}; Kafka {r['kafka']} (local broker, KRaft, one node, same machine); faust-streaming,
  store `memory://`, {PARTITIONS} partitions, one worker process. Code: {r['revision']}.
- {_quiet(r.get('quiet', {}), a.get('quiet_timeout', 0))} Other processes' CPU during each phase is in the
  load table below: latency on a busy machine is not the worker's alone.
- Fleet: {r['households']:,} households' state (detector, series, ticket desk) written into the changelogs
  before the worker started ({a['templates']} simulated households run {a['days']} days, reused), ready in
  {r['ready_s']:.1f} s. {r['anomalous_households']:,} of them ({100 * r['anomalous_households'] / r['households']:.1f} %) have a
  {SURGE_KWH * 4:g} kW heater left on 2 h in every 6 h, their state primed {r['primed']} quarter-hours into it, so
  that a surge warning (the detector that fires soonest) is due at {_leads(r.get('leads', 1))}.
- Feed (`bench/live_feed.py`): each household's next two readings (electricity, water) 15 min of data time
  after its last, its own values of a week before, in the canonical raw JSON, keyed by household; the fleet
  visited round robin in a shuffled order, paced in wall time: {phase_lines}. The live rate is 15,000 homes'
  (2 meters / 15 min), whatever the fleet's size; a smaller fleet's data time runs faster.
- Timestamps: the raw record's CreateTime is set by the bench's producer (aiokafka, `acks=all`, no linger) to
  the wall clock when it sends; the output record's CreateTime by the worker's producer (aiokafka under faust)
  when the agent hands it over, so the append itself (a broker round trip, see "bench producer") is not in
  it. Both `time.time()` on this machine; the records read back are {types}. Percentiles are nearest-rank.
- Matching: a warning to the raw reading of its household and meter at its `detected_at`; a validated reading
  to its raw reading by household, meter and `ts`. Readings: {r['sent']:,} sent, {r['acked']:,} acknowledged,
  {rd['matched']:,} validated and matched ({rd['unmatched']} unmatched, {rd['repeats']} twice). Warnings:
  {w['received']:,} on `anomalies`, {w['matched']:,} matched ({w['unmatched']} unmatched; {kinds}); the monitors
  run offline on the same readings expect {w['expected']:,}: {check}.
- Fed in {r['fed_s']:.0f} s; the worker had {"taken everything" if r.get('drained', True) else "**not** taken everything"} {r['drained_s']:.1f} s after the last send. Ingest
  identity on its `/metrics` at the end: {"holds" if not r['identity_gaps'] else "**" + "; ".join(r['identity_gaps']) + "**"}
  (received {counts['ingest'].get('received', 0):,.0f}, valid {counts['ingest'].get('valid', 0):,.0f}, dead-lettered
  {counts['ingest'].get('dead_lettered', 0):,.0f}, duplicates {counts['ingest'].get('duplicates', 0):,.0f};
  detect received {counts['detect'].get('received', 0):,.0f}, warnings {counts['detect'].get('warnings', 0):,.0f}).

## Latency (ms)

Warnings are the measurement the targets are for (live p50 ≤ 100 ms and p99 ≤ 500 ms, burst p99 ≤ 2 s);
readings → `readings.validated` is the larger sample of the first half of the same path (ingest only). The
pass-through is a bare Faust agent (`bench/passthrough_app.py`, `await topic.send()` per message, the worker's
producer settings: it lingers as long) on its own topics at the same rates ({a['baseline_seconds']:g} s per phase
at most), before the worker, in the same run: what Kafka and Faust alone cost for one hop (the worker makes two
for a feed keyed by household, as this one is: raw → validated → anomalies; three for another feed, through
readings.by-household). The warm-up phase is left out.

| what | phase | count | p50 | p90 | p99 | max | targets (warnings) |
|---|---|---:|---:|---:|---:|---:|---|
{chr(10).join(rows)}

Warnings expected by phase (offline): {", ".join(f"{k} {v:,}" for k, v in w['expected_by_phase'].items())}.

## Load during the run

Readings ingest and detect took per second (their `/metrics` counters between the phase's first and last
sample: below the rate sent, the worker falls behind), worker CPU (cores, from its /proc stat), other processes' CPU (the machine is shared: everything but this
bench, its broker and its worker), the worker's largest consumer lag (`elderwatch_consumer_lag`, messages not
committed, summed over topics; faust commits every few seconds, so it is never 0 under load), and the bench's
own pacing (p99 of how late a send was against its schedule).

| phase | readings/s sent | ingest took /s | detect took /s | worker cores | others' cores | max lag | max lag by topic | send late p99 (ms) |
|---|---:|---:|---:|---:|---:|---:|---|---:|
{chr(10).join(load_rows)}

Worker RSS: {_rss(r['samples'])}. Pass-through: {b['cpu_cores']:.2f} cores, others {b['others_cores']:.2f} cores. Detect agent's own time per
reading (mean of `elderwatch_detect_seconds` by step (its `phase` label), whole run): {steps}.

Slowest seconds of the run, readings → validated (second from the start of the feed):

| second | phase | readings | p50 | max |
|---:|---|---:|---:|---:|
{worst}

Worker log: {log['error']} lines naming an error or exception, {log['warning']} warnings; the first distinct ones:
{log_lines}
"""


DEFAULTS = {"households": 15_000, "live_seconds": 300.0, "burst_seconds": 120.0, "after_seconds": 60.0,
            "warmup_seconds": 10.0, "baseline_seconds": 60.0, "burst_factor": 10.0, "live_rate": None,
            "anomalous": 0.05, "templates": 24, "days": 60, "quiet_timeout": 600.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=DEFAULTS["households"], help="households' state in the tables")
    parser.add_argument("--live-seconds", type=float, default=DEFAULTS["live_seconds"])
    parser.add_argument("--burst-seconds", type=float, default=DEFAULTS["burst_seconds"])
    parser.add_argument("--after-seconds", type=float, default=DEFAULTS["after_seconds"],
                        help="live load again after the burst (0: none)")
    parser.add_argument("--warmup-seconds", type=float, default=DEFAULTS["warmup_seconds"],
                        help="live load before the measured phases, not counted")
    parser.add_argument("--baseline-seconds", type=float, default=DEFAULTS["baseline_seconds"],
                        help="the pass-through's phases are at most this long")
    parser.add_argument("--burst-factor", type=float, default=DEFAULTS["burst_factor"])
    parser.add_argument("--live-rate", type=float, default=None,
                        help=f"readings/s of the live load (default {LIVE_RATE:.1f}: 15,000 homes, 2 meters / 15 min)")
    parser.add_argument("--anomalous", type=float, default=DEFAULTS["anomalous"],
                        help="share of households with a heater left on (primed to raise a surge warning)")
    parser.add_argument("--templates", type=int, default=DEFAULTS["templates"])
    parser.add_argument("--days", type=int, default=DEFAULTS["days"])
    parser.add_argument("--sample-seconds", type=float, default=2.0, help="how often the worker's /metrics is read")
    parser.add_argument("--timeout", type=float, default=900.0, help="for the worker to drain after the feed")
    parser.add_argument("--quiet-timeout", type=float, default=DEFAULTS["quiet_timeout"],
                        help="before the pass-through and before the worker, wait up to this long for other processes "
                             "to use under 0.1 core for 15 s (the machine may be shared; 0: do not wait)")
    parser.add_argument("--bootstrap", help="an existing broker (default: $KAFKA_BOOTSTRAP_SERVERS or a local one)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latency.md",
                        help="the report; the measurements go beside it as .json")
    parser.add_argument("--report-only", action="store_true", help="write the report again from the .json")
    args = parser.parse_args(argv)
    raw = args.out.with_suffix(".json")
    if not args.report_only:
        results = measure(args)
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(results, indent=1, default=list) + "\n")
    args.out.write_text(report(json.loads(raw.read_text())))
    print(f"written {args.out} and {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
