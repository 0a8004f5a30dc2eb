"""The operator screen per asset (``/operator/{path}``), touch first: state and timer, mode,
current run and progress, counts and OEE of the shift, the shift's stops with a reason picker
that walks the reason tree, start and end a run, change the mode.

Actions are small forms posted by htmx to ``/fragments/operator/...``; each calls the API's own
endpoint function (run_edits, state_edits, mode_edits), so the rules, the role checks and the
audit trail have one code path, and answers with the re-rendered part of the screen (the API's
error message in place when it refuses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from andon.api import mode_edits, run_edits, state_edits
from andon.api._edits import edits
from andon.api.auth import read_limited_body
from andon.api.context import ApiContext
from andon.api.timeparse import MAX_INSTANT_MS, MIN_INSTANT_MS
from andon.domain import Asset, AssetPath, DomainError
from andon.domain.users import User
from andon.server.mes_queries import MesQueries
from andon.web.access import PageAccess
from andon.web.operator_view import order_choices, reason_step, stop_rows
from andon.web.plant_view import orders_by_id, run_view, shift_view, state_view
from andon.web.render import display_zone, render

__all__ = ["MAX_FORM_BYTES", "PANEL_REFRESH_S", "mount_operator"]

OperatorUser = Annotated[User, Depends(PageAccess("/operator"))]
#: How often the panel re-reads run progress, counts and figures (states are pushed).
PANEL_REFRESH_S = 20
#: A form of this screen is a few short fields; anything larger is refused unread.
MAX_FORM_BYTES = 16_384
_DAY_MS = 86_400_000
_SPANS = {"shift": "This shift", "day": "Last 24 h"}


def _mes(request: Request) -> MesQueries:
    ctx: ApiContext = request.app.state.context
    if ctx.mes is None:
        raise HTTPException(503, "no plant file is loaded (setting plant_file): no assets")
    return ctx.mes


def _asset(mes: MesQueries, text: str) -> Asset:
    try:
        return mes.service.plant.tree.get(AssetPath.parse(text.strip("/")))
    except DomainError as exc:
        raise HTTPException(404, str(exc)) from exc


def _panel(mes: MesQueries, asset: Asset) -> dict[str, Any]:
    now = mes.now_ms()
    orders = orders_by_id(mes)
    path = asset.path
    bound = mes.service.is_bound(path)
    return {
        "asset": asset,
        "path": str(path),
        "bound": bound,
        "state": state_view(mes, path) if bound else None,
        "run": run_view(mes, path, now, orders),
        "shift": shift_view(mes, path, now),
        "orders": order_choices(orders),
        "modes": sorted(mes.service.plant.modes),
        "refresh_s": PANEL_REFRESH_S,
    }


def _downtime(mes: MesQueries, asset: Asset, span: str) -> dict[str, Any]:
    now = mes.now_ms()
    if span == "day":
        start, end = now - _DAY_MS, now
    else:
        span = "shift"
        start, end, _label = mes.current_period(asset.path, now)
    bound = mes.service.is_bound(asset.path)
    rows = stop_rows(mes, asset.path, start, min(end, now + 1)) if bound else []
    return {
        "stops": rows,
        "unexplained": sum(1 for row in rows if row.unexplained),
        "span": span,
        "spans": _SPANS,
        "since_ms": start,
    }


def _answer(
    request: Request, user: User, asset: Asset, block: str | None, extra: dict[str, Any]
) -> Response:
    """The whole screen (``block`` None) or one of its blocks: panel, downtime, picker."""
    mes = _mes(request)
    context = {**_panel(mes, asset), **extra}
    if block in (None, "downtime"):
        context |= _downtime(mes, asset, extra.get("span", "shift"))
    status = extra.get("status", 200)
    zone = display_zone(request, asset.path)
    return render(
        request, "operator.html", context, user=user, block=block, status=status, zone=zone
    )


async def _form(request: Request) -> dict[str, str]:
    body = await read_limited_body(request, MAX_FORM_BYTES, "form")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0].strip() for name, values in fields.items()}


async def _act(
    request: Request, user: User, block: str, call: Callable[[dict[str, str]], str]
) -> Response:
    """Run one action through the API's endpoint function; answer with the re-rendered block,
    carrying the success note or the API's refusal (its status and message)."""
    fields = await _form(request)
    mes = _mes(request)
    asset = _asset(mes, fields.get("asset", ""))
    try:
        note = await run_in_threadpool(call, fields)
        extra: dict[str, Any] = {"note": note}
    except HTTPException as exc:
        extra = {"error": str(exc.detail), "status": exc.status_code}
    except (ValidationError, ValueError) as exc:
        extra = {"error": _first_error(exc), "status": 422}
    extra["span"] = fields.get("span", "shift")
    # The answer reads the MES (its lock, the database): on a worker thread, never on the
    # event loop, which would stall every other request meanwhile.
    return await run_in_threadpool(_answer, request, user, asset, block, extra)


def _instant_field(fields: dict[str, str], name: str) -> int:
    """An instant in epoch ms from a form field; 422 unless it is one a time can have."""
    text = fields.get(name, "")
    if not text.lstrip("-").isdigit() or len(text) > 20:
        raise HTTPException(422, f"{name}: which stop? (its start in epoch ms)")
    value = int(text)
    if not MIN_INSTANT_MS <= value <= MAX_INSTANT_MS:
        raise HTTPException(422, f"{name}: {value} is out of range (years 0001 to 9999)")
    return value


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(exc)


def mount_operator(app: FastAPI) -> None:
    @app.get("/operator", response_class=HTMLResponse, include_in_schema=False)
    def choose(request: Request, user: OperatorUser) -> Response:
        ctx: ApiContext = request.app.state.context
        mes = ctx.mes
        assets = [] if mes is None else list(mes.service.plant.tree)
        states = (
            {} if mes is None else {a: state_view(mes, a) for a in mes.service.plant.bound_assets}
        )
        context = {"assets": assets, "states": states, "mes": mes}
        return render(request, "operator_pick.html", context, user=user)

    @app.get("/operator/{path:path}", response_class=HTMLResponse, include_in_schema=False)
    def screen(request: Request, path: str, user: OperatorUser) -> Response:
        mes = _mes(request)
        try:
            asset = _asset(mes, path)
        except HTTPException as exc:
            context = {"title": "No such asset", "message": str(exc.detail)}
            return render(request, "message.html", context, user=user, status=404)
        span = request.query_params.get("span", "shift")
        return _answer(request, user, asset, None, {"span": span})

    @app.get("/fragments/operator/panel", response_class=HTMLResponse, include_in_schema=False)
    def panel(request: Request, user: OperatorUser, asset: Annotated[str, Query()]) -> Response:
        return _answer(request, user, _asset(_mes(request), asset), "panel", {})

    @app.get("/fragments/operator/downtime", response_class=HTMLResponse, include_in_schema=False)
    def downtime(
        request: Request,
        user: OperatorUser,
        asset: Annotated[str, Query()],
        span: Annotated[str, Query()] = "shift",
    ) -> Response:
        return _answer(request, user, _asset(_mes(request), asset), "downtime", {"span": span})

    @app.get("/fragments/operator/reasons", response_class=HTMLResponse, include_in_schema=False)
    def reasons(
        request: Request,
        user: OperatorUser,
        asset: Annotated[str, Query()],
        start_ms: Annotated[int, Query(ge=MIN_INSTANT_MS, le=MAX_INSTANT_MS)],
        parent: Annotated[str | None, Query()] = None,
        span: Annotated[str, Query()] = "shift",
    ) -> Response:
        mes = _mes(request)
        found = _asset(mes, asset)
        interval = mes.service.interval_at(found.path, start_ms)
        if interval is None or interval.start_ms != start_ms:
            raise HTTPException(404, f"{found.path}: no stop starts at {start_ms}")
        try:
            step = reason_step(mes, parent or None)
        except DomainError as exc:
            raise HTTPException(404, str(exc)) from exc
        context = {"step": step, "stop_start_ms": start_ms, "span": span}
        return _answer(request, user, found, "picker", context)

    @app.post("/fragments/operator/reason", response_class=HTMLResponse, include_in_schema=False)
    async def assign_reason(request: Request, user: OperatorUser) -> Response:
        def call(fields: dict[str, str]) -> str:
            body = state_edits.ReasonIn(reason_id=fields.get("reason_id") or None)
            start_ms = _instant_field(fields, "start_ms")
            out = state_edits.assign_reason(
                request, fields["asset"], start_ms, body, user, edits(request)
            )
            reasons = _mes(request).service.plant.reasons
            chosen = out[-1].reason_id if out else None
            if chosen is None or chosen not in reasons:
                return "Reason set to the state's default"
            return f"Reason set: {' / '.join(reasons.path(chosen))}"

        return await _act(request, user, "downtime", call)

    @app.post("/fragments/operator/start-run", response_class=HTMLResponse, include_in_schema=False)
    async def start_run(request: Request, user: OperatorUser) -> Response:
        def call(fields: dict[str, str]) -> str:
            body = run_edits.RunCreateIn(order_id=fields.get("order_id", ""), asset=fields["asset"])
            run = run_edits.create_run(request, body, user, edits(request))
            return f"Run {run.id} started for order {run.order_id}"

        return await _act(request, user, "panel", call)

    @app.post("/fragments/operator/end-run", response_class=HTMLResponse, include_in_schema=False)
    async def end_run(request: Request, user: OperatorUser) -> Response:
        def call(fields: dict[str, str]) -> str:
            run_id = fields.get("run_id", "")
            run = run_edits.end_run(request, run_id, run_edits.RunEndIn(), user, edits(request))
            return f"Run {run.id} ended"

        return await _act(request, user, "panel", call)

    @app.post("/fragments/operator/mode", response_class=HTMLResponse, include_in_schema=False)
    async def change_mode(request: Request, user: OperatorUser) -> Response:
        def call(fields: dict[str, str]) -> str:
            body = mode_edits.ModeIn(mode=fields.get("mode", ""))
            mode_edits.change_mode(request, fields["asset"], body, user, edits(request))
            return f"Mode changed to {body.mode}"

        return await _act(request, user, "panel", call)
