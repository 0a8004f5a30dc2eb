"""The plant overview (``/``) and its drill-down (``/plant/{path}``): the asset hierarchy as
tiles coloured by state, with time in state, current run and progress, and shift OEE.

States and timers change in place as the server pushes them (``static/live.js``); runs, counts
and figures are re-read every ``REFRESH_S`` through the tiles fragment. A server without a plant
file shows the machines view instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response

from andon.api.context import ApiContext
from andon.domain import Asset, AssetPath, DomainError
from andon.domain.users import User
from andon.server.mes_queries import MesQueries
from andon.web.access import PageAccess
from andon.web.machines import machines_page
from andon.web.plant_view import AssetTile, PageAccounts, asset_tile, orders_by_id
from andon.web.render import display_zone, render

__all__ = ["REFRESH_S", "mount_overview"]

OverviewUser = Annotated[User, Depends(PageAccess("/"))]
#: How often the tiles re-read runs, counts and figures (states are pushed as they change).
REFRESH_S = 20


def _roots(mes: MesQueries) -> list[Asset]:
    return [asset for asset in mes.service.plant.tree if asset.path.parent is None]


def _breadcrumb(mes: MesQueries, asset: Asset | None) -> list[tuple[str, str]]:
    if asset is None:
        return []
    tree = mes.service.plant.tree
    chain = [*reversed(tree.ancestors(asset.path)), asset]
    return [(a.name, f"/plant/{a.path}") for a in chain]


def _context(mes: MesQueries, asset: Asset | None) -> dict[str, Any]:
    """The tiles of an asset's children (of the roots for None) and its own summary tile."""
    now = mes.now_ms()
    orders = orders_by_id(mes)
    accounts = PageAccounts(mes)  # the summary sums the tiles' assets: read each once
    tree = mes.service.plant.tree
    if asset is None:
        members = [a.path for a in _roots(mes)]
        summary: AssetTile | None = None
    else:
        members = [a.path for a in tree.children(asset.path)] or [asset.path]
        summary = asset_tile(mes, asset.path, now, orders, accounts)
    return {
        "asset": asset,
        "summary": summary,
        "tiles": [asset_tile(mes, path, now, orders, accounts) for path in members],
        "breadcrumb": _breadcrumb(mes, asset),
        "refresh_s": REFRESH_S,
        "fragment_url": "/fragments/overview" + ("" if asset is None else f"?asset={asset.path}"),
        "asset_prefix": "" if asset is None else str(asset.path),
    }


def _page(request: Request, user: User, text: str, block: str | None) -> Response:
    ctx: ApiContext = request.app.state.context
    mes = ctx.mes
    if mes is None:
        return machines_page(request, user, block="machines" if block else None)
    asset: Asset | None = None
    if text.strip("/"):
        try:
            asset = mes.service.plant.tree.get(AssetPath.parse(text.strip("/")))
        except DomainError as exc:
            return render(
                request,
                "message.html",
                {"title": "No such asset", "message": str(exc)},
                user=user,
                status=404,
            )
    else:
        roots = _roots(mes)
        asset = roots[0] if len(roots) == 1 else None  # one site: open on its areas
    zone = display_zone(request, None if asset is None else asset.path)
    return render(request, "overview.html", _context(mes, asset), user=user, block=block, zone=zone)


def mount_overview(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview(request: Request, user: OverviewUser) -> Response:
        return _page(request, user, "", None)

    @app.get("/plant/{path:path}", response_class=HTMLResponse, include_in_schema=False)
    def plant(request: Request, path: str, user: OverviewUser) -> Response:
        return _page(request, user, path, None)

    @app.get("/fragments/overview", response_class=HTMLResponse, include_in_schema=False)
    def tiles(
        request: Request, user: OverviewUser, asset: Annotated[str, Query()] = ""
    ) -> Response:
        return _page(request, user, asset, "tiles")
