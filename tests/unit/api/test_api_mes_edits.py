"""Audited run edits through the API: success, each validation error (nothing changed), the
audit entry, and counts re-rated. 401/403 come from ``REQUIRED_ROLE`` in test_api_auth.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.domain import AssetPath, Run
from andon.domain.users import Role
from andon.storage.audit import AuditLog
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

LINE = "Site/Area/Line"
R1_START = 1_772_323_200_000  # 2026-03-01T00:00Z
HOUR = 3_600_000


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    yield api
    api.close()


def _unchanged(api: MesApi, runs: list[dict[str, Any]], audit: list[dict[str, Any]]) -> None:
    assert api.runs() == runs
    assert api.audit() == audit


@pytest.mark.postgres
def test_run_edits_and_their_audit_on_postgresql(postgres_url: str) -> None:
    api = MesApi(postgres_url)
    try:
        operator, supervisor = api.client(Role.OPERATOR), api.client(Role.SUPERVISOR)
        body = {"id": "R2", "order_id": "PO1", "asset": CELL}
        assert operator.post("/api/v1/runs", json=body).status_code == 201
        overlap = {**body, "id": "R3", "start": str(T0 - HOUR), "comment": "c"}
        refused = supervisor.post("/api/v1/runs", json=overlap)
        assert refused.status_code == 409
        assert "overlaps run 'R2'" in refused.json()["detail"]
        api.mes.now += HOUR
        ended = operator.post("/api/v1/runs/R2/end", json={})
        assert (ended.status_code, ended.json()["end_ms"]) == (200, T0 + HOUR)
        assert supervisor.post("/api/v1/runs/R2/revert", json={"comment": "c"}).status_code == 200
        assert [r["end_ms"] for r in api.runs() if r["id"] == "R2"] == [None]
        assert [e["action"] for e in api.audit(entity="run", entity_id="R2")] == [
            "run.reverted",
            "run.ended",
            "run.started",
        ]
        assert [r["id"] for r in api.runs()] == ["R1", "R2"]
    finally:
        api.close()


# -- POST /runs -------------------------------------------------------------------------------


def test_operator_starts_a_run_now_and_it_is_audited(api: MesApi) -> None:
    response = api.client(Role.OPERATOR).post(
        "/api/v1/runs", json={"id": "R2", "order_id": "PO1", "asset": CELL}
    )
    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["id"], run["asset"], run["start_ms"], run["end"]) == ("R2", CELL, T0, None)
    assert run["item_id"] == "w"
    assert [r["id"] for r in api.runs()] == ["R1", "R2"]
    [entry] = api.audit(entity="run", entity_id="R2")
    assert (entry["action"], entry["username"], entry["before"]) == (
        "run.started",
        "test-operator",
        None,
    )
    assert entry["after"] == {
        "id": "R2", "order_id": "PO1", "asset": CELL, "start_ms": T0, "end_ms": None
    }  # fmt: skip


def test_a_run_without_an_id_gets_one(api: MesApi) -> None:
    response = api.client(Role.OPERATOR).post(
        "/api/v1/runs", json={"order_id": "PO1", "asset": CELL, "comment": "shift start"}
    )
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    assert run_id.startswith("R-")
    assert api.audit(entity="run", entity_id=run_id)[0]["comment"] == "shift start"


def test_supervisor_adds_a_past_run_with_a_comment(api: MesApi) -> None:
    body = {"id": "R2", "order_id": "PO1", "asset": CELL, "start": str(T0 - 3 * HOUR),
            "end": "2026-03-01T22:00:00Z", "comment": "missed at the terminal"}  # fmt: skip
    response = api.client(Role.SUPERVISOR).post("/api/v1/runs", json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["start_ms"], response.json()["end_ms"]) == (T0 - 3 * HOUR, T0 - HOUR)
    [entry] = api.audit(entity="run", entity_id="R2")
    assert entry["action"] == "run.added"
    assert entry["comment"] == "missed at the terminal"
    assert entry["after"]["end_ms"] == T0 - HOUR


def test_an_operator_cannot_give_times_and_nothing_changes(api: MesApi) -> None:
    runs, audit = api.runs(), api.audit()
    body = {"id": "R2", "order_id": "PO1", "asset": CELL, "start": str(T0 - HOUR), "comment": "x"}
    response = api.client(Role.OPERATOR).post("/api/v1/runs", json=body)
    assert response.status_code == 403
    assert "needs role supervisor" in response.json()["detail"]
    _unchanged(api, runs, audit)


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"asset": LINE, "start": str(T0 - HOUR), "end": None}, 409, "overlaps run 'R1'"),
        ({"id": "R1"}, 409, "run 'R1' already exists"),
        ({"asset": "Site/Nowhere"}, 422, "asset"),
        ({"order_id": "PO9"}, 422, "unknown order 'PO9'"),
        ({"end": str(T0 - 3 * HOUR)}, 422, "must be after start"),
        ({"end": str(T0 - 4 * HOUR)}, 422, "must be after start"),
        ({"start": str(T0 + HOUR), "end": None}, 422, "out of bounds"),
        ({"start": "1999-12-31T00:00:00Z"}, 422, "out of bounds"),
        ({"start": "yesterday"}, 422, "not a time"),
        ({"comment": "  "}, 422, "comment"),
        ({"order_id": ""}, 422, "order_id"),
        ({"id": "R/2"}, 422, "id"),
    ],
)
def test_invalid_runs_are_refused_and_change_nothing(
    api: MesApi, change: dict[str, Any], status: int, detail: str
) -> None:
    runs, audit = api.runs(), api.audit()
    body = {"id": "R2", "order_id": "PO1", "asset": CELL, "start": str(T0 - 3 * HOUR),
            "end": str(T0 - 2 * HOUR), "comment": "patch-up", **change}  # fmt: skip
    response = api.client(Role.SUPERVISOR).post("/api/v1/runs", json=body)
    assert response.status_code == status, response.text
    assert detail in str(response.json()["detail"])
    _unchanged(api, runs, audit)


def test_the_run_and_its_audit_entry_commit_together(
    api: MesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = api.runs()

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(AuditLog, "record", broken)
    with pytest.raises(RuntimeError, match="audit table unavailable"):
        api.client(Role.OPERATOR).post(
            "/api/v1/runs", json={"id": "R2", "order_id": "PO1", "asset": CELL}
        )
    monkeypatch.undo()
    assert api.runs() == runs


# -- POST /runs/{id}/end ----------------------------------------------------------------------


def test_operator_ends_a_run_now(api: MesApi) -> None:
    response = api.client(Role.OPERATOR).post("/api/v1/runs/R1/end", json={})
    assert response.status_code == 200, response.text
    assert response.json()["end_ms"] == T0
    [entry] = api.audit(entity="run", entity_id="R1")
    assert entry["action"] == "run.ended"
    assert (entry["before"]["end_ms"], entry["after"]["end_ms"]) == (None, T0)
    again = api.client(Role.OPERATOR).post("/api/v1/runs/R1/end", json={})
    assert again.status_code == 409
    assert "already ended" in again.json()["detail"]
    assert len(api.audit(entity="run")) == 1


@pytest.mark.parametrize(
    ("role", "run_id", "body", "status", "detail"),
    [
        (Role.OPERATOR, "R9", {}, 404, "no run 'R9'"),
        (Role.OPERATOR, "R1", {"end": str(T0 - HOUR)}, 403, "needs role supervisor"),
        (Role.SUPERVISOR, "R1", {"end": str(T0 - HOUR)}, 422, "comment"),
        (Role.SUPERVISOR, "R1", {"end": str(R1_START), "comment": "c"}, 422, "after start"),
        (Role.SUPERVISOR, "R1", {"end": str(T0 + HOUR), "comment": "c"}, 422, "bounds"),
    ],
)
def test_invalid_ends_are_refused_and_change_nothing(
    api: MesApi, role: Role, run_id: str, body: dict[str, str], status: int, detail: str
) -> None:
    runs, audit = api.runs(), api.audit()
    response = api.client(role).post(f"/api/v1/runs/{run_id}/end", json=body)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    _unchanged(api, runs, audit)


# -- PATCH and DELETE /runs/{id} --------------------------------------------------------------


def test_supervisor_changes_a_run_and_reopens_it(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    body = {"start": str(T0 - 2 * HOUR), "end": str(T0 - HOUR), "comment": "started late"}
    response = supervisor.patch("/api/v1/runs/R1", json=body)
    assert response.status_code == 200, response.text
    assert (response.json()["start_ms"], response.json()["end_ms"]) == (T0 - 2 * HOUR, T0 - HOUR)
    reopened = supervisor.patch("/api/v1/runs/R1", json={"end": None, "comment": "still on"})
    assert reopened.json()["end_ms"] is None
    newest, first = api.audit(entity="run", entity_id="R1")
    assert first["action"] == newest["action"] == "run.edited"
    assert first["before"]["start_ms"] == R1_START
    assert first["after"]["start_ms"] == T0 - 2 * HOUR
    assert (newest["before"]["end_ms"], newest["after"]["end_ms"]) == (T0 - HOUR, None)
    assert newest["comment"] == "still on"


@pytest.mark.parametrize(
    ("run_id", "body", "status", "detail"),
    [
        ("R9", {"end": str(T0 - HOUR), "comment": "c"}, 404, "no run 'R9'"),
        ("R1", {"end": str(T0 - HOUR)}, 422, "comment"),
        ("R1", {"comment": "c"}, 422, "nothing to change"),
        ("R1", {"order_id": "PO1", "comment": "c"}, 422, "nothing to change"),
        ("R1", {"order_id": "PO9", "comment": "c"}, 422, "unknown order"),
        ("R1", {"end": str(R1_START - HOUR), "comment": "c"}, 422, "after start"),
        ("R2", {"start": str(T0 - 6 * HOUR), "comment": "c"}, 409, "overlaps run 'R1'"),
        ("R1", {"asset": CELL, "comment": "c"}, 422, "asset"),
    ],
)
def test_invalid_changes_are_refused_and_change_nothing(
    api: MesApi, run_id: str, body: dict[str, str], status: int, detail: str
) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    supervisor.patch("/api/v1/runs/R1", json={"end": str(T0 - 5 * HOUR), "comment": "c"})
    created = supervisor.post(
        "/api/v1/runs",
        json={"id": "R2", "order_id": "PO1", "asset": LINE, "start": str(T0 - 4 * HOUR),
              "comment": "c"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    runs, audit = api.runs(), api.audit()
    response = supervisor.patch(f"/api/v1/runs/{run_id}", json=body)
    assert response.status_code == status, response.text
    assert detail in str(response.json()["detail"])
    _unchanged(api, runs, audit)


def test_supervisor_deletes_a_run_with_a_comment(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    runs, audit = api.runs(), api.audit()
    assert supervisor.delete("/api/v1/runs/R1").status_code == 422
    assert supervisor.delete("/api/v1/runs/R9", params={"comment": "c"}).status_code == 404
    _unchanged(api, runs, audit)
    response = supervisor.delete("/api/v1/runs/R1", params={"comment": "entered twice"})
    assert response.status_code == 204
    assert api.runs() == []
    [entry] = api.audit(entity="run", entity_id="R1")
    assert (entry["action"], entry["after"], entry["comment"]) == (
        "run.deleted",
        None,
        "entered twice",
    )
    assert entry["before"]["start_ms"] == R1_START


# -- counts are re-rated ----------------------------------------------------------------------


def test_run_edits_re_rate_the_counts(api: MesApi) -> None:
    rig = api.mes
    rig.service.offer([Sample(TAG + "In", T0 - 3 * HOUR, 0), Sample(TAG + "In", T0 - HOUR, 10)])
    rig.flush()

    def account() -> dict[str, Any]:
        params = {"asset": CELL, "start": str(T0 - 4 * HOUR), "end": str(T0)}
        response = api.client(Role.OPERATOR).get("/api/v1/oee", params=params)
        assert response.status_code == 200, response.text
        values: dict[str, Any] = response.json()["total"]["account"]
        return values

    assert (account()["total_count"], account()["unrated_count"]) == (10, 0)
    assert account()["ideal_time_us"] == 10_000_000  # 60 per minute: 1 s each
    supervisor = api.client(Role.SUPERVISOR)
    ended = supervisor.patch("/api/v1/runs/R1", json={"end": str(T0 - 2 * HOUR), "comment": "c"})
    assert ended.status_code == 200, ended.text
    rig.flush()
    assert (account()["unrated_count"], account()["ideal_time_us"]) == (10, 0)
    supervisor.delete("/api/v1/runs/R1", params={"comment": "c"})
    body = {"id": "R3", "order_id": "PO1", "asset": CELL, "start": str(T0 - 2 * HOUR),
            "end": str(T0 - HOUR + 1), "comment": "c"}  # fmt: skip
    assert supervisor.post("/api/v1/runs", json=body).status_code == 201
    rig.flush()
    assert (account()["unrated_count"], account()["ideal_time_us"]) == (0, 10_000_000)


# -- revert -----------------------------------------------------------------------------------


def test_revert_undoes_the_last_audited_change_each_time(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    original = api.runs()
    supervisor.patch("/api/v1/runs/R1", json={"end": str(T0 - HOUR), "comment": "c"})
    ended = api.runs()
    response = supervisor.post("/api/v1/runs/R1/revert", json={"comment": "wrong run"})
    assert response.status_code == 200, response.text
    assert response.json()["end_ms"] is None
    assert api.runs() == original
    newest = api.audit(entity="run", entity_id="R1")[0]
    assert newest["action"] == "run.reverted"
    assert (newest["before"]["end_ms"], newest["after"]["end_ms"]) == (T0 - HOUR, None)
    assert newest["comment"].startswith("wrong run (reverts audit entry ")
    supervisor.post("/api/v1/runs/R1/revert", json={"comment": "it was right"})
    assert api.runs() == ended


def test_revert_brings_back_a_deleted_run_and_removes_a_started_one(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    original = api.runs()
    supervisor.delete("/api/v1/runs/R1", params={"comment": "c"})
    assert supervisor.post("/api/v1/runs/R1/revert", json={"comment": "c"}).status_code == 200
    assert api.runs() == original
    api.client(Role.OPERATOR).post(
        "/api/v1/runs", json={"id": "R2", "order_id": "PO1", "asset": CELL}
    )
    response = supervisor.post("/api/v1/runs/R2/revert", json={"comment": "by mistake"})
    assert response.status_code == 200, response.text
    assert response.json() is None
    assert api.runs() == original
    assert [e["action"] for e in api.audit(entity="run", entity_id="R2")] == [
        "run.reverted",
        "run.started",
    ]


def test_invalid_reverts_are_refused_and_change_nothing(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    assert supervisor.post("/api/v1/runs/R1/revert", json={"comment": "c"}).status_code == 404
    assert api.audit(entity="run") == []
    supervisor.patch("/api/v1/runs/R1", json={"end": str(T0 - HOUR), "comment": "c"})
    runs, audit = api.runs(), api.audit()
    assert supervisor.post("/api/v1/runs/R1/revert", json={}).status_code == 422
    # A change the audit trail did not see (here: straight through the service) blocks it.
    api.mes.service.edit_run(Run("R1", "PO1", AssetPath.parse(LINE), R1_START, T0 - 2 * HOUR))
    runs = api.runs()
    response = supervisor.post("/api/v1/runs/R1/revert", json={"comment": "c"})
    assert response.status_code == 409
    assert "changed after audit entry" in response.json()["detail"]
    _unchanged(api, runs, audit)
