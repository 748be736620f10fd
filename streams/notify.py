"""The notify stage: ``tickets.*.ack`` -> :mod:`dispatch.notify` -> the webhook.

One agent, ``notify``, concurrency 1, so notifications leave in the order their acks arrived.
Per message, in this order:

1. parse; a message that is not a :class:`~schemas.tickets.TicketAck` is counted
   (``elderwatch_notify_unreadable_total``), logged by its coordinates and skipped, never a crash;
2. :func:`~dispatch.notify.notifications_for` picks who to tell and why (nobody, for most acks);
3. no webhook configured: each notification is counted as skipped; otherwise it is delivered,
   which retries until the receiver accepts it or refuses it for good;
4. only then the next message. Faust commits a message's offset once the agent has moved past it,
   so a worker that stops mid-delivery re-sends that message's notifications after the restart
   (same ``Idempotency-Key``: the receiver acts once); nothing is lost.

A receiver that is down holds up every later notification behind the one being retried
(``elderwatch_notify_retrying``, ``elderwatch_notify_oldest_pending_seconds`` show it) and the ack
topics' offsets stop moving; they are delayed, never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import faust
from pydantic import ValidationError

from dispatch.notify import NotifyMetrics, WebhookSender, notifications_for
from elderwatch.settings import Settings
from schemas.tickets import TicketAck

#: Where a staff member opens the ticket: the staff API's ticket detail.
TICKET_PATH = "/api/v1/tickets/{ticket_id}"

log = logging.getLogger(__name__)


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


def register_notifier(app: faust.App, ack_topics: faust.TopicT | Iterable[faust.TopicT], settings: Settings,
                      metrics: NotifyMetrics, *, sender: WebhookSender | None = None) -> None:
    """Add the ``notify`` agent over the ``.ack`` topics (raw bytes): one topic over several names, or several
    topics (e.g. ``topics.ticket_acks.values()``), merged into one channel.

    ``sender`` defaults to a :class:`WebhookSender` for ``settings.webhook_url``; with neither, nothing is sent
    and every notification is counted as skipped. The sender's session is closed when the agent stops.
    """
    if sender is None and settings.webhook_url is not None:
        sender = WebhookSender(settings.webhook_url, timeout_s=settings.webhook_timeout_s,
                               max_backoff_s=settings.webhook_max_backoff_s, metrics=metrics)
    channel = ack_topics if isinstance(ack_topics, faust.TopicT) else app.topic(
        *(name for topic in ack_topics for name in topic.topics), key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw")

    @app.agent(channel, name="notify", concurrency=1)
    async def notify(stream):
        try:
            async for event in stream.events():
                value = event.value if isinstance(event.value, (bytes, type(None))) else bytes(event.value)
                ack = parse_ack(value)
                if not isinstance(ack, TicketAck):
                    metrics.unreadable.inc()
                    message = event.message
                    # Coordinates and the error type only: the value may hold a household's details.
                    log.warning("unreadable message on %s:%s@%s skipped: %s", message.topic, message.partition,
                                message.offset, "empty" if ack is None else ack.errors()[0]["type"])
                    continue
                for notification in notifications_for(ack, ticket_path=TICKET_PATH):
                    if sender is None:
                        metrics.skipped.inc()
                    else:
                        await sender.deliver(notification)
        finally:  # the agent stops with the app: its last attempt is over, the session can go
            if sender is not None:
                await sender.close()

    app.elderwatch_notify_agent = notify
    app.elderwatch_notify_sender = sender


__all__ = ["parse_ack", "register_notifier"]
