"""The Faust application: built once from :class:`Settings` at the entry point.

    readings.raw ──ingest-validate──▶ readings.by-household ──ingest-normalize──▶ readings.validated ──detect──▶ anomalies
          │                                      │            (table ingest-series-state)       (table detect-household-state)
          └──────────────▶ readings.deadletter ◀─┘
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from elderwatch.settings import Settings
from streams import topics as topic_specs
from streams.metrics import DetectMetrics, IngestMetrics


@dataclass(frozen=True)
class Topics:
    raw: faust.TopicT
    by_household: faust.TopicT
    validated: faust.TopicT
    deadletter: faust.TopicT
    anomalies: faust.TopicT


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> faust.App:
    """Build the app with its topics, tables, agents and web pages."""
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
        producer_acks=-1,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        # faust's own end of table recovery can lose input records (faust-streaming#596 and an
        # empty-partition-set drain): see streams/recovery.py. Every table, now and later, uses it.
        TableManager="streams.recovery:TableManager",
    )
    t = _declare_topics(app, settings)
    metrics = IngestMetrics()

    from streams.agents import register_ingest_agents
    from streams.tables import series_state_table

    register_ingest_agents(app, t, series_state_table(app, settings), metrics, settings, clock=clock)

    from detectors.offline import load_household_timezones
    from streams.detect import register_detect_agent
    from streams.tables import detect_state_table

    detect_metrics = DetectMetrics(metrics.registry)  # one registry: one /metrics page
    timezones = load_household_timezones(settings.households_file) if settings.households_file else {}
    register_detect_agent(app, t, detect_state_table(app, settings), detect_metrics, settings, timezones=timezones,
                          clock=clock)

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web, request):
        return web.json({"status": "ok", "app_id": settings.app_id})

    app.elderwatch_metrics = metrics  # for tests and the demo running in-process
    app.elderwatch_detect_metrics = detect_metrics
    app.elderwatch_topics = t
    return app


def _declare_topics(app: faust.App, settings: Settings) -> Topics:
    def topic(spec: topic_specs.TopicSpec) -> faust.TopicT:
        # Raw bytes in and out: we validate ourselves, so a bad message is dead-lettered with a
        # reason instead of being skipped by faust's decoder with only a log line.
        return app.topic(topic_specs.full_name(spec, settings.topic_prefix), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=settings.partitions)

    return Topics(raw=topic(topic_specs.READINGS_RAW), by_household=topic(topic_specs.READINGS_BY_HOUSEHOLD),
                  validated=topic(topic_specs.READINGS_VALIDATED), deadletter=topic(topic_specs.READINGS_DEADLETTER),
                  anomalies=topic(topic_specs.ANOMALIES))
