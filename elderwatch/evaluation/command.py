"""``elderwatch evaluate``: load, score, print the table, optionally write the numbers as JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from elderwatch.evaluation.baselines import BASELINE_METERS, BASELINES
from elderwatch.evaluation.files import load_warnings
from elderwatch.evaluation.inputs import load_inputs
from elderwatch.evaluation.report import format_reports


def run_evaluate(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(([args.baseline] if args.baseline else []) + (list(BASELINES) if args.baselines else [])))
    if args.warnings is None and not names:
        print("elderwatch evaluate: give --warnings, --baseline NAME or --baselines", file=sys.stderr)
        return 2
    began = time.perf_counter()
    try:
        data = load_inputs(labels=args.labels, readings=args.readings, households=args.households,
                           manifest=args.manifest, warmup_days=args.warmup_days, baselines=names)
    except (ValueError, FileNotFoundError) as exc:
        print(f"elderwatch evaluate: {exc}", file=sys.stderr)
        return 2
    sources = []
    if args.warnings is not None:
        sources.append(("detector", load_warnings(args.warnings)))
    sources += [(n, data.baseline_warnings[n]) for n in names]
    scoring_began = time.perf_counter()
    reports = [data.evaluate(warnings, name=name) for name, warnings in sources]
    finished = time.perf_counter()
    print(format_reports(reports))
    for name in names:
        meter = BASELINE_METERS[name].value
        if not data.readings_meters.get(meter):
            print(f"({name} reads {meter}, which this file does not have: it cannot fire here)")
    timing = {"total_s": round(finished - began, 2), "readings_s": round(data.readings_seconds, 2),
              "readings_rows": data.readings_rows, "scoring_s": round(finished - scoring_began, 2)}
    print(f"\n({timing['readings_rows']:,} readings in {timing['readings_s']} s, scoring {timing['scoring_s']} s, "
          f"total {timing['total_s']} s)", file=sys.stderr)
    if args.json:
        warmup = (data.warmup_end.isoformat() if not isinstance(data.warmup_end, dict)
                  else f"{args.warmup_days or 28} days from each household's first reading")
        out = {"inputs": {**data.sources, **({"warnings": str(args.warnings)} if args.warnings else {})},
               "warmup_end": warmup, "timing": timing,
               "reports": {r.name: r.model_dump(mode="json") for r in reports}}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0
