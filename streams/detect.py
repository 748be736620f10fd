"""The detect stage: validated readings -> per-household detectors -> ``anomalies``.

One :class:`~detectors.monitor.HouseholdMonitor` per household, the same code ``elderwatch
detect`` runs over a file (``detectors/offline.py``), fed each household's readings in the order
ingest emitted them. Its state lives in the changelog ``detect-household-state`` (co-partitioned with
readings.validated), rewritten at every checkpoint of the readings loop after readings changed it, so a worker
that takes over a partition continues exactly where the last one stopped.

:class:`DetectStage` has no consumer: ingest hands it the readings it emitted in the same batch, once
readings.validated has acknowledged them (their offsets there are the state's redelivery marks), and the
readings loop's consumer group gives it outcomes and roster entries (:mod:`streams.readings_loop`). Steps 1-4
per batch, step 5 per checkpoint, in this order:

1. (a message read from readings.validated, :meth:`DetectStage.handle`: one that is not a ValidatedReading keyed
   by its household is dead-lettered, counted, never a crash);
2. load each household's state once (:meth:`HouseholdStates.apply` opens it). The state record holds
   the offset of the last readings.validated message it includes: a message at or below it is a
   redelivery after a restart (its warnings were sent before its state was written, step 4 before 5)
   and is skipped, so a restart neither loses nor repeats a warning nor feeds the monitor a reading twice;
3. ``monitor.process(meter, ts, value)`` for each of the household's readings in partition order; if a
   detector raises, the reading is counted as failed and the household continues from the state
   before it (its stored state with the readings since applied again);
4. warnings to ``anomalies`` (key household_id, value ``AnomalyWarning`` JSON), and a
   ``condition_cleared`` command on ``tickets.warning`` for each episode that ended, all acknowledged by
   the broker before step 5;
5. each household's new state record, dumped once for all the readings since it was loaded, written to the
   changelog and acknowledged; only then does the loop commit the readings' offsets.

A crash between 4 and 5 re-sends those warnings after restart (at least once; the
``warning_id`` is the idempotency key downstream). The other way round would lose them. The warnings
and states are those of one reading at a time (the monitor does not know about batches).

Loading and dumping a monitor costs time (measured in ``elderwatch_detect_seconds``
by phase), so live monitors are also kept in memory (:class:`MonitorCache`). A cached
monitor is used only while the table still holds the very record it produced; any other record
(restored from the changelog after a rebalance, or written by another worker) is loaded instead,
and a monitor is out of the cache while it is open (until its state is stored), so an interruption cannot
leave a cached monitor ahead of the table. The table is still written at every checkpoint for each household
that changed: the changelog is what makes a restart safe.

Feedback (issue 4) reaches the same stage as what the ticket stage *applied*: acks on
``tickets.feedback.ack`` by ``tickets``, result ``applied``, for a ``feedback`` command, with the ticket's
outcome. A command the ticket stage rejected (a second staff member's outcome for a ticket that already has
one, a feedback without an outcome) or found a duplicate never reaches detection; the agent's own acks
(``by: detect``) and every other ack on that topic are not for it and are passed over. The outcome turns the
household's sensitivity for the ticket's kind (``detectors/feedback.py``: repeated false alarms lower it
within bounds, a confirmed emergency never does, ``not_home`` proposes away mode).
The new state is stored, then acknowledged on ``tickets.feedback.ack`` (``by: detect``, with the
sensitivity before and after), then a ``close`` command for the ticket goes to ``tickets.feedback``:
a ticket closes once detection has learned from it. The monitor remembers the feedback command's key, so a
redelivery changes nothing and is acknowledged (and closed) again.

The roster (``households.roster``, co-partitioned) gives each household's time zone: when it differs from the
monitor's, the monitor reads local time in the new zone from then on (:meth:`HouseholdMonitor.set_timezone`:
what was learned by local hour stays as it was: right for a household that moved and kept its habits, shifted
by the zones' difference for a wrong zone corrected, until the detectors have relearned it). ``ELDERWATCH_HOUSEHOLDS_FILE`` is only the
zone of a household's first monitor when the roster has not named one yet.

Outcomes and roster entries are rare and handled one at a time: the states of the readings before them are
stored first. Each goes through the guard (:mod:`streams.guard`): one the stage raises on is dead-lettered
``processing_error`` and the stage goes on.
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from detectors.feedback import FeedbackEffect
from detectors.monitor import HouseholdMonitor, MonitorConfig
from detectors.state import StateFormatError
from schemas.detection import DetectionConfig
from detectors.offline import MonitorFactory, new_monitor, plain_datetime
from dispatch.tickets import Event, EventKind
from elderwatch.settings import Settings
from schemas.anomaly import AnomalyWarning
from schemas.dead_letter import RejectReason
from schemas.households import Household
from schemas.readings import ValidatedReading
from schemas.tickets import AckResult, TicketAck, TicketCommand
from schemas.tickets import Step as TicketStep
from streams.batches import delivered
from streams.guard import AgentGuard, DeadLetters, OutTopic, Source
from streams.ingest.parse import Rejection, _describe, _reason_for, parse_model
from streams.metrics import AgentMetrics, DetectMetrics
from streams.partitioner import KeyPartitioner

log = logging.getLogger(__name__)

#: Live monitors kept per worker: ~16 KiB each in memory (bench/results/detect_speed.md), so about 250 MiB: a
#: worker holding 15,000 households never loads a state (~0.3 ms each) between two of a household's readings.
DEFAULT_CACHE_SIZE = 16384

_OFFSET = struct.Struct(">q")


def encode_state(offset: int, monitor_state: bytes) -> bytes:
    """A table value: the offset of the last readings.validated message applied, then the monitor.

    >>> decode_state(encode_state(41, b"monitor"))
    (41, b'monitor')
    """
    return _OFFSET.pack(offset) + monitor_state


def decode_state(record: bytes) -> tuple[int, bytes]:
    """(offset, monitor record); :class:`StateFormatError` for a value too short to hold an offset."""
    if len(record) < _OFFSET.size:
        raise StateFormatError("table value shorter than its offset")
    return _OFFSET.unpack_from(record)[0], record[_OFFSET.size:]


def record_offset(record: bytes) -> int | None:
    """The readings offset a table value has applied up to, None if it cannot be read (a restore's ordering).

    >>> record_offset(encode_state(41, b"monitor")), record_offset(b"?")
    (41, None)
    """
    try:
        return decode_state(record)[0]
    except StateFormatError:
        return None


def parse_validated(value: bytes | None, key: bytes | None) -> ValidatedReading | Rejection:
    """A message of readings.validated, or why it is not one (never raises for bad input).

    >>> parse_validated(b'{"household_id": "h1", "meter": "water", "ts": "2026-01-05T00:15:00Z", "value": 1}', b"h1").value
    1.0
    >>> parse_validated(b'{"household_id": "h1", "meter": "water", "ts": "2026-01-05T00:15:00Z", "value": 1}', b"h2").reason.value
    'invalid_field'
    >>> parse_validated(b'not json', None).reason.value
    'not_json'
    """
    if not value:
        return Rejection(RejectReason.NOT_JSON, "empty message")
    try:
        reading = ValidatedReading.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            reason = RejectReason.NOT_JSON
        elif first["type"] == "model_type" or not first["loc"]:
            reason = RejectReason.NOT_AN_OBJECT
        else:
            reason = _reason_for(first)
        return Rejection(reason, _describe(exc))
    if key != reading.household_id.encode():
        # The table's changelog partition is the message's partition: a household's readings
        # must all arrive keyed by it, or its state would be split across workers.
        return Rejection(RejectReason.INVALID_FIELD, "message key is not the reading's household_id",
                         reading.household_id)
    return reading


def parse_feedback_ack(value: bytes | None, key: bytes | None) -> TicketAck | Rejection:
    """A message of tickets.feedback.ack, or why it is not one (never raises for bad input).

    >>> parse_feedback_ack(b"not json", b"h1").reason.value
    'not_json'
    >>> parse_feedback_ack(b"{}", b"h1").reason.value
    'invalid_field'
    """
    ack = parse_model(TicketAck, value)
    if isinstance(ack, Rejection):
        return ack
    if key != ack.household_id.encode():  # the household's state is in the key's partition
        return Rejection(RejectReason.INVALID_FIELD, "message key is not the household_id", ack.household_id)
    return ack


def applied_outcome(ack: TicketAck) -> bool:
    """Whether detection learns from this ack: an outcome the ticket stage applied to its ticket.

    Everything else on tickets.feedback.ack is legitimate and not for detection: its own acks (``by:
    detect``), close acks, and feedback commands rejected or found duplicate (a second staff member's
    outcome for a ticket that has one, a retry without an Idempotency-Key, a feedback without an outcome).
    """
    return (ack.by == "tickets" and ack.result is AckResult.APPLIED and ack.command.event.kind is EventKind.FEEDBACK
            and ack.ticket is not None and ack.ticket.outcome is not None)


class MonitorCache:
    """household -> (live monitor, the state record it corresponds to), for at most ``max_size`` households.

    A monitor is *taken* out while it processes a reading and put back with its new record once
    that record is in the table, so a reading interrupted half-way never leaves a cached monitor
    that is ahead of the table.

    When full, a new household is simply not cached (nothing is evicted): live readings come round
    robin over households, where evicting the least recently used would make every lookup miss
    once there are more households than places; this way the first ``max_size`` always hit.
    It is emptied when partitions are revoked.

    >>> cache = MonitorCache(1)
    >>> cache.put("a", "monitor-a", b"r1"); cache.take("a", b"r1"), len(cache)
    ('monitor-a', 0)
    >>> cache.put("a", "monitor-a", b"r1"); cache.take("a", b"r0") is None  # the table holds another record
    True
    >>> cache.put("a", "monitor-a", b"r1"); cache.put("b", "monitor-b", b"r1"); cache.take("b", b"r1") is None
    True
    >>> cache.take("a", b"r1")
    'monitor-a'
    """

    def __init__(self, max_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.max_size = max_size
        self._entries: dict[str, tuple[HouseholdMonitor, bytes]] = {}

    def take(self, household_id: str, record: bytes | None) -> HouseholdMonitor | None:
        """The cached monitor, removed from the cache, if it is the one that wrote ``record``."""
        entry = self._entries.pop(household_id, None)
        if entry is None:
            return None
        monitor, cached_record = entry
        if record is None or (cached_record is not record and cached_record != record):
            return None  # the table moved on without this worker (or was rebuilt): load it instead
        return monitor

    def put(self, household_id: str, monitor: HouseholdMonitor, record: bytes) -> None:
        if household_id in self._entries or len(self._entries) < self.max_size:
            self._entries[household_id] = (monitor, record)

    def clear(self) -> None:
        self._entries.clear()

    def has_room(self) -> bool:
        return len(self._entries) < self.max_size

    def __contains__(self, household_id: object) -> bool:
        return household_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class Step:
    """One reading applied to its household's monitor, not yet stored."""

    household_id: str
    warnings: list[AnomalyWarning]
    monitor: HouseholdMonitor
    record: bytes
    cleared: tuple[tuple[str, str], ...] = ()  # episodes that ended: (kind, the warning_id that opened them)


@dataclass(slots=True)
class OpenState:
    """A household's monitor until its state is stored (a batch, or the loop's checkpoint): the state it was loaded
    from and the readings applied since."""

    monitor: HouseholdMonitor
    offset: int  # of the last readings.validated message applied (-1: none yet)
    stored_record: bytes | None  # what the table held when the batch opened it
    applied: list[tuple] = field(default_factory=list)  # ((meter, ts, value), offset before it) since loaded


class HouseholdStates:
    """The detect stage's per-reading logic over any mutable mapping (the Faust table, or a dict in tests).

    The table is keyed by the household id as bytes (the key of readings.validated)."""

    def __init__(self, table: MutableMapping[bytes, bytes], timezones: Mapping[str, str], default_timezone: str, *,
                 config: MonitorConfig | None = None, monitor_factory: MonitorFactory = new_monitor,
                 monitor_loads: Callable[[bytes], HouseholdMonitor] = HouseholdMonitor.loads,
                 cache_size: int = DEFAULT_CACHE_SIZE, metrics: DetectMetrics | None = None) -> None:
        self.table, self.default_timezone = table, default_timezone
        # household -> zone: the households file at start, then what the roster says (set_timezone)
        self.timezones: dict[str, str] = dict(timezones)
        self.config, self.monitor_factory, self.monitor_loads = config, monitor_factory, monitor_loads
        self.cache = MonitorCache(cache_size)
        self.metrics = metrics
        #: State records that could not be read (damaged, a newer version, a pickle of before state format 1
        #: without ``migrate_pickled``): each household started afresh. See :meth:`_restore`.
        self.unreadable_states = 0

    def process(self, reading: ValidatedReading, offset: int) -> Step | None:
        """Apply one reading (``offset``: its position in its partition). None if the state already has it.

        A batch of one (:meth:`apply` then :meth:`steps`). Raises whatever a detector raises; the household
        then continues from its stored state.
        """
        opened: dict[str, OpenState] = {}
        applied = self.apply(opened, reading, offset)
        if applied is None:
            self.steps(opened)  # nothing to store: the monitor goes back to the cache
            return None
        (step,) = self.steps(opened)
        warnings, cleared = applied
        return Step(step.household_id, warnings, step.monitor, step.record, cleared)

    def apply(self, opened: "dict[str, OpenState]", reading: ValidatedReading,
              offset: int) -> tuple[list[AnomalyWarning], tuple[tuple[str, str], ...]] | None:
        """Apply one reading to its household's monitor, opened once until stored, in ``opened`` (household
        -> :class:`OpenState`): (warnings, episodes cleared), or None if the state already has the reading.
        :meth:`steps` then gives each household's state to store, dumped once.

        If a detector raises, the exception propagates and the household continues from the state before this
        reading: its stored state with the readings since applied again (the monitor is
        deterministic, and what they raised was sent already).
        """
        household_id = reading.household_id
        entry = opened.get(household_id)
        if entry is None:
            t0 = time.perf_counter()
            entry = opened[household_id] = self._open(household_id)
            if self.metrics is not None:
                self.metrics.phase_seconds["load"].observe(time.perf_counter() - t0)
        if offset <= entry.offset:
            return None
        args = (reading.meter, plain_datetime(reading.ts), reading.value)
        t1 = time.perf_counter()
        try:
            warnings = entry.monitor.process(*args)
            cleared = tuple((kind.value, warning_id) for kind, warning_id in entry.monitor.take_cleared())
        except Exception:
            entry.monitor = self._reopen(household_id, entry)
            raise
        if self.metrics is not None:
            self.metrics.phase_seconds["process"].observe(time.perf_counter() - t1)
        entry.applied.append((args, entry.offset))
        entry.offset = offset
        return warnings, cleared

    def undo_last(self, opened: "dict[str, OpenState]", household_id: str) -> None:
        """Take the household's last applied reading back (what it raised could not be sent: the
        agent dead-letters the reading): the monitor and offset as before it, as if it had failed in a detector."""
        entry = opened.get(household_id)
        if entry is None or not entry.applied:
            return
        _, entry.offset = entry.applied.pop()
        entry.monitor = self._reopen(household_id, entry)

    def steps(self, opened: "dict[str, OpenState]", households: Iterable[str] | None = None) -> list[Step]:
        """The state of every household in ``opened`` (or of those of ``households`` that are) that applied a
        reading, dumped once, to :meth:`store` (after what its readings raised has been sent); each is taken out of
        ``opened``. A household that applied none is put back in the cache."""
        if households is None:
            taken = list(opened.items())
            opened.clear()
        else:
            taken = [(h, opened.pop(h)) for h in households if h in opened]
        result = []
        for household_id, entry in taken:
            if not entry.applied:
                if entry.stored_record is not None:
                    self.cache.put(household_id, entry.monitor, entry.stored_record)
                continue
            t0 = time.perf_counter()
            record = encode_state(entry.offset, entry.monitor.dumps())
            if self.metrics is not None:
                self.metrics.phase_seconds["dump"].observe(time.perf_counter() - t0)
                self.metrics.state_bytes.observe(len(record))
            result.append(Step(household_id, [], entry.monitor, record))
        return result

    def _open(self, household_id: str) -> "OpenState":
        record = self.table.get(household_id.encode())
        if record is None:
            zone = self.timezones.get(household_id, self.default_timezone)
            return OpenState(self.monitor_factory(household_id, zone, self.config), -1, None)
        offset, monitor = self._restore(household_id, record)
        if self.config is not None:  # the config this worker runs with, not the one the state was saved under
            monitor.use_config(self.config)
        return OpenState(monitor, offset, record)

    def _reopen(self, household_id: str, entry: "OpenState") -> HouseholdMonitor:
        """The monitor as it was before the reading that raised: the stored state and the readings applied since."""
        fresh = self._open(household_id)
        for args, _ in entry.applied:
            fresh.monitor.process(*args)
            fresh.monitor.take_cleared()
        return fresh.monitor

    def _current(self, household_id: str) -> tuple[int, HouseholdMonitor, bytes | None]:
        """The household's monitor (taken out of the cache) with its state's readings offset and record;
        a new monitor in its zone (offset -1, record None) if it has no state yet."""
        record = self.table.get(household_id.encode())
        if record is None:
            zone = self.timezones.get(household_id, self.default_timezone)
            return -1, self.monitor_factory(household_id, zone, self.config), None
        offset, monitor = self._restore(household_id, record)
        if self.config is not None:
            monitor.use_config(self.config)
        return offset, monitor, record

    def _restore(self, household_id: str, record: bytes) -> tuple[int, HouseholdMonitor]:
        """The readings offset of a stored record and its monitor (the cached one if it wrote this record).

        A record that cannot be read (:class:`~detectors.state.StateFormatError`) must not stop the household:
        every later reading would fail the same way. It is counted in ``unreadable_states`` and the household
        starts afresh (a new monitor relearns it, warm-up included); its offset is kept when it can be read,
        so a redelivered reading is still skipped. Its next record is in the current format."""
        try:
            offset, monitor_state = decode_state(record)
        except StateFormatError:
            offset, monitor_state = -1, None
        monitor = self.cache.take(household_id, record)
        if monitor is None:
            try:
                if monitor_state is None:
                    raise StateFormatError("no monitor record")
                monitor = self.monitor_loads(monitor_state)
            except StateFormatError as exc:
                self.unreadable_states += 1
                if self.metrics is not None:
                    self.metrics.unreadable_states.inc()
                # the reason names a field or a version, never a reading or the household
                log.warning("unreadable detector state, the household starts afresh: %s", exc)
                zone = self.timezones.get(household_id, self.default_timezone)
                monitor = self.monitor_factory(household_id, zone, self.config)
        return offset, monitor

    def warm(self, household_id: str) -> bool:
        """Load a stored household's monitor into the cache before its next reading needs it (a start or a rebalance
        empties the cache, and a burst right after would pay every household's load at once). True if it loaded
        one. Synchronous, so nothing changes the table or the cache in between; a record it cannot read is left
        for the household's next reading to count and replace (:meth:`_restore`)."""
        if household_id in self.cache or not self.cache.has_room():
            return False
        record = self.table.get(household_id.encode())
        if record is None:
            return False
        try:
            monitor = self.monitor_loads(decode_state(record)[1])
        except StateFormatError:
            return False
        self.cache.put(household_id, monitor, record)
        return True

    def feedback(self, ack: TicketAck) -> tuple[FeedbackEffect, Step]:
        """Give an outcome the ticket stage applied (:func:`applied_outcome`) to the household's monitor (its
        sensitivity for the ticket's kind).

        The state record keeps its readings.validated offset: feedback comes from another topic and
        is made idempotent by the feedback command's key, which the monitor remembers."""
        household_id, ticket = ack.household_id, ack.ticket
        if ticket is None or ticket.outcome is None:
            raise ValueError("not an applied outcome")  # callers check applied_outcome first
        offset, monitor, _ = self._current(household_id)  # feedback before any reading: a new monitor holds it
        effect = monitor.record_feedback(ticket.kind, ticket.outcome.value, ack.command.event.idempotency_key)
        return effect, Step(household_id, [], monitor, encode_state(offset, monitor.dumps()))

    def set_timezone(self, household_id: str, zone: str) -> Step | None:
        """The roster names the household's zone: a Step to store if its monitor now reads another zone (or the
        household has no state yet, so the zone is kept with it), None if nothing changed."""
        self.timezones[household_id] = zone
        offset, monitor, record = self._current(household_id)
        if record is not None and not monitor.set_timezone(zone):
            self.cache.put(household_id, monitor, record)  # unchanged: back where it was
            return None
        return Step(household_id, [], monitor, encode_state(offset, monitor.dumps()))

    def recent_usage(self, household_id: str) -> dict | None:
        """The household's recent use as its stored state has it (for the staff API), or None: no state, no
        reading yet (the roster's time zone alone makes a state), or unreadable. Never raises. Loads the stored
        record and leaves the cache alone: a cached monitor may be in the middle of a reading."""
        try:
            record = self.table.get(household_id.encode())
            if record is None:
                return None
            monitor = self.monitor_loads(decode_state(record)[1])
            return monitor.recent_usage() if monitor.readings else None
        except Exception as exc:  # the ticket is still worth showing without it
            log.warning("recent usage unavailable: %s", type(exc).__name__)  # the type only, as for detectors
            return None

    def store(self, step: Step) -> None:
        self.table[step.household_id.encode()] = step.record  # reassigned every time, so the changelog is written
        self.cache.put(step.household_id, step.monitor, step.record)
        if self.metrics is not None:
            self.metrics.cached_monitors.set(len(self.cache))


def monitor_config(settings: Settings) -> MonitorConfig | None:
    """The detection config file the settings name (``ELDERWATCH_DETECTION_CONFIG``), or None: built-in points.
    Raises :class:`schemas.detection.DetectionConfigError` (one line) for a file that cannot be used."""
    if settings.detection_config is None:
        return None
    return MonitorConfig.from_detection(DetectionConfig.load(settings.detection_config))


class ChangelogTable(MutableMapping):
    """The detect states this worker holds: a dict of household id (bytes) -> state record, whose writes are kept
    for the stage to send to the changelog (:meth:`take_writes`) in the record's partition, the partition of its
    household on the co-partitioned topics (faust's table did the same)."""

    def __init__(self, partitions: int = 1, partitioner=None) -> None:
        self.partitions, self.partitioner = partitions, partitioner or KeyPartitioner()
        self.data: dict[bytes, bytes] = {}
        self._writes: dict[bytes, bytes] = {}

    def partition_of(self, key: bytes) -> int:
        every = range(self.partitions)
        return self.partitioner(key, every, every)

    def __getitem__(self, key: bytes) -> bytes:
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self._writes[key] = value  # the last of a batch is the one written

    def __delitem__(self, key: bytes) -> None:
        del self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def take_writes(self) -> list[tuple[bytes, bytes, int]]:
        """``(key, record, partition)`` written since the last call."""
        writes = [(key, value, self.partition_of(key)) for key, value in self._writes.items()]
        self._writes.clear()
        return writes

    def restore(self, records, skipped: Callable[[], None] | None = None) -> None:
        """Changelog records ``(key, value)`` of a partition, in log order: per key the one that has read furthest
        (:func:`record_offset`), not the last written (``streams/recovery.py`` ``newest_wins`` says why)."""
        for key, value in records:
            if key is None:
                continue
            if value is None:
                self.data.pop(key, None)
                continue
            held = self.data.get(key)
            at, furthest = record_offset(value), (None if held is None else record_offset(held))
            if at is not None and furthest is not None and at < furthest:
                if skipped is not None:
                    skipped()
                continue
            self.data[key] = value

    def drop(self, partitions: set[int]) -> None:
        for key in [key for key in self.data if self.partition_of(key) in partitions]:
            del self.data[key]


@dataclass(frozen=True, slots=True)
class DetectTopics:
    validated: str
    anomalies: str
    warning_commands: str  # tickets.warning: condition_cleared
    feedback: str  # tickets.feedback: detection's close
    feedback_acks: str
    roster: str
    deadletter: str
    changelog: str


class DetectStage:
    """The detect stage over its inputs, with no consumer of its own: readings come from ingest in the same batch
    (:mod:`streams.readings_loop`), and outcomes and roster entries from the same consumer group.

    ``send(topic, key, value, partition)`` is the loop's producer (awaiting it returns the future of the broker's
    acknowledgement). :meth:`apply` applies readings, holding each household's monitor open across batches;
    :meth:`store` (the loop's checkpoint) writes each changed state once; outcomes and roster entries
    (:meth:`learn_from`, :meth:`follow_roster`) are handled one at a time, after the states so far are stored."""

    def __init__(self, topics: DetectTopics, send, metrics: DetectMetrics, settings: Settings, *,
                 timezones: Mapping[str, str], clock: Callable[[], datetime], table: ChangelogTable | None = None,
                 cache_size: int = DEFAULT_CACHE_SIZE, config: MonitorConfig | None = None,
                 migrate_pickled_state: bool = False) -> None:
        self.topics, self.send, self.metrics, self.clock = topics, send, metrics, clock
        self.table = table if table is not None else ChangelogTable(settings.partitions)
        # A pickled state record (before state format 1) is not unpickled unless the operator asks: detectors/state.py
        monitor_loads = functools.partial(HouseholdMonitor.loads, migrate_pickled=migrate_pickled_state)
        self.states = HouseholdStates(self.table, timezones, settings.default_timezone, cache_size=cache_size,
                                      metrics=metrics, config=config, monitor_loads=monitor_loads)
        self.agent_metrics = AgentMetrics.of(metrics.registry)
        deadletter = OutTopic(topics.deadletter, send)
        self.dead_letters = DeadLetters(deadletter, clock,
                                        lambda reason: metrics.dead_lettered.labels(reason=reason.value).inc())
        self.unreadable_acks = DeadLetters(deadletter, clock,
                                           lambda reason: self.agent_metrics.unreadable.labels(agent="detect").inc())
        # The guard's dead letters are not counted by reason: an outcome or a roster entry is not a term of the
        # detect identity.
        self.guard = AgentGuard("detect", "detect", DeadLetters(deadletter, clock), self.agent_metrics)
        self.opened: dict[str, OpenState] = {}
        self.sent: list = []

    # -- readings -------------------------------------------------------------------------------
    async def apply(self, reading: ValidatedReading, offset: int) -> None:
        """One reading (``offset``: where it was written on readings.validated) to its household's monitor; its
        warnings and cleared episodes sent (acknowledged by :meth:`store`)."""
        self.metrics.received.inc()
        try:
            applied = self.states.apply(self.opened, reading, offset)
        except Exception as exc:  # a detector bug must not stop every household's detection
            self.metrics.failed.inc()
            # The household and the exception type only: its message may quote a person's readings.
            log.error("detector failed on a reading at %s@%d: %s", self.topics.validated, offset, type(exc).__name__)
            return
        if applied is None:
            self.metrics.redelivered.inc()
            return
        warnings, cleared_episodes = applied
        key = reading.household_id.encode()
        for warning in warnings:
            self.sent.append(await self.send(self.topics.anomalies, key, warning.model_dump_json().encode(), None))
            self.metrics.warnings.labels(kind=warning.kind.value).inc()
        for kind, warning_id in cleared_episodes:  # the ticket loop decides what a cleared episode means
            cleared = Event(kind=EventKind.CONDITION_CLEARED, idempotency_key=f"cleared:{warning_id}",
                            actor="system", at=self.clock())
            command = TicketCommand(step=TicketStep.WARNING, ticket_id=warning_id, household_id=reading.household_id,
                                    ticket_kind=kind, event=cleared)
            self.sent.append(await self.send(self.topics.warning_commands, key, command.model_dump_json().encode(),
                                             None))
            self.metrics.cleared.inc()
        self.metrics.processed.inc()

    async def store(self, households: Iterable[str] | None = None) -> None:
        """What the readings since the last store raised is acknowledged by the broker, then each household's state
        (of every household held open, or of those of ``households`` that are) is written once and acknowledged: a
        crash in between repeats the readings (the state's offset is from before them)."""
        await delivered(self.sent)
        self.sent.clear()
        for step in self.states.steps(self.opened, households):
            self.states.store(step)
        await self.write_states()

    async def write_states(self) -> None:
        written = [await self.send(self.topics.changelog, key, record, partition)
                   for key, record, partition in self.table.take_writes()]
        await delivered(written)

    # -- outcomes and the roster ------------------------------------------------------------------
    async def learn_from(self, value: bytes | None, key: bytes | None, source: Source) -> None:
        """An applied outcome on tickets.feedback.ack -> the monitor's sensitivity; ack (by: detect); close."""
        ack = parse_feedback_ack(value, key)
        if isinstance(ack, Rejection):  # the ticket stage writes this topic: something else did
            self.metrics.feedback.labels(result="unreadable").inc()
            return await self.unreadable_acks.send(value, key, ack.reason, ack.detail, stage="detect", source=source,
                                                   household_id=ack.household_id)
        if not applied_outcome(ack):
            return  # our own acks, close acks, rejected or duplicate outcomes: not for detection
        command = ack.command
        effect, step = self.states.feedback(ack)
        self.states.store(step)
        await self.write_states()  # before the ack: a redelivery after a crash finds the key and acks again
        result = AckResult.DUPLICATE if effect.duplicate else AckResult.APPLIED
        now = self.clock()
        reply = TicketAck(step=TicketStep.FEEDBACK, by="detect", ticket_id=command.ticket_id,
                          household_id=command.household_id, idempotency_key=command.event.idempotency_key,
                          command=command, result=result, reason=effect.reason, detection=effect.as_dict(), at=now)
        sent = [await self.send(self.topics.feedback_acks, key, reply.model_dump_json().encode(), None)]
        # Detection has learned from it: the loop is closed (idempotent: one close per ticket).
        learned = f"detection: {effect.reason}" + ("; proposes away mode for this household"
                                                    if effect.proposal == "away_mode" else "")
        close = Event(kind=EventKind.CLOSE, idempotency_key=f"close:{command.ticket_id}", actor="system", at=now,
                      notes=learned)
        sent.append(await self.send(self.topics.feedback, key, TicketCommand(
            step=TicketStep.FEEDBACK, ticket_id=command.ticket_id, household_id=command.household_id,
            ticket_kind=command.ticket_kind, event=close).model_dump_json().encode(), None))
        await delivered(sent)
        self.metrics.feedback.labels(result=result.value).inc()
        if effect.sensitivity_after != effect.sensitivity_before:
            self.metrics.sensitivity_changes.labels(direction="down" if effect.sensitivity_after < effect.sensitivity_before
                                                    else "up").inc()

    async def follow_roster(self, value: bytes | None, key: bytes | None, source: Source) -> None:
        """A household's roster entry: its time zone reaches its monitor."""
        try:
            household = Household.model_validate_json(value or b"")
        except ValidationError:
            return  # the ticket stage reads this topic too and dead-letters it: once is enough
        if key != household.household_id.encode():
            return  # likewise
        step = self.states.set_timezone(household.household_id, household.timezone)
        if step is not None:
            self.states.store(step)
            await self.write_states()

    async def handle_other(self, value: bytes | None, key: bytes | None, source: Source) -> None:
        """An outcome or a roster entry (guarded): it reads and writes the household's state at once, so the batch
        so far is stored first."""
        handler = {self.topics.feedback_acks: self.learn_from, self.topics.roster: self.follow_roster}[source.topic]
        await self.store()
        await self.guard.handle(source, value, key, handler)

    async def handle(self, value: bytes | None, key: bytes | None, source: Source) -> None:
        """One message of readings.validated, tickets.feedback.ack or households.roster as a batch of its own
        (tests, and a reading written to readings.validated by hand)."""
        if source.topic != self.topics.validated:
            return await self.handle_other(value, key, source)
        reading = parse_validated(value, key)
        if isinstance(reading, Rejection):
            self.metrics.received.inc()
            sent = await self.dead_letters.send(value, key, reading.reason, reading.detail, stage="detect",
                                                source=source, household_id=reading.household_id)
            return await delivered([sent])
        await self.apply(reading, source.offset)
        await self.store()

    def forget_live_monitors(self) -> None:
        """Partitions moved: households that moved to another worker should not hold memory here."""
        self.states.cache.clear()
        self.metrics.cached_monitors.set(0)


__all__ = ["DEFAULT_CACHE_SIZE", "ChangelogTable", "DetectStage", "DetectTopics", "HouseholdStates", "MonitorCache",
           "Step", "applied_outcome", "decode_state", "encode_state", "monitor_config", "parse_feedback_ack",
           "parse_validated"]
