"""The console never shows a page from an incomplete table: 503 with the reason (and Retry-After) while the worker
recovers, for lists without every partition, and for a household whose partition is another worker's. Over the
console's test site (tests/unit/test_console_web.py) with a stand-in readiness."""

from __future__ import annotations

import html

from test_console_web import NORTH, TICKET, Site, run, users_file  # noqa: F401 (users_file: the fixture)

from streams.readiness import LISTS_NEED_EVERY_PARTITION, RECOVERING, Remote, Unavailable


class StandIn:
    """streams.readiness.Readiness as the console asks it."""

    def __init__(self, *, recovering=False, every_partition=True, remote=()) -> None:
        self.recovering, self.every_partition, self.remote = recovering, every_partition, set(remote)

    def list_refusal(self):
        if self.recovering:
            return RECOVERING
        return None if self.every_partition else LISTS_NEED_EVERY_PARTITION

    def owner(self, household_id):
        if self.recovering:
            raise Unavailable(RECOVERING)
        return Remote("http://other:6066") if household_id in self.remote else None


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


def test_several_workers_lists_refused_and_other_workers_households_refused(users_file):
    async def scenario():
        async with Site(users_file) as site:
            await site.sign_in("s-north")
            site.api.readiness = StandIn(every_partition=False, remote={NORTH})
            for path in ("/", "/fragments/tickets", "/supervisor"):
                response, text = await site.get(path)
                assert response.status == 503 and LISTS_NEED_EVERY_PARTITION in html.unescape(text), path
            response, text = await site.get(f"/households/{NORTH}")
            assert response.status == 503 and "on another worker" in text
            site.api.readiness = StandIn(every_partition=False)  # the household is here: answered
            assert (await site.get(f"/households/{NORTH}"))[0].status == 200
            assert (await site.get("/signin"))[0].status in (200, 303)  # pages without tables are not refused
    run(scenario())
