"""The machines view: live tags grouped by edge node and device, without a plant file.

The plant overview shows assets from the plant file; a server without one (or a device no asset
binds) still has machines worth seeing, so the overview falls back to this view.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from andon.api.context import ApiContext
from andon.domain.users import User
from andon.server.live_tags import LiveTag
from andon.web.access import PageAccess
from andon.web.render import render

__all__ = ["DeviceCard", "group_devices", "machines_page", "mount_machines"]

OverviewUser = Annotated[User, Depends(PageAccess("/"))]


@dataclass(slots=True)
class DeviceCard:
    """One machine on the overview: its live metrics, state first."""

    node: str
    device: str
    online: bool = True
    tags: list[LiveTag] = field(default_factory=list)

    @property
    def state(self) -> LiveTag | None:
        for tag in self.tags:
            if tag.path.endswith("/State/Name"):
                return tag
        for tag in self.tags:
            if tag.path.endswith("/State/Code"):
                return tag
        return None


def group_devices(
    tags: list[LiveTag], devices: Collection[tuple[str, str]] | None = None
) -> dict[str, list[DeviceCard]]:
    """Group live tags as edge node -> machine cards (device metrics only).

    A path alone cannot tell a device metric from a node metric whose name contains ``/``
    (``Group/Node/Andon/Spool/Depth``), so ``devices`` -- the ("group/node", device id) pairs
    that sent a DBIRTH -- decides when given.
    """
    cards: dict[tuple[str, str], DeviceCard] = {}
    for tag in tags:
        parts = tag.path.split("/")
        if len(parts) < 4:
            continue  # node metrics (bdSeq, spool figures) are on the system view
        node = f"{parts[0]}/{parts[1]}"
        key = (node, parts[2])
        if devices is not None and key not in devices:
            continue  # a node metric with '/' in its name, e.g. Andon/Spool/Depth
        card = cards.get(key)
        if card is None:
            card = cards[key] = DeviceCard(node=node, device=parts[2])
        card.tags.append(tag)
        card.online = card.online and not tag.stale
    grouped: dict[str, list[DeviceCard]] = defaultdict(list)
    for (node, _), card in sorted(cards.items()):
        grouped[node].append(card)
    return dict(grouped)


def machines_page(request: Request, user: User, block: str | None = None) -> Response:
    ctx: ApiContext = request.app.state.context
    edges = ctx.edges.nodes()
    known = {(f"{n.group_id}/{n.edge_node_id}", d.device_id) for n in edges for d in n.devices}
    groups = group_devices(ctx.live_tags.snapshot(), known)
    return render(
        request, "machines.html", {"groups": groups, "edges": edges}, user=user, block=block
    )


def mount_machines(app: FastAPI) -> None:
    @app.get("/fragments/machines", response_class=HTMLResponse, include_in_schema=False)
    def machines_fragment(request: Request, user: OverviewUser) -> Response:
        return machines_page(request, user, block="machines")
