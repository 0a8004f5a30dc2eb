"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from andon import __version__
from andon.api import edges, health, tags
from andon.api.context import ApiContext

__all__ = ["create_app"]


def create_app(context: ApiContext) -> FastAPI:
    from andon.web.pages import mount_web

    app = FastAPI(
        title="Andon",
        version=__version__,
        description="Andon MES: live tags, history, edge diagnostics.",
    )
    app.state.context = context
    app.include_router(health.router)
    app.include_router(tags.router)
    app.include_router(edges.router)
    mount_web(app)
    return app
