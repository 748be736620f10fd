"""Run the streaming worker: create topics if missing, then the Faust worker until stopped."""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata

from elderwatch.settings import Settings

#: Set to 1 to start with faust-streaming or aiokafka versions that streams/recovery.py was not verified with
#: (README, configuration). For trying an upgrade, never for production.
UNVERIFIED_VERSIONS_ENV = "ELDERWATCH_ALLOW_UNVERIFIED_VERSIONS"


def check_versions(verified: Mapping[str, str] | None = None, *,
                   installed: Callable[[str], str] = metadata.version) -> str | None:
    """What differs from the versions streams/recovery.py was verified with (it patches faust's and aiokafka's
    private internals), in one line; None when they match."""
    if verified is None:
        from streams.recovery import VERIFIED_WITH

        verified = VERIFIED_WITH
    found = {}
    for package in verified:
        try:
            found[package] = installed(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    wrong = [f"{package} {found[package]} (verified: {version})" for package, version in verified.items()
             if found[package] != version]
    if not wrong:
        return None
    return (f"{', '.join(wrong)}: streams/recovery.py patches their internals and was verified only with "
            f"{', '.join(f'{p}=={v}' for p, v in verified.items())}; install requirements.lock, or re-check "
            f"streams/recovery.py and update VERIFIED_WITH (to try anyway: {UNVERIFIED_VERSIONS_ENV}=1)")


def ensure_topics(settings: Settings) -> None:
    from elderwatch.localkafka import create_topics
    from streams.tables import ALL_TABLES, CHANGELOG_CONFIG, changelog_topic
    from streams.topics import compaction_config, partition_plan

    create_topics(settings.kafka_bootstrap_servers, partition_plan(settings.partitions, settings.topic_prefix),
                  replication_factor=settings.replication_factor, config=compaction_config(settings.topic_prefix))
    # The tables' changelogs too (compacted, as faust would make them). Left to faust, a changelog
    # created while the worker joins its group can be recorded with 0 partitions in the group's
    # metadata snapshot, and the first write to the table then fails with PartitionsMismatch
    # (seen once on a fresh app id: the detect agent crashed on its first reading).
    changelogs = {changelog_topic(settings.app_id, table): settings.partitions for table in ALL_TABLES}
    create_topics(settings.kafka_bootstrap_servers, changelogs, replication_factor=settings.replication_factor,
                  config={name: dict(CHANGELOG_CONFIG) for name in changelogs})


def ensure_topics_when_kafka_answers(settings: Settings, *, ensure: Callable[[Settings], None] = ensure_topics,
                                     sleep: Callable[[float], None] = time.sleep,
                                     clock: Callable[[], float] = time.monotonic) -> None:
    """:func:`ensure_topics`, retried while Kafka does not answer (a worker started before its broker, or
    while the broker restarts), for at most ``settings.broker_wait_s``; then one line and exit 1.

    >>> tries = []
    >>> def ensure(_):
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise KafkaTimeoutError("Unable to bootstrap")
    >>> from kafka.errors import KafkaTimeoutError
    >>> ensure_topics_when_kafka_answers(Settings(broker_wait_s=60), ensure=ensure, sleep=lambda s: None)
    >>> len(tries)
    3
    """
    from kafka.errors import BrokerNotAvailableError, KafkaConnectionError, KafkaTimeoutError

    log = logging.getLogger(__name__)
    began, delay = clock(), 1.0
    while True:
        try:
            return ensure(settings)
        except (KafkaTimeoutError, KafkaConnectionError, BrokerNotAvailableError) as exc:
            waited = clock() - began
            if waited + delay > settings.broker_wait_s:
                print(f"elderwatch worker: Kafka at {settings.kafka_bootstrap_servers} did not answer for "
                      f"{waited:.0f} s ({type(exc).__name__}); giving up (ELDERWATCH_BROKER_WAIT_S="
                      f"{settings.broker_wait_s:g})", file=sys.stderr)
                raise SystemExit(1) from None
            log.warning("Kafka at %s does not answer (%s); trying again in %.0f s (waited %.0f of %g s)",
                        settings.kafka_bootstrap_servers, type(exc).__name__, delay, waited, settings.broker_wait_s)
            sleep(delay)
            delay = min(delay * 2, 10.0)


def refuse_unverified_versions(environ: Mapping[str, str] = os.environ, **check) -> None:
    """Exit 2 with one line when the versions differ (unless the override is set: then a warning)."""
    problem = check_versions(**check)
    if problem is None:
        return
    if environ.get(UNVERIFIED_VERSIONS_ENV) == "1":
        logging.getLogger(__name__).warning("starting with unverified versions (%s=1): %s", UNVERIFIED_VERSIONS_ENV,
                                            problem)
        return
    print(f"elderwatch worker: {problem}", file=sys.stderr)
    raise SystemExit(2)


class EveryMinuteAtMost(logging.Filter):
    """Lets a record whose message starts with ``prefix`` through at most once per ``seconds``, saying how many
    were held back since the last one.

    faust warns "producer buffer full size N" every time its producer buffer waits to drain: under a backlog that
    is flow control working as meant, several times a second, and the warnings would bury everything else
    an operator reads. The wait itself shows as consumer lag (``elderwatch_consumer_lag``).
    """

    def __init__(self, prefix: str, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix, self.seconds, self.clock = prefix, seconds, clock
        self.last: float | None = None
        self.held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = self.clock()
        if self.last is not None and now - self.last < self.seconds:
            self.held_back += 1
            return False
        if self.held_back:
            record.msg = f"{record.msg} ({self.held_back} more since the last one, not logged)"
        self.last, self.held_back = now, 0
        return True


#: The cyclic garbage collector's thresholds in a worker (Python's are 700, 10, 10). A worker holds thousands of
#: household monitors of hundreds of objects each. At 700 new objects a collection walks the young ones, and
#: creating or loading monitors kept it busy: a fifth of the CPU per reading in the throughput benchmark's floor
#: (bench/results/throughput.md). A reading's own objects are freed by their reference counts, so collecting
#: less often leaves little garbage waiting.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    refuse_unverified_versions()  # before anything starts: the recovery patch depends on these versions
    tune_gc()
    from faust.worker import Worker

    from streams.app import create_app

    ensure_topics_when_kafka_answers(settings)
    app = create_app(settings)
    # Faust's own logs are chatty at info; ours say what happened to which message, never its content.
    logging.getLogger("faust").setLevel(logging.WARNING)
    logging.getLogger("faust.transport.producer").addFilter(EveryMinuteAtMost("producer buffer full"))
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # faust's start-up spinner sets the root logger to DEBUG for its own handler: every library's debug call
    # would then build a record (~5 % of the worker's CPU under load), and its escape codes fill the log.
    worker.spinner = None
    worker.execute_from_commandline()
