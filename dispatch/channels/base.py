"""A channel: one way of telling a person that a ticket needs them, and one try at it.

A channel (a JSON webhook, a WeCom or DingTalk group robot, e-mail) has one method,
:meth:`Channel.send`: one try at delivering one notification, classified as an :class:`Attempt`:

* ``delivered``: the receiver took it (HTTP 2xx, a robot's ``errcode`` 0, SMTP 250);
* ``retryable``: the receiver could not take it now and may later (connection refused, a timeout,
  HTTP 408/429/5xx, a robot's rate limit, SMTP 4xx): :mod:`dispatch.notify` tries again after a
  backoff, for as long as it takes;
* ``rejected``: the receiver refuses this request and always will (HTTP 4xx, a robot's bad key,
  SMTP 5xx): retrying would block every later notification behind it, so it is counted and logged.

``send`` never raises for receiver trouble; it may raise only for a programming error (an e-mail
message without an address). Retrying, backoff, metrics and parking live in :mod:`dispatch.notify`,
once for every channel, as Alertmanager keeps its retry loop out of its integrations.

A channel is built from its entry in the channels file (:class:`ChannelConfig`, one subclass per
channel) by :meth:`Channel.from_config`. Secrets (robot keys are in the robot URL, SMTP passwords)
are :class:`~pydantic.SecretStr` in the config and never in a channel's ``repr``, a log line or an
:class:`Attempt`'s ``detail``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from dispatch.channels.message import Message
    from schemas.tickets import Notification

DELIVERED, RETRYABLE, REJECTED = "delivered", "retryable", "rejected"


@dataclass(frozen=True)
class Attempt:
    """How one try ended: ``result`` is ``delivered``, ``retryable`` or ``rejected``.

    ``detail`` is safe to log: a status, an error code or an exception type, never the payload, an
    address or a URL. ``status`` is the HTTP status or SMTP reply code when there was one;
    ``retry_after`` the seconds a receiver asked for (``Retry-After``)."""

    result: str
    detail: str
    retry_after: float | None = None
    status: int | None = None


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


class ChannelConfig(BaseModel):
    """One entry under ``"channels"`` in the channels file; each channel narrows ``type`` to its name."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: str


class Channel(abc.ABC):
    """One way of telling a person. Subclasses set ``name`` (their ``type`` in the channels file) and
    ``Config``, and implement :meth:`from_config` and :meth:`send`; :mod:`dispatch.channels` registers
    them, and ``tests/unit/test_channel_conformance.py`` runs its one suite over every registered one."""

    name: ClassVar[str]
    Config: ClassVar[type[ChannelConfig]]

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: ChannelConfig, *, timeout_s: float) -> "Channel":
        """The channel an entry of the channels file describes; ``timeout_s`` bounds one try."""

    @abc.abstractmethod
    async def send(self, notification: "Notification", message: "Message") -> Attempt:
        """One try at telling ``message.to`` (or the channel's group) about ``notification``, classified.
        Never raises for receiver trouble (refused, timed out, an error answer): that is an :class:`Attempt`."""

    async def close(self) -> None:
        """Release connections; the channel may still be used afterwards (it reconnects)."""

    def __repr__(self) -> str:  # never the URL: a robot's key is in it
        return f"<{type(self).__name__}>"


__all__ = ["DELIVERED", "REJECTED", "RETRYABLE", "Attempt", "Channel", "ChannelConfig", "classify",
           "parse_retry_after"]
