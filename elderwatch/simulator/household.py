"""Per-household profiles: who lives there, their habits and their appliances.

A profile is drawn from the household's own random stream, so it depends only on
(seed, household index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.households import Household, StaffAssignment

COMMUNITY_SIZE = 50


@dataclass(frozen=True)
class Profile:
    # daily rhythm (local minutes of the day)
    wake: float
    sleep: float
    day_sd: float  # day-to-day spread of wake/sleep times
    weekend_shift: float  # later on Saturdays/Sundays
    late_morning_p: float
    # heating
    heating: str  # "electric" | "gas"
    heater_kw: float
    heat_k: float  # duty per degree below the set point
    set_day: float
    set_night: float
    # washing
    washing: str  # "shower" | "bath"
    shower_electric: bool
    wash_p: float  # probability of a shower/bath on a given day
    wash_evening: bool
    flush_l: float
    # human rhythm
    toilet_day: float  # expected daytime toilet visits
    night_rate: float  # expected night toilet visits
    taps_day: float
    kettle_day: float
    kettle_kw: float
    cooking: str  # "stove" | "microwave"
    laundry_week: float
    light_kw: float
    tv_kw: float
    afternoon_tv_p: float
    visitor_p: float
    day_out_p: float
    timer_light: bool
    # always-on
    baseload_kw: float
    fridge_kw: float
    freezer_kw: float
    fridge_period: float
    noise_kwh: float

    def tags(self) -> tuple[str, ...]:
        tags = [
            f"heating:{self.heating}",
            f"water:{self.washing}",
            f"cooking:{self.cooking}",
        ]
        if self.shower_electric:
            tags.append("shower:electric")
        if self.freezer_kw > 0:
            tags.append("appliance:freezer")
        tags.append("occupancy:single")
        return tuple(tags)


def draw_profile(rng: np.random.Generator) -> Profile:
    u = rng.random
    heating = "electric" if u() < 0.3 else "gas"
    washing = "bath" if u() < 0.2 else "shower"
    shower_electric = washing == "shower" and u() < 0.45
    wash_p = float(rng.choice([0.95, 0.5, 0.35])) if washing == "shower" else float(rng.uniform(0.25, 0.45))
    wake = rng.uniform(6 * 60, 8.5 * 60)
    sleep = rng.uniform(21 * 60, 23.5 * 60)
    # rare-night-visit households exist; most get up 0-2 times a night
    night_rate = float(rng.choice([0.1, 0.5, 1.0, 1.5, 2.2], p=[0.15, 0.25, 0.3, 0.2, 0.1]))
    return Profile(
        wake=wake,
        sleep=sleep,
        day_sd=rng.uniform(18, 35),
        weekend_shift=rng.uniform(0, 50),
        late_morning_p=rng.uniform(0.02, 0.08),
        heating=heating,
        heater_kw=rng.uniform(1.2, 2.2),
        heat_k=rng.uniform(0.012, 0.02),
        set_day=rng.uniform(19.0, 22.0),
        set_night=rng.uniform(14.0, 17.0),
        washing=washing,
        shower_electric=bool(shower_electric),
        wash_p=wash_p,
        wash_evening=bool(u() < 0.2),
        flush_l=float(rng.choice([4.5, 6.0, 6.0, 7.5, 9.0])),
        toilet_day=rng.uniform(4.5, 7.0),
        night_rate=night_rate,
        taps_day=rng.uniform(6, 14),
        kettle_day=rng.uniform(2.5, 6.0),
        kettle_kw=rng.uniform(2.2, 3.0),
        cooking="microwave" if u() < 0.35 else "stove",
        laundry_week=rng.uniform(1.0, 3.0),
        light_kw=rng.uniform(0.06, 0.25),
        tv_kw=rng.uniform(0.06, 0.16),
        afternoon_tv_p=rng.uniform(0.1, 0.7),
        visitor_p=rng.uniform(0.05, 0.2),
        day_out_p=rng.uniform(0.05, 0.25),
        timer_light=bool(u() < 0.4),
        baseload_kw=rng.uniform(0.05, 0.14),
        fridge_kw=rng.uniform(0.07, 0.13),
        freezer_kw=rng.uniform(0.06, 0.11) if u() < 0.5 else 0.0,
        fridge_period=rng.uniform(35, 80),
        noise_kwh=rng.uniform(0.0005, 0.003) if u() < 0.4 else 0.0,
    )


def household_id(index: int) -> str:
    return f"hh-{index + 1:06d}"


def make_household(index: int, profile: Profile, tz: str) -> Household:
    c = f"c-{index // COMMUNITY_SIZE + 1:02d}"
    return Household(
        household_id=household_id(index),
        community=c,
        tags=profile.tags(),
        timezone=tz,
        staff=StaffAssignment(primary_worker=f"w-{c}-1", backup_worker=f"w-{c}-2", supervisor=f"s-{c}"),
    )
