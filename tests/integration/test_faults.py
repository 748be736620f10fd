"""Fault tests with a ledger: what was produced, and a checker of what came out.

A messy feed (simulated households, 3 % re-sends and garbage) goes through the real worker while
it is broken on purpose. Afterwards the topics are read back and every produced reading must be
accounted for, whatever happened in between (Kafka's own system tests check input set = output
set after hard kills; faust's stress suite counts gaps and duplicates the same way):

* **readings**: the distinct readings on ``readings.validated`` are exactly the clean readings of
  the feed (none lost, none invented); every garbage message is on ``readings.deadletter`` once
  per source offset, with its reason; re-deliveries after a crash are counted, not hidden;
* **warnings**: the distinct warnings on ``anomalies`` are exactly ``elderwatch detect``'s on the
  same readings (compared as JSON text); a warning seen twice is the same text (same
  ``warning_id``), and how many were repeated is reported;
* **tickets**: the tickets rebuilt from the ``.ack`` topics (``dispatch.audit.rebuild``) replay
  without a problem and are exactly the tickets the desk's rules open for those warnings offline.

Scenarios (each ~1 min on two cores): a worker killed with SIGKILL mid-stream and started again;
a second worker joining mid-stream and leaving again (a rebalance each way); a worker paused with
SIGSTOP past its session timeout while another takes over, then resumed; a worker started while its
broker is down, then the broker killed (SIGKILL) and restarted mid-stream.

Besides the topics, the checker holds the detectors' states (the last record per household on the
detect stage's changelog) against an offline replay's, and every ticket command's ack: each ticket
opened once, no command (an escalation's deadline is in its key) applied twice.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import WorkerProcess, consumer_group, produce

from detectors.monitor import HouseholdMonitor
from detectors.offline import detect_file, new_monitor
from dispatch.audit import rebuild
from dispatch.desk import HouseholdDesk, RosterRules, handle
from elderwatch.feed import canonical_messages, with_mess
from elderwatch.roster import read_households_file
from elderwatch.simulator import simulate
from elderwatch.topic_reader import read_acks, read_to_end
from schemas.anomaly import AnomalyWarning
from schemas.tickets import AckResult, TicketCommand
from streams.ingest import Rejection, parse_raw
from streams.detect import decode_state
from streams.metrics import read_counts
from streams.tables import DETECT_STATE, changelog_topic

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)  # the ingest clock for the ledger: nothing is "in the future"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("faults-sim")
    simulate(households=3, days=32, seed=11, out_dir=out, warmup_days=24, anomaly_rate=3.0)
    readings, households = out / "readings.csv", out / "households.csv"
    clean = sorted(canonical_messages(readings), key=lambda m: m.ts)
    messages = list(with_mess(clean, fraction=0.03, seed=5))
    garbage = sum(isinstance(parse_raw(m.value, now=NOW), Rejection) for m in messages)
    monitors = {}  # the offline monitors, to hold the stage's restored states against

    def remembered(household_id, zone, config):
        monitors[household_id] = new_monitor(household_id, zone, config)
        return monitors[household_id]

    warnings = [w.model_dump_json() for w in detect_file(readings, households, monitor_factory=remembered)]
    assert warnings and garbage and len(messages) > len(clean) + garbage, "the ledger must have all three kinds"
    roster = read_households_file(households)[0]
    return {"messages": [(m.key, m.value) for m in messages], "readings": {_reading_key(json.loads(m.value))
                                                                           for m in clean},
            "garbage": garbage, "warnings": warnings, "tickets": _offline_tickets(warnings, roster),
            "households": households, "roster": roster,
            "states": {household: _comparable(monitor.to_state()) for household, monitor in monitors.items()}}


def _comparable(state: dict) -> dict:
    # Ended episodes wait in the state until taken: the stage takes them after every reading (as
    # condition_cleared commands, which the ticket check covers); the offline replay never does.
    return {name: value for name, value in state.items() if name != "cleared"}


def _reading_key(reading: dict) -> tuple:
    return reading["household_id"], reading["meter"], datetime.fromisoformat(reading["ts"]), round(reading["value"], 9)


def _offline_tickets(warnings: list[str], roster) -> set[str]:
    """The ticket ids the desk's rules open for these warnings (one household's warnings in order)."""
    by_household = defaultdict(list)
    for text in warnings:
        warning = AnomalyWarning.model_validate_json(text)
        by_household[warning.household_id].append(warning)
    rosters = {h.household_id: h for h in roster}
    tickets = set()
    for household_id, items in by_household.items():
        desk = HouseholdDesk(household_id=household_id, roster=rosters.get(household_id))
        for warning in sorted(items, key=lambda w: (w.detected_at, w.warning_id)):
            desk = handle(desk, TicketCommand.warning_from(warning, at=warning.detected_at), warning.detected_at,
                          RosterRules()).desk
        tickets.update(desk.tickets)
    return tickets


def _worker(bootstrap: str, prefix: str, data_dir: Path, ledger: dict) -> WorkerProcess:
    # A short session timeout: a killed worker's partitions move after 10 s, not faust's default 60.
    return WorkerProcess(bootstrap, prefix, data_dir, extra_env={"ELDERWATCH_HOUSEHOLDS_FILE": str(ledger["households"]),
                                                                 "ELDERWATCH_CONSUMER_SESSION_TIMEOUT_S": "10"})


def _counts(worker: WorkerProcess) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
            return read_counts(response.read().decode(), "detect")
    except OSError:
        return {}


def _lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages of ``topics`` not yet committed by the worker's consumer group."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        lag = 0
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            ends = consumer.end_offsets(tps)
            lag += sum(ends[tp] - (consumer.committed(tp) or 0) for tp in tps)
        return lag
    finally:
        consumer.close()


def _until(predicate, *, timeout: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {timeout:.0f} s: {log()}")
        time.sleep(1.0)


def _drained(bootstrap: str, prefix: str, worker: WorkerProcess, timeout: float = 300.0) -> None:
    stages = [f"{prefix}.{t}" for t in ("readings.raw", "readings.by-household", "anomalies", "tickets.warning")]
    # Twice in a row at zero: a stage may still be writing what the previous one committed.
    zero = []
    def settled() -> bool:
        zero.append(all(_lag(bootstrap, consumer_group(prefix, topic), [topic]) == 0 for topic in stages))
        return zero[-2:] == [True, True]
    _until(settled, timeout=timeout, what="drained", log=worker.log_tail)


def check(bootstrap: str, prefix: str, ledger: dict) -> dict:
    """Read the topics back and hold them against the ledger; returns what was repeated (not lost)."""
    topic = lambda name: f"{prefix}.{name}"  # noqa: E731
    validated = Counter(_reading_key(json.loads(r.value)) for r in read_to_end(bootstrap, [topic("readings.validated")]))
    lost = ledger["readings"] - set(validated)
    invented = set(validated) - ledger["readings"]
    assert not lost and not invented, f"readings lost: {len(lost)}, invented: {len(invented)}"

    letters = [json.loads(r.value) for r in read_to_end(bootstrap, [topic("readings.deadletter")])]
    by_source = {(d["source_topic"], d["source_partition"], d["source_offset"]): d for d in letters}
    assert all(d["source_topic"] == topic("readings.raw") for d in by_source.values()), Counter(
        (d["stage"], d["reason"]) for d in by_source.values())
    assert len(by_source) == ledger["garbage"], (len(by_source), ledger["garbage"], Counter(
        (d["stage"], d["reason"]) for d in by_source.values()))

    streamed = Counter(r.value.decode() for r in read_to_end(bootstrap, [topic("anomalies")]))
    assert set(streamed) == set(ledger["warnings"]), (
        f"missing {len(set(ledger['warnings']) - set(streamed))}, invented {len(set(streamed) - set(ledger['warnings']))}")

    acks, unreadable = read_acks(bootstrap, f"{prefix}.")
    audit = rebuild(acks)
    assert not unreadable and not audit.problems, (unreadable, audit.problems[:5])
    assert set(audit.tickets) == ledger["tickets"], (sorted(set(audit.tickets) ^ ledger["tickets"]))
    # Every command changed its ticket at most once: each ticket opened once, each escalation (its
    # deadline is in the command's key) applied once, however often the command was read.
    applied = Counter((a.ticket_id, a.idempotency_key) for a in acks if a.by == "tickets" and a.result == AckResult.APPLIED)
    assert max(applied.values(), default=1) == 1, [key for key, n in applied.items() if n > 1][:5]
    opened = Counter(a.ticket_id for a in acks if a.by == "tickets" and a.result == AckResult.APPLIED
                     and a.ticket is not None and a.ticket.version == 0)
    assert set(opened) == ledger["tickets"] and set(opened.values()) == {1}, opened

    # The detectors' state, as the stage's changelog holds it last, is the offline replay's.
    latest = {r.key.decode(): r.value for r in read_to_end(bootstrap, [changelog_topic(prefix, DETECT_STATE)])}
    states = {household: _comparable(HouseholdMonitor.loads(decode_state(record)[1]).to_state())
              for household, record in latest.items() if record is not None}
    assert states.keys() == ledger["states"].keys()
    # A reading repeated on readings.validated (at-least-once after a crash) is a batch ingest ran again. If its
    # detect states had been stored, detection sees the reading again as not newer than its meter's last: ignored,
    # and counted once per repeat; if not, the state from before the batch applies it as the first time. So a
    # household's count is the offline replay's plus at most its repeats; everything else is the replay's.
    repeats = Counter()
    for (household, *_), n in validated.items():
        repeats[household] += n - 1
    for household, state in states.items():
        offline = ledger["states"][household]["out_of_order"]
        assert offline <= state.pop("out_of_order") <= offline + repeats[household], household
    differing = [household for household in states
                 if states[household] != {k: v for k, v in ledger["states"][household].items() if k != "out_of_order"}]
    assert not differing, "state after recovery differs from the offline replay: " + "; ".join(
        f"{household} at {_first_difference(states[household], ledger['states'][household])}" for household in differing)
    return {"readings_repeated": sum(repeats.values()),
            "dead_letters_repeated": len(letters) - len(by_source),
            "warnings_repeated": sum(n - 1 for n in streamed.values())}


def _first_difference(streamed, offline, path: str = "") -> str:
    """Where two JSON-like values first differ, e.g. ``detectors.night.mean: 0.5 != 0.25``."""
    if isinstance(streamed, dict) and isinstance(offline, dict):
        for key in sorted(streamed.keys() | offline.keys(), key=str):
            if streamed.get(key) != offline.get(key):
                return _first_difference(streamed.get(key), offline.get(key), f"{path}.{key}" if path else str(key))
    if isinstance(streamed, list) and isinstance(offline, list) and len(streamed) == len(offline):
        for i, (a, b) in enumerate(zip(streamed, offline)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"{path}: {str(streamed)[:120]} != {str(offline)[:120]}"


def test_a_worker_killed_mid_stream_loses_nothing(kafka_bootstrap, tmp_path, ledger):
    prefix = f"f{uuid.uuid4().hex[:8]}"
    first = _worker(kafka_bootstrap, prefix, tmp_path / "first", ledger).start()
    second = None
    try:
        produce(kafka_bootstrap, first.topic("readings.raw"), ledger["messages"])
        total = len(ledger["messages"])
        _until(lambda: _counts(first).get("processed", 0) >= total * 0.4, timeout=300, what="40 % through",
               log=first.log_tail)
        os.killpg(first.process.pid, signal.SIGKILL)  # no goodbye: nothing flushed, nothing committed on the way out
        first.process.wait(10)
        second = _worker(kafka_bootstrap, prefix, tmp_path / "second", ledger).start()
        _drained(kafka_bootstrap, prefix, second)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    repeated = check(kafka_bootstrap, prefix, ledger)
    print(f"after SIGKILL: {repeated}")


def _first_worker_through_the_first_half(bootstrap: str, tmp_path: Path, ledger: dict) -> tuple[str, WorkerProcess, int]:
    """A worker on a fresh prefix, the first half of the feed produced, and 30 % of it processed."""
    prefix = f"f{uuid.uuid4().hex[:8]}"
    half = len(ledger["messages"]) // 2
    first = _worker(bootstrap, prefix, tmp_path / "first", ledger).start()
    try:
        produce(bootstrap, first.topic("readings.raw"), ledger["messages"][:half])
        _until(lambda: _counts(first).get("processed", 0) >= half * 0.3, timeout=300, what="30 % through",
               log=first.log_tail)
    except BaseException:
        first.stop()
        raise
    return prefix, first, half


def test_a_second_worker_joins_and_leaves_mid_stream(kafka_bootstrap, tmp_path, ledger):
    prefix, first, half = _first_worker_through_the_first_half(kafka_bootstrap, tmp_path, ledger)
    messages = ledger["messages"]
    second = None
    try:
        second = _worker(kafka_bootstrap, prefix, tmp_path / "second", ledger).start()  # rebalance: partitions split
        # Ready: it holds its partitions. Before that the first worker may take the whole second half itself.
        second.wait_ready()
        produce(kafka_bootstrap, first.topic("readings.raw"), messages[half:])
        _until(lambda: _counts(second).get("received", 0) > 0, timeout=300, what="shared with the second worker",
               log=second.log_tail)
        second.stop()  # and back: the first takes every partition again
        _drained(kafka_bootstrap, prefix, first)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    repeated = check(kafka_bootstrap, prefix, ledger)
    print(f"after a join and a leave: {repeated}")


def test_a_worker_paused_past_its_session_rejoins_and_loses_nothing(kafka_bootstrap, tmp_path, ledger):
    # SIGSTOP: the process is alive but silent (a long GC pause, a frozen VM), so the group gives its
    # partitions to the other worker. Resumed, it still holds a batch it was working on and finds
    # itself out of the group: what it writes then may repeat readings, never lose one.
    prefix, first, half = _first_worker_through_the_first_half(kafka_bootstrap, tmp_path, ledger)
    messages = ledger["messages"]
    second = None
    try:
        os.killpg(first.process.pid, signal.SIGSTOP)
        try:
            second = _worker(kafka_bootstrap, prefix, tmp_path / "second", ledger).start()
            # the group waits out the session timeout (10 s), then the second worker has every partition
            _until(lambda: _counts(second).get("processed", 0) > 0, timeout=300, what="taken over by the second worker",
                   log=second.log_tail)
        finally:
            os.killpg(first.process.pid, signal.SIGCONT)
        produce(kafka_bootstrap, first.topic("readings.raw"), messages[half:])
        second.stop()  # the resumed worker must have rejoined: it alone finishes the feed
        _drained(kafka_bootstrap, prefix, first)
        assert first.process.poll() is None, first.log_tail()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    repeated = check(kafka_bootstrap, prefix, ledger)
    print(f"after SIGSTOP and SIGCONT: {repeated}")


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own, to stop and kill without disturbing the session's."""
    from elderwatch.localkafka import LocalKafka

    broker = LocalKafka(log_path=tmp_path / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_worker_started_before_its_broker_and_a_broker_killed_mid_stream_lose_nothing(own_broker, tmp_path,
                                                                                         ledger):
    prefix = f"f{uuid.uuid4().hex[:8]}"
    messages = ledger["messages"]
    half = len(messages) // 2
    own_broker.stop(keep_data=True)
    worker = _worker(own_broker.address, prefix, tmp_path / "worker", ledger).launch()
    try:
        time.sleep(5)  # the worker tries, fails, waits (ELDERWATCH_BROKER_WAIT_S) instead of crashing
        assert worker.process.poll() is None, worker.log_tail()
        own_broker.start()
        worker.wait_healthy(timeout=120)
        produce(own_broker.address, worker.topic("readings.raw"), messages[:half])
        _until(lambda: _counts(worker).get("processed", 0) >= half * 0.3, timeout=300, what="30 % through",
               log=worker.log_tail)
        own_broker.kill()  # a crash: no controlled shutdown, clients see connections drop
        time.sleep(3)
        own_broker.start()
        produce(own_broker.address, worker.topic("readings.raw"), messages[half:])
        _drained(own_broker.address, prefix, worker)
        assert worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
    repeated = check(own_broker.address, prefix, ledger)
    print(f"after a late broker and a broker crash: {repeated}")
