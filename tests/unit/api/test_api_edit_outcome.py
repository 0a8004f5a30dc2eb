"""An edit is answered from its own transaction's outcome: a count edit, a reason change or a run
change the database refuses raises its error, stores nothing and leaves the MES memory as
stored; a run change and the rollups it re-rates commit (or not) together. On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.domain import AssetPath
from andon.domain.users import Role
from andon.storage.audit import AuditLog
from andon.storage.mes import MesRepository
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

HOUR = 3_600_000
ASSET = AssetPath.parse(CELL)
JAM = T0 - 2 * HOUR  # [T0 - 2 h, T0 - 1 h), state Jam, default reason "jam"


def _feed(api: MesApi) -> None:
    samples = [Sample(TAG + "State", ts, code) for ts, code in
               ((T0 - 4 * HOUR, 1), (JAM, 10), (T0 - HOUR, 1))]  # fmt: skip
    samples += [Sample(TAG + "In", T0 - 4 * HOUR + m * 60_000, 10 * m) for m in range(240)]
    api.mes.service.offer(samples)
    api.mes.flush()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MesApi]:
    url = (
        f"sqlite:///{tmp_path / 'andon.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    api = MesApi(url)
    _feed(api)
    yield api
    api.close()


def _account(api: MesApi) -> dict[str, Any]:
    params = {"asset": CELL, "start": str(T0 - 4 * HOUR), "end": str(T0)}
    response = api.client(Role.OPERATOR).get("/api/v1/oee", params=params)
    assert response.status_code == 200, response.text
    account: dict[str, Any] = response.json()["total"]["account"]
    return account


def _refuse_audits(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(AuditLog, "record", broken)


def test_a_refused_count_edit_raises_its_error_and_stores_nothing(
    api: MesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, audit = _account(api), api.audit()
    url = f"/api/v1/assets/{CELL}/counts/edits"
    body = {"start": str(T0 - 2 * HOUR), "end": str(T0), "mode": "add", "outfeed": 50,
            "comment": "recount"}  # fmt: skip
    _refuse_audits(monkeypatch)
    with pytest.raises(RuntimeError, match="audit table unavailable"):
        api.client(Role.SUPERVISOR).post(url, json=body)
    monkeypatch.undo()
    assert (_account(api), api.audit()) == (account, audit)
    assert api.client(Role.OPERATOR).get(url).json() == []
    made = api.client(Role.SUPERVISOR).post(url, json=body)
    assert made.status_code == 201, made.text
    assert _account(api)["total_count"] == account["total_count"] + 50


def test_a_refused_reason_change_leaves_memory_as_stored(
    api: MesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"/api/v1/assets/{CELL}/states/{JAM}/reason"
    _refuse_audits(monkeypatch)
    with pytest.raises(RuntimeError, match="audit table unavailable"):
        api.client(Role.OPERATOR).put(url, json={"reason_id": "mech"})
    monkeypatch.undo()
    in_memory = api.mes.service.interval_at(ASSET, JAM)
    assert in_memory is not None
    assert in_memory.reason_id == "jam"
    assert "mech" not in _account(api)["loss_by_reason"]
    response = api.client(Role.OPERATOR).put(url, json={"reason_id": "mech"})
    assert response.status_code == 200, response.text
    assert _account(api)["loss_by_reason"]["mech"] == HOUR


def test_a_run_change_and_its_re_rating_commit_together(
    api: MesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, runs = _account(api), api.runs()
    assert (account["unrated_count"], account["ideal_time_us"]) == (0, 2390 * 1_000_000)
    original = MesRepository._add_rollups

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(MesRepository, "_add_rollups", disk_full)
    supervisor = api.client(Role.SUPERVISOR)
    change = {"end": str(T0 - 2 * HOUR), "comment": "ended earlier"}
    with pytest.raises(RuntimeError, match="disk full"):
        supervisor.patch("/api/v1/runs/R1", json=change)
    monkeypatch.setattr(MesRepository, "_add_rollups", original)
    assert (api.runs(), _account(api)) == (runs, account)  # neither the run nor its rating
    assert api.mes.service.run_at(ASSET, T0 - HOUR) is not None  # memory as stored
    response = supervisor.patch("/api/v1/runs/R1", json=change)
    assert response.status_code == 200, response.text
    after = _account(api)
    assert after["unrated_count"] == 1200  # the counts after the new end: [T0 - 2 h, T0)
    assert after["ideal_time_us"] == (2390 - after["unrated_count"]) * 1_000_000
