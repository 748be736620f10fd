"""``elderwatch demo`` end to end on the session's broker: it feeds, counts and balances its books;
given enough data, tickets appear and a community worker takes one through the API to closed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

from conftest import REPO


def _demo(kafka_bootstrap: str, *args: str, on_line=None) -> subprocess.CompletedProcess:
    """Run the demo; ``on_line(line)`` sees each line of its output while it runs."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    process = subprocess.Popen([sys.executable, "-m", "elderwatch.cli", "demo", *args], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
    reader.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line)
        process.wait(timeout=240)
    finally:
        if process.poll() is None:  # the test failed mid-run: stop the demo as Ctrl-C would, so it stops its worker
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    reader.join(timeout=10)
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(lines), "".join(errors))


def _sign_in(console_line: str) -> tuple[int, str]:
    """Sign in to the console the way the demo's line says; (status of the home page, its HTML)."""
    import http.cookiejar
    import urllib.request
    from urllib.parse import urlencode

    match = re.search(r"(http://127\.0\.0\.1:\d+)/  sign in with password '([^']+)' as ([\w.:-]+)", console_line)
    base, password, user = match.groups()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}/signin", timeout=15) as response:
        csrf = re.search(r'name="csrf" value="([^"]+)"', response.read().decode()).group(1)
    form = urlencode({"csrf": csrf, "user_id": user, "password": password, "next": ""}).encode()
    with opener.open(urllib.request.Request(f"{base}/signin", data=form), timeout=15) as response:
        return response.status, response.read().decode()  # redirects followed: the home page, signed in


def _lines(result: subprocess.CompletedProcess, pattern: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if re.search(pattern, line)]


def test_demo_runs_prints_counts_and_balances(kafka_bootstrap):
    signed_in = []

    def sign_in_once(line: str) -> None:
        if line.startswith("staff console: ") and not signed_in:
            signed_in.append(_sign_in(line))

    result = _demo(kafka_bootstrap, "--seconds", "8", "--households", "4", "--days", "4", "--speed", "36000x",
                   on_line=sign_in_once)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) >= 3 and "received" in lines[-1] and "dead-lettered" in lines[-1]
    assert "warnings" in lines[-1] and "tickets:" in lines[-1]
    assert "-> OK" in result.stdout
    # Four days cannot get past the detectors' 21-day warm-up: no ticket, and the demo says why.
    assert _lines(result, r"^loop: no welfare ticket: too little data past the detectors' 21-day warm-up .* -> OK$")
    assert "Authorization: Bearer " in result.stdout and "/api/v1/tickets?state=all" in result.stdout
    assert _lines(result, r"^staff console: http://127\.0\.0\.1:\d+/  sign in with password 'elderwatch-demo' as w-")
    # ... and that sign-in works: the worker's console answers with the signed-in worker's ticket list
    [(status, html)] = signed_in
    assert status == 200 and "/signout" in html and 'name="password"' not in html, html[:500]
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
