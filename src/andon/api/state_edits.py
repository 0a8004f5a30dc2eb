"""Audited downtime edits: ``PUT /api/v1/assets/{path}/states/{start_ms}/reason`` (operator),
``POST /api/v1/assets/{path}/states/{start_ms}/split``, ``POST /api/v1/assets/{path}/states``
(add a missed stop) and ``POST .../states/{start_ms}/revert`` (supervisor, with a comment).

Adding a state over [start, end) replaces the derived intervals it covers and cuts one it covers
in part at its edges (the domain's rule, ``IntervalBuilder.add_override``): the PLC's data stays
in the history underneath and shows again when the added state is reverted, with the reasons
the covered stops had. It may not overlap another added state nor cover a manual split (409).

The interval is named by its asset and start (as ``GET .../states`` lists it). The change, its
rollup increments and the audit entry (entity ``state_interval``, id ``<asset>@<start_ms>``) are
one derived write of the single writer; the answer comes once it is stored. Invalid input is
404/422 and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from andon.api._edits import (
    Edits,
    conflicts_as_409,
    edits,
    require_comment,
    revert_note,
)
from andon.api._time import iso_ms, iso_ms_or_none
from andon.api.auth import require_role
from andon.api.mes import IntervalOut, _asset
from andon.api.timeparse import MAX_INSTANT_MS, MIN_INSTANT_MS
from andon.domain import (
    AssetPath,
    DomainError,
    IntervalBuilder,
    IntervalChanges,
    StateInterval,
    StateOverride,
    StateType,
)
from andon.domain.users import Role, User
from andon.server.mes_service import IntervalHook
from andon.storage.audit import AuditEntry, Transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/assets", tags=["mes"])

Operator = Annotated[User, Depends(require_role(Role.OPERATOR))]
Supervisor = Annotated[User, Depends(require_role(Role.SUPERVISOR))]
EditsDep = Annotated[Edits, Depends(edits)]

_COMMENT = Field("", max_length=2000, description="Why; kept in the audit trail")
#: An interval's start (epoch ms) in the path: bounded like every instant of the API.
StartMs = Annotated[
    int,
    Path(ge=MIN_INSTANT_MS, le=MAX_INSTANT_MS, description="The interval's start, epoch ms"),
]


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


class AddStateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(description="ISO 8601 instant or epoch ms (inclusive)")
    end: str = Field(description="ISO 8601 instant or epoch ms (exclusive); not in the future")
    state: int | str = Field(description="A state of the asset's state map: its code or name")
    reason: str | None = Field(None, description="A reason id; default: the state's own")
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


def _audited(
    e: Edits,
    user: User,
    action: str,
    entity_id: str,
    comment: str,
    also: Callable[[Transaction], None] | None = None,
) -> IntervalHook:
    """The audit entry (and ``also``, the edit's own record) in the change's transaction."""

    def hook(connection: Transaction, changes: IntervalChanges) -> None:
        if also is not None:
            also(connection)
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
    request: Request, path: str, start_ms: StartMs, body: ReasonIn, user: Operator, e: EditsDep
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
    request: Request, path: str, start_ms: StartMs, body: SplitIn, user: Supervisor, e: EditsDep
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
    summary="Undo the last audited reason change, split or added state (supervisor)",
)
def revert_interval(
    request: Request, path: str, start_ms: StartMs, body: RevertIn, user: Supervisor, e: EditsDep
) -> list[IntervalOut]:
    comment = require_comment(body.comment, "revert this change")
    asset = _asset(e.mes, path)
    entity_id = f"{asset}@{start_ms}"
    entries = e.audit.list(entity="state_interval", entity_id=entity_id, limit=1)
    if not entries or not e.mes.service.is_bound(asset):
        raise HTTPException(404, f"no audited change of the state interval {entity_id}")
    last = entries[0]
    if last.action == ADDED:
        return _remove_added(e, user, asset, start_ms, last, comment)
    before, after = last.before, last.after
    if last.action == ADDED_REVERTED or after is None or before is None or "intervals" in before:
        raise HTTPException(422, f"audit entry {last.id} ({last.action}) cannot be reverted")
    parts = after.get("intervals", [after])
    previous = before.get("reason_id")

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

    note = revert_note(comment, last)
    hook = _audited(e, user, "state_interval.reverted", entity_id, note)
    with conflicts_as_409():
        changes = e.mes.service.edit_intervals(asset, undo, hook, since_ms=start_ms)
    return _out(e, asset, changes.added)


# -- add a missed stop ------------------------------------------------------------------------

ADDED = "state_interval.added"
#: The revert of an added state; not revertible itself (add the state again instead).
ADDED_REVERTED = "state_interval.added_reverted"


def _state_code(e: Edits, asset: AssetPath, state: int | str) -> int:
    definitions = e.mes.service.plant.state_maps[asset].definitions
    text = str(state).strip()
    if text.lstrip("-").isdigit() and int(text) in definitions:
        return int(text)
    for code, definition in definitions.items():
        if definition.name.casefold() == text.casefold():
            return code
    known = ", ".join(f"{c} {d.name}" for c, d in sorted(definitions.items()))
    raise HTTPException(422, f"state: {state!r} is not a state of {asset} (known: {known})")


@router.post(
    "/{path:path}/states",
    response_model=list[IntervalOut],
    status_code=201,
    summary="Add a state by hand over a period, e.g. a missed stop (supervisor)",
    responses={409: {"description": "Overlaps another added state or covers a manual split"}},
)
def add_state(
    request: Request, path: str, body: AddStateIn, user: Supervisor, e: EditsDep
) -> list[IntervalOut]:
    comment = require_comment(body.comment, "add this state")
    asset = _asset(e.mes, path)
    service = e.mes.service
    if not service.is_bound(asset):
        raise HTTPException(404, f"{asset} has no state tag")
    start_ms, end_ms = e.period(body.start, body.end)
    code = _state_code(e, asset, body.state)
    definition = service.plant.state_maps[asset].resolve(code)
    reason = body.reason
    if reason is not None:
        if reason not in service.plant.reasons:
            raise HTTPException(422, f"reason: unknown reason {reason!r}")
        if definition.type is StateType.RUNNING:
            raise HTTPException(422, "reason: reasons apply to stops; this state is running")
    added = StateOverride(start_ms, end_ms, code)
    now = e.mes.now_ms()

    def store(connection: Transaction) -> None:
        service.edit_repository.insert_added_state(
            connection, asset, added, reason, user.username, now
        )

    def add(builder: IntervalBuilder) -> IntervalChanges:
        changes = builder.add_override(added)
        if reason is None or reason == definition.default_reason:
            return changes
        try:
            return changes.then(builder.assign_reason(start_ms, reason))
        except DomainError:
            builder.remove_override(start_ms)  # nothing is written: memory stays as stored
            raise

    entity_id = f"{asset}@{start_ms}"
    hook = _audited(e, user, ADDED, entity_id, comment, also=store)
    with conflicts_as_409():
        changes = service.edit_intervals(asset, add, hook, since_ms=start_ms)
    return _out(e, asset, changes.added)


def _remove_added(
    e: Edits, user: User, asset: AssetPath, start_ms: int, last: AuditEntry, comment: str
) -> list[IntervalOut]:
    """Revert an added state: the PLC's intervals show again, with the reasons they had."""
    service = e.mes.service
    covered = last.before or {}
    reasons = {
        (iv["start_ms"], iv["code"]): iv["reason_id"]
        for iv in covered.get("intervals", [covered] if covered else [])
    }

    def undo(builder: IntervalBuilder) -> IntervalChanges:
        found = builder.override_at(start_ms)
        if found is None or found.start_ms != start_ms:
            raise DomainError(
                f"no state added by hand starts at {start_ms} any more; nothing was reverted"
            )
        changes = builder.remove_override(start_ms)
        for (start, code), reason_id in sorted(reasons.items()):
            now = builder.interval_at(start)
            if (
                now is not None
                and (now.start_ms, now.code) == (start, code)
                and now.reason_id != reason_id
                and now.state_type is not StateType.RUNNING
            ):
                changes = changes.then(builder.assign_reason(start, reason_id))
        return changes

    def delete(connection: Transaction) -> None:
        service.edit_repository.delete_added_state(connection, asset, start_ms)

    note = revert_note(comment, last)
    hook = _audited(e, user, ADDED_REVERTED, f"{asset}@{start_ms}", note, also=delete)
    with conflicts_as_409():
        changes = service.edit_intervals(asset, undo, hook, since_ms=start_ms)
    return _out(e, asset, changes.added)
