"""``/api/v1/users`` (admin) and ``/api/v1/audit`` (supervisor and up)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from andon.api._time import iso_ms
from andon.api.auth import require_role, user_out
from andon.api.context import ApiContext
from andon.api.schemas import AuditEntryOut, UserCreateIn, UserOut, UserPatchIn
from andon.domain.errors import DomainError
from andon.domain.users import Role, User

__all__ = ["audit_router", "users_router"]

users_router = APIRouter(prefix="/api/v1/users", tags=["users"])
audit_router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Admin = Annotated[User, Depends(require_role(Role.ADMIN))]
Supervisor = Annotated[User, Depends(require_role(Role.SUPERVISOR))]


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


@users_router.get("", response_model=list[UserOut], summary="Every user (admin)")
def list_users(request: Request, _admin: Admin) -> list[UserOut]:
    return [user_out(u) for u in _ctx(request).users.repository.list_users()]


@users_router.post("", response_model=UserOut, status_code=201, summary="Create a user (admin)")
def create_user(request: Request, body: UserCreateIn, admin: Admin) -> UserOut:
    service = _ctx(request).users
    try:
        user = service.create_user(
            admin.username,
            body.username,
            body.password.get_secret_value(),
            Role.parse(body.role),
            body.display_name,
            body.comment,
        )
    except DomainError as exc:
        status = 409 if "already exists" in str(exc) else 422
        raise HTTPException(status, str(exc)) from exc
    return user_out(user)


@users_router.patch(
    "/{username}", response_model=UserOut, summary="Change role, disabled or password (admin)"
)
def patch_user(request: Request, username: str, body: UserPatchIn, admin: Admin) -> UserOut:
    service = _ctx(request).users
    if service.repository.get_user(username) is None:
        raise HTTPException(404, f"no user {username!r}")
    try:
        # Checked as a whole and applied in one transaction: a refused part changes nothing.
        user = service.update_user(
            admin.username,
            username,
            role=Role.parse(body.role) if body.role is not None else None,
            disabled=body.disabled,
            password=body.password.get_secret_value() if body.password is not None else None,
            comment=body.comment,
        )
    except DomainError as exc:
        raise HTTPException(422, str(exc)) from exc
    return user_out(user)


@audit_router.get("", response_model=list[AuditEntryOut], summary="Audit trail, newest first")
def audit(
    request: Request,
    _supervisor: Supervisor,
    entity: Annotated[str | None, Query(description="e.g. user")] = None,
    entity_id: Annotated[str | None, Query(description="e.g. a username")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditEntryOut]:
    entries = _ctx(request).users.audit.list(entity=entity, entity_id=entity_id, limit=limit)
    return [
        AuditEntryOut(
            id=e.id,
            at=iso_ms(e.at_ms),
            username=e.username,
            action=e.action,
            entity=e.entity,
            entity_id=e.entity_id,
            before=e.before,
            after=e.after,
            comment=e.comment,
        )
        for e in entries
    ]
