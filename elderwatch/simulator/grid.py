"""The shared time grid: a regular 15-minute UTC grid, and how it maps to the local clock.

All households of one simulation live in the same time zone, so the grid, the local-time
mapping, daylight and the outdoor weather are computed once and shared.

Coordinates used throughout the simulator:

* ``u`` -- UTC minutes since the grid start (local midnight of the start date);
* ``L`` -- local wall-clock minutes since that same local midnight (``L = u + delta``, where
  ``delta`` is the change of UTC offset since the start, e.g. +60 after the clocks go forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np

SLOT_MIN = 15
SLOTS_PER_DAY = 96
DAY_MIN = 1440
LATITUDE_DEG = 52.0  # daylight model; UK-ish


@dataclass(frozen=True)
class Grid:
    start: date
    days: int
    tz: str
    start_utc: datetime
    n: int  # number of 15-minute intervals
    ts: tuple[str, ...]  # ISO end-of-interval timestamps, UTC offset
    slot_lmin: np.ndarray  # local minute-of-day at the interval start
    slot_lday: np.ndarray  # local day index of the interval start
    day_delta_early: np.ndarray  # delta (min) in force at local 00:00 of each local day
    day_delta_late: np.ndarray  # delta (min) in force at local 12:00 of each local day
    weekday: np.ndarray  # 0 = Monday, per local day
    sunrise: np.ndarray  # local minute-of-day, per local day
    sunset: np.ndarray

    @property
    def minutes(self) -> int:
        return self.n * SLOT_MIN

    def local_to_u(self, L: np.ndarray) -> np.ndarray:
        """Local wall-clock minutes -> UTC minutes since start (approximate only inside the DST hour)."""
        L = np.asarray(L, dtype=np.float64)
        d = np.clip((L // DAY_MIN).astype(np.int64), 0, self.days - 1)
        m = L - d * DAY_MIN
        delta = np.where(m < 120, self.day_delta_early[d], self.day_delta_late[d])
        return L - delta

    def iso(self, u: float) -> str:
        return (self.start_utc + timedelta(minutes=float(u))).isoformat()


def build_grid(start: date, days: int, tz: str) -> Grid:
    if days < 1:
        raise ValueError("days must be >= 1")
    zone = ZoneInfo(tz)
    start_local = datetime.combine(start, time(0), zone)
    end_local = datetime.combine(start + timedelta(days=days), time(0), zone)
    start_utc = start_local.astimezone(timezone.utc)
    end_utc = end_local.astimezone(timezone.utc)
    n = int((end_utc - start_utc) / timedelta(minutes=SLOT_MIN))
    off0 = start_local.utcoffset() / timedelta(minutes=1)

    # Offset changes are rare: evaluate once per hour and hold.
    hours = np.arange((n + 3) // 4 + 1)
    off_h = np.empty(len(hours))
    for h in hours.tolist():
        off_h[h] = (start_utc + timedelta(hours=h)).astimezone(zone).utcoffset() / timedelta(minutes=1)
    slot = np.arange(n)
    delta_slot = off_h[slot // 4] - off0
    L = slot * SLOT_MIN + delta_slot
    slot_lday = (L // DAY_MIN).astype(np.int64)
    slot_lmin = (L - slot_lday * DAY_MIN).astype(np.int64)

    early = np.empty(days)
    late = np.empty(days)
    dst_min = np.empty(days)
    weekday = np.empty(days, dtype=np.int64)
    doy = np.empty(days)
    for d in range(days):
        day = start + timedelta(days=d)
        e = datetime.combine(day, time(0), zone)
        lt = datetime.combine(day, time(12), zone)
        early[d] = e.utcoffset() / timedelta(minutes=1) - off0
        late[d] = lt.utcoffset() / timedelta(minutes=1) - off0
        dst_min[d] = (lt.dst() or timedelta(0)) / timedelta(minutes=1)
        weekday[d] = day.weekday()
        doy[d] = day.timetuple().tm_yday

    # Daylight: sunrise/sunset in local clock time from the solar declination.
    decl = np.radians(-23.44) * np.cos(2 * np.pi * (doy + 10) / 365.0)
    cos_h = -np.tan(np.radians(LATITUDE_DEG)) * np.tan(decl)
    half_day_min = np.degrees(np.arccos(np.clip(cos_h, -1, 1))) / 15.0 * 60.0
    noon = 12 * 60 + dst_min
    sunrise = noon - half_day_min
    sunset = noon + half_day_min

    base = start_utc
    ts = tuple((base + timedelta(minutes=SLOT_MIN * (i + 1))).isoformat() for i in range(n))
    return Grid(
        start=start,
        days=days,
        tz=tz,
        start_utc=start_utc,
        n=n,
        ts=ts,
        slot_lmin=slot_lmin,
        slot_lday=np.clip(slot_lday, 0, days - 1),
        day_delta_early=early,
        day_delta_late=late,
        weekday=weekday,
        sunrise=sunrise,
        sunset=sunset,
    )


def outdoor_temperature(grid: Grid, seed: int) -> np.ndarray:
    """Outdoor temperature (deg C) per interval: season + weather spells + day/night swing.

    Shared by all households of a run (they live in the same region); depends on the seed only.
    """
    rng = np.random.default_rng([seed, 7, 1])
    doy = np.array([(grid.start + timedelta(days=d)).timetuple().tm_yday for d in range(grid.days)], dtype=float)
    shocks = rng.normal(0.0, 1.8, grid.days)
    spell = np.empty(grid.days)
    acc = rng.normal(0.0, 2.0)
    for d in range(grid.days):
        acc = 0.7 * acc + shocks[d]
        spell[d] = acc
    season = 10.5 - 6.5 * np.cos(2 * np.pi * (doy - 15) / 365.0)
    daily = (season + spell)[grid.slot_lday]
    swing = 3.5 * np.cos(2 * np.pi * (grid.slot_lmin / 60.0 - 15.0) / 24.0)
    return daily + swing
