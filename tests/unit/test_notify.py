"""The notifier: who is told and why (a table), and delivery to a real HTTP receiver on 127.0.0.1.

Delivery tests run a timeline on a fake clock: the sender's injected sleep records each backoff,
advances the clock by it and returns at once, so a receiver "down for a minute" costs no real time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import faust
import pytest
from aiohttp import web

from dispatch.notify import DeliveryInterrupted, NotifyMetrics, WebhookSender, notifications_for
from dispatch.tickets import Event, EventKind, State, Ticket
from elderwatch.localkafka import free_port
from elderwatch.settings import Settings
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.tickets import AckResult, Notification, TicketAck, TicketCommand
from streams.notify import register_notifier

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
HOUSEHOLD = "hh-000042"
TICKET_ID = f"{HOUSEHOLD}/inactivity/2026-03-01T02:00:00+00:00"
TICKET = Ticket(ticket_id=TICKET_ID, household_id=HOUSEHOLD, kind="inactivity", severity="high",
                state=State.DISPATCHED, chain=("w-1", "w-2", "s-1"), assignee="w-1", opened_at=T0)
WARNING = AnomalyWarning.for_episode(household_id=HOUSEHOLD, kind=AnomalyKind.INACTIVITY, meter=None,
                                     episode_start=T0 - timedelta(hours=6), detected_at=T0, score=1.4,
                                     severity=Severity.HIGH, summary="no water since 02:00")


def ack(kind: EventKind, notify: tuple[str, ...] = ("w-1",), *, result: AckResult = AckResult.APPLIED,
        by: str = "tickets", ticket: Ticket | None = TICKET, warning: AnomalyWarning | None = None) -> TicketAck:
    actor = "system" if kind in (EventKind.DISPATCH, EventKind.ACK_TIMEOUT, EventKind.HANDLE_TIMEOUT, EventKind.WAKE,
                                 EventKind.FEEDBACK_TIMEOUT) else "w-1"
    if kind is EventKind.WARNING:
        command = TicketCommand.warning_from(warning or WARNING, at=T0)
    else:
        command = TicketCommand.of(TICKET, Event(kind=kind, idempotency_key=f"{kind.value}:1", actor=actor, at=T0))
    if warning is not None:
        command = TicketCommand.model_validate({**command.model_dump(), "warning": warning.model_dump()})
    return TicketAck(step=command.step, by=by, ticket_id=TICKET_ID, household_id=HOUSEHOLD,
                     idempotency_key=command.event.idempotency_key, command=command, result=result, ticket=ticket,
                     notify=notify, at=T0 + timedelta(seconds=1))


# -- who is told, and why ----------------------------------------------------------------------

# (case, ack, expected [(recipient, reason)])
NOTIFY_CASES = [
    # each event that names people gives its reason
    ("dispatch tells the primary worker", ack(EventKind.DISPATCH), [("w-1", "dispatched")]),
    ("an unacknowledged dispatch escalates", ack(EventKind.ACK_TIMEOUT, ("w-2",)), [("w-2", "escalated")]),
    ("a person asking for the next one escalates", ack(EventKind.ESCALATE, ("w-2",)), [("w-2", "escalated")]),
    ("accepted but unhandled re-alerts", ack(EventKind.HANDLE_TIMEOUT), [("w-1", "re_alert")]),
    ("a snooze that ends tells the assignee", ack(EventKind.WAKE), [("w-1", "snooze_over")]),
    ("a missing outcome is reminded", ack(EventKind.FEEDBACK_TIMEOUT), [("w-1", "feedback_reminder")]),
    # one notification per recipient, in the ack's order, each person once
    ("two recipients, two notifications", ack(EventKind.ACK_TIMEOUT, ("w-2", "s-1", "w-2")),
     [("w-2", "escalated"), ("s-1", "escalated")]),
    # nothing changed: nobody is told (again)
    ("a duplicate was applied before", ack(EventKind.DISPATCH, result=AckResult.DUPLICATE), []),
    ("a rejected command changed nothing", ack(EventKind.DISPATCH, result=AckResult.REJECTED), []),
    ("a suppressed warning opened no ticket", ack(EventKind.WARNING, result=AckResult.SUPPRESSED), []),
    # only the ticket stage's acks speak for the ticket (detect acks feedback; even a dispatch it acked tells nobody)
    ("the detect stage's feedback ack", ack(EventKind.FEEDBACK, by="detect"), []),
    ("an ack by detect, whatever it names", ack(EventKind.DISPATCH, by="detect"), []),
    # applied, but the ack names nobody
    ("an acknowledgement tells nobody", ack(EventKind.ACKNOWLEDGE, ()), []),
    # an event with no reason tells nobody, even if it names someone
    ("a warning attached to a ticket", ack(EventKind.WARNING, ("w-1",)), []),
    # no ticket snapshot: nothing to describe
    ("an applied ack without its ticket", ack(EventKind.DISPATCH, ticket=None), []),
]


@pytest.mark.parametrize("case, ticket_ack, expected", NOTIFY_CASES, ids=[c[0] for c in NOTIFY_CASES])
def test_who_is_told_and_why(case, ticket_ack, expected):
    got = notifications_for(ticket_ack)
    assert [(n.recipient, n.reason) for n in got] == expected
    for n in got:
        assert n.notification_id == f"tickets:{ticket_ack.step.value}:{ticket_ack.idempotency_key}->{n.recipient}"


def test_a_notification_describes_the_ticket():
    (n,) = notifications_for(ack(EventKind.DISPATCH))
    assert n == Notification(
        notification_id="tickets:dispatch:dispatch:1->w-1", recipient="w-1", reason="dispatched", ticket_id=TICKET_ID,
        household_id=HOUSEHOLD, kind="inactivity", severity="high", state="dispatched", summary=None,
        ticket_url="/tickets/hh-000042%2Finactivity%2F2026-03-01T02%3A00%3A00%2B00%3A00", at=T0 + timedelta(seconds=1))


def test_a_redelivered_ack_makes_the_same_notifications():
    original = ack(EventKind.ACK_TIMEOUT, ("w-2", "s-1"))
    redelivered = TicketAck.model_validate_json(original.model_dump_json())
    assert notifications_for(redelivered) == notifications_for(original)


def test_summary_and_deadline_come_from_the_ticket():
    ticket = TICKET.model_copy(update={"summary": "no water since 02:00", "deadline": T0 + timedelta(minutes=15)})
    (n,) = notifications_for(ack(EventKind.DISPATCH, ticket=ticket))
    assert (n.summary, n.respond_by) == ("no water since 02:00", T0 + timedelta(minutes=15))


def test_the_households_community_travels_with_the_notification():
    # it chooses the community's channel (dispatch/channels/routing.py); older tickets have none
    ticket = TICKET.model_copy(update={"community": "north"})
    (n,) = notifications_for(ack(EventKind.DISPATCH, ticket=ticket))
    assert n.community == "north"
    assert Ticket.model_validate({k: v for k, v in TICKET.model_dump().items() if k != "community"}).community is None


def test_ticket_path_is_configurable():
    (n,) = notifications_for(ack(EventKind.DISPATCH), ticket_path="/staff/v1/tickets/{ticket_id}/view")
    assert n.ticket_url.startswith("/staff/v1/tickets/hh-000042%2F") and n.ticket_url.endswith("/view")


# -- delivery to a real receiver ---------------------------------------------------------------

NOTIFICATIONS = [notifications_for(ack(kind, (who,)))[0] for kind, who in
                 [(EventKind.DISPATCH, "w-1"), (EventKind.ACK_TIMEOUT, "w-2"), (EventKind.HANDLE_TIMEOUT, "w-2")]]


class Receiver:
    """A webhook receiver on 127.0.0.1:``port``. It answers from ``script`` in order, then 200;
    an answer is ``(status, headers)`` or ``"slow"`` (200, after longer than the sender's timeout)."""

    def __init__(self, port: int, script=()) -> None:
        self.port, self.script = port, list(script)
        self.requests: list[tuple[dict[str, str], bytes, int]] = []  # headers, body, status answered
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        answer = self.script.pop(0) if self.script else (200, {})
        body = await request.read()
        if answer == "slow":
            self.requests.append((dict(request.headers), body, 200))  # the receiver acts; the sender gives up
            await asyncio.sleep(0.5)
            return web.Response(status=200)
        status, headers = answer
        self.requests.append((dict(request.headers), body, status))
        return web.Response(status=status, headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def acted_on(self) -> list[str]:
        """Idempotency keys the receiver accepted, acting once per key (what a deduplicating receiver does)."""
        return list(dict.fromkeys(h["Idempotency-Key"] for h, _, status in self.requests if 200 <= status < 300))


class FakeTime:
    """The sender's clock and sleep: a sleep returns at once, moves the clock and runs ``on_sleep``."""

    def __init__(self, on_sleep: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.now, self.sleeps, self.on_sleep = 1000.0, [], on_sleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            await self.on_sleep(len(self.sleeps))
        self.now += seconds


#: Counters labelled by channel type; here always the webhook.
BY_CHANNEL = ("elderwatch_notify_attempts_total", "elderwatch_notify_delivered_total", "elderwatch_notify_rejected_total")


def sample(metrics: NotifyMetrics, name: str, **labels: str) -> float:
    if name in BY_CHANNEL:
        labels.setdefault("channel", "webhook")
    return metrics.registry.get_sample_value(name, labels) or 0.0


def run(receiver: Receiver, body: Callable[[], Awaitable[None]], *, start: bool = True) -> None:
    async def main():
        if start:
            await receiver.start()
        try:
            await body()
        finally:
            await receiver.stop()

    asyncio.run(main())


def sender_for(receiver: Receiver, fake: FakeTime, **kwargs) -> WebhookSender:
    return WebhookSender(receiver.url, metrics=NotifyMetrics(), sleep=fake.sleep, clock=fake.clock, **kwargs)


def test_delivered_once_with_its_idempotency_key_and_json_body():
    receiver, fake = Receiver(free_port()), FakeTime()
    sender = sender_for(receiver, fake)
    (n,) = notifications_for(ack(EventKind.DISPATCH, warning=WARNING))  # every field set

    async def body():
        assert await sender.deliver(n) == "delivered"
        await sender.close()

    run(receiver, body)
    ((headers, raw, status),) = receiver.requests
    assert headers["Idempotency-Key"] == n.notification_id
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "elderwatch"
    assert json.loads(raw) == json.loads(n.model_dump_json())
    assert Notification.model_validate_json(raw) == n
    assert fake.sleeps == []
    m = sender.metrics
    assert sample(m, "elderwatch_notify_delivered_total") == 1
    assert sample(m, "elderwatch_notify_attempts_total", result="delivered") == 1
    assert sample(m, "elderwatch_notify_last_success_timestamp_seconds") > 0


def test_503_three_times_then_delivered_after_backoff_1_2_4():
    receiver = Receiver(free_port(), script=[(503, {})] * 3)
    during: list[float] = []
    fake = FakeTime()
    sender = sender_for(receiver, fake)

    async def on_sleep(n: int) -> None:
        during.append(sample(sender.metrics, "elderwatch_notify_retrying"))

    fake.on_sleep = on_sleep

    async def body():
        assert await sender.deliver(NOTIFICATIONS[0]) == "delivered"
        await sender.close()

    run(receiver, body)
    assert [status for _, _, status in receiver.requests] == [503, 503, 503, 200]
    assert fake.sleeps == [1, 2, 4]
    m = sender.metrics
    assert sample(m, "elderwatch_notify_attempts_total", result="retryable") == 3
    assert sample(m, "elderwatch_notify_attempts_total", result="delivered") == 1
    assert sample(m, "elderwatch_notify_delivered_total") == 1
    assert during == [1, 1, 1] and sample(m, "elderwatch_notify_retrying") == 0


def test_a_receiver_not_listening_yet_gets_the_notification_when_it_starts():
    receiver = Receiver(free_port())
    pending: list[float] = []
    fake = FakeTime()
    sender = sender_for(receiver, fake, max_backoff_s=8)

    async def on_sleep(n: int) -> None:
        pending.append(sample(sender.metrics, "elderwatch_notify_oldest_pending_seconds"))
        if n == 6:  # refused six times, then it comes up
            await receiver.start()

    fake.on_sleep = on_sleep

    async def body():
        assert await sender.deliver(NOTIFICATIONS[0]) == "delivered"
        await sender.close()

    run(receiver, body, start=False)
    assert fake.sleeps == [1, 2, 4, 8, 8, 8]
    assert pending == [0, 1, 3, 7, 15, 23]  # grew while it waited
    assert [Notification.model_validate_json(raw) for _, raw, _ in receiver.requests] == [NOTIFICATIONS[0]]
    m = sender.metrics
    assert sample(m, "elderwatch_notify_attempts_total", result="retryable") == 6
    assert sample(m, "elderwatch_notify_delivered_total") == 1
    assert sample(m, "elderwatch_notify_oldest_pending_seconds") == 0


def test_400_is_rejected_counted_and_not_retried(caplog):
    receiver, fake = Receiver(free_port(), script=[(400, {}), (200, {})]), FakeTime()
    sender = sender_for(receiver, fake)

    async def body():
        with caplog.at_level(logging.INFO, logger="dispatch.notify"):
            assert await sender.deliver(NOTIFICATIONS[0]) == "rejected"
            assert await sender.deliver(NOTIFICATIONS[1]) == "delivered"  # the next one is not blocked
        await sender.close()

    run(receiver, body)
    assert [status for _, _, status in receiver.requests] == [400, 200]
    assert fake.sleeps == []
    m = sender.metrics
    assert sample(m, "elderwatch_notify_rejected_total") == 1
    assert sample(m, "elderwatch_notify_attempts_total", result="rejected") == 1
    assert sample(m, "elderwatch_notify_attempts_total", result="retryable") == 0
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "400" in line and HOUSEHOLD not in line and "w-1" not in line


def test_retry_after_is_honoured_and_capped():
    receiver = Receiver(free_port(), script=[(503, {"Retry-After": "7"}), (429, {"Retry-After": "3600"}),
                                             (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})])
    fake = FakeTime()
    sender = sender_for(receiver, fake, max_backoff_s=30)

    async def body():
        assert await sender.deliver(NOTIFICATIONS[0]) == "delivered"
        await sender.close()

    run(receiver, body)
    # 7 as asked; 3600 capped at 30; a date is not understood: the third backoff, 4
    assert fake.sleeps == [7, 30, 4]


def test_several_notifications_arrive_in_order_exactly_once_despite_failures():
    receiver = Receiver(free_port(), script=[(200, {}),                      # n0
                                             (503, {}), (500, {}), (200, {}),  # n1
                                             "slow", (200, {})])              # n2: timed out, yet acted on; sent again
    fake = FakeTime()
    sender = sender_for(receiver, fake, timeout_s=0.2)

    async def body():
        for n in NOTIFICATIONS:
            assert await sender.deliver(n) == "delivered"
        await sender.close()

    run(receiver, body)
    assert receiver.acted_on() == [n.notification_id for n in NOTIFICATIONS]
    assert [h["Idempotency-Key"] for h, _, _ in receiver.requests] == [NOTIFICATIONS[0].notification_id] + \
        [NOTIFICATIONS[1].notification_id] * 3 + [NOTIFICATIONS[2].notification_id] * 2
    assert fake.sleeps == [1, 2, 1]  # backoff starts again for each notification
    assert sample(sender.metrics, "elderwatch_notify_delivered_total") == 3


def test_a_webhook_url_must_be_absolute_http():
    with pytest.raises(ValueError):
        WebhookSender("receiver.local/hook")


# -- the notify agent --------------------------------------------------------------------------

def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def new_app(app_id: str) -> faust.App:
    """A faust app that never reaches a broker: agents are driven through ``test_context``.
    Built inside the running loop, so faust uses that loop instead of making its own."""
    return faust.App(app_id, broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False, web_enabled=False)


def test_the_agent_skips_unreadable_messages_and_delivers_the_rest():
    receiver, fake = Receiver(free_port()), FakeTime()
    metrics = NotifyMetrics()

    async def body():
        app = new_app("t-notify")
        sender = WebhookSender(receiver.url, metrics=metrics, sleep=fake.sleep, clock=fake.clock)
        register_notifier(app, raw_topic(app, "tickets.dispatch.ack", "tickets.handle.ack"),
                          Settings(webhook_url=receiver.url), metrics, sender=sender)
        async with app.elderwatch_notify_agent.test_context() as agent:
            await agent.put(b"{not json", key=HOUSEHOLD.encode())
            await agent.put(ack(EventKind.DISPATCH).model_dump_json().encode(), key=HOUSEHOLD.encode())
            await agent.put(ack(EventKind.ACKNOWLEDGE, ()).model_dump_json().encode(), key=HOUSEHOLD.encode())
        assert sender.routes.channels["webhook"]._session is None  # closed when the agent stopped

    run(receiver, body)
    # the agent links to the staff API's ticket page
    expected = NOTIFICATIONS[0].model_copy(update={"ticket_url": "/api/v1" + NOTIFICATIONS[0].ticket_url})
    assert [Notification.model_validate_json(raw) for _, raw, _ in receiver.requests] == [expected]
    assert sample(metrics, "elderwatch_notify_unreadable_total") == 1
    assert sample(metrics, "elderwatch_notify_delivered_total") == 1


def test_without_a_webhook_notifications_are_counted_as_skipped():
    metrics = NotifyMetrics()

    async def body():
        app = new_app("t-notify-skip")
        acks = {"dispatch": raw_topic(app, "tickets.dispatch.ack"),
                "handle": raw_topic(app, "tickets.handle.ack")}.values()  # as streams/app.py holds them
        register_notifier(app, acks, Settings(webhook_url=None), metrics)
        assert app.elderwatch_notify_agent.channel.topics == ("tickets.dispatch.ack", "tickets.handle.ack")
        assert app.elderwatch_notify_sender is None
        async with app.elderwatch_notify_agent.test_context() as agent:
            await agent.put(ack(EventKind.ACK_TIMEOUT, ("w-2", "s-1")).model_dump_json().encode())

    asyncio.run(body())
    assert sample(metrics, "elderwatch_notify_skipped_total") == 2
    assert sample(metrics, "elderwatch_notify_attempts_total", result="delivered") == 0


def test_a_stopping_worker_interrupts_the_retry_instead_of_waiting_for_the_receiver():
    # the receiver is down; after three failed attempts the worker starts to stop
    fake, metrics = FakeTime(), NotifyMetrics()
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/hook", metrics=metrics, sleep=fake.sleep, clock=fake.clock)
    stopping = lambda: sample(metrics, "elderwatch_notify_attempts_total", result="retryable") >= 3  # noqa: E731

    async def body():
        with pytest.raises(DeliveryInterrupted):
            await sender.deliver(NOTIFICATIONS[0], interrupted=stopping)
        await sender.close()

    asyncio.run(body())
    assert sample(metrics, "elderwatch_notify_attempts_total", result="retryable") == 3  # no fourth attempt
    assert max(fake.sleeps) <= 0.25  # the backoff is slept in slices that can be interrupted
    assert metrics.retrying._value.get() == 0
