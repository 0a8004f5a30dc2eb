"""The admin page (``/admin``, admin only): users -- list, add, change role, disable or enable,
reset password, each change with its audit history -- the plant configuration the server runs
(tables, ``andon.web.admin_data``) and the plant file's editor (``andon.web.admin_plant``).

User changes go to ``/api/v1/users`` through the same edit dialogs as the supervisor page
(``static/api-forms.js``), so the API's rules and audit trail apply unchanged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from andon.api.context import ApiContext
from andon.domain.users import Role, User
from andon.web.access import page_guard
from andon.web.admin_data import plant_view
from andon.web.admin_plant import mount_admin_plant, plant_editor_context
from andon.web.audit_view import history_rows
from andon.web.edit_forms import FormField, FormSpec
from andon.web.mes_view import local_text, mes_of, site_zone
from andon.web.render import render

__all__ = ["USER_FORMS", "mount_admin", "user_form"]

PAGE = "/admin"
_ROLES = [(r.value, r.value) for r in Role]


def _zone(request: Request) -> ZoneInfo:
    mes = mes_of(request)
    return ZoneInfo("UTC") if mes is None else site_zone(mes)


def _comment(required: bool = False) -> FormField:
    return FormField(
        "comment", "Comment (why; kept in the audit trail)", "textarea", required=required,
        omit_empty=not required,
    )  # fmt: skip


def _user_add(_user: User | None, tz: ZoneInfo) -> FormSpec:
    return FormSpec(
        "Add a user", "POST", "/api/v1/users",
        [
            FormField("username", "Username", required=True,
                      hint="lower case letters, digits, . _ -"),
            FormField("display_name", "Display name", omit_empty=True),
            FormField("role", "Role", "select", "operator", _ROLES, True),
            FormField("password", "Initial password", "password", required=True,
                      hint="at least 10 characters; the user should change it"),
            _comment(),
        ],
        "Add user", str(tz),
    )  # fmt: skip


def _patch(user: User | None, title: str, fields: list[FormField], tz: ZoneInfo) -> FormSpec:
    assert user is not None
    return FormSpec(
        f"{title}: {user.username}", "PATCH", f"/api/v1/users/{quote(user.username, safe='')}",
        [*fields, _comment()], title, str(tz),
    )  # fmt: skip


def _user_role(user: User | None, tz: ZoneInfo) -> FormSpec:
    current = "" if user is None else user.role.value
    return _patch(
        user, "Change role", [FormField("role", "Role", "select", current, _ROLES, True)], tz
    )


def _user_disable(user: User | None, tz: ZoneInfo) -> FormSpec:
    disabled = user is not None and user.disabled
    choice = FormField(
        "disabled", "Account", "select", "false" if disabled else "true",
        [("true", "disabled: cannot log in, tokens stop working"), ("false", "enabled")],
        True, boolean=True,
    )  # fmt: skip
    return _patch(user, "Enable" if disabled else "Disable", [choice], tz)


def _user_password(user: User | None, tz: ZoneInfo) -> FormSpec:
    field = FormField(
        "password", "New password", "password", required=True, hint="at least 10 characters"
    )
    return _patch(user, "Reset password", [field], tz)


USER_FORMS = {
    "user-add": _user_add,
    "user-role": _user_role,
    "user-disable": _user_disable,
    "user-password": _user_password,
}


def user_form(request: Request, name: str, username: str) -> FormSpec:
    build = USER_FORMS.get(name)
    if build is None:
        raise HTTPException(404, f"no form {name!r}")
    ctx: ApiContext = request.app.state.context
    user = None
    if name != "user-add":
        user = ctx.users.repository.get_user(username)
        if user is None:
            raise HTTPException(404, f"no user {username!r}")
    return build(user, _zone(request))


def _users(request: Request) -> list[dict[str, Any]]:
    ctx: ApiContext = request.app.state.context
    zone = _zone(request)
    return [
        {"user": u, "created": local_text(u.created_at_ms, zone)}
        for u in sorted(ctx.users.repository.list_users(), key=lambda u: u.username)
    ]


def mount_admin(app: FastAPI) -> None:
    mount_admin_plant(app)  # the plant file's editor (andon.web.admin_plant)

    @app.get(PAGE, response_class=HTMLResponse, include_in_schema=False)
    def admin_page(request: Request) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        mes = mes_of(request)
        context = {"users": _users(request), "plant": None if mes is None else plant_view(mes)}
        context |= plant_editor_context(request)
        return render(request, "admin.html", context, user=user)

    @app.get(PAGE + "/fragments/users", response_class=HTMLResponse, include_in_schema=False)
    def admin_users(request: Request) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        return render(request, "admin.html", {"users": _users(request)}, user=user, block="users")

    @app.get(PAGE + "/forms/{name}", response_class=HTMLResponse, include_in_schema=False)
    def admin_form(request: Request, name: str, username: str = "") -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        form = user_form(request, name, username)
        context = {"form": form, "reload_url": ""}
        return render(request, "supervisor_form.html", context, user=user)

    @app.get(PAGE + "/history", response_class=HTMLResponse, include_in_schema=False)
    def admin_history(request: Request, username: str) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        ctx: ApiContext = request.app.state.context
        rows = history_rows(ctx.users.audit, "user", username, _zone(request))
        context = {"rows": rows, "entity": "user", "entity_id": username}
        return render(request, "supervisor_history.html", context, user=user)
