"""Scatter-gather of a list over several workers: every household the caller may see, from every partition.

With several workers the ``tickets-households`` table is split by partition (:mod:`streams.readiness`). A
list (the API's ``GET /api/v1/tickets``, the console's ticket list and supervisor page: everything that
reads :meth:`streams.staff_api.StaffApi.visible_desks`) is answered by the worker that receives it:

1. its own answer: the caller's visible desks of the partitions *active* here (with standby replicas the
   in-memory table also holds other workers' partitions, possibly behind: they are left out);
2. every other worker that holds active partitions (faust's ``app.router.table_metadata``) is asked for the
   caller's visible desks of its active partitions: ``GET`` :data:`INTERNAL_DESKS_PATH` with the caller's own
   credentials (``Authorization``, ``X-Staff-Id`` in development, or the console's session cookie) and
   ``X-Elderwatch-Forwarded``. The peer authenticates the caller itself, exactly as its API or console would,
   applies the same access rule, and answers ``{"partitions": [...], "caller": {...}, "desks": [...]}``;
3. :func:`merge`: each peer must report at least the partitions the assignor said it has, no partition may be
   answered twice, the partitions answered must be every partition of the table, and a household answered
   twice must be the same desk. Otherwise, and when a peer does not answer, answers 503 (recovering), 401
   (it does not know the caller's credentials: every worker needs the same users file and
   ``ELDERWATCH_SECRET_KEY``) or anything else: 503 with the reason, never a partial list.

A forwarded request is never gathered again, and the internal route never gathers: no loops.

Worker-to-worker requests (this gather, the console's forwarded pages) go through :class:`PeerHttp`, a client
that never keeps a cookie: the cookies it carries are callers' (a shared cookie jar would hand one person's
session or flash message to the next request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import aiohttp
from pydantic import ValidationError
from yarl import URL

from dispatch.desk import HouseholdDesk
from schemas.users import User
from streams.readiness import Unavailable

#: The internal route a worker asks its peers on (not part of the staff API's OpenAPI document).
INTERNAL_DESKS_PATH = "/internal/v1/desks"
#: The request headers that carry a caller's credentials to a peer.
CREDENTIAL_HEADERS = ("Authorization", "X-Staff-Id", "Cookie")

CREDENTIALS_REFUSED = ("several workers: worker {url} did not accept the caller's credentials (401): every worker "
                       "needs the same users file and the same ELDERWATCH_SECRET_KEY (console sessions)")
CALLER_DIFFERS = ("several workers: worker {url} knows the caller differently (role or communities): every worker "
                  "needs the same users file")
NO_ANSWER = "several workers: worker {url} did not answer the list's gather ({error})"
PEER_UNAVAILABLE = "several workers: worker {url} cannot answer now: {reason}"
PEER_STATUS = "several workers: worker {url} answered {status} to the list's gather"
NOT_DESKS = "several workers: worker {url} answered the list's gather with something else than desks"
PARTITIONS_GONE = "several workers: worker {url} no longer holds partitions {partitions} (rebalancing)"
ANSWERED_TWICE = "several workers: partitions {partitions} were answered by two workers (rebalancing)"
NOT_ANSWERED = "several workers: partitions {partitions} have no worker now (rebalancing)"
UNKNOWN_PARTITIONS = "several workers: partitions {partitions} are not the table's (rebalancing)"
HOUSEHOLD_TWICE = "several workers: two workers answered one household differently (rebalancing)"


@dataclass(frozen=True)
class PeerAnswer:
    """A peer's visible desks of the partitions active there."""

    partitions: tuple[int, ...]
    desks: tuple[HouseholdDesk, ...]


def caller_of(user: User) -> dict:
    """Who a peer took the caller for: compared with the gathering worker's own view."""
    return {"user_id": user.user_id, "role": user.role.value, "communities": sorted(user.communities)}


def internal_answer(partitions: Iterable[int], desks: Iterable[HouseholdDesk], user: User) -> dict:
    """The internal route's 200 body."""
    return {"partitions": sorted(partitions), "caller": caller_of(user),
            "desks": [desk.model_dump(mode="json") for desk in desks]}


def answer_of(url: str, status: int, body, user: User) -> PeerAnswer:
    """A peer's answer to :data:`INTERNAL_DESKS_PATH`; :class:`Unavailable` with the reason unless it is one."""
    if status == 401:
        raise Unavailable(CREDENTIALS_REFUSED.format(url=url))
    if status == 503:
        reason = body.get("error") if isinstance(body, dict) else None
        raise Unavailable(PEER_UNAVAILABLE.format(url=url, reason=reason or "no reason given"))
    if status != 200:
        raise Unavailable(PEER_STATUS.format(url=url, status=status))
    try:
        partitions = tuple(sorted({_partition(p) for p in body["partitions"]}))
        caller = body["caller"]
        desks = tuple(HouseholdDesk.model_validate(d) for d in body["desks"])
    except (KeyError, TypeError, ValueError, ValidationError):
        raise Unavailable(NOT_DESKS.format(url=url)) from None
    if caller != caller_of(user):
        raise Unavailable(CALLER_DIFFERS.format(url=url))
    return PeerAnswer(partitions=partitions, desks=desks)


def _partition(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("partition: expected an integer")
    return value


def merge(total: int, local: Sequence[int], local_desks: Iterable[HouseholdDesk],
          expected: Mapping[str, Sequence[int]], answers: Mapping[str, PeerAnswer]) -> list[HouseholdDesk]:
    """This worker's desks and its peers' as one list by household id, if together they answer every one of the
    table's ``total`` partitions exactly once; :class:`Unavailable` with the reason otherwise.

    ``local``: the partitions active here (``local_desks`` are theirs); ``expected``: {peer URL: the partitions
    the assignor says are active there}; ``answers``: {peer URL: its answer} for every peer of ``expected``."""
    answered: dict[int, str] = {p: "here" for p in local}
    twice: set[int] = set()
    for url in sorted(expected):
        answer = answers.get(url)
        if answer is None:
            raise Unavailable(NO_ANSWER.format(url=url, error="no answer"))
        gone = sorted(set(expected[url]) - set(answer.partitions))
        if gone:
            raise Unavailable(PARTITIONS_GONE.format(url=url, partitions=gone))
        for p in answer.partitions:
            if p in answered:
                twice.add(p)
            answered[p] = url
    if twice:
        raise Unavailable(ANSWERED_TWICE.format(partitions=sorted(twice)))
    unknown = sorted(set(answered) - set(range(total)))
    if unknown:
        raise Unavailable(UNKNOWN_PARTITIONS.format(partitions=unknown))
    missing = sorted(set(range(total)) - set(answered))
    if missing:
        raise Unavailable(NOT_ANSWERED.format(partitions=missing))
    desks: dict[str, HouseholdDesk] = {}
    for desk in chain(local_desks, *(answers[url].desks for url in sorted(expected))):
        seen = desks.get(desk.household_id)
        if seen is not None and seen != desk:
            raise Unavailable(HOUSEHOLD_TWICE)
        desks[desk.household_id] = desk
    return [desks[h] for h in sorted(desks)]


class PeerHttp:
    """The HTTP client of worker-to-worker requests: no cookie jar, a total timeout."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=self.timeout)
        return self._session

    async def close(self, *_args) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


async def fetch_desks(session: aiohttp.ClientSession, url: str, credentials: Mapping[str, str]) -> tuple[int, object]:
    """``GET url + INTERNAL_DESKS_PATH`` with the caller's credentials: (status, JSON body); :class:`Unavailable`
    when the peer does not answer (or not in JSON)."""
    from streams.staff_api import FORWARDED

    headers = {k: v for k, v in credentials.items() if k in CREDENTIAL_HEADERS and v}
    headers[FORWARDED] = "1"
    target = URL(str(url)).with_path(INTERNAL_DESKS_PATH)
    try:
        async with session.get(target, headers=headers, allow_redirects=False) as response:
            return response.status, await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        raise Unavailable(NO_ANSWER.format(url=url, error=type(exc).__name__)) from None


__all__ = ["INTERNAL_DESKS_PATH", "CREDENTIAL_HEADERS", "PeerAnswer", "PeerHttp", "answer_of", "caller_of",
           "fetch_desks", "internal_answer", "merge"]
