"""/health and /ready on a real worker and the real broker: /health answers as soon as the process does; /ready
and the staff API wait for table recovery (never a 200 list from a table still being restored), on a first
start and on a restart with state to restore.

Starts: one ``elderwatch worker`` process (tokens file), stopped and started again on the same app id.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

from conftest import WorkerProcess, produce

from streams.readiness import INGEST_RECOVERING, RECOVERING

TOKENS = {"tok-sup": "s-north"}
HOUSEHOLDS = [f"hh-{i:06d}" for i in range(1, 5)]


def get(port: int, path: str, token: str | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def metric(port: int, sample: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
    return None


def until_ready(worker: WorkerProcess, timeout: float = 120.0) -> list[int]:
    """Poll the list API, /health and /ready until ready; check each answer on the way; the /ready statuses seen."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed, body, headers = get(worker.port, "/api/v1/tickets", "tok-sup")
        if listed == 503:  # refused while recovering, with a reason and a retry hint: never a partial list
            assert body["error"] == RECOVERING and headers.get("Retry-After"), body
        else:
            assert listed == 200, body
        assert get(worker.port, "/health")[0] == 200  # liveness all along
        status, ready, headers = get(worker.port, "/ready")
        seen.append(status)
        if listed == 200:  # the list was answered, so the tables' recovery had ended (nothing rebalances here):
            # ready, or waiting only for ingest, which joins its own consumer group (streams/readings_loop.py)
            assert status == 200 or ready["reasons"] == [INGEST_RECOVERING], ready
        if status == 200:
            return seen
        assert status == 503 and ready["ready"] is False and ready["reasons"] and headers.get("Retry-After"), ready
        assert metric(worker.port, "elderwatch_ready") in (0.0, 1.0)  # 1: became ready since
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout:.0f} s (seen {seen[-5:]}): {worker.log_tail()}")


def test_ready_only_once_the_tables_are_recovered(kafka_bootstrap, tmp_path):
    prefix = f"r{uuid.uuid4().hex[:8]}"
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    env = {"ELDERWATCH_STAFF_TOKENS_FILE": str(tokens), "ELDERWATCH_TICKET_TIMER_INTERVAL_S": "1"}
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "w1", partitions=2, extra_env=env)
    try:
        worker.start()
        until_ready(worker)
        status, ready, _ = get(worker.port, "/ready")
        assert (status, ready["reasons"], ready["partitions"], ready["every_partition"]) == (200, [], [0, 1], True)
        assert metric(worker.port, "elderwatch_ready") == 1.0
        for agent in ("tickets", "ticket-warnings", "notify"):  # ingest and detect are no agents (readings_loop.py)
            assert metric(worker.port, f'elderwatch_agent_crashes_total{{agent="{agent}"}}') == 0.0, agent

        # Some state to restore on the next start: four households and their tickets.
        produce(kafka_bootstrap, worker.topic("households.roster"), [
            (h.encode(), json.dumps({"household_id": h, "community": "north",
                                     "staff": {"primary_worker": "w-1", "supervisor": "s-north"}}).encode())
            for h in HOUSEHOLDS])
        produce(kafka_bootstrap, worker.topic("anomalies"), [
            (h.encode(), json.dumps({"warning_id": f"{h}/inactivity/2026-03-01T02:00:00+00:00", "household_id": h,
                                     "kind": "inactivity", "episode_start": "2026-03-01T02:00:00Z",
                                     "detected_at": "2026-03-01T08:55:00Z", "score": 1.3, "severity": "high",
                                     "evidence": {"summary": "no water since 02:00"}}).encode())
            for h in HOUSEHOLDS])
        deadline = time.monotonic() + 60
        while len(get(worker.port, "/api/v1/tickets", "tok-sup")[1].get("tickets", [])) < 4:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
    finally:
        worker.stop()

    # The same app again: /health at once, /ready and the API only after the desks are restored, and then whole.
    again = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "w2", partitions=2, extra_env=env)
    try:
        again.start()
        until_ready(again)
        status, listed, _ = get(again.port, "/api/v1/tickets", "tok-sup")
        assert status == 200 and sorted(t["household_id"] for t in listed["tickets"]) == HOUSEHOLDS, listed
    finally:
        again.stop()
