"""DingTalk (钉钉) custom robot: the message, as markdown, in the staff's group.

The robot's URL is ``https://oapi.dingtalk.com/robot/send?access_token=<token>`` (a secret: never
logged). A robot secured by signing ("加签") also needs ``&timestamp=<ms>&sign=<sign>`` on every
request, where ``sign`` is the URL-encoded base64 of the HMAC-SHA256 of ``"<timestamp>\\n<secret>"``
keyed by the secret (DingTalk refuses a timestamp more than an hour off: the wall clock is used).
It takes ``{"msgtype": "markdown", "markdown": {"title": "...", "text": "..."}}`` and answers HTTP 200
with ``{"errcode": 0, "errmsg": "ok"}``; ``errcode`` 130101 (too many messages: 20 a minute) is
retryable, any other non-zero code (a bad token or signature: 300001, 310000, …) is rejected. HTTP
5xx, 408, 429, timeouts and refused connections are retryable, other 4xx rejected.

Channels file: ``{"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=...",
"secret": "SEC..."}`` (``secret`` only for a robot with signing).

>>> sign("SECexample", 1700000000002)  # what `openssl dgst -sha256 -hmac SECexample -binary | base64` says
'YT7/FZACkFUlBiZXsLLxEy2viBHwqjxxCGDe+4v2PGc='
>>> signed_url("https://oapi.dingtalk.com/robot/send?access_token=t", "SECexample", 1700000000002)
'https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000002&sign=YT7%2FFZACkFUlBiZXsLLxEy2viBHwqjxxCGDe%2B4v2PGc%3D'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Literal
from urllib.parse import quote_plus

from pydantic import SecretStr, field_validator
from yarl import URL

from dispatch.channels.base import Attempt, ChannelConfig
from dispatch.channels.http import HttpChannel, check_url, json_body, robot_attempt, secret_url
from dispatch.channels.message import Message
from schemas.tickets import Notification

#: 130101: more than 20 messages a minute.
RETRYABLE_ERRCODES = frozenset({130101})


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature (base64, before URL-encoding) of ``timestamp_ms`` with ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """``url`` with ``timestamp`` and the URL-encoded ``sign`` appended, as DingTalk documents it."""
    return f"{url}{'&' if '?' in url else '?'}timestamp={timestamp_ms}&sign={quote_plus(sign(secret, timestamp_ms))}"


def markdown_text(message: Message) -> str:
    """The message in DingTalk's markdown (a line break needs a blank line)."""
    return "\n\n".join((f"#### {message.title}", *message.lines, f"[{message.link_label}]({message.link})"))


class DingTalkChannel(HttpChannel):
    """Posts the message to a DingTalk custom robot.

    Parameters
    ----------
    url
        The robot's webhook URL (its access token included).
    secret
        The robot's signing secret (``SEC…``), or None for a robot secured otherwise (keywords, IP list).
    timeout_s
        Longest wait for one answer.
    wall_clock
        Seconds since the epoch, for the signature's timestamp (injected in tests).
    """

    name = "dingtalk"

    class Config(ChannelConfig):
        type: Literal["dingtalk"] = "dingtalk"
        url: SecretStr
        secret: SecretStr | None = None

        url_is_http = field_validator("url")(secret_url)

    def __init__(self, url: str, *, secret: str | None = None, timeout_s: float = 5.0,
                 wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(timeout_s=timeout_s)
        self.url, self._secret, self.wall_clock = check_url(url), secret, wall_clock

    @classmethod
    def from_config(cls, config: Config, *, timeout_s: float) -> "DingTalkChannel":
        return cls(config.url.get_secret_value(), timeout_s=timeout_s,
                   secret=config.secret.get_secret_value() if config.secret is not None else None)

    async def send(self, notification: Notification, message: Message) -> Attempt:
        url = self.url
        if self._secret is not None:  # signed per request: the timestamp must be recent
            url = signed_url(url, self._secret, int(self.wall_clock() * 1000))
        body = json_body({"msgtype": "markdown", "markdown": {"title": message.title, "text": markdown_text(message)}})
        answer = await self.post(URL(url, encoded=True), body, {"Content-Type": "application/json; charset=utf-8"},
                                 read_body=True)
        if isinstance(answer, Attempt):
            return answer
        return robot_attempt(answer, retryable_errcodes=RETRYABLE_ERRCODES)


__all__ = ["RETRYABLE_ERRCODES", "DingTalkChannel", "markdown_text", "sign", "signed_url"]
