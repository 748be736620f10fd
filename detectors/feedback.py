"""Feedback from community staff turns one household's sensitivity per kind, a little and within bounds.

After checking on a household, staff record an outcome for the warning's kind. The rules, and why:

* ``false_alarm`` and ``benign_explained`` are *not needed*: either way the visit found nobody in need.
* 2 not-needed in a row (since the last needed one) multiply the kind's sensitivity by 0.85, then
  the count restarts: one can be chance, two are a pattern; small steps, so trust changes slowly.
* never below 0.5 (``SENSITIVITY_BOUNDS``, via ``adjust_sensitivity``): however many false alarms,
  a strong anomaly must still warn.
* ``confirmed_emergency`` and ``needed_help`` never lower, reset the count and restore a lowered
  kind to 1.0: the lowered threshold nearly missed someone.
* ``not_home`` changes nothing and neither counts nor resets; for ``inactivity`` and ``decline`` it
  proposes ``away_mode``: an empty home explains the quiet, it says nothing about the detector.
* ``meter_fault`` changes nothing: it is about the meter, not the person.
* an unknown kind, or ``meter_offline``, changes nothing: no welfare sensitivity to turn.
* a key already applied changes nothing: a redelivered ack must not count twice. The last 64 keys
  are kept, as 8-byte digests (64 keys of up to 200 characters would be most of the state budget).

Deterministic, no clock and no I/O: the same feedback in the same order gives the same sensitivities.

>>> from detectors.monitor import HouseholdMonitor
>>> m = HouseholdMonitor("hh-000001")
>>> for key, outcome in [("t1", "false_alarm"), ("t1", "false_alarm"), ("t2", "benign_explained"),
...                      ("t3", "not_home"), ("t4", "needed_help")]:
...     print(m.record_feedback("inactivity", outcome, key).reason)
false_alarm for inactivity: 1 of 2 not needed before sensitivity is lowered
key already applied: nothing changed
2 not needed in a row for inactivity: sensitivity 1.00 -> 0.85
not_home for inactivity: sensitivity unchanged, away mode proposed
needed_help for inactivity: sensitivity restored 0.85 -> 1.00
>>> m.record_feedback("decline", "not_home", "t5").as_dict()
{'kind': 'decline', 'outcome': 'not_home', 'duplicate': False, 'sensitivity_before': 1.0,
 'sensitivity_after': 1.0, 'proposal': 'away_mode',
 'reason': 'not_home for decline: sensitivity unchanged, away mode proposed'}
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from detectors.state import StateFormatError, array, entry, integer, text
from schemas.anomaly import WELFARE_KINDS, AnomalyKind

if TYPE_CHECKING:
    from detectors.monitor import HouseholdMonitor

NOT_NEEDED = frozenset({"false_alarm", "benign_explained"})
NEEDED = frozenset({"confirmed_emergency", "needed_help"})
#: Not-needed outcomes in a row that lower a kind's sensitivity, and by how much.
LOWER_AFTER, LOWER_BY = 2, 0.85
#: Kinds an empty home explains.
AWAY_KINDS = frozenset({AnomalyKind.INACTIVITY, AnomalyKind.DECLINE})
KEEP_KEYS = 64


@dataclass(frozen=True)
class FeedbackEffect:
    """What one feedback did, for the acknowledgement."""

    kind: str
    outcome: str
    duplicate: bool
    sensitivity_before: float
    sensitivity_after: float
    proposal: str | None
    reason: str

    def as_dict(self) -> dict:
        return asdict(self) | {"sensitivity_before": round(self.sensitivity_before, 4),
                               "sensitivity_after": round(self.sensitivity_after, 4)}


class FeedbackLog:
    """One household's feedback memory: not-needed outcomes per kind since the last needed one, and
    the last :data:`KEEP_KEYS` keys applied. Lives on the monitor, so it is saved with it."""

    __slots__ = ("streaks", "keys")

    def __init__(self) -> None:
        self.streaks: dict[AnomalyKind, int] = {}
        # oldest first, at most KEEP_KEYS: a list (56 bytes empty; a deque is 760 bytes even when empty,
        # and most households never get feedback)
        self.keys: list[bytes] = []

    def __setstate__(self, state) -> None:  # pickled when keys were a deque
        _, slots = state
        self.streaks, self.keys = slots["streaks"], list(slots["keys"])[-KEEP_KEYS:]

    def to_state(self) -> dict:
        return {"streaks": {kind.value: n for kind, n in self.streaks.items()}, "keys": [k.hex() for k in self.keys]}

    @classmethod
    def from_state(cls, state, where: str = "feedback") -> "FeedbackLog":
        log = cls()
        streaks = entry(state, "streaks", where)
        if not isinstance(streaks, dict):
            raise StateFormatError(f"{where}.streaks: expected an object")
        try:
            log.streaks = {AnomalyKind(text(k, where)): integer(n, where) for k, n in streaks.items()}
            keys = array(entry(state, "keys", where), where + ".keys")
            log.keys = [bytes.fromhex(text(k, where)) for k in keys][-KEEP_KEYS:]
        except ValueError as exc:
            if isinstance(exc, StateFormatError):
                raise
            raise StateFormatError(f"{where}: not a kind or not a hex key") from None
        return log

    def record(self, monitor: HouseholdMonitor, kind: str, outcome: str, key: str) -> FeedbackEffect:
        """Apply one outcome to ``monitor.sensitivity`` by the rules above.

        Parameters
        ----------
        monitor
            The household's: its ``sensitivity`` is turned, lowered only by its bounded ``adjust_sensitivity``.
        kind
            The warning's :class:`~schemas.anomaly.AnomalyKind` value; anything else changes nothing.
        outcome
            The ticket's ``Outcome`` value (``dispatch.tickets.Outcome``).
        key
            The feedback's idempotency key: a key among the last :data:`KEEP_KEYS` changes nothing.

        Returns
        -------
        FeedbackEffect
            Sensitivity before and after, any proposal, and a sentence for the acknowledgement.
        """
        kind, outcome = next((k for k in AnomalyKind if k == kind), str(kind)), str(outcome)
        before = monitor.sensitivity.get(kind, 1.0)

        def effect(reason: str, proposal: str | None = None, duplicate: bool = False) -> FeedbackEffect:
            return FeedbackEffect(str(kind), outcome, duplicate, before, monitor.sensitivity.get(kind, 1.0),
                                  proposal, reason)

        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        if digest in self.keys:
            return effect("key already applied: nothing changed", duplicate=True)
        self.keys.append(digest)
        if len(self.keys) > KEEP_KEYS:
            del self.keys[0]
        if kind not in WELFARE_KINDS:
            return effect(f"{kind} is about data, not welfare: nothing changed" if isinstance(kind, AnomalyKind)
                          else f"unknown kind {kind!r}: nothing changed")
        if outcome in NEEDED:
            self.streaks.pop(kind, None)
            if before >= 1.0:
                return effect(f"{outcome} for {kind}: sensitivity stays {before:.2f}")
            monitor.sensitivity[kind] = 1.0
            return effect(f"{outcome} for {kind}: sensitivity restored {before:.2f} -> 1.00")
        if outcome in NOT_NEEDED:
            count = self.streaks[kind] = self.streaks.get(kind, 0) + 1
            if count < LOWER_AFTER:
                return effect(f"{outcome} for {kind}: {count} of {LOWER_AFTER} not needed before sensitivity "
                              "is lowered")
            del self.streaks[kind]
            after = monitor.adjust_sensitivity(kind, LOWER_BY)
            return effect(f"{count} not needed in a row for {kind}: sensitivity {before:.2f} -> {after:.2f}"
                          + (" (its lower bound)" if after == before else ""))
        if outcome == "not_home":
            away = kind in AWAY_KINDS
            return effect(f"not_home for {kind}: sensitivity unchanged" + (", away mode proposed" if away else ""),
                          "away_mode" if away else None)
        if outcome == "meter_fault":
            return effect(f"meter_fault for {kind}: about the meter, sensitivity unchanged")
        return effect(f"unknown outcome {outcome!r}: nothing changed")
