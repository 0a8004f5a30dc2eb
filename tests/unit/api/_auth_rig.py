"""The app with real logins on SQLite and in-memory plant data, for the auth and page tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from andon.api import ApiContext, create_app
from andon.domain.users import Role
from andon.server.auth import PasswordHashing, UserService
from andon.server.edge_registry import EdgeRegistry
from andon.server.live_tags import LiveTagTable
from andon.storage.migrate import upgrade_database
from andon.storage.users import UserRepository
from andon.testing.auth import token_for
from andon.testing.memory_historian import InMemoryHistorianStore

__all__ = ["SECRET", "AuthRig", "Clock"]

SECRET = "correct-horse-battery-staple"


class Clock:
    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.now


class AuthRig:
    def __init__(self, directory: Path, *, metrics_require_login: bool = False) -> None:
        url = f"sqlite:///{directory / 'users.db'}"
        upgrade_database(url)
        self.clock = Clock()
        # No token cache here: each request reaches the repository, whose clock the tests move.
        self.users = UserService(
            UserRepository(url, clock=self.clock),
            hashing=PasswordHashing.fast_for_tests(),
            token_cache_s=0.0,
        )
        self.app: FastAPI = create_app(
            ApiContext(
                live_tags=LiveTagTable(),
                history=InMemoryHistorianStore(),
                edges=EdgeRegistry(),
                health=lambda: {"database": {"ok": True}},
                metrics_text=lambda: b"# metrics\n",
                users=self.users,
                metrics_require_login=metrics_require_login,
            )
        )
        self.anon = TestClient(self.app, follow_redirects=False)

    def client(self, role: Role) -> TestClient:
        token = token_for(self.users, role)
        return TestClient(
            self.app, headers={"Authorization": f"Bearer {token}"}, follow_redirects=False
        )

    def login(self, username: str, password: str) -> Any:
        return self.anon.post(
            "/api/v1/auth/token", json={"username": username, "password": password}
        )
