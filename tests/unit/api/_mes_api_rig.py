"""The app on one database (SQLite or PostgreSQL) with the users, the audit trail and the MES
(as a server runs it) and the small test plant; ``now`` is the MES rig's clock."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from andon.api import ApiContext, create_app
from andon.domain.users import Role
from andon.server.edge_registry import EdgeRegistry
from andon.server.live_tags import LiveTagTable
from andon.testing.auth import authenticated_client, user_service_for_tests
from andon.testing.memory_historian import InMemoryHistorianStore
from andon.testing.mes import MesRig

__all__ = ["MesApi"]


class MesApi:
    def __init__(self, url: str, **rig: Any) -> None:
        self.mes = MesRig(url, **rig)
        self.users = user_service_for_tests(url)
        self.app = create_app(
            ApiContext(
                live_tags=LiveTagTable(),
                history=InMemoryHistorianStore(),
                edges=EdgeRegistry(),
                health=lambda: {"database": {"ok": True}},
                metrics_text=lambda: b"",
                users=self.users,
                mes=self.mes.queries,
            )
        )
        # Every role's user made now, so that the audit trail holds no later user.created entries.
        self._clients = {role: authenticated_client(self.app, role) for role in Role}

    def client(self, role: Role) -> TestClient:
        return self._clients[role]

    def runs(self) -> list[dict[str, Any]]:
        response = self.client(Role.OPERATOR).get("/api/v1/runs")
        assert response.status_code == 200
        runs: list[dict[str, Any]] = response.json()
        return runs

    def audit(self, **params: str) -> list[dict[str, Any]]:
        response = self.client(Role.ADMIN).get("/api/v1/audit", params=params)
        assert response.status_code == 200
        entries: list[dict[str, Any]] = response.json()
        return entries

    def close(self) -> None:
        self.mes.close()
        self.users.repository.close()
