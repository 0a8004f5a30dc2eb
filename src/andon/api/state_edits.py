"""Audited downtime edits: ``PUT /api/v1/assets/{path}/states/{start_ms}/reason`` (operator) and
``POST /api/v1/assets/{path}/states/{start_ms}/split`` (supervisor, with a comment).

The interval is named by its asset and start (as ``GET .../states`` lists it). The change, its
rollup increments and the audit entry (entity ``state_interval``, id ``<asset>@<start_ms>``) are
one derived write of the single writer; the answer comes once it is stored. Invalid input is
404/422 and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from andon.api._edits import Edits, conflicts_as_409, edits, require_comment
from andon.api._time import iso_ms, iso_ms_or_none
from andon.api.auth import require_role
from andon.api.mes import IntervalOut, _asset
from andon.domain import (
    AssetPath,
    DomainError,
    IntervalBuilder,
    IntervalChanges,
    StateInterval,
    StateType,
)
from andon.domain.users import Role, User
from andon.server.mes_service import IntervalHook
from andon.storage.audit import Transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/assets", tags=["mes"])

Operator = Annotated[User, Depends(require_role(Role.OPERATOR))]
Supervisor = Annotated[User, Depends(require_role(Role.SUPERVISOR))]
EditsDep = Annotated[Edits, Depends(edits)]

_COMMENT = Field("", max_length=2000, description="Why; kept in the audit trail")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason_id: str | None = Field(description="A reason id of the plant; null: the default")
    comment: str = _COMMENT


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = _COMMENT


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: str = Field(description="ISO 8601 instant or epoch ms strictly inside the interval")
    comment: str = _COMMENT


def interval_json(interval: StateInterval) -> dict[str, Any]:
    return {
        "asset": str(interval.asset),
        "start_ms": interval.start_ms,
        "end_ms": interval.end_ms,
        "code": interval.code,
        "state_type": interval.state_type.value,
        "mode": interval.mode.name,
        "reason_id": interval.reason_id,
    }


def _interval(e: Edits, path: str, start_ms: int) -> StateInterval:
    asset = _asset(e.mes, path)
    if not e.mes.service.is_bound(asset):
        raise HTTPException(404, f"{asset} has no state tag")
    interval = e.mes.service.interval_at(asset, start_ms)
    if interval is None or interval.start_ms != start_ms:
        raise HTTPException(404, f"{asset}: no state interval starts at {start_ms}")
    return interval


def _out(e: Edits, asset: AssetPath, intervals: tuple[StateInterval, ...]) -> list[IntervalOut]:
    state_map = e.mes.service.plant.state_maps[asset]
    return [
        IntervalOut(
            start=iso_ms(iv.start_ms),
            end=iso_ms_or_none(iv.end_ms),
            start_ms=iv.start_ms,
            end_ms=iv.end_ms,
            code=iv.code,
            name=state_map.resolve(iv.code).name,
            state_type=iv.state_type.value,
            mode=iv.mode.name,
            reason_id=iv.reason_id,
        )
        for iv in sorted(intervals, key=lambda iv: iv.start_ms)
    ]


def _json(intervals: tuple[StateInterval, ...]) -> dict[str, Any] | None:
    parts = sorted(intervals, key=lambda iv: iv.start_ms)
    if len(parts) == 1:
        return interval_json(parts[0])
    return {"intervals": [interval_json(iv) for iv in parts]} if parts else None


def _audited(e: Edits, user: User, action: str, entity_id: str, comment: str) -> IntervalHook:
    def hook(connection: Transaction, changes: IntervalChanges) -> None:
        e.audit.record(
            user.username, action, "state_interval", entity_id, _json(changes.removed),
            _json(changes.added), comment, connection=connection,
        )  # fmt: skip

    return hook


@router.put(
    "/{path:path}/states/{start_ms}/reason",
    response_model=list[IntervalOut],
    summary="Give a stop its reason, or change it (operator); null restores the default",
)
def assign_reason(
    request: Request, path: str, start_ms: int, body: ReasonIn, user: Operator, e: EditsDep
) -> list[IntervalOut]:
    interval = _interval(e, path, start_ms)
    reasons = e.mes.service.plant.reasons
    if body.reason_id is not None and body.reason_id not in reasons:
        raise HTTPException(422, f"reason_id: unknown reason {body.reason_id!r}")
    if interval.state_type is StateType.RUNNING:
        raise HTTPException(422, "reasons apply to stops; this interval is running time")
    default = e.mes.service.plant.state_maps[interval.asset].resolve(interval.code).default_reason
    wanted = body.reason_id if body.reason_id is not None else default
    if wanted == interval.reason_id:
        raise HTTPException(422, f"nothing to change: the reason already is {wanted!r}")
    entity_id = f"{interval.asset}@{start_ms}"
    hook = _audited(e, user, "state_interval.reason", entity_id, body.comment.strip())
    with conflicts_as_409():
        changes = e.mes.service.assign_reason(interval.asset, start_ms, body.reason_id, hook)
    return _out(e, interval.asset, changes.added)


@router.post(
    "/{path:path}/states/{start_ms}/split",
    response_model=list[IntervalOut],
    summary="Split a state interval in two at a time inside it (supervisor)",
)
def split_interval(
    request: Request, path: str, start_ms: int, body: SplitIn, user: Supervisor, e: EditsDep
) -> list[IntervalOut]:
    comment = require_comment(body.comment, "split this interval")
    interval = _interval(e, path, start_ms)
    at_ms = e.instant(body.at, "at")
    if not (start_ms < at_ms and (interval.end_ms is None or at_ms < interval.end_ms)):
        raise HTTPException(422, f"at: {body.at!r} is not strictly inside the interval")
    hook = _audited(e, user, "state_interval.split", f"{interval.asset}@{start_ms}", comment)
    with conflicts_as_409():
        changes = e.mes.service.split_interval(interval.asset, at_ms, hook)
    return _out(e, interval.asset, changes.added)


@router.post(
    "/{path:path}/states/{start_ms}/revert",
    response_model=list[IntervalOut],
    summary="Undo the last audited reason change or split of an interval (supervisor)",
)
def revert_interval(
    request: Request, path: str, start_ms: int, body: RevertIn, user: Supervisor, e: EditsDep
) -> list[IntervalOut]:
    comment = require_comment(body.comment, "revert this change")
    asset = _asset(e.mes, path)
    entity_id = f"{asset}@{start_ms}"
    entries = e.audit.list(entity="state_interval", entity_id=entity_id, limit=1)
    if not entries or not e.mes.service.is_bound(asset):
        raise HTTPException(404, f"no audited change of the state interval {entity_id}")
    last = entries[0]
    if last.after is None or last.before is None or "intervals" in last.before:
        raise HTTPException(422, f"audit entry {last.id} ({last.action}) cannot be reverted")
    parts = last.after.get("intervals", [last.after])
    previous = last.before.get("reason_id")

    def undo(builder: IntervalBuilder) -> IntervalChanges:
        # Under the service's lock: the parts must still be as the entry left them.
        for part in parts:
            now = builder.interval_at(part["start_ms"])
            if now is None or (now.start_ms, now.reason_id) != (
                part["start_ms"],
                part["reason_id"],
            ):
                raise DomainError(
                    f"{asset}@{part['start_ms']} changed after audit entry {last.id}; "
                    "revert that change first"
                )
        if last.action == "state_interval.split":
            return builder.merge(parts[-1]["start_ms"])
        return builder.assign_reason(start_ms, previous)

    note = f"{comment} (reverts audit entry {last.id}, {last.action})"
    hook = _audited(e, user, "state_interval.reverted", entity_id, note)
    with conflicts_as_409():
        changes = e.mes.service.edit_intervals(asset, undo, hook)
    return _out(e, asset, changes.added)
