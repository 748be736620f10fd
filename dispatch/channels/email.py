"""E-mail: the message as a plain-text UTF-8 mail, submitted over SMTP with the standard library.

For staff who are reached by mail (an office mailbox, a supervisor). :mod:`smtplib` is blocking, so
each try runs in a thread (``asyncio.to_thread``): connect, optionally STARTTLS and log in, submit
one mail, quit. The ``Message-ID`` is derived from the notification id, so a mail sent again (a
retry after a lost answer) is recognisably the same one, and mail clients thread or drop it.
``Auto-Submitted: auto-generated`` keeps out-of-office replies away.

Classification: the server's 250 is delivered (submitted: the mail system takes it from there); a
4xx reply (mailbox busy, greylisting, 421 shutting down), a refused connection, a timeout or a
dropped connection are retryable; a 5xx reply (no such mailbox, authentication failed, relaying
denied) and a server without the STARTTLS or AUTH the config asks for are rejected.

Channels file: ``{"type": "email", "host": "smtp.example.org", "port": 587, "starttls": true,
"username": "elderwatch", "password": "...", "from": "elderwatch@example.org"}``; each route through
it names its address (``"to"``).

>>> import smtplib
>>> [smtp_attempt(e).result for e in (smtplib.SMTPDataError(451, b"try later"), ConnectionRefusedError(),
...                                   smtplib.SMTPServerDisconnected(), TimeoutError())]
['retryable', 'retryable', 'retryable', 'retryable']
>>> smtp_attempt(smtplib.SMTPRecipientsRefused({"w2@example.org": (550, b"no such user")}))
Attempt(result='rejected', detail='SMTP 550', retry_after=None, status=550)
>>> message_id("tickets:dispatch:dispatch:1->w-1", "example.org")
'<b8d178f17f045eea5748aedd1764f275.elderwatch@example.org>'
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from dispatch.channels.base import DELIVERED, REJECTED, RETRYABLE, Attempt, Channel, ChannelConfig
from dispatch.channels.message import Message
from schemas.tickets import Notification

#: Enough to tell an address from a typo at start; the mail server has the last word.
ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


def check_address(value: str) -> str:
    """``value`` if it looks like one e-mail address, else a ValueError.

    >>> check_address("w2@example.org")
    'w2@example.org'
    >>> check_address("w2 at example")
    Traceback (most recent call last):
    ValueError: not an e-mail address
    """
    if not ADDRESS.match(value):
        raise ValueError("not an e-mail address")
    return value


def message_id(notification_id: str, domain: str) -> str:
    """The ``Message-ID`` of a notification's mail: the same each time it is sent."""
    return f"<{hashlib.sha256(notification_id.encode()).hexdigest()[:32]}.elderwatch@{domain}>"


def compose(notification: Notification, message: Message, *, sender: str) -> EmailMessage:
    """The mail: the message's title as subject, its text as a plain-text UTF-8 body."""
    if message.to is None:  # routing requires an address for every e-mail route
        raise ValueError("an e-mail message needs an address (message.to)")
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.title
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(notification.notification_id, sender.rsplit("@", 1)[1])
    mail["Auto-Submitted"] = "auto-generated"
    mail["Content-Language"] = message.language
    mail.set_content(message.text() + "\n", charset="utf-8")
    return mail


def smtp_attempt(exc: BaseException) -> Attempt:
    """How an SMTP failure ends a try: a 4xx reply or no reply retryable, a 5xx reply rejected."""
    code = None
    if isinstance(exc, smtplib.SMTPRecipientsRefused):  # one recipient: its reply
        code = max((c for c, _ in exc.recipients.values()), default=None)
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
    if isinstance(code, int) and 400 <= code < 600:
        return Attempt(RETRYABLE if code < 500 else REJECTED, f"SMTP {code}", status=code)
    if isinstance(exc, smtplib.SMTPNotSupportedError):  # no STARTTLS or AUTH where the config asks for it
        return Attempt(REJECTED, type(exc).__name__)
    return Attempt(RETRYABLE, type(exc).__name__)  # refused, timed out, disconnected: try again


class EmailChannel(Channel):
    """Submits the message as a mail over SMTP.

    Parameters
    ----------
    host, port
        The SMTP server (a submission server, or a local relay).
    sender
        The ``From`` address (the config's ``from``); its domain is the ``Message-ID``'s.
    starttls
        Upgrade the connection with STARTTLS (certificate checked) before anything else; a server that
        does not offer it is rejected, never a plain-text fallback.
    username, password
        Log in (after STARTTLS) when given.
    timeout_s
        Longest wait for the server on each step.
    """

    name = "email"

    class Config(ChannelConfig):
        type: Literal["email"] = "email"
        host: str = Field(min_length=1)
        port: int = Field(default=25, ge=1, le=65535)
        starttls: bool = False
        username: str | None = None
        password: SecretStr | None = None
        sender: str = Field(alias="from")

        sender_is_address = field_validator("sender")(check_address)

        @model_validator(mode="after")
        def _login_complete(self) -> "EmailChannel.Config":
            if (self.username is None) != (self.password is None):
                raise ValueError("username and password go together")
            return self

    def __init__(self, host: str, *, sender: str, port: int = 25, starttls: bool = False, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.starttls, self.timeout_s = host, port, starttls, timeout_s
        self.sender = check_address(sender)
        self.username, self._password = username, password

    @classmethod
    def from_config(cls, config: Config, *, timeout_s: float) -> "EmailChannel":
        return cls(config.host, port=config.port, starttls=config.starttls, sender=config.sender,
                   username=config.username, timeout_s=timeout_s,
                   password=config.password.get_secret_value() if config.password is not None else None)

    async def send(self, notification: Notification, message: Message) -> Attempt:
        mail = compose(notification, message, sender=self.sender)
        return await asyncio.to_thread(self._submit, mail)

    def _submit(self, mail: EmailMessage) -> Attempt:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except (smtplib.SMTPException, OSError) as exc:
            return smtp_attempt(exc)
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None:
                smtp.login(self.username, self._password or "")
            smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            return smtp_attempt(exc)
        finally:  # the mail is submitted or not by now: a failed QUIT changes nothing
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        return Attempt(DELIVERED, "SMTP 250", status=250)


__all__ = ["EmailChannel", "check_address", "compose", "message_id", "smtp_attempt"]
