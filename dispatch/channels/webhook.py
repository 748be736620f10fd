"""The generic webhook: the :class:`~schemas.tickets.Notification` itself, POSTed as JSON, for a staff app.

The body is the notification (its JSON wire format, not the rendered message: the receiving app
renders and links it itself), with ``Idempotency-Key: <notification_id>``: a notification sent
again after a lost answer has the same key, and the receiver acts once per key. 2xx is delivered;
connection errors, timeouts, 408, 429 and 5xx are retryable (a ``Retry-After`` in seconds is passed
on); any other answer is rejected. Redirects are not followed (a 3xx is rejected).

Configured by ``ELDERWATCH_WEBHOOK_URL`` (the channel named ``webhook``) or as a channel of type
``webhook`` in the channels file: ``{"type": "webhook", "url": "https://staff-app.example.org/hook"}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from dispatch.channels.base import Attempt, ChannelConfig, classify
from dispatch.channels.http import HttpChannel, check_url, secret_url
from dispatch.channels.message import Message
from schemas.tickets import Notification


class WebhookChannel(HttpChannel):
    """POSTs the notification as JSON to ``url``.

    Parameters
    ----------
    url
        The receiver, an absolute http(s) URL.
    timeout_s
        Longest wait for one answer; a timeout is retryable (the receiver may have acted: the key tells it).
    """

    name = "webhook"

    class Config(ChannelConfig):
        type: Literal["webhook"] = "webhook"
        url: SecretStr

        url_is_http = field_validator("url")(secret_url)

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        super().__init__(timeout_s=timeout_s)
        self.url = check_url(url)

    @classmethod
    def from_config(cls, config: Config, *, timeout_s: float) -> "WebhookChannel":
        return cls(config.url.get_secret_value(), timeout_s=timeout_s)

    async def send(self, notification: Notification, message: Message) -> Attempt:
        headers = {"Content-Type": "application/json", "Idempotency-Key": notification.notification_id}
        answer = await self.post(self.url, notification.model_dump_json().encode(), headers)
        if isinstance(answer, Attempt):
            return answer
        return Attempt(classify(answer.status), f"HTTP {answer.status}", answer.retry_after, answer.status)


__all__ = ["WebhookChannel"]
