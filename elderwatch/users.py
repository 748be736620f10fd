"""The users file: sign-in and API tokens for staff, supervisors, operators and utilities.

``elderwatch users add w-1 --role staff`` asks for a password (or reads it from stdin with
``--password-stdin``) and writes the file given by ``ELDERWATCH_USERS_FILE``; ``elderwatch users
token water-co`` prints a new API token once (only its hash is kept). The worker re-reads the file
when it changes, so a new user can sign in without a restart.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).
Checking a password for an unknown user still runs one argon2 verification, so the answer's
time does not tell which user ids exist.

>>> import tempfile, pathlib
>>> store = UserStore(pathlib.Path(tempfile.mkdtemp()) / "users.json")
>>> store.add(User(user_id="w-1", role="staff", language="en"), password="correct horse battery")
>>> store.check_password("w-1", "correct horse battery").user_id, store.check_password("w-1", "wrong")
('w-1', None)
>>> token = store.issue_token("w-1")
>>> store.by_token(token).user_id, store.by_token("not-a-token")
('w-1', None)
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import ValidationError

from schemas.users import Role, User, UsersFile

MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verified against when the user does not exist, so unknown and known ids take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class UsersError(ValueError):
    """The users file cannot be read, or a change to it is refused; the message says why in one line."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    """The users of one file, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        self._by_token: dict[str, str] = {}

    # -- reading -----------------------------------------------------------------------------
    def users(self) -> list[User]:
        self._refresh()
        return list(self._users.values())

    def get(self, user_id: str) -> User | None:
        self._refresh()
        user = self._users.get(user_id)
        return None if user is None or user.disabled else user

    def check_password(self, user_id: str, password: str) -> User | None:
        """The user if ``password`` is theirs (and they may sign in), else None."""
        self._refresh()
        user = self._users.get(user_id)
        stored = user.password_hash if user is not None and not user.disabled else None
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user if stored else None

    def by_token(self, token: str) -> User | None:
        self._refresh()
        user_id = self._by_token.get(token_hash(token.strip())) if token else None
        return self.get(user_id) if user_id else None

    # -- writing (the `elderwatch users` command) ---------------------------------------------
    def add(self, user: User, *, password: str | None = None, replace: bool = False) -> None:
        with self._lock:
            current = self._read()
            if user.user_id in current and not replace:
                raise UsersError(f"user {user.user_id} exists (use --replace to change it)")
            if password is not None:
                check_password_strength(password)
                user = user.model_copy(update={"password_hash": _hasher.hash(password)})
            elif user.user_id in current and user.password_hash is None:
                user = user.model_copy(update={"password_hash": current[user.user_id].password_hash})
            if user.user_id in current and not user.token_hashes:
                user = user.model_copy(update={"token_hashes": current[user.user_id].token_hashes})
            current[user.user_id] = user
            self._write(current)

    def remove(self, user_id: str) -> None:
        with self._lock:
            current = self._read()
            if current.pop(user_id, None) is None:
                raise UsersError(f"no user {user_id}")
            self._write(current)

    def issue_token(self, user_id: str) -> str:
        """A new API token for ``user_id`` (returned once; only its hash is stored)."""
        with self._lock:
            current = self._read()
            if user_id not in current:
                raise UsersError(f"no user {user_id}")
            token = secrets.token_urlsafe(32)
            user = current[user_id]
            current[user_id] = user.model_copy(update={"token_hashes": (*user.token_hashes, token_hash(token))})
            self._write(current)
            return token

    # -- file --------------------------------------------------------------------------------
    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp and (stamp is not None or not self._users):
            return
        with self._lock:
            users = self._read() if stamp is not None else {}
            self._users = users
            self._by_token = {h: u.user_id for u in users.values() for h in u.token_hashes}
            self._stamp = stamp

    def _read(self) -> dict[str, User]:
        if not self.path.exists():
            return {}
        try:
            parsed = UsersFile.model_validate_json(self.path.read_bytes())
        except ValidationError as exc:  # where and what, never the value (it may be a hash)
            error = exc.errors(include_input=False)[0]
            where = ".".join(map(str, error["loc"])) or "file"
            raise UsersError(f"{self.path}: not a users file ({where}: {error['msg']})") from None
        return {u.user_id: u for u in parsed.users}

    def _write(self, users: dict[str, User]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = UsersFile(users=sorted(users.values(), key=lambda u: u.user_id)).model_dump_json(indent=2)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # hashes only, still nobody else's business
        with os.fdopen(fd, "w") as handle:
            handle.write(body + "\n")
        os.replace(tmp, self.path)
        self._stamp = None  # the next read sees this write even within the same mtime tick


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


__all__ = ["UserStore", "UsersError", "User", "Role", "token_hash", "check_password_strength", "MIN_PASSWORD_LENGTH"]
