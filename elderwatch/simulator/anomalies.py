"""Trips away and injected anomalies: where they go (non-overlapping labels) and their effects.

Planning happens in local minutes (``L``); labels and effects are converted to UTC minutes
since the grid start (``u``). Kinds:

* ``inactivity``      -- fall/illness: human activity stops at onset until someone arrives;
* ``surge``           -- a heater or oven left on: +2-3 kW for 3-12 h;
* ``continuous_flow`` -- tap left running / leak: water in every interval for 2-24 h;
* ``night_activity``  -- 3-7 consecutive nights of being up in the small hours;
* ``meter_offline``   -- one meter's rows are missing for 2-48 h;
* ``away``            -- a trip away or a hospital stay: not an anomaly, labelled so it is not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from elderwatch.simulator.behaviour import Events
from elderwatch.simulator.grid import DAY_MIN, SLOT_MIN, Grid
from elderwatch.simulator.household import Profile

WELFARE_KINDS = ("inactivity", "surge", "continuous_flow", "night_activity")
WELFARE_WEIGHTS = (0.3, 0.2, 0.2, 0.3)
ALL_KINDS = WELFARE_KINDS + ("meter_offline", "away")
MEAN_DAYS_BETWEEN_WELFARE = 24.0
MEAN_DAYS_BETWEEN_OFFLINE = 60.0
MEAN_DAYS_BETWEEN_TRIPS = 75.0
GAP_MIN = 6 * 60  # quiet time between any two labels


@dataclass
class Label:
    kind: str
    u0: float  # UTC minutes since the grid start (whole minutes)
    u1: float
    meter: str | None
    note: str

    def __post_init__(self) -> None:
        self.u0 = float(round(self.u0))
        self.u1 = float(round(self.u1))


@dataclass
class Plan:
    labels: list[Label] = field(default_factory=list)
    absences_u: list[tuple[float, float]] = field(default_factory=list)  # nobody home (trips, hospital)
    inactivity_u: list[tuple[float, float]] = field(default_factory=list)
    surges_u: list[tuple[float, float, float]] = field(default_factory=list)  # (u0, u1, kW)
    flows_u: list[tuple[float, float, float]] = field(default_factory=list)  # (u0, u1, L/min)
    offline_u: list[tuple[str, int, int]] = field(default_factory=list)  # (meter, u0, u1) on the slot grid
    quiet_days: np.ndarray | None = None  # no visitors/days out (someone would notice)
    extra: Events = field(default_factory=Events)  # night episodes, rescuers arriving


def _h(minutes: float) -> str:
    return f"{minutes / 60:.1f} h"


def plan_household(
    rng: np.random.Generator,
    p: Profile,
    grid: Grid,
    wake: np.ndarray,
    sleep: np.ndarray,
    anomaly_rate: float,
    warmup_days: int,
    *,
    mean_days_between_trips: float = MEAN_DAYS_BETWEEN_TRIPS,
    trip_nights: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 5, 7),
    trip_note: str = "trip away",
    mean_days_between_hospital: float | None = None,
    welfare_kinds: tuple[str, ...] = WELFARE_KINDS,
    meters: tuple[str, ...] = ("electricity", "water"),
) -> Plan:
    """Places trips, anomalies and offline spells without overlaps.

    The keyword arguments serve other simulator families; their defaults are the classic
    behaviour (and the classic random stream). ``welfare_kinds`` not listed are drawn as usual
    but not placed (so the other kinds keep their classic rates); ``meters`` lists the meters the
    home has (``meter_offline`` picks one of them). ``mean_days_between_hospital`` adds hospital
    stays (labelled ``away``) that do not follow a fall.
    """
    D = grid.days
    total = D * DAY_MIN
    plan = Plan(quiet_days=np.zeros(D, dtype=bool))
    busy: list[tuple[float, float]] = []

    def free(a: float, b: float) -> bool:
        return all(b + GAP_MIN <= x0 or a >= x1 + GAP_MIN for x0, x1 in busy)

    def to_u(L: float) -> float:
        return float(grid.local_to_u(np.array([L]))[0])

    def quiet(a: float, b: float) -> None:
        plan.quiet_days[max(int(a // DAY_MIN) - 1, 0) : min(int(b // DAY_MIN) + 2, D)] = True

    def away(a: float, b: float, note: str) -> None:
        ua, ub = to_u(a), to_u(b)
        plan.labels.append(Label("away", ua, ub, None, note))
        plan.absences_u.append((ua, ub))

    # trips away: ordinary life, happen in the warm-up too
    if D >= 4:
        for _ in range(rng.poisson(D / mean_days_between_trips)):
            for _try in range(10):
                d0 = int(rng.integers(1, D - 1))
                length = int(rng.choice(list(trip_nights)))
                a = d0 * DAY_MIN + rng.uniform(540, 720)
                b = (d0 + length) * DAY_MIN + rng.uniform(840, 1140)
                if b < total - 60 and free(a, b):
                    busy.append((a, b))
                    away(a, b, f"{trip_note} for {length} night{'s' if length > 1 else ''}")
                    break
    if mean_days_between_hospital and D >= 4:
        for _ in range(rng.poisson(D / mean_days_between_hospital)):
            for _try in range(10):
                d0 = int(rng.integers(1, D - 1))
                length = int(rng.integers(3, 11))
                a = d0 * DAY_MIN + rng.uniform(480, 1200)
                b = (d0 + length) * DAY_MIN + rng.uniform(600, 960)
                if b < total - 60 and free(a, b):
                    busy.append((a, b))
                    quiet(a, b)
                    away(a, b, f"hospital stay for {length} nights")
                    break

    first = warmup_days
    eligible = D - first
    if anomaly_rate > 0 and eligible >= 2:
        n = rng.poisson(anomaly_rate * eligible / MEAN_DAYS_BETWEEN_WELFARE)
        kinds = rng.choice(len(WELFARE_KINDS), n, p=WELFARE_WEIGHTS)
        for k in kinds.tolist():
            if WELFARE_KINDS[k] not in welfare_kinds:
                continue
            for _try in range(25):
                if _place(rng, WELFARE_KINDS[k], p, plan, busy, free, quiet, away, to_u, wake, sleep, first, D):
                    break
        for _ in range(rng.poisson(anomaly_rate * eligible / MEAN_DAYS_BETWEEN_OFFLINE)):
            for _try in range(25):
                d = int(rng.integers(first, D))
                a = d * DAY_MIN + rng.uniform(0, DAY_MIN)
                dur = rng.uniform(120, 2880) if rng.random() < 0.5 else rng.uniform(120, 600)
                b = a + dur
                ua = SLOT_MIN * np.ceil(to_u(a) / SLOT_MIN)
                ub = SLOT_MIN * np.ceil(to_u(b) / SLOT_MIN)
                if ua >= first * DAY_MIN and ub <= grid.minutes and free(a, b):
                    busy.append((a, b))
                    meter = "electricity" if rng.random() < 0.5 else "water"
                    if meter not in meters:
                        meter = meters[0]
                    plan.offline_u.append((meter, int(ua), int(ub)))
                    plan.labels.append(Label("meter_offline", ua, ub, meter, f"{meter} meter not reporting for {_h(ub - ua)}"))
                    break
    plan.labels.sort(key=lambda lab: lab.u0)
    return plan


def _place(rng, kind, p, plan, busy, free, quiet, away, to_u, wake, sleep, first, D) -> bool:
    total = D * DAY_MIN
    d = int(rng.integers(first, D))
    off = d * DAY_MIN
    if kind == "inactivity":
        if rng.random() < 0.7:
            m = rng.uniform(wake[d] + 30, sleep[d])
        else:
            m = rng.uniform(0, DAY_MIN)
        a = off + m
        if rng.random() < 0.5:  # found at the carer's next visit, late morning
            visit = off + (DAY_MIN if m > 420 else 0) + rng.uniform(540, 780)
            dur = float(np.clip(visit - a, 360, 2880))
        else:
            dur = float(min(360 + rng.exponential(600), 2880))
        b = a + dur
        hospital = rng.random() < 0.35
        end = b + (rng.uniform(1, 5) * DAY_MIN if hospital else 0.0)
        if a < first * DAY_MIN or end > total - 60 or not free(a, end):
            return False
        busy.append((a, end))
        quiet(a, end)
        ua, ub = to_u(a), to_u(b)
        plan.inactivity_u.append((ua, ub))
        plan.labels.append(Label("inactivity", ua, ub, None, f"no activity (fall or illness) until found after {_h(b - a)}"))
        if hospital:
            away(b, end, "hospital stay after being found")
        else:  # whoever found them puts the kettle on, the person uses the toilet
            plan.extra.add([b + 15], 3, kw=p.kettle_kw)
            plan.extra.add([b + 14], 1, lpm=1.5)
            plan.extra.add([b + 30], 2, lpm=(p.flush_l + 1) / 2)
            plan.extra.add([b + 5], 2, lpm=3.0)
        return True
    if kind == "surge":
        night = rng.random() < 0.6
        m = rng.uniform(1260, 1560) if night else rng.uniform(540, 1080)
        a = off + m
        b = a + rng.uniform(180, 720)
        if b > total - 60 or not free(a, b):
            return False
        busy.append((a, b))
        quiet(a, b)
        kw = rng.uniform(2.0, 3.0)
        what = "heater" if rng.random() < 0.6 else "oven"
        ua, ub = to_u(a), to_u(b)
        plan.surges_u.append((ua, ub, kw))
        plan.labels.append(Label("surge", ua, ub, "electricity", f"{what} left on: +{kw:.1f} kW for {_h(b - a)}"))
        return True
    if kind == "continuous_flow":
        a = off + rng.uniform(wake[d] + 30, sleep[d])
        b = a + rng.uniform(120, 1440)
        if b > total - 60 or not free(a, b):
            return False
        busy.append((a, b))
        quiet(a, b)
        per_slot = rng.uniform(2.0, 10.0)
        what = "tap left running" if rng.random() < 0.6 else "leak (cistern or pipe)"
        ua, ub = to_u(a), to_u(b)
        plan.flows_u.append((ua, ub, per_slot / SLOT_MIN))
        plan.labels.append(Label("continuous_flow", ua, ub, "water", f"{what}: ~{per_slot:.0f} L per 15 min for {_h(b - a)}"))
        return True
    if kind == "night_activity":
        nights = int(rng.integers(3, 8))
        if d + nights > D - 1:
            return False
        onsets, ends = [], []
        for k in range(d, d + nights):
            lo = k * DAY_MIN + sleep[k] + 60
            latest = (k + 1) * DAY_MIN + wake[k + 1] - 90
            t = min(lo + rng.uniform(0, 140), latest - 60)
            dur = min(rng.uniform(45, 150), latest - t)
            onsets.append(t)
            ends.append(t + dur)
        a, b = onsets[0], ends[-1]
        if not free(a, b):
            return False
        busy.append((a, b))
        ev = plan.extra
        for t, e in zip(onsets, ends):
            dur = e - t
            ev.add([t], dur, kw=p.light_kw * 0.7, block=True)
            for _ in range(rng.integers(1, 3)):
                ev.add([t + rng.uniform(0, dur - 3)], 3, kw=p.kettle_kw)
            for _ in range(rng.integers(1, 4)):
                ev.add([t + rng.uniform(0, dur - 2)], 2, lpm=(p.flush_l + 1) / 2)
            for _ in range(rng.integers(1, 4)):
                ev.add([t + rng.uniform(0, dur - 1)], 1, lpm=rng.uniform(0.5, 2.5))
            if rng.random() < 0.5:
                ev.add([t + 10], dur * 0.5, kw=p.tv_kw, block=True)
        plan.labels.append(
            Label("night_activity", to_u(a), to_u(b), None, f"up in the small hours on {nights} consecutive nights")
        )
        return True
    raise ValueError(kind)
