"""DAIAD smart-water-meter trial data (``user key;datetime;meter reading;diff``).

The rows are hourly cumulative registers in litres, at irregular minutes, in local time
without an offset, with repeated timestamps, a few reads going back in time and some
negative diffs. We turn each row into the register message a utility would send and run it
through the same ingest rules as the Kafka path (:class:`OfflineIngest`), so
``elderwatch import daiad`` and ``elderwatch feed --format daiad`` give the same readings.

The ``diff`` column is not used: our interval is derived from the register, and the first
read of each household only sets the baseline (the file's first diff covers time before it).

Local time: the trial's timestamps carry no offset. We attach the zone given (default
``Europe/Madrid``, the trial's city). In the autumn hour that occurs twice, a time that would
otherwise step back is placed in the second occurrence (``fold=1``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Europe/Madrid"
UTILITY_ID = "daiad-trial-a"
_DATETIME_FORMAT = "%d/%m/%Y %H:%M:%S"


def open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", newline="") if str(path).endswith(".gz") else open(path, newline="")


@dataclass(frozen=True, slots=True)
class DaiadRow:
    line: int
    household_id: str
    local_time: str
    register: str


def read_rows(path: Path) -> Iterator[DaiadRow]:
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=";")
        next(reader, None)  # header
        for line, row in enumerate(reader, start=2):
            padded = (row + ["", "", ""])[:3]
            yield DaiadRow(line, padded[0].strip(), padded[1].strip(), padded[2].strip())


class LocalClock:
    """Attaches a zone to naive local times of one household, resolving the repeated autumn hour."""

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.previous: dict[str, datetime] = {}

    def localize(self, household_id: str, naive: datetime) -> datetime:
        aware = naive.replace(tzinfo=self.zone)
        previous = self.previous.get(household_id)
        # Compare instants: datetimes sharing a tzinfo compare by wall clock and ignore fold.
        if previous is not None and aware.timestamp() <= previous.timestamp():
            second = naive.replace(tzinfo=self.zone, fold=1)
            if second.utcoffset() != aware.utcoffset() and second.timestamp() > previous.timestamp():
                aware = second
        self.previous[household_id] = aware
        return aware


def register_messages(path: Path, zone: str = DEFAULT_TIMEZONE) -> Iterator[tuple[DaiadRow, bytes]]:
    """Each row as the JSON bytes of a register reading (or, for an unreadable row, the row itself,
    so ingest rejects it with a reason instead of this function dropping it)."""
    clock = LocalClock(zone)
    for row in read_rows(path):
        try:
            naive = datetime.strptime(row.local_time, _DATETIME_FORMAT)
            register = float(row.register)
        except ValueError:
            yield row, ";".join((row.household_id, row.local_time, row.register)).encode()
            continue
        ts = clock.localize(row.household_id, naive)
        message = {"household_id": row.household_id, "meter": "water", "ts": ts.isoformat(),
                   "register": register, "unit": "L", "utility_id": UTILITY_ID}
        yield row, json.dumps(message).encode()


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    readings_written: int
    counts: dict[str, int]
    rejects_path: Path | None


def import_daiad(path: Path, out: Path, *, zone: str = DEFAULT_TIMEZONE, rejects: Path | None = None,
                 now: datetime | None = None) -> ImportSummary:
    """Convert a DAIAD file to canonical CSV through the ingest rules; rejected rows go to ``rejects``
    (JSON lines with the file line number, the reason and the original row), never dropped silently."""
    from datetime import timezone

    from elderwatch.canonical_csv import CsvWriter
    from streams.ingest import Emitted, OfflineIngest, Rejection

    ingest = OfflineIngest(now=now or datetime.now(timezone.utc))
    rows = written = 0
    reject_handle = open(rejects, "w") if rejects else None
    try:
        with CsvWriter(out) as writer:
            for row, message in register_messages(path, zone):
                rows += 1
                outcome = ingest.feed(message)
                if isinstance(outcome, Emitted):
                    r = outcome.reading
                    writer.write(r.household_id, r.meter.value, r.ts.isoformat(), r.value)
                    written += 1
                elif isinstance(outcome, Rejection) and reject_handle:
                    reject_handle.write(json.dumps({"line": row.line, "reason": outcome.reason.value,
                                                    "detail": outcome.detail, "original": message.decode("utf-8", "replace")}) + "\n")
    finally:
        if reject_handle:
            reject_handle.close()
    return ImportSummary(rows=rows, readings_written=written, counts=dict(ingest.counts), rejects_path=rejects)
