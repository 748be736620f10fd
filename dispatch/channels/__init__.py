"""Where staff are told: one class per channel, one ``send`` each, all registered here.

::

    Notification ──routing.ChannelRoutes.resolve──▶ (channel, Message) ──channel.send──▶ Attempt
                   (whose entry: staff, community,     rendered in the     one try: delivered |
                    default; which language)           recipient's language  retryable | rejected

* :mod:`~dispatch.channels.base`: :class:`Channel` and :class:`Attempt`;
* :mod:`~dispatch.channels.message`: the :class:`Message` a person reads (zh, en);
* :mod:`~dispatch.channels.webhook`, :mod:`~dispatch.channels.wecom`, :mod:`~dispatch.channels.dingtalk`,
  :mod:`~dispatch.channels.email`: the channels;
* :mod:`~dispatch.channels.routing`: the channels file, and who is told where.

Adding a channel: a module with one :class:`Channel` subclass (``name``, ``Config``, ``from_config``,
``send``), listed in :data:`CHANNELS`. ``tests/unit/test_channel_conformance.py`` refuses a
subclass that is not listed, and runs its one suite over every listed one (it needs a fake receiver
for it). This package never imports ``streams``.
"""

from __future__ import annotations

from dispatch.channels.base import DELIVERED, REJECTED, RETRYABLE, Attempt, Channel, ChannelConfig
from dispatch.channels.dingtalk import DingTalkChannel
from dispatch.channels.email import EmailChannel
from dispatch.channels.message import Message, render
from dispatch.channels.webhook import WebhookChannel
from dispatch.channels.wecom import WeComChannel

#: Every channel, by its ``type`` in the channels file (also its metric label).
CHANNELS: dict[str, type[Channel]] = {c.name: c for c in (WebhookChannel, WeComChannel, DingTalkChannel, EmailChannel)}

__all__ = ["CHANNELS", "DELIVERED", "REJECTED", "RETRYABLE", "Attempt", "Channel", "ChannelConfig", "DingTalkChannel",
           "EmailChannel", "Message", "WeComChannel", "WebhookChannel", "render"]
