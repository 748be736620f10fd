"""The console never shows a page from an incomplete table, and with several workers answers from all of them.

Over the console's test site (tests/unit/test_console_web.py) with a stand-in readiness: 503 with the reason
(and Retry-After) while the worker recovers. Two sites as two workers (the same users file and secret key,
real HTTP between them): worker A holds partitions 0 and 1, worker B 2 and 3. A's lists are gathered from B
over the internal desks route with the session cookie (503 with the reason when B cannot answer or does not
know the session); a ticket page of a household on B is forwarded to B through A, its forms too, and B checks
the CSRF token, the Origin and the access rule; a forwarded page is never forwarded again."""

from __future__ import annotations

import html

from test_console_web import NORTH, SOUTH, TICKET, TICKET_ID, NOW, Site, run, users_file, warning  # noqa: F401
from yarl import URL

from elderwatch.console.sessions import Sessions
from elderwatch.console.web import SESSIONS_DIFFER, forward_page
from schemas.tickets import TicketCommand
from streams.gather import PeerHttp, fetch_desks
from streams.readiness import FORWARDED_LIST, NO_OWNER, RECOVERING, Remote, Unavailable
from streams.staff_api import MOVED, install_internal

#: A household of the north community on worker A (NORTH is on B, SOUTH on A).
LOCAL = "hh-000003"
LOCAL_TICKET_ID = f"{LOCAL}/inactivity/2026-03-01T02:00:00+00:00"
PARTITION = {NORTH: 2, SOUTH: 1, LOCAL: 0}


class StandIn:
    """streams.readiness.Readiness as the staff API and the console ask it: this worker's partitions, the others'."""

    def __init__(self, *, recovering=False, partitions=(0, 1, 2, 3), peers=None) -> None:
        self.recovering, self.partitions, self.peers = recovering, list(partitions), dict(peers or {})

    def recovered(self):
        return not self.recovering

    def ensure_recovered(self):
        if self.recovering:
            raise Unavailable(RECOVERING)

    def table_partitions(self):
        return self.partitions

    def partition_count(self):
        return 4

    def holds_every_partition(self):
        return len(self.partitions) == 4

    def partition_of(self, household_id):
        return PARTITION[household_id]

    def gather_plan(self):
        self.ensure_recovered()
        return self.partitions, self.peers

    def owner(self, household_id):
        self.ensure_recovered()
        if PARTITION[household_id] in self.partitions:
            return None
        for url, partitions in self.peers.items():
            if PARTITION[household_id] in partitions:
                return Remote(URL(url))
        raise Unavailable(NO_OWNER)


def test_while_recovering_lists_and_households_answer_503_with_the_reason(users_file):
    async def scenario():
        async with Site(users_file) as site:
            await site.sign_in("s-north")
            site.api.readiness = StandIn(recovering=True)
            for path in ("/", "/fragments/tickets", "/supervisor", TICKET, f"/households/{NORTH}"):
                response, text = await site.get(path)
                assert response.status == 503 and response.headers["Retry-After"] == "5", path
                assert RECOVERING in html.unescape(text), path
            site.api.readiness = StandIn()
            for path in ("/", "/fragments/tickets", "/supervisor", f"/households/{NORTH}"):
                assert (await site.get(path))[0].status == 200, path
    run(scenario())


class TwoWorkers:
    """Sites A and B as two workers of one app: A holds partitions 0 and 1, B 2 and 3."""

    def __init__(self, users_file) -> None:
        self.a, self.b = Site(users_file), Site(users_file)
        for site in (self.a, self.b):
            site.desks.roster(LOCAL, "north", primary_worker="w-north", supervisor="s-north")
            install_internal(site.client.server.app, site.api)
            site.api.session_user = site.console.session_user  # what register_console does
        self.http = PeerHttp(timeout_s=10)

    async def __aenter__(self) -> "TwoWorkers":
        await self.a.__aenter__()
        await self.b.__aenter__()
        urls = {site: str(site.client.make_url("/")).rstrip("/") for site in (self.a, self.b)}
        self.a.api.readiness = StandIn(partitions=(0, 1), peers={urls[self.b]: [2, 3]})
        self.b.api.readiness = StandIn(partitions=(2, 3), peers={urls[self.a]: [0, 1]})
        for site in (self.a, self.b):
            site.api.fetch_desks = lambda url, credentials: fetch_desks(self.http.session(), url, credentials)
            site.console.forward = lambda url, request: forward_page(self.http.session(), url, request)
        # NORTH's ticket is on B only: A's copy of NORTH's desk is a standby's, behind (no ticket yet)
        await self.b.desks.send(TicketCommand.warning_from(warning(), at=NOW))
        await self.a.desks.send(TicketCommand.warning_from(warning(LOCAL), at=NOW))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.close()
        await self.a.__aexit__(*exc)
        await self.b.__aexit__(*exc)


async def sign_in_anew(site: Site, user_id: str) -> None:
    site.client.session.cookie_jar.clear()
    response, _ = await site.sign_in(user_id)
    assert response.status == 303


def test_lists_through_one_worker_are_gathered_from_both(users_file):
    async def scenario():
        async with TwoWorkers(users_file) as w:
            a, b = w.a, w.b
            await a.sign_in("w-north")  # at A only: B knows the session by the shared secret key
            for path in ("/", "/fragments/tickets"):
                response, text = await a.get(path)
                assert response.status == 200, (path, text)
                assert TICKET_ID in text and LOCAL_TICKET_ID in text, path  # B's household and A's
            await sign_in_anew(a, "s-north")
            response, text = await a.get("/supervisor")
            assert response.status == 200 and "2 households: north" in text  # NORTH from B, LOCAL from A
            await sign_in_anew(a, "w-south")  # nothing of theirs on either worker: an empty list, not someone else's
            response, text = await a.get("/")
            assert response.status == 200 and TICKET_ID not in text and LOCAL_TICKET_ID not in text

            await sign_in_anew(a, "w-north")
            response, text = await a.get("/", headers={"X-Elderwatch-Forwarded": "1"})
            assert response.status == 503 and FORWARDED_LIST in html.unescape(text)
            b.api.readiness.recovering = True  # B cannot answer: A does not list half
            response, text = await a.get("/")
            assert response.status == 503 and response.headers["Retry-After"] == "5"
            assert f"cannot answer now: {RECOVERING}" in html.unescape(text)
            b.api.readiness.recovering = False
            b.console.sessions = Sessions(b"another secret key" * 2)  # B signs sessions with another key
            response, text = await a.get("/")
            assert response.status == 503 and "ELDERWATCH_SECRET_KEY" in html.unescape(text)
    run(scenario())


def test_a_household_page_on_the_other_worker_is_forwarded_and_its_forms_checked_there(users_file):
    async def scenario():
        async with TwoWorkers(users_file) as w:
            a, b = w.a, w.b
            await a.sign_in("w-north")
            response, text = await a.get(TICKET)  # A has no such ticket: only B can answer 200
            assert response.status == 200 and "No sign of activity" in text, text
            assert (await a.get(f"/households/{NORTH}"))[0].status == 200
            fields = await a.form(TICKET, f"{TICKET}/acknowledge")
            response, _ = await a.post(f"{TICKET}/acknowledge", {"idem": fields["idem"]})  # no CSRF token: B refuses
            assert response.status == 403
            response, _ = await a.post(f"{TICKET}/acknowledge", fields, headers={"Origin": "https://evil.example"})
            assert response.status == 403 and b.desks.get(NORTH).tickets[TICKET_ID].state == "dispatched"
            origin = str(a.client.make_url("/")).rstrip("/")  # the address the browser used: A's
            response, _ = await a.post(f"{TICKET}/acknowledge", fields, headers={"Origin": origin})
            assert response.status == 303 and response.headers["Location"] == TICKET
            assert b.desks.get(NORTH).tickets[TICKET_ID].state == "accepted"  # applied on B
            assert TICKET_ID not in a.desks.get(NORTH).tickets  # not on A
            response, text = await a.get(TICKET)  # B's flash message came back through A's cookie
            assert response.status == 200 and "Taken: the ticket is yours" in text

            response, text = await a.get(TICKET, headers={"X-Elderwatch-Forwarded": "1"})
            assert response.status == 503 and MOVED in html.unescape(text)  # never forwarded twice
            response, _ = await a.get(f"/households/{LOCAL}")  # A's own household: answered by A
            assert response.status == 200

            await sign_in_anew(a, "w-south")
            assert (await a.get(TICKET))[0].status == 403  # B's access rule, through A

            await sign_in_anew(a, "w-north")
            b.console.sessions = Sessions(b"another secret key" * 2)
            response, text = await a.get(TICKET)
            assert response.status == 503 and SESSIONS_DIFFER in html.unescape(text)
    run(scenario())


def test_the_operator_page_lists_the_readings_loop_beside_the_agents():
    """Ingest and detect are no faust agents: the operator's agents table shows the readings loop's state."""
    from types import SimpleNamespace

    from elderwatch.console.operations import agent_health

    for running, recovered, state, healthy in ((True, True, "running", True), (True, False, "recovering", False),
                                               (False, False, "restarting", False)):
        app = SimpleNamespace(agents={}, elderwatch_readings=SimpleNamespace(running=running, recovered=recovered))
        [row] = agent_health(app)
        assert (row.name, row.state, row.healthy) == ("readings", state, healthy)
