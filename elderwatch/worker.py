"""Run the streaming worker: create topics if missing, then the Faust worker until stopped."""

from __future__ import annotations

import logging

from elderwatch.settings import Settings


def ensure_topics(settings: Settings) -> None:
    from elderwatch.localkafka import create_topics
    from streams.tables import ALL_TABLES, changelog_topic
    from streams.topics import compaction_config, partition_plan

    create_topics(settings.kafka_bootstrap_servers, partition_plan(settings.partitions, settings.topic_prefix),
                  replication_factor=settings.replication_factor, config=compaction_config(settings.topic_prefix))
    # The tables' changelogs too (compacted, as faust would make them). Left to faust, a changelog
    # created while the worker joins its group can be recorded with 0 partitions in the group's
    # metadata snapshot, and the first write to the table then fails with PartitionsMismatch
    # (seen once on a fresh app id: the detect agent crashed on its first reading).
    changelogs = {changelog_topic(settings.app_id, table): settings.partitions for table in ALL_TABLES}
    create_topics(settings.kafka_bootstrap_servers, changelogs, replication_factor=settings.replication_factor,
                  config={name: {"cleanup.policy": "compact"} for name in changelogs})


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    from faust.worker import Worker

    from streams.app import create_app

    ensure_topics(settings)
    app = create_app(settings)
    # Faust's own logs are chatty at info; ours say what happened to which message, never its content.
    logging.getLogger("faust").setLevel(logging.WARNING)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
