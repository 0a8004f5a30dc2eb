"""Logged-in clients for tests: users made directly through the service, tokens issued for them.

Tests use the cheapest argon2 parameters they can (``PasswordHashing.fast_for_tests``) where they
build the service themselves; against a running ``MesServer`` they log in like any client would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from andon.domain.users import Role
from andon.server.auth import UserService

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

__all__ = ["TEST_PASSWORD", "authenticated_client", "token_for", "user_service_for_tests"]

#: Password of every user these helpers create (tests only; long enough for the rules).
TEST_PASSWORD = "test-password-0123"


def token_for(users: UserService, role: Role = Role.ADMIN, username: str | None = None) -> str:
    """An API token of a user with ``role`` (created, named after the role, if missing)."""
    name = username or f"test-{role.value}"
    user = users.repository.get_user(name)
    if user is None:
        user = users.create_user("test", name, TEST_PASSWORD, role)
    return users.issue(user, "api").token


def authenticated_client(app: FastAPI, role: Role = Role.ADMIN) -> TestClient:
    """A TestClient of ``app`` that sends a bearer token of a user with ``role``."""
    from fastapi.testclient import TestClient

    token = token_for(app.state.context.users, role)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def user_service_for_tests(database_url: str) -> UserService:
    """A ``UserService`` on a migrated database, with the cheapest argon2 parameters."""
    from andon.server.auth import PasswordHashing
    from andon.storage.migrate import upgrade_database
    from andon.storage.users import UserRepository

    upgrade_database(database_url)
    return UserService(UserRepository(database_url), hashing=PasswordHashing.fast_for_tests())
