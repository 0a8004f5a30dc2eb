"""``/api/v1/tags``: live values and history."""

from __future__ import annotations

import base64
import math
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from andon.api._time import iso_ms
from andon.api.context import ApiContext
from andon.api.schemas import HistoryBucketOut, HistoryOut, HistorySampleOut, LiveTagOut
from andon.api.timeparse import parse_duration_ms, parse_instant_ms

__all__ = ["MAX_BUCKETS", "MAX_RAW_SAMPLES", "router"]

router = APIRouter(prefix="/api/v1/tags", tags=["tags"])

MAX_RAW_SAMPLES = 100_000
MAX_BUCKETS = 10_000


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and math.isnan(value):  # NaN is not JSON
        return None
    return value


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


@router.get("", response_model=list[LiveTagOut], summary="Live values of every tag")
def live_tags(
    request: Request,
    prefix: Annotated[str, Query(description="Only tags whose path starts with this")] = "",
) -> list[LiveTagOut]:
    return [
        LiveTagOut(
            path=tag.path,
            value=_json_value(tag.value),
            datatype=tag.datatype,
            quality=tag.quality,
            source_time=iso_ms(tag.source_ts_ms),
            receive_time=iso_ms(tag.receive_ts_ms),
            online=tag.online,
        )
        for tag in _ctx(request).live_tags.snapshot(prefix)
    ]


@router.get("/history", response_model=HistoryOut, summary="Raw or aggregated history of one tag")
def tag_history(
    request: Request,
    path: Annotated[str, Query(description="Tag path: group/edge node/device/metric")],
    start: Annotated[str, Query(description="ISO 8601 instant or epoch ms (inclusive)")],
    end: Annotated[str, Query(description="ISO 8601 instant or epoch ms (exclusive)")],
    bucket: Annotated[
        str | None, Query(description="Aggregate per bucket: 500ms, 10s, 1m, 1h, 1d")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RAW_SAMPLES)] = 10_000,
) -> HistoryOut:
    try:
        start_ms = parse_instant_ms(start)
        end_ms = parse_instant_ms(end)
        bucket_ms = parse_duration_ms(bucket) if bucket is not None else None
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    if end_ms <= start_ms:
        raise HTTPException(status_code=422, detail="end must be after start")
    if bucket_ms is not None and (end_ms - start_ms) // bucket_ms > MAX_BUCKETS:
        raise HTTPException(
            status_code=422,
            detail=f"more than {MAX_BUCKETS} buckets: choose a larger bucket or a shorter range",
        )
    reader = _ctx(request).history
    out = HistoryOut(path=path, start=iso_ms(start_ms), end=iso_ms(end_ms), bucket_ms=bucket_ms)
    if bucket_ms is None:
        samples = reader.history(path, start_ms, end_ms, limit=limit + 1)
        out.truncated = len(samples) > limit
        out.samples = [
            HistorySampleOut(
                time=iso_ms(s.ts_ms),
                ts_ms=s.ts_ms,
                value=_json_value(s.value),
                quality=s.quality,
                is_historical=s.is_historical,
            )
            for s in samples[:limit]
        ]
    else:
        out.buckets = [
            HistoryBucketOut(
                start=iso_ms(b.start_ms),
                start_ms=b.start_ms,
                count=b.count,
                min=b.min,
                max=b.max,
                avg=b.avg,
                last=_json_value(b.last),
            )
            for b in reader.aggregate(path, start_ms, end_ms, bucket_ms)
        ]
    return out
