"""The notify stage: ``tickets.*.ack`` -> :mod:`dispatch.notify` -> each recipient's channel (webhook, WeCom,
DingTalk, e-mail: :mod:`dispatch.channels`).

One agent, ``notify``, concurrency 1, so notifications leave in the order their acks arrived.
Per message, in this order:

1. parse; a message on an ``.ack`` topic that is not a :class:`~schemas.tickets.TicketAck` is counted
   (``elderwatch_notify_unreadable_total``), logged by its coordinates and skipped, never a crash (the ticket
   stage wrote it; detect dead-letters what it cannot read on ``tickets.feedback.ack``); one on
   ``notifications.pending`` that is not a :class:`~schemas.tickets.Notification` is dead-lettered (stage
   ``notify``), as is any message the agent raises on (``processing_error``, :mod:`streams.guard`);
2. :func:`~dispatch.notify.notifications_for` picks who to tell and why (nobody, for most acks);
3. no channel configured (neither ``ELDERWATCH_WEBHOOK_URL`` nor ``ELDERWATCH_CHANNELS_FILE``): each
   notification is counted as skipped; otherwise it is delivered through its recipient's channel,
   which retries until the receiver accepts it or refuses it for good;
4. only then the next message. Faust commits a message's offset once the agent has moved past it,
   so a worker that stops mid-delivery re-sends that message's notifications after the restart
   (same ``Idempotency-Key``, ``Message-ID`` or reference: the receiver can tell); nothing is lost.

A receiver that is down holds up every later notification behind the one being retried
(``elderwatch_notify_retrying``, ``elderwatch_notify_oldest_pending_seconds`` show it) and the ack
topics' offsets stop moving; they are delayed, never dropped.

But Faust waits for the message in hand before it stops or rebalances, so an endless retry would
hold the whole worker (seen: a SIGTERM ignored for 30 s, then a killed worker and a 60 s session
timeout before its successor got the partitions). When the worker stops or rebalances, the retry
ends and the undelivered notifications are parked on ``notifications.pending`` (sent, with
``acks=all``, before the message is acknowledged); the same agent reads that topic and delivers
them like the rest, on whichever worker owns them next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timezone

import faust
from pydantic import ValidationError

from dispatch.channels.routing import ChannelRoutes, ChannelsFileError
from dispatch.notify import DeliveryInterrupted, Notifier, NotifyMetrics, notifications_for
from elderwatch.settings import Settings
from schemas.dead_letter import RejectReason
from schemas.tickets import Notification, TicketAck
from streams import topics as topic_specs
from streams.guard import AgentGuard, DeadLetters, Source
from streams.metrics import AgentMetrics

#: Where a staff member opens the ticket: the staff API's ticket detail.
TICKET_PATH = "/api/v1/tickets/{ticket_id}"

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def parse_ack(value: bytes | None) -> TicketAck | ValidationError | None:
    """The ack in a message; the validation error (never raised) if it is not one; None if empty.

    >>> isinstance(parse_ack(b"not json"), ValidationError), parse_ack(b"")
    (True, None)
    """
    if not value:
        return None
    try:
        return TicketAck.model_validate_json(value)
    except ValidationError as exc:
        return exc


def parse_notification(value: bytes | None) -> Notification | ValidationError | None:
    """A parked notification (on ``notifications.pending``), the validation error, or None if empty."""
    if not value:
        return None
    try:
        return Notification.model_validate_json(value)
    except ValidationError as exc:
        return exc


def notifier_from_settings(settings: Settings, metrics: NotifyMetrics) -> Notifier | None:
    """The notifier the settings describe: the channels file's routes (with ``ELDERWATCH_WEBHOOK_URL`` as the
    channel named ``webhook``), or the webhook for everyone; None with neither.

    A channels file that cannot be used stops the worker at start with one line (``SystemExit``), as a bad
    detection config does: a notifier that cannot tell anyone must not run quietly."""
    try:
        routes = ChannelRoutes.load(settings.channels_file, webhook_url=settings.webhook_url,
                                    public_url=settings.public_url, timeout_s=settings.webhook_timeout_s)
    except ChannelsFileError as exc:
        raise SystemExit(f"elderwatch: bad ELDERWATCH_CHANNELS_FILE or ELDERWATCH_WEBHOOK_URL: {exc}") from None
    if routes is None:
        return None
    return Notifier(routes, max_backoff_s=settings.webhook_max_backoff_s, metrics=metrics)


def register_notifier(app: faust.App, ack_topics: faust.TopicT | Iterable[faust.TopicT], settings: Settings,
                      metrics: NotifyMetrics, *, sender: Notifier | None = None,
                      pending: faust.TopicT | None = None, deadletter: faust.TopicT | None = None) -> None:
    """Add the ``notify`` agent over the ``.ack`` topics (raw bytes): one topic over several names, or several
    topics (e.g. ``topics.ticket_acks.values()``), merged into one channel.

    ``sender`` defaults to :func:`notifier_from_settings`; with no channel configured, nothing is sent and every
    notification is counted as skipped. The channels' connections are closed when the agent stops.
    ``deadletter`` defaults to the settings' ``readings.deadletter``.
    """
    if sender is None:
        sender = notifier_from_settings(settings, metrics)
    names = [name for topic in ([ack_topics] if isinstance(ack_topics, faust.TopicT) else ack_topics)
             for name in topic.topics]
    pending_name = pending.get_topic_name() if pending is not None else None
    channel = app.topic(*names, *([pending_name] if pending_name else []), key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw")

    def interrupted() -> bool:
        # Faust waits for the message in hand before it stops or rebalances: a receiver that is down
        # must not hold the whole worker, so the retrying stops and the notification is parked.
        return bool(app.should_stop or app.rebalancing)

    async def deliver_all(notifications: list[Notification], key: bytes | None) -> None:
        for i, notification in enumerate(notifications):
            if sender is None:
                metrics.skipped.inc()
                continue
            try:
                await sender.deliver(notification, interrupted=interrupted if pending is not None else None)
            except DeliveryInterrupted:
                for parked in notifications[i:]:  # durable before this message is acknowledged
                    await pending.send(key=key, value=parked.model_dump_json().encode())
                    metrics.parked.inc()
                return

    if deadletter is None:
        deadletter = app.topic(topic_specs.full_name(topic_specs.READINGS_DEADLETTER, settings.topic_prefix),
                               key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    agent_metrics = AgentMetrics.of(metrics.registry)
    dead_letters = DeadLetters(deadletter, _utc_now, lambda reason: agent_metrics.unreadable.labels(agent="notify").inc())
    guard = AgentGuard("notify", "notify", dead_letters, agent_metrics)

    async def handle(value: bytes | None, key: bytes | None, source: Source) -> None:
        if source.topic == pending_name:
            parsed = parse_notification(value)
            if not isinstance(parsed, Notification):  # parked by a notifier: something else wrote this
                detail = "empty message" if parsed is None else f"not a Notification: {parsed.errors()[0]['type']}"
                reason = RejectReason.NOT_JSON if parsed is None or parsed.errors()[0]["type"] == "json_invalid" \
                    else RejectReason.INVALID_FIELD
                return await dead_letters.send(value, key, reason, detail, stage="notify", source=source)
            notifications = [parsed]
        else:
            parsed = parse_ack(value)
            if not isinstance(parsed, TicketAck):
                metrics.unreadable.inc()
                # Coordinates and the error type only: the value may hold a household's details.
                log.warning("unreadable message on %s skipped: %s", source,
                            "empty" if parsed is None else parsed.errors()[0]["type"])
                return
            notifications = notifications_for(parsed, ticket_path=TICKET_PATH)
        await deliver_all(notifications, key)

    @app.agent(channel, name="notify", concurrency=1)
    async def notify(stream):
        try:
            await guard.run(stream, handle)
        finally:  # the agent stops with the app: its last attempt is over, the connections can go
            if sender is not None:
                await sender.close()

    app.elderwatch_notify_agent = notify
    app.elderwatch_notify_sender = sender


__all__ = ["notifier_from_settings", "parse_ack", "register_notifier"]
