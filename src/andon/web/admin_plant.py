"""The plant file's editor on the admin page: the TOML in a textarea, "Check" and "Save".

``POST /admin/plant/check`` parses the text by the start-up rules and answers every problem
with its line and field (nothing changes). ``POST /fragments/admin/plant`` saves it through
``andon.api.admin_plant.save_plant``, the function ``PUT /api/v1/admin/plant`` uses, so the
rules, the conflict check, the passive-node refusal and the audit entry have one code path (on
a passive cluster node ``andon.api.write_guard`` refuses it before it runs, as every page
write under ``/fragments/``). Both answer a fragment for ``#plant-result``; a save also
updates, out of band, the hash the next save is based on and the "differs from running" note.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from andon.api.admin_plant import (
    MAX_PLANT_BODY,
    NOT_APPLIED,
    PlantSaveRefused,
    plant_editor,
    save_plant,
)
from andon.api.auth import read_limited_body
from andon.api.context import ApiContext
from andon.domain.users import User
from andon.server.plant_editor import PlantFileVersion, PlantUnavailableError
from andon.web.access import page_guard
from andon.web.render import render

__all__ = ["CHECK_URL", "SAVE_URL", "mount_admin_plant", "plant_editor_context"]

PAGE = "/admin"
CHECK_URL = "/admin/plant/check"
SAVE_URL = "/fragments/admin/plant"
_TEMPLATE = "admin_plant.html"


def plant_editor_context(request: Request) -> dict[str, Any]:
    """What the admin page's editor shows: the file on disk (or why it cannot be read)."""
    ctx: ApiContext = request.app.state.context
    if ctx.plant_editor is None:
        return {"editor": None}
    try:
        version: PlantFileVersion | None = ctx.plant_editor.current()
        error = ""
    except PlantUnavailableError as exc:
        version, error = None, str(exc)
    return {
        "editor": version,
        "editor_error": error,
        "check_url": CHECK_URL,
        "save_url": SAVE_URL,
    }


async def _fields(request: Request) -> dict[str, str]:
    body = await read_limited_body(request, MAX_PLANT_BODY, "plant file form")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def _result(request: Request, user: User, context: dict[str, Any], status: int = 200) -> Response:
    return render(request, _TEMPLATE, context, user=user, block="result", status=status)


def mount_admin_plant(app: FastAPI) -> None:
    @app.post(CHECK_URL, response_class=HTMLResponse, include_in_schema=False)
    async def check_plant(request: Request) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        editor = plant_editor(request)
        fields = await _fields(request)
        try:
            checked = await run_in_threadpool(editor.check, fields.get("text", ""))
        except PlantUnavailableError as exc:
            return _result(request, user, {"error": str(exc)}, 503)
        return _result(request, user, {"checked": checked})

    @app.post(SAVE_URL, response_class=HTMLResponse, include_in_schema=False)
    async def save_plant_form(request: Request) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        editor = plant_editor(request)
        fields = await _fields(request)
        try:
            saved = await run_in_threadpool(
                save_plant,
                editor,
                user,
                fields.get("text", ""),
                fields.get("base_hash", ""),
                fields.get("comment", ""),
            )
        except PlantSaveRefused as refused:
            context = {"error": refused.message, "problems": refused.details.get("problems")}
            return _result(request, user, context, refused.status)
        try:
            version: PlantFileVersion | None = await run_in_threadpool(editor.current)
        except PlantUnavailableError:
            version = None
        context = {"saved": saved, "message": NOT_APPLIED, "editor": version, "oob": True}
        return _result(request, user, context)
