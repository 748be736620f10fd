"""One suite over every notification channel, each against a fake receiver of its kind on 127.0.0.1.

The channels come from the registry (``dispatch.channels.CHANNELS``), and the first test refuses a
:class:`~dispatch.channels.base.Channel` subclass that is not registered or has no fake receiver
here: a new channel cannot skip the suite. Every fake speaks its service's protocol as documented
(the webhook's status codes, WeCom's and DingTalk's ``errcode`` answers, DingTalk's signature check,
SMTP replies from an ``aiosmtpd`` server) and answers from a script of abstract answers:

    ok            the receiver takes it
    server_error  HTTP 502 / SMTP 451: try again
    rate_limited  HTTP 429 / WeCom 45009 / DingTalk 130101 / SMTP 452: try again
    permanent     HTTP 400 / WeCom 93000 / DingTalk 310000 / SMTP 550: refused for good
    slow          answers after longer than the channel's timeout

Nothing here reaches the internet.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from urllib.parse import quote

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from dispatch.channels import CHANNELS, DELIVERED, REJECTED, RETRYABLE, Channel
from dispatch.channels.email import message_id
from dispatch.channels.message import reference
from dispatch.channels.routing import ChannelRoutes
from dispatch.notify import Notifier, NotifyMetrics, notifications_for
from dispatch.tickets import Event, EventKind, State, Ticket
from elderwatch.localkafka import free_port
from schemas.tickets import AckResult, Notification, TicketAck, TicketCommand

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
HOUSEHOLD = "hh-000042"
TICKET_ID = f"{HOUSEHOLD}/inactivity/2026-03-01T02:00:00+00:00"
PUBLIC_URL = "https://care.example.org"
LINK = f"{PUBLIC_URL}/tickets/{quote(TICKET_ID, safe='')}"
SUMMARY_ZH = "自凌晨 02:00 起没有用水，也没有用电"

# What must never reach a receiver: a ticket's notes (what was found, maybe who), a staff member's
# API token, a roster's contact; and the secrets of the channels themselves (in no log either).
NOTE = "CANARY-NOTE neighbour has the key, Mrs Example fell last year"
TOKEN = "CANARY-TOKEN-ew_7f3a9c"
WECOM_KEY = "CANARY-WECOM-KEY"
DINGTALK_TOKEN, DINGTALK_SECRET = "CANARY-DINGTALK-TOKEN", "SECcanary-dingtalk-secret"
SMTP_PASSWORD = "CANARY-SMTP-PASSWORD"
SECRETS = (WECOM_KEY, DINGTALK_TOKEN, DINGTALK_SECRET, SMTP_PASSWORD)


def notification(*, summary: str | None = "no water since 02:00") -> Notification:
    """A dispatch notification, made the way the notify stage makes it, from a ticket holding canaries."""
    ticket = Ticket(ticket_id=TICKET_ID, household_id=HOUSEHOLD, kind="inactivity", severity="high",
                    state=State.DISPATCHED, chain=("w-1", "w-2"), assignee="w-1", opened_at=T0, summary=summary,
                    deadline=T0 + timedelta(minutes=15), community="north", notes=(NOTE,))
    event = Event(kind=EventKind.DISPATCH, idempotency_key="dispatch:1", actor="system", at=T0,
                  notes=f"token {TOKEN}")
    command = TicketCommand.of(ticket, event)
    ack = TicketAck(step=command.step, by="tickets", ticket_id=TICKET_ID, household_id=HOUSEHOLD,
                    idempotency_key="dispatch:1", command=command, result=AckResult.APPLIED, ticket=ticket,
                    notify=("w-1",), at=T0 + timedelta(seconds=1))
    (n,) = notifications_for(ack, ticket_path="/api/v1/tickets/{ticket_id}")
    return n


# -- fake receivers ------------------------------------------------------------------------------

@dataclass
class Received:
    """One try as the receiver saw it: ``text`` is what its reader gets (decoded), ``key`` what it could
    recognise the notification by, ``accepted`` whether it answered ok."""

    text: str
    key: str | None
    accepted: bool


class Fake(abc.ABC):
    """A receiver of one channel type on 127.0.0.1, answering from ``script`` in order, then ``ok``."""

    kind: str
    #: The receiver gets the Notification itself (the webhook), not a message for a person.
    carries_notification = False

    def __init__(self) -> None:
        self.port = free_port()
        self.script: list[str] = []
        self.received: list[Received] = []

    @abc.abstractmethod
    def config(self, port: int) -> dict:
        """The channels-file entry of a channel pointed at ``port``."""

    to: str | None = None  # the route's address, for channels that need one

    @abc.abstractmethod
    def recognises(self, received: Received, n: Notification) -> bool:
        """Can the receiver tell that ``received`` is ``n`` (and a resend of it the same)?"""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def next_answer(self) -> str:
        return self.script.pop(0) if self.script else "ok"


class HttpFake(Fake):
    """An aiohttp server: ``respond`` turns an abstract answer into the service's HTTP answer."""

    path = "/hook"
    ANSWERS: dict[str, tuple[int, dict | None]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1, access_log=None)  # the receiver's log is not ours
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        answer = self.next_answer()
        raw = await request.read()
        refusal = self.check(request)
        status, body = (self.ANSWERS["permanent"] if refusal else self.ANSWERS["slow" if answer == "slow" else answer])
        self.received.append(Received(self.text_of(raw), request.headers.get("Idempotency-Key"),
                                      answer in ("ok", "slow") and not refusal))
        if answer == "slow":  # it acts, but answers too late
            await asyncio.sleep(1.0)
        return web.Response(status=status, text=json.dumps(body) if body is not None else "",
                            content_type="application/json")

    def check(self, request: web.Request) -> bool:
        """True if the service would refuse the request itself (a bad signature)."""
        return False

    def text_of(self, raw: bytes) -> str:
        return raw.decode("utf-8")  # strict: a body that is not UTF-8 fails the test


class WebhookFake(HttpFake):
    kind = "webhook"
    carries_notification = True
    ANSWERS = {"ok": (200, None), "slow": (200, None), "server_error": (502, None), "rate_limited": (429, None),
               "permanent": (400, None)}

    def config(self, port: int) -> dict:
        return {"type": "webhook", "url": f"http://127.0.0.1:{port}{self.path}"}

    def recognises(self, received: Received, n: Notification) -> bool:
        return received.key == n.notification_id and json.loads(received.text)["notification_id"] == n.notification_id


class WeComFake(HttpFake):
    kind = "wecom"
    path = "/cgi-bin/webhook/send"
    ANSWERS = {"ok": (200, {"errcode": 0, "errmsg": "ok"}), "slow": (200, {"errcode": 0, "errmsg": "ok"}),
               "server_error": (502, None), "rate_limited": (200, {"errcode": 45009, "errmsg": "api freq out of limit"}),
               "permanent": (200, {"errcode": 93000, "errmsg": "invalid webhook url"})}

    def config(self, port: int) -> dict:
        return {"type": "wecom", "url": f"http://127.0.0.1:{port}{self.path}?key={WECOM_KEY}"}

    def text_of(self, raw: bytes) -> str:
        body = json.loads(raw.decode("utf-8"))
        assert body["msgtype"] == "markdown"
        return body["markdown"]["content"]

    def recognises(self, received: Received, n: Notification) -> bool:
        return reference(n.notification_id) in received.text


class DingTalkFake(HttpFake):
    """Checks the signature as DingTalk does: a timestamp within an hour and the HMAC of it with the secret."""

    kind = "dingtalk"
    path = "/robot/send"
    ANSWERS = {"ok": (200, {"errcode": 0, "errmsg": "ok"}), "slow": (200, {"errcode": 0, "errmsg": "ok"}),
               "server_error": (502, None), "rate_limited": (200, {"errcode": 130101, "errmsg": "send too fast"}),
               "permanent": (200, {"errcode": 310000, "errmsg": "sign not match"})}

    def config(self, port: int) -> dict:
        return {"type": "dingtalk", "url": f"http://127.0.0.1:{port}{self.path}?access_token={DINGTALK_TOKEN}",
                "secret": DINGTALK_SECRET}

    def check(self, request: web.Request) -> bool:
        timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        expected = base64.b64encode(hmac.new(DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
        fresh = timestamp.isdigit() and abs(int(timestamp) - time.time() * 1000) < 3600_000
        return not (fresh and hmac.compare_digest(sign, expected)
                    and request.query.get("access_token") == DINGTALK_TOKEN)

    def text_of(self, raw: bytes) -> str:
        body = json.loads(raw.decode("utf-8"))
        assert body["msgtype"] == "markdown"
        return body["markdown"]["title"] + "\n" + body["markdown"]["text"]

    def recognises(self, received: Received, n: Notification) -> bool:
        return reference(n.notification_id) in received.text


class EmailFake(Fake):
    """An aiosmtpd server (its own thread) that logs anyone in and answers DATA from the script."""

    kind = "email"
    to = "w1@example.org"
    REPLIES = {"ok": "250 OK", "slow": "250 OK", "server_error": "451 4.3.0 Try again later",
               "rate_limited": "452 4.5.3 Too many messages", "permanent": "550 5.1.1 No such user"}

    def __init__(self) -> None:
        super().__init__()
        self._controller: Controller | None = None

    def config(self, port: int) -> dict:
        return {"type": "email", "host": "127.0.0.1", "port": port, "from": "elderwatch@example.org",
                "username": "elderwatch", "password": SMTP_PASSWORD}

    async def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, auth_require_tls=False,
                                      authenticator=lambda *args: AuthResult(success=True))
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's hook
        answer = self.next_answer()
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert envelope.rcpt_tos == [self.to] and mail["To"] == self.to
        text = f"{mail['Subject']}\n{mail.get_content()}"
        self.received.append(Received(text, mail["Message-ID"], answer in ("ok", "slow")))
        if answer == "slow":
            await asyncio.sleep(1.0)
        return self.REPLIES[answer]

    def recognises(self, received: Received, n: Notification) -> bool:
        return received.key == message_id(n.notification_id, "example.org")


FAKES: dict[str, type[Fake]] = {f.kind: f for f in (WebhookFake, WeComFake, DingTalkFake, EmailFake)}
KINDS = sorted(CHANNELS)


def channel_for(fake: Fake, *, port: int | None = None, timeout_s: float = 2.0) -> Channel:
    cls = CHANNELS[fake.kind]
    return cls.from_config(cls.Config.model_validate(fake.config(port or fake.port)), timeout_s=timeout_s)


def routes_for(fake: Fake, *, timeout_s: float = 2.0, language: str = "zh") -> ChannelRoutes:
    """Everyone told through the fake's channel, as a channels file would say it."""
    default = {"channel": "c", "language": language, **({"to": fake.to} if fake.to else {})}
    return ChannelRoutes.from_data({"channels": {"c": fake.config(fake.port)}, "default": default}, webhook_url=None,
                                   public_url=PUBLIC_URL, timeout_s=timeout_s)


def with_fake(kind: str | Fake, body, *, start: bool = True) -> Fake:
    """Run ``body(fake)`` with the fake receiver (a new one of ``kind``) started (or not), then stop it."""
    fake = FAKES[kind]() if isinstance(kind, str) else kind

    async def main():
        if start:
            await fake.start()
        try:
            await body(fake)
        finally:
            await fake.stop()

    asyncio.run(main())
    return fake


async def send_once(fake: Fake, n: Notification, *, timeout_s: float = 2.0, language: str = "zh"):
    routes = routes_for(fake, timeout_s=timeout_s, language=language)
    channel, message = routes.resolve(n)
    try:
        return await channel.send(n, message)
    finally:
        await routes.close()


# -- the registry covers every channel -------------------------------------------------------------

def _subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))}


def test_every_channel_is_registered_and_has_a_fake_receiver_here():
    concrete = {c for c in _subclasses(Channel) if not inspect.isabstract(c)}
    assert concrete == set(CHANNELS.values()), "register the channel in dispatch/channels/__init__.py"
    assert set(FAKES) == set(CHANNELS), "give every channel a fake receiver in this suite"
    for kind, cls in CHANNELS.items():
        assert cls.name == kind and cls.Config.model_fields["type"].default == kind


# -- the suite ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_delivered_once_and_recognisable(kind):
    n = notification()

    async def body(fake):
        attempt = await send_once(fake, n)
        assert attempt.result == DELIVERED, attempt

    fake = with_fake(kind, body)
    (received,) = fake.received
    assert received.accepted and fake.recognises(received, n)


@pytest.mark.parametrize("kind", KINDS)
def test_a_receiver_that_is_down_is_retryable(kind):
    async def body(fake):
        attempt = await send_once(fake, notification())  # nothing listens on the fake's port
        assert attempt.result == RETRYABLE, attempt

    with_fake(kind, body, start=False)


@pytest.mark.parametrize("answer", ["server_error", "rate_limited", "slow"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_busy_or_slow_receiver_is_retryable(kind, answer):
    async def body(fake):
        fake.script = [answer]
        attempt = await send_once(fake, notification(), timeout_s=0.3)
        assert attempt.result == RETRYABLE, attempt
        assert attempt.detail and "127.0.0.1" not in attempt.detail

    with_fake(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_a_permanent_refusal_is_rejected(kind):
    async def body(fake):
        fake.script = ["permanent"]
        attempt = await send_once(fake, notification())
        assert attempt.result == REJECTED, attempt

    with_fake(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_the_message_links_the_ticket_and_holds_nothing_else(kind):
    # fields the message must not show, set to values that would be noticed
    n = notification().model_copy(update={"state": "canary-state", "community": "canary-community",
                                          "ticket_url": "/canary-staff-api-path"})

    async def body(fake):
        assert (await send_once(fake, n)).result == DELIVERED

    fake = with_fake(kind, body)
    (received,) = fake.received
    for never in (NOTE, TOKEN, *SECRETS):
        assert never not in received.text
    if fake.carries_notification:  # the webhook's body is the Notification: its link is the staff API path
        assert Notification.model_validate_json(received.text) == n
        return
    assert LINK in received.text
    for field in ("canary-state", "canary-community", "canary-staff-api-path", n.notification_id, n.at.isoformat()):
        assert field not in received.text
    for shown in (HOUSEHOLD, n.summary, "长时间无用水用电", "w-1", reference(n.notification_id)):
        assert shown in received.text


@pytest.mark.parametrize("kind", KINDS)
def test_chinese_arrives_intact(kind):
    n = notification(summary=SUMMARY_ZH)

    async def body(fake):
        assert (await send_once(fake, n)).result == DELIVERED

    fake = with_fake(kind, body)
    (received,) = fake.received
    assert SUMMARY_ZH in received.text
    if not fake.carries_notification:
        assert "【新工单】长时间无用水用电" in received.text and "打开工单" in received.text


@pytest.mark.parametrize("kind", KINDS)
def test_english_for_a_recipient_who_reads_english(kind):
    async def body(fake):
        assert (await send_once(fake, notification(), language="en")).result == DELIVERED

    fake = with_fake(kind, body)
    if not fake.carries_notification:
        (received,) = fake.received
        assert "New ticket: no activity" in received.text and "新工单" not in received.text


@pytest.mark.parametrize("kind", KINDS)
def test_the_deliver_loop_delivers_after_two_retryable_failures(kind, caplog):
    n = notification()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    metrics = NotifyMetrics()

    async def body(fake):
        fake.script = ["server_error", "rate_limited"]
        notifier = Notifier(routes_for(fake), metrics=metrics, sleep=sleep)
        try:
            with caplog.at_level(logging.DEBUG):
                assert await notifier.deliver(n) == DELIVERED
        finally:
            await notifier.close()

    fake = with_fake(kind, body)
    assert [r.accepted for r in fake.received] == [False, False, True]
    assert all(fake.recognises(r, n) for r in fake.received)  # the same notification each time
    assert sleeps == [1, 2]
    sample = lambda name, **labels: metrics.registry.get_sample_value(name, {"channel": kind, **labels})  # noqa: E731
    assert sample("elderwatch_notify_attempts_total", result="retryable") == 2
    assert sample("elderwatch_notify_delivered_total") == 1
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))  # not aiosmtpd's
    assert "retrying" in logged
    for never in (*SECRETS, HOUSEHOLD, "w-1", str(fake.port)):
        assert never not in logged


# -- what only one channel does ------------------------------------------------------------------------

def test_wecom_system_busy_is_retryable_and_the_body_is_its_markdown_message():
    fake = WeComFake()
    fake.ANSWERS = {**WeComFake.ANSWERS, "server_error": (200, {"errcode": -1, "errmsg": "system busy"})}

    async def body(fake):
        fake.script = ["server_error"]
        assert (await send_once(fake, notification())).result == RETRYABLE
        assert (await send_once(fake, notification())).result == DELIVERED

    with_fake(fake, body)
    assert fake.received[-1].text.startswith("**【新工单】") and f"[打开工单]({LINK})" in fake.received[-1].text


def test_a_robot_url_that_answers_like_no_robot_is_rejected_not_retried_for_ever():
    fake = WeComFake()
    fake.ANSWERS = {**WeComFake.ANSWERS, "ok": (200, None)}  # 200 with an empty body: a wrong URL

    async def body(fake):
        attempt = await send_once(fake, notification())
        assert (attempt.result, attempt.detail) == (REJECTED, "HTTP 200 without an errcode")

    with_fake(fake, body)


def test_dingtalk_signature_is_the_documented_hmac():
    from dispatch.channels.dingtalk import sign, signed_url

    # computed here independently, and pinned (openssl dgst -sha256 -hmac SECexample of "1700000000002\nSECexample")
    digest = hmac.new(b"SECexample", b"1700000000002\nSECexample", hashlib.sha256).digest()
    assert sign("SECexample", 1700000000002) == base64.b64encode(digest).decode() == \
        "YT7/FZACkFUlBiZXsLLxEy2viBHwqjxxCGDe+4v2PGc="
    assert signed_url("https://oapi.dingtalk.com/robot/send?access_token=t", "SECexample", 1700000000002) == (
        "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000002"
        "&sign=YT7%2FFZACkFUlBiZXsLLxEy2viBHwqjxxCGDe%2B4v2PGc%3D")


def test_dingtalk_with_the_wrong_secret_is_refused_and_without_one_sends_no_signature():
    from dispatch.channels.dingtalk import DingTalkChannel

    fake, queries = DingTalkFake(), []
    original = fake.check

    def check(request):
        queries.append(dict(request.query))
        return original(request)

    fake.check = check

    async def body(fake):
        url = fake.config(fake.port)["url"]
        wrong, unsigned = DingTalkChannel(url, secret="SECsomething-else"), DingTalkChannel(url)
        n = notification()
        message = routes_for(fake).resolve(n)[1]
        try:
            assert (await wrong.send(n, message)).result == REJECTED  # errcode 310000
            assert (await unsigned.send(n, message)).result == REJECTED
        finally:
            await wrong.close()
            await unsigned.close()

    with_fake(fake, body)
    assert "sign" in queries[0] and "timestamp" in queries[0]
    assert set(queries[1]) == {"access_token"}


def test_an_email_sent_again_has_the_same_message_id_and_stays_out_of_autoreplies():
    n = notification()
    headers = []

    class Recording(EmailFake):
        async def handle_DATA(self, server, session, envelope):
            headers.append(message_from_bytes(envelope.content, policy=policy.default))
            return await super().handle_DATA(server, session, envelope)

    async def body(fake):
        assert (await send_once(fake, n)).result == DELIVERED
        assert (await send_once(fake, n)).result == DELIVERED

    with_fake(Recording(), body)
    first, again = headers
    assert first["Message-ID"] == again["Message-ID"] == message_id(n.notification_id, "example.org")
    assert first["Auto-Submitted"] == "auto-generated" and first["From"] == "elderwatch@example.org"
    assert first.get_content_charset() == "utf-8" and first.get_content_type() == "text/plain"


def test_email_asking_for_starttls_from_a_server_without_it_is_rejected_never_sent_in_clear():
    from dispatch.channels.email import EmailChannel

    async def body(fake):
        cls = EmailChannel
        channel = cls.from_config(cls.Config.model_validate({**fake.config(fake.port), "starttls": True}), timeout_s=2)
        n = notification()
        message = routes_for(fake).resolve(n)[1]
        attempt = await channel.send(n, message)
        assert (attempt.result, attempt.detail) == (REJECTED, "SMTPNotSupportedError")

    fake = with_fake("email", body)
    assert fake.received == []


def test_an_email_message_without_an_address_is_a_programming_error():
    from dispatch.channels.email import EmailChannel
    from dispatch.channels.message import render

    n = notification()
    channel = EmailChannel("127.0.0.1", port=free_port(), sender="elderwatch@example.org")
    with pytest.raises(ValueError, match="address"):
        asyncio.run(channel.send(n, render(n, public_url=PUBLIC_URL)))
