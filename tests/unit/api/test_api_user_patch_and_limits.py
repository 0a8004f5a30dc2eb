"""User changes all or nothing, request bodies read only up to their limit, and the API's own
documentation behind the login."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _auth_rig import SECRET, AuthRig

from andon.api.auth import MAX_LOGIN_BODY
from andon.domain.users import Role
from andon.testing.auth import token_for
from andon.web.operator import MAX_FORM_BYTES


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[AuthRig]:
    rig = AuthRig(tmp_path)
    rig.users.create_user("root", "bob", SECRET, Role.OPERATOR, "Bob")
    yield rig
    rig.users.repository.close()


# -- PATCH /api/v1/users/{username}: all or nothing ---------------------------------------------


def test_a_refused_part_of_a_user_patch_changes_nothing(rig: AuthRig) -> None:
    admin = rig.client(Role.ADMIN)
    audit_before = admin.get("/api/v1/audit", params={"entity": "user"}).json()
    refused = admin.patch("/api/v1/users/bob", json={"role": "admin", "password": "short"})
    assert refused.status_code == 422
    assert "password" in refused.json()["detail"]
    bob = rig.users.repository.get_user("bob")
    assert bob is not None
    assert bob.role is Role.OPERATOR  # the role part was not applied on its own
    assert admin.get("/api/v1/audit", params={"entity": "user"}).json() == audit_before
    assert rig.login("bob", SECRET).status_code == 200  # the password is unchanged too


def test_a_user_patch_applies_every_part_together_each_audited(rig: AuthRig) -> None:
    token = rig.login("bob", SECRET).json()["access_token"]
    admin = rig.client(Role.ADMIN)
    new_password = "a-new-long-password"
    changed = admin.patch(
        "/api/v1/users/bob",
        json={"role": "engineer", "disabled": False, "password": new_password, "comment": "x"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "engineer"
    actions = [
        e["action"]
        for e in admin.get("/api/v1/audit", params={"entity": "user", "entity_id": "bob"}).json()
    ]
    assert actions[:3] == ["user.password_changed", "user.enabled", "user.role_changed"]
    me = rig.anon.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401  # a new password ends the user's tokens
    assert rig.login("bob", new_password).status_code == 200


def test_a_user_patch_that_fails_in_the_database_changes_nothing(
    rig: AuthRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = rig.client(Role.ADMIN)
    audit = rig.users.repository.audit
    original = audit.record
    calls: list[str] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        if args[1] == "user.password_changed":  # the last part fails: the first must go too
            raise RuntimeError("database went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(audit, "record", record)
    with pytest.raises(RuntimeError):
        admin.patch("/api/v1/users/bob", json={"role": "admin", "password": "long-enough-pw-1"})
    assert calls == ["user.role_changed", "user.password_changed"]
    bob = rig.users.repository.get_user("bob")
    assert bob is not None
    assert bob.role is Role.OPERATOR


# -- bodies are read only up to their limit -----------------------------------------------------


def _post_endless_body(rig: AuthRig, path: str, headers: dict[str, str]) -> tuple[int, int]:
    """POST a 4 MB body in 4 KiB chunks straight to the ASGI app; (status, chunks read)."""
    chunk, total = b"a" * 4096, 1000
    pulled = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    asyncio.run(rig.app(scope, receive, send))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, pulled


def test_a_huge_login_body_is_refused_after_reading_only_its_limit(rig: AuthRig) -> None:
    status, pulled = _post_endless_body(
        rig, "/api/v1/auth/token", {"content-type": "application/json"}
    )
    assert status == 413
    assert pulled <= MAX_LOGIN_BODY // 4096 + 1


def test_a_declared_huge_login_body_is_refused_unread(rig: AuthRig) -> None:
    response = rig.anon.post(
        "/api/v1/auth/token",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(10**9)},
    )
    assert response.status_code == 413


def test_a_huge_operator_form_is_refused_after_reading_only_its_limit(rig: AuthRig) -> None:
    token = token_for(rig.users, Role.OPERATOR)
    status, pulled = _post_endless_body(
        rig,
        "/fragments/operator/mode",
        {
            "content-type": "application/x-www-form-urlencoded",
            "authorization": f"Bearer {token}",
            "hx-request": "true",
        },
    )
    assert status == 413
    assert pulled <= MAX_FORM_BYTES // 4096 + 1


# -- /docs, /redoc and /openapi.json need a login ----------------------------------------------


def test_the_api_documentation_needs_a_login(rig: AuthRig) -> None:
    assert rig.anon.get("/openapi.json").status_code == 401
    for page in ("/docs", "/redoc"):
        refused = rig.anon.get(page)
        assert refused.status_code == 303
        assert refused.headers["location"] == f"/login?next={page}"
    reader = rig.client(Role.OPERATOR)
    document = reader.get("/openapi.json")
    assert document.status_code == 200
    assert "/api/v1/tags" in document.json()["paths"]
    for page in ("/docs", "/redoc"):
        shown = reader.get(page)
        assert shown.status_code == 200
        assert "/openapi.json" in shown.text
