"""What a person reads: a notification rendered in the recipient's language (``zh`` by default, ``en``).

A chat robot or an e-mail is read by a person, often on a phone in a group of colleagues, so the
message says in a few lines what happened and what to do, and links to the ticket in the staff
console, where everything else is (behind a sign-in). It holds only what the
:class:`~schemas.tickets.Notification` allows a message to hold: the pseudonymous household id, the
kind and severity (in words), the warning's summary sentence, the respond-by time, who it is for (a
staff id) and a short reference that is the same when a notification is sent again. Never notes,
names, addresses or phone numbers (the notification has none, and this module reads nothing else).

>>> from datetime import datetime, timezone
>>> from schemas.tickets import Notification
>>> n = Notification(notification_id="tickets:dispatch:dispatch:1->w-1", recipient="w-1", reason="dispatched",
...     ticket_id="hh-000042/inactivity/2026-03-01T02:00:00+00:00", household_id="hh-000042", kind="inactivity",
...     severity="high", state="dispatched", summary="no water since 02:00", ticket_url="/api/v1/tickets/x",
...     respond_by=datetime(2026, 3, 1, 8, 15, tzinfo=timezone.utc), at=datetime(2026, 3, 1, 8, tzinfo=timezone.utc))
>>> m = render(n, public_url="https://care.example.org/", timezone="Asia/Shanghai")
>>> print(m.text())
【新工单】长时间无用水用电（住户 hh-000042）
<BLANKLINE>
住户：hh-000042
情况：长时间无用水用电
紧急程度：高
说明：no water since 02:00
请在此时间前响应：2026-03-01 16:15 (Asia/Shanghai)
接收人：w-1
编号：b8d178f17f
<BLANKLINE>
打开工单：https://care.example.org/tickets/hh-000042%2Finactivity%2F2026-03-01T02%3A00%3A00%2B00%3A00
>>> render(n, language="en", public_url="https://care.example.org").title
'New ticket: no activity (household hh-000042)'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from schemas.tickets import Notification

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")

#: A summary is one sentence; a longer one is cut here (a chat robot's message has a size limit).
MAX_SUMMARY_CHARS = 300

# Built-in words, per language. A reason, kind or severity not listed is shown as it is.
TEMPLATES: dict[str, dict[str, dict[str, str]]] = {
    "zh": {
        "reason": {"dispatched": "新工单", "escalated": "升级", "re_alert": "再次提醒：尚未处置",
                   "snooze_over": "暂缓已到期", "feedback_reminder": "请填写处置结果"},
        "kind": {"inactivity": "长时间无用水用电", "continuous_flow": "长时间持续用水", "surge": "用电异常偏高",
                 "night_activity": "夜间异常活动", "meter_offline": "表计离线", "decline": "日常活动持续减少"},
        "severity": {"high": "高", "medium": "中", "low": "低", "info": "提示"},
        "label": {"household": "住户", "kind": "情况", "severity": "紧急程度", "summary": "说明",
                  "respond_by": "请在此时间前响应", "for": "接收人", "ref": "编号", "open": "打开工单"},
    },
    "en": {
        "reason": {"dispatched": "New ticket", "escalated": "Escalated", "re_alert": "Reminder: not handled yet",
                   "snooze_over": "Snooze over", "feedback_reminder": "Outcome missing"},
        "kind": {"inactivity": "no activity", "continuous_flow": "water running for hours",
                 "surge": "unusual electricity use", "night_activity": "activity at night",
                 "meter_offline": "meter offline", "decline": "activity declining"},
        "severity": {"high": "high", "medium": "medium", "low": "low", "info": "info"},
        "label": {"household": "Household", "kind": "What", "severity": "Severity", "summary": "Details",
                  "respond_by": "Respond by", "for": "For", "ref": "Ref", "open": "Open the ticket"},
    },
}


@dataclass(frozen=True)
class Message:
    """A title, a few lines and a link, in one language; ``to`` is the recipient's address on channels
    that need one (e-mail), None for a group robot (the message names who it is for)."""

    title: str
    lines: tuple[str, ...]
    link: str
    link_label: str
    language: Language = "zh"
    to: str | None = None

    def text(self) -> str:
        """Plain text: the title, a blank line, the lines, a blank line, the link."""
        return "\n".join((self.title, "", *self.lines, "", f"{self.link_label}{self._colon}{self.link}"))

    @property
    def _colon(self) -> str:
        return "：" if self.language == "zh" else ": "


def ticket_link(public_url: str, ticket_id: str) -> str:
    """The staff console's page of a ticket (its id percent-encoded as one path segment: it holds ``/``, ``+``).

    >>> ticket_link("https://care.example.org/", "hh-1/surge/2026-03-01T02:00:00+00:00")
    'https://care.example.org/tickets/hh-1%2Fsurge%2F2026-03-01T02%3A00%3A00%2B00%3A00'
    """
    return f"{public_url.rstrip('/')}/tickets/{quote(ticket_id, safe='')}"


def reference(notification_id: str) -> str:
    """A short reference for a notification, the same each time it is sent: a person who gets a message
    twice (a retry after a lost answer) sees that it is the same one.

    >>> reference("tickets:dispatch:dispatch:1->w-1")
    'b8d178f17f'
    """
    return hashlib.sha256(notification_id.encode()).hexdigest()[:10]


def render(notification: Notification, *, public_url: str, language: Language = "zh", timezone: str = "UTC",
           to: str | None = None) -> Message:
    """The message for ``notification`` in ``language``; times in ``timezone`` (an IANA name)."""
    words = TEMPLATES[language]
    colon = "：" if language == "zh" else ": "
    label = words["label"]
    kind = words["kind"].get(notification.kind, notification.kind)
    reason = words["reason"].get(notification.reason, notification.reason)
    title = (f"【{reason}】{kind}（{label['household']} {notification.household_id}）" if language == "zh"
             else f"{reason}: {kind} ({label['household'].lower()} {notification.household_id})")
    lines = [f"{label['household']}{colon}{notification.household_id}",
             f"{label['kind']}{colon}{kind}",
             f"{label['severity']}{colon}{words['severity'].get(notification.severity, notification.severity)}"]
    if notification.summary:
        summary = " ".join(notification.summary.split())  # one line, whatever it came with
        if len(summary) > MAX_SUMMARY_CHARS:
            summary = summary[:MAX_SUMMARY_CHARS - 1] + "…"
        lines.append(f"{label['summary']}{colon}{summary}")
    if notification.respond_by is not None:
        local = notification.respond_by.astimezone(ZoneInfo(timezone))
        lines.append(f"{label['respond_by']}{colon}{local:%Y-%m-%d %H:%M} ({timezone})")
    lines.append(f"{label['for']}{colon}{notification.recipient}")
    lines.append(f"{label['ref']}{colon}{reference(notification.notification_id)}")
    return Message(title=title, lines=tuple(lines), link=ticket_link(public_url, notification.ticket_id),
                   link_label=label["open"], language=language, to=to)


__all__ = ["LANGUAGES", "TEMPLATES", "Language", "Message", "reference", "render", "ticket_link"]
