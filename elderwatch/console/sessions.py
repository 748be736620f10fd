"""Console sessions: a signed cookie, revocation on sign-out, CSRF tokens and form idempotency keys.

The cookie holds ``{sid, uid, exp, lang}`` as base64url JSON and an HMAC-SHA256 of it under a key
derived from ``Settings.secret_key`` (development without one: a random key per start, so every
session ends with the worker). Nothing about the user but their pseudonymous id is in it, and the
user is looked up again on every request: a removed or disabled user is signed out at once.

* **Expiry**: 8 hours after sign-in, checked from the signed ``exp`` (the cookie's own Max-Age is
  only a hint to the browser).
* **Sign-out** revokes the session id in memory until its expiry, so a copied cookie stops working
  too (a restart forgets revocations, but with a random key also every session; with a configured
  key a revoked cookie would live until its expiry again: sessions are short for that reason).
* **CSRF**: every form carries ``HMAC(csrf key, session id)``; a POST without it is refused. The
  sign-in form, before any session, uses a random anonymous id from its own cookie.
* **Idempotency keys** for ticket actions are ``HMAC(session id, ticket, version, action)``: the same
  form sent twice, or the same button on a re-rendered list, is the same key (a duplicate, not a second
  action), while the next version of the ticket gets a new one.

>>> sessions = Sessions(b"k" * 32, clock=lambda: 1_000.0)
>>> session, cookie = sessions.issue("w-1", "zh")
>>> sessions.read(cookie) == session, session.expires - session.issued
(True, 28800.0)
>>> sessions.read(cookie[:-2] + "AA") is None                 # tampered
True
>>> sessions.check_csrf(session.sid, sessions.csrf_token(session.sid)), sessions.check_csrf(session.sid, "x")
(True, False)
>>> sessions.revoke(session); sessions.read(cookie) is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

#: A signed-in session lasts this long.
SESSION_SECONDS = 8 * 3600
SESSION_COOKIE = "ew_session"
ANONYMOUS_COOKIE = "ew_anon"  # the sign-in form's CSRF, before there is a session
FLASH_COOKIE = "ew_flash"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """``payload`` (JSON) signed with HMAC-SHA256: ``<base64url json>.<base64url mac>``."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, payload: dict) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{_b64(self._mac(body))}"

    def unsign(self, token: str | None) -> dict | None:
        """The payload, or None if ``token`` is not one this signer made (any change to it)."""
        if not token or token.count(".") != 1 or len(token) > 4096:
            return None
        body, mac = token.split(".")
        try:
            # compared as canonical text: base64's spare bits must not give one signature several spellings
            if not hmac.compare_digest(mac.encode("ascii"), _b64(self._mac(body)).encode("ascii")):
                return None
            payload = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        return payload if isinstance(payload, dict) else None

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()


def derive(secret: bytes, purpose: str) -> bytes:
    """One key per purpose, so a session signature is never a valid CSRF token or flash message."""
    return hmac.new(secret, f"elderwatch-console:{purpose}".encode(), hashlib.sha256).digest()


def secret_from(secret_key: str | None) -> bytes:
    """The configured key, or (development) a random one for this run."""
    return secret_key.encode() if secret_key else secrets.token_bytes(32)


@dataclass(frozen=True)
class Session:
    sid: str
    user_id: str
    issued: float
    expires: float
    language: str


class Sessions:
    """Issue, read and revoke console sessions; CSRF tokens and idempotency keys tied to them."""

    def __init__(self, secret: bytes, *, lifetime: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._cookies = Signer(derive(secret, "session"))
        self._flash = Signer(derive(secret, "flash"))
        self._csrf_key = derive(secret, "csrf")
        self._idem_key = derive(secret, "idempotency")
        self.lifetime, self.clock = lifetime, clock
        self._revoked: dict[str, float] = {}  # sid -> its expiry (forgotten after it)

    # -- sessions ------------------------------------------------------------------------------
    def issue(self, user_id: str, language: str) -> tuple[Session, str]:
        now = self.clock()
        session = Session(sid=secrets.token_urlsafe(18), user_id=user_id, issued=now, expires=now + self.lifetime,
                          language=language)
        return session, self.cookie(session)

    def cookie(self, session: Session) -> str:
        return self._cookies.sign({"sid": session.sid, "uid": session.user_id, "iat": session.issued,
                                   "exp": session.expires, "lang": session.language})

    def with_language(self, session: Session, language: str) -> tuple[Session, str]:
        """The same session (same id and expiry) in another language."""
        changed = replace(session, language=language)
        return changed, self.cookie(changed)

    def read(self, cookie: str | None) -> Session | None:
        """The session in ``cookie`` if it is ours, unexpired and not signed out."""
        payload = self._cookies.unsign(cookie)
        if payload is None:
            return None
        try:
            session = Session(sid=str(payload["sid"]), user_id=str(payload["uid"]), issued=float(payload["iat"]),
                              expires=float(payload["exp"]), language=str(payload["lang"]))
        except (KeyError, TypeError, ValueError):
            return None
        if self.clock() >= session.expires or session.sid in self._revoked:
            return None
        return session

    def revoke(self, session: Session) -> None:
        now = self.clock()
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[session.sid] = session.expires

    def remaining(self, session: Session) -> int:
        return max(0, round(session.expires - self.clock()))

    # -- CSRF and idempotency ------------------------------------------------------------------
    def csrf_token(self, sid: str) -> str:
        return _b64(hmac.new(self._csrf_key, sid.encode(), hashlib.sha256).digest())

    def check_csrf(self, sid: str | None, token: str | None) -> bool:
        if not sid or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf_token(sid).encode())

    def idempotency_key(self, sid: str, *parts: object) -> str:
        """A form's key: the same for the same session, ticket version and action."""
        message = "\x1f".join([sid, *map(str, parts)]).encode()
        return hmac.new(self._idem_key, message, hashlib.sha256).hexdigest()[:32]

    # -- flash messages (a short-lived signed cookie: the message survives the redirect) -------------
    def flash_cookie(self, kind: str, text: str) -> str:
        return self._flash.sign({"k": kind, "t": text[:400], "exp": self.clock() + 120})

    def read_flash(self, cookie: str | None) -> tuple[str, str] | None:
        payload = self._flash.unsign(cookie)
        if payload is None or not isinstance(payload.get("exp"), (int, float)) or payload["exp"] < self.clock():
            return None
        kind, text = payload.get("k"), payload.get("t")
        return (kind, text) if isinstance(kind, str) and isinstance(text, str) else None


__all__ = ["Sessions", "Session", "Signer", "derive", "secret_from", "SESSION_SECONDS", "SESSION_COOKIE",
           "ANONYMOUS_COOKIE", "FLASH_COOKIE"]
