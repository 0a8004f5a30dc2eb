"""Edits of intervals older than the MES service's window in memory: pruned by the horizon, or
never loaded after a restart; they are loaded from the database on demand, and the reason,
split and revert endpoints work on them as on recent ones."""

from __future__ import annotations

from pathlib import Path

from _mes_api_rig import MesApi

from andon.domain import AssetPath
from andon.domain.users import Role
from andon.server.mes_recovery import recover
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
ASSET = AssetPath.parse(CELL)

JAM = T0 + 2 * HOUR  # a stop on the first day: [T0 + 2 h, T0 + 3 h), default reason "jam"


def _three_days() -> list[Sample]:
    """Each hour a state: a jam in every fifth hour from the third, else running."""
    return [Sample(TAG + "State", T0 + h * HOUR, 10 if h % 5 == 2 else 1) for h in range(72)]


def _old_states(api: MesApi) -> list[tuple[int, int | None, int, str | None]]:
    params = {"start": str(T0), "end": str(T0 + 6 * HOUR)}
    response = api.client(Role.OPERATOR).get(f"/api/v1/assets/{CELL}/states", params=params)
    assert response.status_code == 200, response.text
    return [(s["start_ms"], s["end_ms"], s["code"], s["reason_id"]) for s in response.json()]


def _old_pareto(api: MesApi) -> dict[str, int]:
    params = {"asset": CELL, "start": str(T0), "end": str(T0 + 6 * HOUR)}
    response = api.client(Role.OPERATOR).get("/api/v1/downtime/pareto", params=params)
    assert response.status_code == 200, response.text
    return {row["reason_id"]: row["downtime_ms"] for row in response.json()}


def _edit_the_old_stop(api: MesApi) -> None:
    operator, supervisor = api.client(Role.OPERATOR), api.client(Role.SUPERVISOR)
    base = f"/api/v1/assets/{CELL}/states/{JAM}"
    before = _old_states(api)
    assert (JAM, JAM + HOUR, 10, "jam") in before
    assert operator.put(f"{base}/reason", json={"reason_id": "mech"}).status_code == 200
    assert _old_pareto(api) == {"mech": HOUR}
    split = {"at": str(JAM + 20 * MIN), "comment": "two stops"}
    assert supervisor.post(f"{base}/split", json=split).status_code == 200
    assert (JAM + 20 * MIN, JAM + HOUR, 10, "mech") in _old_states(api)
    reverted = supervisor.post(f"{base}/revert", json={"comment": "one stop"})
    assert reverted.status_code == 200, reverted.text
    assert _old_states(api) == [(s, e, c, "mech" if s == JAM else r) for s, e, c, r in before]
    assert _old_pareto(api) == {"mech": HOUR}


def test_edits_reach_intervals_pruned_from_memory(tmp_path: Path) -> None:
    api = MesApi(f"sqlite:///{tmp_path / 'a.db'}", horizon_ms=DAY)
    try:
        for sample in _three_days():  # live, in order: the service prunes as it goes
            api.mes.now = sample.ts_ms
            api.mes.service.offer([sample])
        api.mes.flush()
        kept = api.mes.service._assets[ASSET].intervals.intervals
        assert kept[0].start_ms > T0 + DAY  # the first day is no longer in memory
        _edit_the_old_stop(api)
    finally:
        api.close()


def test_edits_reach_intervals_older_than_the_window_seeded_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    first = MesApi(url, horizon_ms=10 * DAY)
    samples = _three_days()
    first.mes.writer.submit(samples)
    first.mes.service.offer(samples)
    first.mes.flush()
    first.close()
    second = MesApi(url, horizon_ms=DAY, now_ms=T0 + 3 * DAY)
    try:
        recover(second.mes.service, second.mes.store, T0 + 3 * DAY)
        kept = second.mes.service._assets[ASSET].intervals.intervals
        assert kept[0].start_ms > T0 + DAY
        _edit_the_old_stop(second)
    finally:
        second.close()
