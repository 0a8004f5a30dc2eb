"""Users and roles as pure rules: the role order and what a valid username and password are."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from andon.domain.errors import DomainError

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "Role",
    "User",
    "validate_password",
    "validate_username",
]

#: Long enough that an 8-character word list guess is not the whole search space.
MIN_PASSWORD_LENGTH = 10
#: argon2 accepts anything, but an unbounded body would let one request burn CPU and memory.
MAX_PASSWORD_LENGTH = 1024
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Role(enum.Enum):
    """What a user may do; each role includes everything the roles before it may do."""

    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ENGINEER = "engineer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, required: Role) -> bool:
        """True when a user with this role may do what needs ``required``."""
        return self.rank >= required.rank

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank <= other.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise DomainError(f"unknown role {text!r} (one of: {names})") from None


_RANK = {role: index for index, role in enumerate(Role)}


@dataclass(frozen=True, slots=True)
class User:
    """A user as the rest of Andon sees it; the password hash stays in storage."""

    id: int
    username: str
    role: Role
    display_name: str
    disabled: bool
    created_at_ms: int


def validate_username(username: str) -> str:
    """The username, or a ``DomainError`` saying which rule it breaks.

    Lower case only, so ``Admin`` and ``admin`` can never be two accounts.
    """
    if not username:
        raise DomainError("username is empty")
    if len(username) > 64:
        raise DomainError("username is longer than 64 characters")
    if not _USERNAME.match(username):
        raise DomainError(
            f"invalid username {username!r}: use lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return username


def validate_password(password: str, username: str | None = None) -> str:
    """The password, or a ``DomainError`` (the message never repeats the password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DomainError(f"password is shorter than {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise DomainError(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password or not password.strip():
        raise DomainError("password starts or ends with white space")
    if username is not None and password.lower() == username.lower():
        raise DomainError("password equals the username")
    return password
