"""Audited downtime edits through the API: a stop's reason and splitting an interval; success,
each validation error (nothing changed), the audit entry, the Pareto re-counted, and the edits
kept across a restart. 401/403 come from ``REQUIRED_ROLE`` in test_api_auth.py."""

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
JAM = T0 - 2 * HOUR  # the stop: [T0 - 2 h, T0 - 1 h), state Jam, default reason "jam"
REASON = f"/api/v1/assets/{CELL}/states/{JAM}/reason"
SPLIT = f"/api/v1/assets/{CELL}/states/{JAM}/split"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    states = [(T0 - 3 * HOUR, 1), (JAM, 10), (T0 - HOUR, 1)]
    api.mes.service.offer([Sample(TAG + "State", ts, code) for ts, code in states])
    api.mes.flush()  # stored before the first read: the tests compare reads before and after
    yield api
    api.close()


def _states(api: MesApi) -> list[dict[str, Any]]:
    params = {"start": str(T0 - 4 * HOUR), "end": str(T0)}
    response = api.client(Role.OPERATOR).get(f"/api/v1/assets/{CELL}/states", params=params)
    assert response.status_code == 200, response.text
    states: list[dict[str, Any]] = response.json()
    return states


def _pareto(api: MesApi) -> dict[str, int]:
    params = {"asset": CELL, "start": str(T0 - 4 * HOUR), "end": str(T0)}
    response = api.client(Role.OPERATOR).get("/api/v1/downtime/pareto", params=params)
    assert response.status_code == 200, response.text
    return {row["reason_id"]: row["downtime_ms"] for row in response.json()}


def test_operator_gives_a_stop_another_reason_and_back(api: MesApi) -> None:
    assert _pareto(api) == {"jam": HOUR}
    operator = api.client(Role.OPERATOR)
    response = operator.put(REASON, json={"reason_id": "mech"})
    assert response.status_code == 200, response.text
    [changed] = response.json()
    assert (changed["start_ms"], changed["end_ms"], changed["reason_id"]) == (
        JAM,
        T0 - HOUR,
        "mech",
    )
    assert [s["reason_id"] for s in _states(api)] == [None, "mech", None]
    assert _pareto(api) == {"mech": HOUR}
    [entry] = api.audit(entity="state_interval", entity_id=f"{CELL}@{JAM}")
    assert (entry["action"], entry["username"], entry["comment"]) == (
        "state_interval.reason",
        "test-operator",
        "",
    )
    assert (entry["before"]["reason_id"], entry["after"]["reason_id"]) == ("jam", "mech")
    assert entry["after"]["end_ms"] == T0 - HOUR
    restored = operator.put(REASON, json={"reason_id": None, "comment": "it was a jam"})
    assert restored.json()[0]["reason_id"] == "jam"
    assert _pareto(api) == {"jam": HOUR}
    assert len(api.audit(entity="state_interval")) == 2


@pytest.mark.parametrize(
    ("url", "body", "status", "detail"),
    [
        (REASON, {"reason_id": "nope"}, 422, "unknown reason 'nope'"),
        (REASON, {"reason_id": "jam"}, 422, "nothing to change"),
        (REASON, {}, 422, "reason_id"),
        (REASON.replace(str(JAM), str(T0 - 3 * HOUR)), {"reason_id": "mech"}, 422, "running"),
        (REASON.replace(str(JAM), str(JAM + 1)), {"reason_id": "mech"}, 404, "no state interval"),
        (REASON.replace(CELL, "Site/Area/Line"), {"reason_id": "mech"}, 404, "no state tag"),
        (REASON.replace(CELL, "Site/Nowhere"), {"reason_id": "mech"}, 404, "Nowhere"),
    ],
)
def test_invalid_reasons_are_refused_and_change_nothing(
    api: MesApi, url: str, body: dict[str, Any], status: int, detail: str
) -> None:
    states, audit = _states(api), api.audit()
    response = api.client(Role.OPERATOR).put(url, json=body)
    assert response.status_code == status, response.text
    assert detail in str(response.json()["detail"])
    assert (_states(api), api.audit()) == (states, audit)


def test_supervisor_splits_a_stop_and_gives_a_part_another_reason(api: MesApi) -> None:
    at = JAM + HOUR // 4
    body = {"at": str(at), "comment": "the jam was cleared, then the line blocked"}
    response = api.client(Role.SUPERVISOR).post(SPLIT, json=body)
    assert response.status_code == 200, response.text
    assert [(p["start_ms"], p["end_ms"], p["reason_id"]) for p in response.json()] == [
        (JAM, at, "jam"),
        (at, T0 - HOUR, "jam"),
    ]
    [entry] = api.audit(entity="state_interval", entity_id=f"{CELL}@{JAM}")
    assert entry["action"] == "state_interval.split"
    assert entry["before"]["end_ms"] == T0 - HOUR
    assert [p["start_ms"] for p in entry["after"]["intervals"]] == [JAM, at]
    second = f"/api/v1/assets/{CELL}/states/{at}/reason"
    assert api.client(Role.OPERATOR).put(second, json={"reason_id": "blocked"}).status_code == 200
    assert _pareto(api) == {"blocked": 3 * HOUR // 4, "jam": HOUR // 4}
    assert [s["start_ms"] for s in _states(api)] == [T0 - 3 * HOUR, JAM, at, T0 - HOUR]


@pytest.mark.parametrize(
    ("url", "body", "status", "detail"),
    [
        (SPLIT, {"at": str(JAM + 1)}, 422, "comment"),
        (SPLIT, {"at": str(JAM), "comment": "c"}, 422, "strictly inside"),
        (SPLIT, {"at": str(T0 - HOUR), "comment": "c"}, 422, "strictly inside"),
        (SPLIT, {"at": "soon", "comment": "c"}, 422, "not a time"),
        (SPLIT.replace(str(JAM), str(T0 - HOUR)), {"at": str(T0 + HOUR), "comment": "c"}, 422,
         "out of bounds"),
        (SPLIT.replace(str(JAM), str(JAM + 1)), {"at": str(JAM + 2), "comment": "c"}, 404,
         "no state interval"),
    ],
)  # fmt: skip
def test_invalid_splits_are_refused_and_change_nothing(
    api: MesApi, url: str, body: dict[str, Any], status: int, detail: str
) -> None:
    states, audit = _states(api), api.audit()
    response = api.client(Role.SUPERVISOR).post(url, json=body)
    assert response.status_code == status, response.text
    assert detail in str(response.json()["detail"])
    assert (_states(api), api.audit()) == (states, audit)


def test_an_operator_may_not_split(api: MesApi) -> None:
    response = api.client(Role.OPERATOR).post(SPLIT, json={"at": str(JAM + 1), "comment": "c"})
    assert response.status_code == 403


def test_splits_and_reasons_survive_a_restart(api: MesApi) -> None:
    at = JAM + HOUR // 2
    supervisor = api.client(Role.SUPERVISOR)
    assert supervisor.post(SPLIT, json={"at": str(at), "comment": "c"}).status_code == 200
    second = f"/api/v1/assets/{CELL}/states/{at}/reason"
    assert supervisor.put(second, json={"reason_id": "blocked"}).status_code == 200
    rig = api.mes
    restarted = MesService(
        rig.plant, rig.repository, RunRepository(rig.repository.engine), rig.writer
    )
    cell = AssetPath.parse(CELL)
    restarted.seed(cell, rig.repository.intervals_since(cell, T0 - 4 * HOUR))
    first, part = restarted.interval_at(cell, JAM), restarted.interval_at(cell, at)
    assert first is not None
    assert part is not None
    assert (first.start_ms, first.end_ms, first.reason_id) == (JAM, at, "jam")
    assert (part.start_ms, part.end_ms, part.reason_id) == (at, T0 - HOUR, "blocked")


@pytest.mark.postgres
def test_reason_and_split_with_their_audit_on_postgresql(postgres_url: str) -> None:
    api = MesApi(postgres_url)
    try:
        states = [(T0 - 3 * HOUR, 1), (JAM, 10), (T0 - HOUR, 1)]
        api.mes.service.offer([Sample(TAG + "State", ts, code) for ts, code in states])
        api.mes.flush()
        split = {"at": str(JAM + HOUR // 2), "comment": "two stops"}
        assert api.client(Role.SUPERVISOR).post(SPLIT, json=split).status_code == 200
        assert api.client(Role.OPERATOR).put(REASON, json={"reason_id": "mech"}).status_code == 200
        assert _pareto(api) == {"jam": HOUR // 2, "mech": HOUR // 2}
        entries = api.audit(entity="state_interval", entity_id=f"{CELL}@{JAM}")
        assert [e["action"] for e in entries] == [
            "state_interval.reason",
            "state_interval.split",
        ]
    finally:
        api.close()


def test_revert_undoes_a_reason_change_and_a_revert(api: MesApi) -> None:
    supervisor, operator = api.client(Role.SUPERVISOR), api.client(Role.OPERATOR)
    at = JAM + HOUR // 2
    assert supervisor.post(SPLIT, json={"at": str(at), "comment": "c"}).status_code == 200
    split = _states(api)
    assert operator.put(REASON, json={"reason_id": "mech"}).status_code == 200
    revert = f"/api/v1/assets/{CELL}/states/{JAM}/revert"
    response = supervisor.post(revert, json={"comment": "the operator meant the other stop"})
    assert response.status_code == 200, response.text
    assert _states(api) == split
    newest = api.audit(entity="state_interval", entity_id=f"{CELL}@{JAM}")[0]
    assert newest["action"] == "state_interval.reverted"
    assert (newest["before"]["reason_id"], newest["after"]["reason_id"]) == ("mech", "jam")
    assert "reverts audit entry" in newest["comment"]
    # The revert entry is now the last change: reverting again gives the reason back.
    assert supervisor.post(revert, json={"comment": "c"}).status_code == 200
    assert _states(api)[1]["reason_id"] == "mech"
    # A change the audit trail did not see (straight through the service) blocks a revert.
    api.mes.service.assign_reason(AssetPath.parse(CELL), JAM, "line", lambda *_: None)
    states, audit = _states(api), api.audit()
    response = supervisor.post(revert, json={"comment": "c"})
    assert response.status_code == 409
    assert "changed after audit entry" in response.json()["detail"]
    assert (_states(api), api.audit()) == (states, audit)


def test_revert_merges_a_split_back(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    original, pareto = _states(api), _pareto(api)
    at = JAM + HOUR // 2
    assert supervisor.post(SPLIT, json={"at": str(at), "comment": "c"}).status_code == 200
    second = f"/api/v1/assets/{CELL}/states/{at}/reason"
    assert supervisor.put(second, json={"reason_id": "mech"}).status_code == 200
    revert = f"/api/v1/assets/{CELL}/states/{JAM}/revert"
    refused = supervisor.post(revert, json={"comment": "c"})
    assert refused.status_code == 409
    assert f"{CELL}@{at} changed after audit entry" in refused.json()["detail"]
    again = f"/api/v1/assets/{CELL}/states/{at}/revert"
    assert supervisor.post(again, json={"comment": "c"}).status_code == 200
    response = supervisor.post(revert, json={"comment": "one stop after all"})
    assert response.status_code == 200, response.text
    assert (_states(api), _pareto(api)) == (original, pareto)
    merged = api.audit(entity="state_interval", entity_id=f"{CELL}@{JAM}")[0]
    assert [p["start_ms"] for p in merged["before"]["intervals"]] == [JAM, at]
    assert merged["after"]["end_ms"] == T0 - HOUR
    refused = supervisor.post(revert, json={"comment": "c"})
    assert refused.status_code == 422
    assert "cannot be reverted" in refused.json()["detail"]


def test_reverting_without_a_change_or_comment_is_refused(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    revert = f"/api/v1/assets/{CELL}/states/{JAM}/revert"
    assert supervisor.post(revert, json={"comment": "c"}).status_code == 404
    assert api.client(Role.OPERATOR).put(REASON, json={"reason_id": "mech"}).status_code == 200
    states, audit = _states(api), api.audit()
    assert supervisor.post(revert, json={}).status_code == 422
    assert (_states(api), api.audit()) == (states, audit)
