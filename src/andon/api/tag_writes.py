"""``POST /api/v1/tags/write``: an engineer writes a value to a tag of the equipment.

The server checks the tag against its birth before anything is sent (404 unknown, 422 read-only
or a value of the wrong type, 409 edge node or device offline, 503 no broker connection), sends
the DCMD and waits, bounded by ``tag_write_timeout_s``, for the edge's answer. The answer is
200 with ``result`` written, rejected (the edge refused it, ``error`` says why) or timeout
(no answer, or the edge could not tell whether the equipment took it).

Every write that is sent is audited *before* it goes out (entity ``tag``, action
``tag.write_requested``: who, when, the tag, the value before, the requested value, the fence
epoch and the comment): when the audit trail cannot take it, nothing is sent and the answer is
503. The outcome is recorded after the answer (action ``tag.write``, with the result); if that
entry cannot be written the request's entry stands, the outcome is logged and ``audit_id`` is
null.
"""

from __future__ import annotations

import base64
import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from andon.api.auth import require_role
from andon.api.context import ApiContext
from andon.domain.users import Role, User
from andon.server.cluster_errors import NotLeaderTagWriteError
from andon.server.tag_writes import (
    BeforeSend,
    NoBrokerOnlineError,
    TagNotWritableError,
    TagOfflineError,
    TagValueError,
    TagWriteError,
    TagWriteOutcome,
    UnknownTagError,
)

__all__ = ["TagWriteIn", "TagWriteOut", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/tags", tags=["tags"])

Engineer = Annotated[User, Depends(require_role(Role.ENGINEER))]

_STATUS: dict[type[TagWriteError], int] = {
    UnknownTagError: 404,
    TagNotWritableError: 422,
    TagValueError: 422,
    TagOfflineError: 409,
    NoBrokerOnlineError: 503,
    NotLeaderTagWriteError: 409,  # a passive cluster node: the message names the active one
}


class TagWriteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1, max_length=1000, description="Tag path: group/edge node/device/metric"
    )
    value: Any = Field(description="New value: a boolean, number or string fitting the datatype")
    comment: str = Field("", max_length=2000, description="Why; kept in the audit trail")


class TagWriteOut(BaseModel):
    path: str
    requested: Any = Field(description="The value sent, as the tag's datatype")
    result: str = Field(description="written, rejected (by the edge) or timeout")
    value: Any = Field(description="The tag's value afterwards: the echo, else its live value")
    previous: Any = Field(description="The tag's value before the write")
    error: str | None = Field(None, description="Why it was rejected or not confirmed")
    fence_epoch: int | None = Field(None, description="Cluster epoch the command carried")
    request_audit_id: int = Field(description="Audit entry of the request, written before sending")
    audit_id: int | None = Field(
        None, description="Audit entry of the outcome; null if it could not be written"
    )


class _AuditUnavailableError(Exception):
    """The request's audit entry could not be written: the write must not be sent."""


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return [_json(item) for item in value]
    return value


def _audit_request(
    ctx: ApiContext, user: User, path: str, comment: str, request_ids: list[int]
) -> BeforeSend:
    """The writer's ``before_send``: the request's audit entry, or no write at all."""

    def record(previous: Any, requested: Any, epoch: int | None) -> None:
        try:
            request_ids.append(
                ctx.users.audit.record(
                    user.username,
                    "tag.write_requested",
                    "tag",
                    path,
                    {"value": _json(previous)},
                    {"requested": _json(requested), "fence_epoch": epoch},
                    comment,
                )
            )
        except Exception as exc:
            log.exception("audit trail unavailable: the write of %s was not sent", path)
            raise _AuditUnavailableError(str(exc)) from exc

    return record


def _audit(ctx: ApiContext, user: User, outcome: TagWriteOutcome, comment: str) -> int | None:
    """The audit entry of a write's outcome; None (logged) if the database refused it."""
    after = {
        "requested": _json(outcome.requested),
        "result": outcome.result,
        "value": _json(outcome.value),
        "error": outcome.error,
        "fence_epoch": outcome.fence_epoch,
    }
    try:
        return ctx.users.audit.record(
            user.username,
            "tag.write",
            "tag",
            outcome.path,
            {"value": _json(outcome.previous)},
            after,
            comment,
        )
    except Exception:  # the write was sent already: the request's entry and the log keep it
        log.exception(
            "audit trail unavailable: %s wrote %s = %r (%s, before %r, comment %r)",
            user.username,
            outcome.path,
            outcome.requested,
            outcome.result,
            outcome.previous,
            comment,
        )
        return None


@router.post(
    "/write",
    response_model=TagWriteOut,
    summary="Write a value to a tag of the equipment (engineer and up)",
    responses={
        404: {"description": "No such tag"},
        409: {"description": "Edge node or device offline: nothing was sent"},
        422: {"description": "Read-only tag or a value of the wrong type: nothing was sent"},
        503: {
            "description": "No broker connection online, writes unavailable, or the audit "
            "trail unavailable: nothing was sent"
        },
    },
)
def write_tag(body: TagWriteIn, request: Request, user: Engineer) -> TagWriteOut:
    ctx: ApiContext = request.app.state.context
    if ctx.write_tag is None:
        raise HTTPException(503, "this server does not write to equipment")
    comment = body.comment.strip()
    request_ids: list[int] = []
    try:
        outcome = ctx.write_tag(
            body.path,
            body.value,
            before_send=_audit_request(ctx, user, body.path, comment, request_ids),
        )
    except TagWriteError as exc:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 422)
        raise HTTPException(status, str(exc)) from exc
    except _AuditUnavailableError as exc:
        raise HTTPException(
            503, "the audit trail is unavailable: nothing was sent; try again shortly"
        ) from exc
    return TagWriteOut(
        path=outcome.path,
        requested=_json(outcome.requested),
        result=outcome.result,
        value=_json(outcome.value),
        previous=_json(outcome.previous),
        error=outcome.error,
        fence_epoch=outcome.fence_epoch,
        request_audit_id=request_ids[0],
        audit_id=_audit(ctx, user, outcome, comment),
    )
