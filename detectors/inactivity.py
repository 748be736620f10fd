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
no water used since 20:30 (last evening), 16.8 h; water is usually used in about 14 of the 67 quarter-hours
since then
"""

from __future__ import annotations

import math

from detectors.base import Detector, Finding, scored_once
from detectors.rhythm import HourlyMean, HourlyTopK, Switches
from detectors.state import BOOLEAN, DATETIME, INTEGER, NUMBER, meter_map, state_of
from schemas.anomaly import AnomalyKind, Severity

_METERS = ("water", "electricity")


class InactivityDetector(Detector):
    """
    Parameters
    ----------
    margin
        Threshold = the household's long normal silence + ``margin`` (in ``-log`` probability: 4 is a
        silence about 50 times less likely than that one).
    min_surprise
        Floor of the threshold (``-log`` probability): a household with few normal silences
        yet still needs this much evidence.
    fading_factor
        Of the hourly activity rates (river ``EWMean``).
    half_life_days
        How fast a long normal silence is forgotten.
    min_days
        Days of data before it scores at all.
    learn_after_days
        Days before silences are learned as normal (the rates need a few days first).
    p_cap
        Largest per-interval probability used, so one missed interval never proves a fall.
    ratchet
        A flagged silence is not learned, but when it ends it adds its hour's bar × this factor to
        the long silences kept (so a changed habit stops alarming after a few episodes).
    max_normal_hours
        A longer silence is an absence (a trip, a hospital stay), not the daily rhythm: neither it
        nor its hours beyond this are learned, so a week away (even in the first weeks, before
        anything can be flagged) neither teaches that long silences are normal nor thins the rates.
    neighbours
        A silence's bar comes from the normal silences begun within this many hours of it (more for
        long intervals, which give fewer silences to learn from: ±3 h for hourly readings).
    keep, rank
        Per starting hour the ``keep`` longest normal silences are kept (forgetting); the bar is the
        ``rank``-th longest of those begun nearby, so one extreme day does not set it.
    electricity_margin
        ``margin`` for the electricity clock: switching is burstier than water use.
    switch_kw, switch_z
        Electricity counts as activity when it changes by at least ``switch_kw`` and ``switch_z``
        standard deviations above the changes of the appliances that run by themselves
        (:class:`detectors.rhythm.Switches`).
    """

    kind = AnomalyKind.INACTIVITY
    meters = _METERS

    STATE = {
        "_rates": meter_map(state_of(HourlyMean)), "_switches": state_of(Switches),
        "_normal": meter_map(state_of(HourlyTopK)), "_since": DATETIME, "_since_hour": INTEGER,
        "_surprise": meter_map(NUMBER), "_expected": meter_map(NUMBER), "_intervals": meter_map(INTEGER),
        "_flagged": BOOLEAN, "_seen": INTEGER, "_first": DATETIME,
    }
    CACHES = Detector.CACHES + ("_bars",)
    __slots__ = ("_bars",)  # a cache: in a slot, as Detector's

    def __init__(self, margin: float = 4.0, min_surprise: float = 6.0, fading_factor: float = 0.01,
                 half_life_days: float = 90.0, min_days: float = 14.0, learn_after_days: float = 3.0,
                 p_cap: float = 0.9, ratchet: float = 1.15, max_normal_hours: float = 16.0, neighbours: int = 1,
                 keep: int = 3, rank: int = 2, switch_kw: float = 0.1, switch_z: float = 4.0,
                 electricity_margin: float = 8.0) -> None:
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
        self.keep = keep
        self.rank = rank
        self.switch_kw = switch_kw
        self.switch_z = switch_z
        self.electricity_margin = electricity_margin
        self._rates = {m: HourlyMean(fading_factor) for m in _METERS}  # share of intervals with activity
        self._switches = Switches(switch_kw, switch_z, fading_factor=fading_factor)
        # per meter, by local hour the silence began: the longest normal silences, on that meter's clock
        self._normal = {m: HourlyTopK(keep, half_life_days) for m in _METERS}
        self._since = None          # data time of the last activity (None: none seen yet)
        self._since_hour = 0
        # the current silence, per meter: surprise, activity expected (for the explanation), intervals
        self._surprise = dict.fromkeys(_METERS, 0.0)
        self._expected = dict.fromkeys(_METERS, 0.0)
        self._intervals = dict.fromkeys(_METERS, 0)
        self._flagged = False       # the current silence crossed the threshold
        self._seen = 0              # meters seen: 1 water, 2 electricity
        self._first = None

    # -- scoring -------------------------------------------------------------------------
    def _p(self, x: dict) -> float:
        return min(self._rates[x["meter"]].values[x["hour"]], self.p_cap)  # .get(hour), read directly: hot

    def _step(self, x: dict) -> float:
        return -math.log1p(-self._p(x))

    def usual_long(self, x: dict, meter: str | None = None) -> float:
        """The long normal silence this one is compared with, on ``meter``'s clock (``-log`` probability)."""
        h = self._since_hour
        # hourly readings give one silence per hour of the day at most: pool over more hours
        n = max(self.neighbours, round(x["minutes"] / 20))
        meter = meter or x["meter"]
        # Kept values all forget at one rate, so which one is rank-th never changes between updates:
        # it is found once per silence (a cache, not state) and only its decay is worked out per reading.
        cache = self._bars
        if cache is None:
            cache = self._bars = {}
        key = (meter, h, n)
        chosen = cache.get(key)
        normal = self._normal[meter]
        if chosen is None:
            pooled = sorted(normal.pooled([(h + d) % 24 for d in range(-n, n + 1)], x["t"]),
                            key=lambda item: item[:2], reverse=True)
            chosen = cache[key] = (pooled[self.rank - 1] if len(pooled) >= self.rank else
                                   (pooled[0] if pooled else None))
        if chosen is None:
            return 0.0
        _, value, hour = chosen
        return value * normal.decay(hour, x["t"])  # exactly what normal.values(hour) gives for it

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        for m, normal in self._normal.items():
            if isinstance(normal, list):  # pickled before the table: 24 DecayingTopK
                self._normal[m] = HourlyTopK.of(normal)

    def threshold(self, x: dict, meter: str | None = None) -> float:
        if (meter or x["meter"]) == "electricity":
            # switching is burstier than water use (a meal is several switches, then none for hours):
            # the same surprise is less unusual, so its bar is wider
            return max(self.min_surprise, self.usual_long(x, meter) + self.electricity_margin)
        return max(self.min_surprise, self.usual_long(x, meter) + self.margin)

    def _active(self, x: dict) -> bool:
        """Someone did something: water ran, or an appliance was switched on or off."""
        if x["meter"] == "water":
            return x["active"]
        return self._switches.is_switch(x)

    def _ratios(self, x: dict) -> dict[str, float]:
        """Each meter's silence so far (``x`` included) against its own threshold."""
        out = {}
        for m in _METERS:
            surprise = self._surprise[m] + (self._step(x) if m == x["meter"] else 0.0)
            out[m] = surprise / self.threshold(x, m) if surprise else 0.0  # no silence: no bar needed
        return out

    @scored_once
    def score_one(self, x: dict) -> float:
        if self._since is None or not self._ready(x) or self._active(x):
            return 0.0
        # either meter's silence is evidence; the larger counts (one meter may be offline or absent)
        return max(self._ratios(x).values())

    # -- learning ------------------------------------------------------------------------
    def learn_one(self, x: dict) -> None:
        if self._first is None:
            self._first = x["ts"]
        self._seen |= 1 if x["meter"] == "water" else 2
        flagged = self.score_one(x) >= 1.0
        self.learned()
        active = self._active(x)
        meter = x["meter"]
        if active:
            if self._since is not None and self._ready(x, self.learn_after_days):
                hours = (x["ts"] - self._since).total_seconds() / 3600
                for m in _METERS:
                    if not self._seen & (1 if m == "water" else 2):
                        continue
                    normal = self._normal[m]
                    if not self._flagged and hours <= self.max_normal_hours:
                        normal.update(self._since_hour, self._surprise[m], x["t"])  # a normal silence just ended
                    elif self._flagged and self.ratchet > 1:
                        normal.update(self._since_hour, self.usual_long(x, m) * self.ratchet, x["t"])
            self._bars = None  # the tables may have changed, and a new silence begins
            self._since = x["ts"]
            self._since_hour = x["local"].hour
            for m in _METERS:
                self._surprise[m] = self._expected[m] = 0.0
                self._intervals[m] = 0
            self._flagged = False
        elif self._since is not None:
            self._surprise[meter] += self._step(x)
            self._expected[meter] += self._p(x)
            self._intervals[meter] += 1
            self._flagged = self._flagged or flagged
        if meter == "electricity":
            if flagged or self._flagged:
                self._switches.follow(x)
            else:
                self._switches.update(x)
        if flagged or self._flagged:
            return
        if not active and self._since is not None and \
                (x["ts"] - self._since).total_seconds() > self.max_normal_hours * 3600:
            return  # an absence (a trip in the first weeks, before anything is flagged) is not the daily rhythm
        self._rates[meter].update(x["hour"], 1.0 if active else 0.0)

    # -- explaining ----------------------------------------------------------------------
    def _meter_names(self) -> tuple[str, ...]:
        return tuple(m for bit, m in ((1, "water"), (2, "electricity")) if self._seen & bit) or ("water",)

    def describe_one(self, x: dict) -> Finding:
        since_local = x["local"] - (x["ts"] - self._since)
        ratios = self._ratios(x)
        lead = max(_METERS, key=lambda m: ratios[m])  # the meter whose silence says most
        expected = self._expected[lead] + (self._p(x) if lead == x["meter"] else 0.0)
        n = self._intervals[lead] + (lead == x["meter"])
        when = since_local.strftime("%H:%M")
        if since_local.date() != x["local"].date():
            when += " (last evening)" if (x["local"].date() - since_local.date()).days == 1 else f" on {since_local:%a %d %b}"
        hours = (x["ts"] - self._since).total_seconds() / 3600
        meters = self._meter_names()
        what = {("water",): "no water used", ("electricity",): "no appliance switched on or off",
                ("water", "electricity"): "no water used and no appliance switched on or off"}[meters]
        unit = "quarter-hours" if 14 <= x["minutes"] <= 16 else "intervals"
        usual = (f"water is usually used in about {expected:.0f} of the {n} {unit} since then" if lead == "water" else
                 f"an appliance is usually switched in about {expected:.0f} of the {n} {unit} since then")
        surprise = self._surprise[lead] + (self._step(x) if lead == x["meter"] else 0.0)
        return Finding(
            severity=Severity.HIGH,
            summary=f"{what} since {when}, {hours:.1f} h; {usual}",
            episode_start=self._since,
            evidence={"meter": lead, "meters": list(meters), "silent_hours": round(hours, 2),
                      "expected_uses": round(expected, 1), "surprise": round(surprise, 2),
                      "threshold": round(self.threshold(x, lead), 2)},
        )

    def baseline(self):
        return (tuple(self._rates[m].snapshot() for m in _METERS),
                tuple((tuple(round(v, 9) for v in self._normal[m].kept(h)), self._normal[m].n[h])
                      for m in _METERS for h in range(24)),
                round(self._switches.threshold(), 9))
