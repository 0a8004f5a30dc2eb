"""``/api/v1/health`` and the Prometheus ``/metrics`` endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from andon import __version__
from andon.api.auth import current_user
from andon.api.context import ApiContext
from andon.api.schemas import HealthOut

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/api/v1/health",
    response_model=HealthOut,
    summary="Health of every component; HTTP 503 when degraded",
    responses={503: {"model": HealthOut}},
)
def health(request: Request) -> JSONResponse:
    ctx: ApiContext = request.app.state.context
    components = ctx.health()
    ok = all(bool(c.get("ok")) for c in components.values())
    body = HealthOut(status="ok" if ok else "degraded", version=__version__, components=components)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    ctx: ApiContext = request.app.state.context
    if ctx.metrics_require_login:
        current_user(request)  # raises 401
    return Response(ctx.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")
