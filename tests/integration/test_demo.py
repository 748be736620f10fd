"""``elderwatch demo`` end to end on the session's broker: it feeds, counts and balances its books;
given enough data, tickets appear and a community worker takes one through the API to closed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO


def _demo(kafka_bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    return subprocess.run([sys.executable, "-m", "elderwatch.cli", "demo", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)


def _lines(result: subprocess.CompletedProcess, pattern: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if re.search(pattern, line)]


def test_demo_runs_prints_counts_and_balances(kafka_bootstrap):
    result = _demo(kafka_bootstrap, "--seconds", "8", "--households", "4", "--days", "4", "--speed", "36000x")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) >= 3 and "received" in lines[-1] and "dead-lettered" in lines[-1]
    assert "warnings" in lines[-1] and "tickets:" in lines[-1]
    assert "-> OK" in result.stdout
    # Four days cannot get past the detectors' 21-day warm-up: no ticket, and the demo says why.
    assert _lines(result, r"^loop: no welfare ticket: too little data past the detectors' 21-day warm-up .* -> OK$")
    assert "Authorization: Bearer " in result.stdout and "/api/v1/tickets?state=all" in result.stdout
    assert _lines(result, r"^staff console: http://127\.0\.0\.1:\d+/  sign in with password 'elderwatch-demo' as w-")
    assert "demo stopped" in result.stdout


def test_demo_opens_tickets_and_closes_one_through_the_api(kafka_bootstrap):
    # 4 households x 26 days (20,000 readings, at max speed): welfare warnings from day 21.0 on,
    # so tickets within about 15 s of the feed starting; ~35 s in all on 2 cores.
    result = _demo(kafka_bootstrap, "--seconds", "15", "--households", "4", "--days", "26", "--speed", "max")
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]

    opened = _lines(result, r'^ticket opened: hh-\d{6} [a-z_]+ (high|medium|low|info) -> [\w.:-]+ ".+"$')
    assert opened, out[-4000:]
    for action in ("acknowledge", "handle", "feedback"):
        assert _lines(result, rf"^  api: POST {action}\b.* hh-\d{{6}} [a-z_]+ as [\w.:-]+ -> 200 (applied|duplicate), "
                              r"state \w+$"), (action, out[-4000:])
    closed = _lines(result, r"^ticket closed: hh-\d{6} [a-z_]+ outcome [a-z_]+; detection: .+$")
    assert closed, out[-4000:]

    assert "identity:" in out and "-> OK" in out
    summary = out[out.index("loop (from /metrics):"):]
    assert re.search(r"tickets opened +([a-z_]+ \d+)(, [a-z_]+ \d+)*\n", summary), summary
    assert re.search(r"escalations +\d+\n", summary), summary
    assert re.search(r"outcomes +.*false_alarm 1", summary), summary
    assert re.search(r"valid-alert ratio +\d\.\d\d", summary), summary
    assert _lines(result, r"^loop: \d+ welfare tickets opened, [1-9]\d* taken through the API to closed -> OK$")
    assert "demo stopped" in out
