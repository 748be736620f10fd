"""Two workers of one app on the real broker: every ticket stays reachable through both workers' staff APIs.

Starts: worker A alone (every partition), a fixture of eight households with a ticket each; then worker B joins
(a rebalance splits the ``tickets-households`` partitions). Through either worker, a ticket or household whose
partition is the other's is forwarded there (200), or refused with a reason (503) -- never a 404 or an empty
answer for something that exists. The ticket list needs every partition: 503 with its reason while the
partitions are split (scatter-gather is not built), never a partial 200. After B stops, A holds everything and
lists everything again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote

from conftest import WorkerProcess, produce
from kafka.partitioner.default import murmur2

from streams.readiness import LISTS_NEED_EVERY_PARTITION, RECOVERING

PARTITIONS = 4
TOKENS = {"tok-sup": "s-north"}
HOUSEHOLDS = [f"hh-{i:06d}" for i in range(1, 9)]  # partitions 2, 0, 0, 0, 3, 3, 1, 1: all four
TICKETS = {h: f"{h}/inactivity/2026-03-01T02:00:00+00:00" for h in HOUSEHOLDS}


def partition(household_id: str) -> int:
    return (murmur2(household_id.encode()) & 0x7FFFFFFF) % PARTITIONS  # Kafka's default partitioner


def get(port: int, path: str, token: str | None = "tok-sup") -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait(what, until, timeout: float = 120.0, logs=()):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if until(value):
            return value
        assert time.monotonic() < deadline, (value, [w.log_tail() for w in logs])
        time.sleep(0.5)


def ready(worker: WorkerProcess) -> dict:
    return get(worker.port, "/ready", None)[1]


def test_every_ticket_is_reachable_through_both_workers(kafka_bootstrap, tmp_path):
    assert {partition(h) for h in HOUSEHOLDS} == set(range(PARTITIONS))
    prefix = f"m{uuid.uuid4().hex[:8]}"
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    env = {"ELDERWATCH_STAFF_TOKENS_FILE": str(tokens)}
    a = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "a", partitions=PARTITIONS, extra_env=env)
    b = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "b", partitions=PARTITIONS, extra_env=env)
    try:
        a.start()
        wait(lambda: ready(a), lambda r: r["ready"] and r["every_partition"], logs=[a])
        produce(kafka_bootstrap, a.topic("households.roster"), [
            (h.encode(), json.dumps({"household_id": h, "community": "north",
                                     "staff": {"primary_worker": "w-1", "supervisor": "s-north"}}).encode())
            for h in HOUSEHOLDS])
        produce(kafka_bootstrap, a.topic("anomalies"), [
            (h.encode(), json.dumps({"warning_id": TICKETS[h], "household_id": h, "kind": "inactivity",
                                     "episode_start": "2026-03-01T02:00:00Z", "detected_at": "2026-03-01T08:55:00Z",
                                     "score": 1.3, "severity": "high",
                                     "evidence": {"summary": "no water since 02:00"}}).encode())
            for h in HOUSEHOLDS])
        status, listed = wait(lambda: get(a.port, "/api/v1/tickets"),
                              lambda r: r[0] == 200 and len(r[1]["tickets"]) == len(HOUSEHOLDS), logs=[a])
        assert sorted(t["ticket_id"] for t in listed["tickets"]) == sorted(TICKETS.values())

        # B joins: the partitions are split between the two, each recovered where it lands.
        b.start()
        states = wait(lambda: (ready(a), ready(b)),
                      lambda rs: all(r["ready"] for r in rs) and sorted(rs[0]["partitions"] + rs[1]["partitions"])
                      == list(range(PARTITIONS)) and rs[0]["partitions"] and rs[1]["partitions"], logs=[a, b])
        owner = {p: w for w, r in zip((a, b), states) for p in r["partitions"]}

        for worker in (a, b):
            status, body = get(worker.port, "/api/v1/tickets")  # a list from half the partitions would be partial
            assert (status, body) == (503, {"error": LISTS_NEED_EVERY_PARTITION}), (worker.port, body)
            for household, ticket_id in TICKETS.items():
                here = owner[partition(household)] is worker
                status, body = get(worker.port, f"/api/v1/tickets/{quote(ticket_id, safe='')}")
                assert status in (200, 503), (here, status, body)  # never a 404 for a ticket that exists
                if status == 503:
                    assert body["error"].startswith("several workers") or body["error"] == RECOVERING, body
                    continue
                assert body["ticket"]["ticket_id"] == ticket_id and body["roster"]["supervisor"] == "s-north"
                status, view = get(worker.port, f"/api/v1/households/{household}")
                assert status == 200 and [t["ticket_id"] for t in view["tickets"]] == [ticket_id], (status, view)
        # Forwarding, not refusal, is what was built: with both ready, every ticket answers 200 through both.
        answers = {(w.port, t): get(w.port, f"/api/v1/tickets/{quote(t, safe='')}")[0]
                   for w in (a, b) for t in TICKETS.values()}
        assert set(answers.values()) == {200}, answers
        # A stranger is refused by the owner, also through the other worker.
        remote = next(h for h in HOUSEHOLDS if owner[partition(h)] is b)
        assert get(a.port, f"/api/v1/households/{remote}", None)[0] == 401
    finally:
        b.stop()
    try:
        # B gone: A takes every partition back, and lists everything again.
        wait(lambda: ready(a), lambda r: r["ready"] and r["every_partition"], logs=[a])
        status, listed = wait(lambda: get(a.port, "/api/v1/tickets"), lambda r: r[0] == 200, logs=[a])
        assert sorted(t["ticket_id"] for t in listed["tickets"]) == sorted(TICKETS.values())
    finally:
        a.stop()
