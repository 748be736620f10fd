"""Who may sign in, and as what: the records of the users file (``elderwatch users add``).

A user is a pseudonymous id with a role, never a name: staff ids are what the roster names.
Passwords and API tokens are kept only as hashes (argon2 for passwords, SHA-256 for tokens,
which are long random strings, so a fast hash is enough).

Roles, and what each may see:

* ``staff``: the households whose roster chain (or a ticket's chain) names them;
* ``supervisor``: those, and every household of their ``communities``;
* ``operator``: the service's health (dead letters by reason, lag, agents), no household;
* ``utility``: nothing to read; pushes readings for the households it serves (``utility_id``).

>>> u = User(user_id="w-1", role="staff")
>>> u.language, u.role
('zh', <Role.STAFF: 'staff'>)
>>> User(user_id="water-co", role="utility")
Traceback (most recent call last):
pydantic_core._pydantic_core.ValidationError: 1 validation error for User
  Value error, a utility user needs utility_id ...
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.households import StaffId

Community = Annotated[str, StringConstraints(min_length=1, max_length=64)]
UtilityId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Language = Literal["zh", "en"]


class Role(StrEnum):
    STAFF = "staff"
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    UTILITY = "utility"


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    user_id: StaffId
    role: Role
    communities: tuple[Community, ...] = Field(default=(), description="Supervisor: the communities they oversee.")
    utility_id: UtilityId | None = Field(default=None, description="Utility: the company it pushes readings for.")
    language: Language = Field(default="zh", description="The console's language for this user.")
    password_hash: str | None = Field(default=None, description="argon2id; none: this user cannot sign in.")
    token_hashes: tuple[str, ...] = Field(default=(), description="SHA-256 (hex) of the user's API tokens.")
    disabled: bool = False

    @model_validator(mode="after")
    def _fits_role(self) -> "User":
        if self.role is Role.UTILITY and self.utility_id is None:
            raise ValueError("a utility user needs utility_id (the company whose meters it reports)")
        if self.role is not Role.UTILITY and self.utility_id is not None:
            raise ValueError("only a utility user has a utility_id")
        if self.role is not Role.SUPERVISOR and self.communities:
            raise ValueError("only a supervisor has communities")
        return self


class UsersFile(BaseModel):
    """The users file: ``{"schema_version": 1, "users": [User, ...]}``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    users: list[User] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "UsersFile":
        seen: set[str] = set()
        for user in self.users:
            if user.user_id in seen:
                raise ValueError(f"user {user.user_id} listed twice")
            seen.add(user.user_id)
        return self


__all__ = ["Role", "User", "UsersFile", "Language"]
