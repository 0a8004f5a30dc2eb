"""The schedule: ``GET /api/v1/schedule`` (any user), and audited supervisor edits
``POST /api/v1/schedule`` (create), ``PATCH /schedule/{id}`` (move, change order),
``DELETE /schedule/{id}`` (cancel) and ``POST /schedule/{id}/revert``.

Scheduled runs are plans: their times may lie in the future (up to ``MAX_AHEAD_MS``), they never
change counts or OEE. They follow the run-edit rules otherwise: a comment is required, each change
and its audit entry (entity ``scheduled_run``) commit in one transaction, invalid input is 404/422,
an overlap with another scheduled run on the asset is 409 naming it, and nothing changes.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from andon.api._edits import (
    EARLIEST_MS,
    Edits,
    conflicts_as_409,
    edits,
    last_audited_change,
    require_comment,
    revert_note,
)
from andon.api._time import iso_ms
from andon.api.auth import require_role
from andon.api.mes import _asset, _mes, _period
from andon.api.timeparse import parse_instant_ms
from andon.domain import AssetPath, DomainError, ScheduledRun
from andon.domain.users import Role, User
from andon.server.mes_queries import MesQueries
from andon.storage.audit import Transaction
from andon.storage.mes_schedule import ScheduleHook, ScheduleRepository

__all__ = ["MAX_AHEAD_MS", "ScheduledRunOut", "router", "schedule_repository"]

router = APIRouter(prefix="/api/v1/schedule", tags=["mes"])

Supervisor = Annotated[User, Depends(require_role(Role.SUPERVISOR))]
EditsDep = Annotated[Edits, Depends(edits)]

#: How far ahead a plan may reach: five years (a typo in the year is refused, not stored).
MAX_AHEAD_MS = 5 * 366 * 86_400_000

_COMMENT = Field("", max_length=2000, description="Why; kept in the audit trail")
_TIME = "ISO 8601 instant or epoch ms"


class ScheduledRunOut(BaseModel):
    id: str
    order_id: str
    item_id: str | None
    asset: str
    start: str
    end: str
    start_ms: int
    end_ms: int


class ScheduleCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="Default: generated",
    )
    order_id: str = Field(min_length=1, max_length=200)
    asset: str = Field(min_length=1, max_length=1000)
    start: str = Field(description=f"Planned start, {_TIME}")
    end: str = Field(description=f"Planned end, {_TIME}")
    comment: str = _COMMENT


class SchedulePatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str | None = Field(None, min_length=1, max_length=200)
    start: str | None = Field(None, description=_TIME)
    end: str | None = Field(None, description=_TIME)
    comment: str = _COMMENT


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = _COMMENT


def schedule_repository(mes: MesQueries) -> ScheduleRepository:
    return ScheduleRepository(mes.repository.engine)


def scheduled_json(run: ScheduledRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "order_id": run.order_id,
        "asset": str(run.asset),
        "start_ms": run.start_ms,
        "end_ms": run.end_ms,
    }


def _from_json(value: Any) -> ScheduledRun | None:
    if value is None:
        return None
    return ScheduledRun(
        value["id"], value["order_id"], AssetPath.parse(value["asset"]),
        value["start_ms"], value["end_ms"],
    )  # fmt: skip


def _out(mes: MesQueries, run: ScheduledRun) -> ScheduledRunOut:
    return ScheduledRunOut(
        id=run.id,
        order_id=run.order_id,
        item_id=mes.service.item_of_order(run.order_id),
        asset=str(run.asset),
        start=iso_ms(run.start_ms),
        end=iso_ms(run.end_ms),
        start_ms=run.start_ms,
        end_ms=run.end_ms,
    )


_ANY: Any = object()


def _audited(
    e: Edits, user: User, action: str, comment: str, expect: Any = _ANY, entry: int = 0
) -> ScheduleHook:
    """Writes the audit entry in the change's transaction; with ``expect``, first checks that
    the stored plan (as JSON, None: absent) still is what audit entry ``entry`` left."""

    def hook(
        connection: Transaction, before: ScheduledRun | None, after: ScheduledRun | None
    ) -> None:
        if expect is not _ANY and scheduled_json(before) != expect:
            raise DomainError(
                f"the scheduled run changed after audit entry {entry} without an audit entry; "
                "nothing was reverted"
            )
        run = after if after is not None else before
        assert run is not None
        e.audit.record(
            user.username, action, "scheduled_run", run.id, scheduled_json(before),
            scheduled_json(after), comment, connection=connection,
        )  # fmt: skip

    return hook


def _planned(e: Edits, text: str, field: str) -> int:
    """A planned time: after 2000-01-01 and at most ``MAX_AHEAD_MS`` ahead; 422 otherwise."""
    try:
        value = parse_instant_ms(text)
    except ValueError as exc:
        raise HTTPException(422, f"{field}: {exc}") from exc
    if value < EARLIEST_MS or value > e.mes.now_ms() + MAX_AHEAD_MS:
        raise HTTPException(
            422, f"{field}: {text!r} is out of bounds (after 2000-01-01, at most 5 years ahead)"
        )
    return value


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


def _scheduled(run_id: str, order_id: str, asset: AssetPath, start: int, end: int) -> ScheduledRun:
    try:
        return ScheduledRun(run_id, order_id, asset, start, end)
    except DomainError as exc:
        raise HTTPException(422, str(exc)) from exc


def _stored(repository: ScheduleRepository, run_id: str) -> ScheduledRun:
    run = repository.get(run_id)
    if run is None:
        raise HTTPException(404, f"no scheduled run {run_id!r}")
    return run


@router.get("", response_model=list[ScheduledRunOut], summary="Scheduled runs in a period")
def list_schedule(
    request: Request,
    start: Annotated[str, Query(description=f"{_TIME} (inclusive)")],
    end: Annotated[str, Query(description=f"{_TIME} (exclusive)")],
    asset: Annotated[str | None, Query(description="Asset path (default: every asset)")] = None,
) -> list[ScheduledRunOut]:
    mes = _mes(request)
    path = None if asset is None else _asset(mes, asset)
    start_ms, end_ms = _period(start, end)
    found = schedule_repository(mes).scheduled_runs(path, start_ms, end_ms)
    return [_out(mes, run) for run in found]


@router.post(
    "",
    response_model=ScheduledRunOut,
    status_code=201,
    summary="Schedule a run on an asset (supervisor)",
    responses={409: {"description": "Overlaps another scheduled run on the asset, or id exists"}},
)
def create_scheduled_run(
    request: Request, body: ScheduleCreateIn, user: Supervisor, e: EditsDep
) -> ScheduledRunOut:
    comment = require_comment(body.comment, "schedule this run")
    asset = _body_asset(e, body.asset)
    _check_order(e, body.order_id)
    start, end = _planned(e, body.start, "start"), _planned(e, body.end, "end")
    run_id = body.id or f"S-{uuid.uuid4().hex[:12]}"
    run = _scheduled(run_id, body.order_id, asset, start, end)
    with conflicts_as_409():
        stored = schedule_repository(e.mes).add(
            run, _audited(e, user, "scheduled_run.added", comment)
        )
    return _out(e.mes, stored)


@router.patch(
    "/{run_id}",
    response_model=ScheduledRunOut,
    summary="Move a scheduled run or change its order (supervisor)",
    responses={409: {"description": "Overlaps another scheduled run on the asset"}},
)
def move_scheduled_run(
    request: Request, run_id: str, body: SchedulePatchIn, user: Supervisor, e: EditsDep
) -> ScheduledRunOut:
    comment = require_comment(body.comment, "change this scheduled run")
    if not body.model_fields_set - {"comment"}:
        raise HTTPException(422, "nothing to change: give order_id, start or end")
    repository = schedule_repository(e.mes)
    old = _stored(repository, run_id)
    order_id = old.order_id if body.order_id is None else body.order_id
    if order_id != old.order_id:
        _check_order(e, order_id)
    start = old.start_ms if body.start is None else _planned(e, body.start, "start")
    end = old.end_ms if body.end is None else _planned(e, body.end, "end")
    new = _scheduled(run_id, order_id, old.asset, start, end)
    if new == old:
        raise HTTPException(422, "nothing to change: the scheduled run already is so")
    with conflicts_as_409():
        _, stored = repository.edit(new, _audited(e, user, "scheduled_run.moved", comment))
    return _out(e.mes, stored)


@router.delete("/{run_id}", status_code=204, summary="Cancel a scheduled run (supervisor)")
def cancel_scheduled_run(
    request: Request, run_id: str, user: Supervisor, e: EditsDep, comment: str = ""
) -> Response:
    text = require_comment(comment, "cancel this scheduled run")
    repository = schedule_repository(e.mes)
    _stored(repository, run_id)
    with conflicts_as_409():
        repository.delete(run_id, _audited(e, user, "scheduled_run.cancelled", text))
    return Response(status_code=204)


@router.post(
    "/{run_id}/revert",
    response_model=ScheduledRunOut | None,
    summary="Undo the last audited change of a scheduled run (supervisor); null when removed",
)
def revert_scheduled_run(
    request: Request, run_id: str, body: RevertIn, user: Supervisor, e: EditsDep
) -> ScheduledRunOut | None:
    comment = require_comment(body.comment, "revert this change")
    last = last_audited_change(e, "scheduled_run", run_id, "scheduled run")
    restore = _from_json(last.before)
    note = revert_note(comment, last)
    hook = _audited(e, user, "scheduled_run.reverted", note, expect=last.after, entry=last.id)
    repository = schedule_repository(e.mes)
    with conflicts_as_409():
        if restore is None:
            repository.delete(run_id, hook)
            return None
        if last.after is None:
            return _out(e.mes, repository.add(restore, hook))
        return _out(e.mes, repository.edit(restore, hook)[1])
