"""Passwords, logins and tokens: the rules between the API/CLI and the user repository.

Passwords are hashed with argon2id (argon2-cffi, the reference implementation's binding); the
PHC string carries its parameters, so raising them later rehashes each user at their next login.

Brute force: after ``LoginThrottle.max_failures`` consecutive wrong passwords for one username,
that username is refused for ``lockout_s`` seconds -- even with the right password -- and a
success resets the count. The counter is per username (not per client address) because plant
clients often sit behind one NAT or proxy; a locked-out user's existing tokens keep working, so
an attacker can delay a login but not end a session. An unknown username costs the same argon2
verification as a known one, so timing does not tell which names exist.

Verified tokens are cached for ``token_cache_s`` (default 30 s): reads then cost no database
round trip, and users already logged in keep working through a database outage. Logout,
disabling a user, changing a role or a password clear the cache at once on this server; another
server of a cluster notices within ``token_cache_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from andon.domain.errors import DomainError
from andon.domain.users import Role, User, validate_password, validate_username
from andon.storage.users import StorageUnavailableError, TokenKind, UserRepository, token_sha256

__all__ = [
    "AuthError",
    "IssuedToken",
    "LoginThrottle",
    "PasswordHashing",
    "UserService",
]

log = logging.getLogger(__name__)


class PasswordHashing:
    """argon2id hash/verify/needs_rehash; the defaults are argon2-cffi's (RFC 9106 low-memory)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verified against when the username is unknown, so both paths cost the same.
        self._dummy = self._hasher.hash("andon-no-such-user")

    @classmethod
    def fast_for_tests(cls) -> PasswordHashing:
        """Minimal argon2 cost: tests create many users and must not spend seconds hashing."""
        return cls(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def burn(self, password: str) -> None:
        """Spend one verification's time without a user (unknown username)."""
        self.verify(self._dummy, password)


class AuthError(Exception):
    """A refused login; ``reason`` is 'invalid' or 'locked' (the message is safe to show)."""

    def __init__(self, reason: str, message: str, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class LoginThrottle:
    """Consecutive failures per username; a lockout after ``max_failures``. Bounded memory."""

    def __init__(
        self,
        max_failures: int = 5,
        lockout_s: float = 60.0,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        # username -> (consecutive failures, locked until)
        self._state: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def locked_for(self, username: str) -> float:
        """Seconds this username stays locked out (0 when it may try)."""
        with self._lock:
            _, until = self._state.get(username, (0, 0.0))
        return max(0.0, until - self._clock())

    def failed(self, username: str) -> None:
        with self._lock:
            count, until = self._state.pop(username, (0, 0.0))
            count += 1
            if count >= self.max_failures:
                until = self._clock() + self.lockout_s
                count = 0
            self._state[username] = (count, until)
            while len(self._state) > self._capacity:
                self._state.popitem(last=False)  # forget the oldest, never grow without bound

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._state.pop(username, None)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at_ms: int
    user: User


class UserService:
    def __init__(
        self,
        repository: UserRepository,
        *,
        hashing: PasswordHashing | None = None,
        throttle: LoginThrottle | None = None,
        session_ttl_ms: int = 12 * 3_600_000,
        token_ttl_ms: int = 90 * 86_400_000,
        token_cache_s: float = 30.0,
        cache_capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self.audit = repository.audit
        self.hashing = hashing or PasswordHashing()
        self.throttle = throttle or LoginThrottle()
        self.session_ttl_ms = session_ttl_ms
        self.token_ttl_ms = token_ttl_ms
        self._cache_s = token_cache_s
        self._cache_capacity = cache_capacity
        self._clock = clock
        self._cache_lock = threading.Lock()
        # sha256 of a token -> (user, token expiry ms, cached at)
        self._cache: OrderedDict[str, tuple[User, int, float]] = OrderedDict()

    # -- user administration (each change is audited with ``actor``) ---------------------------

    def create_user(
        self,
        actor: str,
        username: str,
        password: str,
        role: Role,
        display_name: str = "",
        comment: str = "",
    ) -> User:
        validate_username(username)
        validate_password(password, username)
        user = self.repository.add_user(
            username,
            self.hashing.hash(password),
            role,
            display_name,
            actor=actor,
            comment=comment,
        )
        log.info("user %s created with role %s by %s", username, role.value, actor)
        return user

    def change_password(self, actor: str, username: str, password: str, comment: str = "") -> User:
        """Set a new password and end every session and token of the user."""
        validate_password(password, username)
        user = self.repository.set_password(
            username, self.hashing.hash(password), actor=actor, comment=comment
        )
        self.repository.revoke_all(username)
        self._forget_user(username)
        log.info("password of user %s changed by %s", username, actor)
        return user

    def set_role(self, actor: str, username: str, role: Role, comment: str = "") -> User:
        user = self.repository.set_role(username, role, actor=actor, comment=comment)
        self._forget_user(username)
        log.info("role of user %s set to %s by %s", username, role.value, actor)
        return user

    def set_disabled(self, actor: str, username: str, disabled: bool, comment: str = "") -> User:
        if disabled and actor == username:
            raise DomainError("you cannot disable your own account")
        user = self.repository.disable(username, disabled, actor=actor, comment=comment)
        self._forget_user(username)
        log.info("user %s %s by %s", username, "disabled" if disabled else "enabled", actor)
        return user

    def update_user(
        self,
        actor: str,
        username: str,
        *,
        role: Role | None = None,
        disabled: bool | None = None,
        password: str | None = None,
        comment: str = "",
    ) -> User:
        """Change role, disabled and password together: everything is checked first, then
        applied in one transaction (each change audited), so a refused part changes nothing.
        A new password ends every session and token of the user, as ``change_password``."""
        if role is None and disabled is None and password is None:
            raise DomainError("nothing to change: give role, disabled or password")
        if disabled and actor == username:
            raise DomainError("you cannot disable your own account")
        if password is not None:
            validate_password(password, username)
        changes: list[tuple[str, dict[str, object]]] = []
        if role is not None:
            changes.append(("user.role_changed", {"role": role.value}))
        if disabled is not None:
            changes.append(
                ("user.disabled" if disabled else "user.enabled", {"disabled": disabled})
            )
        if password is not None:
            changes.append(
                ("user.password_changed", {"password_hash": self.hashing.hash(password)})
            )
        user = self.repository.apply_changes(
            username, changes, actor=actor, comment=comment, revoke_tokens=password is not None
        )
        self._forget_user(username)
        log.info("user %s changed by %s: %s", username, actor, ", ".join(a for a, _ in changes))
        return user

    def ensure_initial_admin(self, password: str) -> bool:
        """Create ``admin`` with ``password`` if there is no user at all (first container start)."""
        if self.repository.count_users() > 0:
            return False
        try:
            self.create_user(
                "system", "admin", password, Role.ADMIN, "Administrator", "initial_admin_password"
            )
        except DomainError as exc:
            if "already exists" in str(exc):  # another node created it first
                return False
            raise
        return True

    # -- login and tokens -----------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> User:
        """The user if the password is right; ``AuthError`` otherwise (never says which part)."""
        name = username.strip().lower()
        locked = self.throttle.locked_for(name)
        if locked > 0:
            log.warning("login of %s refused: locked out after repeated failures", name)
            raise AuthError("locked", "too many failed logins; try again later", int(locked) + 1)
        found = self.repository.password_hash(name) if name else None
        if found is None:
            self.hashing.burn(password)
            ok = False
        else:
            user, stored = found
            ok = self.hashing.verify(stored, password) and not user.disabled
        if not ok or found is None:
            self.throttle.failed(name)
            log.warning("failed login for %r", name)
            raise AuthError("invalid", "wrong username or password, or the user is disabled")
        self.throttle.succeeded(name)
        if self.hashing.needs_rehash(stored):
            self.repository.set_password(name, self.hashing.hash(password))
        return user

    def login(self, username: str, password: str, kind: TokenKind = "api") -> IssuedToken:
        user = self.authenticate(username, password)
        return self.issue(user, kind)

    def issue(self, user: User, kind: TokenKind, ttl_ms: int | None = None) -> IssuedToken:
        if ttl_ms is None:
            ttl_ms = self.session_ttl_ms if kind == "session" else self.token_ttl_ms
        token, expires = self.repository.issue_token(user, kind, ttl_ms)
        log.info("%s token issued for %s", kind, user.username)
        return IssuedToken(token, expires, user)

    def user_for_token(self, token: str, now_ms: int) -> User | None:
        """The user of a valid token; cached (see the module docstring)."""
        key = token_sha256(token)
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None:
            user, expires, at = cached
            if expires <= now_ms:
                self._forget(key)
                return None
            if self._clock() - at < self._cache_s:
                return user
        try:
            found = self.repository.user_for_token(token)
        except StorageUnavailableError:
            if cached is not None:  # known good and not expired: keep working meanwhile
                return cached[0]
            raise
        if found is None:
            self._forget(key)
            return None
        user, expires = found
        with self._cache_lock:
            self._cache[key] = (user, expires, self._clock())
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_capacity:
                self._cache.popitem(last=False)
        return user

    def logout(self, token: str) -> None:
        self._forget(token_sha256(token))
        self.repository.revoke_token(token)

    def _forget(self, key: str) -> None:
        with self._cache_lock:
            self._cache.pop(key, None)

    def _forget_user(self, username: str) -> None:
        with self._cache_lock:
            for key in [k for k, v in self._cache.items() if v[0].username == username]:
                del self._cache[key]
