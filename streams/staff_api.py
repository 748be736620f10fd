"""The staff API over HTTP, served by the Faust worker's own web server (``/api/v1``).

The routes are :data:`schemas.openapi.ROUTES` (``GET /api/v1/openapi.json`` describes them), each
handled by the :class:`StaffApi` method of its ``operation_id``; registration fails if one is
missing. Reads come from the ``tickets-households`` table; writes are commands on the ticket
topics, applied by the ``tickets`` agent like every other command (one writer per household).

Who: ``Authorization: Bearer <token>``, a user's API token from the users file (``elderwatch users
token``; the user's role and communities come with it) or a token of the older ``staff_tokens_file``
({token: staff id}, role staff). With neither file (development only: production settings refuse to
start) the ``X-Staff-Id`` header is trusted. The console (``elderwatch/console``) signs people in with
a password instead and calls these same handlers.

What a caller may see, one rule (:func:`dispatch.access.may_see`): staff the households whose desk
names them (roster chain, or anyone a ticket was sent to), supervisors also every household of their
communities; operators and utilities no household (403). A household the caller may not see is a
403, in the list it is absent.

A ticket action, step by step:

1. 404 if the desk has no such ticket, 403 if the caller does not look after the household,
   400 if the body is not what the route takes;
2. the event: actor the caller, time ``desks.clock()``, key ``<kind>:<caller>:<Idempotency-Key>``
   (a fresh uuid without the header; the caller in the key keeps two people's keys apart);
3. :func:`dispatch.tickets.apply` on the ticket as the desk has it now: a rejection is a 409 with
   its reason, a key already applied a 200 ``duplicate``; nothing is sent in either case;
4. the command goes to its step topic; the answer waits (polling the desk every 50 ms, 5 s at
   most) until the ticket has the key: 200 with the new ticket. Otherwise 202 ``pending``: the
   command is on its topic and will be applied, or rejected if another command got there first
   (its step's ``.ack`` topic says which); repeating the request with the same key tells.

Away mode and roster changes go the same way to ``households.away`` and ``households.roster``.

Privacy: logs name the operation and its result, never a token, a note, a staff or household id
(these are vulnerable people's lives); the worker's access log is off.

Readiness and several workers (:mod:`streams.readiness`), checked before anything else:

- while this worker recovers its tables (start, rebalance), every route but the OpenAPI document
  answers 503 ``recovering`` with ``Retry-After``: a table half restored would give wrong answers;
- Faust tables are local to the worker whose partition it is. A single-household request (a ticket,
  a household) whose partition is active on another worker is forwarded there, as faust's
  ``app.table_route`` does, with its body (faust's own forwarding drops it) and a
  ``X-Elderwatch-Forwarded`` header; a forwarded request that finds the partition gone again, or a
  partition with no worker now, is a 503 with the reason;
- the ticket list is gathered (:mod:`streams.gather`, :meth:`StaffApi.gather_desks`): this worker's
  answer from its active partitions, every other worker's from theirs over ``GET /internal/v1/desks``
  with the caller's own credentials (the peer authenticates the caller itself: a token, ``X-Staff-Id``
  in development, or a console session through :attr:`StaffApi.session_user`). Unless together they
  answer every partition exactly once: 503 with the reason (rebalancing, a worker did not answer, a
  worker did not know the caller), never a partial list with 200. A forwarded list is not gathered again.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import faust
from faust.web import View
from pydantic import BaseModel, ValidationError

from dispatch.desk import HouseholdDesk
from dispatch.tickets import Event, Ticket, apply
from dispatch.access import CARING_ROLES, may_see
from elderwatch.settings import Settings
from elderwatch.users import UserStore
from schemas.openapi import (ROUTES, TICKET_ACTIONS, ActionResult, AwayRequest, ErrorBody, HouseholdView, Pending,
                             Route, RosterEntry, TicketDetail, TicketList, TicketSummary, openapi_document)
from schemas.households import STAFF_ID_PATTERN
from schemas.tickets import AwayMode, TicketCommand
from schemas.users import Role, User
from streams.gather import (CREDENTIAL_HEADERS, INTERNAL_DESKS_PATH, PeerAnswer, PeerHttp, answer_of, fetch_desks,
                            internal_answer, merge)

log = logging.getLogger(__name__)

STAFF_ID = re.compile(STAFF_ID_PATTERN)
CLIENT_KEY = re.compile(r"^[\x21-\x7e]{1,100}$")  # printable ASCII, no spaces

RecentUsage = Callable[[str], "dict | None | Awaitable[dict | None]"]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class StaffAuth:
    """Who is calling, as a :class:`~schemas.users.User`.

    ``Authorization: Bearer <token>``: a user's API token from the users file (``elderwatch users token``),
    or a token of the older staff tokens file ({token: staff id}: role staff). With neither file
    (development only: production settings refuse to start) the ``X-Staff-Id`` header is trusted."""

    def __init__(self, tokens: dict[str, str] | None, users: UserStore | None = None) -> None:
        # Kept as digests: the tokens themselves are not held (nor logged) past loading.
        self._by_digest = None if tokens is None else {_digest(t): staff for t, staff in tokens.items()}
        self.users = users

    @classmethod
    def from_settings(cls, settings: Settings) -> "StaffAuth":
        users = UserStore(settings.users_file) if settings.users_file else None
        if settings.staff_tokens_file is None:
            if users is None:
                log.warning("staff API: no users file and no staff tokens file, trusting the X-Staff-Id header "
                            "(development only)")
                return cls(None)
            return cls({}, users)
        return cls(cls.read_tokens(settings.staff_tokens_file), users)

    @classmethod
    def from_file(cls, path: Path | None) -> "StaffAuth":
        return cls(None) if path is None else cls(cls.read_tokens(path))

    @staticmethod
    def read_tokens(path: Path) -> dict[str, str]:
        tokens = json.loads(Path(path).read_text())
        if not isinstance(tokens, dict) or not all(isinstance(t, str) and t and isinstance(s, str) and STAFF_ID.match(s)
                                                   for t, s in tokens.items()):
            raise ValueError(f"{path}: expected a JSON object {{token: staff id}} with non-empty tokens and valid ids")
        return tokens

    @property
    def trusts_header(self) -> bool:
        return self._by_digest is None

    def caller(self, headers) -> User | None:
        if self._by_digest is None:
            staff = (headers.get("X-Staff-Id") or "").strip()
            return User(user_id=staff, role=Role.STAFF) if STAFF_ID.match(staff) else None
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self.users is not None:
            user = self.users.by_token(token)
            if user is not None:
                return user
        staff = self._by_digest.get(_digest(token))
        return User(user_id=staff, role=Role.STAFF) if staff else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class StaffApi:
    """The handlers, one per ``operation_id`` of :data:`ROUTES`; each returns (status, JSON body)."""

    def __init__(self, desks, auth: StaffAuth, *, duty_desk: str, recent_usage: RecentUsage | None = None,
                 wait_s: float = 5.0, poll_s: float = 0.05, readiness=None) -> None:
        self.desks, self.auth, self.duty_desk, self.recent_usage = desks, auth, duty_desk, recent_usage
        self.readiness = readiness  # streams.readiness.Readiness; None: one worker, always recovered (unit tests)
        self.wait_s, self.poll_s = wait_s, poll_s
        self.document = openapi_document()
        #: cookies -> the console's signed-in User (or None); set by the console when it is registered, so the
        #: internal desks route authenticates a console caller's session as the console would.
        self.session_user: Callable[[Any], User | None] | None = None
        #: (peer URL, credential headers) -> (status, JSON body): a peer's answer to the internal desks route;
        #: set at registration (streams.gather.fetch_desks). None: this worker cannot gather.
        self.fetch_desks: Callable[[str, dict], Awaitable[tuple[int, Any]]] | None = None

    # -- reading ----------------------------------------------------------------------------
    def visible_desks(self, user: User) -> list[HouseholdDesk]:
        """The desks of the households ``user`` may see (:func:`dispatch.access.may_see`), by household id."""
        if user.role not in CARING_ROLES:
            raise ApiError(403, f"the {user.role.value} role sees no households")
        desks = {d.household_id: d for d in self.desks.of_staff(user.user_id)}
        if user.role is Role.SUPERVISOR:
            for community in user.communities:
                desks.update((d.household_id, d) for d in self.desks.of_community(community))
        return [desks[h] for h in sorted(desks) if may_see(user, desks[h])]

    def local_desks(self, user: User, partitions) -> list[HouseholdDesk]:
        """:meth:`visible_desks` of the table partitions ``partitions`` only (those active here: with standby
        replicas the table also holds other workers' partitions)."""
        wanted = set(partitions)
        return [d for d in self.visible_desks(user) if self.readiness.partition_of(d.household_id) in wanted]

    async def gather_desks(self, user: User, credentials: dict[str, str] | None = None, *,
                           forwarded: bool = False) -> list[HouseholdDesk]:
        """:meth:`visible_desks` over every partition of the table, whichever worker holds it (:mod:`streams.gather`):
        this worker's active partitions and every other worker's, asked with the caller's ``credentials``. ApiError
        403 for a role that sees no households, 503 with the reason when not every partition is answered."""
        from streams.readiness import ASSIGNMENT_CHANGING, FORWARDED_LIST, Unavailable

        readiness = self.readiness
        if readiness is None:  # one worker (unit tests)
            return self.visible_desks(user)
        if user.role not in CARING_ROLES:
            raise ApiError(403, f"the {user.role.value} role sees no households")
        try:
            readiness.ensure_recovered()
            if readiness.holds_every_partition():
                return self.visible_desks(user)
            if forwarded:
                raise Unavailable(FORWARDED_LIST)
            local, peers = readiness.gather_plan()
            mine = self.local_desks(user, local)
            if peers and self.fetch_desks is None:
                raise Unavailable("several workers: this worker cannot ask the others (no HTTP client)")
            results = await asyncio.gather(*(self._ask(url, credentials or {}, user) for url in peers),
                                           return_exceptions=True)
            answers: dict[str, PeerAnswer] = {}
            for url, result in zip(peers, results):
                if isinstance(result, BaseException):
                    raise result
                answers[url] = result
            if not readiness.recovered() or readiness.table_partitions() != local:
                raise Unavailable(ASSIGNMENT_CHANGING)  # a rebalance began while the peers answered
            return merge(readiness.partition_count(), local, mine, peers, answers)
        except Unavailable as exc:
            raise ApiError(503, exc.reason) from None

    async def _ask(self, url: str, credentials: dict[str, str], user: User) -> PeerAnswer:
        status, body = await self.fetch_desks(url, credentials)
        return answer_of(url, status, body, user)

    def internal_desks(self, headers, cookies) -> tuple[int, Any]:
        """``GET /internal/v1/desks``: the caller's visible desks of the partitions active here, for a peer's gather.

        The caller is authenticated here exactly as this worker's API would (``Authorization``, ``X-Staff-Id`` in
        development) or, without those, as its console would (the session cookie, :attr:`session_user`). Never
        gathers itself."""
        from streams.readiness import Unavailable

        readiness = self.readiness
        try:
            if readiness is not None:
                readiness.ensure_recovered()
            caller = self.auth.caller(headers)
            if caller is None and self.session_user is not None:
                caller = self.session_user(cookies)
            if caller is None:
                raise ApiError(401, "authentication required: the caller's own credentials")
            if readiness is None:
                return 200, internal_answer([], self.visible_desks(caller), caller)
            partitions = readiness.table_partitions()
            return 200, internal_answer(partitions, self.local_desks(caller, partitions), caller)
        except Unavailable as exc:
            raise ApiError(503, exc.reason) from None

    async def list_tickets(self, caller: User, query, body: bytes, *, credentials: dict[str, str] | None = None,
                           forwarded: bool = False) -> tuple[int, Any]:
        state = query.get("state", "open")
        if state not in ("open", "all"):
            raise ApiError(400, "state: expected 'open' or 'all'")
        desks = await self.gather_desks(caller, credentials, forwarded=forwarded)
        tickets = [t for desk in desks
                   for t in (desk.open_tickets() if state == "open" else desk.tickets.values())]
        return 200, TicketList(tickets=_newest_first(tickets))

    async def get_ticket(self, caller: User, query, body: bytes, ticket_id: str) -> tuple[int, Any]:
        desk, ticket = self._ticket(caller, ticket_id)
        evidence = [desk.warnings[w] for w in ticket.warning_ids if w in desk.warnings]
        return 200, TicketDetail(ticket=ticket, evidence=evidence, away=desk.away, roster=_roster(desk),
                                 recent_usage=await self._usage(desk.household_id))

    async def get_household(self, caller: User, query, body: bytes, household_id: str) -> tuple[int, Any]:
        return 200, await self._household_view(self._household(caller, household_id))

    async def get_openapi(self, caller: User | None, query, body: bytes) -> tuple[int, Any]:
        return 200, self.document

    # -- ticket actions ---------------------------------------------------------------------
    async def ticket_action(self, action: str, caller: User, query, body: bytes, ticket_id: str, *,
                            client_key: str | None) -> tuple[int, Any]:
        kind, model, _ = TICKET_ACTIONS[action]
        desk, ticket = self._ticket(caller, ticket_id)
        request = _parse(model, body)
        if client_key is not None and not CLIENT_KEY.match(client_key):
            raise ApiError(400, "Idempotency-Key: 1-100 printable ASCII characters without spaces")
        client_key = client_key or uuid.uuid4().hex  # returned with a 202: repeat with it to learn the result
        key = f"{kind.value}:{caller.user_id}:{client_key}"
        try:
            event = Event(kind=kind, idempotency_key=key, actor=caller.user_id, at=self.desks.clock(),
                          **request.model_dump(exclude_none=True))
        except ValidationError as exc:
            raise ApiError(400, _summary(exc)) from None
        result = apply(ticket, event, self.desks.rules.policy)
        if result.duplicate:
            return 200, ActionResult(result="duplicate", ticket=ticket)
        if result.rejected:
            raise ApiError(409, result.rejected)
        await self.desks.send(TicketCommand.of(ticket, event))
        desk = await self._until(desk.household_id,
                                 lambda d: d is not None and ticket_id in d.tickets and key in d.tickets[ticket_id].seen_keys)
        if desk is None:
            return 202, Pending(idempotency_key=client_key)
        return 200, ActionResult(result="applied", ticket=desk.tickets[ticket_id])

    # -- households -------------------------------------------------------------------------
    async def set_away(self, caller: User, query, body: bytes, household_id: str) -> tuple[int, Any]:
        self._household(caller, household_id)
        request = _parse(AwayRequest, body)
        now = self.desks.clock()
        # Without 'since' it starts now, so it must end later. With 'since' it may lie in the past: staff
        # record an absence after the fact (she was in hospital last week), which also explains replays.
        if request.until <= (request.since or now):
            raise ApiError(400, "until: must be after since (or, without since, in the future; to end away mode, DELETE it)")
        away = AwayMode(household_id=household_id, since=request.since, until=request.until, set_by=caller.user_id,
                        reason=request.reason or None, set_at=now)
        await self.desks.send_away(household_id, away)
        return await self._answer(household_id, lambda d: d is not None and d.away == away)

    async def end_away(self, caller: User, query, body: bytes, household_id: str) -> tuple[int, Any]:
        self._household(caller, household_id)
        await self.desks.send_away(household_id, None)
        return await self._answer(household_id, lambda d: d is not None and d.away is None)

    async def set_roster(self, caller: User, query, body: bytes, household_id: str) -> tuple[int, Any]:
        desk = self.desks.get(household_id)
        current = desk.roster if desk else None
        supervisor = current.staff.supervisor if current else None
        # The supervisor the roster names; a supervisor of the household's community (who may only keep it in
        # their communities); without roster or supervisor, the duty desk. Nobody else. Checked before the body
        # is read, so a stranger learns nothing from a 400.
        named = caller.user_id == (supervisor or self.duty_desk)
        oversees = caller.role is Role.SUPERVISOR and current is not None and current.community in caller.communities
        entry = _parse(RosterEntry, body) if caller.role in CARING_ROLES and (named or oversees) else None
        if entry is None or not (named or entry.community in caller.communities):
            raise ApiError(403, "only the household's supervisor may change its roster"
                                + ("" if supervisor else " (without one: the duty desk)"))
        try:
            household = entry.household(household_id, current)
        except ValidationError as exc:
            raise ApiError(400, _summary(exc)) from None
        await self.desks.send_roster(household)
        return await self._answer(household_id, lambda d: d is not None and d.roster == household)

    def ticket_for(self, caller: User, ticket_id: str) -> tuple[HouseholdDesk, Ticket]:
        """The ticket and its desk if ``caller`` may act on it; ApiError 404 or 403 otherwise. For a caller that
        must refuse a stranger before it reads anything else (the console's forms)."""
        return self._ticket(caller, ticket_id)

    # -- helpers ----------------------------------------------------------------------------
    def _household(self, caller: User, household_id: str) -> HouseholdDesk:
        desk = self.desks.get(household_id)
        if desk is None:
            raise ApiError(404, "unknown household")
        if not may_see(caller, desk):
            raise ApiError(403, "you do not look after this household")
        return desk

    def _ticket(self, caller: User, ticket_id: str) -> tuple[HouseholdDesk, Ticket]:
        household_id = ticket_id.split("/", 1)[0]
        desk = self.desks.get(household_id) if household_id else None
        ticket = desk.tickets.get(ticket_id) if desk else None
        if ticket is None:
            raise ApiError(404, "unknown ticket (its id URL-encoded: '/' as %2F)")
        if not may_see(caller, desk):
            raise ApiError(403, "you do not look after this household")
        return desk, ticket

    async def _household_view(self, desk: HouseholdDesk) -> HouseholdView:
        return HouseholdView(household_id=desk.household_id, roster=_roster(desk), away=desk.away,
                             tickets=_newest_first(desk.tickets.values()),
                             recent_usage=await self._usage(desk.household_id))

    async def _answer(self, household_id: str, done: Callable[[HouseholdDesk | None], bool]) -> tuple[int, Any]:
        desk = await self._until(household_id, done)
        return (202, Pending()) if desk is None else (200, await self._household_view(desk))

    async def _until(self, household_id: str, done: Callable[[HouseholdDesk | None], bool]) -> HouseholdDesk | None:
        """The desk once ``done(desk)``, polling; None after ``wait_s``."""
        deadline = time.monotonic() + self.wait_s
        while True:
            desk = self.desks.get(household_id)
            if done(desk):
                return desk
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(self.poll_s)

    async def _usage(self, household_id: str) -> dict | None:
        if self.recent_usage is None:
            return None
        try:
            usage = self.recent_usage(household_id)
            return await usage if inspect.isawaitable(usage) else usage
        except Exception as exc:  # the rest of the answer is still worth having
            log.warning("staff API: recent usage unavailable (%s)", type(exc).__name__)
            return None


def _roster(desk: HouseholdDesk) -> RosterEntry | None:
    return RosterEntry.of(desk.roster) if desk.roster else None


def _newest_first(tickets) -> list[TicketSummary]:
    return [TicketSummary.of(t) for t in sorted(tickets, key=lambda t: (t.opened_at, t.ticket_id), reverse=True)]


def _parse(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body.strip() or b"{}")
    except ValidationError as exc:
        raise ApiError(400, _summary(exc)) from None


def _summary(exc: ValidationError) -> str:
    """The first problems, by field; never the input values (they may be notes about a person)."""
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_input=False)[:3]]
    return "; ".join(parts) + (f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else "")


# -- registration --------------------------------------------------------------------------------

def handlers(api: StaffApi) -> dict[str, Callable]:
    """operation_id -> handler(caller, query, body, **path, client_key=...)."""
    table: dict[str, Callable] = {name: getattr(api, name) for name in (
        "list_tickets", "get_ticket", "get_household", "get_openapi", "set_away", "end_away", "set_roster")}
    for action in TICKET_ACTIONS:
        table[f"{action}_ticket"] = _bind_action(api, action)
    return table


def _bind_action(api: StaffApi, action: str) -> Callable:
    async def handler(caller, query, body, *, client_key=None, **path):
        return await api.ticket_action(action, caller, query, body, client_key=client_key, **path)
    return handler


def register_staff_api(app: faust.App, desks, settings: Settings, *,
                       recent_usage: RecentUsage | None = None, readiness=None) -> StaffApi:
    """Serve :data:`ROUTES` on ``app``'s web server; returns the handlers' object (for tests)."""
    api = StaffApi(desks, StaffAuth.from_settings(settings), duty_desk=settings.duty_desk,
                   recent_usage=recent_usage, readiness=readiness)
    api.forward = lambda url, request, body: _forward(app, url, request, body)
    api.peer_http = PeerHttp()  # the gather's and the console's worker-to-worker client (no cookie jar)
    api.fetch_desks = lambda url, credentials: fetch_desks(api.peer_http.session(), url, credentials)
    install_internal(app.web.web_app, api)
    app.web.web_app.on_cleanup.append(api.peer_http.close)
    table = handlers(api)
    wanted = {r.operation_id for r in ROUTES}
    if set(table) != wanted:
        raise RuntimeError(f"staff API handlers do not match ROUTES: missing {sorted(wanted - set(table))}, "
                           f"extra {sorted(set(table) - wanted)}")
    by_path: dict[str, list[Route]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, []).append(route)
    for path, routes in by_path.items():
        view = type(f"StaffApi_{routes[0].operation_id}", (View,),
                    {r.method.lower(): _method(api, r, table[r.operation_id]) for r in routes})
        app.page(path, name=f"staff-api:{path}")(view)
    return api


def install_internal(web_app, api: StaffApi) -> None:
    """``GET /internal/v1/desks`` (:meth:`StaffApi.internal_desks`) on an aiohttp application."""
    from aiohttp import web

    async def internal_desks(request):
        started = time.monotonic()
        try:
            status, answer = api.internal_desks(request.headers, request.cookies)
        except ApiError as exc:
            status, answer = exc.status, {"error": exc.message}
        except Exception:
            log.exception("staff API: internal-desks failed")
            status, answer = 500, {"error": "internal error"}
        log.info("staff API: internal-desks -> %s (%.0f ms)", status, 1000 * (time.monotonic() - started))
        return web.json_response(answer, status=status, headers={"Retry-After": "5"} if status == 503 else None)

    web_app.router.add_route("GET", INTERNAL_DESKS_PATH, internal_desks)


#: Operations that read every household the caller may see: gathered from every partition's worker.
LIST_OPERATIONS = frozenset({"list_tickets"})
FORWARDED = "X-Elderwatch-Forwarded"
MOVED = "several workers: the household's partition moved again while this request was forwarded (rebalancing)"


def owner_of(api: StaffApi, route: Route, path: dict, request) -> Any:
    """Where ``route`` can be answered (:mod:`streams.readiness`): None here, a ``Remote`` to forward to; a 503
    ApiError when it cannot be answered correctly now."""
    from streams.readiness import Unavailable

    readiness = api.readiness
    if readiness is None or not route.auth:  # one worker (unit tests); the OpenAPI document reads no table
        return None
    try:
        if route.operation_id in LIST_OPERATIONS:  # gathered from every partition's worker (gather_desks)
            readiness.ensure_recovered()
            return None
        household_id = path.get("household_id") or path.get("ticket_id", "").split("/", 1)[0]
        if not household_id:
            readiness.ensure_recovered()
            return None
        owner = readiness.owner(household_id)
    except Unavailable as exc:
        raise ApiError(503, exc.reason) from None
    if owner is not None and request.headers.get(FORWARDED):
        raise ApiError(503, MOVED)  # never forward twice: two workers that disagree would bounce it
    return owner


async def _forward(app: faust.App, url, request, body: bytes):
    """``request`` as sent to the worker at ``url``, its answer as ours (status, JSON body)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "x-staff-id",
                                                                          "idempotency-key", "content-type")}
    headers[FORWARDED] = "1"
    target = request.url.with_scheme(url.scheme or "http").with_host(url.host).with_port(url.port)
    try:
        async with app.http_client.request(method=request.method, url=target, headers=headers, data=body or None,
                                           allow_redirects=False, timeout=aiohttp.ClientTimeout(total=30)) as response:
            return response.status, await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        raise ApiError(503, f"several workers: the household's worker did not answer ({type(exc).__name__})") from None


def _method(api: StaffApi, route: Route, handler: Callable):
    async def method(self: View, request, **path):
        started = time.monotonic()
        try:
            owner = owner_of(api, route, path, request)
            if owner is not None:  # its partition is another worker's: that worker answers
                body = await request.read()
                status, answer = await api.forward(owner.url, request, body)
                log.info("staff API: %s -> %s (forwarded to the partition's worker, %.0f ms)", route.operation_id,
                         status, 1000 * (time.monotonic() - started))
                return self.json(answer, status=status)
            caller = api.auth.caller(request.headers) if route.auth else None
            if route.auth and caller is None:
                raise ApiError(401, "authentication required: Authorization: Bearer <token>"
                               if not api.auth.trusts_header else "authentication required: X-Staff-Id header")
            body = await request.read() if route.request else b""
            extra = {"client_key": request.headers.get("Idempotency-Key") or None} if route.idempotency_key else {}
            if route.operation_id in LIST_OPERATIONS:  # the caller's own credentials, for the other workers
                extra = {"credentials": {k: request.headers[k] for k in CREDENTIAL_HEADERS
                                         if k != "Cookie" and request.headers.get(k)},
                         "forwarded": bool(request.headers.get(FORWARDED))}
            status, answer = await handler(caller, request.query, body, **path, **extra)
        except ApiError as exc:
            status, answer = exc.status, ErrorBody(error=exc.message)
        except Exception:
            log.exception("staff API: %s failed", route.operation_id)
            status, answer = 500, ErrorBody(error="internal error")
        level = logging.WARNING if status >= 500 and status != 503 else logging.INFO  # 503: recovering, told why
        result = f" {answer.result}" if isinstance(answer, ActionResult) else ""
        log.log(level, "staff API: %s -> %s%s (%.0f ms)", route.operation_id, status, result,
                1000 * (time.monotonic() - started))
        payload = answer.model_dump(mode="json") if isinstance(answer, BaseModel) else answer
        return self.json(payload, status=status, headers={"Retry-After": "5"} if status == 503 else None)
    return method


__all__ = ["register_staff_api", "install_internal", "StaffApi", "StaffAuth", "ApiError", "handlers"]
