"""Adding a missed stop by hand (``POST /api/v1/assets/{path}/states``): it replaces and cuts the
derived intervals it covers, shows in Pareto and OEE, is audited, survives a restart and comes
off through the revert endpoint with the PLC's intervals and their reasons back. Each invalid
request changes nothing. 401/403 come from ``REQUIRED_ROLE`` in test_api_auth.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.domain.users import Role
from andon.server.mes_recovery import recover
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

HOUR = 3_600_000
MIN = 60_000
JAM = T0 - 2 * HOUR  # the PLC's stop: [T0 - 2 h, T0 - 1 h), state Jam, default reason "jam"
STATES = f"/api/v1/assets/{CELL}/states"
PLC = [(T0 - 3 * HOUR, 1), (JAM, 10), (T0 - HOUR, 1), (T0 - HOUR + 40 * MIN, 3)]


def _plc(api: MesApi) -> None:
    samples = [Sample(TAG + "State", ts, code) for ts, code in PLC]
    api.mes.writer.submit(samples)  # in the history too: a restart reads the PLC codes back
    api.mes.service.offer(samples)
    api.mes.flush()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    _plc(api)
    yield api
    api.close()


def _states(api: MesApi) -> list[tuple[int, int | None, int, str | None]]:
    params = {"start": str(T0 - 4 * HOUR), "end": str(T0)}
    response = api.client(Role.OPERATOR).get(STATES, params=params)
    assert response.status_code == 200, response.text
    return [(s["start_ms"], s["end_ms"], s["code"], s["reason_id"]) for s in response.json()]


def _pareto(api: MesApi) -> dict[str, int]:
    params = {"asset": CELL, "start": str(T0 - 4 * HOUR), "end": str(T0)}
    response = api.client(Role.OPERATOR).get("/api/v1/downtime/pareto", params=params)
    assert response.status_code == 200, response.text
    return {row["reason_id"]: row["downtime_ms"] for row in response.json()}


def _running_ms(api: MesApi) -> int:
    params = {"asset": CELL, "start": str(T0 - 4 * HOUR), "end": str(T0)}
    response = api.client(Role.OPERATOR).get("/api/v1/oee", params=params)
    assert response.status_code == 200, response.text
    return int(response.json()["total"]["account"]["running_ms"])


def _add(api: MesApi, **body: Any) -> list[dict[str, Any]]:
    response = api.client(Role.SUPERVISOR).post(STATES, json={"comment": "missed", **body})
    assert response.status_code == 201, response.text
    added: list[dict[str, Any]] = response.json()
    return added


def _revert(api: MesApi, start_ms: int) -> Any:
    url = f"{STATES}/{start_ms}/revert"
    return api.client(Role.SUPERVISOR).post(url, json={"comment": "not so"})


def test_a_missed_stop_inside_running_time_cuts_it(api: MesApi) -> None:
    running = _running_ms(api)
    a, b = T0 - 3 * HOUR + 10 * MIN, T0 - 3 * HOUR + 30 * MIN
    added = _add(api, start=str(a), end=str(b), state="jam", reason="mech")
    assert [(p["start_ms"], p["end_ms"], p["name"], p["reason_id"]) for p in added] == [
        (T0 - 3 * HOUR, a, "Running", None),
        (a, b, "Jam", "mech"),
        (b, JAM, "Running", None),
    ]
    assert _states(api)[:4] == [
        (T0 - 3 * HOUR, a, 1, None),
        (a, b, 10, "mech"),
        (b, JAM, 1, None),
        (JAM, T0 - HOUR, 10, "jam"),
    ]
    assert _pareto(api) == {"jam": HOUR, "mech": 20 * MIN, "blocked": 20 * MIN}
    assert _running_ms(api) == running - 20 * MIN
    [entry] = api.audit(entity="state_interval", entity_id=f"{CELL}@{a}")
    assert (entry["action"], entry["username"], entry["comment"]) == (
        "state_interval.added", "test-supervisor", "missed",
    )  # fmt: skip
    assert (entry["before"]["start_ms"], entry["before"]["end_ms"]) == (T0 - 3 * HOUR, JAM)
    assert [p["code"] for p in entry["after"]["intervals"]] == [1, 10, 1]


def test_an_added_state_replaces_what_it_covers_and_reverts_with_the_reasons(
    api: MesApi,
) -> None:
    reason = f"{STATES}/{JAM}/reason"
    assert api.client(Role.OPERATOR).put(reason, json={"reason_id": "mech"}).status_code == 200
    original, pareto, running = _states(api), _pareto(api), _running_ms(api)
    a, b = JAM - 10 * MIN, T0 - 30 * MIN
    _add(api, start=str(a), end=str(b), state=3)  # blocked, its default reason
    assert _states(api) == [
        (T0 - 3 * HOUR, a, 1, None),
        (a, b, 3, "blocked"),
        (b, T0 - HOUR + 40 * MIN, 1, None),
        (T0 - HOUR + 40 * MIN, None, 3, "blocked"),
    ]
    assert _pareto(api) == {"blocked": (HOUR + 40 * MIN) + 20 * MIN}  # added + open
    response = _revert(api, a)
    assert response.status_code == 200, response.text
    assert (_states(api), _pareto(api), _running_ms(api)) == (original, pareto, running)
    newest = api.audit(entity="state_interval", entity_id=f"{CELL}@{a}")[0]
    assert newest["action"] == "state_interval.added_reverted"
    assert "reverts audit entry" in newest["comment"]
    again = _revert(api, a)
    assert (again.status_code, "cannot be reverted" in again.json()["detail"]) == (422, True)


def test_an_added_state_survives_a_restart_and_reverts_to_the_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'andon.db'}"
    first = MesApi(url)
    _plc(first)
    original = _states(first)
    a, b = JAM + 10 * MIN, T0 - 30 * MIN
    _add(first, start=str(a), end=str(b), state="Planned")
    added = _states(first)
    first.close()
    second = MesApi(url)
    try:
        recover(second.mes.service, second.mes.store, T0)
        assert _states(second) == added
        assert _revert(second, a).status_code == 200
        assert _states(second) == original  # the PLC's codes came back from the history
    finally:
        second.close()


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"start": str(JAM), "end": str(T0), "state": 10}, 422, "comment"),
        ({"start": str(JAM), "end": str(JAM), "state": 10, "comment": "c"}, 422,
         "end must be after start"),
        ({"start": str(JAM), "end": str(T0 + HOUR), "state": 10, "comment": "c"}, 422,
         "out of bounds"),
        ({"start": str(JAM), "end": str(T0), "state": 42, "comment": "c"}, 422,
         "is not a state of"),
        ({"start": str(JAM), "end": str(T0), "state": "Nap", "comment": "c"}, 422, "1 Running"),
        ({"start": str(JAM), "end": str(T0), "state": 10, "reason": "nope", "comment": "c"},
         422, "unknown reason 'nope'"),
        ({"start": str(JAM), "end": str(T0), "state": 1, "reason": "jam", "comment": "c"}, 422,
         "this state is running"),
        ({"start": str(JAM), "state": 10, "comment": "c"}, 422, "end"),
        ({"start": str(JAM), "end": str(T0), "state": 10, "comment": "c", "x": 1}, 422, "x"),
    ],
)  # fmt: skip
def test_invalid_added_states_are_refused_and_change_nothing(
    api: MesApi, body: dict[str, Any], status: int, detail: str
) -> None:
    states, audit = _states(api), api.audit()
    response = api.client(Role.SUPERVISOR).post(STATES, json=body)
    assert response.status_code == status, response.text
    assert detail in str(response.json()["detail"])
    assert (_states(api), api.audit()) == (states, audit)


@pytest.mark.parametrize(
    ("path", "detail"), [("Site/Nowhere", "Nowhere"), ("Site/Area/Line", "no state tag")]
)
def test_an_unknown_or_stateless_asset_is_404(api: MesApi, path: str, detail: str) -> None:
    body = {"start": str(JAM), "end": str(T0), "state": 10, "comment": "c"}
    response = api.client(Role.SUPERVISOR).post(f"/api/v1/assets/{path}/states", json=body)
    assert (response.status_code, detail in response.json()["detail"]) == (404, True)


def test_overlapping_an_added_state_or_a_manual_split_is_409(api: MesApi) -> None:
    _add(api, start=str(JAM + 10 * MIN), end=str(JAM + 20 * MIN), state=3)
    split = {"at": str(T0 - 3 * HOUR + 30 * MIN), "comment": "two"}
    url = f"{STATES}/{T0 - 3 * HOUR}/split"
    assert api.client(Role.SUPERVISOR).post(url, json=split).status_code == 200
    states, audit = _states(api), api.audit()
    for start, end, detail in (
        (JAM + 15 * MIN, JAM + 30 * MIN, "overlaps the state added by hand"),
        (T0 - 3 * HOUR + 20 * MIN, T0 - 3 * HOUR + 40 * MIN, "split by hand"),
    ):
        body = {"start": str(start), "end": str(end), "state": 10, "comment": "c"}
        response = api.client(Role.SUPERVISOR).post(STATES, json=body)
        assert response.status_code == 409, response.text
        assert detail in response.json()["detail"]
        assert (_states(api), api.audit()) == (states, audit)


@pytest.mark.postgres
def test_add_and_revert_a_state_on_postgresql(postgres_url: str) -> None:
    api = MesApi(postgres_url)
    try:
        _plc(api)
        original = _states(api)
        a = T0 - 3 * HOUR + 10 * MIN
        _add(api, start=str(a), end=str(a + 20 * MIN), state="Jam")
        assert (a, a + 20 * MIN, 10, "jam") in _states(api)
        assert _revert(api, a).status_code == 200
        assert _states(api) == original
    finally:
        api.close()
