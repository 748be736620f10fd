"""``streams.readiness`` over a stand-in faust app: /ready's answer, crashed agents counted, which worker holds a
household and what a list gathers from whom; the staff API's gate (503 while recovering, a household on another
worker forwarded once) and its gathered list (only the partitions active here, every other worker's asked with
the caller's credentials, 503 with a reason unless every partition was answered); the ticket indexes rebuilt only
from a recovered table; the valid-alert ratio's counters."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry
from yarl import URL

from dispatch.desk import HouseholdDesk, RosterRules, with_roster
from schemas.households import Household
from schemas.openapi import ROUTES
from schemas.users import User
from streams.metrics import ReadinessMetrics, TicketMetrics
from streams.gather import internal_answer
from streams.readiness import (ASSIGNMENT_CHANGING, FORWARDED_LIST, NO_OWNER, RECOVERING, Readiness, Remote,
                               Unavailable)
from streams.staff_api import MOVED, ApiError, StaffApi, StaffAuth, owner_of
from streams.tickets import TicketDesks, check_deadlines

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
CHANGELOG = "ew-tickets-households-changelog"
HERE, THERE = URL("http://127.0.0.1:6066"), URL("http://127.0.0.1:6067")


class Actor:
    def __init__(self, crashed: bool = False) -> None:
        self.crashed, self.actor_task = crashed, None


class Agent:
    def __init__(self, *actors: Actor) -> None:
        self._actors, self._on_error = set(actors), None


class Tables(dict):
    """faust's TableManager: the tables by name, and the recovery."""

    recovery = None


class FakeApp:
    """What Readiness reads of a faust app."""

    def __init__(self, *, recovered=True, rebalancing=False, partitions=(0, 1, 2, 3), owners=None,
                 metadata=None, key_partitions=None) -> None:
        self.tables = Tables(tickets=SimpleNamespace(
            partitions=4, changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG,
                                                          prepare_key=lambda key, serializer: (key, None))))
        self.tables.recovery = SimpleNamespace(recovered=recovered)
        self.rebalancing = rebalancing
        self.agents = {"streams.tickets.tickets": Agent(Actor()), "streams.detect.detect": Agent(Actor())}
        self.partitions = set(partitions)
        self.assignor = SimpleNamespace(assigned_actives=lambda: {TP(CHANGELOG, p) for p in self.partitions}
                                        | {TP("other", 9)})
        self.owners = owners or {}
        self.router = SimpleNamespace(key_store=self._key_store, table_metadata=lambda table: self.metadata)
        self.metadata = metadata if metadata is not None else {str(HERE): {CHANGELOG: sorted(self.partitions)}}
        self.key_partitions = key_partitions or {}
        self.producer = SimpleNamespace(key_partition=lambda topic, key: TP(topic, self.key_partitions[key.decode()]))
        self.conf = SimpleNamespace(canonical_url=HERE, topic_partitions=4)

    def _key_store(self, table, key: bytes) -> URL:
        return self.owners[key.decode()]  # KeyError: no worker holds it


def readiness(app: FakeApp) -> Readiness:
    return Readiness(app, ReadinessMetrics(CollectorRegistry()), table_name="tickets")


def gauge(r: Readiness) -> float:
    return r.metrics.registry.get_sample_value("elderwatch_ready")


def crashes(r: Readiness, agent: str) -> float:
    return r.metrics.registry.get_sample_value("elderwatch_agent_crashes_total", {"agent": agent})


# -- /ready ----------------------------------------------------------------------------------------
def test_ready_when_recovered_and_every_agent_runs():
    r = readiness(FakeApp())
    ready, body = r.check()
    assert ready and body["reasons"] == [] and body["every_partition"] and body["partitions"] == [0, 1, 2, 3]
    assert gauge(r) == 1


@pytest.mark.parametrize("app", [FakeApp(recovered=False), FakeApp(rebalancing=True)], ids=["recovering", "rebalancing"])
def test_not_ready_while_recovering(app):
    r = readiness(app)
    ready, body = r.check()
    assert not ready and body["reasons"] == [RECOVERING] and gauge(r) == 0


def test_a_crashed_agent_is_counted_and_makes_the_worker_unready_until_a_new_actor_runs():
    app = FakeApp()
    r = readiness(app)
    r.watch_agents()
    assert crashes(r, "tickets") == 0  # exported from the start
    agent = app.agents["streams.tickets.tickets"]
    actor = next(iter(agent._actors))
    asyncio.run(agent._on_error(agent, RuntimeError("boom")))  # what faust calls before marking it crashed
    actor.crashed = True
    ready, body = r.check()
    assert not ready and body["reasons"] == ["agents not running: tickets"] and crashes(r, "tickets") == 1
    agent._actors.add(Actor())  # faust's supervisor started a new one
    assert r.check()[0] and crashes(r, "tickets") == 1 and crashes(r, "detect") == 0


def test_an_agent_with_a_finished_task_is_down():
    app = FakeApp()
    done = Actor()
    done.actor_task = SimpleNamespace(done=lambda: True)
    app.agents["streams.detect.detect"] = Agent(done)
    assert readiness(app).down_agents() == ["detect"]


def test_the_previous_error_handler_still_runs():
    app = FakeApp()
    seen = []
    agent = app.agents["streams.detect.detect"]

    async def previous(agent, exc):
        seen.append(type(exc).__name__)
    agent._on_error = previous
    readiness(app).watch_agents()
    asyncio.run(agent._on_error(agent, ValueError()))
    assert seen == ["ValueError"]


# -- which worker holds a household ----------------------------------------------------------------
def test_one_worker_with_every_partition_answers_everything_here():
    r = readiness(FakeApp())
    assert r.owner("hh-1") is None and r.gather_plan() == ([0, 1, 2, 3], {})


def test_several_workers_route_households_and_plan_a_gather():
    app = FakeApp(partitions=(0, 1), owners={"hh-here": HERE, "hh-there": THERE},
                  metadata={"http://127.0.0.1:6066": {CHANGELOG: [1, 0]}, str(THERE): {CHANGELOG: [3, 2]},
                            "http://127.0.0.1:6068": {CHANGELOG: []}})  # a worker without table partitions
    r = readiness(app)
    assert r.owner("hh-here") is None
    assert r.owner("hh-there") == Remote(THERE)
    with pytest.raises(Unavailable) as exc:
        r.owner("hh-nobody")
    assert exc.value.reason == NO_OWNER
    assert r.gather_plan() == ([0, 1], {str(THERE): [2, 3]})


def test_a_gather_is_refused_while_the_assignors_view_disagrees_with_this_workers_assignment():
    app = FakeApp(partitions=(0, 1), metadata={str(HERE): {CHANGELOG: [0]}, str(THERE): {CHANGELOG: [1, 2, 3]}})
    with pytest.raises(Unavailable) as exc:
        readiness(app).gather_plan()
    assert exc.value.reason == ASSIGNMENT_CHANGING


def test_a_households_partition_is_the_producers_or_kafkas_default():
    r = readiness(FakeApp(key_partitions={"hh-1": 3}))
    assert r.partition_of("hh-1") == 3
    r.app.producer = SimpleNamespace(key_partition=lambda topic, key: (_ for _ in ()).throw(TypeError("no metadata")))
    from kafka.partitioner.default import murmur2
    assert r.partition_of("hh-000001") == (murmur2(b"hh-000001") & 0x7FFFFFFF) % 4 == 2  # the integration test's


def test_while_recovering_nothing_is_answered():
    r = readiness(FakeApp(recovered=False))
    with pytest.raises(Unavailable):
        r.gather_plan()
    with pytest.raises(Unavailable):
        r.owner("hh-1")


# -- the staff API's gate ------------------------------------------------------------------------------
ROUTE = {r.operation_id: r for r in ROUTES}


def api(app: FakeApp) -> StaffApi:
    return StaffApi(desks=None, auth=StaffAuth(None), duty_desk="duty", readiness=readiness(app))


def request(forwarded: bool = False):
    return SimpleNamespace(headers={"X-Elderwatch-Forwarded": "1"} if forwarded else {})


def test_the_api_answers_503_recovering_except_its_document():
    a = api(FakeApp(recovered=False))
    for operation, path in [("list_tickets", {}), ("get_household", {"household_id": "hh-1"}),
                            ("acknowledge_ticket", {"ticket_id": "hh-1/surge/x"})]:
        with pytest.raises(ApiError) as exc:
            owner_of(a, ROUTE[operation], path, request())
        assert (exc.value.status, exc.value.message) == (503, RECOVERING)
    assert owner_of(a, ROUTE["get_openapi"], {}, request()) is None


def test_the_api_gathers_a_list_here_and_forwards_a_household_once():
    a = api(FakeApp(partitions=(0, 1), owners={"hh-here": HERE, "hh-there": THERE}))
    assert owner_of(a, ROUTE["list_tickets"], {}, request()) is None  # gathered by the handler (gather_desks)
    assert owner_of(a, ROUTE["get_ticket"], {"ticket_id": "hh-here/surge/x"}, request()) is None
    assert owner_of(a, ROUTE["get_ticket"], {"ticket_id": "hh-there/surge/x"}, request()) == Remote(THERE)
    assert owner_of(a, ROUTE["set_away"], {"household_id": "hh-there"}, request()) == Remote(THERE)
    with pytest.raises(ApiError) as exc:  # it came from a worker that thought this one held it: not again
        owner_of(a, ROUTE["get_ticket"], {"ticket_id": "hh-there/surge/x"}, request(forwarded=True))
    assert (exc.value.status, exc.value.message) == (503, MOVED)


# -- the gathered list -------------------------------------------------------------------------------------------
#: hh-0 and hh-1 on this worker's partitions 0 and 1; hh-2 and hh-3 on the other worker's 2 and 3 (this worker's
#: table has them too: a standby replica, behind); hh-4 on partition 0 is w-2's, not w-1's.
KEY_PARTITIONS = {"hh-0": 0, "hh-1": 1, "hh-2": 2, "hh-3": 3, "hh-4": 0}
W1 = User(user_id="w-1", role="staff")


def household_desk(household_id: str, *, worker: str = "w-1", stale: bool = False) -> HouseholdDesk:
    desk = with_roster(HouseholdDesk(household_id=household_id),
                       Household(household_id=household_id, community="north", staff={"primary_worker": worker}))
    return desk.model_copy(update={"suppressed": 7}) if stale else desk  # stale: another state than the owner's


def split_api(*, answer=None, metadata=None) -> tuple[StaffApi, list]:
    app = FakeApp(partitions=(0, 1), key_partitions=KEY_PARTITIONS,
                  metadata=metadata or {str(HERE): {CHANGELOG: [0, 1]}, str(THERE): {CHANGELOG: [2, 3]}})
    d = TicketDesks({}, topics=None, rules=RosterRules(), clock=lambda: T0)
    for h in KEY_PARTITIONS:
        desk = household_desk(h, worker="w-2" if h == "hh-4" else "w-1", stale=h == "hh-2")
        d.table[h.encode()] = desk.model_dump_json().encode()
    a = StaffApi(desks=d, auth=StaffAuth(None), duty_desk="duty", readiness=readiness(app))
    asked = []

    async def fetch_desks(url, credentials):
        asked.append((url, dict(credentials)))
        if answer is not None:
            return answer
        return 200, internal_answer([2, 3], [household_desk("hh-2"), household_desk("hh-3")], W1)
    a.fetch_desks = fetch_desks
    return a, asked


def test_a_list_is_this_workers_active_partitions_and_the_other_workers_answer():
    a, asked = split_api()
    desks = asyncio.run(a.gather_desks(W1, {"X-Staff-Id": "w-1"}))
    assert [d.household_id for d in desks] == ["hh-0", "hh-1", "hh-2", "hh-3"]  # not w-2's hh-4
    assert desks[2] == household_desk("hh-2")  # the other worker's, not this worker's stale standby copy
    assert asked == [(str(THERE), {"X-Staff-Id": "w-1"})]
    # what this worker tells a peer gathering for w-1: its active partitions only, not the standby's households
    status, body = a.internal_desks({"X-Staff-Id": "w-1"}, {})
    assert status == 200 and body["partitions"] == [0, 1]
    assert [d["household_id"] for d in body["desks"]] == ["hh-0", "hh-1"]
    with pytest.raises(ApiError) as exc:
        a.internal_desks({}, {})
    assert exc.value.status == 401
    a.session_user = lambda cookies: W1 if cookies.get("ew_session") == "good" else None  # the console's resolver
    assert a.internal_desks({}, {"ew_session": "good"})[0] == 200
    with pytest.raises(ApiError):
        a.internal_desks({}, {"ew_session": "bad"})


@pytest.mark.parametrize("answer, expected", [
    ((503, {"error": RECOVERING}), f"several workers: worker {THERE} cannot answer now: {RECOVERING}"),
    ((401, {"error": "authentication required"}), "ELDERWATCH_SECRET_KEY"),
    ((200, internal_answer([2], [], W1)), f"worker {THERE} no longer holds partitions [3]"),
])
def test_a_list_without_every_partition_is_a_503_with_the_reason(answer, expected):
    a, _ = split_api(answer=answer)
    with pytest.raises(ApiError) as exc:
        asyncio.run(a.list_tickets(W1, {}, b"", credentials={"X-Staff-Id": "w-1"}))
    assert exc.value.status == 503 and expected in exc.value.message


def test_a_worker_that_does_not_answer_or_a_forwarded_list_is_a_503_and_nothing_is_asked_twice():
    a, asked = split_api()

    async def down(url, credentials):
        raise Unavailable(f"several workers: worker {url} did not answer the list's gather (ClientConnectorError)")
    a.fetch_desks = down
    with pytest.raises(ApiError) as exc:
        asyncio.run(a.gather_desks(W1, {}))
    assert exc.value.status == 503 and "did not answer" in exc.value.message
    a, asked = split_api()
    with pytest.raises(ApiError) as exc:
        asyncio.run(a.gather_desks(W1, {}, forwarded=True))
    assert (exc.value.status, exc.value.message, asked) == (503, FORWARDED_LIST, [])
    with pytest.raises(ApiError) as exc:  # a role without households: 403 before anyone is asked
        asyncio.run(a.gather_desks(User(user_id="ops", role="operator"), {}))
    assert exc.value.status == 403 and asked == []


def test_a_list_with_a_partition_nobody_holds_is_a_503():
    a, asked = split_api(metadata={str(HERE): {CHANGELOG: [0, 1]}, str(THERE): {CHANGELOG: [2]}})
    a.fetch_desks = None
    with pytest.raises(ApiError) as exc:
        asyncio.run(a.gather_desks(W1, {}))
    assert exc.value.status == 503 and "cannot ask the others" in exc.value.message
    a, asked = split_api(metadata={str(HERE): {CHANGELOG: [0, 1]}, str(THERE): {CHANGELOG: [2]}},
                         answer=(200, internal_answer([2], [household_desk("hh-2")], W1)))
    with pytest.raises(ApiError) as exc:
        asyncio.run(a.gather_desks(W1, {}))
    assert exc.value.message == "several workers: partitions [3] have no worker now (rebalancing)"


# -- the ticket indexes ------------------------------------------------------------------------------------
def test_the_indexes_are_rebuilt_only_from_a_recovered_table():
    recovered = [False]
    d = TicketDesks({}, topics=None, rules=RosterRules(), clock=lambda: T0)
    d.recovered = lambda: recovered[0]
    desk = with_roster(HouseholdDesk(household_id="hh-1"),
                       Household(household_id="hh-1", community="north", staff={"primary_worker": "w-1"}))
    d.table[b"hh-1"] = desk.model_dump_json().encode()  # restored from the changelog, not indexed yet
    with pytest.raises(Unavailable):
        d.of_staff("w-1")
    with pytest.raises(Unavailable):
        d.of_community("north")
    metrics = TicketMetrics(CollectorRegistry())
    assert asyncio.run(check_deadlines(d, metrics, 1.0)) == 0 and d.index_stale  # the tick waits
    recovered[0] = True
    assert [x.household_id for x in d.of_staff("w-1")] == ["hh-1"] and not d.index_stale


# -- the valid-alert ratio adds up across workers ------------------------------------------------------------
def test_the_valid_alert_ratio_has_counters_that_sum_across_workers():
    workers = [TicketMetrics(CollectorRegistry()), TicketMetrics(CollectorRegistry())]
    for outcome in ("confirmed_emergency", "false_alarm", "false_alarm", "meter_fault"):
        workers[0].outcome(outcome)
    workers[1].outcome("needed_help")

    def total(name):
        return sum(w.registry.get_sample_value(name) for w in workers)
    valid, welfare = total("elderwatch_tickets_valid_outcomes_total"), total("elderwatch_tickets_welfare_outcomes_total")
    assert (valid, welfare) == (2, 4) and valid / welfare == 0.5
    # the per-worker gauges (1/3 and 1/1) averaged would say 0.67: that is why they are not for summing
    ratios = [w.registry.get_sample_value("elderwatch_tickets_valid_alert_ratio") for w in workers]
    assert ratios == [pytest.approx(1 / 3), 1.0]


# -- a real faust agent (no broker: it reads an in-memory channel) -----------------------------------------------
CRASH_A_FAUST_AGENT = """
import asyncio, json, os, sys
import faust
from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry
from streams.metrics import ReadinessMetrics
from streams.readiness import Readiness

async def main(restart):
    app = faust.App("readiness-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False,
                    web_enabled=False, **({} if restart else {"agent_supervisor": CrashingSupervisor}))
    channel = app.channel()

    @app.agent(channel, name="boom")
    async def boom(stream):
        async for _ in stream:
            raise RuntimeError("a bug")

    r = Readiness(app, ReadinessMetrics(CollectorRegistry()), table_name="unused")
    r.watch_agents()
    app.flow_control.resume()
    agent = app.agents["boom"]
    await agent.start()
    down = [r.down_agents()]
    await channel.send(value=b"x")
    for _ in range(200):  # until faust has marked the actor crashed and its supervisor has acted
        await asyncio.sleep(0.05)
        crashed = any(getattr(actor, "crashed", False) for actor in agent._actors)
        if crashed and (not restart or not r.down_agents()):
            break
    down.append(r.down_agents())
    crashes = r.metrics.registry.get_sample_value("elderwatch_agent_crashes_total", {"agent": "boom"})
    print(json.dumps({"down": down, "crashes": crashes, "actors": len(agent._actors)}), flush=True)
    os._exit(0)  # stopping a supervisor that has just restarted an actor can wait forever: not what is tested

asyncio.run(main(sys.argv[1] == "restart"))
"""


def crash_a_faust_agent(mode: str) -> dict:
    import json
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", CRASH_A_FAUST_AGENT, mode], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_real_faust_agent_that_raises_is_counted_and_replaced():
    """What streams/readiness.py relies on in faust-streaming 0.15.3: the agent's ``_on_error`` is called, the
    actor is marked crashed, the supervisor starts a new one in ``_actors``."""
    assert crash_a_faust_agent("restart") == {"down": [[], []], "crashes": 1.0, "actors": 2}


def test_a_real_faust_agent_that_is_not_restarted_stays_down():
    assert crash_a_faust_agent("no-restart") == {"down": [[], ["boom"]], "crashes": 1.0, "actors": 1}
