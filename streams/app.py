"""The Faust application: built once from :class:`Settings` at the entry point.

    readings.raw ──ingest-validate──▶ readings.by-household ──ingest-normalize──▶ readings.validated, and ──detect──▶ anomalies
          │                                      │            (state ingest-series-state)        (state detect-household-state)
          └──────────────▶ readings.deadletter ◀─┘           one loop on its own consumer group (readings_loop.py)
                                                              with tickets.feedback.ack and households.roster for detect
    anomalies ──ticket-warnings──▶ tickets.warning ─┐
    tickets.dispatch / .handle / .feedback ─────────┼─tickets─▶ tickets.<step>.ack ──notify──▶ webhook
    households.roster / households.away ────────────┘  (table tickets-households; timer ticket-deadlines)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from elderwatch.settings import Settings
from streams import topics as topic_specs
from streams.metrics import DetectMetrics, IngestMetrics, TicketMetrics


@dataclass(frozen=True)
class Topics:
    raw: faust.TopicT
    by_household: faust.TopicT
    validated: faust.TopicT
    deadletter: faust.TopicT
    anomalies: faust.TopicT
    ticket_steps: dict  # Step -> topic
    ticket_acks: dict   # Step -> topic
    roster: faust.TopicT
    away: faust.TopicT
    notifications_pending: faust.TopicT


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def offset_clock(path: Path) -> Callable[[], datetime]:
    """The wall clock plus the seconds written in ``path`` (tests move time forward by writing it).

    Development only (Settings refuses it in production). Read at most once a second."""
    cached = [0.0, float("-inf")]  # offset, monotonic time read

    def now() -> datetime:
        if time.monotonic() - cached[1] > 1.0:
            try:
                cached[0] = float(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pass  # keep the last offset
            cached[1] = time.monotonic()
        return utc_now() + timedelta(seconds=cached[0])

    return now


def create_app(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> faust.App:
    """Build the app with its topics, tables, agents and web pages."""
    if clock is None:
        clock = offset_clock(settings.clock_offset_file) if settings.clock_offset_file else utc_now
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",") if host.strip()]
    app = faust.App(
        settings.app_id,
        broker=brokers,
        store="memory://",  # state is rebuilt from changelog topics on start; no local disk needed
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.consumer_session_timeout_s,
        producer_acks=-1,
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=settings.producer_max_batch_size,
        producer_compression_type=None if settings.producer_compression == "none" else settings.producer_compression,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        # faust's own end of table recovery can lose input records (faust-streaming#596 and an
        # empty-partition-set drain): see streams/recovery.py. Every table, now and later, uses it.
        TableManager="streams.recovery:TableManager",
        # POST /api/v1/readings decompresses gzip bodies itself, within its size cap (streams/http_ingest.py)
        web_application_options={"handler_args": {"auto_decompress": False}},
    )
    t = _declare_topics(app, settings)
    metrics = IngestMetrics()

    from detectors.offline import load_household_timezones
    from streams.detect import DetectStage, monitor_config
    from streams.enrolment import start_enrolment_reader
    from streams.http_ingest import register_http_ingest
    from streams.readings_loop import start_readings_loop

    detect_metrics = DetectMetrics(metrics.registry)  # one registry: one /metrics page
    timezones = load_household_timezones(settings.households_file) if settings.households_file else {}
    config = monitor_config(settings)

    def detect_stage(send, topics) -> DetectStage:
        return DetectStage(topics, send, detect_metrics, settings, timezones=timezones, clock=clock, config=config,
                           cache_size=settings.detect_cache_size,
                           migrate_pickled_state=settings.migrate_pickled_state)

    enrolment_reader = start_enrolment_reader(app, settings, metrics)  # every worker: all meter enrolments
    # Ingest and detect run on aiokafka's own consumer group, not as faust agents (streams/readings_loop.py says why)
    readings = start_readings_loop(app, t, metrics, settings, clock=clock, enrolment_reader=enrolment_reader,
                                   detect_factory=detect_stage)
    register_http_ingest(app, t, enrolment_reader, metrics, settings, clock=clock)  # POST /api/v1/readings

    from streams.tables import ticket_desks_table
    from streams.tickets import register_ticket_agents

    ticket_metrics = TicketMetrics(metrics.registry)
    desks = register_ticket_agents(app, t, ticket_desks_table(app, settings), ticket_metrics, settings, clock=clock)

    from dispatch.notify import NotifyMetrics
    from streams.notify import register_notifier

    register_notifier(app, t.ticket_acks.values(), settings, NotifyMetrics(metrics.registry),
                      pending=t.notifications_pending)

    # Every agent is registered above: readiness watches them all (streams/readiness.py).
    from streams.metrics import ReadinessMetrics
    from streams.readiness import Readiness
    from streams.tables import TICKET_DESKS

    readiness = Readiness(app, ReadinessMetrics(metrics.registry), table_name=TICKET_DESKS, readings=readings)
    readiness.watch_agents()
    desks.recovered = readiness.recovered  # the ticket indexes are rebuilt only from a recovered table

    from streams.metrics import ConsumerLagMetrics

    consumer_lag = ConsumerLagMetrics.of_app(app, metrics.registry, extra=readings)  # the agents' topics and the loop's

    @app.page("/metrics")
    async def metrics_page(web, request):
        readiness.check()  # refresh elderwatch_ready
        consumer_lag.refresh(app)  # elderwatch_consumer_lag{topic}, from what the consumer holds
        metrics.know_utilities(enrolment_reader.enrolment.utilities())  # each utility's last reading, once known
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web, request):
        """Liveness: the process answers (it may still be recovering: see /ready)."""
        return web.json({"status": "ok", "app_id": settings.app_id})

    @app.page("/ready")
    async def ready_page(web, request):
        """Readiness: 200 once this assignment's tables are recovered and every agent runs; 503 with the reasons."""
        ready, body = readiness.check()
        return web.json(body, status=200 if ready else 503, headers=None if ready else {"Retry-After": "5"})

    from streams.staff_api import register_staff_api

    # the detect stage's stored monitors (registered above) give a ticket's recent usage
    staff_api = register_staff_api(app, desks, settings, recent_usage=readings.recent_usage,
                                   readiness=readiness)
    app.elderwatch_staff_api = staff_api  # the console calls the same handlers
    from elderwatch.console import register_console

    app.elderwatch_console = register_console(app, staff_api, settings)  # the staff console at /, over staff_api

    app.elderwatch_readings = readings
    app.elderwatch_metrics = metrics  # for tests and the demo running in-process
    app.elderwatch_detect_metrics = detect_metrics
    app.elderwatch_topics = t
    app.elderwatch_ticket_metrics = ticket_metrics
    app.elderwatch_desks = desks
    app.elderwatch_readiness = readiness
    return app


def _declare_topics(app: faust.App, settings: Settings) -> Topics:
    def topic(spec: topic_specs.TopicSpec) -> faust.TopicT:
        # Raw bytes in and out: we validate ourselves, so a bad message is dead-lettered with a
        # reason instead of being skipped by faust's decoder with only a log line.
        return app.topic(topic_specs.full_name(spec, settings.topic_prefix), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=settings.partitions)

    from schemas.tickets import Step

    steps = dict(zip(Step, topic_specs.TICKET_STEPS))
    acks = dict(zip(Step, topic_specs.TICKET_ACKS))
    return Topics(raw=topic(topic_specs.READINGS_RAW), by_household=topic(topic_specs.READINGS_BY_HOUSEHOLD),
                  validated=topic(topic_specs.READINGS_VALIDATED), deadletter=topic(topic_specs.READINGS_DEADLETTER),
                  anomalies=topic(topic_specs.ANOMALIES),
                  ticket_steps={step: topic(spec) for step, spec in steps.items()},
                  ticket_acks={step: topic(spec) for step, spec in acks.items()},
                  roster=topic(topic_specs.HOUSEHOLDS_ROSTER), away=topic(topic_specs.HOUSEHOLDS_AWAY),
                  notifications_pending=topic(topic_specs.NOTIFICATIONS_PENDING))
