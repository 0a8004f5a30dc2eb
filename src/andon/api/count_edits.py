"""Counts and audited count edits: ``GET /api/v1/assets/{path}/counts`` (per hour or shift),
``POST|GET /assets/{path}/counts/edits`` and ``POST /count-edits/{edit_id}/revert``.

A supervisor corrects the infeed, outfeed and waste of an asset over a period (``mode`` ``set``:
the period's new figures; ``add``: what to add; the rules are ``andon.domain.count_edits``). The
edit, its corrections, their effect on the rollups and the audit entry (entity ``count_edit``, id
the edit's number) are stored in one transaction. Invalid input is 404/422 and changes nothing;
reverting an edit twice, or one a later edit relies on, is 409.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from andon.api._edits import Edits, conflicts_as_409, edits, require_comment
from andon.api._time import iso_ms
from andon.api.auth import require_role
from andon.api.mes import _asset, _limit_query, _mes, _period
from andon.domain import AssetPath, CountEdit, CountEditError, CountEditMode
from andon.domain.users import Role, User
from andon.server.mes_count_edits import CountEditHook, CountEdits
from andon.server.mes_queries import Bucket, MesQueries
from andon.storage.audit import Transaction

__all__ = ["count_edit_json", "router"]

router = APIRouter(prefix="/api/v1", tags=["mes"])

Operator = Annotated[User, Depends(require_role(Role.OPERATOR))]
Supervisor = Annotated[User, Depends(require_role(Role.SUPERVISOR))]
EditsDep = Annotated[Edits, Depends(edits)]

_COMMENT = Field("", max_length=2000, description="Why; kept in the audit trail")
_TIME = "ISO 8601 instant or epoch ms"
_UNITS = 10**12  # far above any real count; keeps sums inside BIGINT
#: Count edit ids are 32-bit integers in the database.
EditId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The count edit's number")]


class CountBucketOut(BaseModel):
    start: str
    end: str
    start_ms: int
    end_ms: int
    label: str
    infeed: int
    outfeed: int
    waste: int
    good: int
    edited: bool


class CountEditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(description=f"{_TIME} (inclusive)")
    end: str = Field(description=f"{_TIME} (exclusive); not in the future")
    infeed: int | None = Field(None, ge=-_UNITS, le=_UNITS)
    outfeed: int | None = Field(None, ge=-_UNITS, le=_UNITS)
    waste: int | None = Field(None, ge=-_UNITS, le=_UNITS)
    mode: Literal["set", "add"] = Field(
        description="set: the period's new figures; add: what to add to them (may be negative)"
    )
    comment: str = _COMMENT


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = _COMMENT


class RequestedOut(BaseModel):
    infeed: int | None
    outfeed: int | None
    waste: int | None


class CountEditOut(BaseModel):
    id: int
    asset: str
    start: str
    end: str
    start_ms: int
    end_ms: int
    mode: str
    requested: RequestedOut
    infeed_delta: int
    outfeed_delta: int
    waste_delta: int
    user: str
    comment: str
    created: str
    created_ms: int
    in_force: bool
    reverted_ms: int | None
    reverted_by: str | None


def count_edit_json(edit: CountEdit) -> dict[str, Any]:
    """The edit as the audit trail keeps it."""
    infeed, outfeed, waste = edit.requested
    return {
        "id": edit.id,
        "asset": str(edit.asset),
        "start_ms": edit.start_ms,
        "end_ms": edit.end_ms,
        "mode": edit.mode.value,
        "requested": {"infeed": infeed, "outfeed": outfeed, "waste": waste},
        "infeed_delta": edit.change.infeed,
        "outfeed_delta": edit.change.outfeed,
        "waste_delta": edit.change.waste,
        "user": edit.username,
        "comment": edit.comment,
        "created_ms": edit.created_ms,
        "reverted_ms": edit.reverted_ms,
        "reverted_by": edit.reverted_by,
    }


def _out(edit: CountEdit) -> CountEditOut:
    values = count_edit_json(edit)
    return CountEditOut(
        **values,
        start=iso_ms(edit.start_ms),
        end=iso_ms(edit.end_ms),
        created=iso_ms(edit.created_ms),
        in_force=edit.active,
    )


def _audited(e: Edits, user: User, action: str, comment: str) -> CountEditHook:
    def hook(connection: Transaction, before: CountEdit | None, after: CountEdit) -> None:
        e.audit.record(
            user.username, action, "count_edit", str(after.id),
            None if before is None else count_edit_json(before), count_edit_json(after),
            comment, connection=connection,
        )  # fmt: skip

    return hook


def _bound(mes: MesQueries, path: str) -> AssetPath:
    asset = _asset(mes, path)
    if not mes.service.is_bound(asset):
        raise HTTPException(404, f"{asset} has no state tag, so no counts are kept for it")
    return asset


def _bucket(bucket: Bucket, edited: bool) -> CountBucketOut:
    a = bucket.account
    return CountBucketOut(
        start=iso_ms(bucket.start_ms),
        end=iso_ms(bucket.end_ms),
        start_ms=bucket.start_ms,
        end_ms=bucket.end_ms,
        label=bucket.label,
        infeed=a.total_count,
        outfeed=a.good_count,
        waste=a.reject_count,
        good=a.good_count,
        edited=edited,
    )


@router.get(
    "/assets/{path:path}/counts",
    response_model=list[CountBucketOut],
    summary="Infeed, outfeed and waste per hour or shift, corrections included",
)
def counts(
    request: Request,
    path: str,
    start: Annotated[str, Query(description=f"{_TIME} (inclusive)")],
    end: Annotated[str, Query(description=f"{_TIME} (exclusive)")],
    by: Annotated[Literal["hour", "shift"], Query(description="One bucket per ...")] = "hour",
) -> list[CountBucketOut]:
    mes = _mes(request)
    asset = _asset(mes, path)
    start_ms, end_ms = _period(start, end)
    _limit_query(mes, start_ms, end_ms, f"by={by}")
    buckets = mes.hourly(asset, start_ms, end_ms) if by == "hour" else mes.by_shift(
        asset, start_ms, end_ms
    )  # fmt: skip
    leaves = mes.leaves(asset)
    in_force = mes.service.edit_repository.edits(leaves, start_ms, end_ms, in_force=True)
    return [
        _bucket(b, any(x.start_ms < b.end_ms and b.start_ms < x.end_ms for x in in_force))
        for b in buckets
    ]


@router.post(
    "/assets/{path:path}/counts/edits",
    response_model=CountEditOut,
    status_code=201,
    summary="Correct infeed, outfeed or waste over a period (supervisor)",
)
def add_count_edit(
    request: Request, path: str, body: CountEditIn, user: Supervisor, e: EditsDep
) -> CountEditOut:
    comment = require_comment(body.comment, "correct these counts")
    asset = _bound(e.mes, path)
    start_ms, end_ms = e.period(body.start, body.end)
    hook = _audited(e, user, "count_edit.added", comment)
    requested = (body.infeed, body.outfeed, body.waste)
    with conflicts_as_409():
        try:
            edit = CountEdits(e.mes.service).add(
                asset, start_ms, end_ms, CountEditMode(body.mode), requested,
                user.username, comment, e.mes.now_ms(), hook,
            )  # fmt: skip
        except CountEditError as exc:  # the request itself is impossible: not a conflict
            raise HTTPException(422, str(exc)) from exc
    return _out(edit)


@router.get(
    "/assets/{path:path}/counts/edits",
    response_model=list[CountEditOut],
    summary="The count edits of an asset (and the assets below it), newest first",
)
def list_count_edits(request: Request, path: str) -> list[CountEditOut]:
    mes = _mes(request)
    asset = _asset(mes, path)
    return [_out(edit) for edit in mes.service.edit_repository.edits(mes.leaves(asset))]


@router.post(
    "/count-edits/{edit_id}/revert",
    response_model=CountEditOut,
    summary="Take a count edit back (supervisor)",
    responses={409: {"description": "Already reverted, or a later edit relies on it"}},
)
def revert_count_edit(
    request: Request, edit_id: EditId, body: RevertIn, user: Supervisor, e: EditsDep
) -> CountEditOut:
    comment = require_comment(body.comment, "revert this count edit")
    if e.mes.service.edit_repository.get_edit(edit_id) is None:
        raise HTTPException(404, f"no count edit {edit_id}")
    hook = _audited(e, user, "count_edit.reverted", comment)
    with conflicts_as_409():
        edit = CountEdits(e.mes.service).revert(edit_id, user.username, e.mes.now_ms(), hook)
    return _out(edit)
