"""The schedule through the API: create, move, cancel and revert scheduled runs with their audit
entries; every refusal (422/404/409) changes nothing. 401/403 come from ``REQUIRED_ROLE`` in
test_api_auth.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.domain.users import Role
from andon.testing.mes import CELL, T0

LINE = "Site/Area/Line"
HOUR = 3_600_000
WINDOW = {"start": str(T0 - 30 * 24 * HOUR), "end": str(T0 + 400 * 24 * HOUR)}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    yield api
    api.close()


def _plans(api: MesApi, **params: str) -> list[dict[str, Any]]:
    response = api.client(Role.OPERATOR).get("/api/v1/schedule", params={**WINDOW, **params})
    assert response.status_code == 200, response.text
    plans: list[dict[str, Any]] = response.json()
    return plans


def _create(api: MesApi, plan_id: str, start: int, end: int, asset: str = LINE) -> Any:
    body = {"id": plan_id, "order_id": "PO1", "asset": asset, "start": str(start),
            "end": str(end), "comment": "planned"}  # fmt: skip
    return api.client(Role.SUPERVISOR).post("/api/v1/schedule", json=body)


def test_a_supervisor_schedules_a_run_in_the_future_and_it_is_audited(api: MesApi) -> None:
    response = _create(api, "S1", T0 + 24 * HOUR, T0 + 32 * HOUR)
    assert response.status_code == 201, response.text
    plan = response.json()
    assert (plan["id"], plan["asset"], plan["item_id"]) == ("S1", LINE, "w")
    assert (plan["start_ms"], plan["end_ms"]) == (T0 + 24 * HOUR, T0 + 32 * HOUR)
    assert plan["start"] == "2026-03-02T23:00:00.000+00:00"
    assert _plans(api) == [plan]
    assert _plans(api, asset=CELL) == []
    assert _plans(api, asset="Site") == [plan]
    [entry] = api.audit(entity="scheduled_run", entity_id="S1")
    assert (entry["action"], entry["username"], entry["comment"]) == (
        "scheduled_run.added",
        "test-supervisor",
        "planned",
    )
    assert entry["before"] is None
    assert entry["after"]["start_ms"] == T0 + 24 * HOUR
    # A plan is not production: the actual runs are untouched.
    assert [r["id"] for r in api.runs()] == ["R1"]


def test_an_overlapping_plan_is_409_naming_the_other_and_nothing_changes(api: MesApi) -> None:
    assert _create(api, "S1", T0, T0 + 8 * HOUR).status_code == 201
    before, audit = _plans(api), api.audit()
    refused = _create(api, "S2", T0 + 4 * HOUR, T0 + 12 * HOUR)
    assert refused.status_code == 409
    assert "overlaps scheduled run 'S1'" in refused.json()["detail"]
    assert (_plans(api), api.audit()) == (before, audit)
    assert _create(api, "S2", T0 + 8 * HOUR, T0 + 12 * HOUR).status_code == 201  # touching


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"comment": " "}, 422, "comment"),
        ({"order_id": "PO-none"}, 422, "unknown order"),
        ({"asset": "Site/Nope"}, 422, "asset"),
        ({"start": "yesterday"}, 422, "not a time"),
        ({"end": str(T0)}, 422, "end must be after start"),
        ({"start": "1999-12-31T00:00:00Z"}, 422, "out of bounds"),
        ({"end": str(T0 + 6 * 366 * 24 * HOUR)}, 422, "out of bounds"),
        ({"id": "bad id"}, 422, "id"),
        ({"surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    api: MesApi, change: dict[str, Any], status: int, fragment: str
) -> None:
    body = {"id": "S1", "order_id": "PO1", "asset": LINE, "start": str(T0),
            "end": str(T0 + HOUR), "comment": "c", **change}  # fmt: skip
    response = api.client(Role.SUPERVISOR).post("/api/v1/schedule", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert _plans(api) == []
    assert api.audit(entity="scheduled_run") == []


def test_operator_may_read_but_not_schedule(api: MesApi) -> None:
    body = {"order_id": "PO1", "asset": LINE, "start": str(T0), "end": str(T0 + HOUR),
            "comment": "c"}  # fmt: skip
    assert api.client(Role.OPERATOR).post("/api/v1/schedule", json=body).status_code == 403
    assert _plans(api) == []


def test_move_cancel_and_revert(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    assert _create(api, "S1", T0, T0 + 8 * HOUR).status_code == 201
    assert _create(api, "S2", T0 + 8 * HOUR, T0 + 16 * HOUR).status_code == 201

    moved = supervisor.patch(
        "/api/v1/schedule/S2", json={"start": str(T0 + 10 * HOUR), "comment": "later"}
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["start_ms"], moved.json()["end_ms"]) == (T0 + 10 * HOUR, T0 + 16 * HOUR)

    into = supervisor.patch(
        "/api/v1/schedule/S2", json={"start": str(T0 + 7 * HOUR), "comment": "earlier"}
    )
    assert into.status_code == 409
    assert "'S1'" in into.json()["detail"]
    same = supervisor.patch("/api/v1/schedule/S2", json={"order_id": "PO1", "comment": "x"})
    assert same.status_code == 422
    empty = supervisor.patch("/api/v1/schedule/S2", json={"comment": "x"})
    assert empty.status_code == 422
    assert (
        supervisor.patch("/api/v1/schedule/S9", json={"start": "0", "comment": "x"}).status_code
        == 404
    )

    no_comment = supervisor.delete("/api/v1/schedule/S2")
    assert no_comment.status_code == 422
    assert (
        supervisor.delete("/api/v1/schedule/S2", params={"comment": "dropped"}).status_code == 204
    )
    assert [p["id"] for p in _plans(api)] == ["S1"]

    restored = supervisor.post("/api/v1/schedule/S2/revert", json={"comment": "oops"})
    assert restored.status_code == 200, restored.text
    assert restored.json()["start_ms"] == T0 + 10 * HOUR
    undone = supervisor.post("/api/v1/schedule/S2/revert", json={"comment": "undo the undo"})
    assert (undone.status_code, undone.json()) == (200, None)
    assert [p["id"] for p in _plans(api)] == ["S1"]
    actions = [e["action"] for e in api.audit(entity="scheduled_run", entity_id="S2")]
    assert actions == [
        "scheduled_run.reverted",
        "scheduled_run.reverted",
        "scheduled_run.cancelled",
        "scheduled_run.moved",
        "scheduled_run.added",
    ]
    assert supervisor.post("/api/v1/schedule/S7/revert", json={"comment": "x"}).status_code == 404
