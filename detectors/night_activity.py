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
up in the night on 2 of the last 3 nights (water at night: 3 times tonight, usually asleep 22:00-06:00)
"""

from __future__ import annotations

import math
from datetime import date, datetime

from detectors.base import Detector, Finding
from detectors.rhythm import DecayingMax, HourlyMean, HourlyPower
from schemas.anomaly import AnomalyKind, Severity

_NIGHT_SIDE = (19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)


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

    def __init__(self, meter: str = "water", nights: int = 2, window: int = 3, margin: float = 1.2,
                 min_score: float = 9.0, sleep_p: float = 0.15, session_minutes: float = 60.0,
                 power_z: float = 2.5, min_power_kw: float = 0.3,
                 fading_factor: float = 0.01,
                 half_life_days: float = 90.0, min_days: float = 14.0, learn_after_days: float = 3.0,
                 ratchet: float = 1.0) -> None:
        self.meter = meter
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
        self.power_z = power_z
        self.min_power_kw = min_power_kw
        self.meters = (meter, "electricity")
        self._rates = HourlyMean(fading_factor)
        self._power = HourlyPower(fading_factor)
        self._busiest = DecayingMax(half_life_days)
        self._night: date | None = None     # the night being scored
        self._score = 0.0                   # its score so far: the busiest session's
        self._session = 0.0                 # score of the current session (uses close together)
        self._last_use = None               # data time of the latest surprising use
        self._uses = 0                      # uses in sleep hours tonight
        self._first_use = None              # data time of tonight's first use in sleep hours
        # previous nights, newest last: when a disturbed night's first use was (POSIX s), else None
        self._past: list[float | None] = []
        self._first = None

    def _quiet(self, hour: int) -> bool:
        return self._rates.count(hour) > 0 and self._rates.get(hour) < self.sleep_p

    def _sleeping(self, hour: int) -> bool:
        return hour in _NIGHT_SIDE and self._quiet(hour)

    def _surprise(self, x: dict) -> float:
        if not x["active"] or not self._sleeping(x["hour"]):
            return 0.0
        if x["meter"] == self.meter:
            return -math.log(max(self._rates.get(x["hour"]), 0.005))
        excess, z = self._power.jump(x["hour"], x["value"] * 60.0 / x["minutes"])
        if excess < self.min_power_kw or z <= self.power_z:
            return 0.0
        return min(z - self.power_z, 2 * self.power_z)

    def threshold(self, x: dict) -> float:
        return max(self.min_score, self.margin * self._busiest.get(x["ts"]))

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

    def score_one(self, x: dict) -> float:
        if not self._ready(x):
            return 0.0
        tonight, past = self._tonight_and_past(x)
        return (sum(p is not None for p in past) + min(tonight / self.threshold(x), 1.0)) / self.nights

    def learn_one(self, x: dict) -> None:
        if self._first is None:
            self._first = x["ts"]
        flagged = self.score_one(x) >= 1.0
        if self._night != x["night"]:
            if self._night is not None and self._ready(x, self.learn_after_days):
                if self._score <= self.threshold(x):
                    self._busiest.update(self._score, x["ts"])  # a normal night just ended
                elif self.ratchet > 1:
                    self._busiest.nudge(self.threshold(x) / self.margin, self.ratchet, x["ts"])
            _, self._past = self._tonight_and_past(x)
            self._night, self._score, self._uses, self._first_use = x["night"], 0.0, 0, None
            self._session, self._last_use = 0.0, None
        surprise = self._surprise(x)
        if surprise > 0:
            self._session = self._session_with(x)
            self._last_use = x["ts"]
            self._score = max(self._score, self._session)
            self._uses += x["meter"] == self.meter
            self._first_use = self._first_use or x["ts"]
        if flagged or self._score > self.threshold(x):
            return  # a disturbed night is not learned as normal, even before it makes a warning
        if x["meter"] == self.meter:
            self._rates.update(x["hour"], 1.0 if x["active"] else 0.0)
        else:
            self._power.update(x["hour"], x["value"] * 60.0 / x["minutes"])

    def sleep_hours(self) -> str:
        hours = [h for h in _NIGHT_SIDE if self._sleeping(h)]
        if not hours:
            return "no usual sleep hours yet"
        return f"{hours[0]:02d}:00-{(hours[-1] + 1) % 24:02d}:00"

    def describe_one(self, x: dict) -> Finding:
        tonight, past = self._tonight_and_past(x)
        disturbed = sum(p is not None for p in past) + (tonight > self.threshold(x))
        same_night = self._night == x["night"]
        uses = (self._uses if same_night else 0) + (x["meter"] == self.meter and self._surprise(x) > 0)
        earliest = next((p for p in past if p is not None), None)
        if earliest is not None:
            start = datetime.fromtimestamp(earliest, tz=x["ts"].tzinfo)
        else:
            start = (self._first_use if same_night and self._first_use else x["ts"])
        return Finding(
            severity=Severity.LOW,
            summary=(f"up in the night on {disturbed} of the last {self.window} nights ({self.meter} at night: "
                     f"{uses} times tonight, usually asleep {self.sleep_hours()})"),
            episode_start=start,
            evidence={"meter": self.meter, "disturbed_nights": int(disturbed), "nights_considered": self.window,
                      "uses_tonight": int(uses), "night_score": round(tonight, 2),
                      "night_threshold": round(self.threshold(x), 2), "sleep_hours": self.sleep_hours()},
        )

    def baseline(self):
        return (self._rates.snapshot(), self._power.snapshot(), round(self._busiest._value, 9), self._busiest.n)
