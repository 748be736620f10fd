"""Meter offline: one of the household's meters has stopped reporting. For the utility, not welfare.

Two ways to notice, both in data time:

* another meter of the household keeps reporting while this one is silent for longer than
  ``factor`` × its usual interval (at least ``min_minutes``);
* a single-meter household's meter comes back after such a silence (nothing else could have
  told us; the warning then says how long the data was missing).

The silent meter's own detectors see nothing during the gap (missing data is never zero use),
so a dead meter never looks like a person who stopped using water.

>>> from datetime import datetime, timedelta, timezone
>>> from detectors.base import observation
>>> det = MeterOfflineDetector()
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> def x(meter, t):
...     return observation(meter, t, 0.1, 15, local=t)
>>> flags = []
>>> for i in range(1, 20):
...     t = t0 + timedelta(minutes=15 * i)
...     for meter in ("electricity", "water") if i < 8 else ("electricity",):  # water stops after 01:45
...         flags.append((f"{t:%H:%M}", det.score_one(x(meter, t)) >= 1))
...         det.learn_one(x(meter, t))
>>> next(when for when, flagged in flags if flagged)
'02:45'
>>> print(det.describe_one(x("electricity", t0 + timedelta(hours=3))).summary)
the water meter has sent no readings since 01:45 (1.2 h) while the electricity meter keeps reporting
"""

from __future__ import annotations

from datetime import datetime, timedelta

from detectors.base import Detector, Finding
from detectors.state import DATETIME, NUMBER, meter_map
from schemas.anomaly import AnomalyKind, Severity


class MeterOfflineDetector(Detector):
    """
    Parameters
    ----------
    factor
        Silent for ``factor`` × the meter's usual interval …
    min_minutes
        … and at least this long, while another meter reports.
    alone_min_minutes
        A meter that is the household's only one is reported after a gap of at least this long.
    """

    kind = AnomalyKind.METER_OFFLINE
    meters = ("electricity", "water")

    STATE = {"_last": meter_map(DATETIME), "_usual": meter_map(NUMBER)}

    def __init__(self, factor: float = 4.0, min_minutes: float = 60.0, alone_min_minutes: float = 360.0) -> None:
        self.factor = factor
        self.min_minutes = min_minutes
        self.alone_min_minutes = alone_min_minutes
        self._last: dict[str, datetime] = {}     # meter -> data time of its last reading
        self._usual: dict[str, float] = {}       # meter -> usual interval, minutes

    def _limit(self, meter: str, alone: bool) -> float:
        usual = self._usual.get(meter, 15.0)
        return max(self.min_minutes if not alone else self.alone_min_minutes, self.factor * usual)

    def _silences(self, x: dict) -> list[tuple[float, str, float, bool]]:
        """(score, meter, silent minutes, meter came back) for every known meter."""
        out = []
        for meter, last in self._last.items():
            silent = (x["ts"] - last).total_seconds() / 60
            if meter == x["meter"]:
                # its own reading ends the silence: only a lone meter is judged on its return
                if len(self._last) == 1:
                    out.append((silent / self._limit(meter, True), meter, silent, True))
            elif x["ts"] > last:
                out.append((silent / self._limit(meter, False), meter, silent, False))
        return out

    def score_one(self, x: dict) -> float:
        return max((s[0] for s in self._silences(x)), default=0.0)

    def learn_one(self, x: dict) -> None:
        meter, ts = x["meter"], x["ts"]
        last = self._last.get(meter)
        if last is not None and ts > last:
            step = (ts - last).total_seconds() / 60
            usual = self._usual.get(meter)
            # the usual interval follows ordinary steps only, so an outage does not become usual
            if usual is None:
                self._usual[meter] = step
            elif step <= 3 * usual:
                self._usual[meter] = 0.9 * usual + 0.1 * step
        if last is None or ts > last:
            self._last[meter] = ts

    def describe_one(self, x: dict) -> Finding:
        score, meter, silent, came_back = max(self._silences(x), default=(0.0, x["meter"], 0.0, False))
        since = self._last.get(meter, x["ts"])
        since_local = x["local"] - (x["ts"] - since)
        if came_back:
            summary = (f"the {meter} meter sent no readings from {since_local:%a %H:%M} for {silent / 60:.1f} h; "
                       f"it is reporting again")
        else:
            summary = (f"the {meter} meter has sent no readings since {since_local:%H:%M} ({silent / 60:.1f} h) "
                       f"while the {x['meter']} meter keeps reporting")
        return Finding(
            severity=Severity.INFO,
            summary=summary,
            episode_start=since + timedelta(minutes=self._usual.get(meter, 15.0)),
            evidence={"meter": meter, "silent_minutes": round(silent, 1),
                      "usual_interval_minutes": round(self._usual.get(meter, 15.0), 1), "reporting_again": came_back},
        )

    def offline_meter(self, x: dict) -> str:
        return max(self._silences(x), default=(0.0, x["meter"], 0.0, False))[1]

    def baseline(self):
        return tuple(sorted((m, round(u, 6)) for m, u in self._usual.items()))
