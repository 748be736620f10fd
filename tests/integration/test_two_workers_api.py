"""Two workers of one app on the real broker: every ticket stays reachable through both workers' staff APIs and
consoles.

Starts: worker A alone (every partition), a fixture of eight households with a ticket each; then worker B joins
(a rebalance splits the ``tickets-households`` partitions). Through either worker, a ticket or household whose
partition is the other's is forwarded there (200), or refused with a reason (503) -- never a 404 or an empty
answer for something that exists. The ticket list is gathered from both workers: exactly the eight tickets (or
503 with a reason while they rebalance, never a partial 200), and a staff member who looks after four of them
sees those four. The console through A (a session signed in at A; both workers have the same users file and
secret key) lists tickets of households on B, shows a ticket page of B's, and a form posted through A is applied
by B. After B stops, A holds everything and lists everything again.
"""

from __future__ import annotations

import html
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote, urlencode

from conftest import WorkerProcess, produce
from kafka.partitioner.default import murmur2

from elderwatch.users import UserStore
from schemas.users import User
from streams.readiness import RECOVERING

PARTITIONS = 4
TOKENS = {"tok-sup": "s-north", "tok-w2": "w-2"}
HOUSEHOLDS = [f"hh-{i:06d}" for i in range(1, 9)]  # partitions 2, 0, 0, 0, 3, 3, 1, 1: all four
TICKETS = {h: f"{h}/inactivity/2026-03-01T02:00:00+00:00" for h in HOUSEHOLDS}
#: w-2 looks after one household of each partition (w-1 the others): whichever way they split, some on each worker.
W2_HOUSEHOLDS = [HOUSEHOLDS[i] for i in (0, 1, 4, 6)]
PASSWORD = "two workers, one console"


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


def gathered(answer: tuple[int, dict], expected) -> bool:
    """A gathered list: True when it is exactly ``expected``; False for a 503 with a reason (rebalancing); a 200
    with anything else fails at once (a partial list is what must never happen)."""
    status, body = answer
    if status == 503:
        assert body["error"].startswith("several workers") or body["error"] == RECOVERING, body
        return False
    assert status == 200 and sorted(t["ticket_id"] for t in body["tickets"]) == sorted(expected), answer
    return True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """The console through one worker, its cookies kept (a redirect is an answer, not followed)."""

    opener = urllib.request.build_opener(_NoRedirect)

    def __init__(self, port: int) -> None:
        self.port, self.cookies = port, {}

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, str]:
        headers = {"Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = urlencode(form).encode() if form is not None else None
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers=headers)
        try:
            response = self.opener.open(request, timeout=60)
        except urllib.error.HTTPError as exc:
            response = exc
        with response:
            status, answer, text = response.status, response.headers, response.read().decode()
        for cookie in answer.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value and "Max-Age=0" not in cookie:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return status, answer, text

    def sign_in(self, user_id: str) -> None:
        self.cookies.clear()
        _, _, page = self.request("GET", "/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        status, _, page = self.request("POST", "/signin", {"user_id": user_id, "password": PASSWORD, "csrf": csrf})
        assert status == 303, (status, page[-500:])


def listed_in(page: str) -> list[str]:
    return sorted(html.unescape(t) for t in re.findall(r'data-ticket-id="([^"]+)"', page))


def test_every_ticket_is_reachable_through_both_workers(kafka_bootstrap, tmp_path):
    assert {partition(h) for h in HOUSEHOLDS} == set(range(PARTITIONS))
    prefix = f"m{uuid.uuid4().hex[:8]}"
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    users = UserStore(tmp_path / "users.json")
    for user in [User(user_id="w-2", role="staff", language="en"),
                 User(user_id="s-north", role="supervisor", communities=("north",), language="en")]:
        users.add(user, password=PASSWORD)
    # one users file and one secret key for both: a console session signed in at one is known at the other
    env = {"ELDERWATCH_STAFF_TOKENS_FILE": str(tokens), "ELDERWATCH_USERS_FILE": str(users.path),
           "ELDERWATCH_SECRET_KEY": "two-workers-test-" + "k" * 32}
    a = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "a", partitions=PARTITIONS, extra_env=env)
    b = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "b", partitions=PARTITIONS, extra_env=env)
    try:
        a.start()
        wait(lambda: ready(a), lambda r: r["ready"] and r["every_partition"], logs=[a])
        produce(kafka_bootstrap, a.topic("households.roster"), [
            (h.encode(), json.dumps({"household_id": h, "community": "north",
                                     "staff": {"primary_worker": "w-2" if h in W2_HOUSEHOLDS else "w-1",
                                               "supervisor": "s-north"}}).encode())
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

        # The list through either worker is gathered from both: exactly the eight tickets, no more, none twice;
        # w-2 sees only the four households that name them, also of the other worker's partitions.
        for worker in (a, b):
            wait(lambda: get(worker.port, "/api/v1/tickets"), lambda r: gathered(r, TICKETS.values()), logs=[a, b])
            wait(lambda: get(worker.port, "/api/v1/tickets", "tok-w2"),
                 lambda r: gathered(r, [TICKETS[h] for h in W2_HOUSEHOLDS]), logs=[a, b])
        states = (ready(a), ready(b))  # and the partitions were still split
        assert states[0]["partitions"] and states[1]["partitions"] and not states[0]["every_partition"], states

        # The console through A: its lists gathered from B too, B's ticket pages and forms forwarded to B.
        browser = Browser(a.port)
        browser.sign_in("s-north")
        page = wait(lambda: browser.request("GET", "/"), lambda r: r[0] == 200, logs=[a, b])[2]
        assert listed_in(page) == sorted(TICKETS.values())
        status, _, page = browser.request("GET", "/supervisor")
        assert status == 200 and f"{len(HOUSEHOLDS)} households: north" in page
        browser.sign_in("w-2")
        status, _, page = browser.request("GET", "/fragments/tickets")
        assert status == 200 and listed_in(page) == sorted(TICKETS[h] for h in W2_HOUSEHOLDS), page[-500:]
        theirs = next(h for h in W2_HOUSEHOLDS if owner[partition(h)] is b)  # on B, asked through A
        path = f"/tickets/{quote(TICKETS[theirs], safe='')}"
        status, _, page = browser.request("GET", path)
        assert status == 200 and theirs in page and f'action="{path}/acknowledge"' in page, page[-500:]
        form = page[page.index(f'action="{path}/acknowledge"'):]
        fields = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', form[:form.index("</form>")]))
        status, answer, _ = browser.request("POST", f"{path}/acknowledge", fields)
        assert status == 303 and answer["Location"] == path
        ticket = wait(lambda: get(b.port, f"/api/v1/tickets/{quote(TICKETS[theirs], safe='')}", "tok-w2"),
                      lambda r: r[0] == 200 and r[1]["ticket"]["state"] == "accepted", logs=[a, b])[1]["ticket"]
        assert ticket["assignee"] == "w-2"  # applied by B, as w-2
    finally:
        b.stop()
    try:
        # B gone: A takes every partition back, and lists everything again.
        wait(lambda: ready(a), lambda r: r["ready"] and r["every_partition"], logs=[a])
        status, listed = wait(lambda: get(a.port, "/api/v1/tickets"), lambda r: r[0] == 200, logs=[a])
        assert sorted(t["ticket_id"] for t in listed["tickets"]) == sorted(TICKETS.values())
    finally:
        a.stop()
