"""Table recovery that hands the stream partitions to the agents without losing records.

faust-streaming 0.15.3 (upstream too: faust-streaming/faust#596, open) can lose records of the
input topics when a worker finishes restoring its tables, i.e. on every start and rebalance with
records waiting. Two defects combine:

1. While the tables are restored the stream partitions are "paused", which in faust only means
   they are missing from the set of active partitions that the fetcher passes to aiokafka's
   ``fetched_records(partitions)``. That set is shared and shrinks while a fetch waits; once the
   changelogs are paused too it is empty, and aiokafka reads an empty set as *all* partitions.
   The fetch then drains the paused stream partitions (their position moves on) and faust's
   ``Consumer.getmany`` drops those records because they are not active: nothing rewinds.
2. ``Recovery.on_recovery_completed`` heals (1) by seeking to the committed offsets, but it
   resumes the stream partitions *before* that seek and resumes ``app.flow_control`` after it::

       consumer.resume_partitions(stream_tps)  # the running fetcher hands records to the agents...
       await consumer.perform_seek()           # ...while this waits on the broker,
       app.flow_control.resume()               # and this empties every agent's queue

   The records still queued are gone: they were marked as read, so they are not fetched again,
   and they are never acked. The commit of the partition then either stops at the first of them
   for good (lag that never drains: the stall of test_ingest_restart) or, when faust's gap
   handling saw a jump in offsets, goes past them (lost without a trace).

Here (1) cannot happen, because aiokafka is never given an empty set, so paused partitions are
never drained; and (2) is done in a safe order: seek while the stream partitions are still
paused, then resume them, the flow control and the flow with no ``await`` in between. Installed
with ``faust.App(..., TableManager="streams.recovery:TableManager")`` (see :mod:`streams.app`).
Written against faust-streaming 0.15.3 and aiokafka 0.14.0 (:data:`VERIFIED_WITH`: the worker refuses
to start with other versions, see :func:`elderwatch.worker.check_versions`); re-check it when upgrading.

Readiness: :attr:`SeekFirstRecovery.recovered` is False from the start of a rebalance until the stream
partitions are handed back to the agents (faust's own ``completed`` event is never cleared after the
first recovery, so it cannot say that a later rebalance is recovering). ``/ready`` and the staff API
read it (:mod:`streams.readiness`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Set
from typing import Any

from faust.tables import TableManager as _FaustTableManager
from faust.tables.recovery import Recovery
from faust.types import TP

#: The versions this module was verified with (it patches their private internals).
VERIFIED_WITH = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class _ActiveView:
    """Live view of faust's active-partition set that is never falsy, so aiokafka's
    ``fetched_records`` never mistakes an empty one (everything paused) for "all partitions"."""

    __slots__ = ("_tps",)

    def __init__(self, tps: Set[TP]) -> None:
        self._tps = tps

    def __contains__(self, tp: object) -> bool:
        return tp in self._tps

    def __iter__(self) -> Iterator[TP]:
        return iter(self._tps)

    def __len__(self) -> int:
        return len(self._tps)

    def __bool__(self) -> bool:
        return True


def _fetch_only_active(consumer: Any) -> None:
    """Wrap the consumer's fetch so that paused partitions are never drained (defect 1)."""
    if getattr(consumer, "_elderwatch_fetch_only_active", False):
        return
    fetch = consumer._getmany

    async def _getmany(active_partitions: Set[TP] | None, timeout: float) -> Any:
        # None is "client only": every partition, as before.
        return await fetch(active_partitions=None if active_partitions is None else _ActiveView(active_partitions),
                           timeout=timeout)

    consumer._getmany = _getmany
    consumer._elderwatch_fetch_only_active = True


class SeekFirstRecovery(Recovery):
    """:class:`faust.tables.recovery.Recovery` that never drains paused partitions and seeks the
    stream partitions before resuming them."""

    #: False until the current assignment's tables are recovered and its stream partitions resumed.
    recovered: bool = False

    async def on_rebalance(self, assigned: set, revoked: set, newly_assigned: set, generation_id: int = 0) -> None:
        self.recovered = False
        _fetch_only_active(self.app.consumer)  # before the first fetch: the first assignment
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def _seek_then_resume(self) -> None:
        consumer = self.app.consumer
        assignment = consumer.assignment()
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        # From here to resume_flow() nothing awaits: no stream record can reach an agent's queue
        # before flow_control.resume() empties them.
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        self.app.flow_control.resume()
        consumer.resume_flow()
        await self.app._fetcher.maybe_start()  # type: ignore[attr-defined]
        self.recovered = True  # tables complete: readers (indexes, staff API, /ready) may use them

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                                        self.standbys_for_table[table]))
                     for table in self.tables.values()]
        if callbacks:
            await asyncio.wait(callbacks)
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again app id %s param %s",
                             self.app.consumer_generation_id, generation_id)
            return
        await self._seek_then_resume()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """The same hand-over for an app without tables."""
        await self.app.on_rebalance_complete.send()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._seek_then_resume()
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")


class TableManager(_FaustTableManager):
    """faust's table manager, recovering with :class:`SeekFirstRecovery`."""

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        self.recovery.recovered = False  # the tables are about to change hands

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


def newest_wins(table, position, skipped=None) -> None:
    """Restore ``table`` keeping, per key, the record that has read furthest, not the last one written.

    A worker paused past its session (a long GC, SIGSTOP, a frozen VM) is replaced; when it resumes it
    finishes the batch it was in and writes those states to the changelog (nothing fences a producer
    without transactions), *after* the states its successor wrote. A restore that took the last record
    would go back in time: the successor's readings missing from the household's state. Each state says
    how far it has read (``position(value)``: the input offset it has applied up to, None when it cannot
    tell), so the restore keeps the furthest, equal ones in changelog order. The worker that owns the
    partition is not affected while it runs (its table is in memory); its standby copies and every later
    restore are. ``skipped()`` is called for each record passed over (a metric).
    """
    apply = table.apply_changelog_batch

    def apply_furthest(batch) -> None:
        kept, furthest = [], {}
        for event in batch:
            key, value = event.key, event.value
            if value is not None:
                at = position(value)
                if key not in furthest:
                    current = table.data.get(table._to_key(key))
                    furthest[key] = None if current is None else position(current)
                if at is not None and furthest[key] is not None and at < furthest[key]:
                    if skipped is not None:
                        skipped()
                    continue
                furthest[key] = at if at is not None else furthest[key]
            kept.append(event)
        apply(kept)

    table.apply_changelog_batch = apply_furthest
