"""A ticket's history for its page: who did what, when.

The ticket on the desk keeps its state and a few times, not its events; the four ``.ack`` topics
keep every command applied to it with the ticket after it (``dispatch/audit.py`` rebuilds tickets
from them). So the page reads them: from a little before the ticket opened to their end, with a
short-lived consumer bounded by a timeout. Ticket traffic is small (a few commands per ticket),
so this is a short read. Only applied changes by the ticket stage are shown (what happened to
the ticket); duplicates and rejections change nothing.

When the topics cannot be read in time, the page shows what the ticket itself records
(:func:`from_ticket`: opened, acknowledged, handled, closed, and its notes) and says so.

Wall clock and ticket clock: event times come from the worker's clock (which tests move forward
with the clock-offset file), Kafka's timestamps from the wall clock. The search starts at
``opened_at`` minus the current offset minus a margin, which is early enough whenever the offset
only grew since the ticket opened (it only ever does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from dispatch.tickets import EventKind, Ticket
from schemas.tickets import AckResult, TicketAck

TIMEOUT_S = 4.0
MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    kind: str  # an EventKind value, or "opened"
    state: str | None = None  # the ticket's state after it
    assignee: str | None = None  # who has it after it
    text: str | None = None  # notes or reason
    outcome: str | None = None


def entry_of(ack: TicketAck) -> HistoryEntry:
    event = ack.command.event
    ticket = ack.ticket
    if event.kind is EventKind.WARNING and ticket is not None and ticket.version == 0:
        return HistoryEntry(at=event.at, actor=event.actor, kind="opened", state=ticket.state.value)
    return HistoryEntry(at=event.at, actor=event.actor, kind=event.kind.value,
                        state=ticket.state.value if ticket else None, assignee=ticket.assignee if ticket else None,
                        text=event.notes or event.reason, outcome=event.outcome.value if event.outcome else None)


def from_acks(acks: list[TicketAck], ticket_id: str) -> list[HistoryEntry]:
    """The applied changes to ``ticket_id``, once each, in version order."""
    by_version: dict[int, TicketAck] = {}
    for ack in acks:
        if ack.by != "tickets" or ack.result is not AckResult.APPLIED or ack.ticket is None:
            continue
        if ack.ticket.ticket_id == ticket_id:
            by_version.setdefault(ack.ticket.version, ack)
    return [entry_of(by_version[v]) for v in sorted(by_version)]


def from_ticket(ticket: Ticket) -> list[HistoryEntry]:
    """What the ticket itself records, when the topics cannot be read."""
    entries = [HistoryEntry(at=ticket.opened_at, actor="system", kind="opened")]
    if ticket.acknowledged_at:
        entries.append(HistoryEntry(at=ticket.acknowledged_at, actor=ticket.assignee or "?", kind="acknowledge"))
    if ticket.handled_at:
        entries.append(HistoryEntry(at=ticket.handled_at, actor=ticket.assignee or "?", kind="handle"))
    if ticket.outcome:
        entries.append(HistoryEntry(at=ticket.closed_at or ticket.handled_at or ticket.opened_at,
                                    actor=ticket.assignee or "?", kind="feedback", outcome=ticket.outcome.value))
    if ticket.closed_at:
        entries.append(HistoryEntry(at=ticket.closed_at, actor="system", kind=ticket.state.value))
    return sorted(entries, key=lambda e: e.at)


async def read_history(bootstrap: str, ack_topics: list[str], ticket: Ticket, *, clock_offset: timedelta,
                       timeout: float = TIMEOUT_S) -> list[HistoryEntry] | None:
    """The ticket's history from the ack topics, or None if they could not be read in ``timeout``."""
    from elderwatch.console.operations import assigned, console_consumer

    consumer = console_consumer(bootstrap, *ack_topics)
    deadline = time.monotonic() + timeout
    left = lambda: max(deadline - time.monotonic(), 0.05)  # noqa: E731
    key = ticket.household_id.encode()
    try:
        tps = await assigned(consumer, deadline)
        if not tps:
            return None  # the topics exist once the worker runs: not having them is not an empty history
        since_ms = int((ticket.opened_at - clock_offset - MARGIN).timestamp() * 1000)
        starts = await asyncio.wait_for(consumer.offsets_for_times({tp: since_ms for tp in tps}), left())
        end = await asyncio.wait_for(consumer.end_offsets(tps), left())
        pending = set()
        for tp in tps:
            found = starts.get(tp)
            if found is not None and found.offset < end[tp]:
                consumer.seek(tp, found.offset)
                pending.add(tp)
        acks: list[TicketAck] = []
        while pending:
            batches = await asyncio.wait_for(consumer.getmany(*pending, timeout_ms=300), left())
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= end[tp] or message.key != key:
                        continue
                    try:
                        acks.append(TicketAck.model_validate_json(message.value))
                    except ValidationError:
                        continue  # the ticket stage dead-letters what it cannot read; not ours to show
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return from_acks(acks, ticket.ticket_id)
    except Exception:
        return None
    finally:
        try:
            await asyncio.wait_for(consumer.stop(), 3.0)
        except Exception:
            pass


__all__ = ["HistoryEntry", "read_history", "from_acks", "from_ticket", "entry_of"]
