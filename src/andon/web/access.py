"""Who may open which page: one table, used for the navigation and enforced on every request.

A page family registers its routes with ``PageAccess("/path")`` as a dependency (or calls
``page_guard``); a user without the page's role gets a friendly 403 page, a visitor without a
login the login page (htmx fragments: 401 with ``HX-Redirect``). The navigation shows an entry
only to the roles allowed to open it, and only once its page is mounted, so a page family added
later appears by mounting its routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Route

from andon.domain.users import Role, User
from andon.web.login import login_redirect, page_user

__all__ = [
    "WEB_PAGES",
    "PageAccess",
    "PageRefused",
    "WebPage",
    "is_fragment",
    "nav_pages",
    "page_for",
    "page_guard",
]


@dataclass(frozen=True, slots=True)
class WebPage:
    """A page family: its entry in the navigation, and the role needed for every route
    under ``path`` (``/operator/...`` needs the role of ``/operator``)."""

    path: str
    label: str
    role: Role


#: The navigation in display order. The single place that says which role opens which page.
WEB_PAGES: tuple[WebPage, ...] = (
    WebPage("/", "Overview", Role.OPERATOR),
    WebPage("/operator", "Operator", Role.OPERATOR),
    WebPage("/supervisor", "Supervisor", Role.SUPERVISOR),
    WebPage("/analysis", "Analysis", Role.OPERATOR),
    WebPage("/tags", "Tags", Role.OPERATOR),
    WebPage("/system", "System", Role.ENGINEER),
    WebPage("/admin", "Admin", Role.ADMIN),
)
_BY_PATH = {page.path: page for page in WEB_PAGES}


def page_for(path: str) -> WebPage:
    """The table entry of a page family; a KeyError names a page missing from the table."""
    return _BY_PATH[path]


def is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


class PageRefused(Exception):
    """Raised by ``PageAccess``; ``mount_web`` turns it into the login redirect or a 403 page."""

    def __init__(self, request: Request, user: User | None, page: WebPage) -> None:
        super().__init__(page.path)
        self.request = request
        self.user = user
        self.page = page


class PageAccess:
    """A route dependency: the logged-in user, if their role opens ``path``'s page family."""

    def __init__(self, path: str) -> None:
        self.page = page_for(path)

    def __call__(self, request: Request) -> User:
        user = page_user(request)
        if user is None or not user.role.allows(self.page.role):
            raise PageRefused(request, user, self.page)
        return user


def page_guard(request: Request, path: str) -> User | Response:
    """``PageAccess`` for a route that prefers a return value to a dependency: the user, or the
    answer to send instead (login redirect or the 403 page)."""
    from andon.web.render import forbidden

    page = page_for(path)
    user = page_user(request)
    if user is None:
        return login_redirect(request, fragment=is_fragment(request))
    if not user.role.allows(page.role):
        return forbidden(request, user, page)
    return user


def nav_pages(app: FastAPI, user: User) -> list[WebPage]:
    """The navigation of one user: the mounted pages their role opens."""
    mounted: frozenset[str] | None = getattr(app.state, "web_page_paths", None)
    if mounted is None:
        # Computed once, on the first page served: every page family is mounted by then.
        routes = {r.path for r in app.router.routes if isinstance(r, Route)}
        mounted = frozenset(p.path for p in WEB_PAGES if p.path in routes)
        app.state.web_page_paths = mounted
    return [p for p in WEB_PAGES if p.path in mounted and user.role.allows(p.role)]
