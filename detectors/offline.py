"""The detectors without Kafka: ``elderwatch detect`` over a canonical readings CSV.

One :class:`~detectors.monitor.HouseholdMonitor` per household in a dict, fed the rows in file
order: the same code, in the same order per household, as the detect stage
(``streams/detect.py``), so a file and a Kafka feed of the same readings give the same warnings.
Rows of different households may interleave in any order; within a household they are
time-ordered per meter (as the simulator, the importers and ingest write them).

Nothing is skipped silently: a row that cannot be read is an error naming its line.

Nor is a time zone guessed silently. A household with no zone from households.csv, when no default
zone is given, gets the fixed-offset zone its readings are stamped with (``+08:00`` ->
``Etc/GMT-8``, ``+00:00`` -> ``UTC``), decided at its first reading; a later reading of it with
another offset (a zone with daylight saving time, whose rules the offsets cannot tell) stops the
run with :class:`ZoneInferenceError`. What was inferred is counted in :class:`DetectStats`.

>>> from datetime import datetime
>>> rows = [("hh-1", "water", datetime.fromisoformat("2026-01-05T00:15:00+00:00"), 0.0)]
>>> stats = DetectStats()
>>> list(detect_readings(rows, {"hh-1": "Europe/London"}, stats=stats)), stats.readings, stats.households
([], 1, 1)
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

from detectors.monitor import HouseholdMonitor, MonitorConfig
from schemas.anomaly import AnomalyWarning
from schemas.households import HOUSEHOLD_CSV_COLUMNS, Household, check_timezone
from schemas.readings import HOUSEHOLD_ID_PATTERN, Meter

READINGS_COLUMNS = ("household_id", "meter", "ts", "value")

#: ``(household_id, timezone, config) -> monitor``; tests inject a fake one.
MonitorFactory = Callable[[str, str, MonitorConfig | None], HouseholdMonitor]

Row = tuple[str, Meter | str, datetime, float]


class MalformedFile(ValueError):
    """A readings or households file that cannot be read; says which file and line."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ZoneInferenceError(ValueError):
    """A household's zone cannot be inferred from its readings' UTC offsets (no zone was given)."""


#: The advice every inference error and notice ends with.
SET_ZONE_HINT = "pass --timezone or --households to set it"


def format_offset(offset: timedelta) -> str:
    """``+08:00``, ``-03:30``, ``+00:00`` (seconds shown only if there are any).

    >>> format_offset(timedelta(hours=8)), format_offset(timedelta(hours=-3, minutes=-30))
    ('+08:00', '-03:30')
    """
    sign = "-" if offset < timedelta(0) else "+"
    seconds = int(abs(offset).total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def zone_for_offset(offset: timedelta) -> str:
    """The IANA name of the fixed-offset zone for a UTC offset: ``UTC`` for +00:00, else ``Etc/GMT-N``
    (the Etc names have the POSIX sign: ``Etc/GMT-8`` is UTC+8). An offset that is not a whole
    number of hours in -12..+14 has no such name: :class:`ZoneInferenceError`.

    >>> zone_for_offset(timedelta(hours=8)), zone_for_offset(timedelta(hours=-5)), zone_for_offset(timedelta(0))
    ('Etc/GMT-8', 'Etc/GMT+5', 'UTC')
    >>> zone_for_offset(timedelta(hours=5, minutes=30))
    Traceback (most recent call last):
    detectors.offline.ZoneInferenceError: UTC offset +05:30 has no fixed-offset IANA zone (Etc/GMT-N covers whole hours from -12:00 to +14:00)
    """
    if offset == timedelta(0):
        return "UTC"
    hours, rest = divmod(offset, timedelta(hours=1))
    if rest or not -12 <= hours <= 14:
        raise ZoneInferenceError(f"UTC offset {format_offset(offset)} has no fixed-offset IANA zone "
                                 "(Etc/GMT-N covers whole hours from -12:00 to +14:00)")
    return f"Etc/GMT{-hours:+d}"


def new_monitor(household_id: str, timezone: str, config: MonitorConfig | None = None) -> HouseholdMonitor:
    """The one way a household's monitor is created, offline and in the detect stage."""
    return HouseholdMonitor(household_id, timezone, config=config)


def plain_datetime(ts: datetime) -> datetime:
    """``ts`` with a standard-library ``timezone`` of the same offset (pydantic gives its own tzinfo
    class), so the monitor sees exactly what ``datetime.fromisoformat`` gives the offline path.

    >>> from schemas.readings import ValidatedReading
    >>> r = ValidatedReading.model_validate_json(
    ...     '{"household_id": "h", "meter": "water", "ts": "2026-01-05T00:15:00Z", "value": 1}')
    >>> plain_datetime(r.ts) == r.ts, plain_datetime(r.ts).tzinfo is datetime.fromisoformat("2026-01-05T00:15:00+00:00").tzinfo
    (True, True)
    """
    offset = ts.utcoffset()
    if offset is None:
        raise ValueError("a reading's ts must carry a UTC offset")
    return ts.replace(tzinfo=dt_timezone(offset))


def _open_text(path: Path) -> io.TextIOBase:
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def load_household_timezones(path: Path | str) -> dict[str, str]:
    """``household_id -> timezone`` from a households.csv (``schemas.households.HOUSEHOLD_CSV_COLUMNS``).

    Every row is validated as a :class:`~schemas.households.Household`; a bad row or a household
    listed twice is a :class:`MalformedFile` error with its line number.
    """
    path = Path(path)
    zones: dict[str, str] = {}
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = {"household_id", "timezone"} - set(reader.fieldnames or ())
        if missing:
            raise MalformedFile(path, 1, f"not a households CSV (columns {', '.join(HOUSEHOLD_CSV_COLUMNS)}); "
                                         f"missing {sorted(missing)}")
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise MalformedFile(path, reader.line_num, "wrong number of fields")
            try:
                household = Household.from_csv_row(row)
            except (ValueError, KeyError) as exc:  # pydantic's ValidationError is a ValueError
                raise MalformedFile(path, reader.line_num, f"invalid household: {_first_line(exc)}") from exc
            if household.household_id in zones:
                raise MalformedFile(path, reader.line_num, f"household {household.household_id} listed twice")
            zones[household.household_id] = household.timezone
    return zones


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


_ID_CHECK = re.compile(HOUSEHOLD_ID_PATTERN)


def read_readings(path: Path | str) -> Iterator[Row]:
    """Rows of a canonical readings CSV (``household_id,meter,ts,value``, header, ``.gz`` or plain).

    Raises :class:`MalformedFile` with the line number at the first row that is not a reading:
    wrong number of fields, an invalid household id, an unknown meter, a ``ts`` that is not
    ISO-8601 with a UTC offset, a ``value`` that is not a finite number >= 0.
    """
    path = Path(path)
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise MalformedFile(path, None, "empty file, expected a header household_id,meter,ts,value") from None
        if tuple(h.strip() for h in header) != READINGS_COLUMNS:
            raise MalformedFile(path, 1, f"header must be {','.join(READINGS_COLUMNS)}")
        for fields in reader:
            line = reader.line_num
            if len(fields) != 4:
                raise MalformedFile(path, line, f"expected 4 fields, got {len(fields)}")
            household_id, meter, ts_text, value_text = fields
            if not _ID_CHECK.fullmatch(household_id):
                raise MalformedFile(path, line, "household_id is not a pseudonymous id")
            try:
                meter_enum = Meter(meter)
            except ValueError:
                raise MalformedFile(path, line, f"meter must be one of {', '.join(m.value for m in Meter)}") from None
            try:
                ts = datetime.fromisoformat(ts_text)
            except ValueError:
                raise MalformedFile(path, line, "ts is not an ISO-8601 timestamp") from None
            if ts.tzinfo is None or ts.utcoffset() is None:
                raise MalformedFile(path, line, "ts has no UTC offset")
            try:
                value = float(value_text)
            except ValueError:
                raise MalformedFile(path, line, "value is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise MalformedFile(path, line, "value must be a finite number >= 0")
            yield household_id, meter_enum, ts, value


@dataclass
class DetectStats:
    """What a run did, for the command's summary."""

    readings: int = 0
    households: int = 0
    #: Households not in households.csv: given the default zone, or (no default) an inferred one.
    households_without_timezone: int = 0
    #: No default zone: households whose zone was inferred, by their readings' UTC offset (``+08:00``).
    households_inferred_by_offset: Counter = field(default_factory=Counter)
    #: The zone each of those offsets was taken as (``+08:00 -> Etc/GMT-8``, ``+00:00 -> UTC``).
    inferred_zones: dict[str, str] = field(default_factory=dict)
    warnings_by_kind: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    @property
    def warnings(self) -> int:
        return sum(self.warnings_by_kind.values())

    @property
    def readings_per_second(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    @property
    def households_inferred(self) -> int:
        return sum(self.households_inferred_by_offset.values())

    def inference_notice(self) -> str | None:
        """The line to tell the user when zones were inferred (``None`` if none were).

        >>> stats = DetectStats(households_inferred_by_offset=Counter({"+08:00": 46}), inferred_zones={"+08:00": "Etc/GMT-8"})
        >>> print(stats.inference_notice())
        detect: no time zone given; 46 households' zones inferred from their readings' offsets (+08:00 -> Etc/GMT-8); pass --timezone or --households to set it
        """
        if not self.households_inferred_by_offset:
            return None
        by_offset = sorted(self.households_inferred_by_offset.items())
        if len(by_offset) == 1:
            mapping = f"{by_offset[0][0]} -> {self.inferred_zones[by_offset[0][0]]}"
        else:
            mapping = ", ".join(f"{offset} -> {self.inferred_zones[offset]}: {n}" for offset, n in by_offset)
        utc = self.households_inferred_by_offset.get("+00:00", 0)
        utc_note = (f"; {utc} households' readings are stamped UTC, so their days and nights are taken in UTC"
                    if utc else "")
        return (f"detect: no time zone given; {self.households_inferred} households' zones inferred from their "
                f"readings' offsets ({mapping}){utc_note}; {SET_ZONE_HINT}")

    def summary(self) -> dict:
        return {"readings": self.readings, "households": self.households,
                "households_default_timezone": self.households_without_timezone,
                "households_inferred_by_offset": dict(sorted(self.households_inferred_by_offset.items())),
                "inferred_timezones": dict(sorted(self.inferred_zones.items())),
                "warnings": self.warnings, "warnings_by_kind": dict(sorted(self.warnings_by_kind.items())),
                "seconds": round(self.seconds, 3), "readings_per_s": round(self.readings_per_second, 1)}


def detect_readings(rows: Iterable[Row], timezones: Mapping[str, str] | None = None,
                    default_timezone: str | None = None,
                    config: MonitorConfig | None = None, *, monitor_factory: MonitorFactory = new_monitor,
                    stats: DetectStats | None = None, roundtrip_every: int = 0) -> Iterator[AnomalyWarning]:
    """Feed ``(household_id, meter, ts, value)`` rows, in order, to one monitor per household.

    ``timezones`` gives a household's zone (households.csv); others get ``default_timezone``, or if
    it is ``None``, the fixed-offset zone of their first reading's UTC offset (:func:`zone_for_offset`,
    counted in ``stats.households_inferred_by_offset``). Such a household's later readings must carry
    the same offset, else :class:`ZoneInferenceError` naming the household and both offsets.
    ``roundtrip_every=n`` replaces a monitor by ``loads(dumps())`` after every n-th reading (1: after
    each, what the detect stage does when its cache misses, and at every restart): a check that the
    state is complete, used by tests.
    """
    timezones = timezones or {}
    if default_timezone is not None:
        check_timezone(default_timezone)
    stats = stats if stats is not None else DetectStats()
    stats.started = time.perf_counter()
    monitors: dict[str, HouseholdMonitor] = {}
    inferred_offsets: dict[str, timedelta] = {}  # household -> the offset its zone was inferred from
    try:
        for household_id, meter, ts, value in rows:
            monitor = monitors.get(household_id)
            if monitor is None:
                zone = timezones.get(household_id)
                if zone is None:
                    stats.households_without_timezone += 1
                    zone = default_timezone
                    if zone is None:
                        zone = _infer_zone(household_id, ts, stats)
                        inferred_offsets[household_id] = ts.utcoffset()
                monitor = monitors[household_id] = monitor_factory(household_id, zone, config)
                stats.households += 1
            elif inferred_offsets:
                expected = inferred_offsets.get(household_id)
                if expected is not None and ts.utcoffset() != expected:
                    raise ZoneInferenceError(
                        f"household {household_id}: readings carry UTC offsets {format_offset(expected)} and "
                        f"{format_offset(ts.utcoffset())} (at {ts.isoformat()}), so its zone (daylight saving "
                        f"time?) cannot be inferred from them; {SET_ZONE_HINT}")
            warnings = monitor.process(meter, ts, value)
            stats.readings += 1
            if roundtrip_every and stats.readings % roundtrip_every == 0:
                monitors[household_id] = type(monitor).loads(monitor.dumps())
            for warning in warnings:
                stats.warnings_by_kind[warning.kind.value] += 1
                yield warning
    finally:
        stats.seconds = time.perf_counter() - stats.started


def _infer_zone(household_id: str, ts: datetime, stats: DetectStats) -> str:
    """The zone of a household's first reading's UTC offset, counted in ``stats``."""
    offset = ts.utcoffset()
    try:
        zone = zone_for_offset(offset)
    except ZoneInferenceError as exc:
        raise ZoneInferenceError(f"household {household_id}: no time zone given and its zone cannot be inferred: "
                                 f"{exc}; {SET_ZONE_HINT}") from None
    text = format_offset(offset)
    stats.households_inferred_by_offset[text] += 1
    stats.inferred_zones[text] = zone
    return zone


def detect_file(readings_path: Path | str, households_path: Path | str | None = None, *,
                default_timezone: str | None = None, config: MonitorConfig | None = None,
                monitor_factory: MonitorFactory = new_monitor, stats: DetectStats | None = None,
                roundtrip_every: int = 0) -> Iterator[AnomalyWarning]:
    """:func:`detect_readings` over a canonical readings CSV, zones from an optional households.csv."""
    timezones = load_household_timezones(households_path) if households_path is not None else {}
    yield from detect_readings(read_readings(readings_path), timezones, default_timezone, config,
                               monitor_factory=monitor_factory, stats=stats, roundtrip_every=roundtrip_every)


def write_warnings(warnings: Iterable[AnomalyWarning], out: Path | str) -> int:
    """One ``AnomalyWarning.model_dump_json()`` per line; returns how many.

    Written to ``<out>.partial`` and renamed at the end: a run that fails half-way (a malformed
    row) leaves no warnings file that looks complete."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    n = 0
    try:
        with open(partial, "w", encoding="utf-8", newline="\n") as handle:
            for warning in warnings:
                handle.write(warning.model_dump_json())
                handle.write("\n")
                n += 1
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return n


__all__ = ["DetectStats", "MalformedFile", "MonitorFactory", "ZoneInferenceError", "check_timezone", "plain_datetime",
           "detect_file", "detect_readings", "format_offset", "load_household_timezones", "new_monitor", "read_readings",
           "write_warnings", "zone_for_offset"]
