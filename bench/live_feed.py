"""A warmed-up fleet fed live: what the latency and soak benchmarks share.

**State.** Simulated households run ``days`` through the offline detectors and the ingest rules
(:func:`bench.bench_recovery.templates`); their states are written under ``households`` ids straight into
a fresh app id's three table changelogs (:meth:`Fleet.state_records`, then ``bench_recovery.fill``), so the
worker, whose store is ``memory://``, starts with every household past its 21-day warm-up. Unlike
:func:`bench.bench_recovery.state_records` (whose records are only ever recovered, never processed on):
the stored offsets are negative (the new app's ``readings.by-household`` and ``readings.validated`` start at
0, and a reading at or below the offset in its household's state is taken for a redelivery and skipped),
the series states keep no ``readings.raw`` offsets (same reason), and the monitor's open episodes name the
household's own warning ids, not the template's (the ``condition_cleared`` command detect sends when such an
episode ends is refused otherwise: its ticket id must start with the household id).

**Live readings.** Each household continues its own timeline: visit ``v`` of a household is its two
readings (electricity, then water) at the template's last reading + ``v`` quarter-hours, in the canonical
raw JSON (``{"household_id", "meter", "ts", "value"}``, keyed by household, as ``elderwatch feed`` sends
it). The values repeat the template's own last week (the same slot a week earlier), so a normal household
looks like itself. The fleet is visited round robin in a fixed shuffled order, one visit per two readings,
paced in wall time at the phase's rate (:func:`schedule`): so data time runs as fast as the rate and the
fleet size make it (15,000 households at 33.3 readings/s: real time; 1,500: 10x).

**Anomalous households.** A share of the households (``anomalous_share``) has a 3 kW heater left on for
2 h in every 6 h (:data:`SURGE_KWH` on top of its usual electricity, :data:`SURGE_ON` of every
:data:`SURGE_PERIOD` quarter-hours): the surge detector fires soonest of all (2-7 quarter-hours into it
on the simulated homes; continuous flow needs at least its shortest window, 6 quarter-hours, inactivity
hours). Their state is *primed*: the changelog holds the state after the surge's first quarter-hours, so
that the warning is due at a chosen visit ("lead": the 1st, 2nd, ...). A household's k-th visit comes in the
fleet's k-th round through its households (15,000 households at the live rate: a round every 15 minutes
of wall time), so one lead per round of the run (:func:`leads_for`) spreads the warnings over all of it
rather than its first round only. The warnings every household is due are computed offline with the same
monitors (:meth:`Fleet.expected_warnings`): the stream must raise exactly those.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import json
import math
import random
import threading
import time
import urllib.request
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.bench_recovery import METERS, PARTITIONS, OtherLoad, Template, Worker, cpu_seconds, household_id

LIVE_HOMES = 15_000
INTERVAL_S = 900  # a reading every 15 minutes per meter
INTERVAL_MS = INTERVAL_S * 1000
#: readings/s of 15,000 households' two meters every 15 minutes
LIVE_RATE = LIVE_HOMES * len(METERS) / INTERVAL_S
SURGE_KWH = 0.75  # a 3 kW heater: kWh per quarter-hour on top of the usual
SURGE_PERIOD, SURGE_ON = 24, 8  # quarter-hours: 2 h of surge in every 6 h
WEEK_SLOTS = 7 * 24 * 4
PRIME_LIMIT = SURGE_ON  # the surge must warn within its first 2 h (it does in 2-7 quarter-hours)


# -- the pacing schedule -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """``seconds`` of readings at ``rate`` readings/s; ``measured``: counted in the results (not a warm-up)."""

    name: str
    rate: float
    seconds: float
    measured: bool = True

    @property
    def readings(self) -> int:
        """Readings in the phase, a whole number of visits (two meters each).

        >>> Phase("live", LIVE_RATE, 60).readings, Phase("burst", 10 * LIVE_RATE, 0.1).readings
        (2000, 34)
        """
        return len(METERS) * round(self.rate * self.seconds / len(METERS))


def schedule(phases: Sequence[Phase]) -> Iterator[tuple[int, int, float]]:
    """``(reading number, phase index, seconds after the start it is due)`` of every reading: phase after
    phase, each ``seconds`` long, its readings evenly spaced at its rate.

    >>> [(n, p, round(t, 3)) for n, p, t in schedule([Phase("a", 2.0, 2), Phase("b", 4.0, 1)])]
    [(0, 0, 0.0), (1, 0, 0.5), (2, 0, 1.0), (3, 0, 1.5), (4, 1, 2.0), (5, 1, 2.25), (6, 1, 2.5), (7, 1, 2.75)]
    """
    n, start = 0, 0.0
    for p, phase in enumerate(phases):
        for j in range(phase.readings):
            yield n, p, start + j / phase.rate
            n += 1
        start += phase.seconds


def phase_bounds(phases: Sequence[Phase]) -> list[int]:
    """The first reading number of each phase, then the total.

    >>> phase_bounds([Phase("a", 2.0, 2), Phase("b", 4.0, 1)])
    [0, 4, 8]
    """
    bounds = [0]
    for phase in phases:
        bounds.append(bounds[-1] + phase.readings)
    return bounds


# -- the fleet -----------------------------------------------------------------------------------------

@dataclass
class Group:
    """Households of one template, normal or anomalous: all of them live the same timeline."""

    template: int
    anomalous: bool
    last_ms: int  # data time of the template's last reading (epoch ms)
    week: dict[str, list[float]]  # meter -> the template's last week, WEEK_SLOTS quarter-hours ending at last_ms
    prime: int = 0  # plan steps already in the stored state
    state: Template | None = None  # what the changelogs get for these households (monitor after priming)


def plan_value(week: Sequence[float], step: int, meter: str, anomalous: bool) -> float:
    """The reading of plan step ``step`` (1: the first quarter-hour after the template's last reading): the
    same slot a week earlier, plus the heater for an anomalous household in the surge part of its period.

    >>> week = [0.1] * WEEK_SLOTS
    >>> plan_value(week, 1, "electricity", True), plan_value(week, 9, "electricity", True), plan_value(week, 1, "water", True)
    (0.85, 0.1, 0.1)
    """
    value = week[(step - 1) % WEEK_SLOTS]
    if anomalous and meter == "electricity" and (step - 1) % SURGE_PERIOD < SURGE_ON:
        value = round(value + SURGE_KWH, 3)
    return value


def iso(ms: int) -> str:
    """
    >>> iso(1772755200000)
    '2026-03-06T00:00:00+00:00'
    """
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


def epoch_ms(ts: str) -> int:
    """
    >>> epoch_ms("2026-03-06T00:00:00Z"), epoch_ms("2026-03-06T01:00:00+01:00")
    (1772755200000, 1772755200000)
    """
    return round(datetime.fromisoformat(ts).timestamp() * 1000)


@dataclass(frozen=True)
class Reading:
    n: int  # reading number in the schedule
    household: int
    visit: int  # the household's visit, from 1
    meter: str
    ts_ms: int
    value: float

    @property
    def household_id(self) -> str:
        return household_id(self.household)

    def message(self) -> tuple[bytes, bytes]:
        """(key, value) as sent to ``readings.raw``."""
        hid = self.household_id
        return hid.encode(), json.dumps({"household_id": hid, "meter": self.meter, "ts": iso(self.ts_ms),
                                         "value": self.value}).encode()


class Fleet:
    """``households`` households over ``groups``: household ``i`` is of group ``i % len(groups)`` (the order
    :func:`bench.bench_recovery.state_records` gives templates out in). Visits go round robin over a fixed
    shuffled order of the households."""

    def __init__(self, groups: list[Group], households: int, seed: int = 0) -> None:
        self.groups = groups
        self.households = households
        self.order = list(range(households))
        random.Random(seed).shuffle(self.order)
        self.position = [0] * households
        for p, h in enumerate(self.order):
            self.position[h] = p

    def group(self, household: int) -> Group:
        return self.groups[household % len(self.groups)]

    def anomalous(self) -> int:
        return sum(self.group(h).anomalous for h in range(self.households))

    def reading(self, n: int) -> Reading:
        """Reading number ``n`` of the schedule."""
        visit_n, m = divmod(n, len(METERS))
        cycle, p = divmod(visit_n, self.households)
        h = self.order[p]
        g = self.group(h)
        step = g.prime + cycle + 1
        meter = METERS[m]
        return Reading(n, h, cycle + 1, meter, g.last_ms + step * INTERVAL_MS,
                       plan_value(g.week[meter], step, meter, g.anomalous))

    def locate(self, hid: str, meter: str, ts_ms: int) -> int | None:
        """The reading number of (household id, meter, ts); None if the schedule has no such reading."""
        try:
            prefix, digits = hid.split("-", 1)
            h = int(digits)
        except ValueError:
            return None
        if prefix != "hr" or not 0 <= h < self.households or meter not in METERS:
            return None
        g = self.group(h)
        steps, rest = divmod(ts_ms - g.last_ms, INTERVAL_MS)
        visit = steps - g.prime
        if rest or visit < 1:
            return None
        return ((visit - 1) * self.households + self.position[h]) * len(METERS) + METERS.index(meter)

    def visits(self, household: int, readings: int) -> int:
        """Visits ``household`` gets in the first ``readings`` readings."""
        visits_total = readings // len(METERS)
        return max(0, (visits_total - self.position[household] + self.households - 1) // self.households)

    def expected_warnings(self, readings: int) -> dict[tuple[str, str, int], int]:
        """(household id, kind, detected_at ms) -> the number of the reading that raises it, for every warning
        the first ``readings`` readings raise, from the groups' monitors run offline."""
        from detectors.monitor import HouseholdMonitor

        most = max((self.visits(h, readings) for h in range(self.households)), default=0)
        by_group: dict[int, list[tuple[int, int, str, int]]] = {}  # group -> (visit, meter index, kind, ms)
        done: dict[tuple, list] = {}  # groups of one template and kind live the same timeline
        for gi, g in enumerate(self.groups):
            same = id(g)
            if same in done:
                by_group[gi] = done[same]
                continue
            monitor = HouseholdMonitor.from_state(copy.deepcopy(g.state.monitor_state))
            found = by_group[gi] = done[same] = []
            for visit in range(1, most + 1):
                step = g.prime + visit
                ts = datetime.fromtimestamp((g.last_ms + step * INTERVAL_MS) / 1000, timezone.utc)
                for m, meter in enumerate(METERS):
                    for w in monitor.process(meter, ts, plan_value(g.week[meter], step, meter, g.anomalous)):
                        found.append((visit, m, w.kind.value, round(w.detected_at.timestamp() * 1000)))
        expected = {}
        for h in range(self.households):
            visits = self.visits(h, readings)
            hid = household_id(h)
            for visit, m, kind, ms in by_group[h % len(self.groups)]:
                if visit <= visits:
                    n = ((visit - 1) * self.households + self.position[h]) * len(METERS) + m
                    expected[(hid, kind, ms)] = n
        return expected

    def state_records(self, partitions: int = PARTITIONS) -> Iterator[tuple[str, int, bytes, bytes]]:
        """``(table, partition, key, value)`` of every household's state, as
        :func:`bench.bench_recovery.state_records` writes them (same partitions, same values), except: the
        readings offsets are below any the new topics will have, and the monitor's open and cleared episodes
        name the household's own warning ids (the template's would be refused when the episode ends: a
        ``condition_cleared`` command whose ticket id is another household's fails validation)."""
        from bench.bench_recovery import partition_for
        from detectors.state import dump_record
        from dispatch.desk import HouseholdDesk, with_roster
        from streams.detect import encode_state
        from streams.tables import DETECT_STATE, SERIES_STATE, TICKET_DESKS

        base = -(self.households + 1)
        for i in range(self.households):
            t = self.group(i).state
            hid = household_id(i)
            p = partition_for(hid, partitions)
            key = hid.encode()
            yield DETECT_STATE, p, key, encode_state(base + i, dump_record(own_state(t.monitor_state, hid)))
            for meter, state in t.series.items():
                yield (SERIES_STATE, p, json.dumps(f"{hid}/{meter}").encode(),
                       json.dumps({**state, "o": base + i}, separators=(",", ":")).encode())
            desk = with_roster(HouseholdDesk(household_id=hid), t.roster.model_copy(update={"household_id": hid}))
            yield TICKET_DESKS, p, key, desk.model_dump_json().encode()


def own_state(state: dict, hid: str) -> dict:
    """A monitor state (``HouseholdMonitor.to_state()``) for household ``hid``: its id, and its episodes'
    warning ids (``household/kind/start``) under it.

    >>> s = own_state({"household_id": "hh-1", "open_warnings": {"surge": "hh-1/surge/t"},
    ...                "cleared": [["inactivity", "hh-1/inactivity/u"]]}, "hr-000007")
    >>> s["household_id"], s["open_warnings"], s["cleared"]
    ('hr-000007', {'surge': 'hr-000007/surge/t'}, [['inactivity', 'hr-000007/inactivity/u']])
    """
    old = state["household_id"]

    def own(warning_id: str) -> str:
        return hid + warning_id[len(old):] if warning_id.startswith(f"{old}/") else warning_id

    return {**state, "household_id": hid,
            "open_warnings": {k: own(w) for k, w in state.get("open_warnings", {}).items()},
            "cleared": [[k, own(w)] for k, w in state.get("cleared", [])]}


def layout(templates: int, anomalous_share: float, leads: int = 1) -> list[tuple[int, bool, int]]:
    """(template, anomalous, lead) of each group (household ``i`` is of group ``i % len``): every template
    anomalous once per lead (the visit its warning is due at: 1, 2, ...; 0 for a normal group), and normal
    ``1 / anomalous_share - 1`` times as often, interleaved, so that any run of groups has the share (a fleet
    smaller than the layout uses only its first groups); the anomalous ones in a fixed shuffled order, so that
    a first run of them has templates and leads alike.

    >>> layout(2, 0.25)
    [(0, True, 1), (0, False, 0), (1, False, 0), (0, False, 0), (1, True, 1), (1, False, 0), (0, False, 0), (1, False, 0)]
    >>> layout(2, 0)
    [(0, False, 0), (1, False, 0)]
    """
    if anomalous_share <= 0:
        return [(t, False, 0) for t in range(templates)]
    m = max(1, round(1 / anomalous_share))
    anomalous = [(t, True, lead) for lead in range(1, leads + 1) for t in range(templates)]
    random.Random(0).shuffle(anomalous)
    out, j = [], 0
    for group in anomalous:
        out.append(group)
        for _ in range(m - 1):
            out.append((j % templates, False, 0))
            j += 1
    return out


def leads_for(phases: Sequence[Phase], households: int, most: int = 8) -> int:
    """How many leads spread the anomalous households' warnings over the whole run: a household's first visit
    comes in the fleet's first cycle, its second in the second, and so on, so one lead per (started) cycle of
    the run, at most ``most``.

    >>> leads_for([Phase("live", 33.3, 300), Phase("burst", 333.3, 120)], 15000)
    2
    >>> leads_for([Phase("live", 33.3, 60)], 15000), leads_for([Phase("burst", 333.3, 1800)], 1500)
    (1, 8)
    """
    visits = phase_bounds(phases)[-1] // len(METERS)
    return max(1, min(most, math.ceil(visits / households)))


def _strip_offsets(series: dict) -> dict:
    """A series state without the offsets of the simulation's run (the new topics start at 0)."""
    return {k: v for k, v in series.items() if k not in ("o", "ro")}


def build_fleet(households: int, anomalous_share: float, templates: int, days: int, work: Path,
                seed: int = 7, leads: int = 1, log: Callable[[str], None] = print) -> Fleet:
    """Simulate the templates, prime the anomalous ones (``leads``: see :func:`layout`), lay the fleet out."""
    from bench.bench_recovery import templates as make_templates
    from detectors.monitor import HouseholdMonitor
    from schemas.readings import MeterReading
    from streams.ingest import IngestLimits, SeriesState, accept_reading

    began = time.monotonic()
    made = make_templates(templates, days, seed=seed, work=work)
    values: dict[tuple[str, str], dict[int, float]] = {}
    with open(work / "sim" / "readings.csv", newline="") as handle:
        rows = csv.reader(handle)
        next(rows)
        for hid, meter, ts, value in rows:
            values.setdefault((hid, meter), {})[epoch_ms(ts)] = float(value)
    limits = IngestLimits()
    normal: dict[int, Group] = {}  # template -> its normal group
    primed: dict[tuple[int, int], Group] = {}  # (template, prime) -> its anomalous group
    surge_warns_at: dict[int, int] = {}  # template -> the plan step whose reading raises the surge warning
    groups = []
    for t, anomalous, lead in layout(len(made), anomalous_share, leads):
        tpl = made[t]
        if t not in normal:
            last = max(max(values.get((tpl.household_id, m), {0: 0})) for m in METERS)
            week = {}
            for meter in METERS:
                seen = values.get((tpl.household_id, meter), {})
                start = last - WEEK_SLOTS * INTERVAL_MS
                week[meter] = [seen.get(start + (j + 1) * INTERVAL_MS,
                                        seen.get(start + (j + 1) * INTERVAL_MS - WEEK_SLOTS * INTERVAL_MS, 0.0))
                               for j in range(WEEK_SLOTS)]
            series = {m: _strip_offsets(x) for m, x in tpl.series.items()}
            normal[t] = Group(t, False, last, week, 0,
                              Template(tpl.household_id, tpl.monitor_state, tpl.readings, series, tpl.roster))
            surge_warns_at[t] = _prime(Group(t, True, last, week, 0, normal[t].state), HouseholdMonitor) + 1
        base = normal[t]
        if not anomalous:
            groups.append(base)  # the same object: households of one template and kind live one timeline
            continue
        prime = max(0, surge_warns_at[t] - lead) if surge_warns_at[t] > 1 else 0
        if (t, prime) not in primed:
            g = Group(t, True, base.last_ms, base.week, prime, base.state)
            if prime:
                monitor = HouseholdMonitor.from_state(copy.deepcopy(tpl.monitor_state))
                states = {m: SeriesState.from_json(x) for m, x in tpl.series.items()}
                for step in range(1, prime + 1):
                    ts = datetime.fromtimestamp((base.last_ms + step * INTERVAL_MS) / 1000, timezone.utc)
                    for meter in METERS:
                        value = plan_value(base.week[meter], step, meter, True)
                        monitor.process(meter, ts, value)
                        state = states.setdefault(meter, SeriesState())
                        accept_reading(state, MeterReading(household_id=tpl.household_id, meter=meter, ts=ts,
                                                           value=value), limits)
                g.state = Template(tpl.household_id, monitor.to_state(), monitor.readings,
                                   {m: _strip_offsets(x.to_json()) for m, x in states.items()}, tpl.roster)
            primed[(t, prime)] = g
        groups.append(primed[(t, prime)])
    fleet = Fleet(groups, households, seed)
    log(f"fleet: {households:,} households over {len(made)} templates ({days} days), {fleet.anomalous():,} "
        f"anomalous with {leads} lead(s), the surge warning due at plan step "
        f"{sorted(set(surge_warns_at.values()))}, primed {sorted({g.prime for g in groups if g.anomalous})} "
        f"quarter-hours into it; {time.monotonic() - began:.0f} s")
    return fleet


def _prime(g: Group, monitor_type) -> int:
    """Plan steps before the one whose electricity reading raises the surge warning (0: none within the limit,
    or the first)."""
    monitor = monitor_type.from_state(copy.deepcopy(g.state.monitor_state))
    for step in range(1, PRIME_LIMIT + 1):
        ts = datetime.fromtimestamp((g.last_ms + step * INTERVAL_MS) / 1000, timezone.utc)
        for meter in METERS:
            for w in monitor.process(meter, ts, plan_value(g.week[meter], step, meter, True)):
                if w.kind.value == "surge":
                    return step - 1
    return 0


# -- the worker and its broker --------------------------------------------------------------------------

def new_app(bootstrap: str, fleet: Fleet, tag: str, log: Callable[[str], None] = print) -> str:
    """A fresh app id with its topics, the fleet's state in its changelogs; returns the app id."""
    from bench.bench_recovery import fill
    from elderwatch.settings import Settings
    from elderwatch.worker import ensure_topics

    app_id = f"{tag}{uuid.uuid4().hex[:6]}"
    ensure_topics(Settings(kafka_bootstrap_servers=bootstrap, app_id=app_id, topic_prefix=f"{app_id}.",
                           partitions=PARTITIONS))
    filled = fill(bootstrap, app_id, fleet.state_records(), fleet.households)
    log(f"filled {app_id}'s changelogs: {sum(filled.records.values()):,} records, "
        f"{sum(filled.payload.values()) / 2**20:,.1f} MiB ({filled.seconds:.0f} s)")
    return app_id


def metrics_page(port: int, timeout: float = 5.0) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
            return response.read().decode()
    except OSError:
        return None


def consumer_lag(page: str) -> dict[str, float]:
    """``elderwatch_consumer_lag{topic}`` samples of a /metrics page.

    >>> consumer_lag('elderwatch_consumer_lag{topic="p.readings.raw"} 12.0\\nelderwatch_ready 1.0\\n')
    {'p.readings.raw': 12.0}
    """
    lags = {}
    for line in page.splitlines():
        if line.startswith("elderwatch_consumer_lag{"):
            name, _, value = line.rpartition(" ")
            lags[name.split('topic="', 1)[1].split('"', 1)[0]] = float(value)
    return lags


def histogram_means(page: str, metric: str, label: str) -> dict[str, float]:
    """Mean of a histogram per label value (``_sum / _count``), in the metric's unit.

    >>> histogram_means('x_seconds_sum{step="a"} 3.0\\nx_seconds_count{step="a"} 2.0\\n', "x_seconds", "step")
    {'a': 1.5}
    """
    sums, counts = {}, {}
    for line in page.splitlines():
        for suffix, into in (("_sum{", sums), ("_count{", counts)):
            if line.startswith(metric + suffix):
                name, _, value = line.rpartition(" ")
                into[name.split(f'{label}="', 1)[1].split('"', 1)[0]] = float(value)
    return {k: sums[k] / counts[k] for k in sums if counts.get(k)}


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process (KiB), from /proc/<pid>/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler:
    """Every ``every`` seconds, in a thread: the worker's RSS and CPU seconds, its /metrics counts and lag, and
    the cores other processes used (``load``)."""

    def __init__(self, pid: int, port: int, every: float, load: OtherLoad, began: float) -> None:
        self.pid, self.port, self.every, self.load, self.began = pid, port, every, load, began
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(30)
        return self.samples

    def take(self) -> dict:
        from streams.metrics import read_counts

        page = metrics_page(self.port) or ""
        ingest, detect = read_counts(page, "ingest"), read_counts(page, "detect")
        return {"t": time.monotonic() - self.began, "rss_kib": rss_kib(self.pid), "cpu_s": cpu_seconds(self.pid),
                "ingest_received": ingest.get("received", 0.0), "ingest_emitted": ingest.get("emitted", 0.0),
                "detect_received": detect.get("received", 0.0), "warnings": detect.get("warnings", 0.0),
                "lag": consumer_lag(page)}

    def _run(self) -> None:
        snap = None
        while True:
            sample = self.take()
            # others' cores since the sample before (None for the first: no interval yet)
            sample["others_cores"] = None if snap is None else round(self.load.cores_since(snap), 3)
            snap = self.load.snapshot()
            self.samples.append(sample)
            if self._stop.wait(self.every):
                return


def wait_drained(port: int, sent: int, timeout: float,
                 alive: Callable[[], bool] = lambda: True) -> tuple[float, str, bool]:
    """Until ingest has settled ``sent`` raw messages, detect has received every reading ingest emitted and no
    topic has lag (faust commits every few seconds), at most ``timeout`` seconds; (seconds waited, the last
    /metrics page, whether it drained)."""
    from streams.metrics import read_counts, settled

    began = time.monotonic()
    page = ""
    while time.monotonic() - began < timeout:
        page = metrics_page(port) or page
        ingest, detect = read_counts(page, "ingest"), read_counts(page, "detect")
        if (settled(ingest) >= sent and detect.get("received", 0) >= ingest.get("emitted", 0)
                and not any(consumer_lag(page).values())):
            return time.monotonic() - began, page, True
        if not alive():
            raise RuntimeError("the worker exited while draining")
        time.sleep(1.0)
    return time.monotonic() - began, page, False


# -- producing and reading back ------------------------------------------------------------------------

@dataclass
class Sent:
    """What the bench's producer did with reading ``n``: its CreateTime (set at send), when the broker
    acknowledged it, and how late the send was against the schedule (all ms; nan: not sent)."""

    created: array = field(default_factory=lambda: array("d"))
    acked: array = field(default_factory=lambda: array("d"))
    late: array = field(default_factory=lambda: array("d"))
    began_wall: float = 0.0  # time.time() at schedule 0
    began: float = 0.0  # time.monotonic() at schedule 0


def produce(bootstrap: str, topic: str, phases: Sequence[Phase], message: Callable[[int], tuple[bytes, bytes]],
            on_phase: Callable[[int, float], None] | None = None) -> Sent:
    """Send reading ``n`` (``message(n)``: key, value) at its time in :func:`schedule`, each with its CreateTime
    set to the wall clock at the send (aiokafka, acks=all, no linger: nothing waits in the producer)."""
    total = phase_bounds(phases)[-1]
    sent = Sent(array("d", [float("nan")]) * total, array("d", [float("nan")]) * total,
                array("d", [float("nan")]) * total)

    async def run() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await producer.start()
        try:
            pending = []
            current = -1
            sent.began, sent.began_wall = time.monotonic(), time.time()
            for n, p, due in schedule(phases):
                if p != current:
                    current = p
                    if on_phase is not None:
                        on_phase(p, time.monotonic())
                delay = sent.began + due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                key, value = message(n)
                now = time.time()
                created = int(now * 1000)
                sent.late[n] = (now - sent.began_wall - due) * 1000
                future = await producer.send(topic, value=value, key=key, timestamp_ms=created)
                sent.created[n] = created

                def acked(_, n=n):
                    sent.acked[n] = time.time() * 1000

                future.add_done_callback(acked)
                pending.append(future)
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(run())
    return sent


def read_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS,
               each: Callable[[bytes | None, bytes, int, int], None] | None = None) -> list[tuple[bytes | None, bytes, int, int]]:
    """Every record of ``topic``: (key, value, timestamp ms, timestamp type: 0 CreateTime, 1 LogAppendTime);
    with ``each``, handed to it one by one instead (nothing kept)."""
    records: list = []
    take = each or (lambda *record: records.append(record))

    async def run() -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 2**20)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            while True:
                left = [tp for tp in tps if await consumer.position(tp) < end[tp]]
                if not left:
                    return
                batches = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
                for batch in batches.values():
                    for r in batch:
                        take(r.key, r.value, r.timestamp, r.timestamp_type)
        finally:
            await consumer.stop()

    asyncio.run(run())
    return records


def worker_log_findings(log: Path, limit: int = 8) -> dict:
    """Warning/error lines in a worker's log: how many, and the first few distinct (without their timestamps)."""
    counts = {"warning": 0, "error": 0}
    distinct: list[str] = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {**counts, "lines": []}
    for line in lines:
        low = line.lower()
        level = "error" if ("error" in low or "traceback" in low or "exception" in low) else (
            "warning" if "warn" in low else None)
        if level is None:
            continue
        counts[level] += 1
        text = line.split("]", 2)[-1].strip() if line.startswith("[") else line.strip()
        if text and text not in distinct and len(distinct) < limit:
            distinct.append(text[:300])
    return {**counts, "lines": distinct}



# -- one worker fed live ----------------------------------------------------------------------------------

@dataclass
class LiveRun:
    """What :func:`run_live` did: the worker's app id and log, when it was ready, the sends, when each phase
    began and the feed ended (seconds after the feed's start), how long it took to drain, its /metrics page
    then, and the samples taken along the way."""

    app_id: str
    log: Path
    ready_s: float
    sent: Sent
    marks: list[float]
    fed_s: float
    drained_s: float
    drained: bool
    page: str
    samples: list[dict]
    pid: int


def wait_quiet(load: OtherLoad, timeout: float, log: Callable[[str], None] = print) -> dict:
    """Until other processes used under 0.1 core for 15 s (:meth:`OtherLoad.wait_quiet`), at most ``timeout``
    seconds (0: not at all); how long it waited and whether it was quiet."""
    if timeout <= 0:
        return {"waited_s": 0.0, "quiet": None}
    waited = load.wait_quiet(timeout=timeout)
    quiet = waited < timeout
    log(f"waited {waited:.0f} s for a quiet machine" + ("" if quiet else " (still busy: going on)"))
    return {"waited_s": waited, "quiet": quiet}


def run_live(bootstrap: str, fleet: Fleet, phases: Sequence[Phase], work: Path, load: OtherLoad, *,
             sample_seconds: float, drain_timeout: float, quiet_timeout: float = 0.0, tag: str = "live",
             env: dict[str, str] | None = None, log: Callable[[str], None] = print) -> tuple[LiveRun, dict]:
    """A fresh app id filled with the fleet's state, one worker on it until ready, the phases fed to its
    ``readings.raw``, then until it has drained; the worker is stopped (SIGTERM) before returning."""
    app_id = new_app(bootstrap, fleet, tag, log)
    quiet = wait_quiet(load, quiet_timeout, log)
    worker = Worker(bootstrap, app_id, work, f"{app_id}-worker", env or {})
    try:
        ready_s = worker.start_and_time(600.0)["ready_s"]
        load.own.add(worker.process.pid)
        log(f"worker ready in {ready_s:.1f} s (pid {worker.process.pid}, log {worker.log})")
        began = time.monotonic()
        sampler = Sampler(worker.process.pid, worker.port, sample_seconds, load, began).start()
        marks: list[float] = []
        try:
            sent = produce(bootstrap, f"{app_id}.readings.raw", phases, lambda n: fleet.reading(n).message(),
                           on_phase=lambda p, t: marks.append(t - began))
            fed = time.monotonic() - began
            total = phase_bounds(phases)[-1]
            log(f"fed {total:,} readings in {fed:.0f} s")
            waited, page, drained = wait_drained(worker.port, total, drain_timeout,
                                                 lambda: worker.process.poll() is None)
            log(f"drained {waited:.1f} s after the last send" if drained else
                f"**not drained** {waited:.0f} s after the last send: going on with what was processed")
        finally:
            samples = sampler.stop()
        pid = worker.process.pid
    finally:
        worker.stop()
    return LiveRun(app_id, worker.log, ready_s, sent, marks, fed, waited, drained, page, samples, pid), quiet
