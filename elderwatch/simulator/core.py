"""One household end to end, and simulate() writing a whole population."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from elderwatch.simulator.anomalies import ALL_KINDS, Label, Plan, plan_household
from elderwatch.simulator.behaviour import Events, UtcEvents, always_on, daily_routine, draw_rhythm
from elderwatch.simulator.grid import DAY_MIN, SLOT_MIN, Grid, build_grid, outdoor_temperature
from elderwatch.simulator.household import Profile, draw_profile, household_id, make_household
from elderwatch.simulator.writer import (
    ReadingsFormatter,
    close_readings,
    label_line,
    open_readings,
    write_households,
    write_manifest,
)

GENERATOR_VERSION = "1.0.0"
FAMILIES = ("classic", "city")
# first day and time zone when not given, per family
FAMILY_DEFAULTS = {"classic": (date(2026, 1, 5), "Europe/London"), "city": (date(2026, 10, 1), "Asia/Shanghai")}


@dataclass(frozen=True)
class SimulationSummary:
    out_dir: Path
    households: int
    days: int
    rows: int
    labels_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class HouseholdData:
    index: int
    profile: Profile
    electricity: np.ndarray  # kWh per interval, rounded to 3 decimals
    water: np.ndarray  # litres per interval, rounded to 0.1
    present_e: np.ndarray | None  # None = every row present
    present_w: np.ndarray | None
    labels: list[Label]
    wake: np.ndarray
    sleep: np.ndarray


def _windows_to_mask(windows: list[tuple[float, float]], size: int) -> np.ndarray:
    """Boolean mask of minutes [0, size) inside any [a, b) window."""
    diff = np.zeros(size + 1, dtype=np.int32)
    for a, b in windows:
        a = int(min(max(round(a), 0), size))
        b = int(min(max(round(b), 0), size))
        if b > a:
            diff[a] += 1
            diff[b] -= 1
    return np.cumsum(diff[:size]) > 0


def _rate(u0: np.ndarray, u1: np.ndarray, rate: np.ndarray, N: int) -> np.ndarray:
    """Per-minute rate from [u0, u1) events, via a difference array."""
    sel = rate != 0
    if not sel.any():
        return np.zeros(N)
    a = np.clip(u0[sel], 0, N)
    b = np.clip(u1[sel], 0, N)
    r = rate[sel]
    diff = np.bincount(a, weights=r, minlength=N + 1) - np.bincount(b, weights=r, minlength=N + 1)
    return np.cumsum(diff[:N])


def simulate_household(
    index: int, seed: int, grid: Grid, temp: np.ndarray, anomaly_rate: float = 1.0, warmup_days: int = 28
) -> HouseholdData:
    rng = np.random.default_rng([seed, 1, index])
    p = draw_profile(rng)
    wake, sleep = draw_rhythm(rng, p, grid)
    plan = plan_household(rng, p, grid, wake, sleep, anomaly_rate, warmup_days)
    ev = Events()
    outs = daily_routine(rng, p, grid, wake, sleep, plan.quiet_days, ev)
    a, b = ev.to_utc(grid), plan.extra.to_utc(grid)
    u0 = np.concatenate([a.u0, b.u0])
    u1 = np.concatenate([a.u1, b.u1])
    kw = np.concatenate([a.kw, b.kw])
    lpm = np.concatenate([a.lpm, b.lpm])
    block = np.concatenate([a.block, b.block])
    N = grid.minutes
    n = grid.n

    # fall or illness: nothing new is started; lights/TV that were on stay on until found
    for ia, ib in plan.inactivity_u:
        drop = (u0 >= ia) & (u0 < ib)
        kw = np.where(drop, 0.0, kw)
        lpm = np.where(drop, 0.0, lpm)
        inprog = block & (u0 < ia) & (u1 > ia)
        u1 = np.where(inprog, np.maximum(u1, int(np.ceil(ib))), u1)

    e_min = _rate(u0, u1, kw / 60.0, N)
    w_min = _rate(u0, u1, lpm, N)
    out_u = [(float(grid.local_to_u(np.array([x]))[0]), float(grid.local_to_u(np.array([y]))[0])) for x, y in outs]
    absent = plan.absences_u + out_u
    if absent:
        home = ~_windows_to_mask(absent, N)
        e_min *= home
        w_min *= home
    if plan.inactivity_u:
        w_min *= ~_windows_to_mask(plan.inactivity_u, N)

    # machine-driven anomalies and timer lights (not affected by presence)
    machine = machine_rates(plan, grid, timer_light=(1110.0, 270.0, 0.06) if p.timer_light else None)
    if machine is not None:
        e_min += machine[0]
        w_min += machine[1]

    away_slots = (
        _windows_to_mask(plan.absences_u, N).reshape(n, SLOT_MIN).all(axis=1) if plan.absences_u else np.zeros(n, bool)
    )
    base = always_on(rng, p, grid, temp, wake, sleep, away_slots)
    e = e_min.reshape(n, SLOT_MIN).sum(axis=1) + base
    w = w_min.reshape(n, SLOT_MIN).sum(axis=1)
    if p.noise_kwh:
        e += rng.normal(0.0, p.noise_kwh, n)
    e = np.round(np.maximum(e, p.baseload_kw * SLOT_MIN / 60.0 * 0.5), 3) + 0.0
    w = np.round(np.maximum(w, 0.0), 1) + 0.0

    pe = pw = None
    for meter, oa, ob in plan.offline_u:
        k0, k1 = oa // SLOT_MIN, ob // SLOT_MIN
        if meter == "electricity":
            pe = np.ones(n, bool) if pe is None else pe
            pe[k0:k1] = False
        else:
            pw = np.ones(n, bool) if pw is None else pw
            pw[k0:k1] = False
    return HouseholdData(index, p, e, w, pe, pw, plan.labels, wake, sleep)


def machine_rates(plan: Plan, grid: Grid, timer_light: tuple[float, float, float] | None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-minute kW and L/min of what runs whatever the occupant does: the planned surges and
    flows, and a timer light while away (``(local minute it goes on, minutes on, kW)``). None: nothing."""
    m_u0, m_u1, m_kw, m_lpm = [], [], [], []
    for sa, sb, skw in plan.surges_u:
        m_u0.append(sa), m_u1.append(sb), m_kw.append(skw), m_lpm.append(0.0)
    for fa, fb, flpm in plan.flows_u:
        m_u0.append(fa), m_u1.append(fb), m_kw.append(0.0), m_lpm.append(flpm)
    if timer_light is not None and plan.absences_u:
        at, minutes, kw = timer_light
        for aa, ab in plan.absences_u:
            for d in range(int(aa // DAY_MIN), int(ab // DAY_MIN) + 1):
                on = float(grid.local_to_u(np.array([d * DAY_MIN + at]))[0])
                lo, hi = max(on, aa), min(on + minutes, ab)
                if hi > lo:
                    m_u0.append(lo), m_u1.append(hi), m_kw.append(kw), m_lpm.append(0.0)
    if not m_u0:
        return None
    mu0 = np.rint(np.array(m_u0)).astype(np.int64)
    mu1 = np.rint(np.array(m_u1)).astype(np.int64)
    return _rate(mu0, mu1, np.array(m_kw) / 60.0, grid.minutes), _rate(mu0, mu1, np.array(m_lpm), grid.minutes)


def _chunks(total: int, size: int) -> Iterator[range]:
    for s in range(0, total, size):
        yield range(s, min(s + size, total))


# Worker state for the process pool (set once per worker via the initializer).
_W: dict = {}


def _init_worker(seed, start, days, tz, anomaly_rate, warmup_days, family="classic", profile=None, meters=None):
    grid = build_grid(start, days, tz)
    _W.update(
        seed=seed,
        grid=grid,
        fmt=ReadingsFormatter(grid.ts),
        anomaly_rate=anomaly_rate,
        warmup_days=warmup_days,
        family=family,
        profile=profile,
        meters=meters,
    )
    if family == "city":
        from elderwatch.simulator.city import build_city_context

        _W.update(city=build_city_context(grid, seed), temp=None)
    else:
        _W.update(temp=outdoor_temperature(grid, seed))


def _run_chunk(idx: range) -> tuple[str, int, list[str], list, dict[str, int]]:
    grid: Grid = _W["grid"]
    fmt: ReadingsFormatter = _W["fmt"]
    parts, rows, labels, homes = [], 0, [], []
    counts: dict[str, int] = {}
    for i in idx:
        if _W["family"] == "city":
            from elderwatch.simulator.city import simulate_city_household

            hd = simulate_city_household(i, _W["seed"], _W["city"], _W["anomaly_rate"], _W["warmup_days"],
                                         _W["profile"], _W["meters"])
        else:
            hd = simulate_household(i, _W["seed"], grid, _W["temp"], _W["anomaly_rate"], _W["warmup_days"])
        hid = household_id(i)
        text, r = fmt.format(hid, hd.electricity, hd.water, hd.present_e, hd.present_w)
        parts.append(text)
        rows += r
        homes.append(make_household(i, hd.profile, grid.tz))
        for lab in hd.labels:
            labels.append(label_line(hid, lab.kind, grid.iso(lab.u0), grid.iso(lab.u1), lab.meter, lab.note))
            counts[lab.kind] = counts.get(lab.kind, 0) + 1
    return "".join(parts), rows, labels, homes, counts


def simulate(
    *,
    households: int,
    days: int,
    seed: int,
    out_dir: Path,
    start: date | None = None,
    timezone: str | None = None,
    anomaly_rate: float = 1.0,
    compress: bool = False,
    progress: Callable[[int, int], None] | None = None,
    warmup_days: int = 28,
    workers: int | None = None,
    family: str = "classic",
    profile: str | None = None,
    meters: str | None = None,
) -> SimulationSummary:
    """Simulates ``households`` homes for ``days`` local days and writes the replay files to ``out_dir``.

    Deterministic: the same arguments give byte-identical files, and household i depends only on
    (seed, i, days, start, timezone, anomaly_rate, warmup_days) -- not on how many households are generated.
    ``workers`` (default: up to 2, by CPU count) only changes speed, never the output.

    ``family``: ``classic`` (UK-like homes; the default) or ``city`` (elderly people living alone in
    a Chinese city without central heating; see ``elderwatch.simulator.city``). ``start`` and
    ``timezone`` default per family (classic 2026-01-05 Europe/London, city 2026-10-01
    Asia/Shanghai). ``profile`` (homebound|active|traveller|mixed, default mixed) and ``meters``
    (both|electricity|water|mixed, default both) are for the city family only.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    if family == "city":
        from elderwatch.simulator.city import METER_CHOICES, PROFILE_CHOICES

        profile = profile or "mixed"
        meters = meters or "both"
        if profile not in PROFILE_CHOICES:
            raise ValueError(f"profile must be one of {PROFILE_CHOICES}, not {profile!r}")
        if meters not in METER_CHOICES:
            raise ValueError(f"meters must be one of {METER_CHOICES}, not {meters!r}")
    elif profile is not None or meters is not None:
        raise ValueError("profile and meters are options of the city family")
    start = FAMILY_DEFAULTS[family][0] if start is None else start
    timezone = FAMILY_DEFAULTS[family][1] if timezone is None else timezone
    if households < 1 or days < 1:
        raise ValueError("households and days must be >= 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if anomaly_rate < 0:
        raise ValueError("anomaly_rate must be >= 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    init = (seed, start, days, timezone, anomaly_rate, warmup_days)
    if family != "classic":
        init += (family, profile, meters)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    # chunk size: enough work per chunk to amortise process overhead, small enough for progress
    per_hh = days * 96
    size = max(1, min(500, 200_000 // per_hh))
    chunks = list(_chunks(households, size))

    path, f = open_readings(out_dir, compress)
    rows = 0
    counts = {k: 0 for k in ALL_KINDS}
    all_homes = []
    done = 0
    with open(out_dir / "labels.jsonl", "w", encoding="utf-8", newline="") as lf:
        if workers > 1 and len(chunks) > 1:
            import multiprocessing as mp

            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=init)
            results = pool.imap(_run_chunk, chunks)
        else:
            pool = None
            _init_worker(*init)
            results = map(_run_chunk, chunks)
        try:
            for chunk, (text, r, labels, homes, c) in zip(chunks, results):
                f.write(text)
                rows += r
                lf.writelines(labels)
                all_homes.extend(homes)
                for k, v in c.items():
                    counts[k] += v
                done += len(chunk)
                if progress is not None:
                    progress(done, households)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
            close_readings(f)
    write_households(out_dir / "households.csv", all_homes)
    grid = build_grid(start, days, timezone)
    manifest = {
        "generator": "elderwatch.simulator",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "households": households,
        "days": days,
        "start": start.isoformat(),
        "end": (start + timedelta(days=days)).isoformat(),
        "first_interval_start": grid.start_utc.isoformat(),
        "timezone": timezone,
        "interval_minutes": SLOT_MIN,
        "anomaly_rate": anomaly_rate,
        "warmup_days": warmup_days,
        "files": {
            "readings": path.name,
            "labels": "labels.jsonl",
            "households": "households.csv",
        },
        "rows": rows,
        "labels": counts,
    }
    if family != "classic":  # the classic manifest stays as it always was
        manifest["family"] = family
        manifest["profile"] = profile
        manifest["meters"] = meters
    write_manifest(out_dir / "manifest.json", manifest)
    return SimulationSummary(out_dir=out_dir, households=households, days=days, rows=rows, labels_by_kind=dict(counts))
