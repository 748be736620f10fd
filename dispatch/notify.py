"""The notifier: a ticket acknowledgement becomes webhook POSTs to the staff who must be told.

Three stages, each one method (as in Alertmanager's notify pipeline)::

    TicketAck ──notifications_for──▶ [Notification, …] ──WebhookSender.deliver──▶ delivered | rejected
              (pure: should we tell,   one per recipient     │ retries retryable attempts with backoff
               whom, and why)                                └─ WebhookSender.attempt: one POST, classified

What a delivery guarantees:

* **Never lost to a receiver that is down.** Connection errors, timeouts, 408, 429 and 5xx are
  retried after 1 s, 2 s, 4 s, … (at most ``max_backoff_s``; a ``Retry-After`` in seconds is
  honoured, capped the same way) until the receiver answers 2xx. A receiver down for an hour
  delays notifications by an hour.
* **Possibly sent twice.** A timeout may hide a request the receiver did get; a worker restart
  re-sends the notification it was delivering. ``notification_id`` is stable (the same ack makes
  the same id) and travels as the ``Idempotency-Key`` header: the receiver acts once per key.
* **Rejected means lost, loudly.** Any other answer (4xx, 3xx) means the receiver refuses this
  request and always will; retrying would block every later notification behind it. It is counted
  (``elderwatch_notify_rejected_total``) and logged, without household id or payload.

The clock and the sleep are injected, so tests run a timeline without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from yarl import URL

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

DELIVERED, RETRYABLE, REJECTED = "delivered", "retryable", "rejected"


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


# -- stage 2: one attempt, classified (pure helpers) -------------------------------------------

def classify(status: int) -> str:
    """What an HTTP status means for a notification.

    >>> [classify(s) for s in (200, 202, 204)]
    ['delivered', 'delivered', 'delivered']
    >>> [classify(s) for s in (408, 429, 500, 502, 503)]
    ['retryable', 'retryable', 'retryable', 'retryable', 'retryable']
    >>> [classify(s) for s in (400, 401, 404, 410, 301)]  # the receiver refuses; it will again
    ['rejected', 'rejected', 'rejected', 'rejected', 'rejected']
    """
    if 200 <= status < 300:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return RETRYABLE
    return REJECTED


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header; None if absent or not in seconds (an HTTP date is ignored).

    >>> parse_retry_after("120"), parse_retry_after(" 7 "), parse_retry_after(None)
    (120.0, 7.0, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None, parse_retry_after("-3") is None
    (True, True)
    """
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


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


@dataclass(frozen=True)
class Attempt:
    """How one POST ended. ``detail`` is safe to log: a status or an exception type, never the payload."""

    result: str
    detail: str
    retry_after: float | None = None


# -- metrics -----------------------------------------------------------------------------------

class NotifyMetrics:
    """The notifier's counters and gauges. Once the ack topics are drained:
    notifications = delivered + rejected + skipped."""

    RESULTS = (DELIVERED, RETRYABLE, REJECTED)

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.attempts = Counter("elderwatch_notify_attempts", "Webhook POSTs, by how they ended.", ["result"],
                                registry=r)
        self.delivered = Counter("elderwatch_notify_delivered", "Notifications the webhook accepted (2xx).",
                                 registry=r)
        self.rejected = Counter("elderwatch_notify_rejected",
                                "Notifications the webhook refused for good (4xx but 408/429, 3xx): not retried, lost.",
                                registry=r)
        self.parked = Counter("elderwatch_notify_parked",
                              "Notifications put on notifications.pending because the worker stopped or "
                              "rebalanced while they were being retried (delivered later).", registry=r)
        self.skipped = Counter("elderwatch_notify_skipped", "Notifications not sent: no webhook configured.",
                               registry=r)
        self.unreadable = Counter("elderwatch_notify_unreadable",
                                  "Messages on the .ack topics that are not a TicketAck: skipped.", registry=r)
        self.retrying = Gauge("elderwatch_notify_retrying", "1 while a notification is being retried.", registry=r)
        self.oldest_pending_seconds = Gauge(
            "elderwatch_notify_oldest_pending_seconds",
            "How long the notification being delivered has waited since its first attempt; 0 when none is.",
            registry=r)
        self.last_success_timestamp_seconds = Gauge("elderwatch_notify_last_success_timestamp_seconds",
                                                    "Unix time of the last delivered notification.", registry=r)
        for result in self.RESULTS:  # export zeros too, so rate() works from the start
            self.attempts.labels(result=result)


# -- stage 3: deliver, retrying ----------------------------------------------------------------

class WebhookSender:
    """POSTs notifications as JSON to ``url``; :meth:`deliver` retries until delivered or rejected."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, max_backoff_s: float = 60.0,
                 metrics: NotifyMetrics | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("the webhook URL must be an absolute http(s) URL")  # fail at start, not per message
        self.url, self.timeout_s, self.max_backoff_s = url, timeout_s, max_backoff_s
        self.metrics = metrics or NotifyMetrics()
        self.sleep, self.clock = sleep, clock
        self._session: aiohttp.ClientSession | None = None
        self._pending_since: float | None = None
        self.metrics.oldest_pending_seconds.set_function(self._pending_seconds)

    async def deliver(self, notification: Notification, *, interrupted: Callable[[], bool] | None = None) -> str:
        """``"delivered"`` or ``"rejected"``; retryable failures are retried, however long that takes,
        unless ``interrupted()`` becomes true (the worker stops or rebalances): then
        :class:`DeliveryInterrupted` is raised and the caller keeps the notification for later."""
        m = self.metrics
        self._pending_since = self.clock()
        failures = 0
        try:
            while True:
                attempt = await self.attempt(notification)
                m.attempts.labels(result=attempt.result).inc()
                if attempt.result == DELIVERED:
                    m.delivered.inc()
                    m.last_success_timestamp_seconds.set_to_current_time()
                    return DELIVERED
                if attempt.result == REJECTED:
                    m.rejected.inc()
                    log.error("webhook rejected a %s notification (%s): not retried; check the receiver",
                              notification.reason, attempt.detail)
                    return REJECTED
                failures += 1
                delay = backoff_delay(failures, self.max_backoff_s, attempt.retry_after)
                m.retrying.set(1)
                log.warning("webhook attempt %d failed (%s): retrying in %.0f s", failures, attempt.detail, delay)
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

    async def attempt(self, notification: Notification) -> Attempt:
        """One POST, classified; never raises for a network failure."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": notification.notification_id,
                   "User-Agent": "elderwatch"}
        try:
            async with self._client().post(self.url, data=notification.model_dump_json().encode(), headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                           allow_redirects=False) as response:
                status, retry_after = response.status, parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return Attempt(RETRYABLE, type(exc).__name__)
        return Attempt(classify(status), f"HTTP {status}", retry_after)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _pending_seconds(self) -> float:
        return 0.0 if self._pending_since is None else self.clock() - self._pending_since


__all__ = ["REASONS", "Attempt", "NotifyMetrics", "WebhookSender", "backoff_delay", "classify", "notifications_for",
           "notify_reason", "parse_retry_after"]
