"""Real DAIAD rows through the real broker give exactly the readings ``elderwatch import daiad`` gives."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from conftest import REPO, consume, loads, produce

from elderwatch.canonical_csv import iter_rows
from elderwatch.feed import daiad_messages
from elderwatch.importers.daiad import import_daiad

DAIAD = REPO.parent / "shared" / "data" / "daiad" / "swm_trialA_dev.csv.gz"


@pytest.fixture(scope="module")
def daiad_sample(tmp_path_factory) -> Path:
    """Three real households, including the one with interleaved stale reads and the DST hour."""
    if not DAIAD.exists():
        pytest.skip(f"real DAIAD data not present at {DAIAD}")
    wanted = {"12913a45-9436-47d3-a25c-21bff410f1ee", "e8523035-a619-4436-9f39-b35342455f34",
              "3055501b-b4c6-4dca-8cfb-25222c93f7a2"}
    path = tmp_path_factory.mktemp("daiad") / "sample.csv.gz"
    with gzip.open(DAIAD, "rt") as source, gzip.open(path, "wt") as out:
        out.write(next(source))
        for line in source:
            if line.split(";", 1)[0] in wanted:
                out.write(line)
    return path


def _key(household_id: str, meter: str, ts: str, value: float) -> tuple:
    return household_id, meter, datetime.fromisoformat(ts), float(value)


def test_daiad_rows_through_kafka_match_the_importer(ingest_worker, daiad_sample, tmp_path):
    summary = import_daiad(daiad_sample, tmp_path / "imported.csv")
    imported = Counter(_key(r["household_id"], r["meter"], r["ts"], r["value"]) for r in iter_rows(tmp_path / "imported.csv"))
    assert summary.readings_written == sum(imported.values()) > 20_000

    sent = produce(ingest_worker.bootstrap, ingest_worker.topic("readings.raw"),
                   ((m.key, m.value) for m in daiad_messages(daiad_sample, "Europe/Madrid")))
    assert sent == summary.rows
    records = consume(ingest_worker.bootstrap, ingest_worker.topic("readings.validated"),
                      expected=summary.readings_written, timeout=180)
    streamed = Counter(_key(r["household_id"], r["meter"], r["ts"], r["value"]) for r in map(loads, records))
    assert streamed == imported
