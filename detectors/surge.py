"""Surge: electricity far above this household's usual level for the time of day, sustained.

For every local hour the detector learns the usual power (river ``EWMean`` of kW). What is above
it is *excess*. A kettle is a second of excess, a heater left on is hours of it, so excess is
summed over several windows (30 min to 4 h by default) and each window sum is compared with the
largest this household's normal life ever produced over that window (a shower followed by the
immersion heater, a Sunday roast), times ``margin``. The first window over its bar flags: a
large fault within half an hour, a smaller one once it has lasted.

>>> from datetime import datetime, timedelta, timezone
>>> from detectors.base import observation
>>> det = SurgeDetector(min_days=2)
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> def x(t, kwh):
...     return observation("electricity", t, kwh, 15, local=t)
>>> for i in range(96 * 7):  # a week: 0.1 kWh per quarter-hour, a 2 kW oven 18:00-18:30
...     t = t0 + timedelta(minutes=15 * (i + 1))
...     det.learn_one(x(t, 0.6 if t.hour == 18 and t.minute in (15, 30) else 0.1))
>>> t = t0 + timedelta(days=7, hours=1)
>>> flags = []
>>> for k in range(8):  # a 2.5 kW heater left on at 01:00
...     t += timedelta(minutes=15)
...     flags.append(det.score_one(x(t, 0.725)) >= 1)
...     det.learn_one(x(t, 0.725))
>>> flags.index(True) + 1  # quarter-hours until flagged
2
>>> print(det.describe_one(x(t, 0.725)).summary)
electricity has been about 2.5 kW above this household's usual for this time of day for 2 h (since 01:00)
"""

from __future__ import annotations

from datetime import timedelta

from detectors.base import Detector, Finding, duration_text, scored_once
from detectors.rhythm import DecayingMaxima, HourlyMean, Steps
from detectors.state import (BOOLEAN, DATETIME, INTEGER, NUMBER, NUMBERS, StateFormatError, list_of, nullable, pair,
                             state_of)
from schemas.anomaly import AnomalyKind, Severity


class SurgeDetector(Detector):
    """
    Parameters
    ----------
    margin
        A window's excess is flagged at ``margin`` × its largest normal excess (the sensitivity knob).
    windows_minutes
        The windows excess is summed over.
    min_kw
        Never flag less than this much sustained excess power.
    fading_factor
        Of the hourly usual power (river ``EWMean``).
    half_life_days
        How fast the largest normal excess is forgotten.
    min_days
        Days of data before it scores at all.
    learn_after_days
        Days before normal excess is learned (the usual power needs a few days first).
    short_margin
        Extra margin for windows of 30 minutes or less, where cooking and laundry live.
    season_fading
        Of the *recent* usual power per hour (the last few days): a heater that has been switched on
        every cold evening this week is this week's usual, whatever the slow average says. It also
        takes in a flagged run once it has ended, so a new season is followed after an evening or
        two; a heater left on through the night stays far above the night's usual.
    """

    kind = AnomalyKind.SURGE
    meters = ("electricity",)

    STATE = {
        "_usual": state_of(HourlyMean), "_season": state_of(HourlyMean),
        "_season_largest": state_of(DecayingMaxima), "_run_kw": list_of(pair(INTEGER, NUMBER)),
        "_to_season": pair(list_of(pair(INTEGER, NUMBER)), nullable(NUMBERS)),
        "_largest": state_of(DecayingMaxima), "_recent": state_of(Steps), "_run_start": DATETIME,
        "_pending": nullable(NUMBERS), "_quiet_until": DATETIME, "_flagged": BOOLEAN, "_first": DATETIME,
    }

    def __init__(self, margin: float = 1.5, windows_minutes: tuple[int, ...] = (30, 60, 120, 240),
                 min_kw: float = 1.0, fading_factor: float = 0.02, half_life_days: float = 90.0,
                 min_days: float = 14.0, learn_after_days: float = 3.0, short_margin: float = 1.4,
                 season_fading: float = 0.15, season_half_life_days: float = 14.0) -> None:
        self.margin = margin
        self.windows_minutes = tuple(windows_minutes)
        self.min_kw = min_kw
        self.fading_factor = fading_factor
        self.half_life_days = half_life_days
        self.min_days = min_days
        self.learn_after_days = learn_after_days
        self.short_margin = short_margin
        self.season_fading = season_fading
        self._usual = HourlyMean(fading_factor)
        self.season_half_life_days = season_half_life_days
        self._season = HourlyMean(season_fading)  # recent days, per hour: follows the heating season
        # this week's largest excess per window, every completed run included (a heater used on cold
        # evenings at whatever hour): forgets in days, so one run left on is not normal for long
        self._season_largest = DecayingMaxima(len(self.windows_minutes), season_half_life_days)
        self._run_kw: list[tuple[int, float]] = []  # (local hour, kW) of the current run of clear excess
        self._to_season: tuple[list, list | None] = ([], None)  # ended runs not yet taken in: (kW by hour, sums)
        self._largest = DecayingMaxima(len(self.windows_minutes), half_life_days)
        self._recent = Steps()  # (minutes, excess kWh), newest last
        self._run_start = None   # data time the current run of clear excess began
        self._pending = None     # the largest window sums of that run, learned if it ends unflagged
        self._quiet_until = None # after a flagged run, nothing is learned until its windows have passed
        self._flagged = False
        self._first = None

    def usual_kw(self, hour: int) -> float:
        """This hour's usual power: the slow average, or this week's if higher (heating season)."""
        return max(self._usual.values[hour], self._season.values[hour])  # HourlyMean.get, read directly: hot

    def _excess(self, x: dict) -> float:
        usual_kwh = self.usual_kw(x["hour"]) * x["minutes"] / 60.0
        return max(x["value"] - usual_kwh, 0.0)

    def _sums(self, x: dict) -> list[float]:
        """Excess summed over each window, ending with ``x`` (one pass back through the recent
        intervals, the windows in increasing order)."""
        recent = () if x["gap"] else self._recent
        total, span = self._excess(x), x["minutes"]
        earlier = reversed(recent)
        step = next(earlier, None)
        by_window = {}
        for window in sorted(self.windows_minutes):
            while step is not None and span + step[0] <= window + 1e-9:
                total += step[1]
                span += step[0]
                step = next(earlier, None)
            by_window[window] = total
        return [by_window[w] for w in self.windows_minutes]

    def threshold(self, x: dict) -> list[float]:
        # the shortest windows are where cooking and laundry live: they need a wider margin
        now = x["t"]
        return [max(self.min_kw * w / 60.0,
                    self.margin * (self.short_margin if w <= 30 else 1.0) * max(m, r))
                for w, m, r in zip(self.windows_minutes, self._largest.values(now), self._season_largest.values(now))]

    @scored_once
    def _scored(self, x: dict) -> tuple[float, list[float]]:
        """The score and the window sums behind it: ``learn_one`` needs both, the monitor asked first."""
        sums = self._sums(x)
        if not self._ready(x) or not any(sums):  # no excess at all (most readings): no bar needed
            return 0.0, sums
        return max(s / t for s, t in zip(sums, self.threshold(x))), sums

    def score_one(self, x: dict) -> float:
        return self._scored(x)[0]

    def learn_one(self, x: dict) -> None:
        if self._first is None:
            self._first = x["ts"]
        score, sums = self._scored(x)
        flagged = score >= 1.0
        self.learned()
        excess = self._excess(x)
        if x["gap"]:
            self._recent.clear()
        learning = self._ready(x, self.learn_after_days) and (self._quiet_until is None or x["ts"] >= self._quiet_until)
        if excess * 60.0 / x["minutes"] >= self.min_kw / 2:
            # inside a run of clear excess: what it reaches is learned only once it ends unflagged,
            # so the first hours of a heater left on never raise the bar it has to clear
            if self._run_start is None:
                self._run_start = x["ts"] - timedelta(minutes=x["minutes"])
                self._pending = [0.0] * len(sums)
            self._pending = [max(p, s) for p, s in zip(self._pending, sums)]
            self._flagged = self._flagged or flagged
            if len(self._run_kw) < 96:
                self._run_kw.append((x["hour"], x["value"] * 60.0 / x["minutes"]))
        else:
            if self._run_start is not None:
                if self._flagged or flagged:
                    # its trailing windows still hold the episode's excess: learn none of them
                    self._quiet_until = x["ts"] + timedelta(minutes=max(self.windows_minutes))
                    learning = False
                elif learning:
                    self._largest.update_all(self._pending, x["t"])
            if learning and not flagged:
                self._largest.update_all(sums, x["t"])
            # this week's usual takes a run in once it is over, flagged or not: if it was the new
            # season's heater, tomorrow evening's is usual; if it was left on all night, only a
            # share of it is, and that fades unless it happens again
            # (taken in below, at the first interval not flagged itself)
            self._to_season = (self._to_season[0] + self._run_kw,
                               self._pending if self._ready(x, self.learn_after_days) else self._to_season[1])
            self._run_start, self._pending, self._flagged = None, None, False
            self._run_kw = []
        self._recent.append(x["minutes"], excess)
        span, longest = self._recent.minutes(), max(self.windows_minutes)
        while span > longest:
            span -= self._recent.popleft()[0]
        if not flagged and (self._to_season[0] or self._to_season[1]):
            runs_kw, sums = self._to_season
            for hour, kw in runs_kw:
                self._season.update(hour, kw)
            self._season_largest.update_all(sums or (), x["t"])
            self._to_season = ([], None)
        if not flagged and not self._flagged and self._run_start is None:
            self._usual.update(x["hour"], x["value"] * 60.0 / x["minutes"])
            self._season.update(x["hour"], x["value"] * 60.0 / x["minutes"])
        elif not flagged and not self._flagged:
            self._usual.update(x["hour"], x["value"] * 60.0 / x["minutes"])

    def describe_one(self, x: dict) -> Finding:
        start = self._run_start or x["ts"] - timedelta(minutes=x["minutes"])
        minutes = (x["ts"] - start).total_seconds() / 60
        usual_kw = self.usual_kw(x["hour"])
        # mean excess power over the episode so far (bounded by the longest window kept)
        span, total = x["minutes"], self._excess(x)
        for m, e in reversed(self._recent):
            if span + m > minutes + 1e-9:
                break
            span, total = span + m, total + e
        excess_kw = total * 60.0 / span
        start_local = x["local"] - (x["ts"] - start)
        return Finding(
            severity=Severity.HIGH if excess_kw >= 2.0 and minutes >= 120 else Severity.MEDIUM,
            summary=(f"electricity has been about {excess_kw:.1f} kW above this household's usual for this time "
                     f"of day for {duration_text(minutes)} (since {start_local:%H:%M})"),
            episode_start=start,
            evidence={"meter": "electricity", "excess_kw": round(excess_kw, 2), "usual_kw": round(usual_kw, 3),
                      "minutes": round(minutes, 1), "score": round(self.score_one(x), 3)},
        )

    def _check_state(self, where: str) -> None:
        windows = len(self.windows_minutes)
        if (len(self._largest) != windows or len(self._season_largest) != windows
                or any(sums is not None and len(sums) != windows for sums in (self._pending, self._to_season[1]))):
            raise StateFormatError(f"{where}: not one number per window")

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if not isinstance(self._recent, Steps):  # pickled when it was a deque of pairs
            self._recent = Steps(self._recent)
        for name in ("_largest", "_season_largest"):
            if isinstance(getattr(self, name), list):  # pickled when it was a list of DecayingMax
                setattr(self, name, DecayingMaxima.of(getattr(self, name)))

    def baseline(self):
        return (self._usual.snapshot(), self._season.snapshot(),
                self._largest.snapshot() + self._season_largest.snapshot())
