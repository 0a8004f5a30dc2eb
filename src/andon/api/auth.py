"""Who is calling: bearer tokens and the session cookie, role checks, and ``/api/v1/auth``.

``current_user`` accepts ``Authorization: Bearer <token>`` (scripts, the API) or the
``andon_session`` cookie (the web UI; HttpOnly so page scripts cannot read it, SameSite=Lax so
another site cannot make the browser send it with a POST). Not logged in is 401 with
``WWW-Authenticate: Bearer``; logged in with too low a role is 403.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from andon.api._time import iso_ms
from andon.api.context import ApiContext
from andon.api.schemas import LoginIn, TokenOut, UserOut
from andon.domain.users import Role, User
from andon.server.auth import AuthError, UserService
from andon.storage.users import StorageUnavailableError

__all__ = [
    "SESSION_COOKIE",
    "CurrentUser",
    "RoleRequirement",
    "current_user",
    "optional_user",
    "read_credentials",
    "read_limited_body",
    "request_token",
    "require_role",
    "router",
    "set_session_cookie",
    "user_out",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "andon_session"
#: A login body is two short strings; anything larger is refused before parsing.
MAX_LOGIN_BODY = 8192

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _service(request: Request) -> UserService:
    ctx: ApiContext = request.app.state.context
    return ctx.users


def request_token(request: Request) -> str | None:
    """The bearer token, else the session cookie, else None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


def optional_user(request: Request) -> User | None:
    """The logged-in user or None; 503 when the database is down and the token is not cached."""
    cached: User | None = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    token = request_token(request)
    if token is None:
        return None
    try:
        user = _service(request).user_for_token(token, time.time_ns() // 1_000_000)
    except StorageUnavailableError as exc:
        raise HTTPException(503, "the user database is unavailable; try again shortly") from exc
    request.state.user = user
    return user


def current_user(request: Request) -> User:
    user = optional_user(request)
    if user is None:
        raise HTTPException(
            401,
            "not logged in: send a bearer token or log in",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


class RoleRequirement:
    """A dependency: the current user, if their role includes ``required``; else 403.

    A class rather than a closure so that tests can find, on every route, which role it needs.
    """

    def __init__(self, required: Role) -> None:
        self.required = required

    def __call__(self, user: CurrentUser) -> User:
        if not user.role.allows(self.required):
            raise HTTPException(
                403, f"needs role {self.required.value} or higher; you are {user.role.value}"
            )
        return user


def require_role(required: Role) -> RoleRequirement:
    return RoleRequirement(required)


def user_out(user: User) -> UserOut:
    return UserOut(
        username=user.username,
        role=user.role.value,
        display_name=user.display_name,
        disabled=user.disabled,
        created_at=iso_ms(user.created_at_ms),
    )


async def read_limited_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, read in chunks and refused (413) as soon as it passes ``limit``
    bytes: an unauthenticated caller must not make the server buffer a body of any size."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"{what} too large (at most {limit} bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"{what} too large (at most {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_credentials(request: Request) -> LoginIn:
    """``{username, password}`` from a JSON body or an HTML/OAuth2 form body."""
    body = await read_limited_body(request, MAX_LOGIN_BODY, "login body")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            data: object = {k: form.get(k, [""])[0] for k in ("username", "password")}
        else:
            data = json.loads(body or b"null")
        return LoginIn.model_validate(data)
    except (ValueError, ValidationError) as exc:
        # Never echo the body back: it holds a password.
        raise HTTPException(
            422, 'send {"username": ..., "password": ...} as JSON or a form'
        ) from exc


def set_session_cookie(
    request: Request, response: Response, token: str, expires_at_ms: int
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max(0, (expires_at_ms - time.time_ns() // 1_000_000) // 1000),
        httponly=True,
        samesite="lax",
        # Plant networks often run plain HTTP; behind TLS the cookie must never leak to HTTP.
        secure=request.url.scheme == "https",
        path="/",
    )


@router.post(
    "/token",
    response_model=TokenOut,
    summary="Log in: a bearer token for {username, password} (JSON or OAuth2 form)",
    responses={401: {"description": "Wrong username or password"}, 429: {}},
)
async def issue_token(request: Request) -> TokenOut:
    credentials = await read_credentials(request)
    service = _service(request)
    try:
        issued = await run_in_threadpool(
            service.login, credentials.username, credentials.password.get_secret_value(), "api"
        )
    except AuthError as exc:
        if exc.reason == "locked":
            raise HTTPException(
                429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
            ) from exc
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    return TokenOut(
        access_token=issued.token,
        expires_at=iso_ms(issued.expires_at_ms),
        role=issued.user.role.value,
    )


@router.get("/me", response_model=UserOut, summary="The logged-in user")
def me(user: CurrentUser) -> UserOut:
    return user_out(user)


@router.post("/logout", status_code=204, summary="Revoke the token or session in use")
def logout(request: Request, _user: CurrentUser) -> Response:
    token = request_token(request)
    if token is not None:
        _service(request).logout(token)
    out = Response(status_code=204)
    out.delete_cookie(SESSION_COOKIE, path="/")
    return out
