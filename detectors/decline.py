"""Decline: daily activity sustainedly below this household's own level, over weeks.

Each complete local day with the household at home (some use, ``min_coverage`` of the day
reported) gives a count of intervals with use. A fast and a slow :class:`FadingMean` follow that
count; the day is *low* when the fast one is below ``ratio`` × the slow one. ``sustain_days``
low days in a row are a warning: someone who is slowly doing less (frailty, depression, illness)
rather than a bad day. Days away (no use at all) are skipped, not counted as zero.

>>> from datetime import datetime, timedelta, timezone
>>> from detectors.base import observation
>>> det = DeclineDetector()
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> flagged_on = None
>>> for d in range(120):
...     every = 2 if d < 70 else 6  # from day 70 water is used a third as often
...     for i in range(96):
...         t = t0 + timedelta(days=d, minutes=15 * (i + 1))
...         x = observation("water", t, 1.0 if 7 <= t.hour < 22 and i % every == 0 else 0.0, 15, local=t)
...         if flagged_on is None and det.score_one(x) >= 1:
...             flagged_on = d
...         det.learn_one(x)
>>> 70 < flagged_on < 100
True
>>> det.describe_one(x).summary.startswith("less activity for")
True
"""

from __future__ import annotations

from datetime import date, datetime, time

from detectors.base import Detector, Finding, scored_once
from detectors.rhythm import FadingMean
from detectors.state import DATE, INTEGER, NUMBER, state_of
from schemas.anomaly import AnomalyKind, Severity


class DeclineDetector(Detector):
    """
    Parameters
    ----------
    meter
        Whose uses count as activity.
    ratio
        A day is low when recent activity is below ``ratio`` × the household's long-run level.
    sustain_days
        Low days in a row before a warning.
    fast, slow
        Fading factors of the recent and long-run daily levels (:class:`~detectors.rhythm.FadingMean`).
    min_history_days
        Complete days needed before it scores at all.
    min_coverage
        Share of a day that must be reported for the day to count.
    """

    kind = AnomalyKind.DECLINE
    meters = ("water",)

    STATE = {
        "_recent": state_of(FadingMean), "_usual": state_of(FadingMean), "_days": INTEGER, "_low_days": INTEGER,
        "_low_since": DATE, "_day": DATE, "_active": INTEGER, "_minutes": NUMBER,
    }

    def __init__(self, meter: str = "water", ratio: float = 0.6, sustain_days: int = 10, fast: float = 0.15,
                 slow: float = 0.02, min_history_days: int = 42, min_coverage: float = 0.8) -> None:
        self.meter = meter
        self.ratio = ratio
        self.sustain_days = sustain_days
        self.fast = fast
        self.slow = slow
        self.min_history_days = min_history_days
        self.min_coverage = min_coverage
        self.meters = (meter,)
        self._recent = FadingMean(fast)
        self._usual = FadingMean(slow)
        self._days = 0
        self._low_days = 0
        self._low_since: date | None = None
        self._day: date | None = None
        self._active = 0
        self._minutes = 0.0

    def _close(self, x: dict) -> tuple[int, int, date | None, float, float, bool]:
        """The state after closing the current day, when ``x`` starts a new one (pure)."""
        days, low, since = self._days, self._low_days, self._low_since
        recent, usual = self._recent.get(), self._usual.get()
        counted = (self._day is not None and self._day != x["day"] and self._active > 0
                   and self._minutes >= self.min_coverage * 1440)
        if counted:
            recent = self._recent.peek(float(self._active))
            if days >= self.min_history_days and recent < self.ratio * usual:
                low += 1
                since = since or self._day
            else:
                low, since = 0, None
            days += 1
        return days, low, since, recent, usual, counted

    @scored_once
    def score_one(self, x: dict) -> float:
        days, low, _, recent, usual, _ = self._close(x)
        if days < self.min_history_days or usual <= 0:
            return 0.0
        return low / self.sustain_days

    def learn_one(self, x: dict) -> None:
        flagged = self.score_one(x) >= 1.0
        self.learned()
        if self._day != x["day"]:
            days, low, since, _, _, counted = self._close(x)
            if counted:
                self._recent.update(float(self._active))
                if not flagged and low == 0:
                    self._usual.update(float(self._active))  # low days are not learned as normal
            self._days, self._low_days, self._low_since = days, low, since
            self._day, self._active, self._minutes = x["day"], 0, 0.0
        self._active += x["active"]
        self._minutes += x["minutes"]

    def describe_one(self, x: dict) -> Finding:
        days, low, since, recent, usual, _ = self._close(x)
        since = since or x["day"]
        return Finding(
            severity=Severity.LOW,
            summary=(f"less activity for {low} days in a row: {self.meter} used in about {recent:.0f} intervals a day "
                     f"lately, against {usual:.0f} usually"),
            episode_start=datetime.combine(since, time(0), tzinfo=x["local"].tzinfo).astimezone(x["ts"].tzinfo),
            evidence={"meter": self.meter, "low_days": low, "recent_daily_uses": round(recent, 1),
                      "usual_daily_uses": round(usual, 1)},
        )

    def baseline(self):
        return round(self._usual.get(), 9)

