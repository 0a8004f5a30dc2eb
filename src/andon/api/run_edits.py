"""Audited run edits: ``POST /api/v1/runs`` (start or add), ``POST /runs/{id}/end``,
``PATCH /runs/{id}``, ``DELETE /runs/{id}``.

Operators start and end runs at the current time; anything with an explicit time, a change or a
deletion needs a supervisor and a comment. Each change and its audit entry (entity ``run``)
commit in one transaction; the counts in the affected span are then re-rated. Invalid input is
404/422, a refused rule (overlap, duplicate id, already ended) 409, and changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from andon.api._edits import (
    Edits,
    conflicts_as_409,
    edits,
    last_audited_change,
    need_role,
    require_comment,
    revert_note,
)
from andon.api.auth import require_role
from andon.api.mes import RunOut, _run_out
from andon.domain import AssetPath, DomainError, Run
from andon.domain.users import Role, User
from andon.storage.audit import Transaction
from andon.storage.mes_runs import RunHook

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/runs", tags=["mes"])

Operator = Annotated[User, Depends(require_role(Role.OPERATOR))]
Supervisor = Annotated[User, Depends(require_role(Role.SUPERVISOR))]
EditsDep = Annotated[Edits, Depends(edits)]

_COMMENT = Field("", max_length=2000, description="Why; kept in the audit trail")
_TIME = "ISO 8601 instant or epoch ms"


class RunCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="Default: generated",
    )
    order_id: str = Field(min_length=1, max_length=200)
    asset: str = Field(min_length=1, max_length=1000)
    start: str | None = Field(None, description=f"{_TIME}; default now (supervisor to give it)")
    end: str | None = Field(None, description=f"{_TIME}; absent: the run stays open")
    comment: str = _COMMENT


class RunEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    end: str | None = Field(None, description=f"{_TIME}; default now (supervisor to give it)")
    comment: str = _COMMENT


class RunPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str | None = Field(None, min_length=1, max_length=200)
    start: str | None = Field(None, description=_TIME)
    end: str | None = Field(None, description=f"{_TIME}; an explicit null reopens the run")
    comment: str = _COMMENT


def run_json(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "order_id": run.order_id,
        "asset": str(run.asset),
        "start_ms": run.start_ms,
        "end_ms": run.end_ms,
    }


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = _COMMENT


_ANY: Any = object()


def _run_from_json(value: Any) -> Run | None:
    if value is None:
        return None
    return Run(
        value["id"], value["order_id"], AssetPath.parse(value["asset"]),
        value["start_ms"], value["end_ms"],
    )  # fmt: skip


def _audited(
    e: Edits, user: User, action: str, comment: str, expect: Any = _ANY, entry: int = 0
) -> RunHook:
    """Writes the audit entry in the change's transaction; with ``expect``, first checks that
    the stored run (as JSON, None: absent) still is what audit entry ``entry`` left."""

    def hook(connection: Transaction, before: Run | None, after: Run | None) -> None:
        if expect is not _ANY and run_json(before) != expect:
            raise DomainError(
                f"the run changed after audit entry {entry} without an audit entry; "
                "nothing was reverted"
            )
        run = after if after is not None else before
        assert run is not None
        e.audit.record(
            user.username, action, "run", run.id, run_json(before), run_json(after), comment,
            connection=connection,
        )  # fmt: skip

    return hook


def _body_asset(e: Edits, text: str) -> AssetPath:
    try:
        path = AssetPath.parse(text.strip("/"))
        e.mes.service.plant.tree.get(path)
    except DomainError as exc:
        raise HTTPException(422, f"asset: {exc}") from exc
    return path


def _check_order(e: Edits, order_id: str) -> None:
    if e.mes.service.item_of_order(order_id) is None:
        raise HTTPException(422, f"order_id: unknown order {order_id!r}")


def _stored(e: Edits, run_id: str) -> Run:
    run = e.mes.service.run_repository.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return run


def _run(run_id: str, order_id: str, asset: AssetPath, start: int, end: int | None) -> Run:
    try:
        return Run(run_id, order_id, asset, start, end)
    except DomainError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.post(
    "",
    response_model=RunOut,
    status_code=201,
    summary="Start a run now (operator), or add one with a start and an end (supervisor)",
    responses={409: {"description": "Overlaps another run on the asset, or the id exists"}},
)
def create_run(request: Request, body: RunCreateIn, user: Operator, e: EditsDep) -> RunOut:
    timed = body.start is not None or body.end is not None
    if timed:
        need_role(user, Role.SUPERVISOR, "give a run's times")
    comment = require_comment(body.comment, "add this run") if timed else body.comment.strip()
    asset = _body_asset(e, body.asset)
    _check_order(e, body.order_id)
    start = e.mes.now_ms() if body.start is None else e.instant(body.start, "start")
    end = None if body.end is None else e.instant(body.end, "end")
    run = _run(body.id or f"R-{uuid.uuid4().hex[:12]}", body.order_id, asset, start, end)
    action = "run.started" if end is None else "run.added"
    with conflicts_as_409():
        stored = e.mes.service.add_run(run, _audited(e, user, action, comment))
    return _run_out(e.mes, stored)


@router.post(
    "/{run_id}/end",
    response_model=RunOut,
    summary="End an open run now (operator), or at a given time (supervisor)",
)
def end_run(request: Request, run_id: str, body: RunEndIn, user: Operator, e: EditsDep) -> RunOut:
    if body.end is not None:
        need_role(user, Role.SUPERVISOR, "give a run's end time")
        comment = require_comment(body.comment, "end this run at another time")
    else:
        comment = body.comment.strip()
    run = _stored(e, run_id)
    end = e.mes.now_ms() if body.end is None else e.instant(body.end, "end")
    _run(run.id, run.order_id, run.asset, run.start_ms, end)  # end after start, else 422
    with conflicts_as_409():
        ended = e.mes.service.end_run(run_id, end, _audited(e, user, "run.ended", comment))
    return _run_out(e.mes, ended)


@router.patch(
    "/{run_id}",
    response_model=RunOut,
    summary="Change a run's order, start or end (supervisor)",
)
def patch_run(
    request: Request, run_id: str, body: RunPatchIn, user: Supervisor, e: EditsDep
) -> RunOut:
    comment = require_comment(body.comment, "change this run")
    given = body.model_fields_set - {"comment"}
    if not given:
        raise HTTPException(422, "nothing to change: give order_id, start or end")
    old = _stored(e, run_id)
    order_id = old.order_id if body.order_id is None else body.order_id
    if order_id != old.order_id:
        _check_order(e, order_id)
    start = old.start_ms if body.start is None else e.instant(body.start, "start")
    end = old.end_ms
    if "end" in given:
        end = None if body.end is None else e.instant(body.end, "end")
    new = _run(run_id, order_id, old.asset, start, end)
    if new == old:
        raise HTTPException(422, "nothing to change: the run already is so")
    with conflicts_as_409():
        stored = e.mes.service.edit_run(new, _audited(e, user, "run.edited", comment))
    return _run_out(e.mes, stored)


@router.delete("/{run_id}", status_code=204, summary="Delete a run (supervisor)")
def delete_run(
    request: Request, run_id: str, user: Supervisor, e: EditsDep, comment: str = ""
) -> Response:
    text = require_comment(comment, "delete this run")
    _stored(e, run_id)
    with conflicts_as_409():
        e.mes.service.delete_run(run_id, _audited(e, user, "run.deleted", text))
    return Response(status_code=204)


@router.post(
    "/{run_id}/revert",
    response_model=RunOut | None,
    summary="Undo the last audited change of a run (supervisor); null when it is deleted",
)
def revert_run(
    request: Request, run_id: str, body: RevertIn, user: Supervisor, e: EditsDep
) -> RunOut | None:
    comment = require_comment(body.comment, "revert this change")
    last = last_audited_change(e, "run", run_id, "run")
    restore = _run_from_json(last.before)
    note = revert_note(comment, last)
    hook = _audited(e, user, "run.reverted", note, expect=last.after, entry=last.id)
    service = e.mes.service
    with conflicts_as_409():
        if restore is None:
            service.delete_run(run_id, hook)
            return None
        if last.after is None:
            return _run_out(e.mes, service.add_run(restore, hook))
        return _run_out(e.mes, service.edit_run(restore, hook))
