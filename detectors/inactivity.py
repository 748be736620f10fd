"""Inactivity: the activity this household usually shows has not happened.

Not a fixed window. For every local hour the detector learns how often an interval has some use
(water, by default). A silence is scored by how many uses were *expected* during it, summed
over the hours it covered: ``surprise = Σ -log(1 - p_hour)`` per silent interval, which is
``-log P(this silence)`` if uses were independent. Sleeping hours have ``p ≈ 0`` and add
nothing, so a long night is normal; a silent morning adds up fast.

The threshold is learned too, per local hour a silence *begins* in: the largest surprise any
*normal* silence of this household that began within an hour of it reached (a day out after
breakfast, a late morning after a long night), forgetting slowly, plus ``margin``. A household
that goes out every Tuesday morning gets a higher bar for silences that begin in the morning
than for one that begins after dinner, where the bedtime routine has never once been missed.

Missing data is not silence: an interval that follows missing readings counts as one ordinary
interval, and nothing accrues while a meter is offline.

>>> from datetime import datetime, timedelta, timezone
>>> from detectors.base import observation
>>> det = InactivityDetector(min_days=3)
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> def x(t, litres):
...     return observation("water", t, litres, 15, local=t)
>>> for i in range(96 * 14):  # two weeks: water used 07:00-21:00 in every other interval
...     t = t0 + timedelta(minutes=15 * (i + 1))
...     det.learn_one(x(t, 2.0 if 7 <= t.hour < 21 and i % 2 else 0.0))
>>> scores = {}
>>> for k in range(1, 13 * 4 + 1):  # then nothing from 20:30 through the night and the morning
...     t = t0 + timedelta(days=14, minutes=15 * k)
...     scores[f"{t:%H:%M}"] = det.score_one(x(t, 0.0))
...     det.learn_one(x(t, 0.0))
>>> scores["06:00"] < 1  # the night was silent, as every night is
True
>>> next(hhmm for hhmm, score in scores.items() if score >= 1)  # the silent morning is not
'08:45'
>>> print(det.describe_one(x(t + timedelta(minutes=15), 0.0)).summary)
no water used and no appliance switched on since 20:30 (last evening); water is usually used in about 14
of the 67 quarter-hours since then
"""

from __future__ import annotations

import math

from detectors.base import Detector, Finding
from detectors.rhythm import DecayingMax, HourlyMean, HourlyPower
from schemas.anomaly import AnomalyKind, Severity


class InactivityDetector(Detector):
    """
    Parameters
    ----------
    meter
        Whose uses count as activity.
    margin
        Threshold = the largest normal surprise + ``margin`` (in ``-log`` probability: 4 is a
        silence about 50 times less likely than the most unusual normal one).
    min_surprise
        Floor of the threshold (``-log`` probability): a household with few normal silences
        yet still needs this much evidence.
    fading_factor
        Of the hourly activity rates (river ``EWMean``).
    half_life_days
        How fast the largest normal silence is forgotten.
    min_days
        Days of data before it scores at all.
    p_cap
        Largest per-interval probability used, so one missed interval never proves a fall.
    ratchet
        A flagged silence is not learned, but when it ends it raises its hour's bar by this
        factor (see :meth:`DecayingMax.nudge`).
    max_normal_hours
        A longer silence is an absence (a trip, a hospital stay) more than the daily rhythm: it
        teaches only the surprise of its first ``max_normal_hours``, so a week away in the
        warm-up does not blind the detector for months.
    neighbours
        A silence's bar is the largest normal one begun within this many hours of it (more for
        long intervals, which give fewer silences to learn from: ±3 h for hourly readings).
    power_kw, power_z
        An appliance switched on also ends a silence: power at least ``power_kw`` and ``power_z``
        standard deviations above this hour's usual (a kettle, a hob; not a fridge or thermostat
        cycling). ``None`` uses the main meter only.
    """

    kind = AnomalyKind.INACTIVITY
    meters = ("water",)

    def __init__(self, meter: str = "water", margin: float = 4.0, min_surprise: float = 6.0,
                 fading_factor: float = 0.01, half_life_days: float = 90.0, min_days: float = 14.0,
                 learn_after_days: float = 3.0, p_cap: float = 0.9, ratchet: float = 1.15,
                 max_normal_hours: float = 16.0, power_kw: float | None = 0.4, power_z: float = 3.0,
                 neighbours: int = 1) -> None:
        self.meter = meter
        self.margin = margin
        self.min_surprise = min_surprise
        self.fading_factor = fading_factor
        self.half_life_days = half_life_days
        self.min_days = min_days
        self.learn_after_days = learn_after_days
        self.p_cap = p_cap
        self.ratchet = ratchet
        self.max_normal_hours = max_normal_hours
        self.neighbours = neighbours
        self.power_kw = power_kw
        self.power_z = power_z
        self.meters = (meter,) if power_kw is None else (meter, "electricity")
        self._rates = HourlyMean(fading_factor)
        self._power = HourlyPower(fading_factor)
        self._normal = [DecayingMax(half_life_days) for _ in range(24)]  # by local hour the silence began
        self._since = None          # data time of the last use (None: no use seen yet)
        self._since_hour = 0
        self._capped = None         # the surprise when the silence passed max_normal_hours
        self._surprise = 0.0
        self._expected = 0.0        # uses expected during the silence (for the explanation)
        self._intervals = 0
        self._flagged = False       # the current silence crossed the threshold
        self._first = None

    # -- scoring -------------------------------------------------------------------------
    def _step(self, x: dict) -> float:
        p = min(self._rates.get(x["hour"]), self.p_cap)
        return -math.log1p(-p)

    def usual_max(self, x: dict) -> float:
        h = self._since_hour
        # hourly readings give one silence per hour of the day at most: pool over more hours
        n = max(self.neighbours, round(x["minutes"] / 20))
        return max(self._normal[(h + d) % 24].get(x["ts"]) for d in range(-n, n + 1))

    def threshold(self, x: dict) -> float:
        return max(self.min_surprise, self.usual_max(x) + self.margin)

    def _use(self, x: dict) -> bool:
        """Someone did something: water ran, or an appliance was switched on (a clear power jump)."""
        if x["meter"] == self.meter:
            return x["active"]
        excess, z = self._power.jump(x["hour"], x["value"] * 60.0 / x["minutes"])
        return excess >= self.power_kw and z >= self.power_z

    def score_one(self, x: dict) -> float:
        if self._since is None or not self._ready(x) or self._use(x):
            return 0.0
        step = self._step(x) if x["meter"] == self.meter else 0.0  # only the main meter's silence counts
        return (self._surprise + step) / self.threshold(x)

    # -- learning ------------------------------------------------------------------------
    def learn_one(self, x: dict) -> None:
        if self._first is None:
            self._first = x["ts"]
        flagged = self.score_one(x) >= 1.0
        main = x["meter"] == self.meter
        if self._use(x):
            if self._since is not None and self._ready(x, self.learn_after_days):
                normal = self._normal[self._since_hour]
                if not self._flagged:
                    # a normal silence just ended; a long one teaches only its first hours
                    normal.update(self._surprise if self._capped is None else self._capped, x["ts"])
                elif self._flagged and self.ratchet > 1:
                    normal.nudge(self.threshold(x) - self.margin, self.ratchet, x["ts"])
            self._since = x["ts"]
            self._since_hour = x["local"].hour
            self._surprise = self._expected = 0.0
            self._capped = None
            self._intervals = 0
            self._flagged = False
        elif self._since is not None and main:
            if self._capped is None and (x["ts"] - self._since).total_seconds() > self.max_normal_hours * 3600:
                self._capped = self._surprise
            self._surprise += self._step(x)
            self._expected += min(self._rates.get(x["hour"]), self.p_cap)
            self._intervals += 1
            self._flagged = self._flagged or flagged
        if flagged or self._flagged:
            return
        if main:
            self._rates.update(x["hour"], 1.0 if x["active"] else 0.0)
        else:
            self._power.update(x["hour"], x["value"] * 60.0 / x["minutes"])

    # -- explaining ----------------------------------------------------------------------
    def describe_one(self, x: dict) -> Finding:
        since_local = x["local"] - (x["ts"] - self._since)
        expected = self._expected + min(self._rates.get(x["hour"]), self.p_cap)
        n = self._intervals + 1
        when = since_local.strftime("%H:%M")
        if since_local.date() != x["local"].date():
            when += " (last evening)" if (x["local"].date() - since_local.date()).days == 1 else f" on {since_local:%a %d %b}"
        hours = (x["ts"] - self._since).total_seconds() / 3600
        unit = "quarter-hours" if 14 <= x["minutes"] <= 16 else "intervals"
        return Finding(
            severity=Severity.HIGH,
            summary=(f"no {self.meter} used{'' if self.power_kw is None else ' and no appliance switched on'} since "
                     f"{when}; {self.meter} is usually used in about {expected:.0f} "
                     f"of the {n} {unit} since then"),
            episode_start=self._since,
            evidence={"meter": self.meter, "silent_hours": round(hours, 2), "expected_uses": round(expected, 1),
                      "surprise": round(self._surprise + self._step(x), 2), "threshold": round(self.threshold(x), 2)},
        )

    def baseline(self):
        return self._rates.snapshot(), tuple((round(m._value, 9), m.n) for m in self._normal)
