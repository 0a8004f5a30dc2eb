"""``GET /api/v1/enterprise/sites`` and ``/records``: the sites' records as the enterprise holds
them, paged by version; 503 on a server that keeps none; bad parameters are 422."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from andon.api import ApiContext, create_app
from andon.domain.users import Role
from andon.server.auth import PasswordHashing, UserService
from andon.server.edge_registry import EdgeRegistry
from andon.server.live_tags import LiveTagTable
from andon.storage.enterprise import EnterpriseRepository, OutboxMessage
from andon.storage.migrate import upgrade_database
from andon.storage.users import UserRepository
from andon.testing.auth import token_for
from andon.testing.memory_historian import InMemoryHistorianStore


def _client(tmp_path: Path, enterprise: EnterpriseRepository | None) -> TestClient:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    upgrade_database(url)
    users = UserService(UserRepository(url), hashing=PasswordHashing.fast_for_tests())
    app = create_app(
        ApiContext(
            live_tags=LiveTagTable(),
            history=InMemoryHistorianStore(),
            edges=EdgeRegistry(),
            health=lambda: {},
            metrics_text=lambda: b"",
            users=users,
            enterprise=enterprise,
        )
    )
    token = token_for(users, Role.OPERATOR)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def _run(version: int, run_id: str, *, site: str = "North", deleted: bool = False) -> OutboxMessage:
    record = None if deleted else {"id": run_id, "start_ms": version}
    return OutboxMessage(site, "run", json.dumps([run_id]), version, deleted, record, 1_000)


def test_sites_and_records_paged_by_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'enterprise.db'}"
    upgrade_database(url)
    repository = EnterpriseRepository(url, clock=lambda: 2_000)
    repository.apply([_run(1, "A"), _run(2, "B"), _run(3, "A", deleted=True)])
    repository.apply([OutboxMessage("North", "order", '["PO1"]', 4, False, {"id": "PO1"}, 1)])
    repository.apply([_run(9, "X", site="South")])
    client = _client(tmp_path, repository)

    sites = client.get("/api/v1/enterprise/sites").json()["sites"]
    assert [s["site"] for s in sites] == ["North", "South"]
    north = sites[0]
    assert (north["records"], north["deleted"], north["last_version"]) == (2, 1, 4)
    assert north["by_kind"] == {"order": 1, "run": 1}
    assert (north["last_received_ms"], north["last_received"]) == (
        2_000,
        "1970-01-01T00:00:02.000+00:00",
    )

    page = client.get("/api/v1/enterprise/records", params={"site": "North", "limit": 2}).json()
    assert [(r["key"], r["version"]) for r in page["records"]] == [
        ('run:["B"]', 2),
        ('run:["A"]', 3),
    ]
    assert page["records"][1]["deleted"] is True
    assert page["records"][1]["record"] is None
    assert page["records"][0]["record"] == {"id": "B", "start_ms": 2}
    rest = client.get(
        "/api/v1/enterprise/records",
        params={"site": "North", "since_version": page["next_since_version"]},
    ).json()
    assert [r["key"] for r in rest["records"]] == ['order:["PO1"]']
    assert rest["next_since_version"] == 4
    runs = client.get("/api/v1/enterprise/records", params={"site": "North", "kind": "order"})
    assert [r["version"] for r in runs.json()["records"]] == [4]
    repository.close()


def test_bad_parameters_are_422_and_no_enterprise_is_503(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'enterprise.db'}"
    upgrade_database(url)
    repository = EnterpriseRepository(url)
    client = _client(tmp_path, repository)
    assert client.get("/api/v1/enterprise/records").status_code == 422  # site is required
    for params in ({"site": "N", "since_version": -1}, {"site": "N", "limit": 0}):
        assert client.get("/api/v1/enterprise/records", params=params).status_code == 422
    repository.close()
    (tmp_path / "bare").mkdir()
    bare = _client(tmp_path / "bare", None)
    response = bare.get("/api/v1/enterprise/sites")
    assert response.status_code == 503
    assert "[enterprise] enabled" in response.json()["detail"]
