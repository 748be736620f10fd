"""Benchmark of the household simulator: wall time and rows/s.

    python -m bench.bench_simulate                      # 15,000 x 1 day and 500 x 90 days
    python bench/bench_simulate.py --households 15000 --days 1 --long-households 500 --long-days 90

Writes bench/results/simulate.md (command, machine, numbers).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elderwatch.simulator import simulate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "simulate.md"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(households: int, days: int, seed: int, compress: bool, workers: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="ew-bench-") as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        s = simulate(households=households, days=days, seed=seed, out_dir=out, compress=compress, workers=workers)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in out.iterdir())
    return {
        "households": households,
        "days": days,
        "rows": s.rows,
        "wall_s": wall,
        "rows_per_s": s.rows / wall,
        "mb": size / 1e6,
        "labels": sum(v for k, v in s.labels_by_kind.items() if k != "away"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=15000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--long-households", type=int, default=500)
    ap.add_argument("--long-days", type=int, default=90)
    ap.add_argument("--skip-long", action="store_true", help="only the first configuration")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compress", action="store_true")
    ap.add_argument("--workers", type=int, default=None, help="default: min(2, CPUs)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="markdown results file")
    args = ap.parse_args(argv)

    configs = [(args.households, args.days)]
    if not args.skip_long:
        configs.append((args.long_households, args.long_days))
    results = []
    for h, d in configs:
        r = _run(h, d, args.seed, args.compress, args.workers)
        results.append(r)
        print(
            f"{h} households x {d} days: {r['rows']:,} rows in {r['wall_s']:.2f} s "
            f"= {r['rows_per_s']:,.0f} rows/s, {r['mb']:.1f} MB written",
            flush=True,
        )

    cmd = "python -m bench.bench_simulate " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    lines = [
        "# Simulator benchmark",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"- Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}), {_cpu_model()}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- workers: {args.workers or 'default (min(2, CPUs))'}, compress: {args.compress}, seed: {args.seed}",
        "- Wall time includes generating every household and writing readings.csv, labels.jsonl, households.csv, manifest.json.",
        "",
        "| households | days | rows | wall time (s) | rows/s | output (MB) | anomaly labels |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['households']:,} | {r['days']} | {r['rows']:,} | {r['wall_s']:.2f} | {r['rows_per_s']:,.0f} "
            f"| {r['mb']:.1f} | {r['labels']:,} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
