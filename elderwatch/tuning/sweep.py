"""One pass over the history gives the warnings of every sensitivity level.

Sensitivity only gates warnings: a detector learns by its own raw threshold (an interval it flags
itself is not learned, whatever the operator's setting), and the monitor multiplies the raw score by
the kind's sensitivity only to decide whether a warning is due (:meth:`HouseholdMonitor.process`).
So a :class:`MultiLevelMonitor` scores each detector once per reading, runs the episode rule
(:func:`detectors.monitor.episode_opens`) once per level with that level's own open episodes, and
learns once. Level ``s`` for kind ``k`` then gives exactly the warnings of kind ``k`` that a plain
monitor with ``sensitivity[k] = s`` gives, and kinds never interact (each has its own episodes), so
any per-kind choice is the union of one level per kind (``tests/unit/test_tune.py`` checks both).

Households are split over processes by a stable hash of their id; each process reads the whole file
(parsing is ~20 times cheaper than the detectors) and runs its share.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from detectors.monitor import EPISODE_ENDS_BELOW, HouseholdMonitor, MonitorConfig, episode_opens
from detectors.offline import read_readings, zone_for_offset
from schemas.anomaly import AnomalyKind, AnomalyWarning
from schemas.readings import Meter

from elderwatch.tuning.choose import DEFAULT_LEVELS


class MultiLevelMonitor(HouseholdMonitor):
    """A :class:`HouseholdMonitor` whose episodes are tracked at several sensitivity levels at once.

    Level ``s`` behaves as a plain monitor with ``sensitivity[kind] = s`` for every kind: the raw
    ``score_one(x)`` is computed once and multiplied by ``s``, exactly as ``process`` multiplies
    it by the kind's sensitivity, before the ``>= 1`` test. ``learn_one`` runs once per reading.
    """

    def __init__(self, household_id: str, timezone: str, levels: Sequence[float], *,
                 config: MonitorConfig | None = None) -> None:
        super().__init__(household_id, timezone, config=config or MonitorConfig(sensitivity=()))
        self.levels = tuple(float(s) for s in levels)
        self._opens: list[set[AnomalyKind]] = [set() for _ in self.levels]
        self._top = max(self.levels)
        self._open_somewhere: set[AnomalyKind] = set()  # kinds with an open episode at some level
        self.usage = _NoUsage()  # what staff see of the last 48 hours: nobody looks at a sweep's

    def process(self, meter, ts, value):  # noqa: D102 - one level only would be a plain monitor
        raise TypeError(f"{type(self).__name__}: use process_levels()")

    def factors(self, kind: AnomalyKind) -> tuple[Sequence[float], float]:
        """What each level multiplies ``kind``'s raw score by, and the largest of them. A subclass may
        decide per level and kind (the feedback bench: each arm's own sensitivity)."""
        return self.levels, self._top

    def process_levels(self, meter: Meter | str, ts: datetime, value: float) -> list[list[AnomalyWarning]]:
        """:meth:`HouseholdMonitor.process` at every level: its ``observe`` and ``episode_opens``, the
        detector loop with one ``score_one`` and one ``learn_one`` per detector. New warnings per level."""
        out: list[list[AnomalyWarning]] = [[] for _ in self.levels]
        observed = self.observe(meter, ts, value)
        if observed is None:
            return out
        x, warm = observed
        meter = x["meter"]
        assert not self.sensitivity, "per-household sensitivity is replaced by the levels here"
        for detector in self.detectors:
            if meter not in detector.meters:
                continue
            raw = detector.score_one(x)
            kind = detector.kind
            factors, top = self.factors(kind)
            if raw * top < EPISODE_ENDS_BELOW:
                # below the end of an episode at every level (most readings): what episode_opens does then
                if kind in self._open_somewhere:
                    for open_kinds in self._opens:
                        open_kinds.discard(kind)
                    self._open_somewhere.discard(kind)
            else:
                for factor, open_kinds, warnings in zip(factors, self._opens, out):
                    score = raw * factor
                    if episode_opens(open_kinds, kind, score, warm):
                        warnings.append(self._warning(detector, x, score))
                    if kind in open_kinds:
                        self._open_somewhere.add(kind)
            detector.learn_one(x)
        return out


class _NoUsage:
    """Stands in for :class:`detectors.usage.RecentUsage` in a sweep (no detector reads it)."""

    def update(self, *args) -> None:
        pass


def share(household_id: str, processes: int) -> int:
    """Which process handles a household: a stable hash (not Python's salted ``hash``)."""
    return zlib.crc32(household_id.encode()) % processes


@dataclass
class SweepResult:
    levels: tuple[float, ...]
    warnings: list[list[AnomalyWarning]]  # per level, sorted by (detected_at, warning_id)
    readings: int                         # rows read (each process reads all; counted once)
    households: int
    spans: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)  # first, last reading
    zones: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0                    # summed over the processes

    def at(self, choice: Mapping[str, float]) -> list[AnomalyWarning]:
        """The warnings under a per-kind choice of level (kinds not named: none)."""
        out = []
        for kind, level in choice.items():
            i = self.levels.index(float(level))
            out += [w for w in self.warnings[i] if w.kind.value == kind]
        return sorted(out, key=lambda w: (w.detected_at, w.warning_id))


class SweepError(ValueError):
    """A sweep that could not read its history (a malformed row, an offset with no zone); one line."""


def _run_share(job: dict) -> dict:
    """One process's households; an error comes back as text (exceptions do not all cross processes)."""
    try:
        return _share(job)
    except (ValueError, OSError) as exc:  # MalformedFile and ZoneInferenceError are ValueErrors
        return {"error": str(exc)}


def _share(job: dict) -> dict:
    path, zones, default_zone = job["path"], job["zones"], job["default_zone"]
    levels, processes, index = job["levels"], job["processes"], job["index"]
    progress = job.get("progress")
    monitors: dict[str, MultiLevelMonitor] = {}
    warnings: list[list[AnomalyWarning]] = [[] for _ in levels]
    spans: dict[str, list[datetime]] = {}
    rows = 0
    cpu = time.process_time()
    for hid, meter, ts, value in read_readings(path):
        rows += 1
        if progress is not None and rows % 100_000 == 0:
            progress(index, rows)
        if share(hid, processes) != index:
            continue
        monitor = monitors.get(hid)
        if monitor is None:
            zone = zones.get(hid) or default_zone or zone_for_offset(ts.utcoffset())
            monitor = monitors[hid] = MultiLevelMonitor(hid, zone, levels)
            spans[hid] = [ts, ts]
        span = spans[hid]
        if ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
        for level_warnings, new in zip(warnings, monitor.process_levels(meter, ts, value)):
            level_warnings.extend(new)
    if progress is not None:
        progress(index, rows)
    return {"warnings": warnings, "rows": rows, "spans": {h: tuple(s) for h, s in spans.items()},
            "zones": {h: m.timezone for h, m in monitors.items()}, "cpu_s": time.process_time() - cpu}


_queue = None  # progress messages from worker processes (set in each forked worker)


def _report(index: int, rows: int) -> None:
    if _queue is not None:
        _queue.put((index, rows))


def _init(queue) -> None:
    global _queue
    _queue = queue


def sweep(path: Path | str, levels: Sequence[float] = DEFAULT_LEVELS, *, zones: Mapping[str, str] | None = None,
          default_zone: str | None = None, processes: int = 2,
          on_progress: Callable[[int], None] | None = None) -> SweepResult:
    """Run every detector over a canonical readings file once, at every level of ``levels``.

    ``zones``: household -> IANA zone (households.csv); others get ``default_zone``, or the fixed-offset
    zone of their first reading (as ``elderwatch detect``). ``on_progress(rows)`` is called with the rows
    read by the slowest process, as they go."""
    levels = tuple(float(s) for s in levels)
    jobs = [{"path": str(path), "zones": dict(zones or {}), "default_zone": default_zone, "levels": levels,
             "processes": processes, "index": i} for i in range(processes)]
    began = time.perf_counter()
    if processes == 1:
        parts = [_run_share({**jobs[0], "progress": (lambda i, rows: on_progress(rows)) if on_progress else None})]
    else:
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        for job in jobs:
            job["progress"] = _report
        with ctx.Pool(processes, initializer=_init, initargs=(queue,)) as pool:
            pending = pool.map_async(_run_share, jobs)
            seen = [0] * processes
            while not pending.ready() or not queue.empty():
                try:
                    index, rows = queue.get(timeout=0.5)
                except Exception:  # queue.Empty: nothing new this half second
                    continue
                seen[index] = rows
                if on_progress:
                    on_progress(min(seen))
            parts = pending.get()
    errors = [part["error"] for part in parts if "error" in part]
    if errors:
        raise SweepError(errors[0])
    merged = [sorted((w for part in parts for w in part["warnings"][i]), key=lambda w: (w.detected_at, w.warning_id))
              for i in range(len(levels))]
    spans = {h: s for part in parts for h, s in part["spans"].items()}
    return SweepResult(levels=levels, warnings=merged, readings=parts[0]["rows"], households=len(spans), spans=spans,
                       zones={h: z for part in parts for h, z in part["zones"].items()},
                       wall_s=time.perf_counter() - began, cpu_s=sum(p["cpu_s"] for p in parts))


def iter_household_rows(path: Path | str, households: set[str]) -> Iterator[tuple[str, str, datetime, float]]:
    """The rows of a few households (for the report's example episodes)."""
    for row in read_readings(path):
        if row[0] in households:
            yield row


__all__ = ["DEFAULT_LEVELS", "MultiLevelMonitor", "SweepError", "SweepResult", "iter_household_rows", "share", "sweep"]
