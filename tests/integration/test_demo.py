"""``elderwatch demo`` end to end on the session's broker: it feeds, counts and balances its books."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_demo_runs_prints_counts_and_balances(kafka_bootstrap):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    result = subprocess.run([sys.executable, "-m", "elderwatch.cli", "demo", "--seconds", "8", "--households", "4",
                             "--days", "4", "--speed", "36000x"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) >= 3 and "received" in lines[-1] and "dead-lettered" in lines[-1]
    assert "-> OK" in result.stdout
    assert "demo stopped" in result.stdout
