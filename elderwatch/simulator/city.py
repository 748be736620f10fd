"""The "city" family: elderly people living alone in a Chinese city south of the Huai River.

No central heating: an electric heater or an air conditioner in heat mode is switched on by hand
on cold evenings (and some cold mornings/afternoons), and off at bedtime or when going out.
Compared with the classic (UK-like) family, life here has more of what makes detection hard:
daily outings (market, park, mahjong), naps after lunch, unannounced trips to a child's home,
children staying for days, nocturia, very frugal water users, and homes with only one meter.

Everything is drawn from the household's own random streams, so household i depends only on
(seed, i and the run arguments). The anomaly kinds, rates and labels are the classic ones
(``anomalies.plan_household``), restricted to what the home's meters can show.

Profiles (``profile``): ``homebound`` (rarely out, TV much of the day), ``active`` (out most days,
1-2 outings of 2-5 h), ``traveller`` (2-4 unannounced trips a quarter instead of 1-2), ``mixed``
(1/3 each, per household). Meters (``meters``): ``both``, ``electricity``, ``water``, ``mixed``
(50 % both, 35 % electricity only, 15 % water only, per household).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from elderwatch.simulator.anomalies import WELFARE_KINDS, plan_household
from elderwatch.simulator.behaviour import Events, draw_rhythm
from elderwatch.simulator.grid import DAY_MIN, SLOT_MIN, Grid

PROFILES = ("homebound", "active", "traveller")
METERS = ("both", "electricity", "water")
PROFILE_CHOICES = PROFILES + ("mixed",)
METER_CHOICES = METERS + ("mixed",)
DEFAULT_TIMEZONE = "Asia/Shanghai"
LATITUDE_DEG = 30.6  # Wuhan / Shanghai / Chengdu: daylight model
SOLAR_NOON_MIN = 12 * 60 + 5  # local clock (UTC+8) at ~119 deg E
QUARTER_DAYS = 91.0
MEAN_DAYS_BETWEEN_HOSPITAL = 450.0  # hospital stays that do not follow a fall


# ---------------------------------------------------------------- climate and daylight


@dataclass(frozen=True)
class Climate:
    """Outdoor temperature: per interval (``slot``), per local day (``day_mean``, ``swing``)."""

    slot: np.ndarray
    day_mean: np.ndarray
    swing: np.ndarray  # half the day/night range, deg C
    snap: np.ndarray  # cold-snap depth per day (deg C, >= 0)

    def at(self, day: np.ndarray, hour: float) -> np.ndarray:
        """Temperature at local ``hour`` of each day in ``day``."""
        return self.day_mean[day] + self.swing[day] * np.cos(2 * np.pi * (hour - 14.5) / 24.0)


def city_climate(grid: Grid, seed: int) -> Climate:
    """Subtropical monsoon climate without central heating: ~22 deg C in early October falling to
    ~5 deg C by early January (coldest mid-January), weather spells, cold snaps (a sharp drop of
    5-8 deg C lasting several days) and a day/night swing. Depends on the seed only."""
    rng = np.random.default_rng([seed, 7, 2])
    D = grid.days
    doy = np.array([(grid.start + timedelta(days=d)).timetuple().tm_yday for d in range(D)], dtype=float)
    season = 18.3 - 12.5 * np.cos(2 * np.pi * (doy - 20) / 365.0)
    shocks = rng.normal(0.0, 1.1, D)
    spell = np.empty(D)
    acc = rng.normal(0.0, 1.5)
    for d in range(D):
        acc = 0.7 * acc + shocks[d]
        spell[d] = acc
    snap = np.zeros(D)
    for _ in range(rng.poisson(D / 30.0)):
        d0 = int(rng.integers(0, D))
        depth = rng.uniform(5.0, 8.0)
        length = int(rng.integers(3, 8))
        shape = np.minimum(1.0, np.linspace(1.6, 0.25, length))  # sharp drop, slow recovery
        d1 = min(d0 + length, D)
        snap[d0:d1] = np.maximum(snap[d0:d1], depth * shape[: d1 - d0])
    day_mean = season + spell - snap
    swing = rng.uniform(2.5, 5.0, D)
    slot = day_mean[grid.slot_lday] + swing[grid.slot_lday] * np.cos(2 * np.pi * (grid.slot_lmin / 60.0 - 14.5) / 24.0)
    return Climate(slot=slot, day_mean=day_mean, swing=swing, snap=snap)


def city_daylight(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Sunrise and sunset (local minute of the day) at the city's latitude."""
    doy = np.array([(grid.start + timedelta(days=d)).timetuple().tm_yday for d in range(grid.days)], dtype=float)
    decl = np.radians(-23.44) * np.cos(2 * np.pi * (doy + 10) / 365.0)
    cos_h = -np.tan(np.radians(LATITUDE_DEG)) * np.tan(decl)
    half = np.degrees(np.arccos(np.clip(cos_h, -1, 1))) / 15.0 * 60.0
    return SOLAR_NOON_MIN - half, SOLAR_NOON_MIN + half


@dataclass(frozen=True)
class CityContext:
    """What every household of a run shares: grid, climate, daylight."""

    grid: Grid
    climate: Climate
    temp_min: np.ndarray  # outdoor temperature per UTC minute
    sunrise: np.ndarray
    sunset: np.ndarray


def build_city_context(grid: Grid, seed: int) -> CityContext:
    clim = city_climate(grid, seed)
    sunrise, sunset = city_daylight(grid)
    return CityContext(grid, clim, np.repeat(clim.slot, SLOT_MIN), sunrise, sunset)


# ---------------------------------------------------------------- who lives there


@dataclass(frozen=True)
class CityProfile:
    kind: str  # homebound | active | traveller
    meters: str  # both | electricity | water
    # daily rhythm (local minutes); names shared with the classic profile (draw_rhythm, plan_household)
    wake: float
    sleep: float
    day_sd: float
    weekend_shift: float
    late_morning_p: float
    lunch: float
    dinner: float
    nap_p: float
    # outings, trips, visits
    out_p: float  # probability of at least one outing on a day
    out2_p: float  # ... of a second one, given one
    out_morning_p: float
    trips_per_quarter: float
    stays_per_quarter: float  # a child staying for 2-6 days
    timer_light: bool
    # heating
    heating: str  # heater | ac | none
    heater_kw: float
    comfort_c: float  # switched on below this outdoor temperature
    heat_h0: float  # evening hours at the comfort point
    heat_gain: float  # extra evening hours per degree colder
    morning_heat_p: float
    afternoon_heat_p: float
    cycle_min: float
    blanket_kw: float  # 0 = no electric blanket kept on through the night
    # water and washing
    water_heater: str  # electric | gas
    wh_kw: float
    yuba: bool  # bathroom heat lamp used during winter showers
    shower_warm_p: float
    shower_cold_p: float
    shower_lpm: float
    foot_soak_p: float
    sparse: bool
    flush_l: float
    flush_p: float  # a toilet visit ends with a flush
    handwash_p: float
    toilet_day: float
    night_rate: float
    taps_day: float
    laundry_week: float
    mop_p: float
    # kitchen and living room
    kettle_kw: float
    kettle_day: float
    rice_kw: float
    hob_kw: float
    breakfast_cook_p: float
    leftovers_p: float
    light_kw: float
    tv_kw: float
    tv_morning_p: float
    tv_afternoon_p: float
    tv_evening_p: float
    # always on
    standby_kw: float
    fridge_kw: float
    fridge_period: float
    washer_kw: float
    noise_kwh: float

    def tags(self) -> tuple[str, ...]:
        tags = [
            "family:city",
            f"profile:{self.kind}",
            f"meters:{self.meters}",
            f"heating:{ {'heater': 'electric-heater', 'ac': 'air-conditioner', 'none': 'none'}[self.heating] }",
            f"water-heater:{self.water_heater}",
            "cooking:induction",
        ]
        if self.blanket_kw > 0:
            tags.append("appliance:electric-blanket")
        tags.append("occupancy:single")
        return tuple(tags)


def choose_kind(seed: int, index: int, profile: str, meters: str) -> tuple[str, str]:
    """The household's profile and meters; ``mixed`` draws them from a stream of their own."""
    if profile not in PROFILE_CHOICES:
        raise ValueError(f"profile must be one of {PROFILE_CHOICES}, not {profile!r}")
    if meters not in METER_CHOICES:
        raise ValueError(f"meters must be one of {METER_CHOICES}, not {meters!r}")
    u_profile, u_meters = np.random.default_rng([seed, 2, index]).random(2)
    if profile == "mixed":
        profile = PROFILES[min(int(u_profile * 3), 2)]
    if meters == "mixed":
        meters = "both" if u_meters < 0.5 else ("electricity" if u_meters < 0.85 else "water")
    return profile, meters


def draw_city_profile(rng: np.random.Generator, kind: str, meters: str) -> CityProfile:
    u = rng.random
    U = rng.uniform
    homebound, active = kind == "homebound", kind == "active"
    heating = str(rng.choice(["heater", "ac", "none"], p=[0.45, 0.45, 0.10]))
    sparse = bool(u() < 0.25)
    return CityProfile(
        kind=kind,
        meters=meters,
        wake=U(5 * 60, 7.5 * 60),
        sleep=U(20.5 * 60, 23 * 60),
        day_sd=U(12, 35),
        weekend_shift=U(0, 15),
        late_morning_p=U(0.01, 0.06),
        lunch=U(11 * 60, 12.25 * 60),
        dinner=U(17 * 60, 18.75 * 60),
        nap_p=U(0.5, 0.95) if u() < 0.8 else U(0.05, 0.3),
        out_p=U(0.03, 0.15) if homebound else (U(0.65, 0.95) if active else U(0.25, 0.6)),
        out2_p=0.0 if homebound else (U(0.3, 0.7) if active else U(0.05, 0.3)),
        out_morning_p=U(0.3, 0.8),
        trips_per_quarter=U(2.0, 4.0) if kind == "traveller" else U(1.0, 2.0),
        stays_per_quarter=U(0.0, 0.6) if kind == "traveller" else U(0.2, 1.5),
        timer_light=bool(u() < 0.2),
        heating=heating,
        heater_kw=U(1.0, 2.2) if heating == "heater" else U(0.7, 1.5),
        comfort_c=U(12.0, 18.0),
        heat_h0=U(0.5, 1.5),
        heat_gain=U(0.2, 0.5),
        morning_heat_p=U(0.2, 0.8),
        afternoon_heat_p=U(0.5, 0.9) if homebound else U(0.1, 0.5),
        cycle_min=U(18, 35) if heating == "heater" else U(9, 20),
        blanket_kw=U(0.05, 0.1) if u() < 0.25 else 0.0,
        water_heater="electric" if u() < 0.6 else "gas",
        wh_kw=U(1.5, 3.0),
        yuba=bool(u() < 0.5),
        shower_warm_p=U(0.6, 1.0),
        shower_cold_p=U(0.15, 0.5),
        shower_lpm=U(4.5, 7.5) if not sparse else U(3.5, 5.5),
        foot_soak_p=U(0.0, 0.8),
        sparse=sparse,
        flush_l=float(rng.choice([4.5, 6.0, 6.0, 9.0, 9.0])),
        flush_p=U(0.35, 0.6) if sparse else U(0.9, 1.0),
        handwash_p=U(0.3, 0.6) if sparse else U(0.7, 1.0),
        toilet_day=U(4.0, 7.0),
        night_rate=float(rng.choice([0.5, 1.0, 1.5, 2.0, 2.5, 3.0], p=[0.1, 0.15, 0.15, 0.25, 0.2, 0.15])),
        taps_day=U(0.5, 2.0) if sparse else U(4.0, 12.0),
        laundry_week=U(0.7, 1.5) if sparse else U(1.5, 4.0),
        mop_p=U(0.05, 0.2) if sparse else U(0.15, 0.5),
        kettle_kw=U(1.5, 2.2),
        kettle_day=U(0.3, 1.0) if sparse else U(1.0, 3.0),
        rice_kw=U(0.5, 0.8),
        hob_kw=U(1.2, 2.0),
        breakfast_cook_p=U(0.3, 0.9),
        leftovers_p=U(0.5, 0.8) if sparse else U(0.2, 0.6),
        light_kw=U(0.02, 0.12),
        tv_kw=U(0.06, 0.18),
        tv_morning_p=U(0.5, 0.9) if homebound else U(0.05, 0.4),
        tv_afternoon_p=U(0.6, 0.95) if homebound else U(0.1, 0.5),
        tv_evening_p=U(0.85, 1.0) if homebound else U(0.6, 0.95),
        standby_kw=0.03 + 0.09 * u() ** 2,
        fridge_kw=U(0.05, 0.12),
        fridge_period=U(35, 80),
        washer_kw=U(0.15, 0.35),
        noise_kwh=U(0.0005, 0.002) if u() < 0.4 else 0.0,
    )


# ---------------------------------------------------------------- a normal life


@dataclass
class Routine:
    ev: Events  # human-driven events (dropped from a fall's onset; blocks stay on)
    heat: Events  # heater sessions (full power; cycling applied per minute)
    outings: list[tuple[float, float]]  # local minutes, nobody home
    naps: list[tuple[float, float]]  # local minutes, nothing used
    stay_days: np.ndarray  # bool per day: a child is staying
    wh_standing: list[float] = field(default_factory=list)  # local minutes of standing-loss reheats


def _win(a: np.ndarray, b: np.ndarray, on: np.ndarray) -> list[tuple[float, float]]:
    return [(x, y) for x, y in zip(a[on].tolist(), b[on].tolist()) if y > x]


def city_routine(rng, p: CityProfile, ctx: CityContext, wake, sleep, plan) -> Routine:
    grid = ctx.grid
    D = grid.days
    U = lambda lo, hi, n=D: rng.uniform(lo, hi, n)  # noqa: E731
    off = np.arange(D) * float(DAY_MIN)
    w = wake[:D].copy()
    w_next = wake[1 : D + 1]
    s = sleep[:D].copy()
    ev, heat = Events(), Events()

    # days near a label (no outings or visiting children there), days away
    near = np.zeros(D, bool)
    away_day = np.zeros(D, bool)
    for lab in plan.labels:
        d0, d1 = int(lab.u0 // DAY_MIN), int(lab.u1 // DAY_MIN)
        near[max(d0 - 1, 0) : min(d1 + 2, D)] = True
        if lab.kind == "away":
            away_day[d0 : d1 + 1] = True
    blocked = plan.quiet_days | away_day

    # a child staying for 2-6 days: not labelled
    stay = np.zeros(D, bool)
    for _ in range(rng.poisson(D / QUARTER_DAYS * p.stays_per_quarter)):
        for _try in range(10):
            length = int(rng.integers(2, 7))
            if D < length + 1:
                break
            d0 = int(rng.integers(0, D - length + 1))
            if not (near[d0 : d0 + length].any() or stay[max(d0 - 2, 0) : d0 + length + 2].any()):
                stay[d0 : d0 + length] = True
                break
    ns = int(stay.sum())
    s[stay] = np.minimum(s[stay] + U(40, 100, ns), 1560)

    # outings: 0-2 a day (morning market/park, afternoon mahjong/park, evening)
    n_out = (rng.random(D) < p.out_p) * (1 + (rng.random(D) < p.out2_p))
    n_out[blocked] = 0
    n_out[stay & (rng.random(D) < 0.5)] = 0
    morn = (n_out == 2) | ((n_out == 1) & (rng.random(D) < p.out_morning_p))
    second = (n_out - morn) == 1
    eve = second & (rng.random(D) < 0.15)
    aft = second & ~eve
    om0 = off + np.maximum(w + U(15, 120), 360)
    om1 = np.minimum(om0 + U(120, 300), off + 800)
    morn &= om1 - om0 >= 100

    c0 = off + p.lunch + rng.normal(0, 15, D) - U(30, 45)  # lunch cooking starts
    c0 = np.where(morn, np.maximum(c0, om1 + U(5, 15)), c0)
    tl = c0 + 40.0  # eating
    nap = rng.random(D) < p.nap_p
    n0 = tl + U(50, 90)
    n1 = n0 + U(60, 120)
    a0 = np.where(nap, n1, tl + 60) + U(5, 60)
    a1 = np.minimum(a0 + U(120, 300), off + np.minimum(1140, s - 150))
    aft &= a1 - a0 >= 100
    c1 = off + p.dinner + rng.normal(0, 15, D) - 40  # dinner cooking starts
    c1 = np.where(aft, np.maximum(c1, a1 + U(5, 15)), c1)
    c1 = np.minimum(c1, off + s - 130)
    td = c1 + 40.0
    e0 = td + U(40, 70)
    e1 = np.minimum(e0 + U(120, 180), off + s - 15)
    eve &= e1 - e0 >= 100

    nan = np.full(D, np.nan)
    wins = [
        (np.where(morn, om0, nan), np.where(morn, om1, nan)),
        (np.where(nap, n0, nan), np.where(nap, n1, nan)),
        (np.where(aft, a0, nan), np.where(aft, a1, nan)),
        (np.where(eve, e0, nan), np.where(eve, e1, nan)),
    ]

    def avoid(t: np.ndarray) -> np.ndarray:
        """Moves point events out of outings and naps (to just after them)."""
        if t.size == 0:
            return t
        di = np.clip((t // DAY_MIN).astype(np.int64), 0, D - 1)
        for x0, x1 in wins:
            a, b = x0[di], x1[di]
            inside = (t >= a) & (t < b)
            t = np.where(inside, b + rng.uniform(2, 20, t.size), t)
        return t

    def per_day(rate) -> np.ndarray:
        return np.repeat(np.arange(D), rng.poisson(rate, D))

    def awake(di, lo=30.0, hi=20.0) -> np.ndarray:
        t = off[di] + w[di] + lo + rng.random(di.size) * np.maximum(s[di] - w[di] - lo - hi, 1.0)
        return avoid(t)

    def toilet(t: np.ndarray, visitor: bool = False) -> None:
        n = t.size
        fl = rng.random(n) < (1.0 if visitor else p.flush_p)
        ev.add(t[fl], 1, lpm=p.flush_l)
        hw = rng.random(n) < (0.9 if visitor else p.handwash_p)
        ev.add(t[hw] + 1, 1, lpm=rng.uniform(0.5, 1.5, int(hw.sum())))

    def tap(t: np.ndarray, lo: float, hi: float, dlo: float = 1, dhi: float = 2) -> np.ndarray:
        dur = rng.uniform(dlo, dhi, t.size)
        ev.add(t, dur, lpm=rng.uniform(lo, hi, t.size))
        return dur

    def hot_reheat(t: np.ndarray, litres: np.ndarray) -> None:
        """Storage water heater (electric) reheats after hot water is drawn."""
        if p.water_heater == "electric" and t.size:
            dur = litres * 0.7 * 0.045 / p.wh_kw * 60.0
            keep = dur >= 2
            ev.add(t[keep] + 2, dur[keep], kw=p.wh_kw)

    # ---- morning: toilet, wash, kettle/thermos, breakfast
    toilet(off + w + U(1, 10))
    tap(off + w + U(5, 20), 1.5, 3.0, 1, 2)
    dark = w < ctx.sunrise + 20
    ev.add((off + w)[dark], np.maximum(np.minimum(ctx.sunrise + 20, w + 90) - w, 10)[dark], kw=p.light_kw, block=True)
    tk = (off + w + U(10, 30))[rng.random(D) < (0.5 if p.sparse else 1.0)]
    ev.add(tk - 1, 1, lpm=rng.uniform(1.0, 1.8, tk.size))
    ev.add(tk, rng.uniform(4, 7, tk.size), kw=p.kettle_kw)
    bf = rng.random(D) < p.breakfast_cook_p
    congee = bf & (rng.random(D) < 0.5)
    tb = off + w + U(15, 40)
    ev.add(tb[congee] - 1, 1, lpm=U(1.5, 3.0, int(congee.sum())))
    ev.add(tb[congee], U(30, 50, int(congee.sum())), kw=p.rice_kw)
    hob = bf & ~congee
    ev.add(tb[hob], U(6, 15, int(hob.sum())), kw=p.hob_kw * U(0.5, 0.9, int(hob.sum())))

    # ---- meals: wash vegetables, rice cooker, stir-fry on the induction hob, washing up
    big = np.where(stay, 1.6, 1.0)
    for cs, eat, leftovers_p in ((c0, tl, 0.0), (c1, td, p.leftovers_p)):
        left = rng.random(D) < leftovers_p
        cook = ~left
        k = int(cook.sum())
        if p.sparse:
            tap(cs[cook] + U(0, 5, k), 3.0, 5.0, 1, 1.5)
        else:
            tap(cs[cook] + U(0, 5, k), 3.0, 5.0, 1.5, 3)
            more = cook & stay
            tap(cs[more] + 8, 3.0, 6.0, 2, 4)
        rice = cook & (rng.random(D) < 0.85)
        ev.add(cs[rice] + U(3, 8, int(rice.sum())), U(25, 40, int(rice.sum())), kw=p.rice_kw)
        ev.add(cs[rice] + 45, U(20, 90, int(rice.sum())), kw=0.05)  # keep warm
        ev.add(cs[cook] + U(18, 28, k), U(8, 20, k) * big[cook], kw=p.hob_kw * U(0.6, 1.0, k))
        two = cook & ((rng.random(D) < 0.4) | stay)
        ev.add(cs[two] + 34, U(4, 10, int(two.sum())), kw=p.hob_kw * U(0.6, 1.0, int(two.sum())))
        kl = int(left.sum())
        ev.add(cs[left] + 30, U(5, 10, kl), kw=p.hob_kw * U(0.5, 0.8, kl))
        tw = eat + U(25, 50)
        if p.sparse:
            if eat is td:  # washing up once a day, after dinner
                tap(tw, 2.0, 4.0, 1, 1.5)
        else:
            litres_lpm = U(3.0, 5.0)
            dw = U(1.5, 3) * big
            ev.add(tw, dw, lpm=litres_lpm)
            hot_reheat(tw, litres_lpm * dw * 0.5)

    # ---- showers (evening; fewer when it is cold), bathroom heat lamp, water heater, foot soak
    tday = ctx.climate.day_mean
    sp = p.shower_cold_p + (p.shower_warm_p - p.shower_cold_p) * np.clip((tday - 8.0) / 14.0, 0, 1)
    sh = rng.random(D) < sp
    extra = stay & (rng.random(D) < 0.85)  # the visiting child showers too
    for mask, visitor in ((sh, False), (extra, True)):
        k = int(mask.sum())
        if not k:
            continue
        t = avoid(off[mask] + s[mask] - U(60, 150, k))
        dur = U(5, 10, k) if visitor or not p.sparse else U(3, 6, k)
        lpm = (U(5.5, 7.5, k) if visitor else p.shower_lpm * U(0.9, 1.1, k))
        ev.add(t, dur, lpm=lpm)
        if p.yuba:
            cold = tday[mask] < 16
            ev.add((t - 3)[cold], (dur + U(8, 15, k))[cold], kw=U(1.0, 2.0, int(cold.sum())))
        hot_reheat(t, lpm * dur)
    soak = rng.random(D) < p.foot_soak_p * np.clip((20.0 - tday) / 10.0, 0.2, 1.0)
    k = int(soak.sum())
    t = avoid(off[soak] + s[soak] - U(20, 80, k))
    ev.add(t, 2, lpm=U(2.0, 3.5, k))
    hot_reheat(t, np.full(k, 5.0))

    # ---- daytime: toilets, small tap uses, kettle refills, laundry, mopping
    toilet(awake(per_day(max(p.toilet_day - 2.0, 0.5))))
    toilet(awake(per_day(4.0 * stay)), visitor=True)
    di = per_day(p.taps_day + 3.0 * stay)
    tap(awake(di, 10.0), 0.3, 3.0, 1, 1.5)
    di = per_day(p.kettle_day + 1.5 * stay)
    tk = awake(di, 60.0, 30.0)
    ev.add(tk - 1, 1, lpm=rng.uniform(0.8, 1.5, di.size))
    ev.add(tk, rng.uniform(3, 6, di.size), kw=p.kettle_kw)
    lw = rng.random(D) < p.laundry_week / 7.0 * np.where(stay, 1.5, 1.0)
    k = int(lw.sum())
    if k:
        t0 = avoid(off[lw] + w[lw] + U(60, 200, k))
        for dt in (0.0, 25.0, 45.0):
            ev.add(t0 + dt, 2, lpm=U(6.0, 9.0, k))
        ev.add(t0, 55, kw=p.washer_kw)
        ev.add(t0 + 55, 8, kw=0.4)
    mop = rng.random(D) < p.mop_p
    tap(awake(np.flatnonzero(mop), 60.0, 120.0), 4.0, 6.0, 1.5, 2.5)

    # ---- TV and lights (blocks: left on if their owner falls)
    tv = rng.random(D) < p.tv_morning_p
    tv &= ~morn
    t0 = off + w + U(50, 120)
    t1 = np.minimum(t0 + U(60, 180), c0 - 5)
    tv &= t1 > t0 + 20
    ev.add(t0[tv], (t1 - t0)[tv], kw=p.tv_kw, block=True)
    tv = (rng.random(D) < p.tv_afternoon_p) & ~aft
    t0 = np.where(nap, n1, tl + 35) + U(3, 20)
    t1 = c1 - U(0, 20)
    tv &= t1 > t0 + 20
    ev.add(t0[tv], (t1 - t0)[tv], kw=p.tv_kw, block=True)
    tv = (rng.random(D) < (np.where(stay, 1.0, p.tv_evening_p)))
    t0 = np.where(eve, e1 + U(2, 10), td + U(20, 45))
    t1 = off + s - U(0, 20)
    tv &= t1 > t0 + 15
    ev.add(t0[tv], (t1 - t0)[tv], kw=p.tv_kw * np.where(stay, 1.3, 1.0)[tv], block=True)
    ls = off + np.maximum(ctx.sunset - U(0, 20), w + 60)
    le = off + s + U(0, 5)
    ev.add(ls, le - ls, kw=p.light_kw * np.where(stay, 2.0, 1.0), block=True)
    toilet(off + s - U(2, 10))
    tap((off + s - U(10, 20))[rng.random(D) < (0.3 if p.sparse else 1.0)], 1.0, 2.0)

    # ---- nocturia: each visit a dim light, a flush and a hand wash
    di = per_day(p.night_rate)
    if di.size:
        a = off[di] + s[di] + 30
        b = off[di] + DAY_MIN + w_next[di] - 20
        t = a + rng.random(di.size) * np.maximum(b - a, 1)
        ev.add(t - 1, rng.uniform(3, 7, di.size), kw=rng.uniform(0.01, 0.04, di.size), block=True)
        toilet(t + 1)

    # ---- heating by hand: evenings below the comfort point, some cold mornings and afternoons
    if p.heating != "none":
        days = np.arange(D)
        te = ctx.climate.at(days, 19.5)
        on = te < p.comfort_c + rng.normal(0, 1.2, D)
        hours = np.clip(p.heat_h0 + p.heat_gain * (p.comfort_c - te) + rng.normal(0, 0.4, D) + stay * 1.0, 0.5, 6.0)
        h0 = np.maximum(off + s - hours * 60.0, off + 960)
        h1 = off + s - U(0, 15)
        on &= h1 > h0 + 15
        heat.add(h0[on], (h1 - h0)[on], kw=p.heater_kw, block=True)
        tm = ctx.climate.at(days, 7.0)
        mo = (tm < p.comfort_c - 3 + rng.normal(0, 1.5, D)) & (rng.random(D) < p.morning_heat_p)
        m0 = off + w + U(5, 30)
        m1 = np.minimum(m0 + np.clip(30 + 12 * (p.comfort_c - 3 - tm), 20, 150), c0 - 5)
        mo &= m1 > m0 + 10
        heat.add(m0[mo], (m1 - m0)[mo], kw=p.heater_kw, block=True)
        ta = (tday < p.comfort_c - 5 + rng.normal(0, 1.5, D)) & (rng.random(D) < p.afternoon_heat_p) & ~aft
        x0 = np.where(nap, n1, tl + 40) + U(5, 30)
        x1 = np.minimum(x0 + U(60, 180), c1)
        ta &= x1 > x0 + 20
        heat.add(x0[ta], (x1 - x0)[ta], kw=p.heater_kw, block=True)
    if p.blanket_kw > 0:
        tn = ctx.climate.at(np.arange(D), 23.0)
        bl = tn < p.comfort_c + 1.0
        b0 = off + s - U(10, 40)
        b1 = off + DAY_MIN + w_next - U(0, 10)
        ev.add(b0[bl], (b1 - b0)[bl], kw=p.blanket_kw, block=True)

    # ---- storage water heater: standing losses, 1-2 short reheats a day (a thermostat, not a person)
    standing: list[float] = []
    if p.water_heater == "electric":
        di = np.repeat(np.arange(D), 1 + (rng.random(D) < 0.5))
        standing = (off[di] + rng.uniform(0, DAY_MIN, di.size)).tolist()

    return Routine(
        ev=ev,
        heat=heat,
        outings=_win(om0, om1, morn) + _win(a0, a1, aft) + _win(e0, e1, eve),
        naps=_win(n0, n1, nap),
        stay_days=stay,
        wh_standing=standing,
    )


# ---------------------------------------------------------------- one household end to end


def simulate_city_household(
    index: int,
    seed: int,
    ctx: CityContext,
    anomaly_rate: float = 1.0,
    warmup_days: int = 28,
    profile: str = "mixed",
    meters: str = "mixed",
):
    """One city household: readings per interval, labels, and ``detail`` (what happened, for tests)."""
    from elderwatch.simulator.core import HouseholdData, _rate, _windows_to_mask, machine_rates

    grid = ctx.grid
    kind, meter_kind = choose_kind(seed, index, profile, meters)
    rng = np.random.default_rng([seed, 3, index])
    p = draw_city_profile(rng, kind, meter_kind)
    wake, sleep = draw_rhythm(rng, p, grid)
    has = ("electricity", "water") if meter_kind == "both" else (meter_kind,)
    kinds = tuple(
        k for k in WELFARE_KINDS
        if not (k == "continuous_flow" and "water" not in has) and not (k == "surge" and "electricity" not in has)
    )
    plan = plan_household(
        rng, p, grid, wake, sleep, anomaly_rate, warmup_days,
        mean_days_between_trips=QUARTER_DAYS / p.trips_per_quarter,
        trip_nights=(1, 2, 2, 3, 3, 4),
        trip_note="staying at a child's home",
        mean_days_between_hospital=MEAN_DAYS_BETWEEN_HOSPITAL,
        welfare_kinds=kinds,
        meters=has,
    )
    r = city_routine(rng, p, ctx, wake, sleep, plan)
    N, n = grid.minutes, grid.n
    h = SLOT_MIN / 60.0

    a, b, c = r.ev.to_utc(grid), plan.extra.to_utc(grid), r.heat.to_utc(grid)
    u0 = np.concatenate([a.u0, b.u0, c.u0])
    u1 = np.concatenate([a.u1, b.u1, c.u1])
    kw = np.concatenate([a.kw, b.kw, c.kw])
    lpm = np.concatenate([a.lpm, b.lpm, c.lpm])
    block = np.concatenate([a.block, b.block, c.block])
    is_heat = np.zeros(u0.size, bool)
    is_heat[a.u0.size + b.u0.size :] = True

    # fall or illness: nothing new is started; what was on (lights, TV, heater) stays on until found
    for ia, ib in plan.inactivity_u:
        drop = (u0 >= ia) & (u0 < ib)
        kw = np.where(drop, 0.0, kw)
        lpm = np.where(drop, 0.0, lpm)
        inprog = block & (u0 < ia) & (u1 > ia)
        u1 = np.where(inprog, np.maximum(u1, int(np.ceil(ib))), u1)

    e_min = _rate(u0, u1, np.where(is_heat, 0.0, kw) / 60.0, N)
    w_min = _rate(u0, u1, lpm, N)
    heat_min = _rate(u0, u1, np.where(is_heat, kw, 0.0) / 60.0, N)
    on = np.flatnonzero(heat_min)
    if on.size:  # thermostat / compressor cycling, longer "on" the colder it is
        t = on.astype(np.float64)
        cold = p.comfort_c - ctx.temp_min[on]
        if p.heating == "ac":
            duty, idle = np.clip(0.35 + 0.06 * cold, 0.3, 1.0), 0.06
        else:
            duty, idle = np.clip(0.55 + 0.06 * cold, 0.45, 1.0), 0.0
        phase = (t / p.cycle_min + rng.uniform(0, 1) + 0.15 * np.sin(t / 97.0)) % 1.0
        heat_min[on] *= np.where(phase < duty, 1.0, idle)

    def to_u(windows):
        if not windows:
            return []
        u = grid.local_to_u(np.array(windows, dtype=np.float64).reshape(-1))
        return list(zip(u[0::2].tolist(), u[1::2].tolist()))

    outings_u, naps_u = to_u(r.outings), to_u(r.naps)
    away_mask = _windows_to_mask(plan.absences_u, N) if plan.absences_u else None
    inact_mask = _windows_to_mask(plan.inactivity_u, N) if plan.inactivity_u else None
    idle_mask = _windows_to_mask(outings_u, N) if outings_u else np.zeros(N, bool)
    if away_mask is not None:
        idle_mask |= away_mask
    if naps_u:
        nap_mask = _windows_to_mask(naps_u, N)
        if inact_mask is not None:
            nap_mask &= ~inact_mask
        idle_mask |= nap_mask
    if idle_mask.any():
        home = ~idle_mask
        e_min *= home
        w_min *= home
        heat_min *= home
    if inact_mask is not None:
        w_min *= ~inact_mask

    # machine-driven: anomalies, timer light while away, water-heater standing losses (off while away)
    mach_e = np.zeros(n)
    machine = machine_rates(plan, grid, timer_light=(1080.0, 240.0, 0.03) if p.timer_light else None)
    if machine is not None:
        w_min += machine[1]
        mach_e = machine[0].reshape(n, SLOT_MIN).sum(axis=1)
    if r.wh_standing:  # switched off at the wall while away
        su = np.rint(grid.local_to_u(np.array(r.wh_standing))).astype(np.int64)
        sd = su + np.rint(rng.uniform(8, 20, su.size)).astype(np.int64)
        st = _rate(su, sd, np.full(su.size, p.wh_kw / 60.0), N)
        if away_mask is not None:
            st *= ~away_mask
        mach_e = mach_e + st.reshape(n, SLOT_MIN).sum(axis=1)

    # always on: standby and the fridge (works harder when it is warm)
    tt = np.arange(n) * float(SLOT_MIN)
    base = p.standby_kw * h * (1.0 + 0.04 * rng.standard_normal(n))
    duty = 0.4 + 0.35 * np.sin(2 * np.pi * tt / p.fridge_period + rng.uniform(0, 6.3)) + 0.12 * rng.standard_normal(n)
    base += p.fridge_kw * h * np.clip(duty, 0.05, 1.0) * np.clip(1.0 + 0.02 * (ctx.climate.slot - 15.0), 0.7, 1.3)

    human_e = e_min.reshape(n, SLOT_MIN).sum(axis=1)
    heat_e = heat_min.reshape(n, SLOT_MIN).sum(axis=1)
    e = human_e + heat_e + mach_e + base
    w = w_min.reshape(n, SLOT_MIN).sum(axis=1)
    if p.noise_kwh:
        e += rng.normal(0.0, p.noise_kwh, n)
    e = np.round(np.maximum(e, p.standby_kw * h * 0.5), 3) + 0.0
    w = np.round(np.maximum(w, 0.0), 1) + 0.0

    pe = pw = None
    if "electricity" not in has:
        pe = np.zeros(n, bool)
    if "water" not in has:
        pw = np.zeros(n, bool)
    for meter, oa, ob in plan.offline_u:
        k0, k1 = oa // SLOT_MIN, ob // SLOT_MIN
        if meter == "electricity":
            pe = np.ones(n, bool) if pe is None else pe
            pe[k0:k1] = False
        else:
            pw = np.ones(n, bool) if pw is None else pw
            pw[k0:k1] = False
    hd = HouseholdData(index, p, e, w, pe, pw, plan.labels, wake, sleep)
    hd.detail = {
        "outings_u": outings_u,
        "naps_u": naps_u,
        "stay_days": r.stay_days,
        "absences_u": list(plan.absences_u),
        "inactivity_u": list(plan.inactivity_u),
        "heat_e": heat_e,
        "human_e": human_e,
        "machine_e": mach_e,
        "base_e": base,
    }
    return hd
