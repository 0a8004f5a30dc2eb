"""``/api/v1/admin/plant`` (admin): the plant file's text, and replacing it.

``GET`` answers the file on disk, its hash and whether it differs from the configuration the
server runs (loaded at start-up). ``PUT {text, base_hash, comment}`` checks and saves it through
``andon.server.plant_editor.PlantEditor`` -- the admin page's editor calls the same
``save_plant`` -- answering 422 with every problem (field, line, message), 409 when the file
changed since ``base_hash`` or the node may not write (passive cluster node), 503 without a
plant file. The saved file takes effect at the next server start (``applied`` is false).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from andon.api.auth import read_limited_body, require_role
from andon.api.context import ApiContext
from andon.domain import DomainError
from andon.domain.users import Role, User
from andon.server.plant_editor import (
    MAX_PLANT_BYTES,
    PlantConflictError,
    PlantEditor,
    PlantInvalidError,
    PlantRefusedError,
    PlantSaved,
    PlantUnavailableError,
)
from andon.server.plant_file import PlantProblem

__all__ = [
    "MAX_PLANT_BODY",
    "PlantFileOut",
    "PlantProblemOut",
    "PlantPutIn",
    "PlantSaveRefused",
    "PlantSavedOut",
    "plant_editor",
    "problems_out",
    "router",
    "save_plant",
]

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Admin = Annotated[User, Depends(require_role(Role.ADMIN))]
#: The text, JSON-escaped or form-encoded (up to 3 bytes per byte), plus the other fields.
MAX_PLANT_BODY = 4 * MAX_PLANT_BYTES + 65_536
NOT_APPLIED = (
    "Saved. The new configuration is stored and takes effect at the next server start; "
    "this server keeps running the configuration it started with."
)


class PlantProblemOut(BaseModel):
    field: str = Field(description="e.g. asset[3].tags.state; empty: the file as a whole")
    line: int | None = Field(description="line of the field in the text (1-based), if known")
    message: str


class PlantFileOut(BaseModel):
    path: str
    text: str
    sha256: str = Field(description="hex SHA-256 of the file's bytes: send it back as base_hash")
    running_sha256: str = Field(description="hash of the file the server loaded at start-up")
    differs_from_running: bool = Field(
        description="the file on disk is not the configuration running (takes effect at restart)"
    )


class PlantPutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the whole new plant file (TOML)")
    base_hash: str = Field(description="sha256 of the version the change was made from")
    comment: str = Field(description="why (kept in the audit trail); required")


class PlantSavedOut(BaseModel):
    sha256: str
    previous_sha256: str
    backup: str = Field(description="the previous version, kept next to the file")
    audit_id: int
    applied: bool = Field(description="false: takes effect at the next server start")
    message: str


class PlantSaveRefused(Exception):
    """A refused save as the API answers it: status, message, and the details (problems, the
    hash on disk); the page shows the same."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, **self.details}


def plant_editor(request: Request) -> PlantEditor:
    ctx: ApiContext = request.app.state.context
    if ctx.plant_editor is None:
        raise HTTPException(503, "no plant file is configured (setting plant_file)")
    return ctx.plant_editor


def problems_out(problems: tuple[PlantProblem, ...]) -> list[dict[str, Any]]:
    return [
        PlantProblemOut(field=p.field, line=p.line, message=p.message).model_dump()
        for p in problems
    ]


def save_plant(
    editor: PlantEditor, user: User, text: str, base_hash: str, comment: str
) -> PlantSaved:
    """The one save of the plant file (API and page); raises ``PlantSaveRefused``."""
    try:
        return editor.save(user.username, text, base_hash, comment)
    except PlantInvalidError as exc:
        raise PlantSaveRefused(422, str(exc), problems=problems_out(exc.problems)) from exc
    except PlantConflictError as exc:
        raise PlantSaveRefused(409, str(exc), current_sha256=exc.current_sha256) from exc
    except PlantRefusedError as exc:
        raise PlantSaveRefused(409, str(exc)) from exc
    except PlantUnavailableError as exc:
        raise PlantSaveRefused(503, str(exc)) from exc
    except DomainError as exc:
        raise PlantSaveRefused(422, str(exc)) from exc


@router.get("/plant", response_model=PlantFileOut, summary="The plant file (admin)")
def get_plant(request: Request, _admin: Admin) -> PlantFileOut:
    try:
        version = plant_editor(request).current()
    except PlantUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    return PlantFileOut(
        path=version.path,
        text=version.text,
        sha256=version.sha256,
        running_sha256=version.running_sha256,
        differs_from_running=version.differs_from_running,
    )


_PUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PlantPutIn.model_json_schema()}},
    }
}


@router.put(
    "/plant",
    response_model=PlantSavedOut,
    summary="Check and save the plant file (admin); takes effect at the next server start",
    openapi_extra=_PUT_BODY,
    responses={409: {"description": "changed since base_hash, or a passive node"},
               422: {"description": "problems: [{field, line, message}]"}},
)  # fmt: skip
async def put_plant(request: Request, admin: Admin) -> Any:
    editor = plant_editor(request)
    # Read with a bound (a plant file is at most MAX_PLANT_BYTES), then validated.
    body = await read_limited_body(request, MAX_PLANT_BODY, "plant file body")
    try:
        put = PlantPutIn.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise HTTPException(422, errors) from exc
    try:
        saved = await run_in_threadpool(
            save_plant, editor, admin, put.text, put.base_hash, put.comment
        )
    except PlantSaveRefused as refused:
        return JSONResponse(refused.body(), status_code=refused.status)
    return PlantSavedOut(
        sha256=saved.sha256,
        previous_sha256=saved.previous_sha256,
        backup=saved.backup,
        audit_id=saved.audit_id,
        applied=saved.applied,
        message=NOT_APPLIED,
    )
