"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from andon import __version__
from andon.api import (
    admin_plant,
    auth,
    cluster,
    count_edits,
    edges,
    enterprise,
    export,
    health,
    mes,
    mode_edits,
    run_edits,
    schedule,
    state_edits,
    tag_writes,
    tags,
    users,
)
from andon.api import live as live_events
from andon.api.auth import current_user
from andon.api.context import ApiContext
from andon.api.docs import mount_docs
from andon.api.write_guard import WriteGuard

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
        # Served by andon.api.docs behind the login instead of FastAPI's open defaults.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.context = context
    login = [Depends(current_user)]
    app.include_router(health.router)
    app.include_router(auth.router)
    # Reads need any logged-in user; writes check their role inside each router.
    app.include_router(tags.router, dependencies=login)
    app.include_router(tag_writes.router, dependencies=login)
    app.include_router(edges.router, dependencies=login)
    app.include_router(users.users_router, dependencies=login)
    app.include_router(users.audit_router, dependencies=login)
    app.include_router(mes.router, dependencies=login)
    app.include_router(run_edits.router, dependencies=login)
    app.include_router(schedule.router, dependencies=login)
    app.include_router(state_edits.router, dependencies=login)
    app.include_router(mode_edits.router, dependencies=login)
    app.include_router(count_edits.router, dependencies=login)
    app.include_router(export.router, dependencies=login)
    app.include_router(live_events.router, dependencies=login)
    app.include_router(cluster.router, dependencies=login)
    app.include_router(enterprise.router, dependencies=login)
    app.include_router(admin_plant.router, dependencies=login)
    if context.write_refusal is not None:  # a cluster node: writes only where it leads
        app.add_middleware(WriteGuard, context=context)
    mount_docs(app)
    mount_web(app)
    return app
