"""``streams.readiness`` over a stand-in faust app: /ready's answer, crashed agents counted, which worker holds a
household; the staff API's gate (503 while recovering, lists refused without every partition, a household on
another worker forwarded once); the ticket indexes rebuilt only from a recovered table; the valid-alert ratio's
counters."""

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
from streams.metrics import ReadinessMetrics, TicketMetrics
from streams.readiness import LISTS_NEED_EVERY_PARTITION, NO_OWNER, RECOVERING, Readiness, Remote, Unavailable
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

    def __init__(self, *, recovered=True, rebalancing=False, partitions=(0, 1, 2, 3), owners=None) -> None:
        self.tables = Tables(tickets=SimpleNamespace(
            partitions=4, changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG)))
        self.tables.recovery = SimpleNamespace(recovered=recovered)
        self.rebalancing = rebalancing
        self.agents = {"streams.tickets.tickets": Agent(Actor()), "streams.detect.detect": Agent(Actor())}
        self.partitions = set(partitions)
        self.assignor = SimpleNamespace(assigned_actives=lambda: {TP(CHANGELOG, p) for p in self.partitions}
                                        | {TP("other", 9)})
        self.owners = owners or {}
        self.router = SimpleNamespace(key_store=self._key_store)
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
    assert r.list_refusal() is None and r.owner("hh-1") is None


def test_several_workers_refuse_lists_and_route_households():
    r = readiness(FakeApp(partitions=(0, 1), owners={"hh-here": HERE, "hh-there": THERE}))
    assert r.list_refusal() == LISTS_NEED_EVERY_PARTITION
    assert r.owner("hh-here") is None
    assert r.owner("hh-there") == Remote(THERE)
    with pytest.raises(Unavailable) as exc:
        r.owner("hh-nobody")
    assert exc.value.reason == NO_OWNER


def test_while_recovering_nothing_is_answered():
    r = readiness(FakeApp(recovered=False))
    assert r.list_refusal() == RECOVERING
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


def test_the_api_never_answers_a_partial_list_and_forwards_a_household_once():
    a = api(FakeApp(partitions=(0, 1), owners={"hh-here": HERE, "hh-there": THERE}))
    with pytest.raises(ApiError) as exc:
        owner_of(a, ROUTE["list_tickets"], {}, request())
    assert (exc.value.status, exc.value.message) == (503, LISTS_NEED_EVERY_PARTITION)
    assert owner_of(a, ROUTE["get_ticket"], {"ticket_id": "hh-here/surge/x"}, request()) is None
    assert owner_of(a, ROUTE["get_ticket"], {"ticket_id": "hh-there/surge/x"}, request()) == Remote(THERE)
    assert owner_of(a, ROUTE["set_away"], {"household_id": "hh-there"}, request()) == Remote(THERE)
    with pytest.raises(ApiError) as exc:  # it came from a worker that thought this one held it: not again
        owner_of(a, ROUTE["get_ticket"], {"ticket_id": "hh-there/surge/x"}, request(forwarded=True))
    assert (exc.value.status, exc.value.message) == (503, MOVED)


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
