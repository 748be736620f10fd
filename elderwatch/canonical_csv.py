"""The canonical readings CSV: ``household_id,meter,ts,value``.

``ts`` is ISO-8601 with a UTC offset and marks the END of the interval; ``value`` is what was
used in the interval (kWh or litres). Simulator output, importer output and offline detection
all use it. ``.gz`` files are read and written transparently.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

HEADER = ("household_id", "meter", "ts", "value")


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
