"""The system page (``/system``, engineers and admins): the running architecture as a diagram --
edge nodes and their devices online or offline with their store-and-forward backlogs, the
brokers, this server and its queues, the database -- from the same sources as
``/api/v1/edges`` and ``/api/v1/health``, so the state of inactive components is visible.

Cluster information (nodes, domains, leases, epochs) is shown when the server provides
``ApiContext.cluster_status``; its document is rendered as it comes (tables of its lists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from andon.api.context import ApiContext
from andon.domain.users import User
from andon.server.edge_registry import EdgeNodeView
from andon.web.access import PageAccess
from andon.web.render import render

__all__ = ["REFRESH_S", "EdgeBox", "edge_box", "mount_system"]

SystemUser = Annotated[User, Depends(PageAccess("/system"))]
REFRESH_S = 5


@dataclass(slots=True)
class EdgeBox:
    name: str
    online: bool
    last_seen_ms: int | None
    devices: list[tuple[str, bool]]
    #: Values waiting in the edge's store-and-forward spool (None: the edge does not report it).
    backlog_values: int | None
    backlog_records: int | None
    oldest_ms: int | None
    dropped_values: int | None
    flushing: bool
    problems: dict[str, int] = field(default_factory=dict)


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def edge_box(node: EdgeNodeView) -> EdgeBox:
    spool = node.spool
    oldest = _int(spool.get("OldestMs"))
    return EdgeBox(
        name=f"{node.group_id}/{node.edge_node_id}",
        online=node.online,
        last_seen_ms=node.last_seen_ms,
        devices=[(d.device_id, d.online) for d in node.devices],
        backlog_values=_int(spool.get("Values")),
        backlog_records=_int(spool.get("Records")),
        oldest_ms=oldest or None,  # 0: the spool is empty
        dropped_values=_int(spool.get("DroppedValues")),
        flushing=bool(spool.get("Flushing")),
        problems={kind: n for kind, n in node.counters.items() if n},
    )


def _context(ctx: ApiContext) -> dict[str, Any]:
    health = ctx.health()
    mqtt = health.get("mqtt", {})
    brokers = mqtt.get("brokers")
    cluster = ctx.cluster_status() if ctx.cluster_status is not None else None
    return {
        "edges": [edge_box(node) for node in ctx.edges.nodes()],
        "brokers": dict(brokers) if isinstance(brokers, dict) else {},
        "mqtt_ok": bool(mqtt.get("ok")),
        "host_id": mqtt.get("host_id", "server"),
        "health": health,
        "database": health.get("database", {}),
        "historian": health.get("historian", {}),
        "ingest": health.get("ingest", {}),
        "others": {k: v for k, v in health.items() if k not in _SHOWN},
        "live_clients": None if ctx.live is None else ctx.live.client_count,
        "cluster": cluster,
        "refresh_s": REFRESH_S,
    }


_SHOWN = frozenset({"mqtt", "database", "historian", "ingest"})


def mount_system(app: FastAPI) -> None:
    @app.get("/system", response_class=HTMLResponse, include_in_schema=False)
    def system_page(request: Request, user: SystemUser) -> Response:
        return render(request, "system.html", _context(request.app.state.context), user=user)

    @app.get("/fragments/system", response_class=HTMLResponse, include_in_schema=False)
    def system_fragment(request: Request, user: SystemUser) -> Response:
        context = _context(request.app.state.context)
        return render(request, "system.html", context, user=user, block="diagram")
