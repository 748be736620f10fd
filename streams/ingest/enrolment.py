"""Which household a utility's meter belongs to, at a given time (pure; no Kafka here).

Built from the roster (``households.roster``: each :class:`~schemas.households.Household`'s
``meters``) and kept up to date record by record: a household's new entry replaces all its
enrolments, a tombstone removes them. ``streams/enrolment.py`` feeds it on every worker.

A meter moved to another household takes effect from its ``since``: when several enrolments
cover a reading's time, the one with the latest ``since`` wins (no ``since`` is the earliest).
Two households enrolling the same meter from the same time is a conflict, and a conflict maps
to nobody: never guess whose reading it is.

>>> from schemas.households import Household
>>> def home(hh, meters):
...     return Household(household_id=hh, community="c", staff={"primary_worker": "w-1"}, meters=meters)
>>> e = Enrolment([home("hh-1", "aqua:WM-7:water"), home("hh-2", "aqua:WM-7:water@2026-03-01T00:00:00Z")])
>>> t = lambda text: datetime.fromisoformat(text)
>>> e.lookup("aqua", "WM-7", t("2026-02-28T23:59:00Z")), e.lookup("aqua", "WM-7", t("2026-03-01T00:00:00Z"))
(MeterMatch(household_id='hh-1', kind=<Meter.WATER: 'water'>), MeterMatch(household_id='hh-2', kind=<Meter.WATER: 'water'>))
>>> sorted(e.served_by("aqua")), e.lookup("grid", "WM-7", t("2026-03-01T00:00:00Z"))
(['hh-1', 'hh-2'], None)
>>> e.put("hh-2", None)  # tombstone: hh-2 left the roster
>>> e.lookup("aqua", "WM-7", t("2026-03-02T00:00:00Z")).household_id
'hh-1'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from schemas.dead_letter import RejectReason
from schemas.households import EnrolledMeter, Household
from schemas.readings import Meter, MeterReading, MeterRegisterReading
from streams.ingest.parse import Rejection

_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class MeterMatch:
    household_id: str
    kind: Meter


class Enrolment:
    """Enrolled meters of every household on the roster, indexed by ``(utility_id, meter_id)``."""

    def __init__(self, households: Iterable[Household] = ()) -> None:
        self._of_household: dict[str, tuple[EnrolledMeter, ...]] = {}
        self._by_meter: dict[tuple[str, str], list[tuple[EnrolledMeter, str]]] = defaultdict(list)
        self._households_of_utility: dict[str, dict[str, int]] = defaultdict(dict)  # utility -> household -> meters
        self._count = 0
        for household in households:
            self.put(household.household_id, household)

    # -- updates -------------------------------------------------------------------------------
    def put(self, household_id: str, household: Household | None) -> None:
        """A roster record: the household's entry (its meters replace the ones it had) or None (a tombstone)."""
        old = self._of_household.pop(household_id, ())
        self._count -= len(old)
        for meter in old:
            key = (meter.utility_id, meter.meter_id)
            entries = [entry for entry in self._by_meter[key] if entry[1] != household_id]
            if entries:
                self._by_meter[key] = entries
            else:
                del self._by_meter[key]
            served = self._households_of_utility[meter.utility_id]
            served[household_id] -= 1
            if not served[household_id]:
                del served[household_id]
                if not served:
                    del self._households_of_utility[meter.utility_id]
        meters = household.meters if household is not None else ()
        if not meters:
            return
        self._of_household[household_id] = meters
        self._count += len(meters)
        for meter in meters:
            self._by_meter[(meter.utility_id, meter.meter_id)].append((meter, household_id))
            served = self._households_of_utility[meter.utility_id]
            served[household_id] = served.get(household_id, 0) + 1

    # -- questions -----------------------------------------------------------------------------
    def lookup(self, utility_id: str, meter_id: str, ts: datetime) -> MeterMatch | None:
        """The household ``utility_id``'s meter ``meter_id`` belongs to at ``ts``, with the meter's kind;
        None if no household has it then, or two have it from the same time."""
        best: tuple[datetime, str, Meter] | None = None
        conflict = False
        for meter, household_id in self._by_meter.get((utility_id, meter_id), ()):
            if not meter.covers(ts):
                continue
            since = meter.since or _EARLIEST
            if best is None or since > best[0]:
                best, conflict = (since, household_id, meter.kind), False
            elif since == best[0] and household_id != best[1]:
                conflict = True
        if best is None or conflict:
            return None
        return MeterMatch(best[1], best[2])

    def served_by(self, utility_id: str) -> set[str]:
        """Households with at least one meter of ``utility_id`` (at any time)."""
        return set(self._households_of_utility.get(utility_id, ()))

    def utility_of(self, household_id: str, kind: Meter, ts: datetime, *, claimed: str | None = None) -> str | None:
        """The utility whose meter of ``kind`` the household has enrolled at ``ts`` (``claimed`` if it is one of
        them, else the latest ``since``), or None. For metrics: the label of a reading's utility.

        >>> from schemas.households import Household
        >>> e = Enrolment([Household(household_id="hh-1", community="c", staff={"primary_worker": "w-1"},
        ...                          meters="aqua:WM-7:water;grid:E-1:electricity")])
        >>> ts = datetime(2026, 3, 1, tzinfo=timezone.utc)
        >>> e.utility_of("hh-1", Meter.ELECTRICITY, ts), e.utility_of("hh-1", Meter.WATER, ts, claimed="grid")
        ('grid', 'aqua')
        >>> e.utility_of("hh-2", Meter.WATER, ts) is None
        True
        """
        best: tuple[datetime, str] | None = None
        for meter in self._of_household.get(household_id, ()):
            if meter.kind is not kind or not meter.covers(ts):
                continue
            if meter.utility_id == claimed:
                return claimed
            since = meter.since or _EARLIEST
            if best is None or since > best[0]:
                best = (since, meter.utility_id)
        return None if best is None else best[1]

    def utilities(self) -> set[str]:
        """Every utility with a meter enrolled."""
        return set(self._households_of_utility)

    def serves(self, utility_id: str, household_id: str) -> bool:
        return household_id in self._households_of_utility.get(utility_id, ())

    def __len__(self) -> int:
        """Enrolled meters (enrolments) in all."""
        return self._count


def resolve(reading: MeterReading | MeterRegisterReading,
            enrolment: Enrolment) -> MeterReading | MeterRegisterReading | Rejection:
    """The reading named by our household id: as it is if it names one, mapped through ``enrolment``
    if it names ``utility_id`` + ``meter_id`` (``meter_id`` dropped, ``utility_id`` kept), or an
    ``unknown_meter`` rejection when no household has that meter at the reading's time, or has it
    as the other kind. Never a guess.

    >>> from schemas.households import Household
    >>> e = Enrolment([Household(household_id="hh-1", community="c", staff={"primary_worker": "w-1"},
    ...                          meters="aqua:WM-7:water")])
    >>> r = MeterReading(utility_id="aqua", meter_id="WM-7", meter="water", ts="2026-03-01T07:15:00Z", value=2)
    >>> mapped = resolve(r, e)
    >>> mapped.household_id, mapped.utility_id, mapped.meter_id
    ('hh-1', 'aqua', None)
    >>> resolve(r.model_copy(update={"meter": Meter.ELECTRICITY}), e).reason.value
    'unknown_meter'
    """
    if reading.meter_id is None:
        return reading
    match = enrolment.lookup(reading.utility_id, reading.meter_id, reading.ts)
    if match is None:
        return Rejection(RejectReason.UNKNOWN_METER, "utility_id, meter_id: no household has this meter enrolled "
                                                     "at ts (roster meters column)")
    if match.kind is not reading.meter:
        return Rejection(RejectReason.UNKNOWN_METER, f"meter: this meter is enrolled as {match.kind.value}, "
                                                     f"the reading says {reading.meter.value}")
    return reading.model_copy(update={"household_id": match.household_id, "meter_id": None})


__all__ = ["Enrolment", "MeterMatch", "resolve"]
