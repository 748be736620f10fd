"""Soak (skipped unless ``--soak``): ``bench.bench_soak`` for a few minutes on the session's broker.

One worker on a warmed-up fleet fed time-accelerated live readings; it must keep up, its RSS must stay flat
over the second half of the feed, and every reading must be counted once with the identities holding.
The knobs (environment), for a longer run::

    ELDERWATCH_SOAK_MINUTES=30 ELDERWATCH_SOAK_HOUSEHOLDS=15000 ELDERWATCH_SOAK_SPEED=10 \\
        .venv/bin/python -m pytest --soak tests/integration/test_soak.py

The defaults (3 minutes, 1,500 households, 5x the live rate of 15,000 homes) leave the worker time to
settle: with 15,000 households the monitor cache (2,048 households) and the first tickets take longer than
a short run's first half to fill, and the second half would still show that start-up growth. The recorded
half-hour soak is ``python -m bench.bench_soak`` (``bench/results/soak.md``).
"""

from __future__ import annotations

import json
import os

import pytest

from bench import bench_soak


@pytest.mark.soak
def test_soak_memory_flat_every_reading_once(kafka_bootstrap, tmp_path):
    minutes = float(os.environ.get("ELDERWATCH_SOAK_MINUTES", "3"))
    households = int(os.environ.get("ELDERWATCH_SOAK_HOUSEHOLDS", "1500"))
    speed = float(os.environ.get("ELDERWATCH_SOAK_SPEED", "5"))
    out = tmp_path / "soak.md"
    assert bench_soak.main(["--minutes", str(minutes), "--households", str(households), "--speed", str(speed),
                            "--templates", "12", "--quiet-timeout", "0", "--bootstrap", kafka_bootstrap,
                            "--out", str(out)]) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    verdict, memory, behind = results["verdict"], results["memory"], results["behind"]
    summary = out.read_text().split("## Along the run")[0]
    assert verdict["identity"], summary
    assert verdict["warnings_as_expected"], summary
    assert verdict["kept_up"], f"behind {behind}, drained {results['drained_s']:.1f} s after the feed\n{summary}"
    assert verdict["memory_flat"], (f"RSS grew {memory['slope_mib_per_min']:+.2f} MiB/min over the second half "
                                    f"(limit {memory['limit_mib_per_min']})\n{summary}")
