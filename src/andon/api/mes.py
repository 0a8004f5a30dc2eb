"""MES reads: ``/api/v1/assets``, ``/assets/{path}/states``, ``/oee``, ``/downtime/pareto``,
``/runs``. Figures are computed from summed time accounts (never averaged ratios); a line or a
site is the sum of its assets. Writes (runs, reasons) come with the audited write endpoints."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from andon.api._time import iso_ms, iso_ms_or_none
from andon.api.context import ApiContext
from andon.api.timeparse import parse_instant_ms
from andon.domain import AssetPath, DomainError, TimeAccount, six_big_losses
from andon.server.mes_limits import DAY_MS
from andon.server.mes_queries import Bucket, MesQueries

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["mes"])


class RunOut(BaseModel):
    id: str
    order_id: str
    item_id: str | None
    asset: str
    start: str
    end: str | None
    start_ms: int
    end_ms: int | None


class CurrentStateOut(BaseModel):
    code: int
    name: str
    state_type: str
    mode: str
    reason_id: str | None
    reason: list[str] | None
    since: str
    since_ms: int
    time_in_state_ms: int


class AssetOut(BaseModel):
    path: str
    kind: str
    name: str
    timezone: str | None
    parent: str | None
    has_states: bool
    state: CurrentStateOut | None
    run: RunOut | None


class IntervalOut(BaseModel):
    start: str
    end: str | None
    start_ms: int
    end_ms: int | None
    code: int
    name: str
    state_type: str
    mode: str
    reason_id: str | None


class FiguresOut(BaseModel):
    start: str
    end: str
    start_ms: int
    end_ms: int
    label: str
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    teep: float | None
    mtbf_ms: float | None
    mttr_ms: float | None
    account: dict[str, Any]


class OeeOut(BaseModel):
    asset: str
    assets: list[str]
    total: FiguresOut
    six_big_losses_ms: dict[str, float]
    by: str | None
    buckets: list[FiguresOut]


class ParetoRowOut(BaseModel):
    reason_id: str
    reason: list[str]
    downtime_ms: int
    share: float
    cumulative_share: float


def _mes(request: Request) -> MesQueries:
    ctx: ApiContext = request.app.state.context
    if ctx.mes is None:
        raise HTTPException(status_code=503, detail="no plant file is loaded (plant_file)")
    return ctx.mes


def _asset(mes: MesQueries, text: str) -> AssetPath:
    try:
        path = AssetPath.parse(text.strip("/"))
        mes.service.plant.tree.get(path)
    except DomainError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return path


def _period(start: str, end: str) -> tuple[int, int]:
    try:
        start_ms, end_ms = parse_instant_ms(start), parse_instant_ms(end)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    if end_ms <= start_ms:
        raise HTTPException(status_code=422, detail="end must be after start")
    return start_ms, end_ms


def _limit_query(mes: MesQueries, start_ms: int, end_ms: int, what: str) -> None:
    """422 when [start_ms, end_ms) is longer than ``mes_query_max_days`` (a bucketed query or
    an export is built whole in memory)."""
    limits = mes.service.limits
    if end_ms - start_ms > limits.query_max_ms:
        raise HTTPException(
            status_code=422,
            detail=(
                f"{what} covers at most {limits.query_max_days:g} days (setting "
                f"mes_query_max_days); this period covers {(end_ms - start_ms) / DAY_MS:.1f} "
                "days: ask in parts"
            ),
        )


def _run_out(mes: MesQueries, run: Any) -> RunOut:
    return RunOut(
        id=run.id,
        order_id=run.order_id,
        item_id=mes.service.item_of_order(run.order_id),
        asset=str(run.asset),
        start=iso_ms(run.start_ms),
        end=iso_ms_or_none(run.end_ms),
        start_ms=run.start_ms,
        end_ms=run.end_ms,
    )


def _account_dict(account: TimeAccount) -> dict[str, Any]:
    values: dict[str, Any] = {
        f.name: getattr(account, f.name) for f in fields(account) if f.name != "loss_by_reason"
    }
    values["planned_production_time_ms"] = account.planned_production_time_ms
    values["all_time_ms"] = account.all_time_ms
    values["good_count"] = account.good_count
    values["loss_by_reason"] = dict(account.loss_by_reason)
    return values


def _figures(bucket: Bucket) -> FiguresOut:
    a = bucket.account
    return FiguresOut(
        start=iso_ms(bucket.start_ms),
        end=iso_ms(bucket.end_ms),
        start_ms=bucket.start_ms,
        end_ms=bucket.end_ms,
        label=bucket.label,
        availability=a.availability,
        performance=a.performance,
        quality=a.quality,
        oee=a.oee,
        teep=a.teep,
        mtbf_ms=a.mtbf_ms,
        mttr_ms=a.mttr_ms,
        account=_account_dict(a),
    )


@router.get("/assets", response_model=list[AssetOut], summary="Asset tree with current states")
def assets(request: Request) -> list[AssetOut]:
    mes = _mes(request)
    service = mes.service
    now = mes.now_ms()
    found = []
    for asset in service.plant.tree:
        current = service.current(asset.path)
        state = None
        if current is not None:
            definition = service.plant.state_maps[asset.path].resolve(current.code)
            reasons = service.plant.reasons
            reason_id = current.reason_id
            state = CurrentStateOut(
                code=current.code,
                name=definition.name,
                state_type=current.state_type.value,
                mode=current.mode.name,
                reason_id=reason_id,
                reason=(
                    list(reasons.path(reason_id))
                    if reason_id is not None and reason_id in reasons
                    else None
                ),
                since=iso_ms(current.start_ms),
                since_ms=current.start_ms,
                time_in_state_ms=max(0, now - current.start_ms),
            )
        run = service.run_at(asset.path, now)
        parent = asset.path.parent
        found.append(
            AssetOut(
                path=str(asset.path),
                kind=asset.kind.value,
                name=asset.name,
                timezone=asset.timezone,
                parent=None if parent is None else str(parent),
                has_states=service.is_bound(asset.path),
                state=state,
                run=None if run is None else _run_out(mes, run),
            )
        )
    return found


@router.get(
    "/assets/{path:path}/states",
    response_model=list[IntervalOut],
    summary="State intervals of one asset (the open one last, end null)",
)
def asset_states(
    request: Request,
    path: str,
    start: Annotated[str, Query(description="ISO 8601 instant or epoch ms (inclusive)")],
    end: Annotated[str, Query(description="ISO 8601 instant or epoch ms (exclusive)")],
) -> list[IntervalOut]:
    mes = _mes(request)
    asset = _asset(mes, path)
    start_ms, end_ms = _period(start, end)
    if not mes.service.is_bound(asset):
        raise HTTPException(status_code=404, detail=f"{asset} has no state tag")
    state_map = mes.service.plant.state_maps[asset]
    return [
        IntervalOut(
            start=iso_ms(iv.start_ms),
            end=iso_ms_or_none(iv.end_ms),
            start_ms=iv.start_ms,
            end_ms=iv.end_ms,
            code=iv.code,
            name=state_map.resolve(iv.code).name,
            state_type=iv.state_type.value,
            mode=iv.mode.name,
            reason_id=iv.reason_id,
        )
        for iv in mes.intervals(asset, start_ms, end_ms)
    ]


@router.get("/oee", response_model=OeeOut, summary="OEE, TEEP, MTBF, MTTR and the time account")
def oee(
    request: Request,
    asset: Annotated[str, Query(description="Asset path; a line or site sums its assets")],
    start: Annotated[str, Query(description="ISO 8601 instant or epoch ms (inclusive)")],
    end: Annotated[str, Query(description="ISO 8601 instant or epoch ms (exclusive)")],
    by: Annotated[
        Literal["shift", "hour", "day"] | None, Query(description="Also one bucket per ...")
    ] = None,
) -> OeeOut:
    mes = _mes(request)
    path = _asset(mes, asset)
    start_ms, end_ms = _period(start, end)
    if by is not None:
        _limit_query(mes, start_ms, end_ms, f"by={by}")
    total = mes.total(path, start_ms, end_ms)
    buckets: list[Bucket] = []
    if by == "hour":
        buckets = mes.hourly(path, start_ms, end_ms)
    elif by == "day":
        buckets = mes.daily(path, start_ms, end_ms)
    elif by == "shift":
        buckets = mes.by_shift(path, start_ms, end_ms)
    losses = six_big_losses(total)
    return OeeOut(
        asset=str(path),
        assets=[str(a) for a in mes.leaves(path)],
        total=_figures(Bucket(start_ms, end_ms, "", total)),
        six_big_losses_ms={f.name: getattr(losses, f.name) for f in fields(losses)},
        by=by,
        buckets=[_figures(b) for b in buckets],
    )


@router.get("/downtime/pareto", response_model=list[ParetoRowOut], summary="Downtime by reason")
def pareto(
    request: Request,
    asset: Annotated[str, Query(description="Asset path; a line or site sums its assets")],
    start: Annotated[str, Query(description="ISO 8601 instant or epoch ms (inclusive)")],
    end: Annotated[str, Query(description="ISO 8601 instant or epoch ms (exclusive)")],
    by_category: Annotated[bool, Query(description="Roll reasons up to their category")] = False,
) -> list[ParetoRowOut]:
    mes = _mes(request)
    path = _asset(mes, asset)
    start_ms, end_ms = _period(start, end)
    reasons = mes.service.plant.reasons
    return [
        ParetoRowOut(
            reason_id=row.key,
            reason=list(reasons.path(row.key)) if row.key in reasons else [],
            downtime_ms=row.downtime_ms,
            share=row.share,
            cumulative_share=row.cumulative_share,
        )
        for row in mes.pareto(path, start_ms, end_ms, by_category=by_category)
    ]


@router.get("/runs", response_model=list[RunOut], summary="Runs at or below an asset")
def runs(
    request: Request,
    asset: Annotated[str | None, Query(description="Asset path (default: every asset)")] = None,
) -> list[RunOut]:
    mes = _mes(request)
    path = None if asset is None else _asset(mes, asset)
    return [
        _run_out(mes, run)
        for run in mes.service.run_repository.runs()
        if path is None or run.asset == path or path.is_ancestor_of(run.asset)
    ]
