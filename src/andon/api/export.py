"""``GET /api/v1/export/{kind}``: state intervals, counts, runs and OEE buckets of an asset and
its children as CSV (streamed) or Parquet, for spreadsheets and data pipelines.

The rows are built from the same queries as the JSON endpoints, so an export always equals what
``/assets/{path}/states``, ``/runs`` and ``/oee`` answer for the same period. A time is written
twice: in CSV as ISO 8601 UTC and epoch ms, in Parquet as a UTC timestamp and epoch ms (the ms
column keeps exact joins possible in tools that round timestamps).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from andon.api._time import iso_ms
from andon.api.mes import _account_dict, _asset, _limit_query, _mes, _period
from andon.domain import AssetPath, TimeAccount
from andon.server.mes_queries import Bucket, MesQueries

__all__ = ["COLUMNS", "Column", "Kind", "export_rows", "parquet_bytes", "router"]

router = APIRouter(prefix="/api/v1", tags=["export"])

#: Rows per CSV chunk: large enough to be cheap, small enough to start the download at once.
_CHUNK_ROWS = 1000


class Kind(StrEnum):
    states = "states"
    counts = "counts"
    runs = "runs"
    oee = "oee"


#: Column type: "time" (epoch ms, written as a UTC instant), "int", "float", "str".
ColumnType = Literal["time", "int", "float", "str"]

_ACCOUNT_INTS = (
    *(f for f in TimeAccount.__dataclass_fields__ if f != "loss_by_reason"),
    "planned_production_time_ms",
    "all_time_ms",
    "good_count",
)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType


def _cols(*spec: str) -> tuple[Column, ...]:
    return tuple(Column(*item.split(":")) for item in spec)  # type: ignore[arg-type]


COLUMNS: dict[Kind, tuple[Column, ...]] = {
    Kind.states: _cols(
        "asset:str", "start:time", "start_ms:int", "end:time", "end_ms:int", "code:int",
        "name:str", "state_type:str", "mode:str", "reason_id:str",
    ),
    Kind.counts: _cols(
        "asset:str", "time:time", "ts_ms:int", "total:int", "good:int", "reject:int",
        "startup:int", "edit_id:int",
    ),
    Kind.runs: _cols(
        "id:str", "order_id:str", "item_id:str", "asset:str", "start:time", "start_ms:int",
        "end:time", "end_ms:int",
    ),
    Kind.oee: (
        *_cols(
            "asset:str", "bucket:str", "label:str", "start:time", "start_ms:int", "end:time",
            "end_ms:int", "availability:float", "performance:float", "quality:float",
            "oee:float", "teep:float", "mtbf_ms:float", "mttr_ms:float",
        ),
        *(Column(name, "int") for name in _ACCOUNT_INTS),
    ),
}  # fmt: skip

Row = tuple[Any, ...]


def _states(mes: MesQueries, asset: AssetPath, start_ms: int, end_ms: int) -> list[Row]:
    rows: list[Row] = []
    for leaf in mes.leaves(asset):
        state_map = mes.service.plant.state_maps[leaf]
        for iv in mes.intervals(leaf, start_ms, end_ms):
            rows.append(
                (
                    str(leaf), iv.start_ms, iv.start_ms, iv.end_ms, iv.end_ms, iv.code,
                    state_map.resolve(iv.code).name, iv.state_type.value, iv.mode.name,
                    iv.reason_id,
                )
            )  # fmt: skip
    return rows


def _counts(mes: MesQueries, asset: AssetPath, start_ms: int, end_ms: int) -> list[Row]:
    """The counts the PLC gave, then the signed corrections of count edits in force (with
    their edit's id): summed, they are the figures every other view shows."""
    corrections = mes.service.edit_repository.corrections
    return [
        *(
            (str(c.asset), c.ts_ms, c.ts_ms, c.total, c.total - c.reject, c.reject,
             int(c.startup), None)
            for leaf in mes.leaves(asset)
            for c in mes.repository.counts(leaf, start_ms, end_ms)
        ),
        *(
            (str(c.asset), c.ts_ms, c.ts_ms, c.total, c.good, c.reject, 0, c.edit_id)
            for leaf in mes.leaves(asset)
            for c in corrections(leaf, start_ms, end_ms)
        ),
    ]  # fmt: skip


def _runs(mes: MesQueries, asset: AssetPath, start_ms: int, end_ms: int) -> list[Row]:
    """Runs at or below the asset that overlap the period."""
    rows: list[Row] = []
    for run in mes.service.run_repository.runs():
        below = run.asset == asset or asset.is_ancestor_of(run.asset)
        if below and run.start_ms < end_ms and (run.end_ms is None or run.end_ms > start_ms):
            rows.append(
                (
                    run.id, run.order_id, mes.service.item_of_order(run.order_id),
                    str(run.asset), run.start_ms, run.start_ms, run.end_ms, run.end_ms,
                )
            )  # fmt: skip
    return rows


def _oee(mes: MesQueries, asset: AssetPath, start_ms: int, end_ms: int, by: str) -> list[Row]:
    buckets: list[Bucket]
    if by == "hour":
        buckets = mes.hourly(asset, start_ms, end_ms)
    elif by == "day":
        buckets = mes.daily(asset, start_ms, end_ms)
    else:
        buckets = mes.by_shift(asset, start_ms, end_ms)
    rows: list[Row] = []
    for b in buckets:
        a = b.account
        account = _account_dict(a)
        rows.append(
            (
                str(asset), by, b.label, b.start_ms, b.start_ms, b.end_ms, b.end_ms,
                a.availability, a.performance, a.quality, a.oee, a.teep, a.mtbf_ms, a.mttr_ms,
                *(account[name] for name in _ACCOUNT_INTS),
            )
        )  # fmt: skip
    return rows


def export_rows(
    mes: MesQueries, kind: Kind, asset: AssetPath, start_ms: int, end_ms: int, by: str = "hour"
) -> list[Row]:
    """The rows of one export, in the order of ``COLUMNS[kind]``."""
    if kind is Kind.states:
        return _states(mes, asset, start_ms, end_ms)
    if kind is Kind.counts:
        return _counts(mes, asset, start_ms, end_ms)
    if kind is Kind.runs:
        return _runs(mes, asset, start_ms, end_ms)
    return _oee(mes, asset, start_ms, end_ms, by)


def _csv_value(column: Column, value: Any) -> Any:
    if value is None:
        return ""
    if column.type == "time":
        return iso_ms(value)
    if column.type == "float":
        return repr(float(value))  # shortest text that reads back to the same float
    return value


def _csv_chunks(columns: Sequence[Column], rows: list[Row]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    for i in range(0, len(rows), _CHUNK_ROWS):
        for row in rows[i : i + _CHUNK_ROWS]:
            writer.writerow([_csv_value(c, v) for c, v in zip(columns, row, strict=True)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if not rows:
        yield buffer.getvalue()  # the header alone


def parquet_bytes(columns: Sequence[Column], rows: list[Row]) -> bytes:
    import pyarrow as pa  # imported on use: a server that never exports does not load Arrow
    import pyarrow.parquet as pq

    types = {
        "time": pa.timestamp("ms", tz="UTC"),
        "int": pa.int64(),
        "float": pa.float64(),
        "str": pa.string(),
    }
    schema = pa.schema([pa.field(c.name, types[c.type]) for c in columns])
    # Arrow takes epoch integers for a timestamp column as they are: no datetime detour.
    arrays = []
    for i, c in enumerate(columns):
        values = [row[i] for row in rows]
        if c.type == "time":
            arrays.append(pa.array(values, type=pa.int64()).cast(types["time"]))
        else:
            arrays.append(pa.array(values, type=types[c.type]))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink)
    return sink.getvalue()


@router.get(
    "/export/{kind}",
    summary="Export states, counts, runs or OEE buckets as CSV or Parquet",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
)
def export(
    request: Request,
    kind: Annotated[Kind, Path(description="states (intervals), counts, runs or oee")],
    asset: Annotated[str, Query(description="Asset path; a line or site covers its assets")],
    start: Annotated[str, Query(description="ISO 8601 instant or epoch ms (inclusive)")],
    end: Annotated[str, Query(description="ISO 8601 instant or epoch ms (exclusive)")],
    format: Annotated[Literal["csv", "parquet"], Query(description="File format")] = "csv",
    by: Annotated[
        Literal["hour", "shift", "day"], Query(description="OEE bucket (kind=oee only)")
    ] = "hour",
) -> Response:
    mes = _mes(request)
    path = _asset(mes, asset)
    start_ms, end_ms = _period(start, end)
    if kind is not Kind.runs:  # runs are few; the rest grows with the period
        _limit_query(mes, start_ms, end_ms, f"an export of {kind.value}")
    rows = export_rows(mes, kind, path, start_ms, end_ms, by)
    columns = COLUMNS[kind]
    stem = f"{kind.value}-{str(path).replace('/', '_')}-{start_ms}-{end_ms}"
    if format == "parquet":
        return Response(
            parquet_bytes(columns, rows),
            media_type="application/vnd.apache.parquet",
            headers={"Content-Disposition": f'attachment; filename="{stem}.parquet"'},
        )
    return StreamingResponse(
        _csv_chunks(columns, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'},
    )
