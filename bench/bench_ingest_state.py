"""Ingest state per household at steady state: what the table and its changelog hold.

Runs 15-minute readings (both meters) through the ingest rules for longer than the
de-duplication horizon, then measures each series' state: its changelog record (JSON bytes) and
its in-memory size (tracemalloc), and extrapolates to 15,000 households.

    python -m bench.bench_ingest_state [--households 1000] [--out bench/results/ingest_state.md]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

from streams.ingest import IngestLimits, SeriesState, accept_reading
from schemas.readings import MeterReading

REPO = Path(__file__).resolve().parents[1]


def steady_states(households: int, hours: float) -> dict[tuple[str, str], SeriesState]:
    limits = IngestLimits()
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    states: dict[tuple[str, str], SeriesState] = {}
    for h in range(households):
        for meter in ("electricity", "water"):
            state = states.setdefault((f"hh-{h:06d}", meter), SeriesState())
            for i in range(int(hours * 4)):
                reading = MeterReading(household_id=f"hh-{h:06d}", meter=meter,
                                       ts=start + timedelta(minutes=15 * (i + 1)), value=0.1)
                accept_reading(state, reading, limits)
    return states


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest_state.md")
    args = parser.parse_args(argv)
    horizon_h = IngestLimits().dedup_horizon.total_seconds() / 3600
    hours = horizon_h + 24  # past the horizon, so pruning is in force

    states = steady_states(args.households, hours)
    # What Faust's memory store keeps per key is the JSON value, decoded: measure exactly that.
    gc.collect()
    tracemalloc.start()
    table = {f"{hh}/{meter}": json.loads(json.dumps(state.to_json())) for (hh, meter), state in states.items()}
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(table) == 2 * args.households
    record_bytes = [len(json.dumps(s.to_json()).encode()) for s in states.values()]
    per_household_mem = current / args.households
    per_household_record = 2 * sum(record_bytes) / len(record_bytes)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    args.out.write_text(f"""# Ingest state per household

Command: `python -m bench.bench_ingest_state --households {args.households}` (also `make bench`)

- Machine: {os.cpu_count()} CPUs, {cpu}; Python {platform.python_version()}
- Two series per household (electricity, water), 15-minute readings for {hours:.0f} h
  (de-duplication horizon {horizon_h:.0f} h), so each series holds a full horizon of timestamps.

| measure | per household | x 15,000 households |
|---|---:|---:|
| in-memory table values incl. keys (tracemalloc; what Faust's memory store holds) | {per_household_mem / 1024:.1f} KiB | {per_household_mem * 15000 / 2**20:.0f} MiB |
| changelog record, JSON (both series, latest value after compaction) | {per_household_record / 1024:.2f} KiB | {per_household_record * 15000 / 2**20:.0f} MiB |

Each reading rewrites its series' record, so the changelog carries about
{per_household_record / 2 / 1024:.2f} KiB per reading before compaction.
The state is the horizon's timestamps stored as runs of equal steps: a meter reading on a regular
grid keeps one run whatever the horizon; irregular read times (DAIAD-like) add a run per irregular step,
so their state grows with `ELDERWATCH_DEDUP_HORIZON_H`.
""")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
