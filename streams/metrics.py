"""Prometheus metrics of the ingest and detect stages.

Ingest identity that must hold once the pipeline is drained (tested):
    received = valid + duplicate + dead_lettered + raw_redelivered
(``raw_redelivered`` is zero unless a worker crashed or partitions moved: a raw message read twice is
received twice and applied once.)
and ``valid = emitted + register_baselines`` (a first or reset register read is valid but
carries no interval of use, so nothing is emitted for it).

The HTTP door (``POST /api/v1/readings``) has its own counters, so the identity above stays the
Kafka door's: ``http_lines{result="accepted"}`` lines were sent to ``readings.raw`` (and are
then counted again in ``received``), ``http_lines{result="rejected"}`` = ``http_rejected`` went
straight to the dead-letter topic. Every line in is one of the two.

Detect identity (tested):
    received = processed + redelivered + dead_lettered + failed
(:func:`identity_gaps` checks both on a /metrics page.)

Labels come from small fixed sets; never a household id. A utility id is a label
(``elderwatch_ingest_last_reading_timestamp_seconds{utility}``): a company, not a person, and only one the
roster enrolled, so the set stays as small as the roster's utilities.

The service's own alert rules and dashboard (``ops/prometheus/rules.yml``, ``ops/grafana/dashboards/``) use
only names exported here (tested: ``tests/unit/test_monitoring.py``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# *_created samples double the page and nobody graphs them.
disable_created_metrics()

from schemas.anomaly import AnomalyKind
from schemas.dead_letter import RejectReason


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("elderwatch_ingest_received", "Messages read from readings.raw.", registry=r)
        self.valid = Counter("elderwatch_ingest_valid", "Readings accepted (emitted or absorbed as a register baseline).", registry=r)
        self.emitted = Counter("elderwatch_ingest_emitted", "Interval readings written to readings.validated.", registry=r)
        self.duplicates = Counter("elderwatch_ingest_duplicates", "Readings dropped as exact duplicates (household, meter, ts).", registry=r)
        self.redelivered = Counter("elderwatch_ingest_redelivered", "Messages of readings.by-household read again after "
                                   "a crash or rebalance and skipped: their series had applied them (by offset).", registry=r)
        self.raw_redelivered = Counter("elderwatch_ingest_raw_redelivered", "Messages of readings.raw read again by "
                                       "ingest after a crash or rebalance, then skipped by the per-series rules: "
                                       "their series had applied that raw offset.", registry=r)
        self.routes = Counter("elderwatch_ingest_routes", "Valid raw messages by route to the per-series rules: "
                              "direct (keyed by household id in its partition already: no re-key hop) or rekeyed "
                              "(through readings.by-household).", ["route"], registry=r)
        self.route = {route: self.routes.labels(route=route) for route in ("direct", "rekeyed")}  # labelled once
        self.dead_lettered = Counter("elderwatch_ingest_dead_lettered", "Messages written to readings.deadletter.",
                                     ["reason"], registry=r)
        self.register_baselines = Counter("elderwatch_ingest_register_baselines",
                                          "Register reads that start or restart a series (valid, nothing emitted).",
                                          ["reason"], registry=r)
        for reason in RejectReason:  # export zeros too, so rate() works from the start
            self.dead_lettered.labels(reason=reason.value)
        for reason in ("first", "reset"):
            self.register_baselines.labels(reason=reason)
        # the HTTP door (streams/http_ingest.py)
        self.http_requests = Counter("elderwatch_ingest_http_requests", "POST /api/v1/readings requests, by status code.",
                                     ["status"], registry=r)
        self.http_lines = Counter("elderwatch_ingest_http_lines",
                                  "Readings (lines, array elements, CSV rows) received over HTTP: accepted (sent to "
                                  "readings.raw) or rejected (dead-lettered).", ["result"], registry=r)
        self.http_rejected = Counter("elderwatch_ingest_http_rejected", "HTTP readings dead-lettered, by reason.",
                                     ["reason"], registry=r)
        for status in ("200", "400", "401", "403", "413", "415", "429", "503"):
            self.http_requests.labels(status=status)
        for result in ("accepted", "rejected"):
            self.http_lines.labels(result=result)
        for reason in RejectReason:
            self.http_rejected.labels(reason=reason.value)
        # meter enrolments (streams/enrolment.py)
        self.enrolled_meters = Gauge("elderwatch_ingest_enrolled_meters",
                                     "Utility meters enrolled on the roster, as this worker knows them.", registry=r)
        self.enrolment_ready = Gauge("elderwatch_ingest_enrolment_ready",
                                     "1 once this worker has read the roster's enrolments to the end.", registry=r)
        # "no readings from a utility for an hour" (ops/prometheus/rules.yml)
        self.last_reading = Gauge("elderwatch_ingest_last_reading_timestamp_seconds",
                                  "Unix time this worker last took a reading (ingest-validate, either door) of a meter "
                                  "the roster enrols with the utility; utility \"unknown\": a reading naming a "
                                  "household with no enrolled meter of its kind. A utility on the roster that has "
                                  "sent nothing since this worker learnt of it shows when it learnt of it.",
                                  ["utility"], registry=r)
        self._last_reading: dict[str, Any] = {}  # utility -> the gauge's child (labels() once per utility)

    def reading_in(self, reading, enrolment=None) -> None:
        """ingest-validate took ``reading`` (named by our household id, a utility's meter already mapped):
        its utility's ``elderwatch_ingest_last_reading_timestamp_seconds`` is now. The utility is the one the
        roster (``enrolment``, a :class:`streams.ingest.Enrolment`) enrols for the household's meter of this
        kind at the reading's time, never a name taken from the message alone (labels stay the roster's).

        >>> from schemas.households import Household
        >>> from schemas.readings import Meter, MeterReading
        >>> from streams.ingest import Enrolment
        >>> m = IngestMetrics()
        >>> e = Enrolment([Household(household_id="hh-1", community="c", staff={"primary_worker": "w-1"},
        ...                          meters="aqua:WM-7:water")])
        >>> reading = MeterReading(household_id="hh-1", meter="water", ts="2026-03-01T07:15:00Z", value=2)
        >>> m.reading_in(reading, e); m.reading_in(reading.model_copy(update={"meter": Meter.ELECTRICITY}), e)
        >>> sorted(s.labels["utility"] for s in m.last_reading.collect()[0].samples)
        ['aqua', 'unknown']
        """
        utility = None
        if enrolment is not None:
            utility = enrolment.utility_of(reading.household_id, reading.meter, reading.ts,
                                           claimed=getattr(reading, "utility_id", None))
        self._utility(utility or "unknown").set(time.time())

    def know_utilities(self, utilities: Iterable[str]) -> None:
        """Utilities on the roster (refreshed on each /metrics scrape): one not seen yet gets a series from now,
        so a utility silent since this worker started still trips the alert an hour later."""
        for utility in utilities:
            if utility not in self._last_reading:
                self._utility(utility).set(time.time())

    def _utility(self, utility: str):
        child = self._last_reading.get(utility)
        if child is None:
            child = self._last_reading[utility] = self.last_reading.labels(utility=utility)
        return child


class DetectMetrics:
    """The detect stage: readings in, warnings out, and what the per-household state costs."""

    #: Seconds per reading for each step of the detect agent (fixed set: a label).
    PHASES = ("load", "process", "dump")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("elderwatch_detect_received", "Readings ingest handed to detection (emitted to "
                                "readings.validated in the same batch).", registry=r)
        self.processed = Counter("elderwatch_detect_processed", "Readings given to their household's monitor.", registry=r)
        self.unreadable_states = Counter("elderwatch_detect_unreadable_states", "Stored household states that could "
                                         "not be read (damaged, an unknown version, a pickle without "
                                         "ELDERWATCH_MIGRATE_PICKLED_STATE): the household starts afresh.", registry=r)
        self.redelivered = Counter("elderwatch_detect_redelivered",
                                   "Readings already in the household's state (a redelivery after a restart): skipped.",
                                   registry=r)
        self.dead_lettered = Counter("elderwatch_detect_dead_lettered",
                                     "Messages given to detection as readings that are not a validated reading (a "
                                     "message of readings.validated handled by hand; ingest's are always readings).", ["reason"], registry=r)
        self.failed = Counter("elderwatch_detect_failed",
                              "Readings on which a detector raised (state left as before the reading).", registry=r)
        self.warnings = Counter("elderwatch_detect_warnings", "Warnings written to anomalies.", ["kind"], registry=r)
        self.state_bytes = Histogram("elderwatch_detect_state_bytes",
                                     "Size of a household's state record (table value and changelog record).",
                                     buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576), registry=r)
        self.seconds = Histogram("elderwatch_detect_seconds", "Time per reading of each step of the detect stage.",
                                 ["phase"], buckets=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
                                 registry=r)
        self.cleared = Counter("elderwatch_detect_episodes_cleared",
                               "Episodes that ended (score back below 0.8), sent to the ticket loop as condition_cleared.",
                               registry=r)
        self.feedback = Counter("elderwatch_detect_feedback", "Applied outcomes (tickets.feedback.ack) given to monitors.",
                                ["result"], registry=r)
        self.sensitivity_changes = Counter("elderwatch_detect_sensitivity_changes",
                                           "Feedback that moved a household's sensitivity for a kind.", ["direction"],
                                           registry=r)
        self.cached_monitors = Gauge("elderwatch_detect_cached_monitors",
                                     "Household monitors kept live in memory by this worker.", registry=r)
        for kind in AnomalyKind:  # export zeros too, so rate() works from the start
            self.warnings.labels(kind=kind.value)
        for reason in RejectReason:
            self.dead_lettered.labels(reason=reason.value)
        # labels() takes a lock and builds a key: looked up once, observed for every reading
        self.phase_seconds = {phase: self.seconds.labels(phase=phase) for phase in self.PHASES}
        for result in ("applied", "duplicate", "unreadable"):
            self.feedback.labels(result=result)
        for direction in ("down", "up"):
            self.sensitivity_changes.labels(direction=direction)


class ReadinessMetrics:
    """The worker's readiness (:mod:`streams.readiness`): ``elderwatch_ready`` (1 when ``/ready`` is 200) and
    ``elderwatch_agent_crashes_total{agent}``, actors that raised (faust's supervisor starts a new one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.ready = Gauge("elderwatch_ready", "1 when this worker is ready (/ready: tables recovered, every agent "
                           "running), else 0.", registry=self.registry)
        self.agent_crashes = Counter("elderwatch_agent_crashes", "Agent actors that raised and stopped (the worker "
                                     "is not ready until the agent runs again).", ["agent"], registry=self.registry)


class TicketMetrics:
    """The ticket loop: commands and their results, how long each step takes, and what staff found.

    ``elderwatch_tickets_outcomes_total{outcome}`` is the seed's "valid alerts" made measurable: the
    valid-alert rate is (confirmed_emergency + needed_help) / all welfare outcomes. Across workers it is
    ``sum(elderwatch_tickets_valid_outcomes_total) / sum(elderwatch_tickets_welfare_outcomes_total)``
    (counters add up; ratios do not). ``elderwatch_tickets_valid_alert_ratio`` is the same ratio over this
    worker process's life only: per worker, never to be summed or averaged across workers.
    """

    #: seconds: 1 min .. 3 days
    BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
    VALID = frozenset({"confirmed_emergency", "needed_help"})

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from dispatch.tickets import Outcome, State
        from schemas.tickets import AckResult, Step

        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.commands = Counter("elderwatch_tickets_commands", "Commands consumed from the step topics, by result.",
                                ["step", "result"], registry=r)
        self.unreadable = Counter("elderwatch_tickets_unreadable",
                                  "Messages on ticket or household topics that are not what the topic carries (dead-lettered).",
                                  registry=r)
        self.opened = Counter("elderwatch_tickets_opened", "Tickets opened.", ["kind"], registry=r)
        self.escalations = Counter("elderwatch_tickets_escalations",
                                   "Dispatches passed to the next person (timeout or asked for).", registry=r)
        self.realerts = Counter("elderwatch_tickets_realerts",
                                "Reminders: accepted but unhandled, snooze over, outcome missing.", registry=r)
        self.outcomes = Counter("elderwatch_tickets_outcomes", "Outcomes recorded by staff.", ["outcome"], registry=r)
        self.to_acknowledge = Histogram("elderwatch_tickets_seconds_to_acknowledge",
                                        "From a ticket's warning to a person taking it.", buckets=self.BUCKETS, registry=r)
        self.to_handle = Histogram("elderwatch_tickets_seconds_to_handle",
                                   "From a ticket's warning to the visit or call.", buckets=self.BUCKETS, registry=r)
        self.to_close = Histogram("elderwatch_tickets_seconds_to_close",
                                  "From a ticket's warning to its close (outcome recorded and learned).",
                                  buckets=self.BUCKETS, registry=r)
        self.open = Gauge("elderwatch_tickets_open", "Tickets not finished, by state.", ["state"], registry=r)
        self.overdue = Gauge("elderwatch_tickets_overdue",
                             "Tickets whose deadline passed more than a timer interval ago (should stay 0).", registry=r)
        self.valid_alert_ratio = Gauge("elderwatch_tickets_valid_alert_ratio",
                                       "confirmed_emergency + needed_help over all welfare outcomes (this worker "
                                       "process only; across workers: sum(valid_outcomes) / sum(welfare_outcomes)).",
                                       registry=r)
        self.valid_outcomes = Counter("elderwatch_tickets_valid_outcomes",
                                      "Welfare outcomes that were valid alerts (confirmed_emergency, needed_help): "
                                      "the valid-alert ratio's numerator.", registry=r)
        self.welfare_outcomes = Counter("elderwatch_tickets_welfare_outcomes",
                                        "Outcomes about the person (every outcome but meter_fault): the valid-alert "
                                        "ratio's denominator.", registry=r)
        for step in Step:
            for result in AckResult:
                self.commands.labels(step=step.value, result=result.value)
        for outcome in Outcome:
            self.outcomes.labels(outcome=outcome.value)
        for state in State:
            self.open.labels(state=state.value)
        self._valid = self._welfare = 0

    def outcome(self, outcome: str) -> None:
        self.outcomes.labels(outcome=outcome).inc()
        if outcome != "meter_fault":
            self._welfare += 1
            self._valid += outcome in self.VALID
            self.welfare_outcomes.inc()
            if outcome in self.VALID:
                self.valid_outcomes.inc()
            self.valid_alert_ratio.set(self._valid / self._welfare)


class AgentMetrics:
    """Every agent's guard (:mod:`streams.guard`): ``elderwatch_agent_errors_total{agent}``, messages on which an
    agent raised (a bug, not bad input), dead-lettered ``processing_error`` before the agent went on; and
    ``elderwatch_agent_unreadable_total{agent}``, poison on an internal topic that no stage's own books count.

    One per registry (:meth:`of`), so each stage's ``register_*`` finds the same counter without a new argument.
    """

    #: the agents' names (a fixed set: a label)
    AGENTS = ("ingest-validate", "ingest-normalize", "detect", "ticket-warnings", "tickets", "notify")
    _by_registry: "weakref.WeakKeyDictionary[CollectorRegistry, AgentMetrics]"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.errors = Counter("elderwatch_agent_errors", "Messages on which an agent raised (dead-lettered "
                              "processing_error; the agent went on with the next).", ["agent"], registry=self.registry)
        self.unreadable = Counter("elderwatch_agent_unreadable",
                                  "Messages on an internal topic (readings.by-household, tickets.feedback.ack, "
                                  "notifications.pending) that are "
                                  "not what it carries, dead-lettered: something other than elderwatch wrote them.",
                                  ["agent"], registry=self.registry)
        self.stale_records = Counter("elderwatch_restore_stale_records",
                                     "Changelog records passed over at a restore because the key already had a "
                                     "state that had read further: what a worker replaced after a pause wrote when "
                                     "it resumed (streams/recovery.py newest_wins).", ["table"], registry=self.registry)
        for agent in self.AGENTS:
            self.errors.labels(agent=agent)
        for agent in ("ingest-normalize", "detect", "notify"):
            self.unreadable.labels(agent=agent)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> "AgentMetrics":
        """The registry's agent metrics, made on first use."""
        found = cls._by_registry.get(registry)
        if found is None:
            found = cls._by_registry[registry] = cls(registry)
        return found


AgentMetrics._by_registry = weakref.WeakKeyDictionary()


class ConsumerLagMetrics:
    """``elderwatch_consumer_lag{topic}``: messages of each topic the agents read that this worker's consumer
    group has not committed yet, summed over the partitions assigned to this worker (log end offset minus
    committed offset, as ``kafka-consumer-groups.sh`` counts it). Summed over workers it is the group's lag.

    faust and aiokafka export no lag; this reads what faust's consumer already holds, on each /metrics scrape
    (no request to the broker): the highwater the last fetch of each partition returned and faust's last
    committed offset of it. A partition not fetched since its assignment counts 0 until it is; one the group
    never committed counts from offset 0. The ``topic`` label is the full topic name (fixed set: the agents'
    source topics, exported as 0 when this worker holds none of their partitions).
    """

    def __init__(self, registry: CollectorRegistry, topics: Iterable[str]) -> None:
        self.registry = registry
        self.lag = Gauge("elderwatch_consumer_lag", "Messages not yet committed by this worker's consumer group, per "
                         "source topic, summed over this worker's partitions (log end - committed offset).",
                         ["topic"], registry=registry)
        self.topics = sorted(set(topics))
        self.extra = None  # what reads with a consumer of its own (of_app)
        for topic in self.topics:
            self.lag.labels(topic=topic)

    @classmethod
    def of_app(cls, app, registry: CollectorRegistry, *, extra=None) -> "ConsumerLagMetrics":
        """The lag of every topic ``app``'s agents read (known once the agents are registered), and of the topics
        ``extra`` reads with a consumer of its own (its ``lag()``: topic -> messages, e.g. the ingest loop)."""
        topics = {name for agent in app.agents.values() for name in getattr(agent.channel, "topics", ())}
        metrics = cls(registry, topics | set(extra.lag() if extra is not None else ()))
        metrics.extra = extra
        return metrics

    def refresh(self, app) -> None:
        """Set the gauge from ``app``'s consumer; a consumer not started or in a rebalance keeps the last values."""
        try:
            consumer = app.consumer
            assignment = consumer.assignment()
            # faust's own record of the committed offsets (read from the broker at assignment, set at each
            # commit, dropped at revocation): private to faust, read only here, with the versions pinned
            # (streams/recovery.py); its monitor's record (commits only) if it ever goes
            committed = getattr(consumer, "_committed_offset", None)
            committed = dict(committed if committed is not None else app.monitor.tp_committed_offsets or {})
        except Exception:  # noqa: BLE001 - a scrape never fails for the lag
            return
        for topic, lag in lag_by_topic(self.topics, assignment, consumer.highwater, committed).items():
            self.lag.labels(topic=topic).set(lag)
        if self.extra is not None:
            for topic, lag in self.extra.lag().items():
                self.lag.labels(topic=topic).set(lag)


def lag_by_topic(topics: Iterable[str], assignment: Iterable[Any], highwater: Callable[[Any], int | None],
                 committed: Mapping[Any, int | None]) -> dict[str, int]:
    """Per topic of ``topics``: the sum over its assigned partitions of highwater - committed (never below 0).

    >>> from collections import namedtuple
    >>> TP = namedtuple("TP", "topic partition")
    >>> ends = {TP("raw", 0): 10, TP("raw", 1): 5, TP("raw", 2): None, TP("other", 0): 99}
    >>> lag_by_topic(["raw", "validated"], ends, ends.get, {TP("raw", 0): 7, TP("raw", 1): 6})
    {'raw': 3, 'validated': 0}
    >>> lag_by_topic(["raw"], [TP("raw", 0)], ends.get, {})  # never committed: from offset 0
    {'raw': 10}
    """
    lags = {topic: 0 for topic in topics}
    for tp in assignment:
        if tp.topic not in lags:
            continue
        try:
            end = highwater(tp)
        except Exception:  # noqa: BLE001 - revoked since the assignment was read (aiokafka asserts)
            end = None
        if end is None:
            continue
        lags[tp.topic] += max(0, end - (committed.get(tp) or 0))
    return lags


def identity_gaps(page: str) -> list[str]:
    """What does not add up on a drained worker's /metrics page (an empty list when both identities hold):
    ingest received = valid + duplicates + dead_lettered + raw_redelivered, valid = emitted + register_baselines,
    and detect received = processed + redelivered + dead_lettered + failed.

    >>> identity_gaps('elderwatch_ingest_received_total 3.0\\nelderwatch_ingest_valid_total 3.0\\n'
    ...               'elderwatch_ingest_emitted_total 2.0\\nelderwatch_detect_received_total 2.0\\n'
    ...               'elderwatch_detect_processed_total 2.0\\n')
    ['ingest: valid 3 != emitted 2 + register_baselines 0']
    """
    ingest, detect = read_counts(page, "ingest"), read_counts(page, "detect")
    get = lambda counts, name: int(counts.get(name, 0))  # noqa: E731
    gaps = []
    if get(ingest, "received") != settled(ingest):
        gaps.append(f"ingest: received {get(ingest, 'received')} != valid {get(ingest, 'valid')} + duplicates "
                    f"{get(ingest, 'duplicates')} + dead_lettered {get(ingest, 'dead_lettered')} + raw_redelivered "
                    f"{get(ingest, 'raw_redelivered')}")
    if get(ingest, "valid") != get(ingest, "emitted") + get(ingest, "register_baselines"):
        gaps.append(f"ingest: valid {get(ingest, 'valid')} != emitted {get(ingest, 'emitted')} + register_baselines "
                    f"{get(ingest, 'register_baselines')}")
    detect_terms = ("processed", "redelivered", "dead_lettered", "failed")
    if get(detect, "received") != sum(get(detect, term) for term in detect_terms):
        gaps.append(f"detect: received {get(detect, 'received')} != "
                    + " + ".join(f"{term} {get(detect, term)}" for term in detect_terms))
    return gaps


def settled(counts: dict[str, float]) -> float:
    """The right-hand side of the ingest identity: received messages that reached an outcome.

    >>> settled({"received": 7, "valid": 3, "duplicates": 1, "dead_lettered": 2, "raw_redelivered": 1})
    7.0
    """
    return float(sum(counts.get(term, 0) for term in ("valid", "duplicates", "dead_lettered", "raw_redelivered")))


def read_counts(text: str, stage: str = "ingest") -> dict[str, float]:
    """Sum ``elderwatch_<stage>_*_total`` samples from a /metrics page, across labels.

    >>> read_counts('elderwatch_ingest_received_total 5.0\\nelderwatch_ingest_dead_lettered_total{reason="not_json"} 2.0\\n')
    {'received': 5.0, 'dead_lettered': 2.0}
    >>> read_counts('elderwatch_detect_warnings_total{kind="surge"} 2.0\\nelderwatch_ingest_received_total 5.0\\n', "detect")
    {'warnings': 2.0}
    """
    prefix = f"elderwatch_{stage}_"
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(prefix) or "_total" not in line:
            continue
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0].removeprefix(prefix).removesuffix("_total")
        counts[metric] = counts.get(metric, 0.0) + float(value)
    return counts
