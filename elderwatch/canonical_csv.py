"""The canonical readings CSV: ``household_id,meter,ts,value``.

``ts`` is ISO-8601 with a UTC offset and marks the END of the interval; ``value`` is what was
used in the interval (kWh or litres). Simulator output, importer output and offline detection
all use it. ``.gz`` files are read and written transparently.

A utility pushing CSV over HTTP (``POST /api/v1/readings``) may name a household by its own ids
instead: the optional columns ``utility_id,meter_id`` (:data:`OPTIONAL_COLUMNS`), with
``household_id`` left empty or left out. Each row becomes the JSON reading it describes
(:func:`reading_json`), which is what ``readings.raw`` carries.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

HEADER = ("household_id", "meter", "ts", "value")
#: Columns a pushed CSV may add: the utility's own ids of the meter (instead of household_id).
OPTIONAL_COLUMNS = ("utility_id", "meter_id")
# A JSON number as written (RFC 8259): such a cell is sent as a number, anything else as text.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def reading_json(row: Mapping[str, str]) -> bytes:
    """The JSON interval reading a CSV row describes: empty cells left out, ``value`` a JSON number
    when it is written as one and the text otherwise (ingest then refuses it with a reason).

    >>> reading_json({"household_id": "", "utility_id": "aqua", "meter_id": "WM-7", "meter": "water",
    ...               "ts": "2026-03-01T07:15:00Z", "value": "12.5"})
    b'{"utility_id": "aqua", "meter_id": "WM-7", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": 12.5}'
    >>> reading_json({"household_id": "hh-1", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": "twelve"})
    b'{"household_id": "hh-1", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": "twelve"}'
    """
    message: dict[str, object] = {}
    for column in ("household_id", *OPTIONAL_COLUMNS, "meter", "ts", "value"):
        cell = row.get(column)
        if cell is None or cell == "":
            continue
        message[column] = _number_or_text(cell) if column == "value" else cell
    return json.dumps(message).encode()


def _number_or_text(cell: str) -> object:
    if not _JSON_NUMBER.fullmatch(cell):
        return cell
    try:
        return json.loads(cell)
    except ValueError:  # more digits than Python reads: the text, refused downstream
        return cell


def open_csv(path: Path, mode: str = "r") -> io.TextIOBase:
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "t", newline="")
    return open(path, mode, newline="")


def iter_rows(path: Path) -> Iterator[dict[str, str]]:
    with open_csv(path) as handle:
        reader = csv.DictReader(handle)
        missing = set(HEADER) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a readings CSV, missing columns {sorted(missing)}")
        yield from reader


class CsvWriter:
    def __init__(self, path: Path) -> None:
        self._handle = open_csv(path, "w")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(HEADER)

    def write(self, household_id: str, meter: str, ts: str, value: float) -> None:
        self._writer.writerow((household_id, meter, ts, repr(float(value))))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "CsvWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_rows(path: Path) -> int:
    """Data rows of a CSV (.gz ok), counted on raw bytes: a few seconds per ten million rows."""
    lines = 0
    with open(path, "rb") as handle:
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if path.suffix == ".gz" else None
        while chunk := handle.read(1 << 20):
            if inflate is not None:
                chunk = inflate.decompress(chunk)
                while inflate.unused_data:  # concatenated gzip members
                    rest = inflate.unused_data
                    inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)
                    chunk += inflate.decompress(rest)
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)
