"""households.csv to the ``households.roster`` topic, and back (``elderwatch roster load|show|export``).

Every row is validated as a :class:`~schemas.households.Household`; a bad row is reported with its
line number and skipped, so one typo does not hold back a community's roster. The topic is
compacted and keyed by ``household_id``: loading a file again replaces each household's entry,
and tickets opened afterwards ask the new chain.

>>> households, bad = read_households([
...     "household_id,community,tags,timezone,primary_worker,backup_worker,supervisor",
...     "hh-000001,north,,Europe/London,w-1,w-2,s-1",
...     "hh-000002,north,,Mars/Olympus,w-1,,",
...     "hh-000003,north,,UTC,,w-2,s-1",
...     "hh-000001,north,,UTC,w-3,,"])
>>> [h.household_id for h in households]
['hh-000001']
>>> for row in bad:
...     print(row)
line 3: timezone: Value error, unknown time zone 'Mars/Olympus'
line 4: primary_worker: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' (got '')
line 5: household hh-000001 listed twice (first on line 2)

The optional ``meters`` column enrols the utilities' meters (``utility:meter_id:kind[@since[/until]]``,
``;``-separated; see :func:`schemas.households.format_meter`); a file without it loads as before.
``elderwatch roster export`` writes the topic's current entries back as a households.csv that
loads to the same roster:

>>> import io
>>> households, _ = read_households(["household_id,community,tags,timezone,primary_worker,backup_worker,supervisor,meters",
...     "hh-000001,north,,UTC,w-1,,,aqua:WM-7:water;grid:E%3A9:electricity@2026-03-01T00:00:00+08:00"])
>>> out = io.StringIO()
>>> write_households(households, out)
1
>>> print(out.getvalue().strip())
household_id,community,tags,timezone,primary_worker,backup_worker,supervisor,meters
hh-000001,north,,UTC,w-1,,,aqua:WM-7:water;grid:E%3A9:electricity@2026-03-01T00:00:00+08:00
>>> read_households(out.getvalue().splitlines())[0] == households
True
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from schemas.households import HOUSEHOLD_CSV_COLUMNS, HOUSEHOLD_CSV_COLUMNS_WITH_METERS, Household

#: Columns a row cannot do without; the others have defaults.
REQUIRED_COLUMNS = ("household_id", "community", "primary_worker")


@dataclass(frozen=True)
class BadRow:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


def read_households(lines: Iterable[str]) -> tuple[list[Household], list[BadRow]]:
    """The households of a households.csv (its lines, header first), and the rows that are not one.

    A file without the required columns is one bad row (line 1) and no households."""
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        return [], [BadRow(1, f"not a households CSV (columns {','.join(HOUSEHOLD_CSV_COLUMNS)}); "
                              f"missing {', '.join(missing)}")]
    households: list[Household] = []
    bad: list[BadRow] = []
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row or any(value is None for value in row.values()):
            bad.append(BadRow(line, f"wrong number of fields (expected {len(reader.fieldnames)})"))
            continue
        try:
            household = Household.from_csv_row(row)
        except ValidationError as exc:
            bad.append(BadRow(line, _first_error(exc)))
            continue
        if household.household_id in first_line:
            bad.append(BadRow(line, f"household {household.household_id} listed twice "
                                    f"(first on line {first_line[household.household_id]})"))
            continue
        first_line[household.household_id] = line
        households.append(household)
    return households, bad


def read_households_file(path: Path | str) -> tuple[list[Household], list[BadRow]]:
    """:func:`read_households` of a file (``.gz`` too; a spreadsheet's byte-order mark is fine)."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return read_households(handle)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "row"
    got = f" (got {error['input']!r})" if isinstance(error.get("input"), str) and error["type"] != "value_error" else ""
    return f"{where}: {error['msg']}{got}"


def write_households(households: Iterable[Household], handle: TextIO) -> int:
    """households.csv with every column (``meters`` last) to ``handle``; returns the rows written."""
    writer = csv.DictWriter(handle, fieldnames=HOUSEHOLD_CSV_COLUMNS_WITH_METERS, lineterminator="\n", restval="")
    writer.writeheader()
    rows = 0
    for household in households:
        writer.writerow(household.to_csv_row())
        rows += 1
    return rows


# -- Kafka ------------------------------------------------------------------------------------------

def send_households(households: Iterable[Household], *, bootstrap: str, topic: str, timeout_s: float = 30.0) -> int:
    """Each household as JSON to ``topic`` (key: its id); returns how many the broker acknowledged
    (all of them, or a ``KafkaError`` is raised)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=10, retries=5)
    try:
        futures = [producer.send(topic, key=h.household_id.encode(), value=h.model_dump_json().encode())
                   for h in households]
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)  # raises if the broker did not take it
        return len(futures)
    finally:
        producer.close()


def roster_entries(records: Iterable) -> Iterator[tuple[str, Household | None]]:
    """``(household_id, entry)`` per record of the roster topic, in order; None for a tombstone. A value
    that is not a Household is skipped, as the ticket stage does (it dead-letters it and keeps the entry before)."""
    for record in records:
        if record.key is None:
            continue
        household_id = record.key.decode(errors="replace")
        if not record.value:
            yield household_id, None
            continue
        try:
            yield household_id, Household.model_validate_json(record.value)
        except ValidationError:
            continue


def current_roster(records: Iterable) -> dict[str, Household]:
    """The roster topic's current entries (latest record per household wins; a tombstone removes), by id."""
    entries: dict[str, Household] = {}
    for household_id, household in roster_entries(records):
        if household is None:
            entries.pop(household_id, None)
        else:
            entries[household_id] = household
    return entries


__all__ = ["BadRow", "REQUIRED_COLUMNS", "current_roster", "read_households", "read_households_file", "roster_entries",
           "send_households", "write_households"]
