"""Recovery time after kill -9: a worker re-reading its households' state from the changelogs.

The worker's store is ``memory://``, so every start reads each table's changelog from the beginning.
This bench fills the three tables' changelogs directly (what recovery reads, nothing else), with
realistic records: simulated households run for ``--days`` through the offline detectors
(``detectors.offline``) and the ingest rules, their states reused under ``--households`` different
household ids, each record in the partition faust would have written it to (Kafka's default
partitioner on the household id: the key of the topic whose event wrote it, see
:func:`partition_for`):

* ``detect-household-state``: key the household id, value ``streams.detect.encode_state`` (the readings
  offset, then ``HouseholdMonitor.dumps()``);
* ``ingest-series-state``: two series per household, key the JSON string ``"<household>/<meter>"``, value
  ``SeriesState.to_json()`` as JSON;
* ``tickets-households``: the household's desk with its roster entry (no ticket).

Then, per size (0 households: the worker's own start-up, the baseline; ``--mid``; ``--households``; and
``--households`` plus ``--uncompacted-hours`` of readings' writes, which the broker has not compacted
yet; and of their small series-state records alone), a worker is started on that app id (fresh
consumer group) and timed from process start until ``/ready`` answers 200 holding every partition;
then ``--repeats`` times: kill -9 (``os.killpg``, SIGKILL), start again at once, time again. Last,
two workers on the compacted ``--households`` state: kill -9 one and time until the survivor is ready
with every partition, with faust's default standby replica and with none.

    python -m bench.bench_recovery [--households 15000 --mid 1500 --uncompacted-hours 1 --repeats 3]
                                   [--out bench/results/recovery.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from aiokafka.partitioner import murmur2  # what faust's producer partitions with (DefaultPartitioner)

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
HEARTBEAT_S = 3.0  # faust's broker_heartbeat_interval (default; elderwatch does not set it)
METERS = ("electricity", "water")


def partition_for(household_id: str, partitions: int) -> int:
    """The partition of every state record of ``household_id``: Kafka's default partitioner on its UTF-8 bytes.

    faust writes a table's changelog record to the partition of the event being processed, and the
    events that write each table (readings.by-household, readings.validated, the ticket topics) are
    keyed by the household id (aiokafka's default partitioner: murmur2, like Java's). So the series
    key ``"<household>/<meter>"`` lands where its household does, not where its own bytes would.

    >>> partition_for("hh-000001", 4), partition_for("hh-000002", 4)
    (2, 0)
    """
    return (murmur2(household_id.encode()) & 0x7FFFFFFF) % partitions


# -- realistic state ------------------------------------------------------------------------------

@dataclass
class Template:
    """One simulated household's state after ``days``: what the three tables hold for it."""

    household_id: str
    monitor_state: dict  # HouseholdMonitor.to_state()
    readings: int
    series: dict[str, dict]  # meter -> SeriesState.to_json()
    roster: object  # schemas.households.Household


def templates(households: int, days: int, seed: int, work: Path) -> list[Template]:
    """Simulate ``households`` for ``days`` and run them through the detectors and the ingest rules."""
    from datetime import datetime

    from detectors.offline import detect_readings, load_household_timezones, new_monitor, read_readings
    from elderwatch.roster import read_households_file
    from elderwatch.simulator import simulate
    from schemas.readings import MeterReading
    from streams.ingest import IngestLimits, SeriesState, accept_reading

    sim = simulate(households=households, days=days, seed=seed, out_dir=work / "sim")
    readings = sim.out_dir / "readings.csv"
    monitors = {}

    def factory(hid, zone, config):
        monitors[hid] = new_monitor(hid, zone, config)
        return monitors[hid]

    for _ in detect_readings(read_readings(readings), load_household_timezones(sim.out_dir / "households.csv"),
                             monitor_factory=factory):
        pass
    # The series state only remembers the de-duplication horizon: its last 72 hours of readings make it.
    limits = IngestLimits()
    last = max(ts for _, _, ts, _ in read_readings(readings))
    since: datetime = last - limits.dedup_horizon - timedelta(hours=24)
    series: dict[tuple[str, str], SeriesState] = {}
    for n, (hid, meter, ts, value) in enumerate(read_readings(readings)):
        if ts >= since:
            state = series.setdefault((hid, meter.value), SeriesState())
            accept_reading(state, MeterReading(household_id=hid, meter=meter, ts=ts, value=value), limits)
            state.note_applied(n, n % PARTITIONS, n)
    roster = {h.household_id: h for h in read_households_file(sim.out_dir / "households.csv")[0]}
    return [Template(hid, m.to_state(), m.readings,
                     {meter: series[(hid, meter)].to_json() for meter in METERS if (hid, meter) in series},
                     roster[hid])
            for hid, m in sorted(monitors.items())]


def household_id(i: int) -> str:
    return f"hr-{i:06d}"


def state_records(templates: list[Template], households: int, partitions: int, offset_base: int = 0,
                  updates: int = 0, detect_updates: bool = True) -> Iterator[tuple[str, int, bytes, bytes]]:
    """``(table, partition, key, value)`` of every household's state: household ``i`` gets template
    ``i % len(templates)`` under its own id (in the monitor state and the desk too).

    ``updates``: then that many readings per household, round robin over the households as they arrive,
    each writing what a reading writes: the household's detector state (same size, next offset; not with
    ``detect_updates=False``) and one series' state. Compaction would keep only the last of each key; the
    broker compacts only closed segments, so the records written since the active segment began are all
    read at recovery.
    """
    from detectors.state import dump_record
    from dispatch.desk import HouseholdDesk, with_roster
    from streams.detect import encode_state
    from streams.tables import DETECT_STATE, SERIES_STATE, TICKET_DESKS

    monitors: dict[int, bytes] = {}

    def series(hid: str, meter: str, state: dict, offset: int) -> tuple[str, int, bytes, bytes]:
        return (SERIES_STATE, partition_for(hid, partitions), json.dumps(f"{hid}/{meter}").encode(),
                json.dumps({**state, "o": offset}, separators=(",", ":")).encode())

    for i in range(households):
        t = templates[i % len(templates)]
        hid = household_id(i)
        p = partition_for(hid, partitions)
        key = hid.encode()
        monitor = dump_record({**t.monitor_state, "household_id": hid})
        if updates and detect_updates:
            monitors[i] = monitor
        yield DETECT_STATE, p, key, encode_state(offset_base + i, monitor)
        for meter, state in t.series.items():
            yield series(hid, meter, state, offset_base + i)
        desk = with_roster(HouseholdDesk(household_id=hid), t.roster.model_copy(update={"household_id": hid}))
        yield TICKET_DESKS, p, key, desk.model_dump_json().encode()
    for u in range(updates):
        for i in range(households):
            t = templates[i % len(templates)]
            hid = household_id(i)
            offset = offset_base + (u + 1) * households + i
            if detect_updates:
                yield DETECT_STATE, partition_for(hid, partitions), hid.encode(), encode_state(offset, monitors[i])
            meter = METERS[u % len(METERS)]
            if meter in t.series:
                yield series(hid, meter, t.series[meter], offset)


@dataclass
class Fill:
    households: int
    records: dict[str, int] = field(default_factory=dict)  # table -> records
    payload: dict[str, int] = field(default_factory=dict)  # table -> key + value bytes
    on_disk: dict[str, int] = field(default_factory=dict)  # table -> bytes of the partition logs
    seconds: float = 0.0


def fill(bootstrap: str, app_id: str, records: Iterator[tuple[str, int, bytes, bytes]], households: int) -> Fill:
    """Produce ``records`` into ``app_id``'s changelogs (aiokafka, as the worker does: its C record
    builder; kafka-python's pure-Python CRC-32C makes hundreds of MiB slow)."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from streams.tables import ALL_TABLES, changelog_topic

    result = Fill(households, {t: 0 for t in ALL_TABLES}, {t: 0 for t in ALL_TABLES})

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                    max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024)
        await producer.start()
        try:
            pending = []
            for table, partition, key, value in records:
                pending.append(await producer.send(changelog_topic(app_id, table), value=value, key=key,
                                                   partition=partition))
                result.records[table] += 1
                result.payload[table] += len(key) + len(value)
                if len(pending) >= 10_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    began = time.monotonic()
    asyncio.run(produce())
    result.seconds = time.monotonic() - began
    return result


def log_bytes(kafka_log_dir: Path, topic: str) -> int:
    return sum(f.stat().st_size for f in kafka_log_dir.glob(f"{topic}-*/*.log"))


# -- workers ----------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat: not idle, not waiting on I/O)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU that processes other than this bench's (itself, its broker, its workers) use: the machine is
    shared (CI, tests). A measurement is taken on a quiet machine and repeated if others were busy in it."""

    def __init__(self) -> None:
        self.own: set[int] = {os.getpid()}

    def snapshot(self) -> tuple[float, float, dict[int, float]]:
        return time.monotonic(), busy_seconds(), {p: cpu_seconds(p) for p in self.own}

    def cores_since(self, snap: tuple[float, float, dict[int, float]]) -> float:
        """Cores others used on average since ``snap`` (a process of ours that ended since is counted as
        others' for its last moments: it was killed, idle)."""
        began, total, own = snap
        now, total_now, own_now = self.snapshot()
        ours = sum(cpu - own.get(p, 0.0) for p, cpu in own_now.items() if cpu == cpu)  # nan: ended
        return max(0.0, (total_now - total - ours) / max(now - began, 1e-3))

    def wait_quiet(self, below: float = 0.1, window: float = 3.0, windows: int = 5,
                   timeout: float = 2400.0) -> float:
        """Until others used less than ``below`` of a core in each of ``windows`` successive ``window``
        seconds (a test suite pauses for a few seconds now and then); seconds waited."""
        began, quiet = time.monotonic(), 0
        while quiet < windows and time.monotonic() - began < timeout:
            snap = self.snapshot()
            time.sleep(window)
            quiet = quiet + 1 if self.cores_since(snap) < below else 0
        return time.monotonic() - began


LOAD = OtherLoad()
#: a measurement in which others used more than this many cores on average is taken again
OTHERS_MAX_CORES = 0.35
ATTEMPTS = 10


class Worker:
    """``elderwatch worker`` in its own session (kill -9 reaches the whole group)."""

    def __init__(self, bootstrap: str, app_id: str, work: Path, name: str, env: dict[str, str]) -> None:
        from elderwatch.localkafka import free_port

        self.port = free_port()
        self.log = work / f"{name}.log"
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELDERWATCH_APP_ID": app_id,
                    "ELDERWATCH_TOPIC_PREFIX": f"{app_id}.", "ELDERWATCH_WEB_PORT": str(self.port),
                    "ELDERWATCH_PARTITIONS": str(PARTITIONS), "ELDERWATCH_DATA_DIR": str(work / name), **env}
        self.process: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> "Worker":
        from elderwatch.localkafka import _die_with_parent_preexec

        self.started = time.monotonic()
        # its own session (kill -9 of the group); killed by the kernel if the bench dies first
        self.process = subprocess.Popen([sys.executable, "-m", "elderwatch.cli", "worker", "--loglevel", "warn"],
                                        env=self.env, cwd=REPO, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=_die_with_parent_preexec(os.getpid()))
        LOAD.own.add(self.process.pid)
        return self

    def ready(self) -> tuple[int | None, dict]:
        """(HTTP status of /ready, its body); (None, {}) while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, {}
        except (OSError, ValueError):
            return None, {}

    def wait(self, predicate, timeout: float) -> tuple[float, dict]:
        """Poll /ready every 0.1 s until ``predicate(status, body)``; (the time it became true, the body)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log}")
            status, body = self.ready()
            now = time.monotonic()
            if predicate(status, body):
                return now, body
            time.sleep(0.1)
        raise RuntimeError(f"worker not there within {timeout:.0f} s; see {self.log}")

    def start_and_time(self, timeout: float, probe: tuple[str, str] | None = None) -> dict:
        """Start, then seconds until the web server answers (any /ready status), until the group has
        assigned it partitions (``/ready`` lists them, 503 while their tables recover) and until ready with
        every partition. ``probe``: (household id, staff id) asked of the staff API once ready (not timed):
        is its state there (desk and detector state)?"""
        self.start()
        marks: dict[str, float] = {}

        def seen(status, body) -> bool:
            now = time.monotonic() - self.started
            if status is not None:
                marks.setdefault("answers_s", now)
            if body.get("partitions"):
                marks.setdefault("assigned_s", now)
            return status == 200 and bool(body.get("every_partition"))

        ready, _ = self.wait(seen, timeout)
        result = {**marks, "ready_s": ready - self.started, "cpu_s": cpu_seconds(self.process.pid)}
        result["assigned_s"] = min(result.get("assigned_s", result["ready_s"]), result["ready_s"])
        result["recovering_s"] = result["ready_s"] - result["assigned_s"]
        if probe is not None:
            result["state_found"] = self.household_state(*probe)
        return result

    def household_state(self, household_id: str, staff_id: str) -> bool:
        """The staff API knows the household (its desk) and shows its recent usage (its detector state)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1/households/{household_id}",
                                         headers={"X-Staff-Id": staff_id})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status == 200 and bool(json.loads(response.read()).get("recent_usage"))
        except (OSError, ValueError):
            return False

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (the worker leaves its group), SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()


def wait_idle(pids: list[int], cpu_below: float = 0.1, window: float = 2.0, timeout: float = 300.0) -> None:
    """Until the processes together used less than ``cpu_below`` of a core over ``window`` seconds
    (a standby has caught up with its changelog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(window)
        if (sum(cpu_seconds(p) for p in pids) - before) / window < cpu_below:
            return
    raise RuntimeError(f"workers still busy after {timeout:.0f} s")


def single_worker(bootstrap: str, app_id: str, work: Path, repeats: int, env: dict[str, str],
                  timeout: float, probe: tuple[str, str] | None) -> dict:
    """The first start (fresh group), then ``repeats`` times kill -9 and start again.

    Each kill comes at a random moment 0-3 s after ready (faust's heartbeat interval): killed right away,
    the dead member's session would always expire the same time after its last heartbeat, and a recovery
    shorter than the interval would hide inside that wait. A start during which other processes were busy
    is taken again (a first start after a SIGTERM: the worker left the group, which is then empty again)."""
    rng = random.Random(0)
    worker = Worker(bootstrap, app_id, work, f"{app_id}-single", env)
    retaken = 0

    def measured(name: str, before) -> dict:
        nonlocal retaken
        best = None
        for attempt in range(ATTEMPTS):
            LOAD.wait_quiet()
            before()
            snap = LOAD.snapshot()
            result = worker.start_and_time(timeout, probe)
            result["others_cores"] = LOAD.cores_since(snap)
            print(f"  {app_id}: {name} ready in {result['ready_s']:.1f} s "
                  f"(assigned at {result.get('assigned_s', 0):.1f}), state found: {result.get('state_found')}, "
                  f"others used {result['others_cores']:.2f} cores", flush=True)
            if result["others_cores"] <= OTHERS_MAX_CORES:
                return result
            best = min(best or result, result, key=lambda r: r["others_cores"])
            if attempt == ATTEMPTS - 1:
                return best  # the report shows how busy the others were in the measurements kept
            retaken += 1
            worker.stop()  # the worker leaves the group: empty again, as for the first start
            if name != "first start":
                worker.start_and_time(timeout)  # ready again, to be killed
        raise AssertionError("unreachable")

    def kill_at_random() -> None:
        time.sleep(rng.uniform(0, HEARTBEAT_S))
        worker.kill9()

    try:
        first = measured("first start", lambda: None)
        restarts = [measured(f"after kill -9 #{r + 1}", kill_at_random) for r in range(repeats)]
    finally:
        worker.stop()  # leaves the group: the next phase does not wait for a dead member
    return {"first": first, "restarts": restarts, "retaken": retaken}


def failover(bootstrap: str, app_id: str, work: Path, repeats: int, env: dict[str, str], timeout: float,
             standby_replicas: int) -> dict:
    """Two workers; kill -9 one; seconds until the survivor is ready holding every partition.

    ``standby_replicas`` goes to faust's own ``TABLE_STANDBY_REPLICAS`` (default 1; elderwatch does not set it)."""
    env = {**env, "TABLE_STANDBY_REPLICAS": str(standby_replicas)}
    tag = f"{app_id}-standby{standby_replicas}"
    survivor = Worker(bootstrap, app_id, work, f"{tag}-a", env)
    victim = Worker(bootstrap, app_id, work, f"{tag}-b", env)
    runs, retaken = [], 0
    try:
        survivor.start_and_time(timeout)
        while len(runs) < repeats and retaken < ATTEMPTS:
            victim.start()
            victim.wait(lambda status, body: status == 200 and body.get("partitions"), timeout)
            survivor.wait(lambda status, body: status == 200 and not body.get("every_partition"), timeout)
            # both hold two partitions; standbys (if any) read up to the end of their changelogs
            wait_idle([survivor.process.pid, victim.process.pid])
            LOAD.wait_quiet()
            snap = LOAD.snapshot()
            killed = time.monotonic()
            victim.kill9()
            unready, _ = survivor.wait(lambda status, body: status != 200 or body.get("every_partition"), timeout)
            ready, _ = survivor.wait(lambda status, body: status == 200 and body.get("every_partition"), timeout)
            run = {"unready_s": unready - killed, "ready_s": ready - killed, "recovering_s": ready - unready,
                   "others_cores": LOAD.cores_since(snap)}
            print(f"  {tag}: survivor ready {run['ready_s']:.1f} s after kill -9 "
                  f"(recovering {run['recovering_s']:.1f} s), others used {run['others_cores']:.2f} cores", flush=True)
            if run["others_cores"] <= OTHERS_MAX_CORES:
                runs.append(run)
            else:
                retaken += 1
    finally:
        victim.kill9()
        survivor.stop()
    return {"runs": runs, "retaken": retaken}


# -- report -------------------------------------------------------------------------------------------

def spread(values: list[float]) -> str:
    """``median (min–max)`` in seconds, one decimal.

    >>> spread([3.04, 1.0, 2.0]), spread([0.1, -1e-5])
    ('2.0 (1.0–3.0)', '0.0 (0.0–0.1)')
    """
    def one(v: float) -> str:
        return f"{round(v, 1) + 0.0:.1f}"  # no "-0.0" for a moment's rounding below zero

    return f"{one(statistics.median(values))} ({one(min(values))}–{one(max(values))})"


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def revision() -> str:
    """The commit the bench ran at (and whether tracked files differed from it)."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} CPUs ({cpu}), {mem / 2**20:.0f} GiB RAM; Python {platform.python_version()}"


@dataclass(frozen=True)
class Case:
    households: int
    updates: int = 0  # readings per household written after the state, not compacted
    detect_updates: bool = True  # False: only their series-state records

    @property
    def label(self) -> str:
        """
        >>> Case(15000).label, Case(15000, 8).label, Case(15000, 8, False).label
        ('15,000', '15,000 + 8 readings each, uncompacted', '15,000 + 8 series-state writes each, uncompacted')
        """
        if not self.updates:
            return f"{self.households:,}"
        what = "readings" if self.detect_updates else "series-state writes"
        return f"{self.households:,} + {self.updates} {what} each, uncompacted"


SEGMENT_BYTES, SEGMENT_HOURS = 2**30, 168  # Kafka's defaults (log.segment.bytes, log.roll.hours); not set by elderwatch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=15_000)
    parser.add_argument("--mid", type=int, default=1_500, help="an intermediate size (0: none)")
    parser.add_argument("--uncompacted-hours", type=float, default=1.0,
                        help="two further cases: --households plus this many hours of readings (15-minute, both "
                             "meters) written after the state and not compacted; and of their series-state records "
                             "only (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--templates", type=int, default=24, help="simulated households whose states are reused")
    parser.add_argument("--days", type=int, default=60, help="days the simulated households ran")
    parser.add_argument("--session-timeout", type=float, default=60.0,
                        help="ELDERWATCH_CONSUMER_SESSION_TIMEOUT_S of the workers (60: the default)")
    parser.add_argument("--no-failover", action="store_true", help="skip the two-worker runs")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "recovery.md",
                        help="the report; the measurements go beside it as .json")
    parser.add_argument("--report-only", action="store_true", help="write the report again from the .json")
    args = parser.parse_args(argv)
    raw = args.out.with_suffix(".json")
    if not args.report_only:
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(measure(args), indent=1) + "\n")
    args.out.write_text(report(json.loads(raw.read_text())))
    print(f"written {args.out} and {raw}")
    return 0


def measure(args) -> dict:
    from elderwatch.localkafka import LocalKafka
    from elderwatch.settings import Settings
    from elderwatch.worker import ensure_topics
    from streams.tables import ALL_TABLES, changelog_topic

    work = Path(tempfile.mkdtemp(prefix="elderwatch-bench-recovery-"))
    began = time.monotonic()
    made = templates(args.templates, args.days, seed=7, work=work)
    print(f"{len(made)} template households after {args.days} days ({time.monotonic() - began:.0f} s); "
          f"work directory {work}", flush=True)
    cases = [Case(n) for n in sorted({0, args.mid, args.households})]
    if args.uncompacted_hours > 0:  # what an hour of 15-minute readings of both meters writes, and its small part
        updates = round(args.uncompacted_hours * 4 * len(METERS))
        cases += [Case(args.households, updates), Case(args.households, updates, detect_updates=False)]
    env = {"ELDERWATCH_CONSUMER_SESSION_TIMEOUT_S": f"{args.session_timeout:g}"}
    broker = LocalKafka(log_path=work / "broker.log")
    bootstrap = broker.start()
    LOAD.own.add(broker.pid)
    fills: dict[Case, Fill] = {}
    singles: dict[Case, dict] = {}
    failovers: dict[str, dict] = {}
    try:
        apps = {}
        for case in cases:
            series_only = "" if case.detect_updates else "s"
            app_id = apps[case] = f"rb{uuid.uuid4().hex[:6]}-{case.households}-{case.updates}{series_only}"
            ensure_topics(Settings(kafka_bootstrap_servers=bootstrap, app_id=app_id, topic_prefix=f"{app_id}.",
                                   partitions=PARTITIONS))
            # offsets as a fleet of this size would have after the simulated days (their digits are bytes)
            offsets = args.days * 192 * case.households // PARTITIONS
            records = state_records(made, case.households, PARTITIONS, offsets, case.updates, case.detect_updates)
            fills[case] = fill(bootstrap, app_id, records, case.households)
            fills[case].on_disk = {t: log_bytes(broker.data_dir / "kraft-logs", changelog_topic(app_id, t))
                                   for t in ALL_TABLES}
            print(f"filled {case.label}: {sum(fills[case].records.values()):,} records, "
                  f"{mib(sum(fills[case].on_disk.values()))} on disk ({fills[case].seconds:.0f} s)", flush=True)
        for case in cases:
            n = case.households
            # the last household's desk and detector state must be there once ready
            probe = (household_id(n - 1), made[(n - 1) % len(made)].roster.staff.primary_worker) if n else None
            singles[case] = single_worker(bootstrap, apps[case], work, args.repeats, env, args.timeout, probe)
        if not args.no_failover:
            for standby in (1, 0):
                failovers[str(standby)] = failover(bootstrap, apps[Case(args.households)], work, args.repeats, env,
                                                   args.timeout, standby)
    finally:
        broker.stop()
    return {"args": {"households": args.households, "mid": args.mid, "uncompacted_hours": args.uncompacted_hours,
                     "repeats": args.repeats, "templates": args.templates, "days": args.days,
                     "session_timeout": args.session_timeout},
            "machine": machine(), "kafka": broker.version, "revision": revision(), "templates": len(made),
            "others_max_cores": OTHERS_MAX_CORES,
            "cases": [{**asdict(case), "fill": asdict(fills[case]), "single": singles[case]} for case in cases],
            "failovers": failovers}


def report(results: dict) -> str:
    """The report of :func:`measure`'s results."""
    from streams.tables import DETECT_STATE, SERIES_STATE, TICKET_DESKS

    a = results["args"]
    cases = {Case(c["households"], c["updates"], c["detect_updates"]): c for c in results["cases"]}
    n = a["households"]
    big = cases[Case(n)]["fill"]
    per = {t: big["payload"][t] / max(1, big["records"][t]) for t in (DETECT_STATE, SERIES_STATE, TICKET_DESKS)}

    def recovering(case: Case) -> float:
        return statistics.median(r["recovering_s"] for r in cases[case]["single"]["restarts"])

    base = cases[Case(0)]["single"]
    base_recovering = statistics.median(r["recovering_s"] for r in [base["first"], *base["restarts"]])
    rows, rates = [], []
    for case, c in cases.items():
        f, first, restarts = c["fill"], c["single"]["first"], c["single"]["restarts"]
        records, on_disk = sum(f["records"].values()), sum(f["on_disk"].values())
        rows.append(f"| {case.label} | {records:,} | {mib(on_disk)} | {first['ready_s']:.1f} "
                    f"| {first['recovering_s']:.1f} | {spread([r['ready_s'] for r in restarts])} "
                    f"| {spread([r['assigned_s'] for r in restarts])} | {spread([r['recovering_s'] for r in restarts])} "
                    f"| {spread([r['cpu_s'] for r in restarts])} |")
        reading = recovering(case) - base_recovering
        if case.households and reading > 0:
            rates.append(f"| {case.label} | {reading:.1f} | {records / reading:,.0f} "
                         f"| {on_disk / 2**20 / reading:,.1f} |")
    starts = [r for c in cases.values() for r in [c["single"]["first"], *c["single"]["restarts"]]]
    found = [r["state_found"] for r in starts if "state_found" in r]
    failovers = results["failovers"]
    kept = starts + [r for f in failovers.values() for r in f["runs"]]
    retaken = sum(c["single"]["retaken"] for c in cases.values()) + sum(f["retaken"] for f in failovers.values())
    command = (f"python -m bench.bench_recovery --households {n} --mid {a['mid']} "
               f"--uncompacted-hours {a['uncompacted_hours']:g} --repeats {a['repeats']}"
               + (f" --session-timeout {a['session_timeout']:g}" if a["session_timeout"] != 60 else ""))
    default = " (the default)" if a["session_timeout"] == 60 else ""
    text = f"""# Recovery time after kill -9

Command: `{command}` (`--report-only` writes this file again from `recovery.json`)

- Machine: {results['machine']}; Kafka {results['kafka']} local broker (KRaft, one node, same
  machine); faust-streaming 0.15.3, store `memory://`, {PARTITIONS} partitions, one worker process unless
  said; `ELDERWATCH_CONSUMER_SESSION_TIMEOUT_S={a['session_timeout']:g}`{default}. Code: {results['revision']}.
- State: {results['templates']} simulated households run {a['days']} days through the detectors and the ingest
  rules, their states reused under {n:,} household ids, each record in the partition faust writes it to,
  produced straight into the changelogs: one record per key (a fully compacted changelog), except the
  "uncompacted" cases: then each household's readings of the next hour(s), round robin, each writing what
  a reading writes (its detector state and its series' state), not compacted (the broker compacts only
  closed segments); and the same with the series-state records alone.
- A shared machine: each measurement starts once other processes have used under 0.1 core for 15 s, and is
  taken again if they used more than {results['others_max_cores']} cores on average during it ({retaken} taken
  again); in those kept, others used at most {max(r["others_cores"] for r in kept):.2f} cores.
- Checked once ready, every start: the staff API answers for the last household with its desk and its
  detector state (recent usage): {sum(map(bool, found))} of {len(found)}.

| table (changelog) | records at {n:,} households | mean record (key + value) | payload |
|---|---:|---:|---:|
| `{DETECT_STATE}` (offset + `HouseholdMonitor.dumps()`) | {big['records'][DETECT_STATE]:,} | {per[DETECT_STATE]:,.0f} B | {mib(big['payload'][DETECT_STATE])} |
| `{SERIES_STATE}` (two series per household) | {big['records'][SERIES_STATE]:,} | {per[SERIES_STATE]:,.0f} B | {mib(big['payload'][SERIES_STATE])} |
| `{TICKET_DESKS}` (roster entry, no ticket) | {big['records'][TICKET_DESKS]:,} | {per[TICKET_DESKS]:,.0f} B | {mib(big['payload'][TICKET_DESKS])} |

## One worker: process start to `/ready` 200

Seconds from starting `elderwatch worker` until `/ready` answers 200 holding every partition. "First
start": a new consumer group. "After kill -9": the same worker SIGKILLed and started again at once,
{a['repeats']} times (median, range), each kill at a random moment 0-3 s after ready. Each split at
"assigned": the moment `/ready` first lists the worker's partitions (still 503): before it, process
start-up and the consumer group (after a kill -9 the group waits for the dead member's session to
expire before it assigns anything); after it, "recovering": reading the changelogs until the stream
partitions are handed to the agents. CPU: the worker process's user + system seconds until ready.

| households | changelog records | changelog on disk | first start | of which recovering | after kill -9 | assigned at | recovering | worker CPU |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Reading the changelogs: median "recovering" after kill -9, less the same with empty tables
({base_recovering:.1f} s, the baseline in the same run):

| households | seconds | records/s | MiB/s |
|---|---:|---:|---:|
{chr(10).join(rates)}
"""
    updates = round(a["uncompacted_hours"] * 4 * len(METERS))
    mixed, series = Case(n, updates), Case(n, updates, detect_updates=False)
    worst = None
    if updates and mixed in cases and series in cases:
        hours = a["uncompacted_hours"]
        per_hour = {DETECT_STATE: (recovering(mixed) - recovering(series)) / hours,
                    SERIES_STATE: (recovering(series) - recovering(Case(n))) / hours}
        urows, worst = [], recovering(Case(n))
        for table in (DETECT_STATE, SERIES_STATE):
            f = cases[mixed if table == DETECT_STATE else series]["fill"]
            extra = f["records"][table] - big["records"][table]
            record = (f["payload"][table] - big["payload"][table]) / extra
            per_partition_hour = n / PARTITIONS * 4 * len(METERS) * record  # bytes a partition's log grows by per hour
            roll = min(SEGMENT_HOURS, SEGMENT_BYTES / per_partition_hour)
            worst += roll * per_hour[table]
            urows.append(f"| `{table}` | {record:,.0f} B | {per_partition_hour * 24 / 2**20:,.0f} MiB | {roll:,.1f} h "
                         f"| {per_hour[table]:.1f} s | {roll * per_hour[table] / 60:,.1f} min |")
        text += f"""
### The changelog the broker has not compacted yet

Each reading rewrites its household's detector state and its series' state. Kafka compacts only closed
segments, and a segment closes at `segment.bytes` or `segment.ms`: the broker's defaults, 1 GiB and 7 days
(elderwatch creates the changelogs with `cleanup.policy=compact` only). So a restart reads everything
written since the newest segment of each partition began: up to the "segment closes after" column, on
average half of it. From the two uncompacted cases ({updates} readings per household, less the compacted
case), extrapolated linearly to {n:,} households:

| changelog | record | a partition's log grows per day | segment closes after | recovery per hour of readings | at most, at a restart |
|---|---:|---:|---:|---:|---:|
{chr(10).join(urows)}

At {n:,} households a restart can thus have up to ~{worst / 60:,.0f} min of changelog to read (the compacted
state included), against {recovering(Case(n)):.1f} s for the compacted state alone.
"""
    if failovers:
        frows = []
        for standby, failed_over in failovers.items():
            runs = failed_over["runs"] or [{"ready_s": math.nan, "unready_s": math.nan, "recovering_s": math.nan}]
            frows.append(f"| {standby} | {spread([r['ready_s'] for r in runs])} "
                         f"| {spread([r['unready_s'] for r in runs])} | {spread([r['recovering_s'] for r in runs])} |")
        text += f"""
## Two workers: kill -9 one, the survivor takes over

{n:,} households (compacted). Two workers, two partitions each, settled (standbys caught up: both idle);
one SIGKILLed. Seconds from the kill until the survivor is ready holding every partition, split into
until it stops answering 200 (the group has noticed the dead member: session timeout, a rebalance
starts) and from there until ready (the rebalance and the recovery of the dead worker's partitions).
Standby replicas: faust's own `table_standby_replicas` (default 1, not set by elderwatch), set here
through faust's `TABLE_STANDBY_REPLICAS` environment variable. {a['repeats']} kills each (median, range).

| standby replicas | kill -9 → survivor ready | kill → rebalance starts | recovering |
|---:|---:|---:|---:|
{chr(10).join(frows)}
"""
    text += bounds(results, cases, recovering, base, worst)
    return text


def bounds(results: dict, cases: dict, recovering, base: dict, worst: float | None) -> str:
    """The closing section: what recovery time depends on, with this run's numbers."""
    from streams.tables import DETECT_STATE, SERIES_STATE

    a = results["args"]
    n, mid = a["households"], a["mid"]
    big = cases[Case(n)]
    records = sum(big["fill"]["records"].values())
    reading = recovering(Case(n)) - recovering(Case(0))
    cpu = statistics.median(r["cpu_s"] for r in big["single"]["restarts"]) - statistics.median(
        r["cpu_s"] for r in base["restarts"])
    waited = statistics.median(r["assigned_s"] for r in base["restarts"])
    sizes = f"; {mid:,}: {recovering(Case(mid)):.1f} s" if mid and Case(mid) in cases else ""
    limit = ("so faust applying the records in Python is the limit, not the broker or the disk"
             if cpu >= 0.8 * reading else "so the worker also waits on the broker")
    lines = [f"""
## What bounds it

1. **After a kill -9, the session timeout.** The restarted worker is assigned nothing until the group
   has given up on the dead member: {waited:.1f} s (median) with
   `ELDERWATCH_CONSUMER_SESSION_TIMEOUT_S={a['session_timeout']:g}`, i.e. the timeout less where in its 3 s
   heartbeat cycle the worker died. A first start, or a restart after a clean stop (the worker leaves
   its group), does not wait. With a second worker the same wait comes before the survivor takes over.
2. **Then the number of changelog records.** {n:,} households, compacted: {records:,} records in
   {recovering(Case(n)):.1f} s{sizes} (~{records / reading:,.0f} records/s). The worker's CPU time grows
   by {cpu:.1f} s against the empty tables, for {reading:.1f} s more recovery: {limit}."""]
    updates = round(a["uncompacted_hours"] * 4 * len(METERS))
    mixed, series = Case(n, updates), Case(n, updates, detect_updates=False)
    if worst is not None:
        small = (cases[series]["fill"]["records"][SERIES_STATE] - big["fill"]["records"][SERIES_STATE]) / (
            recovering(series) - recovering(Case(n)))
        large = (cases[mixed]["fill"]["records"][DETECT_STATE] - big["fill"]["records"][DETECT_STATE]) / (
            recovering(mixed) - recovering(series))
        hours = {}
        for table, case in ((DETECT_STATE, mixed), (SERIES_STATE, series)):
            record = (cases[case]["fill"]["payload"][table] - big["fill"]["payload"][table]) / (
                cases[case]["fill"]["records"][table] - big["fill"]["records"][table])
            hours[table] = min(SEGMENT_HOURS, SEGMENT_BYTES / (n / PARTITIONS * 4 * len(METERS) * record))
        lines.append(f"""   Uncompacted: {small:,.0f} series-state records/s ({per_record(big, SERIES_STATE):,.0f} B each),
   {large:,.0f} detector-state records/s ({per_record(big, DETECT_STATE):,.0f} B each).
3. **So, what the broker has not compacted yet.** With the broker's default segments a partition's
   newest segment holds up to {hours[DETECT_STATE]:,.0f} h of detector-state writes and {hours[SERIES_STATE]:,.0f} h of
   series-state writes ({n:,} households: {n * 4 * len(METERS) * hours[DETECT_STATE]:,.0f} and
   {n * 4 * len(METERS) * hours[SERIES_STATE]:,.0f} records), all read at a restart: up to ~{worst / 60:,.0f} min,
   against {recovering(Case(n)):.1f} s for the compacted state. Closing the changelogs' segments sooner (topic
   configs `segment.ms`, `segment.bytes`; not set by elderwatch) would bound it near the compacted state
   plus that much of writes.""")
    failovers = results["failovers"]
    if failovers.get("1", {}).get("runs") and failovers.get("0", {}).get("runs"):
        with_one, without = (statistics.median(r["recovering_s"] for r in failovers[k]["runs"]) for k in ("1", "0"))
        lines.append(f"""{4 if worst is not None else 3}. **Standby replicas.** The survivor recovered in {with_one:.1f} s with a standby of every
   partition and {without:.1f} s without. faust starts reading an active changelog partition at the
   store's persisted offset (`Recovery._add`: `table.persisted_offset(tp)`), and the `memory://` store
   has none (`faust/stores/memory.py`: always None), so a standby promoted to active reads its
   partitions again from the beginning: its copy does not save the reading, while every worker keeps
   reading the others' changelogs all along.""")
    return "\n".join(lines) + "\n"


def per_record(case: dict, table: str) -> float:
    return case["fill"]["payload"][table] / max(1, case["fill"]["records"][table])


if __name__ == "__main__":
    sys.exit(main())
