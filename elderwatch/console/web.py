"""The console's pages: plain aiohttp handlers on the worker's web server, over the staff API's methods.

Every read and every action goes through :class:`streams.staff_api.StaffApi` (``gather_desks``: its
``visible_desks`` over every worker; ``get_ticket``, ``get_household``, ``ticket_action``, ``set_away``,
``end_away``): the same access rule (:func:`dispatch.access.may_see`), the same state machine first, the
same idempotency keys, so the console and the API cannot disagree. The console adds people's things: a
session instead of a token, forms instead of JSON, Chinese and English, a page per question.

Per request (:meth:`Console.page` wraps every handler):

1. the session from its signed cookie; the user looked up again in the users file (removed or
   disabled: signed out);
2. not signed in: a page redirects to ``/signin?next=...``, the list fragment answers 401 (its script
   then goes to the sign-in page);
3. a POST: the Origin header, when present, must be this site's; the form's ``csrf`` must be the
   session's token (the sign-in form: the anonymous cookie's). Otherwise 403, nothing done;
4. a role the page is not for: 403; a list or household page that cannot be answered correctly here now
   (tables recovering, a list whose partitions could not all be gathered): 503 with the reason and
   ``Retry-After`` (:meth:`Console._check_available`);
5. the handler; an action redirects back with a flash message (POST-redirect-GET);
6. the log line: the page's name and the status. No ids, no notes, no user (this is about
   vulnerable people's lives; the API logs the same way).

Several workers (:mod:`streams.readiness`): the list pages (my tickets, its fragment, the supervisor's page)
are gathered from every worker's partitions (:meth:`streams.staff_api.StaffApi.gather_desks` with the
session cookie as the credentials: every worker needs the same users file and ``ELDERWATCH_SECRET_KEY``);
a page about one household whose partition is another worker's (:data:`HOUSEHOLD_PAGES`, their forms too)
is forwarded there once signed in here (:meth:`Console._elsewhere`): method, path and query, body, the
cookies, Content-Type, Origin and Host, and ``X-Elderwatch-Forwarded``; its answer (status, type, body,
``Location``, ``Set-Cookie``) is ours. The owner checks the form's CSRF token, the role and the access rule
exactly as for its own page. A forwarded page is never forwarded again (503, as the API).

Every response carries a Content-Security-Policy allowing only this site's own script and styles,
``Cache-Control: no-store`` on pages (they show households), and a referrer only to this site.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from dispatch.tickets import ALLOWED, TERMINAL, State
from elderwatch.console import labels
from elderwatch.console.chart import ChartText, daily_chart, usage_chart
from elderwatch.console.history import from_ticket, read_history
from elderwatch.console.i18n import LANGUAGE_NAMES, LANGUAGES, Language, load
from elderwatch.console.operations import agent_health, check_broker, consumer_lag, dead_letter_page
from elderwatch.console.ratelimit import FailureLimiter
from elderwatch.console.sessions import (ANONYMOUS_COOKIE, FLASH_COOKIE, SESSION_COOKIE, Session, Sessions,
                                         secret_from)
from elderwatch.console.stats import supervisor_stats
from elderwatch.settings import Settings
from schemas.openapi import TICKET_ACTIONS
from schemas.users import Role, User
from streams.staff_api import FORWARDED, MOVED, ApiError

log = logging.getLogger("elderwatch.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
#: Actions a person takes on the ticket page, in the order shown.
PAGE_ACTIONS = ("acknowledge", "escalate", "handle", "snooze", "feedback", "cancel")
CARING = frozenset({Role.STAFF, Role.SUPERVISOR})


#: Console pages that list every household the user may see (gathered from every partition's worker).
LIST_PAGES = frozenset({"tickets", "tickets-fragment", "supervisor"})
#: Console pages about one household (answered by its partition's worker: forwarded there if not this one).
HOUSEHOLD_PAGES = frozenset({"ticket", "ticket-action", "household", "away", "away-end"})
#: Request headers a forwarded page carries to the household's worker (and Host, and the forwarded marker).
FORWARD_REQUEST_HEADERS = ("Cookie", "Content-Type", "Origin", "Accept", "If-None-Match")
#: Response headers of the household's worker passed on (besides Content-Type; Set-Cookie: every one).
FORWARD_RESPONSE_HEADERS = ("Location", "Retry-After", "ETag")
SESSIONS_DIFFER = ("several workers: the household's worker did not accept this session: every worker needs the "
                   "same ELDERWATCH_SECRET_KEY and users file")


class PageError(Exception):
    """Answer with the error page: ``status`` and a message id (translated when shown)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or "")
        self.status, self.message = status, message


@dataclass
class Ctx:
    """One request as the handlers see it."""

    request: web.Request
    language: Language
    session: Session | None = None
    user: User | None = None
    anonymous: str | None = None  # the sign-in form's CSRF id
    form: dict[str, str] = field(default_factory=dict)
    flash: tuple[str, str] | None = None
    cookies: list[tuple[str, str | None, int | None]] = field(default_factory=list)  # (name, value or None: delete, max-age)

    @property
    def _(self) -> Callable[[str], str]:
        return self.language.gettext


def ticket_path(ticket_id: str) -> str:
    """The ticket page's URL: the id URL-encoded as the API has it ('/' as %2F, ':' as %3A, '+' as %2B)."""
    return f"/tickets/{quote(ticket_id, safe='')}"


def household_path(household_id: str) -> str:
    return f"/households/{quote(household_id, safe='')}"


def safe_next(target: str | None, default: str = "/") -> str:
    """A redirect target only within this site: a path, not ``//host`` nor a URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default


class Console:
    def __init__(self, api, settings: Settings, *, users=None, app=None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.api, self.settings, self.users, self.app = api, settings, users, app
        self.clock = clock or getattr(getattr(api, "desks", None), "clock", None) or (lambda: datetime.now(timezone.utc))
        self.sessions = Sessions(secret_from(settings.secret_key))
        self.limiter = FailureLimiter(settings.signin_attempts_per_min)
        self.languages = load()
        self.secure = settings.environment == "production"
        self.static = {path.name: path.read_bytes() for path in STATIC_DIR.iterdir() if path.suffix in STATIC_TYPES}
        self.static_version = hashlib.sha256(b"".join(self.static[n] for n in sorted(self.static))).hexdigest()[:10]
        prefix = settings.topic_prefix
        self.ack_topics = [f"{prefix}tickets.{step}.ack" for step in ("warning", "dispatch", "handle", "feedback")]
        self.deadletter_topic = f"{prefix}readings.deadletter"
        self.history_limit = asyncio.Semaphore(4)  # at most this many ack-topic reads at once
        self.public_origin = _origin(settings.public_url)
        #: (owner URL, request) -> (status, headers, body): a household page as its worker answers it; set by
        #: register_console (:func:`forward_page`). None: such a page is a 503.
        self.forward: Callable[[URL, web.Request], Awaitable[tuple[int, CIMultiDict, bytes]]] | None = None

    # -- routes --------------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        p = self.page
        return [
            ("GET", "/signin", p("signin", self.signin_form, signed_in=False)),
            ("POST", "/signin", p("signin", self.signin, signed_in=False)),
            ("POST", "/signout", p("signout", self.signout)),
            ("POST", "/language", p("language", self.set_language)),
            ("GET", "/", p("tickets", self.tickets)),
            ("GET", "/fragments/tickets", p("tickets-fragment", self.tickets_fragment, fragment=True)),
            ("GET", "/tickets/{ticket_id}", p("ticket", self.ticket, roles=CARING)),
            ("POST", "/tickets/{ticket_id}/{action}", p("ticket-action", self.ticket_action, roles=CARING)),
            ("GET", "/households/{household_id}", p("household", self.household, roles=CARING)),
            ("POST", "/households/{household_id}/away", p("away", self.set_away, roles=CARING)),
            ("POST", "/households/{household_id}/away/end", p("away-end", self.end_away, roles=CARING)),
            ("GET", "/supervisor", p("supervisor", self.supervisor, roles={Role.SUPERVISOR})),
            ("GET", "/operator", p("operator", self.operator, roles={Role.OPERATOR})),
            ("GET", "/static/{name}", self.static_file),
        ]

    def page(self, name: str, handler: Callable[[Ctx], Awaitable[web.StreamResponse]], *, signed_in: bool = True,
             roles: frozenset | set | None = None, fragment: bool = False):
        async def serve(request: web.Request) -> web.StreamResponse:
            ctx = self._context(request)
            forwarded = ""
            try:
                if signed_in and ctx.user is None:
                    if fragment or request.method != "GET":
                        raise PageError(401, labels.N_("Your session has ended. Please sign in again."))
                    target = request.path_qs if request.path != "/" else None
                    response = redirect("/signin" + (f"?{urlencode({'next': target})}" if target else ""))
                else:
                    response = await self._elsewhere(name, ctx)  # before the form is read: its worker checks it
                    if response is not None:
                        ctx.cookies.clear()  # the household's worker answered with its own cookies
                        forwarded = " (forwarded to the household's worker)"
                    else:
                        if request.method == "POST":
                            await self._check_post(ctx)
                        if roles is not None and (ctx.user is None or ctx.user.role not in roles):
                            raise PageError(403, labels.N_("This page is not for your role."))
                        self._check_available(name, request)
                        response = await handler(ctx)
            except PageError as exc:
                response = self.error_page(ctx, exc.status, exc.message, fragment=fragment)
                if exc.status == 503:
                    response.headers["Retry-After"] = "5"
            except Exception as exc:  # the type only: a message could carry a household's data
                log.error("console: %s failed (%s)", name, type(exc).__name__)
                log.debug("console: %s failed", name, exc_info=True)
                response = self.error_page(ctx, 500, None, fragment=fragment)
            self._finish(ctx, response)
            log.info("console: %s -> %s%s", name, response.status, forwarded)
            return response
        return serve

    # -- readiness and several workers (streams/readiness.py) ---------------------------------------
    def _check_available(self, name: str, request: web.Request) -> None:
        """503 while the worker recovers its tables, for a list or a household page. Never a partial page (a list
        that cannot be gathered from every partition is a 503 too: :meth:`_desks`)."""
        readiness = getattr(self.api, "readiness", None)
        if readiness is None or (name not in LIST_PAGES and name not in HOUSEHOLD_PAGES):
            return
        from streams.readiness import Unavailable

        try:
            readiness.ensure_recovered()
        except Unavailable as exc:
            raise PageError(503, exc.reason) from None

    async def _elsewhere(self, name: str, ctx: Ctx) -> web.StreamResponse | None:
        """A household page whose partition is another worker's, as that worker answers it; None: answered here.

        503 while recovering, with no worker for the partition, for a forwarded request that would be forwarded
        again, when the worker does not answer, or does not know the session (another secret key)."""
        readiness = getattr(self.api, "readiness", None)
        if readiness is None or name not in HOUSEHOLD_PAGES:
            return None
        from streams.readiness import Unavailable

        request = ctx.request
        info = request.match_info
        household_id = info.get("household_id") or info.get("ticket_id", "").split("/", 1)[0]
        try:
            owner = readiness.owner(household_id)
        except Unavailable as exc:
            raise PageError(503, exc.reason) from None
        if owner is None:
            return None
        if request.headers.get(FORWARDED):
            raise PageError(503, MOVED)  # never forwarded twice: two workers that disagree would bounce it
        if self.forward is None:
            raise PageError(503, "several workers: this household is on another worker and this console cannot "
                                 "forward")
        status, headers, body = await self.forward(owner.url, request)
        location = headers.get("Location", "")
        if ctx.user is not None and (status == 401 or (status in (302, 303) and location.startswith("/signin"))):
            raise PageError(503, SESSIONS_DIFFER)  # signed in here, not there: it would send them round in circles
        response = web.Response(status=status, body=body)
        if "Content-Type" in headers:
            response.headers["Content-Type"] = headers["Content-Type"]
        for header in FORWARD_RESPONSE_HEADERS:
            if header in headers:
                response.headers[header] = headers[header]
        for cookie in headers.getall("Set-Cookie", ()):
            response.headers.add("Set-Cookie", cookie)
        return response

    # -- request context, POST checks, responses -------------------------------------------------
    def _signed_in(self, cookies) -> tuple[Session | None, User | None]:
        """The session in ``cookies`` and its user, looked up again (removed or disabled: neither)."""
        session = self.sessions.read(cookies.get(SESSION_COOKIE))
        user = None
        if session is not None and self.users is not None:
            try:
                user = self.users.get(session.user_id)
            except Exception:  # an unreadable users file signs nobody in (the worker logs it elsewhere)
                user = None
        return (session, user) if user is not None else (None, None)

    def session_user(self, cookies) -> User | None:
        """The signed-in user of a request's ``cookies``: how the staff API's internal desks route authenticates a
        console caller another worker gathers for (set as ``StaffApi.session_user`` by :func:`register_console`)."""
        return self._signed_in(cookies)[1]

    def _context(self, request: web.Request) -> Ctx:
        session, user = self._signed_in(request.cookies)
        code = session.language if session else _anonymous_language(request)
        ctx = Ctx(request=request, language=self.languages[code if code in self.languages else LANGUAGES[0]],
                  session=session, user=user, anonymous=request.cookies.get(ANONYMOUS_COOKIE))
        flash = request.cookies.get(FLASH_COOKIE)
        if flash:
            ctx.flash = self.sessions.read_flash(flash)
            ctx.cookies.append((FLASH_COOKIE, None, None))
        return ctx

    async def _check_post(self, ctx: Ctx) -> None:
        request = ctx.request
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._own_origins(request):
            raise PageError(403, labels.N_("This form did not come from this site. Nothing was done."))
        posted = await request.post()
        ctx.form = {k: v for k, v in posted.items() if isinstance(v, str)}
        sid = ctx.session.sid if ctx.session else (f"anon:{ctx.anonymous}" if ctx.anonymous else None)
        if not self.sessions.check_csrf(sid, ctx.form.get("csrf")):
            raise PageError(403, labels.N_("This form has expired or did not come from this site. Nothing was "
                                           "done: open the page again and repeat."))

    def _own_origins(self, request: web.Request) -> set[str]:
        return {self.public_origin, f"{request.scheme}://{request.host}"}

    def csrf(self, ctx: Ctx) -> str:
        if ctx.session is not None:
            return self.sessions.csrf_token(ctx.session.sid)
        if ctx.anonymous is None:
            ctx.anonymous = secrets.token_urlsafe(18)
            ctx.cookies.append((ANONYMOUS_COOKIE, ctx.anonymous, 3600))
        return self.sessions.csrf_token(f"anon:{ctx.anonymous}")

    def _finish(self, ctx: Ctx, response: web.StreamResponse) -> None:
        for name, value, max_age in ctx.cookies:
            if value is None:
                response.del_cookie(name, path="/")
            else:
                response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Lax",
                                    secure=self.secure)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer would make Origin "null"
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")

    def flash(self, ctx: Ctx, kind: str, text: str) -> None:
        ctx.cookies.append((FLASH_COOKIE, self.sessions.flash_cookie(kind, text), 120))

    def render(self, ctx: Ctx, template: str, *, status: int = 200, **values) -> web.Response:
        html = self.render_text(ctx, template, **values)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def render_text(self, ctx: Ctx, template: str, **values) -> str:
        language = ctx.language
        common = dict(
            lang=language, language_code=language.code, languages=[(c, LANGUAGE_NAMES[c]) for c in LANGUAGES],
            user=ctx.user, csrf=self.csrf(ctx), flash=ctx.flash, path=ctx.request.path_qs, labels=labels,
            ticket_path=ticket_path, household_path=household_path, static_version=self.static_version,
            nav=self._nav(ctx), now=self.clock(), sign_in_off=self.users is None,
            role_label=(ctx._(labels.ROLES[ctx.user.role.value]) if ctx.user else None),
            label=lambda mapping, key: ctx._(mapping[key]) if key in mapping else key,
        )
        return language.env.get_template(template).render(**common, **values)

    def _nav(self, ctx: Ctx) -> list[tuple[str, str]]:
        if ctx.user is None:
            return []
        items = []
        if ctx.user.role in CARING:
            items.append(("/", ctx._("My tickets")))
        if ctx.user.role is Role.SUPERVISOR:
            items.append(("/supervisor", ctx._("Supervisor")))
        if ctx.user.role is Role.OPERATOR:
            items.append(("/operator", ctx._("Operator")))
        return items

    def error_page(self, ctx: Ctx, status: int, message: str | None, *, fragment: bool = False) -> web.Response:
        if fragment:
            return web.Response(status=status, text=ctx._(message or labels.N_("Something went wrong.")),
                                content_type="text/plain", charset="utf-8")
        titles = {401: labels.N_("Please sign in"), 403: labels.N_("Not yours to see"),
                  404: labels.N_("Not found"), 429: labels.N_("Too many attempts"),
                  500: labels.N_("Something went wrong")}
        explanations = {
            403: labels.N_("This ticket or household is looked after by another community or person, or this page "
                           "is for another role. If you think you should see it, ask your supervisor to check the "
                           "roster."),
            404: labels.N_("There is no such page, ticket or household here. A ticket finished more than 30 days "
                           "ago is no longer kept on the desk."),
            500: labels.N_("The page could not be shown. Try again in a moment; if it keeps happening, tell the "
                           "operator."),
        }
        _ = ctx._
        explanation = explanations.get(status)
        default_title = labels.N_("Error")
        return self.render(ctx, "error.html", status=status, title=_(titles.get(status, default_title)),
                           message=_(message) if message else None, explanation=_(explanation) if explanation else None,
                           status_code=status)

    async def not_found(self, request: web.Request) -> web.Response:
        ctx = self._context(request)
        response = self.error_page(ctx, 404, None)
        self._finish(ctx, response)
        log.info("console: not-found -> 404")
        return response

    # -- static ---------------------------------------------------------------------------------
    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self.static.get(name)
        if body is None:
            return await self.not_found(request)
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers, content_type=STATIC_TYPES[Path(name).suffix], charset="utf-8")

    # -- sign-in ---------------------------------------------------------------------------------
    def home_of(self, user: User) -> str:
        return "/operator" if user.role is Role.OPERATOR else "/"

    async def signin_form(self, ctx: Ctx) -> web.Response:
        if ctx.user is not None:
            return redirect(safe_next(ctx.request.query.get("next"), self.home_of(ctx.user)))
        return self.render(ctx, "signin.html", next=safe_next(ctx.request.query.get("next"), ""), error=None,
                           user_id="")

    async def signin(self, ctx: Ctx) -> web.Response:
        _ = ctx._
        if self.users is None:
            raise PageError(403, labels.N_("Sign-in is off: this worker has no users file."))
        user_id = ctx.form.get("user_id", "").strip()[:64]
        password = ctx.form.get("password", "")
        target = safe_next(ctx.form.get("next"), "")
        keys = (f"user:{user_id.lower()}", f"addr:{ctx.request.remote or '?'}")
        wait = self.limiter.retry_after(*keys)
        if wait is not None:
            response = self.render(ctx, "signin.html", status=429, next=target, user_id=user_id,
                                   error=_("Too many failed sign-ins. Wait %(s)s seconds and try again.") % {"s": wait})
            response.headers["Retry-After"] = str(wait)
            return response
        user = await asyncio.to_thread(self.users.check_password, user_id, password) if user_id and password else None
        if user is None:
            self.limiter.failed(*keys)
            return self.render(ctx, "signin.html", status=401, next=target, user_id=user_id,
                               error=_("Wrong user id or password."))
        self.limiter.succeeded(keys[0])
        session, cookie = self.sessions.issue(user.user_id, user.language)
        ctx.cookies.append((SESSION_COOKIE, cookie, self.sessions.remaining(session)))
        ctx.cookies.append((ANONYMOUS_COOKIE, None, None))
        return redirect(target or self.home_of(user))

    async def signout(self, ctx: Ctx) -> web.Response:
        self.sessions.revoke(ctx.session)
        ctx.cookies.append((SESSION_COOKIE, None, None))
        ctx.session, ctx.user = None, None
        self.flash(ctx, "ok", ctx._("You are signed out."))
        return redirect("/signin")

    async def set_language(self, ctx: Ctx) -> web.Response:
        code = ctx.form.get("language")
        if code in self.languages:
            ctx.session, cookie = self.sessions.with_language(ctx.session, code)
            ctx.cookies.append((SESSION_COOKIE, cookie, self.sessions.remaining(ctx.session)))
        return redirect(safe_next(ctx.form.get("next"), "/"))

    # -- my tickets -------------------------------------------------------------------------------
    async def _desks(self, ctx: Ctx) -> list:
        """The desks ``ctx.user`` may see, from every partition (gathered from the other workers with the session
        cookie as the credentials); a 503 with the reason when they cannot all be had."""
        cookie = ctx.request.cookies.get(SESSION_COOKIE)
        try:
            return await self.api.gather_desks(ctx.user, {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {},
                                               forwarded=bool(ctx.request.headers.get(FORWARDED)))
        except ApiError as exc:
            raise PageError(exc.status, exc.message if exc.status == 503 else None) from None

    async def ticket_rows(self, ctx: Ctx) -> list[dict]:
        user = ctx.user
        now = self.clock()
        rows = []
        for desk in await self._desks(ctx):
            zone = desk.roster.timezone if desk.roster else "UTC"
            for t in desk.open_tickets():
                waiting = t.state in (State.DISPATCHED, State.ESCALATED)  # open: its dispatch is on the way
                rows.append({"ticket": t, "zone": zone, "age": now - t.opened_at,
                             "overdue": t.deadline is not None and t.deadline < now,
                             "waiting": waiting, "mine": t.assignee == user.user_id})
        rows.sort(key=lambda r: (labels.SEVERITY_ORDER.get(r["ticket"].severity, 9), r["ticket"].opened_at,
                                 r["ticket"].ticket_id))
        return rows

    async def tickets(self, ctx: Ctx) -> web.Response:
        if ctx.user.role is Role.OPERATOR:
            return redirect("/operator")
        if ctx.user.role not in CARING:
            raise PageError(403, labels.N_("This page is not for your role."))
        return self.render(ctx, "tickets.html", rows=await self.ticket_rows(ctx))

    async def tickets_fragment(self, ctx: Ctx) -> web.Response:
        if ctx.user.role not in CARING:
            raise PageError(403, labels.N_("This page is not for your role."))
        html = self.render_text(ctx, "_ticket_list.html", rows=await self.ticket_rows(ctx))
        etag = f'"{hashlib.sha256(html.encode()).hexdigest()[:20]}"'
        if ctx.request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers={"ETag": etag})

    # -- a ticket ---------------------------------------------------------------------------------
    async def _call(self, method, *args, **kwargs):
        """A staff API method; its 403 and 404 are the console's error pages."""
        try:
            return await method(*args, **kwargs)
        except ApiError as exc:
            if exc.status in (403, 404):
                raise PageError(exc.status) from None
            raise

    async def ticket(self, ctx: Ctx) -> web.Response:
        ticket_id = ctx.request.match_info["ticket_id"]
        _status, detail = await self._call(self.api.get_ticket, ctx.user, {}, b"", ticket_id=ticket_id)
        ticket = detail.ticket
        zone = (detail.roster.timezone if detail.roster and detail.roster.timezone else None) or \
            (detail.recent_usage or {}).get("timezone") or "UTC"
        history = None
        async with self.history_limit:
            history = await read_history(self.settings.kafka_bootstrap_servers, self.ack_topics, ticket,
                                         clock_offset=self.clock() - datetime.now(timezone.utc))
        history_complete = history is not None
        if history is None:
            history = from_ticket(ticket)
        allowed = {k.value for k in ALLOWED[ticket.state]}
        actions = [a for a in PAGE_ACTIONS if a in allowed]
        keys = {a: self.sessions.idempotency_key(ctx.session.sid, ticket.ticket_id, ticket.version, a) for a in actions}
        return self.render(ctx, "ticket.html", detail=detail, ticket=ticket, zone=zone, history=history,
                           history_complete=history_complete, actions=actions, keys=keys,
                           charts=self.charts(ctx, detail.recent_usage), meters=self.meters(ticket.household_id,
                                                                                           detail.recent_usage),
                           away_form=self.away_form(ctx, ticket.household_id, zone, detail.away),
                           terminal=ticket.state in TERMINAL)

    def charts(self, ctx: Ctx, usage: dict | None) -> list[dict]:
        _ = ctx._
        out = []
        for meter, summary in ((usage or {}).get("meters") or {}).items():
            name = _(labels.METERS.get(meter, meter))
            unit = summary.get("unit", "")
            text = ChartText(title=_("%(meter)s, last 48 hours (%(unit)s per hour)") % {"meter": name, "unit": unit},
                             no_data=_("no reading"), usual_average=_("usual hourly average"), unit=unit,
                             usual_band=_("usual range"))
            out.append({"meter": meter, "name": name, "svg": usage_chart(meter, summary, text), "unit": unit,
                        "today": summary.get("today"), "usual_per_day": summary.get("usual_per_day"),
                        "last_reading": summary.get("last_reading"),
                        "has_band": any(("usual_low" in h or "usual" in h) for h in summary.get("hours") or [])})
        return out

    def meters(self, household_id: str, usage: dict | None) -> list[dict] | None:
        """The household's meters from the roster, when the roster lists them (after the API allowed the read)."""
        desk = self.api.desks.get(household_id) if hasattr(self.api, "desks") else None
        listed = getattr(desk.roster, "meters", None) if desk is not None and desk.roster is not None else None
        if not listed:
            return None
        last = {name: m.get("last_reading") for name, m in ((usage or {}).get("meters") or {}).items()}
        rows = []
        now = self.clock()
        for meter in listed:
            until = _field(meter, "until")
            if isinstance(until, datetime) and until <= now:
                continue  # no longer this household's
            kind = getattr(meter, "kind", None) or (meter.get("kind") if isinstance(meter, dict) else None)
            kind = getattr(kind, "value", kind)
            rows.append({"utility_id": _field(meter, "utility_id"), "meter_id": _field(meter, "meter_id"),
                         "kind": kind, "last_reading": _parse_time(last.get(kind))})
        return rows

    def away_form(self, ctx: Ctx, household_id: str, zone: str, away) -> dict:
        now = self.clock()
        today = now.astimezone(ZoneInfo(zone)).date()
        if away is None:
            state = "none"
        elif away.active(now):
            state = "active"
        else:
            state = "planned" if now < (away.since or away.set_at) else "over"
        return {"household_id": household_id, "zone": zone, "away": away, "state": state, "today": today.isoformat(),
                "default_until": (today + timedelta(days=3)).isoformat()}

    async def ticket_action(self, ctx: Ctx) -> web.Response:
        _ = ctx._
        ticket_id, action = ctx.request.match_info["ticket_id"], ctx.request.match_info["action"]
        if action not in TICKET_ACTIONS:
            raise PageError(404)
        back = ticket_path(ticket_id)
        try:  # a stranger is refused before the form is read: 403, as the API answers
            self.api.ticket_for(ctx.user, ticket_id)
        except ApiError as exc:
            raise PageError(exc.status) from None
        try:
            body = self.action_body(ctx, action)
        except ValueError as exc:
            self.flash(ctx, "error", str(exc))
            return redirect(back)
        try:
            status, answer = await self._call(self.api.ticket_action, action, ctx.user, {}, json.dumps(body).encode(),
                                              ticket_id=ticket_id, client_key=ctx.form.get("idem") or None)
        except ApiError as exc:
            text = labels.rejection(exc.message, _) if exc.status == 409 else _("Not done: %(reason)s") % {
                "reason": exc.message}
            self.flash(ctx, "error", text)
            return redirect(back)
        if status == 202:
            self.flash(ctx, "info", _("Sent. It will show here in a moment (reload the page)."))
        elif getattr(answer, "result", None) == "duplicate":
            self.flash(ctx, "info", _("Already done: this form was sent before, nothing changed."))
        else:
            self.flash(ctx, "ok", self.done_message(ctx, action))
        return redirect(back)

    def action_body(self, ctx: Ctx, action: str) -> dict:
        """The API body for a form; ValueError (in the reader's words) when something needed is missing."""
        _, form = ctx._, ctx.form
        if action == "handle":
            notes = form.get("notes", "").strip()
            if not notes:
                raise ValueError(_("Please write what you found (who was there, how they are)."))
            return {"notes": notes[:2000]}
        if action == "escalate":
            choice = form.get("reason", "")
            reason = (form.get("other") or "").strip() or (_(labels.ESCALATE_REASONS[choice])
                                                           if choice in labels.ESCALATE_REASONS else "")
            if not reason:
                raise ValueError(_("Please say why the next person should be asked."))
            return {"reason": reason[:200]}
        if action == "snooze":
            try:
                hours = int(form.get("hours", ""))
            except ValueError:
                hours = 0
            if hours not in labels.SNOOZE_HOURS:
                raise ValueError(_("Please choose how long to snooze."))
            return {"until": (self.clock() + timedelta(hours=hours)).isoformat()}
        if action == "feedback":
            outcome = form.get("outcome", "")
            if outcome not in labels.OUTCOMES:
                raise ValueError(_("Please choose what the outcome was."))
            notes = form.get("notes", "").strip()
            return {"outcome": outcome, **({"notes": notes[:2000]} if notes else {})}
        if action == "cancel":
            reason = form.get("reason", "").strip()
            if not reason:
                raise ValueError(_("Please say why the ticket was raised in error."))
            return {"reason": reason[:200]}
        return {}

    def done_message(self, ctx: Ctx, action: str) -> str:
        _ = ctx._
        return {
            "acknowledge": _("Taken: the ticket is yours. Go or call, then record what you found."),
            "escalate": _("Escalated: the next person has been asked."),
            "handle": _("Handled. Now record the outcome: it teaches detection about this household."),
            "snooze": _("Snoozed."),
            "feedback": _("Outcome recorded. Detection learns from it and then closes the ticket."),
            "cancel": _("Cancelled."),
        }[action]

    # -- a household ------------------------------------------------------------------------------
    async def household(self, ctx: Ctx) -> web.Response:
        household_id = ctx.request.match_info["household_id"]
        _status, view = await self._call(self.api.get_household, ctx.user, {}, b"", household_id=household_id)
        zone = (view.roster.timezone if view.roster and view.roster.timezone else None) or "UTC"
        return self.render(ctx, "household.html", view=view, zone=zone, charts=self.charts(ctx, view.recent_usage),
                           meters=self.meters(household_id, view.recent_usage),
                           away_form=self.away_form(ctx, household_id, zone, view.away))

    async def set_away(self, ctx: Ctx) -> web.Response:
        _ = ctx._
        household_id = ctx.request.match_info["household_id"]
        back = safe_next(ctx.form.get("next"), household_path(household_id))
        _status, view = await self._call(self.api.get_household, ctx.user, {}, b"", household_id=household_id)
        zone = ZoneInfo((view.roster.timezone if view.roster and view.roster.timezone else None) or "UTC")
        try:
            until_day = date.fromisoformat(ctx.form.get("until", ""))
            since_text = ctx.form.get("since", "").strip()
            since_day = date.fromisoformat(since_text) if since_text else None
        except ValueError:
            self.flash(ctx, "error", _("Please give the dates as on the form (the last day away is needed)."))
            return redirect(back)
        # the last day away counts in full: away mode ends at the next local midnight
        body = {"until": datetime.combine(until_day + timedelta(days=1), datetime.min.time(), tzinfo=zone).isoformat()}
        if since_day is not None:
            body["since"] = datetime.combine(since_day, datetime.min.time(), tzinfo=zone).isoformat()
        reason = ctx.form.get("reason", "").strip()
        if reason:
            body["reason"] = reason[:200]
        try:
            status, _answer = await self._call(self.api.set_away, ctx.user, {}, json.dumps(body).encode(),
                                               household_id=household_id)
        except ApiError as exc:
            self.flash(ctx, "error", _("Not done: %(reason)s") % {"reason": exc.message})
            return redirect(back)
        self.flash(ctx, "ok" if status == 200 else "info",
                   _("Away mode is on until the end of %(day)s: no inactivity tickets meanwhile.")
                   % {"day": until_day.isoformat()} if status == 200
                   else _("Sent. It will show here in a moment (reload the page)."))
        return redirect(back)

    async def end_away(self, ctx: Ctx) -> web.Response:
        _ = ctx._
        household_id = ctx.request.match_info["household_id"]
        back = safe_next(ctx.form.get("next"), household_path(household_id))
        status, _answer = await self._call(self.api.end_away, ctx.user, {}, b"", household_id=household_id)
        self.flash(ctx, "ok" if status == 200 else "info", _("Away mode ended.") if status == 200
                   else _("Sent. It will show here in a moment (reload the page)."))
        return redirect(back)

    # -- supervisor -------------------------------------------------------------------------------
    async def supervisor(self, ctx: Ctx) -> web.Response:
        _ = ctx._
        desks = await self._desks(ctx)
        stats = supervisor_stats(desks, self.clock(), days=14)
        chart = daily_chart(stats.per_day, title=_("Tickets opened per day, last 14 days"))
        return self.render(ctx, "supervisor.html", stats=stats, chart=chart, households=len(desks))

    # -- operator ---------------------------------------------------------------------------------
    async def operator(self, ctx: Ctx) -> web.Response:
        try:
            page = max(int(ctx.request.query.get("page", "0")), 0)
        except ValueError:
            page = 0
        bootstrap = self.settings.kafka_bootstrap_servers
        letters, lag, broker = await asyncio.gather(
            dead_letter_page(bootstrap, self.deadletter_topic, page),
            consumer_lag(bootstrap, self.settings.app_id),
            check_broker(bootstrap))
        agents = agent_health(self.app) if self.app is not None else []
        return self.render(ctx, "operator.html", letters=letters, lag=lag, broker=broker, agents=agents,
                           app_id=self.settings.app_id)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _anonymous_language(request: web.Request) -> str:
    asked = request.query.get("lang")
    return asked if asked in LANGUAGES else LANGUAGES[0]


def _field(meter, name: str):
    return getattr(meter, name, None) if not isinstance(meter, dict) else meter.get(name)


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def register_console(app, staff_api, settings: Settings, *, users=None) -> Console:
    """Serve the console on ``app``'s web server (``/``, ``/signin``, ``/tickets/...``, ...); returns it (for tests)."""
    if users is None and settings.users_file is not None:
        from elderwatch.users import UserStore

        users = UserStore(settings.users_file)
    console = Console(staff_api, settings, users=users, app=app)
    staff_api.session_user = console.session_user  # a console caller another worker gathers for
    peer_http = getattr(staff_api, "peer_http", None)
    if peer_http is not None:  # a household page whose partition is another worker's is forwarded there
        console.forward = lambda url, request: forward_page(peer_http.session(), url, request)
    install(app.web.web_app, console)
    if users is None:
        log.warning("console: no users file, sign-in is off (create users with `elderwatch users add`)")
    return console


async def forward_page(session: aiohttp.ClientSession, url, request: web.Request) -> tuple[int, CIMultiDict, bytes]:
    """``request`` as sent to the worker at ``url``: (status, headers, body) of its answer; a 503 PageError when it
    does not answer. The path goes as received (a ticket id's %2F stays encoded); Host too, so the owner checks a
    form's Origin against the address the browser used, as it would for its own page."""
    url = URL(str(url))
    body = await request.read()
    headers = {k: request.headers[k] for k in FORWARD_REQUEST_HEADERS if k in request.headers}
    headers["Host"] = request.host
    headers[FORWARDED] = "1"
    target = URL(f"{url.scheme or 'http'}://{url.host}:{url.port or 80}{request.raw_path}", encoded=True)
    try:
        async with session.request(request.method, target, headers=headers, data=body or None,
                                   allow_redirects=False) as response:
            return response.status, CIMultiDict(response.headers), await response.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise PageError(503, f"several workers: the household's worker did not answer ({type(exc).__name__})") from None


def install(web_app: web.Application, console: Console) -> None:
    """The console's routes on an aiohttp application, and its 404 page for the browser's unknown paths.

    Registered before faust's own pages, so ``/`` is the console's (aiohttp takes the first match)."""
    for method, path, handler in console.routes():
        web_app.router.add_route(method, path, handler)

    @web.middleware
    async def console_not_found(request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPNotFound:
            if request.method == "GET" and not request.path.startswith("/api/") \
                    and "text/html" in request.headers.get("Accept", ""):
                return await console.not_found(request)
            raise

    web_app.middlewares.append(console_not_found)


__all__ = ["Console", "register_console", "install", "forward_page", "ticket_path", "household_path", "safe_next",
           "PageError"]
