"""A household's recent meter use, for the community worker reading one of its tickets.

Kept on the household's :class:`~detectors.monitor.HouseholdMonitor` (so in its state record) and
shown by the staff API as a ticket's ``recent_usage``. Per meter:

* the last ``hours`` (48) local hours as hourly totals: a ring of floats and the hour it ends at.
  A reading's value is what was consumed in the interval ending at its ``ts``; it counts in the
  hour containing ``ts`` minus a microsecond (a 10:00 reading is 09:45-10:00, in 09:00-10:00).
  An hour without any reading is ``None``: missing data is not zero use;
* the time of its last reading;
* the usual daily total, a :class:`~detectors.rhythm.FadingMean` of complete local days (at least
  ``MIN_COVERAGE`` of the day reported). No detector learns a daily total in litres (``decline``
  counts intervals with use, ``surge`` learns kW per hour, electricity only), hence its own. Days
  with no use at all (away) are skipped, as ``decline`` does; a day with a leak counts like any
  other: this is for reading, not for detecting.

Hours are UTC hours shifted by the zone's sub-hour offset, so they are the zone's local hours
(also in Asia/Kolkata) and a DST change needs nothing: the local day it happens has 23 or 25 of
them, each labelled with its own offset. (A zone whose DST shift is not a whole hour, Lord Howe
Island's, gets hours starting at half past for half the year.)

Deterministic and clock-free: the summary's window ends with the newest reading of any meter
unless ``now`` is given (data time, so replays and the live stage agree).

>>> import random
>>> from datetime import datetime, timedelta, timezone
>>> rng = random.Random(7)
>>> usage = RecentUsage("Europe/London")
>>> t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
>>> for i in range(1, 96 * 9 + 49):  # nine days and twelve hours of quarter-hours
...     t = t0 + timedelta(minutes=15 * i)
...     usage.update("electricity", t, round(rng.uniform(0.05, 0.3), 3), 15)
...     if not 96 * 9 + 36 < i <= 96 * 9 + 44:  # no water readings 09:00-11:00 on the last day
...         usage.update("water", t, round(rng.uniform(0, 9), 1) if 7 <= t.hour < 22 else 0.0, 15)
>>> s = usage.summary()
>>> water = s["meters"]["water"]
>>> s["timezone"], water["unit"], water["last_reading"], len(water["hours"])
('Europe/London', 'L', '2026-03-10T12:00:00+00:00', 48)
>>> water["hours"][-5:]
[{'hour': '2026-03-10T07:00:00+00:00', 'value': 9.1}, {'hour': '2026-03-10T08:00:00+00:00', 'value': 23.0},
 {'hour': '2026-03-10T09:00:00+00:00', 'value': None}, {'hour': '2026-03-10T10:00:00+00:00', 'value': None},
 {'hour': '2026-03-10T11:00:00+00:00', 'value': 14.2}]
>>> water["today"], water["usual_per_day"]
(50.1, 254.722)
>>> s["meters"]["electricity"]["today"], s["meters"]["electricity"]["usual_per_day"]
(8.48, 16.674)
"""

from __future__ import annotations

import math
import sys
from array import array
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from detectors.rhythm import FadingMean
from detectors.state import StateFormatError, decode_float_array, entry, integer, optional, pack_floats, real, text

#: Unit per meter, in the summary.
UNITS = {"water": "L", "electricity": "kWh"}
#: A day counts towards the usual daily total when at least this share of it was reported.
MIN_COVERAGE = 0.95
#: Complete days needed before ``usual_per_day`` is given.
MIN_DAYS = 7
#: Of the usual daily total (about the last month).
DAILY_FADING = 0.04

_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
_MISSING = math.nan


def _missing(hours: int) -> array:
    """``hours`` hours without a reading (NaN)."""
    return array("d", [_MISSING]) * hours


def _micros(ts: datetime) -> int:
    """POSIX microseconds of an aware datetime (integers: no float rounding at hour boundaries)."""
    return (ts - _EPOCH) // _US


class _MeterUsage:
    """One meter: the ring of hourly totals ending at hour ``end``, the last reading, the day in progress."""

    __slots__ = ("end", "values", "last", "day", "day_total", "day_minutes", "daily")

    def __init__(self, hours: int) -> None:
        self.end: int | None = None           # hour index (see RecentUsage._hour) of values[-1]
        self.values = _missing(hours)         # NaN: no reading in that hour (doubles: 8 bytes an hour)
        self.last: int | None = None          # POSIX µs of the last reading
        self.day: int | None = None           # local date (ordinal) of the day in progress
        self.day_total = 0.0
        self.day_minutes = 0.0
        self.daily = FadingMean(DAILY_FADING)

    def add(self, hour: int, value: float) -> None:
        values, n = self.values, len(self.values)
        if self.end is None or hour >= self.end + n:
            values[:] = _missing(n)
            self.end = hour
        elif hour > self.end:
            shift = hour - self.end
            del values[:shift]
            values.extend(_missing(shift))
            self.end = hour
        i = n - 1 - (self.end - hour)
        if i < 0:
            return  # older than the ring (readings arrive in order per meter: does not happen)
        old = values[i]
        values[i] = value if math.isnan(old) else old + value

    def get(self, hour: int) -> float | None:
        if self.end is None:
            return None
        i = len(self.values) - 1 - (self.end - hour)
        if not 0 <= i < len(self.values) or math.isnan(self.values[i]):
            return None
        return self.values[i]

    def __getstate__(self):
        # the ring as 8-byte doubles in one bytes object: about half a pickled list of floats
        return (self.end, self.values.tobytes(), self.last, self.day, self.day_total, self.day_minutes,
                self.daily)

    def __setstate__(self, state) -> None:
        self.end, values, self.last, self.day, self.day_total, self.day_minutes, self.daily = state
        self.values = array("d", values)

    def to_state(self) -> dict:
        # the ring as doubles (NaN: no reading in that hour), as the pickle kept it
        return {"end": self.end, "values": pack_floats(self.values), "last": self.last, "day": self.day,
                "day_total": self.day_total, "day_minutes": self.day_minutes, "daily": self.daily.to_state()}

    @classmethod
    def from_state(cls, state, where: str) -> "_MeterUsage":
        series = cls.__new__(cls)
        series.values = decode_float_array(entry(state, "values", where), where + ".values")
        series.end = optional(integer)(entry(state, "end", where), where + ".end")
        series.last = optional(integer)(entry(state, "last", where), where + ".last")
        series.day = optional(integer)(entry(state, "day", where), where + ".day")
        series.day_total = real(entry(state, "day_total", where), where)
        series.day_minutes = real(entry(state, "day_minutes", where), where)
        series.daily = FadingMean.from_state(entry(state, "daily", where), where + ".daily")
        return series


class RecentUsage:
    """Hourly totals of the last ``hours`` local hours per meter, and each meter's usual day.

    Parameters
    ----------
    timezone
        The household's IANA zone: hours and days are local.
    hours
        Length of the ring (and of the summary's ``hours``).
    """

    def __init__(self, timezone: str = "UTC", hours: int = 48) -> None:
        self.timezone = timezone
        self.hours = hours
        self._meters: dict[str, _MeterUsage] = {}
        self._init_zone()

    def _init_zone(self) -> None:
        self._tz = ZoneInfo(self.timezone)
        # local hours start this many µs after UTC hours (Asia/Kolkata: 30 min; most zones: 0)
        offset = datetime(2000, 1, 1, tzinfo=self._tz).utcoffset()
        self._phase = (offset // _US) % _HOUR_US
        self._day_hour: int | None = None  # cache: the last hour updated and its local date (not stored)
        self._day = 0

    def _hour(self, us: int) -> int:
        """Index of the local hour containing ``us`` (POSIX µs) minus a microsecond."""
        return (us - 1 - self._phase) // _HOUR_US

    def _hour_start(self, hour: int) -> datetime:
        return (_EPOCH + timedelta(microseconds=hour * _HOUR_US + self._phase)).astimezone(self._tz)

    def update(self, meter: str, ts: datetime, value: float, minutes: float) -> None:
        """One reading: ``value`` consumed in the ``minutes`` before ``ts`` (aware). In order per meter."""
        series = self._meters.get(meter)
        if series is None:
            series = self._meters[meter] = _MeterUsage(self.hours)
        us = _micros(ts)
        hour = self._hour(us)
        series.add(hour, value)
        series.last = us
        if hour != self._day_hour:  # the local date of the hour, once per hour (not per meter and reading)
            self._day_hour, self._day = hour, self._hour_start(hour).date().toordinal()
        day = self._day
        if series.day != day:
            if series.day is not None:
                self._close_day(series)
            series.day, series.day_total, series.day_minutes = day, 0.0, 0.0
        series.day_total += value
        series.day_minutes += minutes

    def _close_day(self, series: _MeterUsage) -> None:
        day = date.fromordinal(series.day)
        start = datetime.combine(day, time(0), tzinfo=self._tz).timestamp()
        length = (datetime.combine(day + timedelta(days=1), time(0), tzinfo=self._tz).timestamp() - start) / 60
        if series.day_total > 0 and series.day_minutes >= MIN_COVERAGE * length:
            series.daily.update(series.day_total)

    def summary(self, now: datetime | None = None) -> dict:
        """JSON-ready: per meter, the ``hours`` hourly totals ending with the hour of ``now`` (default:
        the newest reading of any meter), today's total so far (``None`` without any reading today),
        the usual daily total (``None`` before ``MIN_DAYS`` complete days) and the last reading.
        Floats rounded to 3 decimals; times ISO 8601 in the household's zone."""
        meters = {name: self._meters[name] for name in sorted(self._meters, key=_meter_order)}
        if not meters:
            return {"timezone": self.timezone, "meters": {}}
        end = self._hour(_micros(now)) if now is not None else max(s.end for s in meters.values())
        window = range(end - self.hours + 1, end + 1)
        starts = [self._hour_start(h) for h in window]
        labels = [s.isoformat() for s in starts]
        today = starts[-1].date()
        out = {}
        for name, series in meters.items():
            values = [series.get(h) for h in window]
            known_today = [v for v, s in zip(values, starts) if v is not None and s.date() == today]
            out[name] = {
                "unit": UNITS.get(name, ""),
                "last_reading": (_EPOCH + timedelta(microseconds=series.last)).astimezone(self._tz).isoformat(),
                "hours": [{"hour": label, "value": None if v is None else round(v, 3)}
                          for label, v in zip(labels, values)],
                "today": round(sum(known_today), 3) if known_today else None,
                "usual_per_day": round(series.daily.get(), 3) if series.daily.n >= MIN_DAYS else None,
            }
        return {"timezone": self.timezone, "meters": out}

    def __getstate__(self):
        return self.timezone, self.hours, self._meters

    def __setstate__(self, state) -> None:
        self.timezone, self.hours, self._meters = state
        self._init_zone()

    def to_state(self) -> dict:
        return {"timezone": self.timezone, "hours": self.hours,
                "meters": {name: m.to_state() for name, m in self._meters.items()}}

    @classmethod
    def from_state(cls, state, where: str = "usage") -> "RecentUsage":
        usage = cls(sys.intern(text(entry(state, "timezone", where), where + ".timezone")),
                    integer(entry(state, "hours", where), where + ".hours"))
        meters = entry(state, "meters", where)
        if not isinstance(meters, dict):
            raise StateFormatError(f"{where}.meters: expected an object")
        for name, series in meters.items():
            usage._meters[sys.intern(text(name, where))] = _MeterUsage.from_state(series, f"{where}.{name}")
            if len(usage._meters[name].values) != usage.hours:
                raise StateFormatError(f"{where}.{name}: expected {usage.hours} hours")
        return usage


def _meter_order(name: str) -> tuple[int, str]:
    order = list(UNITS)
    return (order.index(name) if name in order else len(order), name)


__all__ = ["RecentUsage", "UNITS"]
