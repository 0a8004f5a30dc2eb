"""Audited mode change: ``PUT /api/v1/assets/{path}/mode`` (operator).

The mode says what an asset should be doing (production, changeover, maintenance, ...); it
decides how stops are accounted. An operator changes it from now on: the MES service applies it
as a mode sample at the current time, so the open interval ends and a new one starts with the
new mode, stored with its rollups and the audit entry (entity ``asset``, action
``asset.mode``) in one derived write. Where a mode tag is bound, the machine's next report of
its mode applies from its own timestamp, as any later change does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from andon.api._edits import Edits, conflicts_as_409, edits
from andon.api.auth import require_role
from andon.api.mes import IntervalOut, _asset
from andon.api.state_edits import _out
from andon.domain import IntervalBuilder, IntervalChanges, ModeSample
from andon.domain.users import Role, User
from andon.storage.audit import Transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/assets", tags=["mes"])

Operator = Annotated[User, Depends(require_role(Role.OPERATOR))]
EditsDep = Annotated[Edits, Depends(edits)]


class ModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str = Field(min_length=1, max_length=200, description="A mode of the plant file")
    comment: str = Field("", max_length=2000, description="Why; kept in the audit trail")


@router.put(
    "/{path:path}/mode",
    response_model=list[IntervalOut],
    summary="Change an asset's mode from now on (operator)",
    responses={409: {"description": "No state is known yet, or the data changed meanwhile"}},
)
def change_mode(
    request: Request, path: str, body: ModeIn, user: Operator, e: EditsDep
) -> list[IntervalOut]:
    asset = _asset(e.mes, path)
    service = e.mes.service
    if not service.is_bound(asset):
        raise HTTPException(404, f"{asset} has no state tag, so it has no mode")
    mode = service.plant.modes.get(body.mode.strip())
    if mode is None:
        names = ", ".join(sorted(service.plant.modes))
        raise HTTPException(422, f"mode: unknown mode {body.mode!r} (one of: {names})")
    current = service.current(asset)
    if current is None:
        raise HTTPException(409, f"no state of {asset} is known yet; a mode applies to states")
    if current.mode == mode:
        raise HTTPException(422, f"nothing to change: the mode already is {mode.name!r}")
    # Never before the open interval's start: a mode change does not rewrite the past.
    at_ms = max(e.mes.now_ms(), current.start_ms)
    comment = body.comment.strip()

    def hook(connection: Transaction, changes: IntervalChanges) -> None:
        e.audit.record(
            user.username, "asset.mode", "asset", str(asset), {"mode": current.mode.name},
            {"mode": mode.name, "from_ms": at_ms}, comment, connection=connection,
        )  # fmt: skip

    def apply(builder: IntervalBuilder) -> IntervalChanges:
        return builder.apply(modes=[ModeSample(at_ms, mode)])

    with conflicts_as_409():
        changes = service.edit_intervals(asset, apply, hook)
    if changes.is_empty:  # the machine reported the same mode meanwhile
        raise HTTPException(409, f"the mode of {asset} changed meanwhile; nothing was changed")
    return _out(e, asset, changes.added)
