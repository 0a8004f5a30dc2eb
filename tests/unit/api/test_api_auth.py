"""Logins, roles and the audit trail through the API and the pages (FastAPI TestClient).

The 401 and 403 checks walk the app's routes, so an endpoint added later is covered without
touching this file: every /api/v1 route but the open ones must refuse an anonymous caller, and
every route whose dependencies carry a ``RoleRequirement`` must refuse each lower role.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _auth_rig import SECRET, AuthRig
from fastapi import FastAPI
from fastapi.testclient import TestClient

from andon.api.app import OPEN_PATHS
from andon.domain.users import Role
from andon.server.auth import UserService
from andon.storage.users import StorageUnavailableError
from andon.testing.auth import TEST_PASSWORD


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[AuthRig]:
    rig = AuthRig(tmp_path)
    rig.users.create_user("root", "alice", SECRET, Role.SUPERVISOR, "Alice")
    yield rig
    rig.users.repository.close()


#: The role each /api/v1 endpoint needs (None: open). A new endpoint fails
#: ``test_every_endpoint_is_classified`` until it is added here, so none escapes the checks.
REQUIRED_ROLE: dict[tuple[str, str], Role | None] = {
    ("GET", "/api/v1/health"): None,
    ("POST", "/api/v1/auth/token"): None,
    ("GET", "/api/v1/auth/me"): Role.OPERATOR,
    ("POST", "/api/v1/auth/logout"): Role.OPERATOR,
    ("GET", "/api/v1/tags"): Role.OPERATOR,
    ("GET", "/api/v1/tags/history"): Role.OPERATOR,
    ("POST", "/api/v1/tags/write"): Role.ENGINEER,
    ("GET", "/api/v1/edges"): Role.OPERATOR,
    ("GET", "/api/v1/audit"): Role.SUPERVISOR,
    ("GET", "/api/v1/users"): Role.ADMIN,
    ("POST", "/api/v1/users"): Role.ADMIN,
    ("PATCH", "/api/v1/users/{username}"): Role.ADMIN,
    ("GET", "/api/v1/assets"): Role.OPERATOR,
    ("GET", "/api/v1/assets/{path}/states"): Role.OPERATOR,
    ("GET", "/api/v1/oee"): Role.OPERATOR,
    ("GET", "/api/v1/downtime/pareto"): Role.OPERATOR,
    ("GET", "/api/v1/runs"): Role.OPERATOR,
    ("POST", "/api/v1/runs"): Role.OPERATOR,  # explicit times: supervisor (checked inside)
    ("POST", "/api/v1/runs/{run_id}/end"): Role.OPERATOR,  # explicit end: supervisor
    ("PATCH", "/api/v1/runs/{run_id}"): Role.SUPERVISOR,
    ("DELETE", "/api/v1/runs/{run_id}"): Role.SUPERVISOR,
    ("POST", "/api/v1/runs/{run_id}/revert"): Role.SUPERVISOR,
    ("PUT", "/api/v1/assets/{path}/states/{start_ms}/reason"): Role.OPERATOR,
    ("POST", "/api/v1/assets/{path}/states/{start_ms}/split"): Role.SUPERVISOR,
    ("POST", "/api/v1/assets/{path}/states/{start_ms}/revert"): Role.SUPERVISOR,
    ("POST", "/api/v1/assets/{path}/states"): Role.SUPERVISOR,  # add a missed stop
    ("GET", "/api/v1/assets/{path}/counts"): Role.OPERATOR,
    ("GET", "/api/v1/assets/{path}/counts/edits"): Role.OPERATOR,
    ("POST", "/api/v1/assets/{path}/counts/edits"): Role.SUPERVISOR,
    ("POST", "/api/v1/count-edits/{edit_id}/revert"): Role.SUPERVISOR,
    ("GET", "/api/v1/export/{kind}"): Role.OPERATOR,
    ("GET", "/api/v1/live"): Role.OPERATOR,  # server-sent events; 503 without a live hub
    ("GET", "/api/v1/cluster"): Role.OPERATOR,  # nodes, domains, leases, lag (redundancy)
    ("GET", "/api/v1/enterprise/sites"): Role.OPERATOR,  # 503 unless [enterprise] enabled
    ("GET", "/api/v1/enterprise/records"): Role.OPERATOR,
    ("PUT", "/api/v1/assets/{path}/mode"): Role.OPERATOR,
    ("GET", "/api/v1/schedule"): Role.OPERATOR,
    ("POST", "/api/v1/schedule"): Role.SUPERVISOR,
    ("PATCH", "/api/v1/schedule/{run_id}"): Role.SUPERVISOR,
    ("DELETE", "/api/v1/schedule/{run_id}"): Role.SUPERVISOR,
    ("POST", "/api/v1/schedule/{run_id}/revert"): Role.SUPERVISOR,
    ("GET", "/api/v1/admin/plant"): Role.ADMIN,  # 503 without a plant file
    ("PUT", "/api/v1/admin/plant"): Role.ADMIN,
}

#: Writes an operator may make: the shop-floor actions at the current time (start or end a run,
#: give a stop its reason). Every other write needs a higher role.
OPERATOR_WRITES = frozenset(
    {
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/runs"),
        ("POST", "/api/v1/runs/{run_id}/end"),
        ("PUT", "/api/v1/assets/{path}/states/{start_ms}/reason"),
        ("PUT", "/api/v1/assets/{path}/mode"),
    }
)


def _api_endpoints(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) under /api/v1, from the app's own OpenAPI document."""
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1")
        for method in operations
    }


def _url(path: str) -> str:
    """A concrete URL: the existing user for {username}, a placeholder for other parameters."""
    return re.sub(r"\{(\w+)\}", lambda m: "alice" if m[1] == "username" else "x", path)


# -- 401 and 403 on every endpoint ------------------------------------------------------------


def test_every_endpoint_is_classified(rig: AuthRig) -> None:
    assert _api_endpoints(rig.app) == set(REQUIRED_ROLE)
    assert {p for (_, p), role in REQUIRED_ROLE.items() if role is None} == OPEN_PATHS


def test_every_api_endpoint_but_health_and_login_needs_a_login(rig: AuthRig) -> None:
    protected = [(m, _url(p)) for m, p in _api_endpoints(rig.app) if p not in OPEN_PATHS]
    assert len(protected) >= 9
    bogus = TestClient(rig.app, headers={"Authorization": "Bearer not-a-token"})
    for method, path in protected:
        response = rig.anon.request(method, path, json={})
        assert response.status_code == 401, f"{method} {path} -> {response.status_code}"
        assert response.headers["www-authenticate"] == "Bearer", f"{method} {path}"
        assert bogus.request(method, path, json={}).status_code == 401, f"{method} {path}"
    assert rig.anon.get("/api/v1/health").status_code == 200


def test_every_endpoint_refuses_lower_roles_with_403(rig: AuthRig) -> None:
    checked = 0
    for (method, path), required in sorted(REQUIRED_ROLE.items(), key=str):
        if required is None:
            continue
        for role in Role:
            response = rig.client(role).request(method, _url(path), json={})
            if role.allows(required):
                assert response.status_code not in (401, 403), f"{role.value}: {method} {path}"
            else:
                assert response.status_code == 403, f"{role.value}: {method} {path}"
                assert f"needs role {required.value}" in response.json()["detail"]
                checked += 1
    assert checked >= 10


def test_every_write_needs_a_role_above_login_except_operator_writes() -> None:
    for (method, path), required in REQUIRED_ROLE.items():
        if method != "GET" and path not in OPEN_PATHS and (method, path) not in OPERATOR_WRITES:
            assert required is not None
            assert required > Role.OPERATOR, f"{method} {path}"


def test_reads_need_any_role(rig: AuthRig) -> None:
    operator = rig.client(Role.OPERATOR)
    for path in ("/api/v1/tags", "/api/v1/edges", "/api/v1/auth/me"):
        assert operator.get(path).status_code == 200, path
    assert rig.client(Role.SUPERVISOR).get("/api/v1/audit").status_code == 200


def test_metrics_is_open_unless_configured(rig: AuthRig, tmp_path: Path) -> None:
    assert rig.anon.get("/metrics").status_code == 200
    strict_dir = tmp_path / "strict"
    strict_dir.mkdir()
    strict = AuthRig(strict_dir, metrics_require_login=True)
    assert strict.anon.get("/metrics").status_code == 401
    assert strict.client(Role.OPERATOR).get("/metrics").status_code == 200


# -- tokens -----------------------------------------------------------------------------------


def test_token_login_me_and_logout(rig: AuthRig) -> None:
    response = rig.login("alice", SECRET)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["role"] == "supervisor"
    assert body["expires_at"].endswith("+00:00")
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    me = rig.anon.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["display_name"] == "Alice"
    assert rig.anon.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert rig.anon.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_token_login_accepts_the_oauth2_form(rig: AuthRig) -> None:
    response = rig.anon.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "alice", "password": SECRET},
    )
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice", "password": "wrong-password-123"},
        {"username": "nobody", "password": SECRET},
        {"username": "ALICE ", "password": "wrong-password-123"},
    ],
)
def test_wrong_credentials_are_401_without_saying_which(
    rig: AuthRig, credentials: dict[str, str]
) -> None:
    response = rig.login(**credentials)
    assert response.status_code == 401
    assert response.json()["detail"] == "wrong username or password, or the user is disabled"


@pytest.mark.parametrize("body", [b"", b"{", b'{"username": "alice"}', b"[1]"])
def test_malformed_login_is_422_and_never_echoes_the_body(rig: AuthRig, body: bytes) -> None:
    response = rig.anon.post(
        "/api/v1/auth/token",
        content=body + b'"password": "' + SECRET.encode() + b'"',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert SECRET not in response.text


def test_expired_token_is_refused(rig: AuthRig) -> None:
    user = rig.users.repository.get_user("alice")
    assert user is not None
    issued = rig.users.issue(user, "api", ttl_ms=60_000)
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert rig.anon.get("/api/v1/auth/me", headers=headers).status_code == 200
    rig.clock.now += 60_000
    assert rig.anon.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_disabled_user_cannot_log_in_and_loses_their_tokens(rig: AuthRig) -> None:
    token = rig.login("alice", SECRET).json()["access_token"]
    admin = rig.client(Role.ADMIN)
    assert admin.patch("/api/v1/users/alice", json={"disabled": True}).status_code == 200
    assert rig.login("alice", SECRET).status_code == 401
    me = rig.anon.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


def test_repeated_failures_lock_the_username_out(rig: AuthRig) -> None:
    token = rig.login("alice", SECRET).json()["access_token"]
    for _ in range(rig.users.throttle.max_failures):
        assert rig.login("alice", "wrong-password-123").status_code == 401
    locked = rig.login("alice", SECRET)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    # A session already open keeps working; another user is not affected.
    me = rig.anon.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert rig.login("test-admin", TEST_PASSWORD).status_code in (200, 401)


def test_cached_token_survives_a_database_outage(
    rig: AuthRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = UserService(rig.users.repository, hashing=rig.users.hashing, token_cache_s=0.0)
    user = rig.users.repository.get_user("alice")
    assert user is not None
    issued = cached.issue(user, "api")
    assert cached.user_for_token(issued.token, rig.clock.now) == user

    def down(token: str) -> None:
        raise StorageUnavailableError("database unavailable")

    monkeypatch.setattr(rig.users.repository, "user_for_token", down)
    assert cached.user_for_token(issued.token, rig.clock.now) == user
    with pytest.raises(StorageUnavailableError):
        cached.user_for_token("never-seen", rig.clock.now)
    response = rig.anon.get("/api/v1/auth/me", headers={"Authorization": "Bearer never-seen"})
    assert response.status_code == 503


# -- user administration and the audit trail ---------------------------------------------------


def test_admin_creates_and_changes_users_and_the_audit_trail_shows_it(rig: AuthRig) -> None:
    admin = rig.client(Role.ADMIN)
    created = admin.post(
        "/api/v1/users",
        json={"username": "bob", "password": SECRET, "role": "operator", "comment": "new"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "operator"
    assert rig.login("bob", SECRET).status_code == 200
    promoted = admin.patch("/api/v1/users/bob", json={"role": "engineer", "comment": "training"})
    assert promoted.json()["role"] == "engineer"
    new_password = "another-long-password"
    assert admin.patch("/api/v1/users/bob", json={"password": new_password}).status_code == 200
    assert rig.login("bob", SECRET).status_code == 401
    assert rig.login("bob", new_password).status_code == 200
    assert [u["username"] for u in admin.get("/api/v1/users").json()] == [
        "alice",
        "bob",
        "test-admin",
    ]

    response = rig.client(Role.SUPERVISOR).get(
        "/api/v1/audit", params={"entity": "user", "entity_id": "bob"}
    )
    assert response.status_code == 200
    entries = response.json()
    assert [e["action"] for e in entries] == [
        "user.password_changed",
        "user.role_changed",
        "user.created",
    ]
    assert {e["username"] for e in entries} == {"test-admin"}
    assert entries[1]["before"]["role"] == "operator"
    assert entries[1]["after"]["role"] == "engineer"
    assert entries[1]["comment"] == "training"
    assert entries[2]["before"] is None
    assert entries[2]["at"].endswith("+00:00")
    text = response.text
    for secret in (SECRET, new_password, "$argon2", "password_hash"):
        assert secret not in text
    assert len(rig.client(Role.SUPERVISOR).get("/api/v1/audit?limit=1").json()) == 1


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"username": "alice", "password": SECRET, "role": "operator"}, 409, "already exists"),
        ({"username": "Bob", "password": SECRET, "role": "operator"}, 422, "invalid username"),
        ({"username": "bob", "password": "tiny", "role": "operator"}, 422, "shorter than"),
        ({"username": "bob", "password": SECRET, "role": "boss"}, 422, "unknown role 'boss'"),
        ({"username": "bob", "password": "bob", "role": "operator"}, 422, "shorter than"),
    ],
)
def test_invalid_new_users_are_refused_clearly(
    rig: AuthRig, body: dict[str, str], status: int, detail: str
) -> None:
    response = rig.client(Role.ADMIN).post("/api/v1/users", json=body)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert body["password"] not in response.text


def test_patch_of_unknown_user_or_nothing_is_refused(rig: AuthRig) -> None:
    admin = rig.client(Role.ADMIN)
    assert admin.patch("/api/v1/users/ghost", json={"role": "admin"}).status_code == 404
    assert admin.patch("/api/v1/users/alice", json={}).status_code == 422
    own = admin.patch("/api/v1/users/test-admin", json={"disabled": True})
    assert own.status_code == 422
    assert "your own account" in own.json()["detail"]


def test_passwords_and_tokens_never_reach_the_logs(
    rig: AuthRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = rig.login("alice", SECRET).json()["access_token"]
    rig.login("alice", "wrong-password-123")
    rig.login("nobody", "other-secret-456")
    admin = rig.client(Role.ADMIN)
    admin.post(
        "/api/v1/users",
        json={"username": "carol", "password": "carol-secret-789", "role": "operator"},
    )
    admin.patch("/api/v1/users/carol", json={"password": "carol-secret-000"})
    session = rig.anon.post(
        "/login",
        data={"username": "alice", "password": SECRET},
        headers={"Origin": "http://testserver"},  # the login form of this server's own page
    )
    assert session.status_code == 303
    assert "failed login for 'alice'" in caplog.text  # the events are logged...
    everything = caplog.text + "".join(repr(r.args) for r in caplog.records)
    for secret in (
        SECRET,
        "wrong-password-123",
        "other-secret-456",
        "carol-secret-789",
        "carol-secret-000",
        token,
    ):
        assert secret not in everything  # ...their secrets are not
