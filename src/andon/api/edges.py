"""``/api/v1/edges``: edge nodes and devices as the host sees them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from andon.api._time import iso_ms_or_none
from andon.api.context import ApiContext
from andon.api.schemas import DeviceOut, EdgeNodeOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/edges", tags=["edges"])


@router.get("", response_model=list[EdgeNodeOut], summary="Edge nodes, devices and counters")
def edge_nodes(request: Request) -> list[EdgeNodeOut]:
    ctx: ApiContext = request.app.state.context
    return [
        EdgeNodeOut(
            group_id=node.group_id,
            edge_node_id=node.edge_node_id,
            online=node.online,
            bd_seq=node.bd_seq,
            last_birth=iso_ms_or_none(node.last_birth_ms),
            last_death=iso_ms_or_none(node.last_death_ms),
            last_seen=iso_ms_or_none(node.last_seen_ms),
            metric_count=node.metric_count,
            devices=[
                DeviceOut(
                    device_id=d.device_id,
                    online=d.online,
                    last_birth=iso_ms_or_none(d.last_birth_ms),
                    last_death=iso_ms_or_none(d.last_death_ms),
                    metric_count=d.metric_count,
                )
                for d in node.devices
            ],
            counters=node.counters,
            spool=node.spool,
        )
        for node in ctx.edges.nodes()
    ]
