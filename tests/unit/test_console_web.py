"""The console's pages over the real StaffApi, without Kafka: desks held in memory and applied at once.

What a browser would do, request by request (aiohttp's test client, cookies kept): sign in, see the
list, act on a ticket through its forms, be refused without the CSRF token or from another site,
see 403 for another community's household, a 404 page, the language switch. The browser suite
(``tests/browser/``) does the same against a real worker on the real broker.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from detectors.usage import RecentUsage
from dispatch.desk import HouseholdDesk, RosterRules, handle, with_away, with_roster
from elderwatch.console.web import Console, install
from elderwatch.settings import Settings
from elderwatch.users import UserStore
from schemas.anomaly import AnomalyWarning
from schemas.households import Household
from schemas.tickets import TicketCommand
from schemas.users import User
from streams.staff_api import StaffApi, StaffAuth

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
NORTH, SOUTH = "hh-000001", "hh-000002"
TICKET_ID = f"{NORTH}/inactivity/2026-03-01T02:00:00+00:00"
TICKET = f"/tickets/{quote(TICKET_ID, safe='')}"


class MemoryDesks:
    """TicketDesks' interface for the staff API, every command applied at once (no Kafka)."""

    def __init__(self) -> None:
        self.desks: dict[str, HouseholdDesk] = {}
        self.rules = RosterRules()
        self.now = NOW

    def clock(self) -> datetime:
        return self.now

    def get(self, household_id: str) -> HouseholdDesk | None:
        return self.desks.get(household_id)

    def of_staff(self, staff_id: str) -> list[HouseholdDesk]:
        return [d for d in self.desks.values() if staff_id in d.staff()]

    def of_community(self, community: str) -> list[HouseholdDesk]:
        return [d for d in self.desks.values() if d.roster is not None and d.roster.community == community]

    async def send(self, command: TicketCommand) -> None:
        desk = self.desks.get(command.household_id) or HouseholdDesk(household_id=command.household_id)
        result = handle(desk, command, self.now, self.rules)
        self.desks[command.household_id] = result.desk
        for follow_up in result.follow_ups:
            await self.send(follow_up)

    async def send_away(self, household_id: str, away) -> None:
        self.desks[household_id] = with_away(self.desks[household_id], away)

    def roster(self, household_id: str, community: str, meters: str = "", **staff) -> None:
        household = Household(household_id=household_id, community=community, staff=staff, timezone="Asia/Shanghai",
                              meters=meters)
        desk = self.desks.get(household_id) or HouseholdDesk(household_id=household_id)
        self.desks[household_id] = with_roster(desk, household)


def warning(household_id: str = NORTH, kind: str = "inactivity", severity: str = "high") -> AnomalyWarning:
    return AnomalyWarning.model_validate({
        "warning_id": f"{household_id}/{kind}/2026-03-01T02:00:00+00:00", "household_id": household_id, "kind": kind,
        "episode_start": "2026-03-01T02:00:00Z", "detected_at": "2026-03-01T08:55:00Z", "score": 1.3,
        "severity": severity, "evidence": {"summary": "no water used since 02:00"}})


def usage_summary() -> dict:
    """A day and a half of one water reading an hour, as the detect stage would give it."""
    usage = RecentUsage("Asia/Shanghai")
    for hour in range(1, 37):
        usage.update("water", NOW - timedelta(hours=36 - hour), 3.0, 60)
    return usage.summary()


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("console") / "users.json"
    store = UserStore(path)
    for user in [User(user_id="w-north", role="staff", language="en"), User(user_id="w-south", role="staff"),
                 User(user_id="s-north", role="supervisor", communities=("north",), language="en"),
                 User(user_id="ops", role="operator", language="en")]:
        store.add(user, password=PASSWORD)
    return path


class Site:
    """The console on a test server, with one browser's cookies."""

    def __init__(self, users_file, **settings) -> None:
        self.desks = MemoryDesks()
        self.desks.roster(NORTH, "north", primary_worker="w-north", supervisor="s-north")
        self.desks.roster(SOUTH, "south", primary_worker="w-south")
        self.api = StaffApi(self.desks, StaffAuth(None), duty_desk="duty-desk", poll_s=0.001, wait_s=0.2,
                            recent_usage=lambda household_id: usage_summary() if household_id == NORTH else None)
        self.settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", users_file=users_file,
                                 secret_key="s" * 40, **settings)
        self.console = Console(self.api, self.settings, users=UserStore(users_file), clock=self.desks.clock)
        app = web.Application()
        install(app, self.console)
        self.client = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))

    async def __aenter__(self) -> "Site":
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()

    async def get(self, path: str, **kwargs):
        response = await self.client.get(path, allow_redirects=False, **kwargs)
        return response, await response.text()

    async def post(self, path: str, data: dict, **kwargs):
        response = await self.client.post(path, data=data, allow_redirects=False, **kwargs)
        return response, await response.text()

    async def csrf(self, path: str = "/") -> str:
        _, html = await self.get(path)
        return re.search(r'name="csrf" value="([^"]+)"', html).group(1)

    async def form(self, path: str, action: str) -> dict:
        """The hidden fields of the form posting to ``action`` on ``path``."""
        _, html = await self.get(path)
        form = html[html.index(f'action="{action}"'):]
        form = form[:form.index("</form>")]
        return dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', form))

    async def sign_in(self, user_id: str, password: str = PASSWORD):
        token = await self.csrf("/signin")
        return await self.post("/signin", {"user_id": user_id, "password": password, "csrf": token})


def run(coroutine):
    return asyncio.run(coroutine)


def test_pages_need_a_session_and_sign_in_sets_a_safe_cookie(users_file):
    async def scenario():
        async with Site(users_file) as site:
            response, _ = await site.get(TICKET)
            assert response.status == 303 and response.headers["Location"].startswith("/signin?next=")
            response, _ = await site.get("/fragments/tickets")
            assert response.status == 401
            response, html = await site.get("/signin")
            assert response.status == 200 and "登录" in html  # Chinese first, before anyone has signed in
            response, _ = await site.sign_in("w-north")
            assert response.status == 303 and response.headers["Location"] == "/"
            cookie = response.headers.getall("Set-Cookie")
            session = next(c for c in cookie if c.startswith("ew_session="))
            assert "HttpOnly" in session and "SameSite=Lax" in session and "Max-Age=28800" in session
            assert "Secure" not in session  # development; production sets it
            response, html = await site.get("/")
            assert response.status == 200 and "My tickets" in html  # w-north's language is English
            assert response.headers["Cache-Control"] == "no-store"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    run(scenario())


def test_wrong_password_then_rate_limit(users_file):
    async def scenario():
        async with Site(users_file, signin_attempts_per_min=2) as site:
            for _ in range(2):
                response, html = await site.sign_in("w-north", "wrong password!")
                assert response.status == 401 and "Wrong user id or password" in site.console.languages["en"].gettext(
                    "Wrong user id or password.") and "账号或密码错误" in html
            response, html = await site.sign_in("w-north")  # the right password, but the id is at its limit
            assert response.status == 429 and response.headers["Retry-After"]
            assert "登录失败次数过多" in html
            response, _ = await site.sign_in("w-south")  # another id from the same address: the address's limit
            assert response.status == 429
    run(scenario())


def test_a_ticket_through_the_forms(users_file):
    async def scenario():
        async with Site(users_file) as site:
            await site.sign_in("w-north")
            response, html = await site.get("/fragments/tickets")
            assert response.status == 200 and "Nothing needs you now" in html
            await site.desks.send(TicketCommand.warning_from(warning(), at=NOW))
            response, html = await site.get("/fragments/tickets")
            assert TICKET_ID in html and "no water used since 02:00" in html and "urgent: check now" in html
            etag = response.headers["ETag"]
            response, _ = await site.get("/fragments/tickets", headers={"If-None-Match": etag})
            assert response.status == 304

            response, html = await site.get(TICKET)
            assert response.status == 200 and "No sign of activity" in html
            assert 'data-action="acknowledge"' in html and 'data-action="feedback"' not in html
            assert html.count('class="bar"') == 36 and "usage-water" in html  # the chart, from recent_usage
            fields = await site.form(TICKET, f"{TICKET}/acknowledge")
            response, _ = await site.post(f"{TICKET}/acknowledge", fields)
            assert response.status == 303 and response.headers["Location"] == TICKET
            response, html = await site.get(TICKET)
            assert "Taken: the ticket is yours" in html and "taken" in html
            assert site.desks.get(NORTH).tickets[TICKET_ID].state == "accepted"
            # the same form again (a double tap): a duplicate, not a second action
            response, _ = await site.post(f"{TICKET}/acknowledge", fields)
            _, html = await site.get(TICKET)
            assert "Already done" in html
            # a form from before: acknowledge is no longer allowed, the reason is shown
            response, _ = await site.post(f"{TICKET}/acknowledge", {**fields, "idem": "another-key"})
            _, html = await site.get(TICKET)
            assert "Not possible any more: the ticket is now taken" in html

            fields = await site.form(TICKET, f"{TICKET}/handle")
            response, _ = await site.post(f"{TICKET}/handle", {**fields, "notes": "  "})
            _, html = await site.get(TICKET)
            assert "Please write what you found" in html
            await site.post(f"{TICKET}/handle", {**fields, "notes": "she was in the garden"})
            fields = await site.form(TICKET, f"{TICKET}/feedback")
            await site.post(f"{TICKET}/feedback", {**fields, "outcome": "false_alarm"})
            ticket = site.desks.get(NORTH).tickets[TICKET_ID]
            assert (ticket.state, ticket.outcome, ticket.notes) == ("feedback_recorded", "false_alarm",
                                                                    ("she was in the garden",))
            _, html = await site.get(TICKET)
            assert "Outcome recorded" in html and "she was in the garden" in html
    run(scenario())


def test_csrf_and_origin_are_checked_on_every_post(users_file):
    async def scenario():
        async with Site(users_file) as site:
            await site.desks.send(TicketCommand.warning_from(warning(), at=NOW))
            response, _ = await site.post("/signin", {"user_id": "w-north", "password": PASSWORD})
            assert response.status == 403  # the sign-in form too
            await site.sign_in("w-north")
            fields = await site.form(TICKET, f"{TICKET}/acknowledge")
            response, html = await site.post(f"{TICKET}/acknowledge", {"idem": fields["idem"]})
            assert response.status == 403 and "Nothing was done" in html
            response, _ = await site.post(f"{TICKET}/acknowledge", {**fields, "csrf": fields["csrf"][:-2] + "xx"})
            assert response.status == 403
            response, _ = await site.post(f"{TICKET}/acknowledge", fields, headers={"Origin": "https://evil.example"})
            assert response.status == 403
            assert site.desks.get(NORTH).tickets[TICKET_ID].state == "dispatched"
            response, _ = await site.post(f"{TICKET}/acknowledge", fields,
                                          headers={"Origin": str(site.client.make_url("/")).rstrip("/")})
            assert response.status == 303 and site.desks.get(NORTH).tickets[TICKET_ID].state == "accepted"
    run(scenario())


def test_other_communities_roles_and_unknown_pages(users_file):
    async def scenario():
        async with Site(users_file) as site:
            await site.desks.send(TicketCommand.warning_from(warning(), at=NOW))
            await site.sign_in("w-south")
            response, html = await site.get(TICKET)
            assert response.status == 403 and "无权查看" in html  # w-south reads Chinese
            assert TICKET_ID not in html and "no water" not in html
            response, _ = await site.get(f"/households/{NORTH}")
            assert response.status == 403
            token = await site.csrf()
            response, _ = await site.post(f"{TICKET}/acknowledge", {"csrf": token, "idem": "k1"})
            assert response.status == 403 and site.desks.get(NORTH).tickets[TICKET_ID].state == "dispatched"
            response, _ = await site.get("/supervisor")
            assert response.status == 403
            response, html = await site.get("/no/such/page", headers={"Accept": "text/html"})
            assert response.status == 404 and "找不到" in html
            response, _ = await site.get(f"/tickets/{quote(NORTH + '/surge/x', safe='')}")
            assert response.status == 404
    run(scenario())


def test_supervisor_sees_their_community_and_operator_is_sent_to_their_page(users_file):
    async def scenario():
        async with Site(users_file) as site:
            await site.desks.send(TicketCommand.warning_from(warning(), at=NOW))
            await site.desks.send(TicketCommand.warning_from(warning(SOUTH), at=NOW))
            await site.sign_in("s-north")
            response, html = await site.get("/supervisor")
            assert response.status == 200 and "Across your communities" in html and "north" in html
            response, html = await site.get("/")
            assert TICKET_ID in html and SOUTH not in html
            site.client.session.cookie_jar.clear()
            response, _ = await site.sign_in("ops")
            assert response.headers["Location"] == "/operator"
            response, _ = await site.get("/")
            assert response.status == 303 and response.headers["Location"] == "/operator"
            response, _ = await site.get(TICKET)
            assert response.status == 403
    run(scenario())


def test_language_switch_sign_out_and_away_mode(users_file):
    async def scenario():
        async with Site(users_file) as site:
            await site.sign_in("w-north")
            fields = await site.form("/", "/language")
            response, _ = await site.post("/language", {**fields, "language": "zh"})
            assert response.status == 303
            _, html = await site.get("/")
            assert "我的工单" in html and "现在没有需要您处理的工单" in html

            household = f"/households/{NORTH}"
            fields = await site.form(household, f"{household}/away")
            response, _ = await site.post(f"{household}/away", {**fields, "until": "2026-03-05", "reason": "hospital"})
            assert response.status == 303
            away = site.desks.get(NORTH).away
            assert away.until == datetime(2026, 3, 6, tzinfo=timezone(timedelta(hours=8))) and away.set_by == "w-north"
            _, html = await site.get(household)
            assert "外出中" in html and "hospital" in html

            fields = await site.form("/", "/signout")
            cookie = site.client.session.cookie_jar.filter_cookies(site.client.make_url("/"))["ew_session"].value
            response, _ = await site.post("/signout", fields)
            assert response.status == 303 and response.headers["Location"] == "/signin"
            # the old cookie, replayed: revoked
            site.client.session.cookie_jar.update_cookies({"ew_session": cookie})
            response, _ = await site.get("/")
            assert response.status == 303 and response.headers["Location"].startswith("/signin")
    run(scenario())


def test_static_files_and_no_users_file(users_file, tmp_path):
    async def scenario():
        async with Site(users_file) as site:
            response, css = await site.get("/static/console.css")
            assert response.status == 200 and response.content_type == "text/css" and "min-height" in css
            response, _ = await site.get("/static/nothing.js", headers={"Accept": "text/html"})
            assert response.status == 404
        site = Site(users_file)
        site.console.users = None
        async with site:
            response, html = await site.get("/signin?lang=en")
            assert response.status == 200 and "Sign-in is off" in html and "elderwatch users add" in html
    run(scenario())


def test_household_page_shows_roster_and_current_meters(users_file):
    async def scenario():
        async with Site(users_file) as site:
            site.desks.roster(NORTH, "north", primary_worker="w-north", supervisor="s-north",
                              meters="aqua:WM-1:water;grid:EM-OLD:electricity@2025-01-01T00:00:00Z/2026-01-01T00:00:00Z;"
                                     "grid:EM-9:electricity@2026-01-01T00:00:00Z")
            await site.sign_in("w-north")
            response, html = await site.get(f"/households/{NORTH}")
            assert response.status == 200 and "Household hh-000001" in html and "s-north" in html
            assert "WM-1" in html and "EM-9" in html and "EM-OLD" not in html  # no longer this household's
            assert "usage-water" in html  # its recent use too
    run(scenario())
