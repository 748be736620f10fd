"""Is this worker ready to answer, and which worker holds a household: ``/ready`` and the staff API's gate.

``/health`` is liveness: the process answers. ``/ready`` (:meth:`Readiness.check`) is 200 only when

1. the table recovery of the current assignment has ended (:attr:`streams.recovery.SeekFirstRecovery.recovered`:
   cleared when a rebalance starts, set once the stream partitions are handed back to the agents), and
2. ingest and detect (:mod:`streams.readings_loop`, not agents) run and hold their partitions' states, and
3. every agent has a running actor. An actor that raised is counted once in
   ``elderwatch_agent_crashes_total{agent}`` (faust calls the agent's error handler, installed by
   :meth:`Readiness.watch_agents`) and its agent counts as down until faust's supervisor has started a
   new actor that runs.

Otherwise 503 with the reasons. ``elderwatch_ready`` is the same answer as a gauge (refreshed on every
``/ready`` and ``/metrics`` request).

Several workers share the ``tickets-households`` table by partition. :meth:`Readiness.owner` says where a
household's partition is active (this worker, another worker's URL, or nobody now), from faust's
assignor (``app.router.key_store``, which ``app.table_route`` uses): the staff API and the console forward
a request about one household there. A list (every household the caller may see) is gathered
(:mod:`streams.gather`): :meth:`Readiness.gather_plan` gives the partitions active here and, from faust's
``app.router.table_metadata``, the partitions every other worker holds; :meth:`Readiness.partition_of` keeps
the local answer to this worker's active partitions (with standby replicas the in-memory table also holds
other workers' partitions, possibly behind). A gather that does not cover every partition exactly once is a
503 with the reason, never a partial list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2
from yarl import URL

log = logging.getLogger(__name__)

RECOVERING = "recovering: table recovery of this worker's partitions has not ended"
FORWARDED_LIST = ("several workers: a forwarded list is not gathered again (it needs every partition on the "
                  "worker that receives it)")
ASSIGNMENT_CHANGING = "several workers: the partition assignment is changing (rebalancing)"
NO_OWNER = "several workers: the household's partition has no worker now (rebalancing)"
INGEST_RECOVERING = "recovering: ingest and detect have not joined their consumer group or restored their states yet"


class Unavailable(Exception):
    """A 503: the request cannot be answered correctly here now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Remote:
    """The household's partition is active on another worker, at ``url``."""

    url: Any  # yarl.URL


def agent_name(name: str) -> str:
    """faust's agent name without the module (``streams.tickets.tickets`` -> ``tickets``): the metric label."""
    return name.rsplit(".", 1)[-1]


def live_actors(agent) -> int:
    """Actors of ``agent`` that run: not crashed, task not finished."""
    return sum(1 for actor in list(getattr(agent, "_actors", ()))
               if not getattr(actor, "crashed", False)
               and not (getattr(actor, "actor_task", None) is not None and actor.actor_task.done()))


class Readiness:
    """The worker's readiness and its view of which worker holds a household (see the module docstring)."""

    def __init__(self, app, metrics, *, table_name: str, readings=None) -> None:
        """``readings``: the :class:`streams.readings_loop.ReadingsLoop` (its ``recovered``), if this worker runs one."""
        self.app, self.metrics, self.table_name, self.readings = app, metrics, table_name, readings

    # -- readiness -------------------------------------------------------------------------------
    def recovered(self) -> bool:
        recovery = self.app.tables.recovery
        return bool(getattr(recovery, "recovered", False)) and not self.app.rebalancing

    def down_agents(self) -> list[str]:
        """Agents without a running actor (crashed, or not started yet)."""
        return sorted(agent_name(name) for name, agent in self.app.agents.items() if live_actors(agent) == 0)

    def check(self) -> tuple[bool, dict]:
        reasons = []
        if not self.recovered():
            reasons.append(RECOVERING)
        if self.readings is not None and not self.readings.recovered:
            reasons.append(INGEST_RECOVERING)
        down = self.down_agents()
        if down:
            reasons.append(f"agents not running: {', '.join(down)}")
        ready = not reasons
        self.metrics.ready.set(1 if ready else 0)
        return ready, {"ready": ready, "reasons": reasons,
                       "partitions": self.table_partitions(), "every_partition": self.holds_every_partition()}

    def watch_agents(self) -> None:
        """Count every actor crash: faust calls an agent's ``_on_error`` before it marks the actor crashed."""
        for name, agent in self.app.agents.items():
            label = agent_name(name)
            self.metrics.agent_crashes.labels(agent=label)  # exported as 0 from the start
            previous = agent._on_error

            async def on_error(agent, exc, *, _label=label, _previous=previous) -> None:
                self.metrics.agent_crashes.labels(agent=_label).inc()
                log.error("agent %s crashed (%s): the worker is not ready until it runs again", _label,
                          type(exc).__name__)  # the type only: a message could carry a household's data
                if _previous is not None:
                    await _previous(agent, exc)

            agent._on_error = on_error

    def ensure_recovered(self) -> None:
        if not self.recovered():
            raise Unavailable(RECOVERING)

    # -- which worker holds what --------------------------------------------------------------------
    def _table(self):
        return self.app.tables[self.table_name]

    def table_partitions(self) -> list[int]:
        """Partitions of the table active on this worker."""
        topic = self._table().changelog_topic.get_topic_name()
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic)

    def partition_count(self) -> int:
        table = self._table()
        return table.partitions or self.app.conf.topic_partitions

    def holds_every_partition(self) -> bool:
        return len(self.table_partitions()) == self.partition_count()

    def partition_of(self, household_id: str) -> int:
        """The table partition of ``household_id``: the one :meth:`owner` (faust's ``key_store``) looks up."""
        table = self._table()
        topic = table.changelog_topic.get_topic_name()
        key = table.changelog_topic.prepare_key(household_id.encode(), None)[0]
        try:
            partition = self.app.producer.key_partition(topic, key).partition
        except Exception:  # the producer has no metadata for the topic yet
            partition = None
        if partition is None:  # what the producer's partitioner (aiokafka's default) would say
            partition = (murmur2(key) & 0x7FFFFFFF) % self.partition_count()
        return partition

    def gather_plan(self) -> tuple[list[int], dict[str, list[int]]]:
        """(the table's partitions active here, {another worker's URL: its active partitions}) for a list.

        From faust's assignor: ``app.router.table_metadata`` is the last assignment's distribution of the
        changelog's active partitions over the workers' URLs. Raises :class:`Unavailable` while recovering, or
        when that distribution disagrees with this worker's own assignment (a rebalance is under way)."""
        self.ensure_recovered()
        local = self.table_partitions()
        topic = self._table().changelog_topic.get_topic_name()
        own = _ident(self.app.conf.canonical_url)
        peers: dict[str, list[int]] = {}
        for url, topics in self.app.router.table_metadata(self.table_name).items():
            partitions = sorted(set(topics.get(topic, ())))
            if _ident(URL(str(url))) == own:
                if partitions != local:
                    raise Unavailable(ASSIGNMENT_CHANGING)
            elif partitions:
                peers[str(url)] = partitions
        return local, peers

    def owner(self, household_id: str) -> Remote | None:
        """None if the household's partition is active here; :class:`Remote` if on another worker.

        Raises :class:`Unavailable` while recovering, or when no worker holds the partition."""
        self.ensure_recovered()
        if self.holds_every_partition():
            return None
        try:
            url = self.app.router.key_store(self.table_name, household_id.encode())
        except KeyError:
            raise Unavailable(NO_OWNER) from None
        if _ident(url) == _ident(self.app.conf.canonical_url):
            return None
        return Remote(url)


def _ident(url) -> tuple[str, int]:
    return (url.host if url.scheme else url.path) or "", int(url.port or 80)


__all__ = ["INGEST_RECOVERING", "Readiness", "Remote", "Unavailable", "RECOVERING", "FORWARDED_LIST", "ASSIGNMENT_CHANGING", "NO_OWNER",
           "agent_name", "live_actors"]
