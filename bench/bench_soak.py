"""Soak: one worker fed 15,000 homes' readings, time-accelerated, for half an hour; is its memory flat?

The fleet of ``bench/live_feed.py`` (``--households`` households' state in the changelogs before the worker
starts, a share with a heater left on), fed at ``--speed`` times the live rate of 15,000 homes (two meters
every 15 minutes: 33.3 readings/s), so data time runs ``--speed`` times faster than wall time at 15,000
households (10x: 5 hours of data in 30 minutes). Sampled every ``--sample-seconds``: the worker's RSS
(``/proc/<pid>/status`` VmRSS), its CPU, its ``/metrics`` counts and consumer lag. At the end, once drained:
the ingest and detect identities on ``/metrics``, every reading on ``readings.validated``, the warnings on
``anomalies`` against the same monitors run offline, and the readings' latency raw → validated window by
window (a worker falling behind shows there first).

The verdicts, each a stated rule:

* **memory flat**: the least-squares slope of RSS over the second half of the feed is below
  ``--slope-limit`` MiB/min (default 1). The first half holds the start-up growth (the monitor cache filling,
  the first tickets); with a 30-minute run the second half is 15 minutes, so 1 MiB/min would be 15 MiB more.
* **kept up**: in the second half ingest was never more than ``--behind-limit`` seconds of input behind the
  feed (readings due so far less readings received, over the rate) and detect never that far behind ingest
  (readings ingest emitted less readings detect received), and everything was processed within
  ``--drain-limit`` seconds of the last send.
* **identity**: ingest received = valid + duplicates + dead-lettered + raw redelivered and valid = emitted +
  register baselines, detect received = processed + redelivered + dead-lettered + failed
  (``streams.metrics.identity_gaps``), and every reading sent was received, validated and detected once,
  with no duplicate and no dead letter.
* **warnings as expected**: the warnings on ``anomalies`` are exactly those the monitors raise offline on
  the same readings.

    python -m bench.bench_soak [--minutes 30 --households 15000 --speed 10] [--out bench/results/soak.md]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

from bench.bench_latency import _ms, match_warnings, summary
from bench.bench_recovery import PARTITIONS, REPO, OtherLoad, machine, revision
from bench.live_feed import (LIVE_RATE, SURGE_KWH, Phase, build_fleet, epoch_ms, histogram_means, leads_for,
                             phase_bounds, read_topic, run_live, worker_log_findings)

DEFAULTS = {"minutes": 30.0, "households": 15_000, "speed": 10.0, "anomalous": 0.05, "templates": 24, "days": 60,
            "sample_seconds": 10.0, "slope_limit": 1.0, "behind_limit": 30.0, "drain_limit": 60.0,
            "quiet_timeout": 600.0}


# -- the rules -------------------------------------------------------------------------------------------------

def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute; nan with fewer than two distinct times.

    >>> slope_per_minute([(0, 10.0), (60, 12.0), (120, 14.0)])
    2.0
    >>> math.isnan(slope_per_minute([(5, 1.0)]))
    True
    """
    if len({t for t, _ in points}) < 2:
        return float("nan")
    mt = statistics.fmean(t for t, _ in points)
    mv = statistics.fmean(v for _, v in points)
    num = sum((t - mt) * (v - mv) for t, v in points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return num / den * 60


def memory(samples: list[dict], feed_start: float, fed: float, limit_mib_per_min: float) -> dict:
    """The memory rule on RSS samples (``t`` seconds after the feed's start, ``rss_kib``): the slope over the
    second half of the feed, in MiB/min, below ``limit``; also, for runs of 20 minutes or more, the mean of the
    last 5 minutes against the mean of minutes 10-15 (for the reader; not the rule).

    >>> s = [{"t": t, "rss_kib": 1024 * (100 + (t if t < 50 else 50) / 10)} for t in range(0, 121, 10)]
    >>> m = memory(s, 0.0, 120.0, 1.0)
    >>> m["flat"], round(m["slope_mib_per_min"], 3), m["first_mib"], m["last_mib"]
    (True, 0.0, 100.0, 105.0)
    """
    points = [(s["t"] - feed_start, s["rss_kib"] / 1024) for s in samples if s.get("rss_kib")]
    feed = [(t, v) for t, v in points if 0 <= t <= fed]
    second = [(t, v) for t, v in feed if t >= fed / 2]
    slope = slope_per_minute(second)
    result = {"slope_mib_per_min": slope, "limit_mib_per_min": limit_mib_per_min,
              "flat": bool(slope < limit_mib_per_min), "second_half_samples": len(second),
              "first_mib": feed[0][1] if feed else None, "last_mib": feed[-1][1] if feed else None,
              "max_mib": max((v for _, v in feed), default=None)}
    if fed >= 20 * 60:
        mid = [v for t, v in feed if 600 <= t < 900]
        last = [v for t, v in feed if t >= fed - 300]
        if mid and last:
            result["minutes_10_15_mib"] = statistics.fmean(mid)
            result["last_5_minutes_mib"] = statistics.fmean(last)
    return result


def behind(samples: list[dict], feed_start: float, fed: float, rate: float, total: int) -> dict:
    """How far behind, in seconds of input, ingest was of the feed (readings due so far less ingest's received
    count) and detect of ingest (ingest's emitted less detect's received), at most, in the second half of the
    feed and over all of it.

    >>> s = [{"t": 10.0, "ingest_received": 900, "ingest_emitted": 900, "detect_received": 800},
    ...      {"t": 20.0, "ingest_received": 1950, "ingest_emitted": 1950, "detect_received": 1950}]
    >>> behind(s, 0.0, 30.0, 100.0, 2000)
    {'ingest_s': 0.5, 'detect_s': 0.0, 'ingest_all_s': 1.0, 'detect_all_s': 1.0}
    """
    out = {"ingest_s": 0.0, "detect_s": 0.0, "ingest_all_s": 0.0, "detect_all_s": 0.0}
    for s in samples:
        t = s["t"] - feed_start
        if not 0 <= t <= fed:
            continue
        due = min(total, rate * t)
        ingest = max(0.0, due - s["ingest_received"]) / rate
        detect = max(0.0, s["ingest_emitted"] - s["detect_received"]) / rate
        out["ingest_all_s"] = max(out["ingest_all_s"], ingest)
        out["detect_all_s"] = max(out["detect_all_s"], detect)
        if t >= fed / 2:
            out["ingest_s"] = max(out["ingest_s"], ingest)
            out["detect_s"] = max(out["detect_s"], detect)
    return out


def windows(latencies: array, created: array, began_wall_ms: float, window_s: float) -> list[dict]:
    """Latency summaries per ``window_s`` of the feed (by when the reading was sent); nan latencies skipped.

    >>> w = windows(array("d", [10, 20, float("nan"), 40]), array("d", [0, 500, 1000, 1500]), 0.0, 1.0)
    >>> [(x["from_s"], x["count"], x["p50"], x["max"]) for x in w]
    [(0.0, 2, 10.0, 20.0), (1.0, 1, 40.0, 40.0)]
    """
    grouped: dict[int, list[float]] = {}
    for latency, created_ms in zip(latencies, created):
        if not math.isnan(latency):
            # max 0: the first send's CreateTime (whole ms) can be a fraction of a ms before the schedule's start
            grouped.setdefault(int(max(0.0, created_ms - began_wall_ms) / 1000 // window_s), []).append(latency)
    return [{"from_s": k * window_s, **summary(v)} for k, v in sorted(grouped.items())]


# -- the run ------------------------------------------------------------------------------------------------------

def measure(args) -> dict:
    from elderwatch.localkafka import bootstrap_or_start
    from streams.metrics import identity_gaps, read_counts

    work = Path(tempfile.mkdtemp(prefix="elderwatch-bench-soak-"))
    rate = LIVE_RATE * args.speed
    phases = [Phase("soak", rate, args.minutes * 60)]
    total = phase_bounds(phases)[-1]
    print(f"work directory {work}; {total:,} readings at {rate:,.1f}/s for {args.minutes:g} min", flush=True)
    bootstrap, broker = (args.bootstrap, None) if args.bootstrap else bootstrap_or_start()
    load = OtherLoad()
    if broker is not None and broker.pid:
        load.own.add(broker.pid)
    try:
        fleet = build_fleet(args.households, args.anomalous, args.templates, args.days, work,
                            leads=leads_for(phases, args.households))
        expected = fleet.expected_warnings(total)
        print(f"expected warnings (offline monitors): {len(expected):,}", flush=True)
        run, quiet = run_live(bootstrap, fleet, phases, work, load, sample_seconds=args.sample_seconds,
                              drain_timeout=args.drain_timeout, quiet_timeout=args.quiet_timeout,
                              tag="soak")
        sent = run.sent
        latencies = array("d", [float("nan")]) * total
        counts = {"validated": 0, "unmatched": 0, "repeats": 0}

        def validated(_key, value, timestamp, _type) -> None:
            counts["validated"] += 1
            r = json.loads(value)
            n = fleet.locate(r["household_id"], r["meter"], epoch_ms(r["ts"]))
            if n is None or n >= total or math.isnan(sent.created[n]):
                counts["unmatched"] += 1
            elif not math.isnan(latencies[n]):
                counts["repeats"] += 1
            else:
                latencies[n] = timestamp - sent.created[n]

        read_topic(bootstrap, f"{run.app_id}.readings.validated", each=validated)
        anomaly_records = read_topic(bootstrap, f"{run.app_id}.anomalies")
    finally:
        if broker is not None:
            broker.stop()

    page = run.page
    ingest, detect = read_counts(page, "ingest"), read_counts(page, "detect")
    warnings, unmatched_warnings = match_warnings(anomaly_records, fleet, sent.created)
    received = {tuple(w["key"]) for w in warnings}
    feed_start = run.marks[0] if run.marks else 0.0
    fed = run.fed_s - feed_start
    mem = memory(run.samples, feed_start, fed, args.slope_limit)
    late = behind(run.samples, feed_start, fed, rate, total)
    gaps = identity_gaps(page)
    all_once = (ingest.get("received") == total and ingest.get("emitted") == total and detect.get("received") == total
                and not ingest.get("dead_lettered") and not ingest.get("duplicates")
                and not detect.get("dead_lettered") and not detect.get("failed")
                and counts["validated"] == total and not counts["repeats"] and not counts["unmatched"])
    verdict = {
        "memory_flat": mem["flat"],
        "kept_up": bool(run.drained and run.drained_s <= args.drain_limit and late["ingest_s"] <= args.behind_limit
                        and late["detect_s"] <= args.behind_limit),
        "identity": not gaps and all_once,
        "warnings_as_expected": received == set(expected) and len(warnings) == len(anomaly_records),
    }
    window_s = max(60.0, args.minutes * 60 / 6)
    return {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "report_only"},
        "machine": machine(), "kafka": broker.version if broker is not None else "external", "revision": revision(),
        "rate": rate, "readings": total, "households": fleet.households, "anomalous_households": fleet.anomalous(),
        "leads": leads_for(phases, args.households),
        "data_hours": total / len(("electricity", "water")) / fleet.households * 0.25,
        "ready_s": run.ready_s, "fed_s": fed, "drained_s": run.drained_s, "drained": run.drained, "quiet": quiet,
        "verdict": verdict, "memory": mem, "behind": late, "identity_gaps": gaps,
        "counts": {"ingest": ingest, "detect": detect, **counts},
        "warnings": {"received": len(anomaly_records), "matched": len(warnings), "unmatched": unmatched_warnings,
                     "expected": len(expected), "missing": len(set(expected) - received),
                     "unexpected": len(received - set(expected))},
        "latency": summary([x for x in latencies if not math.isnan(x)]),
        "window_s": window_s, "windows": windows(latencies, sent.created, sent.began_wall * 1000, window_s),
        "worker_log": worker_log_findings(run.log),
        "detect_step_ms": {k: v * 1000 for k, v in histogram_means(page, "elderwatch_detect_seconds", "phase").items()},
        "samples": [{**s, "t": s["t"] - feed_start} for s in run.samples],
    }


# -- the report ------------------------------------------------------------------------------------------------------

def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def command(a: dict) -> str:
    """
    >>> command({"minutes": 3.0, "households": 15000, "speed": 10.0, "quiet_timeout": 0.0})
    'python -m bench.bench_soak --minutes 3 --quiet-timeout 0'
    """
    parts = ["python -m bench.bench_soak"]
    for key, default in DEFAULTS.items():
        if key in a and a[key] != default:
            parts.append(f"--{key.replace('_', '-')} {a[key]:g}" if isinstance(a[key], float) else
                         f"--{key.replace('_', '-')} {a[key]}")
    return " ".join(parts)


def report(r: dict) -> str:
    a, v, m, b = r["args"], r["verdict"], r["memory"], r["behind"]
    ingest, detect = r["counts"]["ingest"], r["counts"]["detect"]
    full = a["minutes"] >= DEFAULTS["minutes"] and a["households"] == DEFAULTS["households"]
    status = "" if full else f"""
> **A short development run** ({a['minutes']:g} min, {a['households']:,} households), not the soak itself:
> `{command(DEFAULTS)}` (the defaults; ~35 min). Its second half is short, so its slope says little.
"""
    step = max(1, round(60 / max(a["sample_seconds"], 1e-9)))
    rows, shown = [], None
    for i, s in enumerate(r["samples"]):
        if i % step and i != len(r["samples"]) - 1:
            continue
        lag = sum(s["lag"].values())
        cores = "–" if shown is None else f"{(s['cpu_s'] - shown['cpu_s']) / max(s['t'] - shown['t'], 1e-9):.2f}"
        others = [x["others_cores"] for x in r["samples"]
                  if shown is not None and shown["t"] < x["t"] <= s["t"] and x["others_cores"] is not None]
        rows.append(f"| {round(s['t'] / 60, 1) + 0.0:.1f}{' (draining)' if s['t'] > r['fed_s'] + 1 else ''} | {_mib(s.get('rss_kib'))} | {s['ingest_received']:,.0f} "
                    f"| {s['detect_received']:,.0f} | {s['warnings']:,.0f} | {lag:,.0f} | {cores} "
                    f"| {f'{statistics.fmean(others):.2f}' if others else '–'} |")
        shown = s
    wrows = [f"| {w['from_s'] / 60:.0f}–{(w['from_s'] + r['window_s']) / 60:.0f} | {w['count']:,} "
             f"| {_ms(w['p50'])} | {_ms(w['p99'])} | {_ms(w['max'])} |" for w in r["windows"]]
    extra = ""
    if "minutes_10_15_mib" in m:
        change = 100 * (m["last_5_minutes_mib"] / m["minutes_10_15_mib"] - 1)
        extra = (f" For the reader (not the rule): mean of the last 5 minutes {m['last_5_minutes_mib']:,.1f} MiB "
                 f"against minutes 10–15 {m['minutes_10_15_mib']:,.1f} MiB ({change:+.1f} %).")
    log = r["worker_log"]
    log_lines = "\n".join(f"  - `{line}`" for line in log["lines"]) or "  - none"
    w = r["warnings"]
    quiet = r.get("quiet") or {}
    quiet_text = ("did not wait for other processes to go quiet" if quiet.get("quiet") is None else
                  f"waited {quiet['waited_s']:.0f} s for other processes to use under 0.1 core for 15 s"
                  + ("" if quiet["quiet"] else " (**still busy**, went on)"))
    others = [s["others_cores"] for s in r["samples"] if 0 <= s["t"] <= r["fed_s"] and s["others_cores"] is not None]
    return f"""# Soak: memory and keeping up over {a['minutes']:g} minutes

Command: `{command(a)}` (`--report-only` writes this file again from `soak.json`)
{status}
- Machine: {r['machine']}; Kafka {r['kafka']} (local broker, same machine); one worker, store `memory://`,
  {PARTITIONS} partitions. Code: {r['revision']}. The bench {quiet_text}; other processes then used
  {statistics.fmean(others) if others else float('nan'):.2f} cores on average during the feed (at most {max(others, default=float('nan')):.2f}).
- Fleet (`bench/live_feed.py`): {r['households']:,} households' state in the changelogs before the worker
  started (ready in {r['ready_s']:.1f} s), {r['anomalous_households']:,} with a {SURGE_KWH * 4:g} kW heater left on 2 h in
  every 6 h. Feed: {r['readings']:,} readings at {r['rate']:,.1f}/s ({a['speed']:g}x the live rate of 15,000 homes) for
  {r['fed_s'] / 60:.1f} min: each household's next 15 minutes of data at every visit, {r['data_hours']:.1f} h of data time.
- Sampled every {a['sample_seconds']:g} s: the worker's VmRSS (`/proc/<pid>/status`), its `/metrics`.

## Verdicts

| rule | result | numbers |
|---|---|---|
| memory flat: RSS slope over the second half < {m['limit_mib_per_min']:g} MiB/min | {_yes(v['memory_flat'])} | {m['slope_mib_per_min']:+.2f} MiB/min over {m['second_half_samples']} samples; RSS {m['first_mib']:,.0f} MiB at the start of the feed, {m['last_mib']:,.0f} MiB at its end, {m['max_mib']:,.0f} MiB at most |
| kept up: second half never more than {a['behind_limit']:g} s of input behind, drained within {a['drain_limit']:g} s | {_yes(v['kept_up'])} | ingest behind the feed at most {b['ingest_s']:.1f} s (whole run {b['ingest_all_s']:.1f} s), detect behind ingest {b['detect_s']:.1f} s ({b['detect_all_s']:.1f} s); {"drained" if r.get('drained', True) else "**not drained**"} {r['drained_s']:.1f} s after the last send |
| identity, every reading once | {_yes(v['identity'])} | {"; ".join(r['identity_gaps']) or "identities hold"}; ingest received {ingest.get('received', 0):,.0f} of {r['readings']:,}, emitted {ingest.get('emitted', 0):,.0f}, dead-lettered {ingest.get('dead_lettered', 0):,.0f}, duplicates {ingest.get('duplicates', 0):,.0f}; detect received {detect.get('received', 0):,.0f}, failed {detect.get('failed', 0):,.0f}; on `readings.validated` {r['counts']['validated']:,} ({r['counts']['repeats']} twice, {r['counts']['unmatched']} unmatched) |
| warnings as expected (offline monitors, same readings) | {_yes(v['warnings_as_expected'])} | {w['received']:,} on `anomalies`, {w['expected']:,} expected, {w['missing']} missing, {w['unexpected']} unexpected |
{extra}

## Along the run

Minutes from the start of the feed; counts are the worker's totals; lag is `elderwatch_consumer_lag`
summed over topics (faust commits every few seconds); worker and others' cores are means since the row
before. Detect agent's own time per reading (mean of `elderwatch_detect_seconds` by step, whole run):
{", ".join(f"{k} {v:.2f} ms" for k, v in sorted(r.get("detect_step_ms", {}).items())) or "–"}.

| minute | RSS | ingest received | detect received | warnings | lag | worker cores | others' cores |
|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Readings raw → `readings.validated` latency by when they were sent (ms; CreateTime of each, as in
`latency.md`), whole run: p50 {_ms(r['latency']['p50'])}, p99 {_ms(r['latency']['p99'])}, max {_ms(r['latency']['max'])}.

| minutes | readings | p50 | p99 | max |
|---|---:|---:|---:|---:|
{chr(10).join(wrows)}

Worker log: {log['error']} lines naming an error or exception, {log['warning']} warnings; the first distinct ones:
{log_lines}
"""


def _mib(kib: float | None) -> str:
    return "–" if not kib else f"{kib / 1024:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=DEFAULTS["minutes"], help="how long the feed runs")
    parser.add_argument("--households", type=int, default=DEFAULTS["households"])
    parser.add_argument("--speed", type=float, default=DEFAULTS["speed"],
                        help=f"times the live rate of 15,000 homes ({LIVE_RATE:.1f} readings/s)")
    parser.add_argument("--anomalous", type=float, default=DEFAULTS["anomalous"])
    parser.add_argument("--templates", type=int, default=DEFAULTS["templates"])
    parser.add_argument("--days", type=int, default=DEFAULTS["days"])
    parser.add_argument("--sample-seconds", type=float, default=DEFAULTS["sample_seconds"])
    parser.add_argument("--slope-limit", type=float, default=DEFAULTS["slope_limit"],
                        help="MiB/min: RSS over the second half must grow slower to be flat")
    parser.add_argument("--behind-limit", type=float, default=DEFAULTS["behind_limit"],
                        help="seconds of input a stage may fall behind in the second half")
    parser.add_argument("--drain-limit", type=float, default=DEFAULTS["drain_limit"],
                        help="seconds after the last send by which everything must be processed")
    parser.add_argument("--drain-timeout", type=float, default=1800.0,
                        help="seconds to wait after the feed for a worker that fell behind (then measured as it is)")
    parser.add_argument("--quiet-timeout", type=float, default=DEFAULTS["quiet_timeout"],
                        help="wait up to this long for other processes to go quiet before the worker starts (0: not)")
    parser.add_argument("--bootstrap", help="an existing broker (default: $KAFKA_BOOTSTRAP_SERVERS or a local one)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.md",
                        help="the report; the measurements go beside it as .json")
    parser.add_argument("--report-only", action="store_true", help="write the report again from the .json")
    args = parser.parse_args(argv)
    raw = args.out.with_suffix(".json")
    if not args.report_only:
        began = time.monotonic()
        results = measure(args)
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(results, indent=1) + "\n")
        print(f"measured in {time.monotonic() - began:.0f} s; verdicts {results['verdict']}")
    args.out.write_text(report(json.loads(raw.read_text())))
    print(f"written {args.out} and {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
