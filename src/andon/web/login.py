"""Login and logout pages, and the guard every other page goes through."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2_fragments.fastapi import Jinja2Blocks
from starlette.concurrency import run_in_threadpool

from andon.api.auth import (
    SESSION_COOKIE,
    optional_user,
    read_credentials,
    request_token,
    set_session_cookie,
)
from andon.api.context import ApiContext
from andon.domain.users import User
from andon.server.auth import AuthError

__all__ = ["login_redirect", "mount_login", "page_user", "safe_next"]


def safe_next(target: str | None) -> str:
    """Where to go after login: a local path only, so a crafted link cannot send a freshly
    logged-in user to another site (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_redirect(request: Request, fragment: bool) -> Response:
    """Not logged in: pages redirect to the login page; htmx fragments answer 401 with
    ``HX-Redirect`` (htmx would otherwise swap the login page into the fragment's place)."""
    if fragment:
        # htmx names the page it polls from; the login sends the user back there.
        current = urlsplit(request.headers.get("hx-current-url", ""))
        back = safe_next(current.path + (f"?{current.query}" if current.query else ""))
        return Response(
            status_code=401,
            headers={
                "HX-Redirect": f"/login?next={quote(back, safe='/')}",
                "WWW-Authenticate": "Bearer",
            },
        )
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(wanted, safe='/')}", status_code=303)


def page_user(request: Request) -> User | None:
    try:
        return optional_user(request)
    except HTTPException:  # database down and the session not cached: treat as logged out
        return None


def mount_login(app: FastAPI, templates: Jinja2Blocks) -> None:
    def render(request: Request, status: int, **extra: Any) -> Response:
        ctx: ApiContext = request.app.state.context
        context = {
            "site_name": ctx.site_name,
            "next": safe_next(request.query_params.get("next")),
            "error": None,
            "username": "",
            "user": None,
            **extra,
        }
        return templates.TemplateResponse(request, "login.html", context, status_code=status)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> Response:
        return render(request, 200)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_submit(request: Request) -> Response:
        ctx: ApiContext = request.app.state.context
        target = safe_next(request.query_params.get("next"))
        try:
            credentials = await read_credentials(request)
        except HTTPException:
            return render(request, 422, error="Enter a username and a password.")
        try:
            issued = await run_in_threadpool(
                ctx.users.login,
                credentials.username,
                credentials.password.get_secret_value(),
                "session",
            )
        except AuthError as exc:
            status = 429 if exc.reason == "locked" else 401
            return render(request, status, error=str(exc), username=credentials.username)
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(request, response, issued.token, issued.expires_at_ms)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        ctx: ApiContext = request.app.state.context
        token = request.cookies.get(SESSION_COOKIE) or request_token(request)
        if token is not None:
            ctx.users.logout(token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
