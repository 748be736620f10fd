"""Output files: readings.csv(.gz), labels.jsonl, households.csv, manifest.json.

Readings are formatted with one precomputed %-template per grid (the timestamps are shared
by every household), which keeps CSV writing at C speed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import IO, Iterable

import numpy as np

from schemas.households import HOUSEHOLD_CSV_COLUMNS, Household

READINGS_HEADER = "household_id,meter,ts,value\n"
_HID = "\x00"  # placeholder for the household id inside the template


class ReadingsFormatter:
    """Formats one household's readings as CSV text, sorted by ts then meter."""

    def __init__(self, ts: tuple[str, ...]):
        self.ts = ts
        self.template = "".join(f"{_HID},electricity,{t},%.3f\n{_HID},water,{t},%.1f\n" for t in ts)
        self.n = len(ts)
        self._single: dict[str, str] = {}  # one-meter templates, built when first needed

    def format(self, hid: str, e: np.ndarray, w: np.ndarray, pe: np.ndarray | None, pw: np.ndarray | None) -> tuple[str, int]:
        """Returns (text, number of rows). ``pe``/``pw`` are presence masks (None = all present)."""
        if pe is None and pw is None:
            both = np.empty(2 * self.n)
            both[0::2] = e
            both[1::2] = w
            return (self.template % tuple(both.tolist())).replace(_HID, hid), 2 * self.n
        for meter, vals, fmt, mine, other in (("electricity", e, "%.3f", pe, pw), ("water", w, "%.1f", pw, pe)):
            if other is not None and mine is None and not other.any():  # a home with only this meter
                single = self._single.get(meter)
                if single is None:
                    single = self._single[meter] = "".join(f"{_HID},{meter},{t},{fmt}\n" for t in self.ts)
                return (single % tuple(vals.tolist())).replace(_HID, hid), self.n
        pe = np.ones(self.n, bool) if pe is None else pe
        pw = np.ones(self.n, bool) if pw is None else pw
        el = e.tolist()
        wl = w.tolist()
        out = []
        ts = self.ts
        for k in range(self.n):
            if pe[k]:
                out.append(f"{hid},electricity,{ts[k]},{el[k]:.3f}\n")
            if pw[k]:
                out.append(f"{hid},water,{ts[k]},{wl[k]:.1f}\n")
        return "".join(out), len(out)


def open_readings(out_dir: Path, compress: bool) -> tuple[Path, IO[str]]:
    """Opens readings.csv (or a reproducible readings.csv.gz: no name, mtime 0 in the gzip header)."""
    if compress:
        path = out_dir / "readings.csv.gz"
        raw = open(path, "wb")
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
        text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
        text._ew_raw = raw  # type: ignore[attr-defined]  # closed in close_readings
    else:
        path = out_dir / "readings.csv"
        text = open(path, "w", encoding="utf-8", newline="", buffering=1 << 20)
    text.write(READINGS_HEADER)
    return path, text


def close_readings(f: IO[str]) -> None:
    raw = getattr(f, "_ew_raw", None)
    f.close()
    if raw is not None:
        raw.close()


def label_line(household_id: str, kind: str, start: str, end: str, meter: str | None, note: str) -> str:
    return json.dumps(
        {"household_id": household_id, "kind": kind, "start": start, "end": end, "meter": meter, "note": note},
        ensure_ascii=False,
    ) + "\n"


def write_households(path: Path, households: Iterable[Household]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HOUSEHOLD_CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for h in households:
            w.writerow(h.to_csv_row())


def write_manifest(path: Path, manifest: dict) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
