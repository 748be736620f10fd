"""Night activity: up in the household's usual sleep hours, on several nights.

Sleep hours are learned: the night-side local hours (19:00-10:00) in which this household
rarely uses water (in fewer than ``sleep_p`` of their intervals). Each use in them scores its surprise ``-log p_hour``; uses less than
``session_minutes`` apart form a session, and a night scores its busiest session. A toilet visit
at 03:00 is one short session; being up for an hour with the taps on and off is a long one. Electricity adds evidence too: power well above this hour's usual
(a kettle, the television, lights for an hour) counts by how many standard deviations it is
above, beyond ``power_z``. A night is *disturbed* when its score exceeds ``margin`` × the
busiest normal night this household has had (forgetting slowly). One disturbed night is life;
``nights`` disturbed nights out of the last ``window`` are a warning (confusion, illness,
pain), raised as soon as the evidence of the latest night crosses the bar.

>>> from datetime import datetime, timedelta, timezone
>>> from detectors.base import observation
>>> det = NightActivityDetector(min_days=3)
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> def x(t, litres):
...     return observation("water", t, litres, 15, local=t)
>>> def day(start, night_uses):
...     found = None
...     for i in range(96):
...         t = start + timedelta(minutes=15 * (i + 1))
...         busy = 7 <= t.hour < 22 and i % 3 == 0
...         up = t.hour == 2 and t.minute < 15 * night_uses
...         obs = x(t, 5.0 if busy or up else 0.0)
...         if found is None and det.score_one(obs) >= 1:
...             found = det.describe_one(obs).summary
...         det.learn_one(obs)
...     return found
>>> [day(t0 + timedelta(days=d), 1 if d % 4 == 0 else 0) for d in range(14)].count(None)  # a toilet visit some nights
14
>>> day(t0 + timedelta(days=14), 4) is None  # up for an hour: one night is life
True
>>> print(day(t0 + timedelta(days=15), 4))  # two nights running are a warning
up in the night on 2 of the last 3 nights (water used 3 times tonight, usually asleep 22:00-06:00)
"""

from __future__ import annotations

import math
from datetime import date, datetime

from detectors.base import Detector, Finding, scored_once
from detectors.rhythm import DecayingMax, HourlyMean, Switches
from detectors.state import (DATE, DATETIME, INTEGER, NUMBER, Codec, frozenset_of, list_of, meter_map, nullable, pair,
                             shared, state_of)
from schemas.anomaly import AnomalyKind, Severity

_NIGHT_SIDE = (19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
_NIGHT_SIDE_SET = frozenset(_NIGHT_SIDE)
_METERS = ("water", "electricity")  # sleep, if any, includes some of these hours


#: A set of sleep hours, shared by the households that have the same (a frozenset is ~700 bytes).
_SLEEP_HOURS = Codec(frozenset_of(INTEGER).encode,
                     lambda value, where: shared(frozenset_of(INTEGER).decode(value, where)))


class NightActivityDetector(Detector):
    """
    Parameters
    ----------
    meter
        Whose uses count as being up.
    nights, window
        Warn when ``nights`` of the last ``window`` nights are disturbed.
    margin
        A night is disturbed at ``margin`` × the busiest normal night (the sensitivity knob).
    min_score
        Floor of the nightly bar (``-log`` probability units).
    session_minutes
        Uses closer together than this belong to one session of being up.
    sleep_p
        An hour is a sleep hour when its share of intervals with use is below this.
    fading_factor, half_life_days, min_days
        As for the other detectors.
    ratchet
        A disturbed night is not learned; with a ratchet above 1 it raises the nightly bar by this
        factor (off by default: it would raise the bar an episode's second night has to clear).
    """

    kind = AnomalyKind.NIGHT_ACTIVITY
    meters = ("water", "electricity")

    STATE = {
        "_rates": meter_map(state_of(HourlyMean)), "_switches": state_of(Switches), "_busiest": state_of(DecayingMax),
        "_night": DATE, "_score": NUMBER, "_session": NUMBER, "_last_use": DATETIME, "_uses": INTEGER,
        "_switched": INTEGER, "_first_use": DATETIME, "_past": list_of(nullable(NUMBER)),
        # a cache, but one that outlives a reading (sleep hours are worked out once per hour of data): kept
        "_sleep_cache": pair(INTEGER, _SLEEP_HOURS), "_first": DATETIME,
    }

    def __init__(self, nights: int = 2, window: int = 3, margin: float = 1.2,
                 min_score: float = 9.0, sleep_p: float = 0.15, session_minutes: float = 60.0,
                 fading_factor: float = 0.01,
                 half_life_days: float = 90.0, min_days: float = 14.0, learn_after_days: float = 3.0,
                 ratchet: float = 1.0, switch_kw: float = 0.1, switch_z: float = 4.0, switch_cap: float = 1.5, busy_p: float = 0.25) -> None:
        self.nights = nights
        self.window = window
        self.margin = margin
        self.min_score = min_score
        self.session_minutes = session_minutes
        self.sleep_p = sleep_p
        self.fading_factor = fading_factor
        self.half_life_days = half_life_days
        self.min_days = min_days
        self.learn_after_days = learn_after_days
        self.ratchet = ratchet
        self.switch_kw = switch_kw
        self.switch_z = switch_z
        self.switch_cap = switch_cap
        self.busy_p = busy_p
        self._rates = {m: HourlyMean(fading_factor) for m in _METERS}  # share of intervals with a sign of being up
        self._switches = Switches(switch_kw, switch_z, fading_factor=fading_factor)
        self._busiest = DecayingMax(half_life_days)
        self._night: date | None = None     # the night being scored
        self._score = 0.0                   # its score so far: the busiest session's
        self._session = 0.0                 # score of the current session (uses close together)
        self._last_use = None               # data time of the latest surprising use
        self._uses = 0                      # water uses in sleep hours tonight
        self._switched = 0                  # appliances switched in sleep hours tonight
        self._first_use = None              # data time of tonight's first use in sleep hours
        # previous nights, newest last: when a disturbed night's first use was (POSIX s), else None
        self._past: list[float | None] = []
        self._sleep_cache: tuple[int, frozenset[int]] = (-1, frozenset())  # (hour of data, sleep hours)
        self._first = None

    def _quiet(self, hour: int) -> bool:
        """Few signs of being up in this hour, on every meter this household has."""
        seen = [r for r in self._rates.values() if r.count(hour) > 0]
        return bool(seen) and all(r.get(hour) < self.sleep_p for r in seen)

    def _up(self, x: dict) -> bool:
        """A sign of someone being up: water used, or an appliance switched on or off."""
        return x["active"] if x["meter"] == "water" else self._switches.is_switch(x)

    def _busy(self, hour: int) -> bool:
        return any(r.count(hour) > 0 and r.get(hour) >= self.busy_p for r in self._rates.values())

    def _sleep_run(self) -> frozenset[int]:
        """The household's sleep hours: quiet night-side hours between its last busy hour of the
        evening and its first busy hour of the morning (around 03:00). A quiet hour after the morning
        routine (out at the market at 09:00) is an outing, not sleep."""
        rates = [(r.n, r.values) for r in self._rates.values()]
        sleep_p, busy_p = self.sleep_p, self.busy_p
        quiet, busy = [], []
        for hour in _NIGHT_SIDE:  # what _quiet and _busy say, every hour read once (loops, not generators: speed)
            seen, all_quiet, any_busy = False, True, False
            for n, values in rates:
                if n[hour] > 0:
                    p = values[hour]
                    seen = True
                    if not p < sleep_p:
                        all_quiet = False
                    if p >= busy_p:
                        any_busy = True
            quiet.append(seen and all_quiet)
            busy.append(any_busy)
        i = j = _NIGHT_SIDE.index(3)
        while i > 0 and not busy[i - 1]:
            i -= 1
        while j < len(_NIGHT_SIDE) - 1 and not busy[j + 1]:
            j += 1
        return frozenset(h for k, h in enumerate(_NIGHT_SIDE) if i <= k <= j and quiet[k])

    def _sleeping(self, hour: int, x: dict | None = None) -> bool:
        if hour not in _NIGHT_SIDE_SET:
            return False
        if x is not None and self._sleep_cache[0] == int(x["t"] // 3600):
            return hour in self._sleep_cache[1]
        return hour in self._sleep_run()

    def _refresh_sleep(self, x: dict) -> None:
        """Sleep hours are worked out once per hour of data (in learn_one, so score_one stays pure)."""
        key = int(x["t"] // 3600)
        if self._sleep_cache[0] != key:
            self._sleep_cache = (key, shared(self._sleep_run()))

    def _surprise(self, x: dict) -> float:
        if not self._up(x) or not self._sleeping(x["hour"], x):
            return 0.0
        surprise = -math.log(max(self._rates[x["meter"]].get(x["hour"]), 0.005))
        # a switch says less than a tap: a heat lamp at a toilet visit, a blanket's thermostat
        return surprise if x["meter"] == "water" else min(surprise, self.switch_cap)

    def threshold(self, x: dict) -> float:
        return max(self.min_score, self.margin * self._busiest.get(x["t"]))

    def _session_with(self, x: dict) -> float:
        """The current session's score if ``x`` joins it (or starts a new one)."""
        surprise = self._surprise(x)
        if not surprise:
            return 0.0
        close = self._last_use is not None and (x["ts"] - self._last_use).total_seconds() <= self.session_minutes * 60
        return surprise + (self._session if close else 0.0)

    def _tonight_and_past(self, x: dict) -> tuple[float, list[float | None]]:
        if self._night == x["night"]:
            return max(self._score, self._session_with(x)), self._past
        # a new night: the previous one is complete
        past = self._past
        if self._night is not None:
            gap_nights = (x["night"] - self._night).days - 1
            disturbed = self._score > self.threshold(x) and self._first_use is not None and self._ready(x)
            past = past + [self._first_use.timestamp() if disturbed else None] + [None] * min(gap_nights, self.window)
        return self._surprise(x), past[-(self.window - 1):] if self.window > 1 else []

    @scored_once
    def score_one(self, x: dict) -> float:
        if not self._ready(x):
            return 0.0
        tonight, past = self._tonight_and_past(x)
        evidence = min(tonight / self.threshold(x), 1.0) if tonight else 0.0  # most readings: asleep or day
        return (sum(p is not None for p in past) + evidence) / self.nights

    def learn_one(self, x: dict) -> None:
        if self._first is None:
            self._first = x["ts"]
        self._refresh_sleep(x)
        flagged = self.score_one(x) >= 1.0
        self.learned()
        if self._night != x["night"]:
            if self._night is not None and self._ready(x, self.learn_after_days):
                if self._score <= self.threshold(x):
                    self._busiest.update(self._score, x["t"])  # a normal night just ended
                elif self.ratchet > 1:
                    self._busiest.nudge(self.threshold(x) / self.margin, self.ratchet, x["t"])
            _, self._past = self._tonight_and_past(x)
            self._night, self._score, self._uses, self._switched, self._first_use = x["night"], 0.0, 0, 0, None
            self._session, self._last_use = 0.0, None
        surprise = self._surprise(x)
        if surprise > 0:
            self._session = self._session_with(x)
            self._last_use = x["ts"]
            self._score = max(self._score, self._session)
            self._uses += x["meter"] == "water"
            self._switched += x["meter"] == "electricity"
            self._first_use = self._first_use or x["ts"]
        up = self._up(x)
        disturbed = flagged or self._score > self.threshold(x)
        if x["meter"] == "electricity":
            if disturbed:
                self._switches.follow(x)
            else:
                self._switches.update(x)
        if disturbed:
            return  # a disturbed night is not learned as normal, even before it makes a warning
        self._rates[x["meter"]].update(x["hour"], 1.0 if up else 0.0)

    def sleep_hours(self) -> str:
        hours = [h for h in _NIGHT_SIDE if self._sleeping(h)]
        if not hours:
            return "no usual sleep hours yet"
        return f"{hours[0]:02d}:00-{(hours[-1] + 1) % 24:02d}:00"

    def describe_one(self, x: dict) -> Finding:
        tonight, past = self._tonight_and_past(x)
        disturbed = sum(p is not None for p in past) + (tonight > self.threshold(x))
        same_night = self._night == x["night"]
        fresh = self._surprise(x) > 0
        uses = (self._uses if same_night else 0) + (x["meter"] == "water" and fresh)
        switched = (self._switched if same_night else 0) + (x["meter"] == "electricity" and fresh)
        signs = [f"water used {uses} times"] if self._rates["water"].count(x["hour"]) else []
        if self._rates["electricity"].count(x["hour"]):
            signs.append(f"appliances switched {switched} times")
        earliest = next((p for p in past if p is not None), None)
        if earliest is not None:
            start = datetime.fromtimestamp(earliest, tz=x["ts"].tzinfo)
        else:
            start = (self._first_use if same_night and self._first_use else x["ts"])
        return Finding(
            severity=Severity.LOW,
            summary=(f"up in the night on {disturbed} of the last {self.window} nights ({' and '.join(signs) or 'active'} "
                     f"tonight, usually asleep {self.sleep_hours()})"),
            episode_start=start,
            evidence={"meter": "water" if self._rates["water"].count(x["hour"]) else "electricity", "disturbed_nights": int(disturbed), "nights_considered": self.window,
                      "uses_tonight": int(uses), "switches_tonight": int(switched), "night_score": round(tonight, 2),
                      "night_threshold": round(self.threshold(x), 2), "sleep_hours": self.sleep_hours()},
        )

    def baseline(self):
        return (tuple(self._rates[m].snapshot() for m in _METERS), round(self._switches.threshold(), 9),
                round(self._busiest._value, 9), self._busiest.n)
