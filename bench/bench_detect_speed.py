"""Offline detect throughput on one core, and detector state per household.

    python -m bench.bench_detect_speed [--households 15000 --days 2 --seed 11 --long-data /tmp/sim500]

Two workloads through ``detectors.offline`` (``read_readings`` -> ``detect_readings``, one
:class:`HouseholdMonitor` per household in a dict: what ``elderwatch detect`` runs), each in one process:

* 15,000 simulated households x ``--days`` (generated into a temporary directory): the fleet size,
  but every household is in its first days, when the detectors do not score yet;
* 500 households x 90 days (``--long-data``, the quality benchmark's data set; generated if missing):
  steady state. Its time is also split by household age (days since the household's first reading).

Each file is first read with ``read_readings`` alone (the baseline, same run, same code path);
detector cost = (parse + detect) - parse.

State per household: ``len(monitor.dumps())`` (zlib-compressed JSON: the changelog record),
the uncompressed JSON, CPU time per ``dumps()`` and ``loads()``, and tracemalloc of a dict of 15,000 live monitors divided by 15,000 --
after the 15,000 x ``--days`` run, and for the 500 households' states after 30 and 90 days
(each state loaded 30 times to make 15,000 monitors).

Writes bench/results/detect_speed.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shlex
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_detect_quality import detectors_hash, machine  # noqa: E402
from detectors.monitor import HouseholdMonitor, MonitorConfig  # noqa: E402
from detectors.state import VERSION as STATE_VERSION  # noqa: E402
from detectors.offline import DetectStats, detect_readings, load_household_timezones, new_monitor, read_readings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
#: household age bands (days since its first reading) the long run's time is split by
BANDS = ((0, 14), (14, 30), (30, 10_000))
FLEET = 15_000


class Tap:
    """Passes rows through, timing each band of household age, and calls ``at_day`` once per household
    when its first reading at or after day ``snapshot_day`` arrives (before it is processed).

    The same tap runs in the parse-only pass, so its own cost is in the baseline and cancels out."""

    def __init__(self, snapshot_day: float | None = None, at_day=None) -> None:
        self.first: dict[str, object] = {}
        self.snapshot = None if snapshot_day is None else timedelta(days=snapshot_day)
        self.at_day = at_day
        self.snapped: set[str] = set()
        self.bounds = [timedelta(days=b) for _, b in BANDS]
        self.seconds = [0.0] * len(BANDS)
        self.rows = [0] * len(BANDS)
        self.excluded = 0.0  # time spent in at_day, not counted

    def __call__(self, rows: Iterable) -> Iterator:
        first, bounds, seconds, counts = self.first, self.bounds, self.seconds, self.rows
        snapshot, snapped = self.snapshot, self.snapped
        clock = time.process_time  # CPU time of this process: the machine may be shared
        band = None
        last = clock()
        for row in rows:
            hid, _, ts, _ = row
            f = first.get(hid)
            if f is None:
                f = first[hid] = ts
            age = ts - f
            if snapshot is not None and age >= snapshot and hid not in snapped:
                snapped.add(hid)
                t = clock()
                self.at_day(hid)
                spent = clock() - t
                self.excluded += spent
                last += spent  # not counted in any band either
            now = clock()
            if band is not None:  # the previous row's detect + this row's parse
                seconds[band] += now - last
            last = now
            band = 0 if age < bounds[0] else 1 if age < bounds[1] else 2
            counts[band] += 1
            yield row
        if band is not None:
            seconds[band] += clock() - last


def parse_only(path: Path, tap: Tap | None = None) -> tuple[int, float, float]:
    """Rows, CPU seconds, wall seconds of reading ``path`` with ``read_readings`` alone."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    n = 0
    rows = read_readings(path)
    for _ in (tap(rows) if tap else rows):
        n += 1
    return n, time.process_time() - cpu, time.perf_counter() - wall


def detect(path: Path, zones: dict[str, str], tap: Tap | None = None,
           monitors: dict[str, HouseholdMonitor] | None = None) -> tuple[DetectStats, float, float, dict[str, int]]:
    """``elderwatch detect``'s loop over ``path``; the monitors it creates are kept in ``monitors``."""
    monitors = {} if monitors is None else monitors

    def factory(hid: str, zone: str, config: MonitorConfig | None) -> HouseholdMonitor:
        m = monitors[hid] = new_monitor(hid, zone, config)
        return m

    stats = DetectStats()
    kinds: dict[str, int] = {}
    rows = read_readings(path)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for warning in detect_readings(tap(rows) if tap else rows, zones, monitor_factory=factory, stats=stats):
        kinds[warning.kind.value] = kinds.get(warning.kind.value, 0) + 1
    return stats, time.process_time() - cpu, time.perf_counter() - wall, kinds


def size_stats(values: list[int]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"n": len(values), "mean": float(a.mean()), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def serialisation_us(blobs: list[bytes], repeat: int = 3) -> dict:
    """CPU µs per ``dumps()`` (what the detect stage does for every reading) and per ``loads()`` (a cache
    miss), best of ``repeat`` passes over (at most 200 of) the states."""
    blobs = blobs[:200]
    monitors = [HouseholdMonitor.loads(b) for b in blobs]
    out = {}
    for name, call, items in (("dumps", lambda m: m.dumps(), monitors), ("loads", HouseholdMonitor.loads, blobs)):
        best = math.inf
        for _ in range(repeat):
            t = time.process_time()
            for item in items:
                call(item)
            best = min(best, time.process_time() - t)
        out[name] = 1e6 * best / len(items)
    return out


def state_sizes(states: dict[str, bytes]) -> dict:
    """Changelog record and its uncompressed JSON per household, dumps/loads time, and tracemalloc of 15,000 live
    monitors."""
    compressed = [len(b) for b in states.values()]
    uncompressed = [len(zlib.decompress(b)) for b in states.values()]  # the record's JSON text
    blobs = list(states.values())
    timing = serialisation_us(blobs)
    copies = -(-FLEET // len(blobs))
    gc.collect()
    tracemalloc.start()
    live = {}
    for c in range(copies):
        for i, b in enumerate(blobs):
            if len(live) < FLEET:
                live[f"hh-{c:03d}-{i:06d}"] = HouseholdMonitor.loads(b)
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = len(live)
    del live
    gc.collect()
    return {"households_measured": len(blobs), "compressed": size_stats(compressed), "json": size_stats(uncompressed),
            "dumps_us": timing["dumps"], "loads_us": timing["loads"],
            "live_monitors": n, "copies_of_each": copies, "tracemalloc_bytes": current,
            "tracemalloc_per_household": current / n}


def detector_breakdown(states: dict[str, bytes]) -> list[dict]:
    """Per detector (in the monitor's order): mean bytes of its state's JSON and tracemalloc of the live object."""
    monitors = [HouseholdMonitor.loads(b) for b in states.values()]
    out = []
    for i, detector in enumerate(monitors[0].detectors):
        blobs = [json.dumps(m.detectors[i].to_state(), separators=(",", ":")).encode() for m in monitors]
        gc.collect()
        tracemalloc.start()
        live = [type(detector).from_state(json.loads(b)) for b in blobs]
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del live
        out.append({"detector": type(detector).__name__, "json_mean": sum(map(len, blobs)) / len(blobs),
                    "memory_mean": current / len(blobs)})
    return out


def workload(name: str, path: Path, zones: dict[str, str], snapshot_day: float | None) -> dict:
    print(f"[{name}] parse only: {path}", file=sys.stderr, flush=True)
    parse_tap = Tap(snapshot_day, at_day=lambda hid: None)
    n_parse, parse_s, parse_wall = parse_only(path, parse_tap)
    parse_s -= parse_tap.excluded
    print(f"[{name}]   {n_parse:,} rows in {parse_s:.1f} s CPU ({parse_wall:.1f} s wall); parse + detect",
          file=sys.stderr, flush=True)
    monitors: dict[str, HouseholdMonitor] = {}
    snaps: dict[str, bytes] = {}
    detect_tap = Tap(snapshot_day, at_day=lambda hid: snaps.__setitem__(hid, monitors[hid].dumps()))
    stats, total_s, total_wall, kinds = detect(path, zones, detect_tap, monitors)
    total_s -= detect_tap.excluded
    print(f"[{name}]   {stats.readings:,} readings in {total_s:.1f} s CPU ({total_wall:.1f} s wall)",
          file=sys.stderr, flush=True)
    assert stats.readings == n_parse
    detect_s = total_s - parse_s
    bands = []
    for (lo, hi), rows, p_s, d_s in zip(BANDS, detect_tap.rows, parse_tap.seconds, detect_tap.seconds):
        if rows:
            bands.append({"days": [lo, hi], "readings": rows, "parse_s": p_s, "parse_detect_s": d_s,
                          "detector_readings_per_s": rows / (d_s - p_s) if d_s > p_s else None})
    return {"name": name, "path": str(path), "households": stats.households, "readings": stats.readings,
            "parse_s": parse_s, "parse_detect_s": total_s, "detect_s": detect_s, "parse_wall_s": parse_wall,
            "parse_detect_wall_s": total_wall,
            "readings_per_s": stats.readings / total_s, "parse_readings_per_s": n_parse / parse_s,
            "detector_readings_per_s": stats.readings / detect_s, "detector_us_per_reading": 1e6 * detect_s / stats.readings,
            "warnings": kinds, "bands": bands,
            "states": {**({f"day_{snapshot_day:g}": snaps} if snapshot_day is not None else {}),
                       "end": {hid: m.dumps() for hid, m in monitors.items()}}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--households", type=int, default=FLEET)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--long-data", type=Path, default=Path("/tmp/sim500"),
                    help="500 households x 90 days, seed 7 (generated here when missing)")
    ap.add_argument("--skip-long", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "detect_speed.md")
    args = ap.parse_args(argv)
    from elderwatch.simulator import simulate

    began = time.perf_counter()
    load = os.getloadavg()
    code = detectors_hash()
    results = []
    with tempfile.TemporaryDirectory(prefix="ew-detect-speed-") as tmp:
        print(f"simulating {args.households} households x {args.days} days", file=sys.stderr, flush=True)
        t = time.perf_counter()
        simulate(households=args.households, days=args.days, seed=args.seed, out_dir=Path(tmp), compress=True)
        sim_s = time.perf_counter() - t
        fleet = workload(f"{args.households:,} households x {args.days} days", Path(tmp) / "readings.csv.gz",
                         load_household_timezones(Path(tmp) / "households.csv"), None)
        fleet["simulate_s"] = sim_s
        results.append(fleet)
    states = {f"{args.households:,} households after {args.days} days": state_sizes(fleet["states"]["end"])}
    long, breakdown = None, []
    if not args.skip_long:
        data = args.long_data
        if not (data / "manifest.json").exists():
            print(f"simulating 500 households x 90 days (seed 7) into {data}", file=sys.stderr, flush=True)
            simulate(households=500, days=90, seed=7, out_dir=data, compress=True)
        manifest = json.loads((data / "manifest.json").read_text())
        long = workload(f"{manifest['households']} households x {manifest['days']} days", data / manifest["files"]["readings"],
                        load_household_timezones(data / "households.csv"), 30)
        results.append(long)
        states[f"{manifest['households']} households after 30 days"] = state_sizes(long["states"]["day_30"])
        states[f"{manifest['households']} households after {manifest['days']} days"] = state_sizes(long["states"]["end"])
        breakdown = detector_breakdown(long["states"]["end"])
    total_s = time.perf_counter() - began

    mach = machine()
    cmd = "python -m bench.bench_detect_speed " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    per_day = FLEET * 2 * 96
    lines = [
        "# Offline detect throughput and detector state",
        "",
        f"Command: `{cmd.strip()}` (also `make bench`)",
        "",
        f"- Machine: nproc {mach['nproc']}, {mach['cpu']}; Python {mach['python']} on {mach['os']}",
        f"- Detector code: `git hash-object detectors/*.py | sha1sum` = `{code['sha1'][:12]}` (HEAD {code['git_head']}"
        f"{', detectors/ has uncommitted changes' if code['uncommitted'] else ''}); default `MonitorConfig`.",
        "- One process (one core): `detectors.offline.read_readings` -> `detect_readings`, a `HouseholdMonitor` per "
        "household in a dict, as `elderwatch detect` runs (minus writing warnings). Input: simulator readings, "
        "gzip CSV, 15-minute intervals, electricity + water.",
        "- Baseline in the same run: the same file through `read_readings` alone (gunzip, CSV, validation, "
        "`datetime.fromisoformat`). Detector cost = (parse + detect) - parse.",
        f"- Times are the process's CPU time (`time.process_time`), so they are one core's work even when the "
        f"machine is shared (load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end); wall times beside them.",
        "",
        "## Throughput (one core)",
        "",
        "| workload | readings | parse only, CPU s (wall) | parse + detect, CPU s (wall) | readings/s end to end "
        "| readings/s parse only | readings/s detectors only | µs per reading, detectors | warnings |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        warn = ", ".join(f"{k} {v}" for k, v in sorted(r["warnings"].items())) or "none"
        lines.append(f"| {r['name']} | {r['readings']:,} | {r['parse_s']:.1f} ({r['parse_wall_s']:.1f}) "
                     f"| {r['parse_detect_s']:.1f} ({r['parse_detect_wall_s']:.1f}) "
                     f"| {r['readings_per_s']:,.0f} | {r['parse_readings_per_s']:,.0f} | {r['detector_readings_per_s']:,.0f} "
                     f"| {r['detector_us_per_reading']:.1f} | {warn} |")
    if long:
        lines += ["", f"The {long['name']} run by household age (days since its first reading; detectors start "
                  f"scoring at 14 days, welfare warnings after the {MonitorConfig().warmup_days:g}-day warm-up):", "",
                  "| household age | readings | detectors only, readings/s | µs per reading |", "|---|---:|---:|---:|"]
        for b in long["bands"]:
            lo, hi = b["days"]
            label = f"{lo}–{hi} days" if hi < 10_000 else f"≥ {lo} days"
            rate = b["detector_readings_per_s"]
            lines.append(f"| {label} | {b['readings']:,} | {rate:,.0f} | {1e6 / rate:.1f} |" if rate else
                         f"| {label} | {b['readings']:,} | - | - |")
    steady = long["bands"][-1]["detector_readings_per_s"] if long and long["bands"][-1]["detector_readings_per_s"] else \
        results[-1]["detector_readings_per_s"]
    lines += ["", f"At {FLEET:,} households, two meters, 15-minute readings: {per_day:,} readings per day "
              f"({per_day / 86400:.0f}/s on average). At the steady-state detector rate ({steady:,.0f} readings/s) "
              f"one core runs a day of the fleet in {per_day / steady / 60:.1f} min of detector time "
              f"(+ {per_day / results[0]['parse_readings_per_s'] / 60:.1f} min parsing a file).", "",
              "## Detector state per household", "",
              "- changelog record: `len(monitor.dumps())`, the zlib-compressed JSON state record (format version "
              f"{STATE_VERSION}, detectors/state.py) the detect stage stores;",
              "- JSON: the same record uncompressed;",
              "- dumps / loads: CPU µs per `monitor.dumps()` (the detect stage writes one for every reading) and per "
              "`HouseholdMonitor.loads()` (a cache miss), best of 3 passes over up to 200 of the states;",
              f"- in memory: tracemalloc of a dict of {FLEET:,} live monitors (made with `HouseholdMonitor.loads`, as "
              f"the detect stage restores them; a state measured on fewer households is loaded several times) "
              f"divided by {FLEET:,}.", "",
              "| state after | households measured | changelog record, bytes: mean / p95 / max "
              "| JSON, bytes: mean / p95 / max | dumps / loads, µs | in memory per household "
              "| × 15,000 (changelog / memory) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, s in states.items():
        c, p = s["compressed"], s["json"]
        lines.append(f"| {label} | {s['households_measured']:,} | {c['mean']:,.0f} / {c['p95']:,.0f} / {c['max']:,.0f} "
                     f"| {p['mean']:,.0f} / {p['p95']:,.0f} / {p['max']:,.0f} "
                     f"| {s['dumps_us']:,.0f} / {s['loads_us']:,.0f} "
                     f"| {s['tracemalloc_per_household'] / 1024:.1f} KiB "
                     f"| {c['mean'] * FLEET / 2**20:.0f} MiB / {s['tracemalloc_bytes'] * FLEET / s['live_monitors'] / 2**20:.0f} MiB |")
    if breakdown:
        lines += ["", f"By detector, {long['name']} states after {long['name'].split(' x ')[1]} (the rest of a "
                  f"monitor is its bookkeeping: per-meter clocks, ids, the open-episode set):", "",
                  "| detector | state JSON, bytes (mean) | in memory (mean) |", "|---|---:|---:|"]
        for d in breakdown:
            lines.append(f"| {d['detector']} | {d['json_mean']:,.0f} | {d['memory_mean'] / 1024:.1f} KiB |")
    lines += ["", f"Total bench time {total_s:.0f} s (including simulating {results[0]['name']}: "
              f"{results[0]['simulate_s']:.0f} s).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
