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


# -- the console's pages: the same matrix, signed in with a password ------------------------------------

class Browser:
    """A signed-in console session without a browser: cookies kept, redirects not followed."""

    def __init__(self, port: int) -> None:
        import http.cookiejar

        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def __call__(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        from urllib.parse import urlencode

        data = urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={"Accept": "text/html"})
        try:
            with self.opener.open(req, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def csrf(self, path: str = "/signin") -> str:
        import re

        status, html = self("GET", path)
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match, (status, html[:500])
        return match.group(1)

    def sign_in(self, user_id: str) -> "Browser":
        status, _ = self("POST", "/signin", {"csrf": self.csrf(), "user_id": user_id, "password": PASSWORD, "next": ""})
        assert status == 303, status
        return self


#: (method, path template, the roles it is for, a form the page refuses or that changes nothing)
PAGES = [
    ("GET", "/", "caring", None),
    ("GET", "/fragments/tickets", "caring", None),
    ("GET", "/tickets/{ticket_id}", "caring", None),
    ("GET", "/households/{household_id}", "caring", None),
    ("POST", "/tickets/{ticket_id}/feedback", "caring", {"outcome": "not-an-outcome"}),
    ("POST", "/households/{household_id}/away", "caring", {"until": "not-a-date"}),
    ("GET", "/supervisor", "supervisor", None),
    ("GET", "/operator", "operator", None),
]


def page_expected(path: str, method: str, for_roles: str, role: str, target: str) -> set[int]:
    """The statuses the console must answer: 403 whenever the role or the community is wrong."""
    allowed = {"caring": role in ("staff", "supervisor"), "supervisor": role == "supervisor",
               "operator": role == "operator"}[for_roles]
    if path == "/" and role == "operator":
        return {303}  # the operator's home is /operator
    if not allowed or ("{" in path and target == "other"):
        return {403}
    return {200} if method == "GET" else {303}  # an action answers with a redirect and its flash message


PAGE_CASES = [(page, role, target) for page in PAGES for role in USERS for target in ("own", "other")
              if "{" in page[1] or target == "own"]


@pytest.fixture(scope="module")
def browsers(world):
    worker, _ = world
    return {role: Browser(worker.port).sign_in(user.user_id) for role, user in USERS.items()}


@pytest.mark.parametrize(("page", "role", "target"), PAGE_CASES,
                         ids=[f"{m} {p}-{role}-{t}" for (m, p, _, _), role, t in PAGE_CASES])
def test_console_matrix(world, browsers, page, role, target):
    worker, _ = world
    method, template, for_roles, form = page
    path = _path(template, {"own": "A", "other": "B"}[target])
    browser = browsers[role]
    if method == "POST":
        form = {**form, "csrf": browser.csrf("/operator" if role == "operator" else "/")}
    status, html = browser(method, path, form)
    assert status in page_expected(template, method, for_roles, role, target), (status, html[:300])
    anonymous = Browser(worker.port)  # signed out: pages send to sign-in, actions are refused
    status, _ = anonymous(method, path, form and {**form, "csrf": anonymous.csrf()})
    assert status == (303 if method == "GET" and template != "/fragments/tickets" else 401)
