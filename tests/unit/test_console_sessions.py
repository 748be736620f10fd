"""Console sessions (``elderwatch/console/sessions.py``): signing, expiry, tampering, sign-out, CSRF, keys."""

from __future__ import annotations

import base64
import json

import pytest

from elderwatch.console.sessions import SESSION_SECONDS, Sessions, Signer, derive


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(clock) -> Sessions:
    return Sessions(b"a secret key of thirty-two bytes", clock=clock)


def test_a_session_reads_back_until_it_expires_after_eight_hours(sessions, clock):
    session, cookie = sessions.issue("w-1", "zh")
    assert sessions.read(cookie) == session and session.user_id == "w-1" and session.language == "zh"
    assert session.expires - session.issued == SESSION_SECONDS == 8 * 3600
    clock.t += SESSION_SECONDS - 1
    assert sessions.read(cookie) == session
    clock.t += 1
    assert sessions.read(cookie) is None


@pytest.mark.parametrize("tamper", [
    lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),           # the signature
    lambda c: "x" + c[1:],                                         # the payload
    lambda c: c.split(".")[0],                                     # no signature
    lambda c: c + ".more",                                         # extra part
    lambda c: "",
    lambda c: "not even base64!.???",
])
def test_a_changed_cookie_is_refused(sessions, tamper):
    _, cookie = sessions.issue("w-1", "en")
    assert sessions.read(tamper(cookie)) is None


def test_a_payload_changed_and_re_encoded_is_refused(sessions):
    """Becoming someone else (or living longer) needs the key."""
    _, cookie = sessions.issue("w-1", "en")
    body, mac = cookie.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for change in ({"uid": "s-1"}, {"exp": payload["exp"] + 3600}):
        forged = base64.urlsafe_b64encode(json.dumps({**payload, **change}).encode()).rstrip(b"=").decode()
        assert sessions.read(f"{forged}.{mac}") is None


def test_another_key_or_purpose_does_not_verify(sessions, clock):
    _, cookie = sessions.issue("w-1", "en")
    assert Sessions(b"another secret key, same length!", clock=clock).read(cookie) is None
    # a flash message signed with the same secret is not a session (one key per purpose)
    flash = sessions.flash_cookie("ok", "hello")
    assert sessions.read(flash) is None and sessions.read_flash(flash) == ("ok", "hello")
    assert Signer(derive(b"k", "session")).unsign(Signer(derive(b"k", "flash")).sign({"a": 1})) is None


def test_sign_out_revokes_the_session_even_for_a_copied_cookie(sessions, clock):
    session, cookie = sessions.issue("w-1", "zh")
    other, other_cookie = sessions.issue("w-1", "zh")  # the same person on another phone
    sessions.revoke(session)
    assert sessions.read(cookie) is None and sessions.read(other_cookie) == other
    clock.t += SESSION_SECONDS + 1
    sessions.revoke(other)  # expired revocations are forgotten: the list stays small
    assert list(sessions._revoked) == [other.sid]


def test_the_language_changes_keep_the_session_and_its_expiry(sessions):
    session, _ = sessions.issue("w-1", "zh")
    changed, cookie = sessions.with_language(session, "en")
    read = sessions.read(cookie)
    assert (read.sid, read.expires, read.language) == (session.sid, session.expires, "en")


def test_csrf_token_is_bound_to_its_session(sessions):
    a, _ = sessions.issue("w-1", "zh")
    b, _ = sessions.issue("w-1", "zh")
    token = sessions.csrf_token(a.sid)
    assert sessions.check_csrf(a.sid, token)
    assert not sessions.check_csrf(b.sid, token)
    assert not sessions.check_csrf(a.sid, "")
    assert not sessions.check_csrf(a.sid, None)
    assert not sessions.check_csrf(None, token)
    assert token not in sessions.cookie(a)  # not derivable from what the cookie shows


def test_idempotency_keys_repeat_for_the_same_form_only(sessions):
    a, _ = sessions.issue("w-1", "zh")
    b, _ = sessions.issue("w-1", "zh")
    key = sessions.idempotency_key(a.sid, "hh-1/inactivity/x", 3, "acknowledge")
    assert key == sessions.idempotency_key(a.sid, "hh-1/inactivity/x", 3, "acknowledge")  # a double tap
    assert len({key, sessions.idempotency_key(a.sid, "hh-1/inactivity/x", 4, "acknowledge"),
                sessions.idempotency_key(a.sid, "hh-1/inactivity/x", 3, "handle"),
                sessions.idempotency_key(b.sid, "hh-1/inactivity/x", 3, "acknowledge")}) == 4
    assert len(key) == 32 and key.isalnum()  # within the API's Idempotency-Key rule


def test_flash_messages_expire(sessions, clock):
    cookie = sessions.flash_cookie("error", "x" * 1000)
    kind, text = sessions.read_flash(cookie)
    assert kind == "error" and len(text) == 400
    clock.t += 121
    assert sessions.read_flash(cookie) is None
