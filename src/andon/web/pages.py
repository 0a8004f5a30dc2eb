"""Server-rendered pages (Jinja2 + htmx, assets vendored: plant networks are offline)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2_fragments.fastapi import Jinja2Blocks

from andon.domain.users import User
from andon.server.live_tags import LiveTag
from andon.web.login import login_redirect, mount_login, page_user

__all__ = ["DeviceCard", "group_devices", "mount_web"]

_HERE = Path(__file__).parent
templates = Jinja2Blocks(directory=str(_HERE / "templates"))


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


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if value is None:
        return "null"
    return str(value)


def _fmt_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M:%S UTC")


templates.env.filters["value"] = _fmt_value
templates.env.filters["clock"] = _fmt_time


def mount_web(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")

    mount_login(app, templates)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def machines_page(request: Request) -> Response:
        user = page_user(request)
        if user is None:
            return login_redirect(request, fragment=False)
        return _render(request, user, block=None)

    @app.get("/fragments/machines", response_class=HTMLResponse, include_in_schema=False)
    def machines_fragment(request: Request) -> Response:
        user = page_user(request)
        if user is None:
            return login_redirect(request, fragment=True)
        return _render(request, user, block="machines")


def _render(request: Request, user: User, block: str | None) -> Response:
    ctx = request.app.state.context
    edges = ctx.edges.nodes()
    known = {(f"{n.group_id}/{n.edge_node_id}", d.device_id) for n in edges for d in n.devices}
    groups = group_devices(ctx.live_tags.snapshot(), known)
    context = {"groups": groups, "site_name": ctx.site_name, "edges": edges, "user": user}
    if block is None:
        return templates.TemplateResponse(request, "machines.html", context)
    return templates.TemplateResponse(request, "machines.html", context, block_name=block)
