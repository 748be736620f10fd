"""The ticket stage: warnings become tickets that follow 预警—派单—处置—反馈 until someone has checked.

::

    anomalies ──ticket-warnings──▶ tickets.warning ─┐
    staff API, timer ─────────────▶ tickets.dispatch ├─▶ tickets ─▶ tickets.<step>.ack ──notify──▶ webhook
    staff API, timer ─────────────▶ tickets.handle   │   (table tickets-households)
    staff API, detect ────────────▶ tickets.feedback ┤        └─▶ follow-ups (a new ticket's dispatch)
    roster load, staff API ───────▶ households.roster│
    staff API ────────────────────▶ households.away ─┘
                                    tickets.feedback.ack (applied outcomes) ──▶ detect (sensitivity) ─▶ ack (by: detect), close

One agent, ``tickets``, consumes every topic that changes a household's desk, so one household's
commands are applied one at a time, in partition order, to one table value. Per command:

1. parse; a message that is not what its topic carries is dead-lettered (stage ``tickets``), and one the agent
   raises on is dead-lettered ``processing_error`` by the guard (:mod:`streams.guard`), which goes on;
2. :func:`dispatch.desk.handle` (pure) gives the new desk, the acks and any follow-up commands;
3. acks to the step's ``.ack`` topic, follow-ups to their step topics;
4. the desk reassigned in the table (its changelog).

A crash between 3 and 4 repeats 2-3 after the restart: the acks are sent again and the follow-up
(same idempotency key) is a duplicate downstream. The other order could lose a dispatch.

Deadlines: a timer (every ``ticket_timer_interval_s``) turns passed deadlines into commands on
their step topics (:func:`dispatch.desk.due_commands`): dispatch, escalation, re-alert, reminder.
The command's key is tied to the deadline, so a second timer, a restart or a re-send after a lost
message applies once. An in-memory index (household -> next deadline) keeps the tick cheap; it
is rebuilt from the table after every rebalance, once the table is recovered (``TicketDesks.recovered``,
wired to :meth:`streams.readiness.Readiness.recovered`): an index built from a half-restored table
would miss deadlines and households until the next rebalance. While recovering, the timer skips its
tick and the staff lists answer 503 (:class:`streams.readiness.Unavailable`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import faust
from pydantic import ValidationError

from dispatch.desk import DeskResult, HouseholdDesk, RosterRules, due_commands, handle, with_away, with_roster
from dispatch.tickets import EventKind, State, TERMINAL
from elderwatch.settings import Settings
from schemas.anomaly import AnomalyWarning
from schemas.dead_letter import RejectReason
from schemas.households import Household
from schemas.tickets import AckResult, AwayMode, Step, TicketAck, TicketCommand
from streams.guard import AgentGuard, DeadLetters, Source
from streams.metrics import AgentMetrics, TicketMetrics

log = logging.getLogger(__name__)

#: A due command not yet applied is sent again after this long (it may have been lost).
RESEND_AFTER = timedelta(minutes=1)


class TicketDesks:
    """The ``tickets-households`` table with the operations the stage, the timer and the staff API need."""

    def __init__(self, table, topics, rules: RosterRules, clock: Callable[[], datetime]) -> None:
        self.table, self.topics, self.rules, self.clock = table, topics, rules, clock
        self.deadlines: dict[str, datetime] = {}  # household -> its earliest open deadline
        self.index_stale = True
        self.recently_sent: dict[str, datetime] = {}  # due command -> when the timer last sent it
        self.staff_households: dict[str, set[str]] = {}  # staff id -> households they may see (for the API)
        self.community_households: dict[str, set[str]] = {}  # community -> its households (supervisors' view)
        self._community_of: dict[str, str] = {}
        self.open_states: dict[str, tuple[State, ...]] = {}  # household -> states of its unfinished tickets (gauges)
        self._staff_of: dict[str, frozenset[str]] = {}
        #: Whether the table has been recovered for the current assignment (streams/app.py wires it to
        #: Readiness.recovered); the indexes are rebuilt only then.
        self.recovered: Callable[[], bool] = lambda: True

    # -- reading ---------------------------------------------------------------------------
    def get(self, household_id: str) -> HouseholdDesk | None:
        raw = self.table.get(household_id.encode())
        return HouseholdDesk.model_validate_json(raw) if raw else None

    def desk_of(self, household_id: str) -> HouseholdDesk:
        """The household's desk, or a new empty one."""
        return self.get(household_id) or HouseholdDesk(household_id=household_id)

    def all(self) -> Iterator[HouseholdDesk]:
        for _, raw in list(self.table.items()):
            if raw:
                yield HouseholdDesk.model_validate_json(raw)

    def of_staff(self, staff_id: str) -> list[HouseholdDesk]:
        """The desks of the households this person may see, without reading every desk."""
        self.ensure_index()
        desks = (self.get(household_id) for household_id in sorted(self.staff_households.get(staff_id, ())))
        return [desk for desk in desks if desk is not None and staff_id in desk.staff()]

    def of_community(self, community: str) -> list[HouseholdDesk]:
        """The desks of a community's households (as the roster says now)."""
        self.ensure_index()
        desks = (self.get(household_id) for household_id in sorted(self.community_households.get(community, ())))
        return [desk for desk in desks if desk is not None and desk.roster is not None
                and desk.roster.community == community]

    # -- writing (only from the tickets agent: one writer per household) ---------------------
    def store(self, desk: HouseholdDesk) -> None:
        self.table[desk.household_id.encode()] = desk.model_dump_json().encode()
        self._index(desk)

    def _index(self, desk: HouseholdDesk) -> None:
        household_id, staff = desk.household_id, desk.staff()
        for person in self._staff_of.get(household_id, frozenset()) - staff:
            self.staff_households.get(person, set()).discard(household_id)
        for person in staff:
            self.staff_households.setdefault(person, set()).add(household_id)
        self._staff_of[household_id] = staff
        community = desk.roster.community if desk.roster is not None else None
        previous = self._community_of.pop(household_id, None)
        if previous is not None and previous != community:
            self.community_households.get(previous, set()).discard(household_id)
        if community is not None:
            self.community_households.setdefault(community, set()).add(household_id)
            self._community_of[household_id] = community
        states = tuple(t.state for t in desk.open_tickets())
        if states:
            self.open_states[household_id] = states
        else:
            self.open_states.pop(household_id, None)
        deadline = desk.next_deadline()
        if deadline is None:
            self.deadlines.pop(desk.household_id, None)
        else:
            self.deadlines[desk.household_id] = deadline

    def ensure_index(self) -> None:
        """Rebuild the indexes if a rebalance made them stale; :class:`streams.readiness.Unavailable` while the
        table is still being recovered (an index of a partial table would be silently wrong)."""
        if not self.recovered():
            from streams.readiness import RECOVERING, Unavailable

            self.index_stale = True  # whatever was indexed meanwhile, rebuild from the recovered table
            raise Unavailable(RECOVERING)
        if self.index_stale:
            self.rebuild_index()

    def rebuild_index(self) -> None:
        self.deadlines.clear()
        self.staff_households.clear()
        self._staff_of.clear()
        self.community_households.clear()
        self._community_of.clear()
        self.open_states.clear()
        for desk in self.all():
            self._index(desk)
        self.index_stale = False

    # -- sending commands (the staff API, the timer, detect) -----------------------------------
    async def send(self, command: TicketCommand) -> None:
        await self.topics.ticket_steps[command.step].send(key=command.household_id.encode(),
                                                          value=command.model_dump_json().encode())

    async def send_roster(self, household: Household) -> None:
        await self.topics.roster.send(key=household.household_id.encode(), value=household.model_dump_json().encode())

    async def send_away(self, household_id: str, away: AwayMode | None) -> None:
        await self.topics.away.send(key=household_id.encode(), value=away.model_dump_json().encode() if away else b"")


def parse(model, value: bytes | None, key: bytes | None):
    """``model`` from a message keyed by its household, or a rejection reason (never raises for bad input)."""
    if not value:
        return RejectReason.NOT_JSON, "empty message"
    try:
        parsed = model.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = RejectReason.NOT_JSON if first["type"] == "json_invalid" else RejectReason.INVALID_FIELD
        return reason, f"not a {model.__name__}: {first['type']} at {'.'.join(map(str, first['loc'])) or 'top level'}"
    if key != parsed.household_id.encode():
        return RejectReason.INVALID_FIELD, "message key is not the household_id"
    return parsed


def register_ticket_agents(app: faust.App, topics, desks_table: faust.Table, metrics: TicketMetrics,
                           settings: Settings, *, clock: Callable[[], datetime]) -> TicketDesks:
    rules = RosterRules(duty_desk=settings.duty_desk, contact_first=dict(settings.contact_first),
                        policy=settings.ticket_policy(), data_quality_desk=settings.data_quality_desk)
    desks = TicketDesks(desks_table, topics, rules, clock)
    step_of_topic = {t.get_topic_name(): step for step, t in topics.ticket_steps.items()}
    roster_topic, away_topic = topics.roster.get_topic_name(), topics.away.get_topic_name()

    dead_letters = DeadLetters(topics.deadletter, clock, lambda reason: metrics.unreadable.inc())
    agent_metrics = AgentMetrics.of(metrics.registry)

    async def dead_letter(source: Source, value, key, reason: RejectReason, detail: str) -> None:
        await dead_letters.send(value, key, reason, detail, stage="tickets", source=source)

    @app.on_partitions_assigned.connect
    async def index_after_rebalance(sender, assigned, **kwargs) -> None:
        desks.index_stale = True  # rebuilt on the first tick or list once recovery has ended (ensure_index)

    @app.agent(topics.anomalies, name="ticket-warnings")
    async def ticket_warnings(stream):
        """anomalies -> tickets.warning: every warning enters the loop as a command with a stable key."""
        await AgentGuard("ticket-warnings", "tickets", dead_letters, agent_metrics).run(stream, enter_warning)

    async def enter_warning(value, key, source: Source) -> None:
        warning = parse(AnomalyWarning, value, key)
        if isinstance(warning, tuple):
            return await dead_letter(source, value, key, *warning)
        await desks.send(TicketCommand.warning_from(warning, at=clock()))

    inputs = app.topic(*step_of_topic, roster_topic, away_topic, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")

    async def set_roster(source: Source, value, key) -> None:
        household = parse(Household, value, key)
        if isinstance(household, tuple):
            return await dead_letter(source, value, key, *household)
        desks.store(with_roster(desks.desk_of(household.household_id), household))

    async def set_away(source: Source, value, key) -> None:
        if not value and key:  # an empty value (or a tombstone) ends away mode
            desk = desks.get(key.decode(errors="replace"))
            if desk is not None:
                desks.store(with_away(desk, None))
            return
        away = parse(AwayMode, value, key)
        if isinstance(away, tuple):
            return await dead_letter(source, value, key, *away)
        desks.store(with_away(desks.desk_of(away.household_id), away))

    async def apply_command(source: Source, value, key) -> None:
        command = parse(TicketCommand, value, key)
        if isinstance(command, tuple):
            return await dead_letter(source, value, key, *command)
        expected = step_of_topic[source.topic]
        if command.step is not expected:
            return await dead_letter(source, value, key, RejectReason.INVALID_FIELD,
                                     f"a {command.step.value} command on the {expected.value} topic")
        desk = desks.desk_of(command.household_id)
        result = handle(desk, command, clock(), rules)
        for ack in result.acks:
            await topics.ticket_acks[ack.step].send(key=key, value=ack.model_dump_json().encode())
        for follow_up in result.follow_ups:
            await desks.send(follow_up)
            desks.recently_sent[_sent_key(follow_up)] = clock()  # the timer need not send it too
        if result.desk is not desk:
            desks.store(result.desk)
        _count(metrics, command, result)

    handler_of_topic = {roster_topic: set_roster, away_topic: set_away,
                        **{name: apply_command for name in step_of_topic}}

    async def apply(value, key, source: Source) -> None:
        await handler_of_topic[source.topic](source, value, key)

    @app.agent(inputs, name="tickets")
    async def tickets(stream):
        await AgentGuard("tickets", "tickets", dead_letters, agent_metrics).run(stream, apply)

    @app.timer(settings.ticket_timer_interval_s, name="ticket-deadlines")
    async def ticket_deadlines() -> None:
        await check_deadlines(desks, metrics, settings.ticket_timer_interval_s)

    return desks


async def check_deadlines(desks: TicketDesks, metrics: TicketMetrics, interval_s: float) -> int:
    """Send the commands every passed deadline calls for; returns how many were sent (none while recovering)."""
    if not desks.recovered():
        desks.index_stale = True
        return 0  # the next tick after recovery rebuilds the index and sends what is due
    desks.ensure_index()
    now = desks.clock()
    sent = overdue = 0
    for household_id, deadline in list(desks.deadlines.items()):
        if deadline > now:
            continue
        if now - deadline > timedelta(seconds=2 * interval_s) + RESEND_AFTER:
            overdue += 1
        desk = desks.get(household_id)
        if desk is None:
            desks.deadlines.pop(household_id, None)
            continue
        for command in due_commands(desk, now):
            key = _sent_key(command)
            last = desks.recently_sent.get(key)
            if last is not None and now - last < RESEND_AFTER:
                continue
            desks.recently_sent[key] = now
            await desks.send(command)
            sent += 1
    for key, at in list(desks.recently_sent.items()):
        if now - at > 10 * RESEND_AFTER:
            del desks.recently_sent[key]
    metrics.overdue.set(overdue)
    _count_open(desks, metrics)
    return sent


def _sent_key(command: TicketCommand) -> str:
    return f"{command.ticket_id}|{command.event.idempotency_key}"


def _count_open(desks: TicketDesks, metrics: TicketMetrics) -> None:
    counts = {state: 0 for state in State if state not in TERMINAL}
    for states in desks.open_states.values():  # from the index: no desk is read on a tick
        for state in states:
            counts[state] += 1
    for state, n in counts.items():
        metrics.open.labels(state=state.value).set(n)


def _count(metrics: TicketMetrics, command: TicketCommand, result: DeskResult) -> None:
    for ack in result.acks:
        metrics.commands.labels(step=ack.step.value, result=ack.result.value).inc()
        if ack.result is not AckResult.APPLIED or ack.ticket is None:
            continue
        ticket, kind = ack.ticket, command.event.kind
        if kind is EventKind.WARNING and ticket.ticket_id == command.ticket_id:
            metrics.opened.labels(kind=ticket.kind).inc()
        elif kind in (EventKind.ACK_TIMEOUT, EventKind.ESCALATE):
            metrics.escalations.inc()
        elif kind in (EventKind.HANDLE_TIMEOUT, EventKind.WAKE, EventKind.FEEDBACK_TIMEOUT):
            metrics.realerts.inc()
        elif kind is EventKind.ACKNOWLEDGE:
            metrics.to_acknowledge.observe((command.event.at - ticket.opened_at).total_seconds())
        elif kind is EventKind.HANDLE:
            metrics.to_handle.observe((command.event.at - ticket.opened_at).total_seconds())
        elif kind is EventKind.FEEDBACK and ticket.outcome is not None:
            metrics.outcome(ticket.outcome.value)
        elif kind is EventKind.CLOSE:
            metrics.to_close.observe((command.event.at - ticket.opened_at).total_seconds())
