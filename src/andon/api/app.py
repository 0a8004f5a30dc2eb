"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from andon import __version__
from andon.api import auth, edges, export, health, mes, run_edits, state_edits, tags, users
from andon.api.auth import current_user
from andon.api.context import ApiContext

__all__ = ["OPEN_PATHS", "create_app"]

#: The only /api/v1 paths answered without a login: a health probe and the login itself.
OPEN_PATHS = frozenset({"/api/v1/health", "/api/v1/auth/token"})


def create_app(context: ApiContext) -> FastAPI:
    from andon.web.pages import mount_web

    app = FastAPI(
        title="Andon",
        version=__version__,
        description=(
            "Andon MES: live tags, history, edge diagnostics, users and audit trail. "
            "Log in with POST /api/v1/auth/token and send `Authorization: Bearer <token>`."
        ),
    )
    app.state.context = context
    login = [Depends(current_user)]
    app.include_router(health.router)
    app.include_router(auth.router)
    # Reads need any logged-in user; writes check their role inside each router.
    app.include_router(tags.router, dependencies=login)
    app.include_router(edges.router, dependencies=login)
    app.include_router(users.users_router, dependencies=login)
    app.include_router(users.audit_router, dependencies=login)
    app.include_router(mes.router, dependencies=login)
    app.include_router(run_edits.router, dependencies=login)
    app.include_router(state_edits.router, dependencies=login)
    app.include_router(export.router, dependencies=login)
    mount_web(app)
    return app
