"""``elderwatch tune``: history in, a report and a detection config out, in one command.

    elderwatch tune --readings readings.csv.gz [--labels labels.jsonl] [--households households.csv] --out DIR

1. one pass of the detectors over the history at every level swept (:mod:`elderwatch.tuning.sweep`),
   households split over ``--processes``;
2. per level, the warnings scored as ``elderwatch evaluate`` scores them (with labels: recall, time to
   detect, false alarms; without: volumes);
3. one level per kind by the rule of :mod:`elderwatch.tuning.choose`;
4. ``DIR/sweep.csv`` (every setting), ``DIR/detection.toml`` (the choice, loadable by the worker and
   ``elderwatch detect``), ``DIR/report.html``, ``DIR/warnings.jsonl`` (the warnings at the choice).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tqdm import tqdm

from elderwatch.canonical_csv import count_rows
from elderwatch.evaluation.baselines import Span
from elderwatch.evaluation.files import load_households, load_labels, load_manifest, write_warnings
from elderwatch.evaluation.inputs import DEFAULT_WARMUP_DAYS, EvaluationInputs
from elderwatch.tuning.choose import (
    BUDGET,
    DEFAULT_LEVELS,
    RULE,
    TUNED_KINDS,
    choose,
    history_days,
    kind_point,
    local_day,
    same_kind_ttd,
    scored_after_warmup,
)
from schemas.detection import ConfigSource, DetectionConfig

SWEEP_COLUMNS = ["kind", "level", "warnings", "warnings_per_household_month", "false_alarms",
                 "false_alarms_per_household_month", "events", "detected", "recall", "ttd_median_h", "ttd_p90_h",
                 "tickets_per_day", "busiest_day", "busiest_day_tickets"]


def code_version() -> str:
    """The package version and a hash of the detectors' source: what produced the numbers."""
    root = Path(__file__).resolve().parents[2] / "detectors"
    digest = hashlib.sha1()
    for path in sorted(root.glob("*.py")):
        digest.update(path.read_bytes())
    try:
        from importlib.metadata import version

        package = version("elderwatch")
    except Exception:  # run from a checkout that was never installed
        package = "dev"
    return f"elderwatch {package} detectors {digest.hexdigest()[:12]}"


def parse_levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(sorted({float(v) for v in text.split(",") if v.strip()} | {1.0}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels: comma-separated numbers, got {text!r}") from None
    if not levels or not all(0.1 <= v <= 5.0 for v in levels):
        raise argparse.ArgumentTypeError("levels: at least one, each within 0.1-5.0")
    return levels


def parse_budget(text: str) -> dict[str, float]:
    out = dict(BUDGET)
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = item.partition("=")
        if kind not in BUDGET:
            raise argparse.ArgumentTypeError(f"budget: unknown kind {kind!r} (tuned: {', '.join(TUNED_KINDS)})")
        try:
            out[kind] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"budget: {item!r} is not kind=number") from None
    return out


def _inputs(args, result) -> EvaluationInputs:
    labels_path: Path | None = args.labels
    manifest_path = args.manifest or (labels_path.parent / "manifest.json" if labels_path else None)
    manifest = load_manifest(manifest_path) if manifest_path and manifest_path.exists() else None
    spans = {h: Span(*s) for h, s in result.spans.items()}
    labels = load_labels(labels_path) if labels_path else None
    if labels is not None and manifest is not None:
        warmup_end = manifest.warmup_end(args.warmup_days)
    else:
        days = DEFAULT_WARMUP_DAYS if args.warmup_days is None else args.warmup_days
        warmup_end = {h: s.first + timedelta(days=days) for h, s in spans.items()}
    return EvaluationInputs(labels=labels, spans=spans, timezones=dict(result.zones), warmup_end=warmup_end,
                            readings_rows=result.readings)


def _examples(args, inputs: EvaluationInputs, warnings, limit: int = 2) -> list[tuple[str, str]]:
    """Up to ``limit`` caught events and ``limit`` false alarms, with the household's readings around them."""
    from elderwatch.tuning import report
    from elderwatch.tuning.sweep import iter_household_rows

    caught, false = [], []
    events = defaultdict(list)
    for label in inputs.labels or []:
        if label.kind != "away":
            events[label.household_id].append(label)
    seen_households = set()
    for w in warnings:
        if not scored_after_warmup(inputs, w) or w.kind.value not in TUNED_KINDS or w.household_id in seen_households:
            continue
        match = next((e for e in events.get(w.household_id, ())
                      if e.start <= w.detected_at <= e.end + timedelta(hours=2)), None)
        if match is not None and len(caught) < limit:
            caught.append((w, match))
            seen_households.add(w.household_id)
        elif match is None and inputs.labels is not None and len(false) < limit:
            false.append((w, None))
            seen_households.add(w.household_id)
        elif inputs.labels is None and len(caught) < limit:
            caught.append((w, None))  # unlabelled: examples of warnings, neither caught nor false
            seen_households.add(w.household_id)
        if len(caught) >= limit and (len(false) >= limit or inputs.labels is None):
            break
    chosen = caught + false
    if not chosen:
        return []
    windows = {w.household_id: report.example_window(w) for w, _ in chosen}
    rows = defaultdict(list)
    for hid, meter, ts, value in iter_household_rows(args.readings, set(windows)):
        lo, hi = windows[hid]
        if lo <= ts <= hi:
            rows[hid].append((meter, ts, value))
    out = []
    for w, event in chosen:
        what = ("caught: " + event.kind if event is not None else
                ("false alarm" if inputs.labels is not None else "warning"))
        caption = f"{what} · {w.kind.value} warning for {w.household_id} at {w.detected_at:%Y-%m-%d %H:%M %z}"
        out.append((caption, report.example_png(w, inputs.timezones.get(w.household_id, "UTC"), rows[w.household_id],
                                                (event.start, event.end) if event is not None else None,
                                                f"{caption}: {w.summary}")))
    return out


def run_tune(args: argparse.Namespace) -> int:
    from elderwatch.tuning import report  # matplotlib: only when a report is made
    from elderwatch.tuning.sweep import sweep

    began = time.perf_counter()
    for given in (args.readings, args.labels, args.households, args.manifest):
        if given is not None and not given.is_file():
            print(f"elderwatch tune: error: {given}: no such file", file=sys.stderr)
            return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    zones = {}
    households_path = args.households or (args.labels.parent / "households.csv" if args.labels else None)
    if households_path is not None and households_path.exists():
        zones = {h.household_id: h.timezone for h in load_households(households_path)}
    total = count_rows(args.readings)
    print(f"elderwatch tune: {total:,} readings, {len(args.levels)} levels per kind, {args.processes} processes",
          file=sys.stderr)
    with tqdm(total=total, unit="rows", unit_scale=True, desc="sweep", file=sys.stderr,
              disable=args.quiet) as bar:
        def progress(rows: int) -> None:
            bar.update(max(rows - bar.n, 0))

        try:
            result = sweep(args.readings, args.levels, zones=zones, default_zone=args.timezone,
                           processes=args.processes, on_progress=progress)
        except (ValueError, OSError) as exc:  # SweepError: a bad row, an offset with no zone; no file
            bar.close()
            print(f"elderwatch tune: error: {exc}", file=sys.stderr)
            return 2
        bar.update(max(result.readings - bar.n, 0))
    swept = time.perf_counter()
    inputs = _inputs(args, result)
    days = history_days(inputs)
    reports = [inputs.evaluate(ws, name=f"{level:g}") for level, ws in zip(result.levels, result.warnings)]
    curves = {kind: [kind_point(kind, level, rep, ws, inputs, days)
                     for level, rep, ws in zip(result.levels, reports, result.warnings)] for kind in TUNED_KINDS}
    chosen = choose(curves, args.budget)
    # meter_offline (a data check) and decline (a slow trend) are not tuned: 1.0, always among the levels
    choice = {**chosen, "meter_offline": 1.0, "decline": 1.0}
    at_choice = result.at(choice)
    chosen_report = inputs.evaluate(at_choice, name="chosen")
    labelled = inputs.labels is not None

    # detection.toml
    created = datetime.now(timezone.utc).replace(microsecond=0)
    digest = hashlib.sha1(json.dumps([sorted(chosen.items()), str(args.readings), result.readings]).encode()).hexdigest()
    config = DetectionConfig(
        version=f"tune-{created:%Y%m%dT%H%M%SZ}-{digest[:6]}",
        sensitivity=dict(sorted(choice.items())),
        source=ConfigSource(readings=str(args.readings), labels=str(args.labels) if args.labels else None,
                            households=result.households, household_months=round(chosen_report.household_months, 2),
                            created_at=created.isoformat(), code_version=code_version(), rule=RULE))
    at_choice = [w.model_copy(update={"config_version": config.version}) for w in at_choice]  # as detect would
    (out / "detection.toml").write_text(config.to_toml(
        "written by `elderwatch tune`; load with ELDERWATCH_DETECTION_CONFIG or `elderwatch detect --detection-config`\n"
        "every kind is named: the warnings are the same whatever the built-in operating points become"),
        encoding="utf-8")

    # sweep.csv
    with open(out / "sweep.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWEEP_COLUMNS)
        writer.writeheader()
        for points in curves.values():
            for p in points:
                writer.writerow({k: ("" if v is None else v) for k, v in p.row().items()})
    write_warnings(out / "warnings.jsonl", at_choice)

    # report.html
    daily: dict[str, Counter] = {kind: Counter() for kind in TUNED_KINDS}
    for w in at_choice:
        if w.kind.value in daily and scored_after_warmup(inputs, w):
            daily[w.kind.value][local_day(inputs, w)] += 1
    per_day_total = Counter()
    for counts in daily.values():
        per_day_total.update(counts)
    busiest = max(per_day_total.items(), key=lambda item: item[1], default=(None, 0))
    welfare = chosen_report.welfare
    overall = [("welfare warnings per household-month", f"{welfare.warnings_per_household_month or 0:.2f}"),
               ("tickets per day (all tuned kinds)", f"{sum(per_day_total.values()) / days:.2f}" if days else "–"),
               ("busiest day", f"{busiest[0] or '–'}: {busiest[1]}")]
    if labelled:
        overall.insert(0, ("false alarms per household-month (welfare)",
                           f"{welfare.false_alarms_per_household_month or 0:.2f}"))
        for kind in TUNED_KINDS:
            e = chosen_report.event(kind)
            if e.events:
                overall.append((f"{kind}: detected by any warning", f"{e.detected}/{e.events} "
                                f"({(e.recall or 0):.0%}), median {report.fmt(e.ttd_median_h, '{:.1f} h')}"))
    if chosen_report.household_months < 100:
        overall.append(("caution", f"only {chosen_report.household_months:.0f} household-months: one alarm is "
                                   f"{1 / max(chosen_report.household_months, 1e-9):.3f} per household-month, so the "
                                   "choice rests on a handful of alarms; tune on more history before going live"))
    facts = [("readings", f"{args.readings} ({result.readings:,} rows)"),
             ("labels", str(args.labels) if labelled else "none: volumes only"),
             ("households", f"{result.households:,}; {chosen_report.household_months:.1f} household-months after "
                            f"the warm-up; {days:.0f} days"),
             ("levels swept", ", ".join(f"{v:g}" for v in result.levels)),
             ("config written", f"detection.toml, version {config.version}"),
             ("code", code_version()), ("made", created.isoformat())]
    ttd = {kind: same_kind_ttd(chosen_report, kind) for kind in TUNED_KINDS} if labelled else {}
    page = report.render(
        title="elderwatch tune: what each setting would have done", facts=facts, curves=curves, chosen=chosen,
        budget=args.budget, labelled=labelled, overall=overall,
        curves_img=report.curves_png(curves, chosen, labelled), ttd_img=report.ttd_png(ttd) if labelled else None,
        tickets_img=report.tickets_png(daily), examples=_examples(args, inputs, at_choice))
    (out / "report.html").write_text(page, encoding="utf-8")
    finished = time.perf_counter()
    summary = {"readings": result.readings, "households": result.households, "levels": list(result.levels),
               "chosen": chosen, "config_version": config.version,
               "welfare_warnings_per_household_month": round(welfare.warnings_per_household_month or 0.0, 3),
               "false_alarms_per_household_month": (round(welfare.false_alarms_per_household_month or 0.0, 3)
                                                    if labelled else None),
               "sweep_s": round(swept - began, 1), "total_s": round(finished - began, 1),
               "readings_per_s": round(result.readings / max(result.wall_s, 1e-9)),
               "out": {name: str(out / name) for name in ("report.html", "detection.toml", "sweep.csv", "warnings.jsonl")}}
    print(f"elderwatch tune: {result.readings:,} readings in {result.wall_s:.0f} s "
          f"({summary['readings_per_s']:,}/s over {args.processes} processes); chosen "
          + ", ".join(f"{k} {v:g}" for k, v in chosen.items()) + f"; report {out / 'report.html'}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="replay history through the detectors at every setting: report.html, "
                                    "detection.toml, sweep.csv")
    p.add_argument("--readings", type=Path, required=True, help="canonical readings CSV (.gz ok)")
    p.add_argument("--labels", type=Path, help="labels.jsonl (households.csv, manifest.json looked for beside it); "
                                               "without: volumes only")
    p.add_argument("--households", type=Path, help="households.csv: each household's time zone")
    p.add_argument("--manifest", type=Path, help="the simulator's manifest.json (the warm-up of labelled data)")
    p.add_argument("--timezone", default=None, help="zone of households not in --households (default: from each "
                                                    "household's readings' UTC offset, as `elderwatch detect`)")
    p.add_argument("--out", type=Path, required=True, help="directory for report.html, detection.toml, sweep.csv")
    p.add_argument("--levels", type=parse_levels, default=DEFAULT_LEVELS,
                   help="sensitivities to sweep, comma-separated; 1.0 is always added (default "
                        + ",".join(f"{v:g}" for v in DEFAULT_LEVELS) + ")")
    p.add_argument("--budget", type=parse_budget, default=dict(BUDGET),
                   help="alarms per household-month each kind may spend above its floor, e.g. surge=0.05 (default "
                        + ",".join(f"{k}={v:g}" for k, v in BUDGET.items()) + ")")
    p.add_argument("--warmup-days", type=float, default=None,
                   help="scored from this many days (default: the manifest's with labels, else 28 from each "
                        "household's first reading)")
    p.add_argument("--processes", type=int, default=2, help="worker processes (households split between them)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda args: run_tune(args))


__all__ = ["add_parser", "code_version", "run_tune"]
