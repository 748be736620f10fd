"""The staff API over HTTP on a real worker and the real broker: a warning becomes a ticket that its
community worker acknowledges, handles and gives feedback on; other communities see nothing.

Starts: one ``elderwatch worker`` process (tokens file, deadline timer every second). The roster and
the warning go in as messages on ``households.roster`` and ``anomalies``, as in production.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from conftest import WorkerProcess, produce

TOKENS = {"tok-north-1": "w-north-1", "tok-north-2": "w-north-2", "tok-sup": "s-north", "tok-south": "w-south-1"}
NORTH, SOUTH = "hh-000001", "hh-000002"
TICKET_ID = f"{NORTH}/inactivity/2026-03-01T02:00:00+00:00"
TICKET = f"/api/v1/tickets/{quote(TICKET_ID, safe='')}"


def roster(household_id: str, community: str, **staff) -> tuple[bytes, bytes]:
    return household_id.encode(), json.dumps({"household_id": household_id, "community": community,
                                              "staff": staff}).encode()


WARNING = json.dumps({"warning_id": TICKET_ID, "household_id": NORTH, "kind": "inactivity",
                      "episode_start": "2026-03-01T02:00:00Z", "detected_at": "2026-03-01T08:55:00Z", "score": 1.3,
                      "severity": "high", "evidence": {"summary": "no water since 02:00"}}).encode()


class Client:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def __call__(self, method: str, path: str, token: str | None = None, body=None,
                 key: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait(self, method: str, path: str, token: str, until, timeout: float = 30.0) -> tuple[int, dict]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self(method, path, token)
            if until(status, body) or time.monotonic() > deadline:
                return status, body
            time.sleep(0.25)


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    prefix = f"s{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path_factory.mktemp(prefix)
    tokens = data_dir / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    worker = WorkerProcess(kafka_bootstrap, prefix, data_dir, partitions=2, extra_env={
        "ELDERWATCH_STAFF_TOKENS_FILE": str(tokens), "ELDERWATCH_TICKET_TIMER_INTERVAL_S": "1"}).start()
    yield worker
    worker.stop()


def test_a_ticket_through_the_staff_api(kafka_bootstrap, worker):
    api = Client(worker.port)
    produce(kafka_bootstrap, worker.topic("households.roster"), [
        roster(NORTH, "north", primary_worker="w-north-1", backup_worker="w-north-2", supervisor="s-north"),
        roster(SOUTH, "south", primary_worker="w-south-1")])
    status, household = api.wait("GET", f"/api/v1/households/{NORTH}", "tok-north-1", lambda s, b: s == 200)
    assert status == 200, (household, worker.log_tail())
    assert household["roster"]["supervisor"] == "s-north" and household["tickets"] == []
    assert api("GET", f"/api/v1/households/{NORTH}", "tok-south")[0] == 403

    # The warning opens a ticket, dispatched to the primary worker.
    produce(kafka_bootstrap, worker.topic("anomalies"), [(NORTH.encode(), WARNING)])
    status, listed = api.wait("GET", "/api/v1/tickets", "tok-north-1",
                              lambda s, b: s == 200 and [t["state"] for t in b["tickets"]] == ["dispatched"])
    assert [(t["ticket_id"], t["state"], t["assignee"], t["warnings"]) for t in listed["tickets"]] == [
        (TICKET_ID, "dispatched", "w-north-1", 1)], (listed, worker.log_tail())

    # Who may see it.
    assert api("GET", "/api/v1/tickets?state=all", "tok-south") == (200, {"tickets": []})
    status, body = api("GET", TICKET, "tok-south")
    assert status == 403 and body["error"]
    assert api("GET", TICKET)[0] == 401
    assert api("GET", TICKET, "not-a-token")[0] == 401
    assert api("POST", f"{TICKET}/acknowledge", body={})[0] == 401
    assert api("GET", "/api/v1/tickets?state=mine", "tok-north-1")[0] == 400
    assert api("GET", f"/api/v1/tickets/{quote(NORTH + '/surge/x', safe='')}", "tok-north-1")[0] == 404

    status, detail = api("GET", TICKET, "tok-north-1")
    assert status == 200
    assert [w["evidence"]["summary"] for w in detail["evidence"]] == ["no water since 02:00"]
    assert detail["roster"]["primary_worker"] == "w-north-1" and detail["away"] is None
    assert detail["recent_usage"] is None

    # Acknowledge; the same key again changes nothing.
    status, acked = api("POST", f"{TICKET}/acknowledge", "tok-north-1", {}, key="ack-1")
    assert status == 200, acked
    assert acked["result"] == "applied" and acked["ticket"]["state"] == "accepted"
    assert acked["ticket"]["assignee"] == "w-north-1"
    status, again = api("POST", f"{TICKET}/acknowledge", "tok-north-1", {}, key="ack-1")
    assert (status, again["result"], again["ticket"]) == (200, "duplicate", acked["ticket"])

    # Not allowed now: a reason, nothing sent.
    status, body = api("POST", f"{TICKET}/feedback", "tok-north-1", {"outcome": "false_alarm"})
    assert status == 409 and "feedback: not allowed from accepted" in body["error"]
    status, body = api("POST", f"{TICKET}/handle", "tok-north-1", {})
    assert status == 400 and "notes" in body["error"]
    status, body = api("POST", f"{TICKET}/feedback", "tok-north-1", {"outcome": "maybe"})
    assert status == 400 and "outcome" in body["error"]

    status, handled = api("POST", f"{TICKET}/handle", "tok-north-1", {"notes": "she was at her daughter's"},
                          key="handle-1")
    assert status == 200 and handled["ticket"]["state"] == "handled", handled
    assert handled["ticket"]["version"] == acked["ticket"]["version"] + 1  # the duplicate and the 409 sent nothing
    status, fed = api("POST", f"{TICKET}/feedback", "tok-north-1", {"outcome": "false_alarm"}, key="fb-1")
    # The answer is the ticket as the desk has it now: detect may already have learned from it and closed it.
    assert status == 200 and fed["ticket"]["state"] in ("feedback_recorded", "closed"), fed
    assert fed["ticket"]["outcome"] == "false_alarm"
    assert "feedback:w-north-1:fb-1" in fed["ticket"]["seen_keys"]

    # Away mode, set by the backup worker; ended again.
    until = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)
    status, household = api("PUT", f"/api/v1/households/{NORTH}/away", "tok-north-2",
                            {"until": until.isoformat(), "reason": "hospital stay"})
    assert status == 200, household
    status, household = api("GET", f"/api/v1/households/{NORTH}", "tok-north-1")
    assert household["away"]["set_by"] == "w-north-2"
    assert datetime.fromisoformat(household["away"]["until"]) == until
    assert [t["ticket_id"] for t in household["tickets"]] == [TICKET_ID]
    assert api("PUT", f"/api/v1/households/{NORTH}/away", "tok-south", {"until": until.isoformat()})[0] == 403
    status, household = api("DELETE", f"/api/v1/households/{NORTH}/away", "tok-north-2")
    assert status == 200 and household["away"] is None

    # The roster: its supervisor only.
    change = {"community": "north", "primary_worker": "w-north-2", "supervisor": "s-north"}
    status, body = api("PUT", f"/api/v1/households/{NORTH}/roster", "tok-north-1", change)
    assert status == 403 and body["error"]
    status, household = api("PUT", f"/api/v1/households/{NORTH}/roster", "tok-sup", change)
    assert status == 200, household
    assert household["roster"] == {**change, "backup_worker": None, "timezone": "UTC"}

    # The document, without credentials.
    status, doc = api("GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
