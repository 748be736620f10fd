"""Continuous flow: water in every interval for longer than this household ever does.

A tap left on, a leak, or someone collapsed in the shower all look the same on the meter: no
interval without water, at a steady rate. Normal life has runs of wet intervals too (a long
morning routine, washing up after dinner) but they are made of separate uses, so their *floor*
— the smallest flow in the run — is low. The detector therefore looks at several windows (6 to 16
intervals by default) and, for each, at the floor of the flow over it: the lowest L/h of any
interval in the window (zero if any interval was dry), discounted when the window is lumpy
(few of its intervals near the floor: separate uses, not one flow). It learns the highest floor this
household's normal life reached over each window, forgetting slowly. A window whose floor is
``margin`` times higher flags: a strong flow within an hour, a trickle once the run is longer
than any normal run (a normal floor of zero makes any flow over that window enough).

>>> from datetime import datetime, timedelta, timezone
>>> from detectors.base import observation
>>> det = ContinuousFlowDetector(min_days=2)
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> def x(t, litres):
...     return observation("water", t, litres, 15, local=t)
>>> for i in range(96 * 7):  # a week of mornings with 1-9 litres in four intervals in a row
...     t = t0 + timedelta(minutes=15 * (i + 1))
...     det.learn_one(x(t, 1.0 + 8 * (i % 2) if t.hour == 7 else 0.0))
>>> t = t0 + timedelta(days=7, hours=14)
>>> flags = []
>>> for k in range(8):  # a tap left on at 14:00, 3 litres every quarter-hour
...     t += timedelta(minutes=15)
...     flags.append(det.score_one(x(t, 3.0)) >= 1)
...     det.learn_one(x(t, 3.0))
>>> flags.index(True) + 1  # quarter-hours until flagged
6
>>> print(det.describe_one(x(t + timedelta(minutes=15), 3.0)).summary)
water has run in every interval for 2.2 h since 14:00 (about 27 litres, at least 12 L/h throughout); its water has never run this steadily for 1.5 h before
"""

from __future__ import annotations

from datetime import timedelta

from detectors.base import Detector, Finding, duration_text, scored_once
from detectors.rhythm import DecayingMaxima, Steps
from detectors.state import BOOLEAN, DATETIME, NUMBER, NUMBERS, StateFormatError, nullable, state_of
from schemas.anomaly import AnomalyKind, Severity


class ContinuousFlowDetector(Detector):
    """
    Parameters
    ----------
    margin
        A window's floor flags at ``margin`` × its highest normal floor (the sensitivity knob).
    windows
        The windows a floor is taken over, in intervals: with quarter-hourly readings 1.5 to 4 h,
        with hourly ones 6 to 16 h (hourly totals of a busy home are rarely dry, so a run must be
        longer to mean anything).
    min_litres_per_hour
        Never flag a floor below this (a dripping tap is not a welfare matter).
    half_life_days
        How fast the highest normal floors are forgotten.
    min_days
        Days of data before it scores at all.
    learn_after_days
        Days before normal floors are learned.
    ratchet
        A flagged run is not learned, but when it ends it raises every window's bar by this factor.
    steady_share, steady_ratio
        A window counts fully when at least ``steady_share`` of its intervals are near its floor
        (within ``steady_ratio`` ×); a lumpier window's floor is scaled down in proportion.
    """

    kind = AnomalyKind.CONTINUOUS_FLOW
    meters = ("water",)

    STATE = {
        "_highest": state_of(DecayingMaxima), "_run": state_of(Steps), "_run_start": DATETIME,
        "_run_minutes": NUMBER, "_run_litres": NUMBER, "_pending": nullable(NUMBERS), "_flagged": BOOLEAN,
        "_first": DATETIME,
    }

    def __init__(self, margin: float = 2.0, windows: tuple[int, ...] = (6, 8, 10, 12, 16),
                 min_litres_per_hour: float = 8.0, half_life_days: float = 90.0, min_days: float = 14.0,
                 learn_after_days: float = 0.0, ratchet: float = 1.15, steady_share: float = 0.75,
                 steady_ratio: float = 2.5) -> None:
        self.margin = margin
        self.windows = tuple(windows)
        self.min_litres_per_hour = min_litres_per_hour
        self.half_life_days = half_life_days
        self.min_days = min_days
        self.learn_after_days = learn_after_days
        self.ratchet = ratchet
        self.steady_share = steady_share
        self.steady_ratio = steady_ratio
        self._highest = DecayingMaxima(len(self.windows), half_life_days)
        self._run = Steps()  # current wet run: (minutes, litres), newest last
        self._run_start = None    # data time the current wet run began
        self._run_minutes = 0.0
        self._run_litres = 0.0
        self._pending = None      # highest floors of the current run, learned if it ends unflagged
        self._flagged = False
        self._first = None

    def _floors(self, x: dict) -> list[float]:
        """Lowest flow (L/h) over each window ending with ``x``; 0 if the run is shorter."""
        if not x["active"]:
            return [0.0] * len(self.windows)
        run = () if x["gap"] else self._run
        floors = []
        rates = [x["value"] * 60.0 / x["minutes"]]
        items = reversed(run)
        for window in self.windows:
            while len(rates) < window:
                item = next(items, None)
                if item is None:
                    break
                minutes, litres = item
                rates.append(litres * 60.0 / minutes)
            if len(rates) < window:
                floors.append(0.0)
                continue
            # a leak is steady: most intervals sit near the floor. A busy hour is lumpy: a few
            # small uses set the floor, the rest are far above it. Lumpy windows count less.
            floor = min(rates)
            steady = sum(r <= self.steady_ratio * floor for r in rates) / len(rates)
            floors.append(floor * min(1.0, steady / self.steady_share))
        return floors

    def threshold(self, x: dict) -> list[float]:
        return [max(self.min_litres_per_hour, self.margin * m) for m in self._highest.values(x["t"])]

    @scored_once
    def score_one(self, x: dict) -> float:
        if not x["active"] or not self._ready(x):
            return 0.0
        floors = self._floors(x)
        if not any(floors):  # no run as long as the shortest window: no bar needed
            return 0.0
        return max(f / t for f, t in zip(floors, self.threshold(x)))

    def learn_one(self, x: dict) -> None:
        if self._first is None:
            self._first = x["ts"]
        flagged = self.score_one(x) >= 1.0
        self.learned()
        floors = self._floors(x)
        if (not x["active"] or x["gap"]) and self._run_start is not None:
            # a run just ended: its floors were normal unless it was flagged
            if self._pending is not None and self._ready(x, self.learn_after_days):
                if not self._flagged:
                    self._highest.update_all(self._pending, x["t"])
                elif self.ratchet > 1:
                    self._highest.nudge_all([limit / self.margin for limit in self.threshold(x)], self.ratchet, x["t"])
            self._pending = None
        if x["active"]:
            self._pending = floors if self._pending is None or x["gap"] else [
                max(p, f) for p, f in zip(self._pending, floors)]
        if not x["active"] or x["gap"]:
            self._run.clear()
            self._run_start, self._run_minutes, self._run_litres, self._flagged = None, 0.0, 0.0, False
        if x["active"]:
            if self._run_start is None:
                self._run_start = x["ts"] - timedelta(minutes=x["minutes"])
            self._run.append(x["minutes"], x["value"])
            self._run_minutes += x["minutes"]
            self._run_litres += x["value"]
            while len(self._run) >= max(self.windows):
                self._run.popleft()
            self._flagged = self._flagged or flagged

    def describe_one(self, x: dict) -> Finding:
        fresh = x["gap"] or self._run_start is None
        start = x["ts"] - timedelta(minutes=x["minutes"]) if fresh else self._run_start
        minutes = x["minutes"] + (0.0 if fresh else self._run_minutes)
        litres = x["value"] + (0.0 if fresh else self._run_litres)
        floors, limits = self._floors(x), self.threshold(x)
        i = max(range(len(floors)), key=lambda k: floors[k] / limits[k])
        start_local = x["local"] - (x["ts"] - start)
        usual = self._highest.get(i, x["t"])
        window = self.windows[i] * x["minutes"]
        return Finding(
            severity=Severity.HIGH if minutes >= 180 else Severity.MEDIUM,
            summary=(f"water has run in every interval for {duration_text(minutes)} since {start_local:%H:%M} "
                     f"(about {litres:.0f} litres, at least {floors[i]:.0f} L/h throughout); "
                     + (f"its water has never run this steadily for {duration_text(window)} before"
                        if usual == 0 else
                        f"its steadiest normal {duration_text(window)} kept up {usual:.0f} L/h")),
            episode_start=start,
            evidence={"meter": "water", "run_minutes": round(minutes, 1), "litres": round(litres, 1),
                      "window_minutes": round(window, 1), "floor_litres_per_hour": round(floors[i], 2),
                      "usual_floor_litres_per_hour": round(usual, 2)},
        )

    def _check_state(self, where: str) -> None:
        windows = len(self.windows)
        if len(self._highest) != windows or (self._pending is not None and len(self._pending) != windows):
            raise StateFormatError(f"{where}: not one number per window")

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if not isinstance(self._run, Steps):  # pickled when it was a deque of pairs
            self._run = Steps(self._run)
        if isinstance(self._highest, list):  # pickled when it was a list of DecayingMax
            self._highest = DecayingMaxima.of(self._highest)

    def baseline(self):
        return self._highest.snapshot()
