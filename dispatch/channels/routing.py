"""Who is told where: the channels file, and the route each notification takes.

The channels file (``ELDERWATCH_CHANNELS_FILE``, JSON) names the channels and says which one tells
each staff member, in which language::

    {"channels": {"north-wecom": {"type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."},
                  "ops-mail": {"type": "email", "host": "127.0.0.1", "port": 25, "from": "elderwatch@example.org"}},
     "staff": {"w-1": {"channel": "north-wecom", "language": "zh"},
               "w-2": {"channel": "ops-mail", "to": "w2@example.org", "language": "en"}},
     "communities": {"north": {"channel": "north-wecom", "timezone": "Asia/Shanghai"}},
     "default": {"channel": "webhook"}}

A notification goes by the first that exists (:func:`choose`): the recipient's own entry under
``staff``, else the entry of the ticket's community under ``communities``, else ``default``. The
channel named ``webhook`` is the generic webhook of ``ELDERWATCH_WEBHOOK_URL`` (so that name is
reserved); without a ``default`` entry, it is the default. A route says ``language`` (``zh``, the
default, or ``en``), ``timezone`` (for the respond-by time; UTC by default) and, for an e-mail
channel, ``to``.

The file is checked once, at start: a file that cannot be used stops the worker with one line
(:class:`ChannelsFileError`) saying where and why: not JSON, an unknown key or channel type, a route
to a channel that is not defined, an e-mail route without ``to``, no default and no webhook (a
notification must always go somewhere). Robot URLs (their key is in them) and SMTP passwords are
secrets: never in an error, a log line or a ``repr``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dispatch.channels import CHANNELS
from dispatch.channels.base import Channel
from dispatch.channels.email import EmailChannel, check_address
from dispatch.channels.message import Language, Message, render
from dispatch.channels.webhook import WebhookChannel
from schemas.households import check_timezone
from schemas.tickets import Notification

log = logging.getLogger(__name__)

#: The channel of ``ELDERWATCH_WEBHOOK_URL``.
WEBHOOK = "webhook"

Source = Literal["staff", "community", "default"]
T = TypeVar("T")


class ChannelsFileError(ValueError):
    """A channels file that cannot be used; the message is one line saying where and why (never a secret)."""


class RouteEntry(BaseModel):
    """How one staff member, one community or everyone else is told."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(min_length=1, description="A channel defined under 'channels', or 'webhook'.")
    to: str | None = Field(default=None, description="The address, for an e-mail channel (and only there).")
    language: Language = "zh"
    timezone: str = Field(default="UTC", description="IANA zone the respond-by time is shown in.")

    to_is_address = field_validator("to")(lambda to: None if to is None else check_address(to))
    known_zone = field_validator("timezone")(check_timezone)


ChannelEntry = Annotated[Union[tuple(c.Config for c in CHANNELS.values())], Field(discriminator="type")]


class ChannelsFile(BaseModel):
    """The channels file, as written (cross-references are checked by :meth:`ChannelRoutes.from_data`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")], ChannelEntry] = Field(default_factory=dict)
    staff: dict[str, RouteEntry] = Field(default_factory=dict)
    communities: dict[str, RouteEntry] = Field(default_factory=dict)
    default: RouteEntry | None = None


def choose(recipient: str, community: str | None, *, staff: Mapping[str, T], communities: Mapping[str, T],
           default: T) -> tuple[T, Source]:
    """The entry that tells ``recipient`` about a ticket of ``community``, and where it came from: their own
    entry, else their community's, else the default.

    >>> routes = dict(staff={"w-1": "own"}, communities={"north": "north's"}, default="default")
    >>> choose("w-1", "north", **routes), choose("w-2", "north", **routes), choose("w-2", None, **routes)
    (('own', 'staff'), ("north's", 'community'), ('default', 'default'))
    """
    if recipient in staff:
        return staff[recipient], "staff"
    if community is not None and community in communities:
        return communities[community], "community"
    return default, "default"


@dataclass(frozen=True)
class Route:
    """Where one notification goes: a configured channel, and how its message is written."""

    channel_name: str
    channel: Channel
    entry: RouteEntry
    source: Source


class ChannelRoutes:
    """The configured channels and who each tells. :meth:`resolve` gives a notification's channel and message.

    Parameters
    ----------
    channels
        Channel instances by their configured name (``webhook`` for ``ELDERWATCH_WEBHOOK_URL``).
    public_url
        The staff console's address: a message links to ``<public_url>/tickets/<ticket id>``.
    staff, communities, default
        Routes, as in the channels file; every channel they name must be in ``channels``, and an e-mail
        route must have ``to`` (checked here too, for routes built in code).
    """

    def __init__(self, channels: Mapping[str, Channel], *, public_url: str, default: RouteEntry,
                 staff: Mapping[str, RouteEntry] | None = None,
                 communities: Mapping[str, RouteEntry] | None = None) -> None:
        self.channels, self.public_url = dict(channels), public_url
        self.staff, self.communities, self.default = dict(staff or {}), dict(communities or {}), default
        for where, entry in self._entries():
            problem = _route_problem(entry, self.channels)
            if problem:
                raise ChannelsFileError(f"{where}: {problem}")

    @classmethod
    def webhook_only(cls, url: str, *, public_url: str = "http://127.0.0.1:6066",
                     timeout_s: float = 5.0) -> "ChannelRoutes":
        """Everyone told by the generic webhook (``ELDERWATCH_WEBHOOK_URL`` without a channels file)."""
        return cls({WEBHOOK: WebhookChannel(url, timeout_s=timeout_s)}, public_url=public_url,
                   default=RouteEntry(channel=WEBHOOK))

    @classmethod
    def load(cls, channels_file: Path | None, *, webhook_url: str | None, public_url: str,
             timeout_s: float = 5.0) -> "ChannelRoutes | None":
        """The routes the settings describe; None when there is neither a channels file nor a webhook
        (notifications are then counted, not sent). Raises :class:`ChannelsFileError` (one line)."""
        if channels_file is None:
            return None if webhook_url is None else cls.webhook_only(_webhook_url(webhook_url), public_url=public_url,
                                                                    timeout_s=timeout_s)
        try:
            raw = Path(channels_file).read_bytes()
        except OSError as exc:
            raise ChannelsFileError(f"{channels_file}: cannot read it ({exc.strerror or type(exc).__name__})") from None
        return cls.from_data(raw, webhook_url=webhook_url, public_url=public_url, timeout_s=timeout_s,
                             source=str(channels_file))

    @classmethod
    def from_data(cls, data: bytes | str | Mapping, *, webhook_url: str | None, public_url: str,
                  timeout_s: float = 5.0, source: str = "channels file") -> "ChannelRoutes":
        """The routes of a channels file's content (JSON text or the parsed object); errors name ``source``."""
        if not isinstance(data, Mapping):
            try:
                data = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                where = f"line {exc.lineno}, column {exc.colno}: " if isinstance(exc, json.JSONDecodeError) else ""
                raise ChannelsFileError(f"{source}: not JSON ({where}{getattr(exc, 'msg', 'not UTF-8')})") from None
        try:
            parsed = ChannelsFile.model_validate(data)
        except ValidationError as exc:
            raise ChannelsFileError(f"{source}: {_first_error(exc)}") from None
        if WEBHOOK in parsed.channels:
            raise ChannelsFileError(f"{source}: channels.{WEBHOOK}: the name '{WEBHOOK}' is the channel of "
                                    "ELDERWATCH_WEBHOOK_URL; give this one another name")
        channels: dict[str, Channel] = {name: CHANNELS[config.type].from_config(config, timeout_s=timeout_s)
                                        for name, config in parsed.channels.items()}
        if webhook_url is not None:
            channels[WEBHOOK] = WebhookChannel(_webhook_url(webhook_url), timeout_s=timeout_s)
        default = parsed.default
        if default is None:
            if webhook_url is None:
                raise ChannelsFileError(f"{source}: no \"default\" route and no ELDERWATCH_WEBHOOK_URL: a notification "
                                        "for someone without an entry would go nowhere; add \"default\"")
            default = RouteEntry(channel=WEBHOOK)
        try:
            routes = cls(channels, public_url=public_url, default=default, staff=parsed.staff,
                         communities=parsed.communities)
        except ChannelsFileError as exc:
            raise ChannelsFileError(f"{source}: {exc}") from None
        kinds = Counter(type(c).name for c in channels.values())
        log.info("notification channels: %s; %d staff and %d community routes",
                 ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())), len(routes.staff),
                 len(routes.communities))  # counts and types only: names may say who, URLs hold keys
        return routes

    def route(self, notification: Notification) -> Route:
        """The route ``notification`` takes (always one: there is a default)."""
        entry, source = choose(notification.recipient, notification.community, staff=self.staff,
                               communities=self.communities, default=self.default)
        return Route(entry.channel, self.channels[entry.channel], entry, source)

    def resolve(self, notification: Notification) -> tuple[Channel, Message]:
        """The channel that tells ``notification``'s recipient, and the message they read."""
        route = self.route(notification)
        e = route.entry
        return route.channel, render(notification, public_url=self.public_url, language=e.language,
                                     timezone=e.timezone, to=e.to)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    def _entries(self):
        yield "default", self.default
        for staff_id, entry in self.staff.items():
            yield f"staff.{staff_id}", entry
        for community, entry in self.communities.items():
            yield f"communities.{community}", entry


def _route_problem(entry: RouteEntry, channels: Mapping[str, Channel]) -> str | None:
    channel = channels.get(entry.channel)
    if channel is None:
        if entry.channel == WEBHOOK:
            return "routes to 'webhook' but ELDERWATCH_WEBHOOK_URL is not set"
        names = ", ".join(sorted(channels)) or "none"
        return f"routes to channel '{entry.channel}', which is not defined (defined: {names})"
    if isinstance(channel, EmailChannel) and entry.to is None:
        return f"routes to e-mail channel '{entry.channel}' without an address: add \"to\""
    if not isinstance(channel, EmailChannel) and entry.to is not None:
        return f"\"to\" is for e-mail channels; '{entry.channel}' is {type(channel).name}"
    return None


def _webhook_url(url: str) -> str:
    try:
        return WebhookChannel(url).url
    except ValueError:
        raise ChannelsFileError("ELDERWATCH_WEBHOOK_URL must be an absolute http(s) URL") from None


def _first_error(exc: ValidationError) -> str:
    """One line for a validation error: where and what, never the value (it may be a secret)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"


__all__ = ["WEBHOOK", "ChannelRoutes", "ChannelsFile", "ChannelsFileError", "Route", "RouteEntry", "choose"]
