"""WeCom (企业微信) group robot: the message, as markdown, in the staff's work group.

A group robot posts to one group chat; everyone in the group reads it, so the message names who it
is for. Its URL is ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>``; the key is the
only credential, so the URL is a secret (never logged). It takes
``{"msgtype": "markdown", "markdown": {"content": "..."}}`` (at most 4,096 bytes of UTF-8) and answers
HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``. ``errcode`` 45009 (more than 20 messages a minute)
and -1 (system busy) are retryable; any other non-zero code (a bad or deleted key: 93000, …) is
rejected. HTTP 5xx, 408, 429, timeouts and refused connections are retryable, other 4xx rejected.

Channels file: ``{"type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."}``.

>>> from dispatch.channels.message import Message
>>> print(markdown(Message(title="【新工单】长时间无用水用电（住户 hh-1）", lines=("住户：hh-1", "接收人：w-1"),
...                        link="https://care.example.org/tickets/hh-1%2Fx", link_label="打开工单")))
**【新工单】长时间无用水用电（住户 hh-1）**
> 住户：hh-1
> 接收人：w-1
<BLANKLINE>
[打开工单](https://care.example.org/tickets/hh-1%2Fx)
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from dispatch.channels.base import Attempt, ChannelConfig
from dispatch.channels.http import HttpChannel, check_url, json_body, robot_attempt, secret_url
from dispatch.channels.message import Message
from schemas.tickets import Notification

#: 45009: over the robot's rate limit (20 messages a minute); -1: system busy.
RETRYABLE_ERRCODES = frozenset({45009, -1})


def markdown(message: Message) -> str:
    """The message in WeCom's markdown: the title in bold, the lines quoted, the link."""
    return "\n".join((f"**{message.title}**", *(f"> {line}" for line in message.lines), "",
                      f"[{message.link_label}]({message.link})"))


class WeComChannel(HttpChannel):
    """Posts the message to a WeCom group robot.

    Parameters
    ----------
    url
        The robot's webhook URL (its key included).
    timeout_s
        Longest wait for one answer.
    """

    name = "wecom"

    class Config(ChannelConfig):
        type: Literal["wecom"] = "wecom"
        url: SecretStr

        url_is_http = field_validator("url")(secret_url)

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        super().__init__(timeout_s=timeout_s)
        self.url = check_url(url)

    @classmethod
    def from_config(cls, config: Config, *, timeout_s: float) -> "WeComChannel":
        return cls(config.url.get_secret_value(), timeout_s=timeout_s)

    async def send(self, notification: Notification, message: Message) -> Attempt:
        body = json_body({"msgtype": "markdown", "markdown": {"content": markdown(message)}})
        answer = await self.post(self.url, body, {"Content-Type": "application/json; charset=utf-8"}, read_body=True)
        if isinstance(answer, Attempt):
            return answer
        return robot_attempt(answer, retryable_errcodes=RETRYABLE_ERRCODES)


__all__ = ["RETRYABLE_ERRCODES", "WeComChannel", "markdown"]
