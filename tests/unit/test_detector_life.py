"""What real homes do, the detectors take in stride.

Each test runs a whole :class:`detectors.monitor.HouseholdMonitor` (all detectors, warm-up, episodes)
over a synthetic household built below by :func:`life_readings`: one older person living alone in
Shanghai, 15-minute electricity (kWh) and water (litres) readings, 60 days. Ordinary life that is
*not* an emergency (a trip nobody announced, daily outings, the heating season, getting up to the
toilet at night, a household that uses little water, a home with only one meter) must not bury the
staff in warnings, and must not blind the detectors to the emergencies that do happen (a fall, a
heater left on all night, nights spent up and about).

The generator works per minute, then sums into intervals. Everything random comes from numpy
``default_rng`` streams seeded per (household seed, day, part of life), so switching a scenario on
(a trip, outings, heating) leaves the rest of the household's life exactly as it was: the same
household with and without a trip differ only where the trip is.

Days are numbered from 0 (local midnight of :data:`START` in Asia/Shanghai); "day 40 at 10:00" is
local time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from detectors.monitor import HouseholdMonitor, MonitorConfig
from schemas.anomaly import WELFARE_KINDS, AnomalyKind, AnomalyWarning

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
START = date(2026, 1, 5)
DAYS = 60
WARM = 21  # days before any welfare warning
MIN_PER_DAY = 1440
STEP = 15  # minutes per reading

INACTIVITY = AnomalyKind.INACTIVITY
SURGE = AnomalyKind.SURGE
NIGHT = AnomalyKind.NIGHT_ACTIVITY

STANDBY_KW = 0.05
FRIDGE_KW = 0.08
KETTLE_KW = 2.0
COOKING_KW = 1.5
LIGHTS_KW = 0.15
TV_KW = 0.1
HEATER_KW = 1.5
NIGHT_HEATER_KW = 2.0
NIGHT_LIGHT_KW = 0.05


# -- the household generator --------------------------------------------------------------------

@dataclass(frozen=True)
class Life:
    """One household's 60 days. Times are local; a day is a local calendar day from 0."""

    seed: int = 1
    days: int = DAYS
    meters: str = "both"  # "both", "electricity" or "water"
    #: nobody home: (first day, number of days); leaves at 09:00, back at 15:00 ``days`` later
    trips: tuple[tuple[int, int], ...] = ()
    #: out 2-5 h, starting at varying times, on most days
    outings: bool = False
    #: a 1.5 kW heater switched on by hand at about 18:00 on most (cold) days from this day on,
    #: for 1 h at first, growing to 3 h over two weeks
    heating_from: int | None = None
    #: a 2 kW heater left on from 22:00 on this day until 07:00 the next morning
    heater_all_night: int | None = None
    #: 2-3 toilet visits every night: a 6 L flush and a 0.05 kW light for 5 minutes each
    nocturia: bool = False
    #: up 01:00-02:30 on these days: taps, lights and the kettle
    up_at_night: tuple[int, ...] = ()
    #: (day, local hour, hours): from then nothing new is used or switched (lights on stay on, the
    #: fridge cycles on); life resumes after ``hours`` (found, back from hospital)
    fall: tuple[int, float, float] | None = None
    #: about 8 water uses a day instead of about 25
    sparse_water: bool = False

    def onset(self) -> datetime:
        day, hour, _ = self.fall
        return local(day, hour)


def local(day: int, hour: float = 0.0) -> datetime:
    """UTC time of local ``hour`` on day ``day``."""
    midnight = datetime.combine(START + timedelta(days=day), time(0), ZONE)
    return (midnight + timedelta(hours=hour)).astimezone(timezone.utc)


def _rng(life: Life, day: int, part: int) -> np.random.Generator:
    return np.random.default_rng([life.seed, day, part])


def _on(arr: np.ndarray, start: float, minutes: float, kw: float) -> None:
    a = max(int(round(start)), 0)
    b = min(int(round(start + minutes)), len(arr))
    if b > a:
        arr[a:b] = np.maximum(arr[a:b], kw)


def _uses(rng: np.random.Generator, water: np.ndarray, times: np.ndarray) -> None:
    """Toilet (2-8 L) or tap (0.5-3 L) at each of ``times`` (minutes from the start)."""
    toilet = rng.random(len(times)) < 0.4
    litres = np.where(toilet, rng.uniform(2.0, 8.0, len(times)), rng.uniform(0.5, 3.0, len(times)))
    idx = np.clip(np.round(times).astype(int), 0, len(water) - 1)
    np.add.at(water, idx, litres)


def life_minutes(life: Life) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per minute: each appliance's kW (occupant-switched ones only) and water in litres."""
    n = life.days * MIN_PER_DAY
    kw = {name: np.zeros(n) for name in ("kettle", "cooking", "lights", "tv", "heater", "night")}
    water = np.zeros(n)
    home = np.ones(n, dtype=bool)
    wake = np.zeros(life.days + 1)
    sleep = np.zeros(life.days + 1)
    for d in range(life.days + 1):  # one more day: tonight's sleep needs tomorrow's wake
        r = _rng(life, d, 0)
        wake[d] = 6.5 * 60 + r.uniform(-30, 30)
        sleep[d] = 21.5 * 60 + r.uniform(-30, 30)
    for d in range(life.days):
        base = d * MIN_PER_DAY
        r = _rng(life, d, 1)
        w0, s0 = base + wake[d], base + sleep[d]
        awake_h = (s0 - w0) / 60
        # water: about one use an hour awake, more around meals (or about 8 a day, sparse)
        if life.sparse_water:
            times = r.uniform(w0, s0, r.integers(6, 11))
        else:
            times = np.concatenate([
                r.uniform(w0, s0, r.poisson(0.8 * awake_h)),
                w0 + r.uniform(10, 60, r.integers(2, 4)),             # breakfast
                base + r.uniform(11.5 * 60, 12.75 * 60, r.integers(2, 4)),  # lunch
                base + r.uniform(17.5 * 60, 19 * 60, r.integers(2, 5)),     # dinner
            ])
        _uses(r, water, times)
        # kettle: a few times a day, the first at breakfast
        for t in np.concatenate([[w0 + r.uniform(10, 40)], r.uniform(w0, s0 - 30, r.integers(2, 5))]):
            _on(kw["kettle"], t, 3, KETTLE_KW)
        # cooking: lunch and dinner
        _on(kw["cooking"], base + r.uniform(11.5 * 60, 12.25 * 60), r.uniform(20, 40), COOKING_KW)
        _on(kw["cooking"], base + r.uniform(17.5 * 60, 18.25 * 60), r.uniform(20, 40), COOKING_KW)
        # lights from dusk to bed, the television in the evening
        dusk = base + 17.5 * 60 + r.uniform(-15, 15)
        _on(kw["lights"], dusk, s0 - dusk, LIGHTS_KW)
        tv = base + 19 * 60 + r.uniform(-30, 30)
        _on(kw["tv"], tv, s0 - 10 - tv, TV_KW)
        # outings: 2-5 h away on most days, at varying times
        ro = _rng(life, d, 2)
        out_start, out_minutes, goes = ro.uniform(w0 + 60, base + 16 * 60), ro.uniform(120, 300), ro.random() < 0.85
        if life.outings and goes and not (life.fall and life.fall[0] == d):
            home[int(out_start):int(out_start + out_minutes)] = False
        # evening heating
        rh = _rng(life, d, 3)
        cold, on_at = rh.random() < 0.85, base + 18 * 60 + rh.uniform(-15, 15)
        if life.heating_from is not None and d >= life.heating_from and cold:
            hours = 1 + 2 * min(1.0, (d - life.heating_from) / 14)
            _on(kw["heater"], on_at, hours * 60, HEATER_KW)
        # nocturia: 2-3 toilet visits tonight
        rn = _rng(life, d, 4)
        visits = rn.uniform(s0 + 60, base + MIN_PER_DAY + wake[d + 1] - 30, rn.integers(2, 4))
        if life.nocturia:
            idx = np.clip(np.round(visits).astype(int), 0, n - 1)
            np.add.at(water, idx, 6.0)
            for t in visits:
                _on(kw["night"], t - 1, 5, NIGHT_LIGHT_KW)
    for d in life.up_at_night:
        base, ru = d * MIN_PER_DAY, _rng(life, d, 5)
        _on(kw["lights"], base + 60, 90, LIGHTS_KW)
        _on(kw["kettle"], base + 60 + ru.uniform(10, 40), 3, KETTLE_KW)
        _uses(ru, water, base + np.sort(ru.uniform(60, 150, 6)))
    if life.heater_all_night is not None:
        _on(kw["heater"], life.heater_all_night * MIN_PER_DAY + 22 * 60, 9 * 60, NIGHT_HEATER_KW)
    for first, length in life.trips:
        home[first * MIN_PER_DAY + 9 * 60:(first + length) * MIN_PER_DAY + 15 * 60] = False
    # away: nothing used or switched (an outing ends with the lights switched on if it is dark)
    water[~home] = 0.0
    for name in kw:
        kw[name][~home] = 0.0
    if life.fall is not None:
        day, hour, hours = life.fall
        a = int(day * MIN_PER_DAY + hour * 60)
        b = min(int(a + hours * 60), n)
        water[a:b] = 0.0
        for name in kw:  # what was on stays on (lights, television, heater), nothing new starts
            kw[name][a:b] = kw[name][a - 1] if name in ("lights", "tv", "heater") else 0.0
    return kw, water


@lru_cache(maxsize=None)
def life_readings(life: Life) -> tuple[tuple[str, datetime, float], ...]:
    """The household's readings in time order (electricity first at each time stamp)."""
    kw, water = life_minutes(life)
    intervals = life.days * MIN_PER_DAY // STEP
    occupant_kwh = sum(kw.values()).reshape(intervals, STEP).sum(axis=1) / 60.0
    duty = np.random.default_rng([life.seed, 10_000]).uniform(0.1, 0.9, intervals)
    kwh = np.round(occupant_kwh + (STANDBY_KW + FRIDGE_KW * duty) * STEP / 60.0, 3)
    litres = np.round(water.reshape(intervals, STEP).sum(axis=1), 1)
    t0 = local(0)
    rows = []
    for k in range(intervals):
        ts = t0 + timedelta(minutes=STEP * (k + 1))
        if life.meters in ("both", "electricity"):
            rows.append(("electricity", ts, float(kwh[k])))
        if life.meters in ("both", "water"):
            rows.append(("water", ts, float(litres[k])))
    return tuple(rows)


#: The detectors' own behaviour, every kind at sensitivity 1.0. The shipped operating points
#: (``detectors.monitor.OPERATING_POINTS``) trade some of this speed for fewer false alarms; what that
#: costs is measured on whole populations in bench/results/detect_family.md, not here.
RAW = MonitorConfig(sensitivity=())


@lru_cache(maxsize=None)
def warnings_of(life: Life) -> tuple[AnomalyWarning, ...]:
    """Every warning a HouseholdMonitor (zone Asia/Shanghai, sensitivity 1.0) raises over the household's readings."""
    monitor = HouseholdMonitor(f"life-{life.seed}", TZ, config=RAW)
    out: list[AnomalyWarning] = []
    for meter, ts, value in life_readings(life):
        out += monitor.process(meter, ts, value)
    return tuple(out)


# -- measuring ----------------------------------------------------------------------------------

def of_kind(warnings, kind: AnomalyKind, start: datetime, end: datetime) -> list[AnomalyWarning]:
    """Warnings of ``kind`` detected in [start, end)."""
    return [w for w in warnings if w.kind == kind and start <= w.detected_at < end]


def hours_to_find(life: Life) -> float:
    """Hours from the fall's onset to the first inactivity warning (inf: never, in its ``hours``)."""
    day, hour, hours = life.fall
    onset = life.onset()
    found = of_kind(warnings_of(life), INACTIVITY, onset, onset + timedelta(hours=hours))
    return (found[0].detected_at - onset).total_seconds() / 3600 if found else float("inf")


def describe(warnings) -> str:
    return "; ".join(f"{w.kind.value} at {w.detected_at.astimezone(ZONE):%d %b %H:%M}" for w in warnings) or "none"


def day_of(ts: datetime) -> int:
    return (ts.astimezone(ZONE).date() - START).days


# -- the generator is the life it claims to be --------------------------------------------------

def test_the_generated_household_lives_as_described():
    """The synthetic home is an ordinary one: water by day, lights in the evening, quiet nights."""
    life = Life(nocturia=True)
    rows = life_readings(life)
    assert len(rows) == DAYS * 96 * 2
    assert rows[0][1] == local(0, 0.25) and rows[0][1].utcoffset() == timedelta(0)
    water = np.array([v for m, _, v in rows if m == "water"]).reshape(DAYS, 96)
    kwh = np.array([v for m, _, v in rows if m == "electricity"]).reshape(DAYS, 96)
    uses = (water > 0).sum(axis=1)
    assert 15 <= uses.mean() <= 30  # intervals with water, per day
    # nocturia adds 2 or 3 flushes a night and changes nothing else (the random streams are per part of life)
    plain = np.array([v for m, _, v in life_readings(Life()) if m == "water"]).reshape(DAYS, 96)
    extra = (water - plain).ravel()[72:-24].reshape(DAYS - 1, 96)  # 18:00-18:00
    assert set(np.round(extra.sum(axis=1), 1)) == {12.0, 18.0}
    assert not extra[:, :8].any() and not extra[:, 56:].any()  # nothing 08:00-20:00
    assert 2.0 <= kwh.sum(axis=1).mean() <= 5.0  # kWh a day
    assert kwh[:, 8:20].max() < 0.04  # the small hours: standby, the fridge and a night light
    sparse = np.array([v for m, _, v in life_readings(Life(sparse_water=True, meters="water"))]).reshape(DAYS, 96)
    assert 6 <= (sparse > 0).sum(axis=1).mean() <= 10


# -- 1. a trip nobody announced -----------------------------------------------------------------

FALL_40 = (40, 10.0, 24.0)
TRIP_LEARNING = (5, 4)    # away days 5-9, while the detectors are still learning
TRIP_WARM = (24, 4)       # away days 24-28, after the warm-up


#: Before day 14 the inactivity detector scores nothing, so it never flags the trip and learns its
#: four empty days into the hourly activity rates (a plain mean over the first ~25 days, then the
#: seed of the slow EWMean): by day 40 its daytime rates are 5-30 % lower, the fall's surprise
#: grows more slowly, and after lunch (few uses expected) a small shortfall costs hours.
@pytest.mark.parametrize("trips", [
    pytest.param((TRIP_LEARNING,), id="trip-learning"),
    pytest.param((TRIP_WARM,), id="trip-warm"),
    pytest.param((TRIP_LEARNING, TRIP_WARM), id="both-trips"),
])
def test_an_unannounced_trip_does_not_blind_the_detectors_to_a_later_fall(trips):
    """Older people go to their children's for a few days without telling anyone; a fall weeks later is still found as fast."""
    twin = hours_to_find(Life(fall=FALL_40))
    after_trip = hours_to_find(Life(fall=FALL_40, trips=trips))
    print(f"fall found after {after_trip:.2f} h with trips {trips}, {twin:.2f} h without")
    assert twin < float("inf"), "the household without a trip never found the fall"
    assert after_trip <= twin + 0.5


def test_a_trip_after_the_warm_up_is_one_episode_at_most():
    """A few days away is one absence: at most one inactivity warning, and nothing else about the person."""
    first, length = TRIP_WARM
    ws = warnings_of(Life(fall=FALL_40, trips=(TRIP_WARM,)))
    start, end = local(first, 9), local(first + length + 1, 15)  # until a day after the return
    during = [w for w in ws if start <= w.detected_at < end and w.kind in WELFARE_KINDS]
    print("during the trip:", describe(during))
    assert len([w for w in during if w.kind == INACTIVITY]) <= 1
    assert not [w for w in during if w.kind != INACTIVITY]


# -- 2. out most days ---------------------------------------------------------------------------

OUT_FALL = (40, 10.0, 12.0)  # 10:00, nobody comes for 12 h


def test_daily_outings_are_not_inactivity():
    """Going to the market, the park or a friend's for 2-5 hours most days is not a fall."""
    life = Life(outings=True, fall=OUT_FALL)
    onset = life.onset()
    ws = [w for w in of_kind(warnings_of(life), INACTIVITY, local(WARM), local(DAYS))
          if not onset <= w.detected_at < onset + timedelta(hours=OUT_FALL[2])]
    print("inactivity outside the fall:", describe(ws))
    assert len(ws) <= 1


def test_a_fall_is_found_in_a_home_that_is_often_empty():
    """Someone who is out most days and falls at home at 10:00 is found within 10 hours."""
    hours = hours_to_find(Life(outings=True, fall=OUT_FALL))
    print(f"fall found after {hours:.2f} h")
    assert hours <= 10


# -- 3. the heating season ----------------------------------------------------------------------

HEATING = Life(heating_from=30)
HEATER_LEFT_ON = 55


#: Seed 1 alone passes at the limit (2: the first heating evening, and the evening after the first
#: warm day). Other households, with more warm evenings between the cold ones, do not: one evening
#: without the heater lets this week's usual (``season_fading`` 0.5, ``season_half_life_days`` 5)
#: fall back, and the next evening's heater, by then on for longer, is flagged again.
_WARM_EVENINGS = ("a warm evening without heating makes the next heated evening a surge again; measured: "
                  "{} surge warnings over days 30-60 (no heating on days {})")


@pytest.mark.parametrize("seed", [
    1, 2, 3,
    pytest.param(4, marks=pytest.mark.xfail(strict=True, reason=_WARM_EVENINGS.format(3, "30, 31, 34, 35, 41, 44, 53"))),
])
def test_evening_heating_becomes_usual(seed):
    """When it turns cold, a heater switched on most evenings (1 h, then 3 h) is the season, not a surge."""
    ws = of_kind(warnings_of(replace(HEATING, seed=seed)), SURGE, local(30), local(DAYS))
    print(f"surges with evening heating (seed {seed}):", describe(ws))
    assert len(ws) <= 2


def test_a_heater_left_on_all_night_is_a_surge():
    """A 2 kW heater left on from 22:00 (a fire risk, or someone not well enough to switch it off) is found within 1.5 h."""
    life = replace(HEATING, heater_all_night=HEATER_LEFT_ON)
    at = local(HEATER_LEFT_ON, 22)
    ws = of_kind(warnings_of(life), SURGE, at, at + timedelta(hours=9))
    print("surges from 22:00:", describe(ws))
    assert ws, "the heater left on all night was never flagged"
    assert ws[0].detected_at - at <= timedelta(hours=1.5)


# -- 4. nights --------------------------------------------------------------------------------

UP_NIGHTS = (45, 46, 47)


def test_nocturia_is_not_night_activity():
    """Two or three trips to the toilet every night (a flush, a small light) are this person's normal night."""
    ws = [w for w in warnings_of(Life(nocturia=True)) if w.kind == NIGHT]
    print("night activity with nocturia:", describe(ws))
    assert not ws


def test_being_up_at_night_three_nights_running_is_night_activity():
    """Up 01:00-02:30 with taps, lights and the kettle three nights running (pain, confusion) is one warning."""
    ws = [w for w in warnings_of(Life(nocturia=True, up_at_night=UP_NIGHTS)) if w.kind == NIGHT]
    print("night activity:", describe(ws))
    assert len(ws) == 1
    assert UP_NIGHTS[0] <= day_of(ws[0].detected_at) <= UP_NIGHTS[-1]


# -- 5. little water ---------------------------------------------------------------------------

SPARSE = Life(sparse_water=True)


def test_little_water_is_not_inactivity():
    """Some people use water only about 8 times a day; that rhythm is not a string of silences."""
    ws = of_kind(warnings_of(SPARSE), INACTIVITY, local(WARM), local(DAYS))
    print("inactivity, sparse water:", describe(ws))
    assert len(ws) <= 1


def test_a_fall_is_found_where_little_water_is_used():
    """A daytime fall of someone who uses little water is found within 8 hours."""
    hours = hours_to_find(replace(SPARSE, fall=FALL_40))
    print(f"fall found after {hours:.2f} h")
    assert hours <= 8


# -- 6. electricity only ------------------------------------------------------------------------

ELECTRICITY_ONLY = Life(meters="electricity")


def test_a_fall_is_found_from_electricity_alone():
    """Without a water meter, a fall at 09:00 (lights off, the fridge cycling on) is found within 12 hours."""
    hours = hours_to_find(replace(ELECTRICITY_ONLY, fall=(40, 9.0, 24.0)))
    print(f"fall found after {hours:.2f} h")
    assert hours <= 12


def test_electricity_only_life_is_not_inactivity():
    """Without a water meter, ordinary days switching the kettle, hob, lights and television raise at most one inactivity warning."""
    ws = of_kind(warnings_of(ELECTRICITY_ONLY), INACTIVITY, local(WARM), local(DAYS))
    print("inactivity, electricity only:", describe(ws))
    assert len(ws) <= 1


# -- 7. water only ------------------------------------------------------------------------------

def test_a_fall_is_found_from_water_alone():
    """Without an electricity meter, a daytime fall is found within 8 hours."""
    hours = hours_to_find(Life(meters="water", fall=FALL_40))
    print(f"fall found after {hours:.2f} h")
    assert hours <= 8
