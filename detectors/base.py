"""What every detector shares: the observation it reads and the finding it reports.

Detectors follow river's anomaly-detector protocol (they subclass :class:`river.base.AnomalyDetector`,
so ``clone()`` and the constructor-parameter ``repr`` come for free):

* ``score_one(x)`` — how anomalous the current episode is *including* ``x``, relative to this
  household's learned threshold: 1.0 is the threshold. Pure: it changes nothing.
* ``learn_one(x)`` — advance the running episode and, unless ``x`` is flagged (score ≥ 1), learn it
  as normal. River's ``protect_anomaly_detector`` idea, built in: a fall is not learned as a nap.
* ``describe_one(x)`` — called when a warning is raised: severity, a sentence for a community
  worker, the data time the episode began, and the numbers behind the sentence.

``x`` is a plain dict built by :class:`detectors.monitor.HouseholdMonitor` from one validated
reading (see :func:`observation`); detectors never mutate it.
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from river import base

from detectors.state import Codec, StateFormatError, boolean, entry, fail, number, shared, text
from schemas.anomaly import AnomalyKind, Severity


@dataclass(frozen=True)
class Finding:
    severity: Severity
    summary: str
    episode_start: datetime
    evidence: dict[str, Any] = field(default_factory=dict)


def scored_once(score_one):
    """``score_one`` remembered for the reading just scored: the monitor asks for the score and then
    ``learn_one`` asks again for the same ``x`` with the same state. The memo is not state (it is
    left out of pickles and is dropped by :meth:`Detector.learned`), so ``score_one`` stays pure."""
    @functools.wraps(score_one)
    def remembered(self, x: dict) -> float:
        memo = self._memo
        # the same dict, unchanged (the memo holds it, so its id cannot be reused meanwhile)
        if memo is not None and memo[0] is x and memo[1] == x["t"] and memo[2] == x["value"]:
            return memo[3]
        score = score_one(self, x)
        self._memo = (x, x["t"], x["value"], score)
        return score
    return remembered


class Detector(base.AnomalyDetector):
    """A per-household detector for one kind, reading the readings of ``meters``."""

    # Caches live in slots, not in the instance dict: a key added to it after construction (in whichever
    # order a household's readings add them) can turn the compact dict all instances share the keys of into
    # one of its own, ~1.3 KB more per detector of every live monitor.
    __slots__ = ("_memo", "_first_t")

    def __new__(cls, *args, **kwargs):
        detector = super().__new__(cls)
        for name in cls.CACHES:  # unset caches (also for a copy or an unpickled detector)
            setattr(detector, name, None)
        return detector

    def learned(self) -> None:
        """Called by ``learn_one`` once it has its score and before it changes anything."""
        self._memo = None

    def __getstate__(self):
        return self.__dict__.copy()  # the caches are in slots: never pickled

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)

    #: What a detector learns, attribute -> how it is written (see :mod:`detectors.state`). Every other
    #: attribute is a constructor parameter (stored under its own name) or a cache (:data:`CACHES`).
    STATE: dict[str, Codec] = {}
    #: Worked out again when needed: never stored.
    CACHES: tuple[str, ...] = ("_memo", "_first_t")

    @classmethod
    def _param_defaults(cls) -> dict[str, Any]:
        params = cls.__dict__.get("_param_defaults_")
        if params is None:
            params = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                      if name != "self"}
            cls._param_defaults_ = params
        return params

    def to_state(self) -> dict:
        """Constructor parameters and what was learned, as JSON values."""
        return {"params": {name: list(v) if isinstance(v := getattr(self, name), tuple) else v
                           for name in self._param_defaults()},
                "learned": {name: codec.encode(getattr(self, name)) for name, codec in self.STATE.items()}}

    @classmethod
    def from_state(cls, state: Any, where: str | None = None) -> "Detector":
        where = where or cls.__name__
        params, learned = entry(state, "params", where), entry(state, "learned", where)
        detector = cls(**cls._checked_params(params, where))
        for name, codec in cls.STATE.items():
            setattr(detector, name, codec.decode(entry(learned, name, where + ".learned"), f"{where}.{name}"))
        detector._check_state(where)
        return detector

    def _check_state(self, where: str) -> None:
        """Called by :meth:`from_state` once every field is read: what no field's codec can check alone."""

    @classmethod
    def _checked_params(cls, params: Any, where: str) -> dict[str, Any]:
        """A record's constructor parameters, checked. Every household has the same ones: they are checked once
        and the same objects are given to every detector (keyed by their exact text: 90 and 90.0 differ)."""
        defaults = cls._param_defaults()
        if not isinstance(params, dict) or set(params) != set(defaults):
            raise StateFormatError(f"{where}.params: expected exactly {sorted(defaults)}")
        try:
            key = (cls, repr(params))
        except RecursionError:  # lists nested a thousand deep: not parameters
            raise StateFormatError(f"{where}.params: not numbers") from None
        checked = _CHECKED_PARAMS.get(key)
        if checked is None:
            checked = {name: _param(value, defaults[name], f"{where}.params.{name}") for name, value in params.items()}
            if len(_CHECKED_PARAMS) < _MAX_CHECKED_PARAMS and len(key[1]) <= 4096:  # bounded, also in size
                _CHECKED_PARAMS[key] = checked
        return checked

    kind: AnomalyKind
    meters: tuple[str, ...] = ()
    min_days: float = 0.0
    _first = None  # data time of the first reading learned; set by each detector's learn_one

    def _ready(self, x: dict, days: float | None = None) -> bool:
        """At least ``days`` (default ``min_days``) of data learned before ``x``."""
        days = self.min_days if days is None else days
        first = self._first_t  # _first in POSIX seconds, worked out once (not state)
        if first is None:
            if self._first is None:
                return False
            first = self._first_t = self._first.timestamp()
        return x["t"] - first >= days * 86400

    def describe_one(self, x: dict) -> Finding:  # pragma: no cover - every detector overrides it
        raise NotImplementedError

    def baseline(self) -> Any:
        """What has been learned as normal (compared by the conformance suite)."""
        raise NotImplementedError


#: (detector class, the text of a record's params) -> those params checked (see Detector._checked_params)
_CHECKED_PARAMS: dict[tuple[type, str], dict[str, Any]] = {}
_MAX_CHECKED_PARAMS = 256


def _param(value: Any, default: Any, where: str) -> Any:
    """A constructor parameter of the type of its default (one object for all households with the same value)."""
    if isinstance(default, bool):
        return boolean(value, where)
    if isinstance(default, tuple):
        if type(value) is not list:
            raise fail(where, "a list", value)
        return shared(tuple(number(v, where) for v in value))
    if isinstance(default, str):
        return sys.intern(text(value, where))
    return shared(number(value, where))


_HALF_DAY = timedelta(hours=12)


def observation(meter: str, ts: datetime, value: float, minutes: float, *, local: datetime, gap: bool = False) -> dict:
    """The ``x`` a detector reads: ``value`` consumed in the ``minutes`` before ``ts``.

    ``local`` is ``ts`` in the household's time zone; ``hour`` is the local hour of the interval's
    middle (where the consumption most likely happened). ``gap`` marks the first reading after
    missing data: its ``minutes`` are the usual interval, the missing stretch is unknown, not zero.

    >>> from datetime import timezone
    >>> t = datetime(2026, 1, 5, 7, 15, tzinfo=timezone.utc)
    >>> x = observation("water", t, 3.5, 15, local=t)
    >>> x["hour"], x["active"], x["night"]
    (7, True, datetime.date(2026, 1, 4))
    """
    mid = local - timedelta(minutes=minutes / 2)
    return {
        "meter": meter,
        "ts": ts,
        "t": ts.timestamp(),  # POSIX seconds: what the decaying maxima read
        "value": value,
        "active": value > 0,
        "minutes": minutes,
        "local": local,
        "hour": mid.hour,
        # nights run noon to noon, named by the evening's date
        "night": (mid - _HALF_DAY).date(),
        "day": mid.date(),
        "gap": gap,
    }


def duration_text(minutes: float) -> str:
    """``45 min``, ``2 h``, ``1.5 h``: how long, for a sentence.

    >>> duration_text(45), duration_text(120), duration_text(95)
    ('45 min', '2 h', '1.6 h')
    """
    if minutes < 60:
        return f"{minutes:.0f} min"
    h = minutes / 60
    return f"{h:.0f} h" if abs(h - round(h)) < 0.05 else f"{h:.1f} h"
