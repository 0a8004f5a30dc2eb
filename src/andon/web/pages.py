"""Server-rendered pages (Jinja2 + htmx, assets vendored: plant networks are offline).

``mount_web`` mounts the static files, the login and every page family; each family is its own
module registering its routes, with the role it needs in ``andon.web.access.WEB_PAGES``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from andon.web.access import PageRefused, is_fragment
from andon.web.admin import mount_admin
from andon.web.analysis import mount_analysis
from andon.web.csrf import CsrfGuard
from andon.web.login import login_redirect, mount_login
from andon.web.machines import mount_machines
from andon.web.operator import mount_operator
from andon.web.overview import mount_overview
from andon.web.render import forbidden, templates
from andon.web.supervisor import mount_supervisor
from andon.web.system import mount_system
from andon.web.tags import mount_tags

__all__ = ["mount_web", "templates"]

_HERE = Path(__file__).parent


async def _refused(request: Request, exc: Exception) -> Response:
    """Not logged in: the login page; logged in with too low a role: the friendly 403."""
    assert isinstance(exc, PageRefused)
    if exc.user is None:
        return login_redirect(request, fragment=is_fragment(request))
    return forbidden(request, exc.user, exc.page)


def mount_web(app: FastAPI) -> None:
    # Outermost: a forged cross-site write is refused before anything else runs.
    app.add_middleware(CsrfGuard)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    app.add_exception_handler(PageRefused, _refused)
    mount_login(app, templates)
    mount_overview(app)
    mount_machines(app)
    mount_operator(app)
    mount_tags(app)
    mount_system(app)
    mount_supervisor(app)
    mount_analysis(app)
    mount_admin(app)
