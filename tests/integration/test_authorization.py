"""The authorization matrix: every staff API route x every role x the caller's own or another
community, on a real worker and the real broker, each with its status code and nothing changed
by a refused request.

Each allowed request carries a body the route refuses (400) once the caller is let through: so the
matrix tells "may" from "may not" without acting on the tickets, and a refusal is proven to come
before anything is read from the body.

One worker (users file, no tokens file), two communities with one household each, one ticket each.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote

import pytest
from conftest import WorkerProcess, produce

from elderwatch.users import UserStore
from schemas.openapi import ROUTES
from schemas.users import User

PASSWORD = "a long enough password"
HOUSEHOLD = {"A": "hh-a00001", "B": "hh-b00001"}
TICKET = {c: f"{h}/inactivity/2026-03-01T02:00:00+00:00" for c, h in HOUSEHOLD.items()}

#: role -> (user, the community the user works in)
USERS = {
    "staff": User(user_id="w-a", role="staff"),                       # primary worker of A's household
    "supervisor": User(user_id="s-a", role="supervisor", communities=("A",)),  # oversees A, named nowhere
    "operator": User(user_id="ops-1", role="operator"),
    "utility": User(user_id="water-co", role="utility", utility_id="water-co"),
}
OTHERS = [User(user_id="w-b", role="staff"), User(user_id="s-b", role="supervisor", communities=("B",))]


def _roster(community: str) -> tuple[bytes, bytes]:
    household = HOUSEHOLD[community]
    staff = {"primary_worker": f"w-{community.lower()}", "supervisor": f"named-sup-{community.lower()}"}
    return household.encode(), json.dumps({"household_id": household, "community": community, "staff": staff}).encode()


def _warning(community: str) -> tuple[bytes, bytes]:
    household = HOUSEHOLD[community]
    return household.encode(), json.dumps({
        "warning_id": TICKET[community], "household_id": household, "kind": "inactivity",
        "episode_start": "2026-03-01T02:00:00Z", "detected_at": "2026-03-01T08:55:00Z", "score": 1.3,
        "severity": "high", "evidence": {"summary": "no water since 02:00"}}).encode()


def request(port: int, method: str, path: str, token: str | None, body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory):
    prefix = f"z{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path_factory.mktemp(prefix)
    store = UserStore(data_dir / "users.json")
    tokens = {}
    for user in [*USERS.values(), *OTHERS]:
        store.add(user, password=PASSWORD)
        tokens[user.user_id] = store.issue_token(user.user_id)
    worker = WorkerProcess(kafka_bootstrap, prefix, data_dir, partitions=2, extra_env={
        "ELDERWATCH_USERS_FILE": str(data_dir / "users.json")}).start()
    try:
        produce(kafka_bootstrap, worker.topic("households.roster"), [_roster("A"), _roster("B")])
        produce(kafka_bootstrap, worker.topic("anomalies"), [_warning("A"), _warning("B")])
        deadline = time.monotonic() + 60
        for community, user in (("A", "w-a"), ("B", "w-b")):
            while True:
                status, body = request(worker.port, "GET", "/api/v1/tickets", tokens[user])
                if status == 200 and [t["state"] for t in body["tickets"]] == ["dispatched"]:
                    break
                assert time.monotonic() < deadline, (status, body, worker.log_tail())
                time.sleep(0.3)
        before = {c: _ticket(worker, tokens, c) for c in HOUSEHOLD}
        yield worker, tokens
        assert {c: _ticket(worker, tokens, c) for c in HOUSEHOLD} == before  # the matrix changed nothing
    finally:
        worker.stop()


def _path(route_path: str, community: str) -> str:
    return (route_path.replace("{ticket_id}", quote(TICKET[community], safe=""))
            .replace("{household_id}", HOUSEHOLD[community]))


#: A body each route refuses once the caller is let through (400): nothing is ever applied.
REFUSED_BODY = b'{"not_a_field": 1}'


def expected(route, role: str, target: str) -> int:
    """The status the matrix asks for: ``target`` is "own" (the user's community) or "other"."""
    if not route.auth:
        return 200
    cares = role in ("staff", "supervisor")
    if route.operation_id == "list_tickets":
        return 200 if cares else 403
    if route.operation_id == "set_roster":  # the household's supervisor (by community here), not its worker
        return 400 if role == "supervisor" and target == "own" else 403
    if not cares or target == "other":
        return 403
    if route.operation_id in ("get_ticket", "get_household"):
        return 200
    if route.operation_id == "end_away":  # no body to refuse: it ends an away mode that is not set
        return 200
    return 400


CASES = [(route, role, target) for route in ROUTES for role in USERS for target in ("own", "other")]


@pytest.mark.parametrize(("route", "role", "target"), CASES,
                         ids=[f"{r.operation_id}-{role}-{t}" for r, role, t in CASES])
def test_matrix(world, route, role, target):
    worker, tokens = world
    community = {"own": "A", "other": "B"}[target]
    body = REFUSED_BODY if route.request else None
    status, answer = request(worker.port, route.method, _path(route.path, community), tokens[USERS[role].user_id], body)
    assert status == expected(route, role, target), answer
    if route.auth:  # and without credentials, or with a made-up token: 401 whoever the route is for
        assert request(worker.port, route.method, _path(route.path, community), None, body)[0] == 401
        assert request(worker.port, route.method, _path(route.path, community), "made-up-token", body)[0] == 401


def test_lists_hold_exactly_what_each_may_see(world):
    worker, tokens = world
    seen = {user: sorted(t["ticket_id"] for t in request(worker.port, "GET", "/api/v1/tickets?state=all",
                                                         tokens[user])[1]["tickets"])
            for user in ("w-a", "w-b", "s-a", "s-b")}
    assert seen == {"w-a": [TICKET["A"]], "s-a": [TICKET["A"]], "w-b": [TICKET["B"]], "s-b": [TICKET["B"]]}


def _ticket(worker, tokens, community: str) -> dict:
    status, detail = request(worker.port, "GET", _path("/api/v1/tickets/{ticket_id}", community),
                             tokens[f"w-{community.lower()}"])
    assert status == 200, detail
    return detail["ticket"]
