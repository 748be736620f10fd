"""The notifier: a ticket acknowledgement becomes messages to the staff who must be told, where they are.

Three stages, each one method (as in Alertmanager's notify pipeline)::

    TicketAck ──notifications_for──▶ [Notification, …] ──Notifier.deliver──▶ delivered | rejected
              (pure: should we tell,   one per recipient   │ the recipient's route (dispatch/channels/routing.py),
               whom, and why)                              │ then retries retryable tries with backoff
                                                           └─ Channel.send: one try, classified (webhook, WeCom,
                                                              DingTalk, e-mail: dispatch/channels/)

The retry loop is the same for every channel; a channel only says how one try ended. What a
delivery guarantees:

* **Never lost to a receiver that is down.** A retryable try (connection refused, a timeout, HTTP
  408, 429 or 5xx, a robot's rate limit, SMTP 4xx) is tried again after 1 s, 2 s, 4 s, … (at most
  ``max_backoff_s``; a ``Retry-After`` in seconds is honoured, capped the same way) until the
  receiver takes it. A receiver down for an hour delays notifications by an hour.
* **Possibly sent twice.** A timeout may hide a request the receiver did get; a worker restart
  re-sends the notification it was delivering. ``notification_id`` is stable (the same ack makes
  the same id) and travels with it: the webhook's ``Idempotency-Key`` header (the receiver acts once
  per key), an e-mail's ``Message-ID``, the short reference in a chat message.
* **Rejected means lost, loudly.** A refusal that will not change (HTTP 4xx, 3xx, a robot's bad key,
  SMTP 5xx) would block every later notification behind it if retried. It is counted
  (``elderwatch_notify_rejected_total{channel}``) and logged, without household id, address or payload.

The clock and the sleep are injected, so tests run a timeline without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from dispatch.channels import CHANNELS
from dispatch.channels.base import DELIVERED, REJECTED, RETRYABLE, Attempt, classify, parse_retry_after
from dispatch.channels.routing import ChannelRoutes
from dispatch.tickets import EventKind
from schemas.tickets import AckResult, Notification, TicketAck

# *_created samples double the page and nobody graphs them (as in streams/metrics.py).
disable_created_metrics()

log = logging.getLogger(__name__)

Reason = Literal["dispatched", "escalated", "re_alert", "snooze_over", "feedback_reminder"]

#: Why a person is told, by the event that made the ticket stage name them. Other events tell nobody.
REASONS: dict[EventKind, Reason] = {
    EventKind.DISPATCH: "dispatched",
    EventKind.ACK_TIMEOUT: "escalated",
    EventKind.ESCALATE: "escalated",
    EventKind.HANDLE_TIMEOUT: "re_alert",
    EventKind.WAKE: "snooze_over",
    EventKind.FEEDBACK_TIMEOUT: "feedback_reminder",
}


class DeliveryInterrupted(Exception):
    """The worker is stopping or rebalancing while a notification is being retried: keep it for later."""


# -- stage 1: should we notify? (pure) ---------------------------------------------------------

def notify_reason(ack: TicketAck) -> Reason | None:
    """Why this ack tells someone, or None: only a change the ticket stage applied, naming people."""
    if ack.by != "tickets" or ack.result is not AckResult.APPLIED or not ack.notify or ack.ticket is None:
        return None
    return REASONS.get(ack.command.event.kind)


def notifications_for(ack: TicketAck, *, ticket_path: str = "/tickets/{ticket_id}") -> list[Notification]:
    """One notification per recipient the ack names (none if :func:`notify_reason` says so).

    ``notification_id`` is ``<ack_id>-><recipient>``: a redelivered ack makes the same ids. The
    ticket id goes into ``ticket_path`` percent-encoded (it holds ``/`` and ``+``), as one path segment.
    """
    reason = notify_reason(ack)
    if reason is None:
        return []
    ticket = ack.ticket
    summary = ticket.summary
    url = ticket_path.format(ticket_id=quote(ack.ticket_id, safe=""))
    return [Notification(notification_id=f"{ack.ack_id}->{recipient}", recipient=recipient, reason=reason,
                         ticket_id=ack.ticket_id, household_id=ack.household_id, community=ticket.community,
                         kind=ticket.kind,
                         severity=ticket.severity, state=ticket.state.value, summary=summary, ticket_url=url,
                         respond_by=ticket.deadline,
                         at=ack.at)
            for recipient in dict.fromkeys(ack.notify)]  # each person once, in the ack's order


# -- stage 2: one try, classified: dispatch/channels (Channel.send -> Attempt) ---------------

def backoff_delay(failures: int, max_backoff_s: float, retry_after: float | None = None) -> float:
    """Seconds to wait after ``failures`` consecutive retryable attempts: 1, 2, 4, … up to ``max_backoff_s``.
    A ``Retry-After`` replaces the doubling (capped too, and at least 1 s: ``Retry-After: 0`` is no busy loop).

    >>> [backoff_delay(n, 60) for n in range(1, 9)]
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    >>> backoff_delay(100_000, 60)  # a receiver down for days: still 60, no overflow
    60.0
    >>> [backoff_delay(1, 60, retry_after=s) for s in (30, 3600, 0)]
    [30.0, 60.0, 1.0]
    """
    delay = 2.0 ** min(failures - 1, 32) if retry_after is None else max(retry_after, 1.0)
    return float(min(delay, max_backoff_s))


# -- metrics -----------------------------------------------------------------------------------

class NotifyMetrics:
    """The notifier's counters and gauges. Once the ack topics are drained:
    notifications = delivered + rejected + skipped (summed over channels). The ``channel`` label is a
    channel type (``webhook``, ``wecom``, ``dingtalk``, ``email``), never a configured name or a person."""

    RESULTS = (DELIVERED, RETRYABLE, REJECTED)

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.attempts = Counter("elderwatch_notify_attempts", "Tries at telling someone, by channel and how they "
                                "ended (retryable ones are retried).", ["channel", "result"], registry=r)
        self.delivered = Counter("elderwatch_notify_delivered", "Notifications a channel's receiver accepted.",
                                 ["channel"], registry=r)
        self.rejected = Counter("elderwatch_notify_rejected",
                                "Notifications a channel's receiver refused for good (HTTP 4xx but 408/429, a "
                                "robot's error code, SMTP 5xx): not retried, lost.", ["channel"], registry=r)
        self.parked = Counter("elderwatch_notify_parked",
                              "Notifications put on notifications.pending because the worker stopped or "
                              "rebalanced while they were being retried (delivered later).", registry=r)
        self.skipped = Counter("elderwatch_notify_skipped", "Notifications not sent: no channel configured "
                               "(neither a webhook nor a channels file).", registry=r)
        self.unreadable = Counter("elderwatch_notify_unreadable",
                                  "Messages on the .ack topics that are not a TicketAck: skipped.", registry=r)
        self.retrying = Gauge("elderwatch_notify_retrying", "1 while a notification is being retried.", registry=r)
        self.oldest_pending_seconds = Gauge(
            "elderwatch_notify_oldest_pending_seconds",
            "How long the notification being delivered has waited since its first attempt; 0 when none is.",
            registry=r)
        self.last_success_timestamp_seconds = Gauge("elderwatch_notify_last_success_timestamp_seconds",
                                                    "Unix time of the last delivered notification.", registry=r)
        for channel in CHANNELS:  # export zeros too, so rate() works from the start
            for result in self.RESULTS:
                self.attempts.labels(channel=channel, result=result)
            self.delivered.labels(channel=channel)
            self.rejected.labels(channel=channel)


# -- stage 3: deliver, retrying ----------------------------------------------------------------

class Notifier:
    """Delivers notifications through the channel :class:`~dispatch.channels.routing.ChannelRoutes` picks for
    each recipient; :meth:`deliver` retries retryable tries until delivered or rejected, whatever the channel.

    Parameters
    ----------
    routes
        The configured channels and who each tells.
    max_backoff_s
        Longest wait between two tries (a ``Retry-After`` is capped by it too).
    metrics
        Counters and gauges (a new registry if not given).
    sleep, clock
        Injected so tests run a timeline without waiting.
    """

    def __init__(self, routes: ChannelRoutes, *, max_backoff_s: float = 60.0, metrics: NotifyMetrics | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.routes, self.max_backoff_s = routes, max_backoff_s
        self.metrics = metrics or NotifyMetrics()
        self.sleep, self.clock = sleep, clock
        self._pending_since: float | None = None
        self.metrics.oldest_pending_seconds.set_function(self._pending_seconds)

    async def deliver(self, notification: Notification, *, interrupted: Callable[[], bool] | None = None) -> str:
        """``"delivered"`` or ``"rejected"``; retryable failures are retried, however long that takes,
        unless ``interrupted()`` becomes true (the worker stops or rebalances): then
        :class:`DeliveryInterrupted` is raised and the caller keeps the notification for later."""
        m = self.metrics
        channel, message = self.routes.resolve(notification)
        kind = channel.name  # the label and the log name: a type, never a URL or a person
        self._pending_since = self.clock()
        failures = 0
        try:
            while True:
                attempt = await channel.send(notification, message)
                m.attempts.labels(channel=kind, result=attempt.result).inc()
                if attempt.result == DELIVERED:
                    m.delivered.labels(channel=kind).inc()
                    m.last_success_timestamp_seconds.set_to_current_time()
                    return DELIVERED
                if attempt.result == REJECTED:
                    m.rejected.labels(channel=kind).inc()
                    log.error("%s rejected a %s notification (%s): not retried; check the channel's configuration",
                              kind, notification.reason, attempt.detail)
                    return REJECTED
                failures += 1
                delay = backoff_delay(failures, self.max_backoff_s, attempt.retry_after)
                m.retrying.set(1)
                log.warning("%s attempt %d failed (%s): retrying in %.0f s", kind, failures, attempt.detail, delay)
                await self._wait(delay, interrupted)
        finally:
            self._pending_since = None
            m.retrying.set(0)

    async def _wait(self, delay: float, interrupted: Callable[[], bool] | None) -> None:
        if interrupted is None:
            await self.sleep(delay)
            return
        # in short slices, so that a stopping worker is not held up for a whole backoff
        waited = 0.0
        while waited < delay:
            if interrupted():
                raise DeliveryInterrupted
            step = min(0.25, delay - waited)
            await self.sleep(step)
            waited += step
        if interrupted():
            raise DeliveryInterrupted

    async def close(self) -> None:
        """Close every channel's connections (when the notify agent stops)."""
        await self.routes.close()

    def _pending_seconds(self) -> float:
        return 0.0 if self._pending_since is None else self.clock() - self._pending_since


class WebhookSender(Notifier):
    """A :class:`Notifier` that tells everyone through one generic webhook at ``url`` (the JSON notification,
    as before the channels file existed)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, max_backoff_s: float = 60.0,
                 metrics: NotifyMetrics | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ChannelRoutes.webhook_only(url, timeout_s=timeout_s), max_backoff_s=max_backoff_s,
                         metrics=metrics, sleep=sleep, clock=clock)
        self.url = url


__all__ = ["REASONS", "Attempt", "DeliveryInterrupted", "Notifier", "NotifyMetrics", "WebhookSender", "backoff_delay",
           "classify", "notifications_for", "notify_reason", "parse_retry_after"]
