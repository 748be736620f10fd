"""Daily routines in local time, and the always-on loads.

Human activity is a set of *events* (start, duration, kW, litres/minute), vectorised over all
days of one household. Events are scheduled on the local wall clock and converted to the UTC
grid afterwards, so behaviour follows the local clock across DST changes while timestamps
stay a regular UTC grid. Lights and TV are *blocks*: when their owner falls ill they stay on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elderwatch.simulator.grid import DAY_MIN, SLOT_MIN, Grid
from elderwatch.simulator.household import Profile


class Events:
    """Accumulates human-driven appliance/water events in local minutes."""

    __slots__ = ("_items", "_n")

    def __init__(self) -> None:
        self._items: list[tuple] = []
        self._n = 0

    def add(self, L, dur, kw=0.0, lpm=0.0, block: bool = False) -> None:
        """Events starting at local minutes ``L``; other fields are scalars or arrays like ``L``."""
        if not isinstance(L, np.ndarray):
            L = np.asarray(L, dtype=np.float64).reshape(-1)
        n = L.size
        if n == 0:
            return
        self._items.append((L, dur, kw, lpm, block))
        self._n += n

    def to_utc(self, grid: Grid) -> "UtcEvents":
        total = self._n
        L = np.empty(total)
        dur = np.empty(total)
        kw = np.empty(total)
        lpm = np.empty(total)
        block = np.empty(total, dtype=bool)
        pos = 0
        for l_, d_, k_, w_, b_ in self._items:
            end = pos + l_.size
            L[pos:end] = l_
            dur[pos:end] = d_
            kw[pos:end] = k_
            lpm[pos:end] = w_
            block[pos:end] = b_
            pos = end
        d = np.maximum(np.rint(dur), 1).astype(np.int64)
        u0 = np.rint(grid.local_to_u(L)).astype(np.int64)
        return UtcEvents(u0, u0 + d, kw, lpm, block)


@dataclass
class UtcEvents:
    u0: np.ndarray
    u1: np.ndarray
    kw: np.ndarray
    lpm: np.ndarray
    block: np.ndarray


def draw_rhythm(rng: np.random.Generator, p: Profile, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Wake and sleep (local minute of the day) for days 0..days (one extra for the last night)."""
    D = grid.days + 1
    wd = np.append(grid.weekday, (grid.weekday[-1] + 1) % 7)
    weekend = wd >= 5
    late = (rng.random(D) < p.late_morning_p) * rng.uniform(60, 150, D)
    wake = p.wake + weekend * p.weekend_shift + rng.normal(0, p.day_sd, D) + late
    wake = np.clip(wake, 300, 780)
    sleep = p.sleep + weekend * p.weekend_shift * 0.4 + rng.normal(0, p.day_sd, D)
    sleep = np.clip(sleep, np.maximum(wake + 720, 1200), 1560)
    return wake, sleep


def _u(rng: np.random.Generator, a: np.ndarray, b) -> np.ndarray:
    return a + rng.random(a.shape) * (b - a)


def daily_routine(
    rng: np.random.Generator,
    p: Profile,
    grid: Grid,
    wake: np.ndarray,
    sleep: np.ndarray,
    quiet_days: np.ndarray,
    ev: Events,
) -> list[tuple[float, float]]:
    """Adds a normal life's events to ``ev``; returns day-out windows (local minutes) when nobody is home."""
    D = grid.days
    off = np.arange(D) * float(DAY_MIN)
    w = wake[:D]
    s = sleep[:D]
    flush_lpm = (p.flush_l + 1.0) / 2.0  # flush + hand wash over two minutes

    def per_day(rate):
        k = rng.poisson(rate, D)
        return np.repeat(np.arange(D), k)

    def waking_times(di, lo=30.0, hi=10.0):
        return off[di] + w[di] + lo + rng.random(di.size) * np.maximum(s[di] - w[di] - lo - hi, 1.0)

    # morning: toilet, light if dark, kettle, maybe toast, wash at the sink
    ev.add(off + w + _u(rng, np.full(D, 2.0), 15.0), 2, lpm=flush_lpm)
    dark = w < grid.sunrise + 20
    if dark.any():
        dur = np.minimum(grid.sunrise + 30, w + 150) - w
        ev.add((off + w)[dark], np.maximum(dur[dark], 10), kw=p.light_kw * 0.6, block=True)
    tk = off + w + _u(rng, np.full(D, 10.0), 30.0)
    ev.add(tk - 1, 1, lpm=_u(rng, np.full(D, 0.8), 1.5))
    ev.add(tk, _u(rng, np.full(D, 2.5), 4.0), kw=p.kettle_kw)
    toast = rng.random(D) < 0.5
    ev.add(tk[toast] + 3, 3, kw=1.0)
    ev.add(off + w + _u(rng, np.full(D, 5.0), 20.0), _u(rng, np.full(D, 1.0), 2.5), lpm=2.5)

    # shower or bath
    wash = rng.random(D) < p.wash_p
    nw = int(wash.sum())
    if nw:
        if p.wash_evening:
            tw = (off + s)[wash] - _u(rng, np.full(nw, 60.0), 120.0)
        else:
            tw = (off + w)[wash] + _u(rng, np.full(nw, 25.0), 70.0)
        if p.washing == "bath":
            dur = _u(rng, np.full(nw, 8.0), 12.0)
            ev.add(tw, dur, lpm=_u(rng, np.full(nw, 8.0), 11.0))
        else:
            dur = _u(rng, np.full(nw, 5.0), 10.0)
            if p.shower_electric:
                ev.add(tw, dur, kw=8.5, lpm=_u(rng, np.full(nw, 4.5), 7.0))
            else:
                ev.add(tw, dur, lpm=_u(rng, np.full(nw, 6.0), 9.0))
        if p.heating == "electric" and not p.shower_electric:  # immersion heater reheats the tank
            ev.add(tw + dur, _u(rng, np.full(nw, 20.0), 45.0), kw=3.0)

    # daytime toilet visits, small tap uses, more cups of tea
    di = per_day(max(p.toilet_day - 2.0, 0.5))
    ev.add(waking_times(di), 2, lpm=flush_lpm)
    di = per_day(p.taps_day)
    ev.add(waking_times(di, 10.0), 1, lpm=_u(rng, np.full(di.size, 0.3), 3.0))
    di = per_day(max(p.kettle_day - 1.0, 0.5))
    tk = waking_times(di, 60.0, 30.0)
    ev.add(tk - 1, 1, lpm=_u(rng, np.full(di.size, 0.5), 1.2))
    ev.add(tk, 3, kw=p.kettle_kw)

    # lunch
    tl = off + np.maximum(w + 150, 720 + rng.normal(0, 30, D))
    if p.cooking == "microwave":
        ev.add(tl, _u(rng, np.full(D, 3.0), 7.0), kw=_u(rng, np.full(D, 0.9), 1.2))
    else:
        ev.add(tl, _u(rng, np.full(D, 10.0), 25.0), kw=_u(rng, np.full(D, 1.2), 1.8))
    wu = rng.random(D) < 0.5
    ev.add(tl[wu] + _u(rng, np.full(int(wu.sum()), 20.0), 50.0), _u(rng, np.full(int(wu.sum()), 1.5), 3.0), lpm=4.5)

    # dinner and washing up
    td = off + np.clip(1050 + rng.normal(0, 40, D), w + 300, s - 150)
    if p.cooking == "microwave":
        dd = _u(rng, np.full(D, 5.0), 10.0)
        ev.add(td, dd, kw=1.0)
    else:
        dd = _u(rng, np.full(D, 25.0), 55.0)
        ev.add(td, dd, kw=_u(rng, np.full(D, 1.0), 1.6))
    dinner_end = td + dd
    ev.add(dinner_end + _u(rng, np.full(D, 20.0), 60.0), _u(rng, np.full(D, 2.0), 4.0), lpm=5.0)

    # evening light and TV, bedtime toilet and teeth
    ls = np.maximum(grid.sunset - 15, w + 60)
    le = s + rng.uniform(0, 10, D)
    lit = le > ls + 10
    ev.add((off + ls)[lit], (le - ls)[lit], kw=p.light_kw, block=True)
    tv0 = dinner_end + _u(rng, np.full(D, 10.0), 40.0)
    tv1 = off + s - rng.uniform(0, 20, D)
    on = tv1 > tv0 + 15
    ev.add(tv0[on], (tv1 - tv0)[on], kw=p.tv_kw, block=True)
    aft = rng.random(D) < p.afternoon_tv_p
    na = int(aft.sum())
    ev.add(off[aft] + np.maximum(840 + rng.uniform(0, 60, na), w[aft] + 120), _u(rng, np.full(na, 60.0), 150.0), kw=p.tv_kw, block=True)
    ev.add(off + s - rng.uniform(0, 10, D), 2, lpm=flush_lpm)
    ev.add(off + s - rng.uniform(5, 15, D), 1, lpm=1.5)

    # laundry: fill, heat, wash, rinses, spin
    lw = rng.random(D) < p.laundry_week / 7.0
    nl = int(lw.sum())
    if nl:
        t0 = off[lw] + np.maximum(w[lw] + 60, 570 + rng.uniform(0, 240, nl))
        ev.add(t0, 5, lpm=3.0)
        ev.add(t0, 15, kw=2.0)
        ev.add(t0 + 15, 60, kw=0.15)
        ev.add(t0 + 40, 3, lpm=4.0)
        ev.add(t0 + 65, 3, lpm=4.0)
        ev.add(t0 + 80, 10, kw=0.45)

    # vacuuming / ironing
    vc = rng.random(D) < 0.2
    ev.add(waking_times(np.flatnonzero(vc), 120.0, 240.0), rng.uniform(10, 30, int(vc.sum())), kw=1.2)

    # night toilet visits with a dim light (night after day d, until the wake of day d+1)
    di = per_day(p.night_rate)
    if di.size:
        a = off[di] + s[di] + 40
        b = off[di] + DAY_MIN + wake[di + 1] - 30
        t = a + rng.random(di.size) * np.maximum(b - a, 1)
        ev.add(t, 2, lpm=flush_lpm)
        ev.add(t - 1, rng.uniform(4, 8, di.size), kw=0.05)

    # visitors (extra tea, toilet, taps) and days out (nobody home)
    vis = (rng.random(D) < p.visitor_p) & ~quiet_days
    nv = int(vis.sum())
    if nv:
        tv = off[vis] + np.maximum(630 + rng.uniform(0, 270, nv), w[vis] + 120)
        dv = rng.uniform(60, 180, nv)
        ev.add(tv + 5, 3, kw=p.kettle_kw, lpm=0.0)
        ev.add(tv + 4, 1, lpm=1.6)
        ev.add(tv + dv * 0.6, 3, kw=p.kettle_kw)
        ev.add(tv + dv * rng.random(nv), 2, lpm=flush_lpm)
        ev.add(tv + dv * rng.random(nv), 2, lpm=2.0)
        ev.add(tv + dv - 10, 3, lpm=4.0)
    out = (rng.random(D) < p.day_out_p) & ~quiet_days & ~vis
    windows: list[tuple[float, float]] = []
    no = int(out.sum())
    if no:
        lo = off[out] + np.maximum(w[out] + 90, 570) + rng.uniform(0, 120, no)
        hi = lo + rng.uniform(120, 360, no)
        hi = np.minimum(hi, off[out] + s[out] - 60)
        windows = [(a, b) for a, b in zip(lo.tolist(), hi.tolist()) if b > a + 30]
    return windows


def always_on(
    rng: np.random.Generator,
    p: Profile,
    grid: Grid,
    temp: np.ndarray,
    wake: np.ndarray,
    sleep: np.ndarray,
    away_slots: np.ndarray,
) -> np.ndarray:
    """kWh per interval of standby, fridge/freezer cycling and heating (runs whether anyone is up or not)."""
    n = grid.n
    h = SLOT_MIN / 60.0
    t = np.arange(n) * float(SLOT_MIN)
    e = p.baseload_kw * h * (1.0 + 0.04 * rng.standard_normal(n))
    duty = 0.4 + 0.35 * np.sin(2 * np.pi * t / p.fridge_period + rng.uniform(0, 6.3)) + 0.12 * rng.standard_normal(n)
    e += p.fridge_kw * h * np.clip(duty, 0.05, 1.0)
    if p.freezer_kw:
        duty = 0.35 + 0.3 * np.sin(2 * np.pi * t / (p.fridge_period * 1.3) + rng.uniform(0, 6.3)) + 0.1 * rng.standard_normal(n)
        e += p.freezer_kw * h * np.clip(duty, 0.05, 1.0)

    # thermostatic heating: set point by local time (day/night), frost setting when away
    ld = grid.slot_lday
    lm = grid.slot_lmin
    occupied = (lm >= wake[ld] - 30) & (lm < sleep[ld])
    setp = np.where(occupied, p.set_day, p.set_night)
    setp = np.where(away_slots, 10.0, setp)
    need = np.clip(p.heat_k * (setp - temp), 0.0, 1.0)
    frac = np.clip(need + 0.2 * rng.standard_normal(n) * (need > 0.01), 0.0, 1.0)
    if p.heating == "electric":
        e += p.heater_kw * h * frac
    else:  # gas boiler: pump and fan only
        e += 0.09 * h * (frac > 0.05)
    return e
