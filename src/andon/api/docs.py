"""The API's own documentation (``/docs``, ``/redoc``, ``/openapi.json``), behind the login.

FastAPI serves these open by default; the OpenAPI document lists every endpoint and its
parameters, which a visitor without a login has no need to see. A logged-in user (any role)
gets them as usual: a bearer token or the session cookie of the web UI.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from andon.api.auth import current_user

__all__ = ["DOCS_PATHS", "mount_docs"]

OPENAPI_PATH = "/openapi.json"
#: The documentation's paths; create the app with ``docs_url=None`` and so on, then mount these.
DOCS_PATHS = frozenset({"/docs", "/redoc", OPENAPI_PATH})


def mount_docs(app: FastAPI) -> None:
    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=[Depends(current_user)])
    def openapi_document() -> Response:
        document: dict[str, Any] = app.openapi()
        return JSONResponse(document)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> Response:
        refused = _login_page(request)
        if refused is not None:
            return refused
        return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title=f"{app.title} - API")

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> Response:
        refused = _login_page(request)
        if refused is not None:
            return refused
        return get_redoc_html(openapi_url=OPENAPI_PATH, title=f"{app.title} - API")


def _login_page(request: Request) -> HTMLResponse | Response | None:
    """The login redirect for a visitor without a login (the pages' own way); None when the
    caller is logged in."""
    from andon.web.login import login_redirect, page_user

    if page_user(request) is None:
        return login_redirect(request, fragment=False)
    return None
