"""``elderwatch`` command line: one subcommand per job, each with ``--help``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path


def _cmd_worker(args: argparse.Namespace) -> int:
    from elderwatch.settings import Settings
    from elderwatch.worker import run_worker
    from schemas.detection import DetectionConfig, DetectionConfigError

    settings = Settings()
    if settings.detection_config is not None:  # refused before anything starts, in one line
        try:
            DetectionConfig.load(settings.detection_config)
        except DetectionConfigError as exc:
            print(f"elderwatch worker: bad ELDERWATCH_DETECTION_CONFIG: {exc}", file=sys.stderr)
            return 2
    problem = _unusable_people_files(settings)
    if problem:
        print(f"elderwatch worker: {problem}", file=sys.stderr)
        return 2
    run_worker(settings, loglevel=args.loglevel)
    return 0


def _unusable_people_files(settings) -> str | None:
    """What is wrong with the users or channels file, in one line; None when both can be used (or are unset)."""
    from dispatch.channels.routing import ChannelRoutes, ChannelsFileError
    from elderwatch.users import UserStore, UsersError

    if settings.users_file is not None:
        try:
            UserStore(settings.users_file).users()
        except UsersError as exc:
            return f"bad ELDERWATCH_USERS_FILE: {exc}"
    try:
        ChannelRoutes.load(settings.channels_file, webhook_url=settings.webhook_url, public_url=settings.public_url,
                           timeout_s=settings.webhook_timeout_s)
    except ChannelsFileError as exc:
        return f"bad ELDERWATCH_CHANNELS_FILE or ELDERWATCH_WEBHOOK_URL: {exc}"
    return None


def _cmd_topics(args: argparse.Namespace) -> int:
    from elderwatch.settings import Settings
    from elderwatch.worker import ensure_topics
    from streams.topics import ALL_TOPICS, full_name

    settings = Settings()
    if args.action == "create":
        ensure_topics(settings)
    for spec in ALL_TOPICS:
        print(f"{full_name(spec, settings.topic_prefix):28} key={spec.key:34} {spec.description}")
    return 0


def _cmd_feed(args: argparse.Namespace) -> int:
    from elderwatch.feed import FeedError, canonical_messages, daiad_messages, feed, parse_speed, with_mess
    from elderwatch.settings import Settings
    from streams.topics import READINGS_RAW, full_name

    settings = Settings()
    speed = parse_speed(args.speed)
    messages = daiad_messages(args.file, args.timezone) if args.format == "daiad" else canonical_messages(args.file)
    if args.mess:
        messages = with_mess(messages, fraction=args.mess)
    topic = args.topic or full_name(READINGS_RAW, settings.topic_prefix)
    try:
        sent = feed(messages, bootstrap=settings.kafka_bootstrap_servers, topic=topic, speed=speed,
                    limit=args.limit, progress=not args.quiet)
    except FeedError as exc:
        print(f"feed: {exc}; {exc.acknowledged} reached {topic}", file=sys.stderr)
        return 1
    print(f"sent {sent} messages to {topic}", file=sys.stderr)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from elderwatch.replay import Namespace, cleanup, run_replay
    from elderwatch.settings import Settings
    from schemas.detection import DetectionConfig, DetectionConfigError

    settings = Settings()
    try:
        ns = Namespace.of(args.namespace, settings)
        if args.detection_config is not None:
            DetectionConfig.load(args.detection_config)
    except (ValueError, DetectionConfigError) as exc:
        print(f"elderwatch replay: {exc}", file=sys.stderr)
        return 2
    if args.cleanup:
        deleted = cleanup(ns, settings.kafka_bootstrap_servers)
        print(json.dumps({"namespace": ns.name, "deleted_topics": deleted, "removed": str(ns.data_dir)}))
        return 0
    if args.file is None or not args.file.exists():
        print(f"elderwatch replay: {args.file or 'FILE'}: no such file", file=sys.stderr)
        return 2
    return run_replay(file=args.file, namespace=args.namespace, speed=args.speed, households=args.households,
                      households_file=args.households_file, detection_config=args.detection_config,
                      web_port=args.web_port, wait_s=args.wait, progress=not args.quiet, settings=settings)


def _cmd_import(args: argparse.Namespace) -> int:
    from elderwatch.importers.daiad import import_daiad

    summary = import_daiad(args.file, args.out, zone=args.timezone, rejects=args.rejects)
    print(json.dumps({"rows": summary.rows, "readings_written": summary.readings_written, **summary.counts,
                      "rejects": str(summary.rejects_path) if summary.rejects_path else None}))
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from detectors.monitor import MonitorConfig
    from detectors.offline import DetectStats, MalformedFile, check_timezone, detect_file, write_warnings
    from schemas.detection import DetectionConfig, DetectionConfigError

    stats = DetectStats()
    try:
        config = (MonitorConfig.from_detection(DetectionConfig.load(args.detection_config))
                  if args.detection_config else None)
    except DetectionConfigError as exc:
        print(f"elderwatch detect: bad detection config: {exc}", file=sys.stderr)
        return 2
    try:
        if args.timezone is not None:  # None: each household's zone inferred from its readings' offsets
            check_timezone(args.timezone)
        write_warnings(detect_file(args.readings, args.households, default_timezone=args.timezone, stats=stats,
                                   config=config), args.out)
    except (MalformedFile, ValueError, OSError) as exc:  # ZoneInferenceError is a ValueError
        print(f"elderwatch detect: error: {exc}", file=sys.stderr)
        return 2
    notice = stats.inference_notice()
    if notice:
        print(notice, file=sys.stderr)
    print(json.dumps({**stats.summary(), "out": str(args.out)}))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from elderwatch.evaluation.command import run_evaluate

    return run_evaluate(args)


def _cmd_schema(args: argparse.Namespace) -> int:
    from schemas.export import export_json_schemas

    for path in export_json_schemas(args.dir):
        print(path)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from elderwatch.simulator import simulate

    summary = simulate(households=args.households, days=args.days, seed=args.seed, out_dir=args.out,
                       start=args.start, timezone=args.timezone, anomaly_rate=args.anomaly_rate,
                       compress=args.compress, warmup_days=args.warmup_days, family=args.family,
                       profile=args.profile, meters=args.meters)
    print(json.dumps({"out_dir": str(summary.out_dir), "households": summary.households, "days": summary.days,
                      "rows": summary.rows, "labels_by_kind": summary.labels_by_kind}))
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    from elderwatch.localkafka import main as broker_main

    return broker_main(args.broker_args, prog="elderwatch broker") or 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from elderwatch.demo import run_demo

    return run_demo(seconds=args.seconds, households=args.households, days=args.days, speed=args.speed)


def _cmd_roster(args: argparse.Namespace) -> int:
    from elderwatch.settings import Settings
    from streams.topics import HOUSEHOLDS_ROSTER, full_name

    settings = Settings()
    topic = full_name(HOUSEHOLDS_ROSTER, settings.topic_prefix)
    if args.action == "load":
        return _roster_load(args.file, settings.kafka_bootstrap_servers, topic)
    if args.action == "export":
        return _roster_export(args.out, settings.kafka_bootstrap_servers, topic, args.timeout)
    return _roster_show(args.household, settings.kafka_bootstrap_servers, topic, args.timeout)


def _roster_export(out: Path | None, bootstrap: str, topic: str, timeout: float) -> int:
    from elderwatch.topic_reader import read_to_end
    from elderwatch.roster import current_roster, write_households

    try:
        records = read_to_end(bootstrap, [topic], timeout_s=timeout)
    except TimeoutError as exc:
        print(f"elderwatch roster export: error: {exc}", file=sys.stderr)
        return 2
    entries = current_roster(records)
    households = [entries[key] for key in sorted(entries)]
    if out is None:
        write_households(households, sys.stdout)
        return 0
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            write_households(households, handle)
        tmp.replace(out)
    except OSError as exc:
        print(f"elderwatch roster export: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(households)} households from {topic} written to {out}", file=sys.stderr)
    return 0


def _roster_load(path: Path, bootstrap: str, topic: str) -> int:
    from kafka.errors import KafkaError

    from elderwatch.roster import read_households_file, send_households

    try:
        households, bad = read_households_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"elderwatch roster load: error: {exc}", file=sys.stderr)
        return 2
    for row in bad:
        print(f"{path} {row} (skipped)", file=sys.stderr)
    try:
        sent = send_households(households, bootstrap=bootstrap, topic=topic) if households else 0
    except KafkaError as exc:
        print(f"elderwatch roster load: error sending to {topic}: {exc!r}", file=sys.stderr)
        return 2
    print(f"{sent} households sent to {topic}" + (f"; {len(bad)} bad rows skipped" if bad else ""))
    return 1 if bad else 0


def _roster_show(household_id: str, bootstrap: str, topic: str, timeout: float) -> int:
    from elderwatch.topic_reader import read_to_end
    from elderwatch.roster import roster_entries

    try:
        records = read_to_end(bootstrap, [topic], timeout_s=timeout)
    except TimeoutError as exc:
        print(f"elderwatch roster show: error: {exc}", file=sys.stderr)
        return 2
    entry = None
    for key, household in roster_entries(records):
        if key == household_id:
            entry = household  # latest wins; a tombstone removes
    if entry is None:
        print(f"{household_id} is not on the roster ({topic}): its tickets go to the duty desk", file=sys.stderr)
        return 1
    print(entry.model_dump_json(indent=2))
    return 0


def _cmd_tickets(args: argparse.Namespace) -> int:
    import json

    from dispatch.audit import history_lines, loop_report, rebuild
    from elderwatch.topic_reader import read_acks
    from elderwatch.settings import Settings

    settings = Settings()
    try:
        acks, unreadable = read_acks(settings.kafka_bootstrap_servers, settings.topic_prefix, timeout_s=args.timeout)
    except TimeoutError as exc:
        print(f"elderwatch tickets audit: error: {exc}", file=sys.stderr)
        return 2
    audit = rebuild(acks, settings.ticket_policy())
    problems = unreadable + audit.problems
    if args.ticket:
        lines = history_lines(audit, args.ticket)
        if not lines:
            print(f"no acks for ticket {args.ticket}", file=sys.stderr)
            return 1
        print("\n".join(lines))
        problems = [p for p in audit.problems if p.startswith(f"ticket {args.ticket}:")
                    or p.startswith(f"ticket {args.ticket} ")]
    else:
        print(f"{len(audit.tickets)} tickets from {len(acks)} acks")
        for state, n in audit.state_counts().items():
            print(f"  {state:<18} {n}")
        print("loop: " + json.dumps(loop_report(audit), indent=2))
    print(f"problems: {len(problems)}" + "".join(f"\n  {p}" for p in problems))
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elderwatch", description="elderwatch: meter readings in, welfare tickets out. Each subcommand has --help.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("worker", help="run the streaming worker (ingest) against the configured Kafka")
    p.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("topics", help="list the topics, or create them with their partition counts")
    p.add_argument("action", choices=["list", "create"])
    p.set_defaults(func=_cmd_topics)

    p = sub.add_parser("feed", help="stream a readings file into readings.raw")
    p.add_argument("file", type=Path, help="canonical CSV (household_id,meter,ts,value; .gz ok) or a DAIAD file")
    p.add_argument("--format", choices=["canonical", "daiad"], default="canonical")
    p.add_argument("--speed", default="max", help="replay speed: 1x real time, 60x, or max (default)")
    p.add_argument("--limit", type=int, help="stop after this many messages")
    p.add_argument("--topic", help="override the target topic (default: readings.raw)")
    p.add_argument("--timezone", default="Europe/Madrid", help="zone of DAIAD's local timestamps")
    p.add_argument("--mess", type=float, default=0.0, metavar="FRACTION",
                   help="add this fraction of duplicates and garbage, to see them handled (e.g. 0.03)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_feed)

    p = sub.add_parser("import", help="convert a utility's file format to canonical CSV")
    p.add_argument("format", choices=["daiad"])
    p.add_argument("file", type=Path)
    p.add_argument("--out", type=Path, required=True, help="canonical CSV to write (.gz compresses)")
    p.add_argument("--rejects", type=Path, help="JSON lines of rejected rows with reasons")
    p.add_argument("--timezone", default="Europe/Madrid", help="zone of the file's local timestamps")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("detect", help="run the detectors over a readings file, offline (same code as the detect stage)")
    p.add_argument("--readings", type=Path, required=True, help="canonical CSV (household_id,meter,ts,value; .gz ok)")
    p.add_argument("--households", type=Path, help="households.csv: each household's timezone")
    p.add_argument("--timezone", default=None,
                   help="zone of households not in --households (default: inferred from each household's readings' "
                        "UTC offset, +08:00 -> Etc/GMT-8, said on stderr; several offsets in a household is an error)")
    p.add_argument("--detection-config", type=Path, default=None,
                   help="detection.toml (as `elderwatch tune` writes it): sensitivities per kind, warm-up; its version "
                        "is recorded on every warning. Default: the built-in operating points")
    p.add_argument("--out", type=Path, required=True, help="warnings, one AnomalyWarning JSON per line")
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("schema", help="wire formats")
    p.add_argument("action", choices=["export"])
    p.add_argument("dir", type=Path, help="directory to write JSON Schema files into")
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("simulate", help="generate simulated elderly households with labelled anomalies")
    p.add_argument("--households", type=int, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--start", type=date.fromisoformat, default=None,
                   help="first day (YYYY-MM-DD; default 2026-01-05, with --family city 2026-10-01)")
    p.add_argument("--timezone", default=None, help="IANA zone (default Europe/London, with --family city Asia/Shanghai)")
    p.add_argument("--family", choices=["classic", "city"], default="classic",
                   help="classic: UK-like homes; city: elderly living alone in a Chinese city without central heating")
    p.add_argument("--profile", choices=["homebound", "active", "traveller", "mixed"], default=None,
                   help="city only: who lives there (default mixed: a third each)")
    p.add_argument("--meters", choices=["both", "electricity", "water", "mixed"], default=None,
                   help="city only: meters per home (default both; mixed: 50%% both, 35%% electricity, 15%% water)")
    p.add_argument("--anomaly-rate", type=float, default=1.0, help="scales how many anomalies are injected (0 = none)")
    p.add_argument("--warmup-days", type=int, default=28, help="no anomalies in the first days")
    p.add_argument("--compress", action="store_true", help="write readings.csv.gz")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("evaluate", help="score warnings against labels; fixed-rule baselines kizuki, shanghai, seoul")
    p.add_argument("--labels", type=Path, help="labels.jsonl (households.csv and manifest.json are looked for beside it); "
                                               "without it: unlabelled data, warnings per household-month")
    p.add_argument("--warnings", type=Path, help="detector warnings, JSON lines of AnomalyWarning")
    p.add_argument("--readings", type=Path, help="canonical readings CSV (.gz ok): household spans, and the baselines' input")
    p.add_argument("--households", type=Path, help="households.csv (time zones for the day/night split)")
    p.add_argument("--manifest", type=Path, help="the simulator's manifest.json (warm-up, spans without --readings)")
    p.add_argument("--baseline", choices=["kizuki", "shanghai", "seoul"], help="score this fixed rule (run on --readings)")
    p.add_argument("--baselines", action="store_true", help="score all three fixed rules next to the warnings")
    p.add_argument("--json", type=Path, help="write every number as JSON here")
    p.add_argument("--warmup-days", type=float, help="warm-up (default: the manifest's; 28 days from each household's "
                                                     "first reading for unlabelled data)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("replay", help="history through the live pipeline in its own topics and consumer groups "
                                      "(never the live tickets); Ctrl-C stops, the same command resumes")
    p.add_argument("file", type=Path, nargs="?", help="canonical CSV (household_id,meter,ts,value; .gz ok)")
    p.add_argument("--namespace", required=True, help="name of the replay: its topics are <prefix>replay.NAME.*")
    p.add_argument("--speed", default="max", help="data time per wall time: 100x, 1x, ... or max (default)")
    p.add_argument("--households", type=int, default=None, help="only the first N households of the file")
    p.add_argument("--households-file", type=Path, default=None,
                   help="households.csv for the replay's roster and zones (default: the one beside FILE)")
    p.add_argument("--detection-config", type=Path, default=None, help="detection.toml for the replay's worker")
    p.add_argument("--web-port", type=int, default=None, help="the replay worker's staff API and metrics (default: free)")
    p.add_argument("--wait", type=float, default=600.0, help="seconds to wait for detection to catch up at the end")
    p.add_argument("--cleanup", action="store_true", help="delete the namespace's topics and data, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_replay)

    from elderwatch.tuning.command import add_parser as add_tune_parser

    add_tune_parser(sub)

    from elderwatch.users_command import add_parser as add_users_parser

    add_users_parser(sub)

    p = sub.add_parser("broker", help="local Apache Kafka for development: fetch | run [--port N] [--version X.Y.Z]")
    p.add_argument("broker_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_broker)

    p = sub.add_parser("roster", help="households.csv to the households.roster topic and back, or one household's entry")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("load", help="send every valid row of households.csv (bad rows reported, skipped: exit 1)")
    a.add_argument("file", type=Path, help="households.csv (household_id,community,tags,timezone,primary_worker,"
                                           "backup_worker,supervisor[,meters]; .gz ok)")
    a = actions.add_parser("export", help="the topic's current roster as households.csv (loads back to the same roster)")
    a.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")
    a.add_argument("--timeout", type=float, default=30.0, help="seconds to read the topic to its end")
    a = actions.add_parser("show", help="a household's current roster entry (JSON)")
    a.add_argument("household")
    a.add_argument("--timeout", type=float, default=30.0, help="seconds to read the topic to its end")
    p.set_defaults(func=_cmd_roster)

    p = sub.add_parser("tickets", help="tickets rebuilt from the .ack topics")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("audit", help="replay every ack and check it; tickets per state and problems (exit 1 if any)")
    a.add_argument("--ticket", metavar="ID", help="print this ticket's history instead: every ack, in time order")
    a.add_argument("--timeout", type=float, default=30.0, help="seconds to read the ack topics to their end")
    p.set_defaults(func=_cmd_tickets)

    p = sub.add_parser("demo", help="local broker + worker + simulated feed: live counts, tickets appear and are "
                                     "acted on through the staff API")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until Ctrl-C)")
    # Tickets start once detection has 21 days of each household: that is 8 x 21 x 192 readings, about
    # a minute of the worker's ~650 readings/s (40 households would take four), so the loop shows
    # within `make demo DEMO_SECONDS=120`.
    p.add_argument("--households", type=int, default=8, help="simulated households (default 8)")
    p.add_argument("--days", type=int, default=35, help="days of data (default 35: 21 of detector warm-up, then 14)")
    # 10 data-hours per second: 640 readings/s for 8 households, about what one worker keeps up with,
    # so the counts show a live pipeline rather than a backlog.
    p.add_argument("--speed", default="36000x", help="feed speed in data time (default 36000x; 'max' floods the worker)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
