"""``/api/v1/export/{kind}`` on a scripted day: the CSV equals the JSON endpoints, Parquet reads
back with its column types, bad input is a 422 and an unknown asset a 404."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _mes_rig import CELL, T0, MesRig
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_mes_service import DAY, scripted_day

from andon.api import export as export_api
from andon.api import mes as mes_api


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rig = MesRig(f"sqlite:///{tmp_path / 'x.db'}")
    rig.now = T0 + 2 * DAY
    rig.service.offer(scripted_day())
    rig.flush()
    app = FastAPI()
    app.state.context = SimpleNamespace(mes=rig.queries)
    app.include_router(mes_api.router)
    app.include_router(export_api.router)
    try:
        yield TestClient(app)
    finally:
        rig.close()


PERIOD = {"asset": CELL, "start": str(T0), "end": str(T0 + DAY)}


def _csv(client: TestClient, kind: str, **params: str) -> list[dict[str, str]]:
    response = client.get(f"/api/v1/export/{kind}", params={**PERIOD, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def _text(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def test_states_csv_equals_the_json_intervals(client: TestClient) -> None:
    rows = _csv(client, "states")
    json_rows = client.get(f"/api/v1/assets/{CELL}/states", params=PERIOD).json()
    assert len(rows) == len(json_rows) > 20
    for row, expected in zip(rows, json_rows, strict=True):
        assert row == {"asset": CELL, **{k: _text(v) for k, v in expected.items()}}
    assert rows[0]["start"].endswith("+00:00")


def test_oee_csv_equals_the_json_buckets_for_each_bucket_kind(client: TestClient) -> None:
    for by, count in (("hour", 24), ("shift", 2), ("day", 1)):
        rows = _csv(client, "oee", by=by)
        body = client.get("/api/v1/oee", params={**PERIOD, "by": by}).json()
        assert len(rows) == len(body["buckets"]) >= count, by
        for row, bucket in zip(rows, body["buckets"], strict=True):
            account = bucket.pop("account")
            account.pop("loss_by_reason")
            expected = {"asset": CELL, "bucket": by, **bucket, **account}
            assert row == {k: _text(v) for k, v in expected.items()}, by


def test_counts_csv_sums_to_the_oee_counts(client: TestClient) -> None:
    rows = _csv(client, "counts")
    total = client.get("/api/v1/oee", params=PERIOD).json()["total"]["account"]
    assert len(rows) > 1000
    assert sum(int(r["total"]) for r in rows) == total["total_count"]
    assert sum(int(r["reject"]) for r in rows) == total["reject_count"]
    assert all(int(r["good"]) == int(r["total"]) - int(r["reject"]) for r in rows)


def test_runs_csv_equals_the_json_runs(client: TestClient) -> None:
    rows = _csv(client, "runs", asset="Site")
    expected = client.get("/api/v1/runs", params={"asset": "Site"}).json()
    assert rows == [{k: _text(v) for k, v in run.items()} for run in expected]
    assert rows[0]["end"] == ""


def test_parquet_round_trips_with_types(client: TestClient) -> None:
    csv_rows = _csv(client, "states")
    response = client.get("/api/v1/export/states", params={**PERIOD, "format": "parquet"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.content))
    assert table.schema.field("start").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("start_ms").type == pa.int64()
    assert table.schema.field("name").type == pa.string()
    back = table.to_pylist()
    assert [r["start_ms"] for r in back] == [int(r["start_ms"]) for r in csv_rows]
    assert [r["name"] for r in back] == [r["name"] for r in csv_rows]
    assert [int(r["start"].timestamp() * 1000) for r in back] == [r["start_ms"] for r in back]
    oee = client.get("/api/v1/export/oee", params={**PERIOD, "format": "parquet"}).content
    oee_table = pq.read_table(io.BytesIO(oee))
    assert oee_table.schema.field("availability").type == pa.float64()
    assert oee_table.num_rows == 24


def test_empty_export_has_the_header(client: TestClient) -> None:
    params = {**PERIOD, "start": str(T0 + 5 * DAY), "end": str(T0 + 6 * DAY)}
    response = client.get("/api/v1/export/counts", params=params)
    assert response.text == "asset,time,ts_ms,total,good,reject,startup,edit_id\n"
    empty = client.get("/api/v1/export/counts", params={**params, "format": "parquet"})
    assert pq.read_table(io.BytesIO(empty.content)).num_rows == 0


@pytest.mark.parametrize(
    ("kind", "params", "status"),
    [
        ("bogus", {}, 422),
        ("states", {"format": "xlsx"}, 422),
        ("states", {"start": "yesterday"}, 422),
        ("states", {"end": str(T0 - 1)}, 422),
        ("oee", {"by": "week"}, 422),
        ("oee", {"end": str(T0 + 400 * DAY)}, 422),
        ("states", {"asset": "Site/Nowhere"}, 404),
    ],
)
def test_bad_input(client: TestClient, kind: str, params: dict[str, str], status: int) -> None:
    response = client.get(f"/api/v1/export/{kind}", params={**PERIOD, **params})
    assert response.status_code == status, response.text
    assert response.json()["detail"]
