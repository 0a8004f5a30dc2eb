"""``PUT /api/v1/assets/{path}/mode``: an operator changes an asset's mode from now on, through
the MES service, audited; every refusal is clear and changes nothing; the change survives a
restart. 401/403 come from ``REQUIRED_ROLE`` in test_api_auth.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.domain import AssetPath
from andon.domain.users import Role
from andon.server.mes_service import MesService
from andon.storage.mes_runs import RunRepository
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

HOUR = 3_600_000
MODE = f"/api/v1/assets/{CELL}/mode"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    api.mes.service.offer([Sample(TAG + "State", T0 - HOUR, 1)])  # running for an hour
    yield api
    api.close()


def _states(api: MesApi) -> list[tuple[int, int | None, str]]:
    params = {"start": str(T0 - 2 * HOUR), "end": str(T0 + HOUR)}
    response = api.client(Role.OPERATOR).get(f"/api/v1/assets/{CELL}/states", params=params)
    assert response.status_code == 200, response.text
    return [(s["start_ms"], s["end_ms"], s["mode"]) for s in response.json()]


def test_operator_changes_the_mode_from_now_on(api: MesApi) -> None:
    response = api.client(Role.OPERATOR).put(
        MODE, json={"mode": "Changeover", "comment": "new labels"}
    )
    assert response.status_code == 200, response.text
    assert [(p["start_ms"], p["end_ms"], p["mode"]) for p in response.json()] == [
        (T0 - HOUR, T0, "Production"),
        (T0, None, "Changeover"),
    ]
    assert _states(api) == [(T0 - HOUR, T0, "Production"), (T0, None, "Changeover")]
    [entry] = api.audit(entity="asset", entity_id=CELL)
    assert (entry["action"], entry["username"], entry["comment"]) == (
        "asset.mode",
        "test-operator",
        "new labels",
    )
    assert entry["before"] == {"mode": "Production"}
    assert entry["after"] == {"mode": "Changeover", "from_ms": T0}


@pytest.mark.parametrize(
    ("path", "body", "status", "detail"),
    [
        (MODE, {"mode": "Lunch"}, 422, "unknown mode 'Lunch'"),
        (MODE, {"mode": "Production"}, 422, "nothing to change"),
        (MODE, {"mode": ""}, 422, "mode"),
        (MODE, {"mode": "Idle", "extra": 1}, 422, "extra"),
        ("/api/v1/assets/Site/Area/Line/mode", {"mode": "Idle"}, 404, "no state tag"),
        ("/api/v1/assets/Site/Nowhere/mode", {"mode": "Idle"}, 404, "Nowhere"),
    ],
)
def test_invalid_mode_changes_are_refused_and_change_nothing(
    api: MesApi, path: str, body: dict[str, Any], status: int, detail: str
) -> None:
    before, audit = _states(api), api.audit()
    response = api.client(Role.OPERATOR).put(path, json=body)
    assert response.status_code == status, response.text
    assert detail in str(response.json()["detail"])
    assert (_states(api), api.audit()) == (before, audit)


def test_no_mode_before_the_first_state(tmp_path: Path) -> None:
    api = MesApi(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        response = api.client(Role.OPERATOR).put(MODE, json={"mode": "Idle"})
        assert response.status_code == 409
        assert "no state of" in response.json()["detail"]
        assert api.audit(entity="asset") == []
    finally:
        api.close()


def test_the_mode_change_survives_a_restart(api: MesApi) -> None:
    assert api.client(Role.OPERATOR).put(MODE, json={"mode": "Maintenance"}).status_code == 200
    rig = api.mes
    restarted = MesService(
        rig.plant, rig.repository, RunRepository(rig.repository.engine), rig.writer
    )
    cell = AssetPath.parse(CELL)
    restarted.seed(cell, rig.repository.intervals_since(cell, T0 - 2 * HOUR))
    current = restarted.current(cell)
    assert current is not None
    assert (current.start_ms, current.mode.name) == (T0, "Maintenance")
