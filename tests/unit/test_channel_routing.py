"""Who is told where (dispatch/channels/routing.py), what they read (message.py), and the channels file's checks.

Resolution and file validation are table-driven, one commented case per rule. A bad file is refused
in one line that names where and why and never repeats a secret.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from dispatch.channels import DingTalkChannel, EmailChannel, WebhookChannel, WeComChannel
from dispatch.channels.message import render
from dispatch.channels.routing import ChannelRoutes, ChannelsFileError, choose
from dispatch.desk import HouseholdDesk, RosterRules, handle, with_roster
from dispatch.notify import Notifier, NotifyMetrics
from elderwatch.settings import Settings
from schemas.anomaly import AnomalyKind, AnomalyWarning, Severity
from schemas.households import Household
from schemas.tickets import Notification, TicketCommand
from streams.notify import notifier_from_settings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
WEBHOOK_URL = "http://127.0.0.1:9/hook"
ROBOT_KEY = "CANARY-ROBOT-KEY"
PASSWORD = "CANARY-SMTP-PASSWORD"

#: The example of the brief and the README, with a password and a DingTalk robot added.
FILE = {
    "channels": {
        "north-wecom": {"type": "wecom", "url": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={ROBOT_KEY}"},
        "south-dingtalk": {"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=t",
                           "secret": "SECx"},
        "ops-mail": {"type": "email", "host": "127.0.0.1", "port": 25, "from": "elderwatch@example.org",
                     "username": "elderwatch", "password": PASSWORD},
    },
    "staff": {"w-1": {"channel": "north-wecom", "language": "zh"},
              "w-2": {"channel": "ops-mail", "to": "w2@example.org", "language": "en"}},
    "communities": {"north": {"channel": "north-wecom"},
                    "south": {"channel": "south-dingtalk", "timezone": "Asia/Shanghai"}},
    "default": {"channel": "webhook"},
}


def notification(recipient: str = "w-1", community: str | None = "north", **update) -> Notification:
    fields = dict(notification_id=f"tickets:dispatch:dispatch:1->{recipient}", recipient=recipient,
                  reason="dispatched", ticket_id="hh-000042/inactivity/2026-03-01T02:00:00+00:00",
                  household_id="hh-000042", community=community, kind="inactivity", severity="high",
                  state="dispatched", summary="no water since 02:00", respond_by=T0 + timedelta(minutes=15),
                  ticket_url="/api/v1/tickets/x", at=T0)
    return Notification(**{**fields, **update})


def routes(data: dict = FILE, webhook_url: str | None = WEBHOOK_URL) -> ChannelRoutes:
    return ChannelRoutes.from_data(data, webhook_url=webhook_url, public_url="https://care.example.org",
                                   source="channels.json")


# -- who is told where -------------------------------------------------------------------------------

ENTRIES = dict(staff={"w-1": "w-1's own"}, communities={"north": "north's"}, default="default")

# (case, recipient, community, expected)
CHOOSE_CASES = [
    # a staff member's own entry wins, whatever the ticket's community
    ("own entry", "w-1", "north", ("w-1's own", "staff")),
    ("own entry, another community", "w-1", "south", ("w-1's own", "staff")),
    # no own entry: the ticket's community
    ("the community's entry", "w-9", "north", ("north's", "community")),
    # neither: the default
    ("a community without an entry", "w-9", "south", ("default", "default")),
    ("no community (not on the roster, an older ticket)", "w-9", None, ("default", "default")),
]


@pytest.mark.parametrize("case, recipient, community, expected", CHOOSE_CASES, ids=[c[0] for c in CHOOSE_CASES])
def test_choose(case, recipient, community, expected):
    assert choose(recipient, community, **ENTRIES) == expected


# (case, recipient, community, channel class, configured name, language, address)
ROUTE_CASES = [
    ("w-1's own WeCom robot", "w-1", "north", WeComChannel, "north-wecom", "zh", None),
    ("w-2 by e-mail, in English, to their address", "w-2", "north", EmailChannel, "ops-mail", "en", "w2@example.org"),
    ("someone else in north: the community's robot", "w-7", "north", WeComChannel, "north-wecom", "zh", None),
    ("someone in south: DingTalk", "w-7", "south", DingTalkChannel, "south-dingtalk", "zh", None),
    ("a community without an entry: the default webhook", "w-7", "west", WebhookChannel, "webhook", "zh", None),
    ("no community: the default webhook", "duty-desk", None, WebhookChannel, "webhook", "zh", None),
]


@pytest.mark.parametrize("case, recipient, community, cls, name, language, to", ROUTE_CASES,
                         ids=[c[0] for c in ROUTE_CASES])
def test_routes_from_the_file(case, recipient, community, cls, name, language, to):
    r = routes()
    n = notification(recipient, community)
    route = r.route(n)
    assert (type(route.channel), route.channel_name) == (cls, name)
    channel, message = r.resolve(n)
    assert channel is r.channels[name]  # one instance per configured channel, shared by its routes
    assert (message.language, message.to) == (language, to)


def test_the_webhook_is_the_default_when_the_file_names_none():
    data = {k: v for k, v in FILE.items() if k != "default"}
    assert type(routes(data).route(notification("w-7", None)).channel) is WebhookChannel


def test_respond_by_is_shown_in_the_routes_timezone():
    _, message = routes().resolve(notification("w-7", "south"))
    assert "2026-03-01 16:15 (Asia/Shanghai)" in message.text()


def test_no_file_and_no_webhook_means_nothing_is_sent():
    assert ChannelRoutes.load(None, webhook_url=None, public_url="https://c") is None
    only = ChannelRoutes.load(None, webhook_url=WEBHOOK_URL, public_url="https://c")
    assert list(only.channels) == ["webhook"]


def test_a_file_is_read_from_disk(tmp_path):
    path = tmp_path / "channels.json"
    path.write_text(json.dumps(FILE, ensure_ascii=False), encoding="utf-8")
    loaded = ChannelRoutes.load(path, webhook_url=WEBHOOK_URL, public_url="https://c")
    assert sorted(loaded.channels) == ["north-wecom", "ops-mail", "south-dingtalk", "webhook"]
    with pytest.raises(ChannelsFileError, match=r"missing\.json: cannot read it"):
        ChannelRoutes.load(tmp_path / "missing.json", webhook_url=None, public_url="https://c")


# -- the file's checks -------------------------------------------------------------------------------

def edit(path: str, value) -> dict:
    """FILE with ``value`` at ``path`` (dots between keys; None deletes)."""
    data = json.loads(json.dumps(FILE))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


# (case, file content, webhook_url, what the one line says)
BAD_FILES = [
    ("not JSON", b'{"channels": ', WEBHOOK_URL, "not JSON (line 1, column 14"),
    ("a key nobody reads is a typo", edit("defaults", {"channel": "webhook"}), WEBHOOK_URL,
     "defaults: Extra inputs are not permitted"),
    ("an unknown channel type", edit("channels.sms", {"type": "sms", "url": "https://x"}), WEBHOOK_URL,
     "channels.sms: Input tag 'sms'"),
    ("a robot URL that is not http(s)", edit("channels.north-wecom.url", f"qyapi.weixin.qq.com/?key={ROBOT_KEY}"),
     WEBHOOK_URL, "channels.north-wecom.wecom.url: must be an absolute http(s) URL"),
    ("a field the channel does not have", edit("channels.north-wecom.secret", "SECx"), WEBHOOK_URL,
     "channels.north-wecom.wecom.secret: Extra inputs are not permitted"),
    ("an e-mail channel without a sender", edit("channels.ops-mail.from", None), WEBHOOK_URL,
     "channels.ops-mail.email.from: Field required"),
    ("a password without a user name", edit("channels.ops-mail.username", None), WEBHOOK_URL,
     "username and password go together"),
    ("a route to a channel that is not defined", edit("staff.w-1", {"channel": "north-wechat"}), WEBHOOK_URL,
     "staff.w-1: routes to channel 'north-wechat', which is not defined"),
    ("an e-mail route without an address", edit("staff.w-2", {"channel": "ops-mail"}), WEBHOOK_URL,
     "staff.w-2: routes to e-mail channel 'ops-mail' without an address"),
    ("an address on a route that is not e-mail", edit("communities.north.to", "north@example.org"), WEBHOOK_URL,
     "communities.north: \"to\" is for e-mail channels"),
    ("an address that is not one", edit("staff.w-2.to", "w2 at example"), WEBHOOK_URL,
     "staff.w-2.to: not an e-mail address"),
    ("a language without templates", edit("staff.w-1.language", "fr"), WEBHOOK_URL,
     "staff.w-1.language: Input should be 'zh' or 'en'"),
    ("an unknown time zone", edit("communities.south.timezone", "Asia/Peking"), WEBHOOK_URL,
     "communities.south.timezone: unknown time zone"),
    ("the webhook as a route without ELDERWATCH_WEBHOOK_URL", FILE, None,
     "default: routes to 'webhook' but ELDERWATCH_WEBHOOK_URL is not set"),
    ("no default and no webhook: someone's notification would go nowhere", edit("default", None), None,
     "no \"default\" route and no ELDERWATCH_WEBHOOK_URL"),
    ("'webhook' is the name of ELDERWATCH_WEBHOOK_URL's channel", edit("channels.webhook", {
        "type": "webhook", "url": "https://staff-app.example.org/hook"}), WEBHOOK_URL, "channels.webhook: the name"),
]


@pytest.mark.parametrize("case, data, webhook_url, says", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_is_refused_in_one_line_without_its_secrets(case, data, webhook_url, says):
    with pytest.raises(ChannelsFileError) as refused:
        routes(data, webhook_url)
    line = str(refused.value)
    assert line.startswith("channels.json: ") and says in line
    assert "\n" not in line and ROBOT_KEY not in line and PASSWORD not in line


def test_a_bad_webhook_url_is_refused_too():
    with pytest.raises(ChannelsFileError, match="ELDERWATCH_WEBHOOK_URL must be an absolute http"):
        ChannelRoutes.load(None, webhook_url="staff-app.local/hook", public_url="https://c")


def test_secrets_stay_out_of_reprs():
    r = routes()
    shown = repr(r.channels) + repr(r.default) + repr(r.staff)
    from dispatch.channels.routing import ChannelsFile
    shown += repr(ChannelsFile.model_validate(FILE))
    assert ROBOT_KEY not in shown and PASSWORD not in shown and "SECx" not in shown


def test_the_worker_stops_at_start_on_a_bad_file_with_one_line(tmp_path):
    path = tmp_path / "channels.json"
    path.write_text(json.dumps(edit("staff.w-1", {"channel": "north-wechat"})))
    with pytest.raises(SystemExit) as stopped:
        notifier_from_settings(Settings(channels_file=path, webhook_url=WEBHOOK_URL), NotifyMetrics())
    assert str(stopped.value).startswith("elderwatch: bad ELDERWATCH_CHANNELS_FILE")
    assert "north-wechat" in str(stopped.value) and "\n" not in str(stopped.value)


def test_the_settings_choose_the_notifier(tmp_path):
    path = tmp_path / "channels.json"
    path.write_text(json.dumps(FILE))
    assert notifier_from_settings(Settings(webhook_url=None), NotifyMetrics()) is None
    notifier = notifier_from_settings(Settings(channels_file=path, webhook_url=WEBHOOK_URL,
                                               public_url="https://care.example.org"), NotifyMetrics())
    assert isinstance(notifier, Notifier) and sorted(notifier.routes.channels)[0] == "north-wecom"
    assert notifier.routes.resolve(notification())[1].link.startswith("https://care.example.org/tickets/hh-000042%2F")


# -- what they read ----------------------------------------------------------------------------------

# (reason, zh title start, en title start)
TITLES = [
    ("dispatched", "【新工单】", "New ticket: "),
    ("escalated", "【升级】", "Escalated: "),
    ("re_alert", "【再次提醒：尚未处置】", "Reminder: not handled yet: "),
    ("snooze_over", "【暂缓已到期】", "Snooze over: "),
    ("feedback_reminder", "【请填写处置结果】", "Outcome missing: "),
]


@pytest.mark.parametrize("reason, zh, en", TITLES, ids=[t[0] for t in TITLES])
def test_each_reason_has_its_words(reason, zh, en):
    n = notification(reason=reason)
    assert render(n, public_url="https://c").title == f"{zh}长时间无用水用电（住户 hh-000042）"
    assert render(n, public_url="https://c", language="en").title == f"{en}no activity (household hh-000042)"


def test_a_kind_without_words_is_shown_as_it_is_and_optional_lines_are_left_out():
    m = render(notification(kind="new_detector", summary=None, respond_by=None), public_url="https://c")
    assert "new_detector" in m.title
    assert not any(line.startswith(("说明", "请在此时间前响应")) for line in m.lines)


def test_a_long_or_multiline_summary_becomes_one_bounded_line():
    m = render(notification(summary="water\nrunning " + "x" * 1000), public_url="https://c", language="en")
    (line,) = [line for line in m.lines if line.startswith("Details: ")]
    assert "\n" not in line and len(line) <= len("Details: ") + 300 and line.endswith("…")


# -- the ticket knows its community ------------------------------------------------------------------

def test_a_ticket_opened_for_a_household_on_the_roster_carries_its_community():
    warning = AnomalyWarning.for_episode(household_id="hh-000001", kind=AnomalyKind.INACTIVITY, meter=None,
                                         episode_start=T0 - timedelta(hours=6), detected_at=T0, score=1.4,
                                         severity=Severity.HIGH, summary="no water since 02:00")
    command = TicketCommand.warning_from(warning, at=T0)
    on_roster = with_roster(HouseholdDesk(household_id="hh-000001"), Household(
        household_id="hh-000001", community="north", staff={"primary_worker": "w-1"}))
    (ack,) = handle(on_roster, command, T0, RosterRules()).acks
    assert ack.ticket.community == "north"
    (ack,) = handle(HouseholdDesk(household_id="hh-000001"), command, T0, RosterRules()).acks  # the duty desk's
    assert ack.ticket.community is None
