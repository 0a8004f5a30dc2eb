"""Users and their tokens in the database (SQLite and PostgreSQL).

Password hashing happens above this layer (``andon.server.auth``); the repository stores the
hash it is given and never sees a password. Tokens are the other way round: the repository
makes them, hands the plaintext back once, and keeps only its SHA-256.

Every change can name an ``actor``: then an audit entry (without the hash) is written in the same
transaction as the change, so there is never a change without its entry or the reverse.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from andon.domain.errors import DomainError
from andon.domain.users import Role, User
from andon.storage.audit import AuditLog
from andon.storage.engine import create_engine_for
from andon.storage.schema import api_token_table, app_user_table

__all__ = [
    "LAST_USED_RESOLUTION_MS",
    "StorageUnavailableError",
    "TokenKind",
    "UserRepository",
    "token_sha256",
]

TokenKind = Literal["api", "session"]
#: ``last_used_ms`` is written at most this often per token: one UPDATE per request would
#: turn every API read into a write.
LAST_USED_RESOLUTION_MS = 60_000


class StorageUnavailableError(RuntimeError):
    """The database could not be reached; callers may fall back to what they know."""


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _user(row: Any) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        role=Role(row["role"]),
        display_name=row["display_name"],
        disabled=bool(row["disabled"]),
        created_at_ms=row["created_at_ms"],
    )


def _public(user: User) -> dict[str, Any]:
    """What the audit trail records of a user: everything but the password hash."""
    return {
        "username": user.username,
        "role": user.role.value,
        "display_name": user.display_name,
        "disabled": user.disabled,
    }


class UserRepository:
    def __init__(
        self,
        engine: Engine | str | URL,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._owns_engine = not isinstance(engine, Engine)
        self.engine = engine if isinstance(engine, Engine) else create_engine_for(engine)
        self.audit = audit if audit is not None else AuditLog(self.engine, clock=clock)
        self._clock = clock

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- users ----------------------------------------------------------------------------------

    def count_users(self) -> int:
        with self.engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(app_user_table)
            return int(connection.execute(query).scalar_one())

    def add_user(
        self,
        username: str,
        password_hash: str,
        role: Role,
        display_name: str = "",
        *,
        actor: str | None = None,
        comment: str = "",
    ) -> User:
        """Create a user; ``DomainError`` when the name is taken."""
        values = {
            "username": username,
            "password_hash": password_hash,
            "role": role.value,
            "display_name": display_name or username,
            "disabled": False,
            "created_at_ms": self._clock(),
        }
        try:
            with self.engine.begin() as connection:
                new_id = connection.execute(
                    app_user_table.insert().values(**values).returning(app_user_table.c.id)
                ).scalar_one()
                user = User(
                    id=int(new_id),
                    username=username,
                    role=role,
                    display_name=str(values["display_name"]),
                    disabled=False,
                    created_at_ms=int(values["created_at_ms"]),
                )
                if actor is not None:
                    self.audit.record(
                        actor,
                        "user.created",
                        "user",
                        username,
                        None,
                        _public(user),
                        comment,
                        connection=connection,
                    )
        except sa.exc.IntegrityError as exc:
            raise DomainError(f"user {username!r} already exists") from exc
        return user

    def get_user(self, username: str) -> User | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    sa.select(app_user_table).where(app_user_table.c.username == username)
                )
                .mappings()
                .first()
            )
        return None if row is None else _user(row)

    def password_hash(self, username: str) -> tuple[User, str] | None:
        """The user and the stored hash, for a login check."""
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    sa.select(app_user_table).where(app_user_table.c.username == username)
                )
                .mappings()
                .first()
            )
        return None if row is None else (_user(row), str(row["password_hash"]))

    def list_users(self) -> list[User]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(app_user_table).order_by(app_user_table.c.username)
            ).mappings()
            return [_user(row) for row in rows]

    def set_password(
        self, username: str, password_hash: str, *, actor: str | None = None, comment: str = ""
    ) -> User:
        """Replace the hash; the user's tokens stay valid unless revoked (see ``revoke_all``)."""
        return self._update(
            username, {"password_hash": password_hash}, "user.password_changed", actor, comment
        )

    def set_role(
        self, username: str, role: Role, *, actor: str | None = None, comment: str = ""
    ) -> User:
        return self._update(username, {"role": role.value}, "user.role_changed", actor, comment)

    def disable(
        self, username: str, disabled: bool = True, *, actor: str | None = None, comment: str = ""
    ) -> User:
        """Disable (or re-enable) a user; a disabled user's tokens stop working at once."""
        action = "user.disabled" if disabled else "user.enabled"
        return self._update(username, {"disabled": disabled}, action, actor, comment)

    def _update(
        self,
        username: str,
        values: dict[str, Any],
        action: str,
        actor: str | None,
        comment: str,
    ) -> User:
        return self.apply_changes(username, [(action, values)], actor=actor, comment=comment)

    def apply_changes(
        self,
        username: str,
        changes: Sequence[tuple[str, dict[str, Any]]],
        *,
        actor: str | None = None,
        comment: str = "",
        revoke_tokens: bool = False,
    ) -> User:
        """Several changes of one user, each ``(audit action, column values)``, in one
        transaction with their audit entries (and, with ``revoke_tokens``, the deletion of the
        user's tokens): all of them or, on any error, none."""
        table = app_user_table
        with self.engine.begin() as connection:
            row = (
                connection.execute(sa.select(table).where(table.c.username == username))
                .mappings()
                .first()
            )
            if row is None:
                raise DomainError(f"no user {username!r}")
            after = _user(row)
            for action, values in changes:
                before = after
                connection.execute(table.update().where(table.c.id == before.id).values(**values))
                after_row = (
                    connection.execute(sa.select(table).where(table.c.id == before.id))
                    .mappings()
                    .one()
                )
                after = _user(after_row)
                if actor is not None:
                    self.audit.record(
                        actor,
                        action,
                        "user",
                        username,
                        _public(before),
                        _public(after),
                        comment,
                        connection=connection,
                    )
            if revoke_tokens:
                connection.execute(
                    api_token_table.delete().where(api_token_table.c.user_id == after.id)
                )
        return after

    # -- tokens ---------------------------------------------------------------------------------

    def issue_token(self, user: User, kind: TokenKind, ttl_ms: int) -> tuple[str, int]:
        """A new token for ``user`` and its expiry (epoch ms). Only its SHA-256 is stored."""
        if kind not in ("api", "session"):
            raise ValueError(f"unknown token kind {kind!r}")
        if ttl_ms <= 0:
            raise DomainError("token lifetime must be positive")
        token = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + ttl_ms
        with self.engine.begin() as connection:
            connection.execute(
                api_token_table.insert().values(
                    token_sha256=token_sha256(token),
                    user_id=user.id,
                    kind=kind,
                    created_at_ms=now,
                    expires_at_ms=expires,
                    last_used_ms=None,
                )
            )
        return token, expires

    def user_for_token(self, token: str) -> tuple[User, int] | None:
        """The user a valid token belongs to and the token's expiry; None when unknown,
        expired or the user is disabled. Raises ``StorageUnavailableError`` on a database fault.
        """
        tokens, users = api_token_table, app_user_table
        now = self._clock()
        query = (
            sa.select(
                users, tokens.c.id.label("token_id"), tokens.c.expires_at_ms, tokens.c.last_used_ms
            )
            .join(tokens, tokens.c.user_id == users.c.id)
            .where(tokens.c.token_sha256 == token_sha256(token))
        )
        try:
            with self.engine.connect() as connection:
                row = connection.execute(query).mappings().first()
                # End the read first: on SQLite a write begun inside a read transaction fails
                # at once ("database is locked", no busy wait) if another connection (the
                # historian writer) committed since the read began.
                connection.rollback()
                if row is None or row["expires_at_ms"] <= now or row["disabled"]:
                    return None
                last = row["last_used_ms"]
                if last is None or now - last >= LAST_USED_RESOLUTION_MS:
                    connection.execute(
                        tokens.update()
                        .where(tokens.c.id == row["token_id"])
                        .values(last_used_ms=now)
                    )
                    connection.commit()
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailableError(f"database unavailable: {exc.orig!r}") from exc
        return _user(row), int(row["expires_at_ms"])

    def revoke_token(self, token: str) -> bool:
        """Delete a token (logout); False when it did not exist."""
        with self.engine.begin() as connection:
            result = connection.execute(
                api_token_table.delete().where(
                    api_token_table.c.token_sha256 == token_sha256(token)
                )
            )
            return bool(result.rowcount)

    def revoke_all(self, username: str) -> int:
        """Delete every token of a user (after a password change); the number deleted."""
        user = self.get_user(username)
        if user is None:
            return 0
        with self.engine.begin() as connection:
            result = connection.execute(
                api_token_table.delete().where(api_token_table.c.user_id == user.id)
            )
            return int(result.rowcount)

    def purge_expired(self) -> int:
        """Delete expired tokens; they are refused anyway, this only keeps the table small."""
        with self.engine.begin() as connection:
            result = connection.execute(
                api_token_table.delete().where(api_token_table.c.expires_at_ms <= self._clock())
            )
            return int(result.rowcount)
