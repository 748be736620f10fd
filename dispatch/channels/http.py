"""What the HTTP channels share: one POST with a timeout and no redirects, and the robots' ``errcode``.

A POST that fails to connect, times out or breaks off is an :class:`~dispatch.channels.base.Attempt`
(retryable), never an exception. WeCom's and DingTalk's robots answer HTTP 200 with
``{"errcode": 0, "errmsg": "ok"}``; a non-zero ``errcode`` says what went wrong, and only a few of
them (rate limits, a busy server) are worth trying again: :func:`robot_attempt`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from pydantic import SecretStr
from yarl import URL

from dispatch.channels.base import DELIVERED, REJECTED, RETRYABLE, Attempt, Channel, classify, parse_retry_after


@dataclass(frozen=True)
class Answer:
    """What an HTTP receiver answered (``body`` only where it was read)."""

    status: int
    retry_after: float | None = None
    body: bytes = b""


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL; else a ValueError that does not repeat it (a robot URL holds
    its key).

    >>> check_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k'
    >>> check_url("qyapi.weixin.qq.com/send?key=k")
    Traceback (most recent call last):
    ValueError: must be an absolute http(s) URL
    """
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an absolute http(s) URL")  # fail at start, not per message
    return url


def secret_url(value: SecretStr) -> SecretStr:
    """A config validator's check of a URL kept secret."""
    check_url(value.get_secret_value())
    return value


def robot_attempt(answer: Answer, *, retryable_errcodes: frozenset[int]) -> Attempt:
    """How a chat robot's answer ends a try: HTTP first (5xx, 408, 429 retryable; other non-2xx rejected), then
    the ``errcode`` of a 2xx answer (0 delivered; ``retryable_errcodes`` retryable; any other rejected). A 2xx
    answer without an ``errcode`` is not a robot's: rejected (the URL is wrong), not retried for ever.

    >>> codes = frozenset({45009, -1})
    >>> [robot_attempt(Answer(200, body=b), retryable_errcodes=codes).result
    ...  for b in (b'{"errcode":0,"errmsg":"ok"}', b'{"errcode":45009}', b'{"errcode":-1}', b'{"errcode":93000}')]
    ['delivered', 'retryable', 'retryable', 'rejected']
    >>> robot_attempt(Answer(200, body=b'{"errcode":93000,"errmsg":"invalid webhook url"}'), retryable_errcodes=codes)
    Attempt(result='rejected', detail='errcode 93000', retry_after=None, status=200)
    >>> [robot_attempt(Answer(s), retryable_errcodes=codes).result for s in (502, 429, 404)]
    ['retryable', 'retryable', 'rejected']
    >>> robot_attempt(Answer(200, body=b"<html>"), retryable_errcodes=codes).detail
    'HTTP 200 without an errcode'
    """
    if not 200 <= answer.status < 300:
        return Attempt(classify(answer.status), f"HTTP {answer.status}", answer.retry_after, answer.status)
    try:
        errcode = json.loads(answer.body)["errcode"]
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return Attempt(REJECTED, f"HTTP {answer.status} without an errcode", status=answer.status)
    if errcode == 0:
        return Attempt(DELIVERED, "errcode 0", status=answer.status)
    # errmsg is not kept: it may echo the request
    result = RETRYABLE if errcode in retryable_errcodes else REJECTED
    return Attempt(result, f"errcode {errcode}", answer.retry_after, answer.status)


class HttpChannel(Channel):
    """A channel that POSTs to an HTTP receiver; one aiohttp session, opened on first use."""

    def __init__(self, *, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str | URL, body: bytes, headers: dict[str, str], *,
                   read_body: bool = False) -> Answer | Attempt:
        """The receiver's answer, or a retryable :class:`Attempt` if there was none (refused, timed out, cut off)."""
        try:
            async with self._client().post(url, data=body, headers={"User-Agent": "elderwatch", **headers},
                                           timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                           allow_redirects=False) as response:
                return Answer(response.status, parse_retry_after(response.headers.get("Retry-After")),
                              await response.read() if read_body else b"")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return Attempt(RETRYABLE, type(exc).__name__)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session


def json_body(payload: dict) -> bytes:
    """UTF-8 JSON, Chinese as it is (not ``\\u`` escapes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


__all__ = ["Answer", "HttpChannel", "check_url", "json_body", "robot_attempt", "secret_url"]
