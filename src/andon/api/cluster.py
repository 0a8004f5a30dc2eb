"""``GET /api/v1/cluster``: the redundancy picture as this node sees it (operator and up)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from andon.api.context import ApiContext

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])


@router.get(
    "",
    summary="Nodes (last seen), domains (holder, epoch, lease expiry, this node's role), lag",
)
def cluster(request: Request) -> dict[str, Any]:
    ctx: ApiContext = request.app.state.context
    if ctx.cluster_status is None:
        return {"clustered": False, "nodes": [], "domains": []}
    return {"clustered": True, **ctx.cluster_status()}
