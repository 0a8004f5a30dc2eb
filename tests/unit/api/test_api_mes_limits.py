"""How much one MES edit or query may cover (settings ``mes_edit_max_days``,
``mes_edit_max_age_days``, ``mes_query_max_days``: 422 naming the setting, nothing changed),
numbers out of range in paths (422, never a server error), shift buckets read in one query, and
old intervals looked up without loading them into memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from _mes_api_rig import MesApi

from andon.domain import AssetPath
from andon.domain.users import Role
from andon.server.mes_limits import MesLimits
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

DAY = 86_400_000
HOUR = 3_600_000
ASSET = AssetPath.parse(CELL)
STATES = f"/api/v1/assets/{CELL}/states"
EDITS = f"/api/v1/assets/{CELL}/counts/edits"


def _feed(api: MesApi) -> None:
    samples = [Sample(TAG + "State", T0 - 40 * DAY, 1)]
    samples += [Sample(TAG + "In", T0 - 4 * HOUR + m * 60_000, 10 * m) for m in range(240)]
    api.mes.service.offer(samples)
    api.mes.flush()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    _feed(api)
    yield api
    api.close()


@pytest.fixture
def tight(tmp_path: Path) -> Iterator[MesApi]:
    """Limits as a plant might set them: 2-day edits, 10-day queries."""
    api = MesApi(f"sqlite:///{tmp_path / 'tight.db'}", limits=MesLimits(2, 31, 10))
    _feed(api)
    yield api
    api.close()


def _nothing_changed(api: MesApi, before: list[dict[str, Any]]) -> None:
    assert api.audit() == before
    assert api.client(Role.OPERATOR).get(EDITS).json() == []


def test_a_count_edit_longer_than_the_limit_is_refused_naming_it(api: MesApi) -> None:
    audit = api.audit()
    body = {"start": str(T0 - 40 * DAY), "end": str(T0), "mode": "add", "outfeed": 1,
            "comment": "a whole month and more"}  # fmt: skip
    response = api.client(Role.SUPERVISOR).post(EDITS, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "mes_edit_max_days" in detail
    assert "31 days" in detail
    assert "40.0 days" in detail
    _nothing_changed(api, audit)
    body["start"] = str(T0 - 31 * DAY)  # exactly the limit
    assert api.client(Role.SUPERVISOR).post(EDITS, json=body).status_code == 201


def test_an_added_state_longer_than_the_limit_is_refused(tight: MesApi) -> None:
    audit = tight.audit()
    body = {"start": str(T0 - 3 * DAY), "end": str(T0), "state": "Planned", "comment": "holiday"}
    response = tight.client(Role.SUPERVISOR).post(STATES, json=body)
    assert response.status_code == 422, response.text
    assert "at most 2 days (setting mes_edit_max_days)" in response.json()["detail"]
    _nothing_changed(tight, audit)
    body["start"] = str(T0 - 2 * DAY)
    assert tight.client(Role.SUPERVISOR).post(STATES, json=body).status_code == 201


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (f"/api/v1/assets/{CELL}/counts", {"by": "shift"}),
        (f"/api/v1/assets/{CELL}/counts", {"by": "hour"}),
        ("/api/v1/oee", {"asset": CELL, "by": "day"}),
        ("/api/v1/oee", {"asset": CELL, "by": "shift"}),
        ("/api/v1/oee", {"asset": CELL, "by": "hour"}),
        ("/api/v1/export/oee", {"asset": CELL, "by": "shift"}),
        ("/api/v1/export/oee", {"asset": CELL, "by": "day"}),
        ("/api/v1/export/counts", {"asset": CELL}),
        ("/api/v1/export/states", {"asset": CELL}),
    ],
)
def test_queries_longer_than_the_limit_are_refused(
    tight: MesApi, url: str, params: dict[str, str]
) -> None:
    operator = tight.client(Role.OPERATOR)
    refused = operator.get(url, params={**params, "start": str(T0 - 11 * DAY), "end": str(T0)})
    assert refused.status_code == 422, refused.text
    assert "at most 10 days (setting mes_query_max_days)" in refused.json()["detail"]
    answered = operator.get(url, params={**params, "start": str(T0 - 10 * DAY), "end": str(T0)})
    assert answered.status_code == 200, answered.text


def test_unbucketed_figures_and_runs_are_not_limited(tight: MesApi) -> None:
    operator = tight.client(Role.OPERATOR)
    period = {"start": str(T0 - 400 * DAY), "end": str(T0)}
    assert operator.get("/api/v1/oee", params={"asset": CELL, **period}).status_code == 200
    exported = operator.get("/api/v1/export/runs", params={"asset": CELL, **period})
    assert exported.status_code == 200


def test_shift_buckets_are_read_in_one_query(api: MesApi) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = api.mes.repository.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        buckets = api.mes.queries.by_shift(ASSET, T0 - 10 * DAY, T0)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(buckets) == 20  # a day and a night shift a day
    queries = [s for s in statements if not s.startswith("BEGIN")]
    assert len(queries) <= 2  # the sums, and the losses by reason
    night = buckets[-1]
    assert (night.label, night.account.total_count) == ("2026-03-01/Night", 2390)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/api/v1/count-edits/9999999999999999999999999/revert", {"comment": "c"}),
        ("post", "/api/v1/count-edits/2147483648/revert", {"comment": "c"}),
        ("post", "/api/v1/count-edits/0/revert", {"comment": "c"}),
        ("put", f"{STATES}/-9999999999999999999/reason", {"reason_id": "jam"}),
        ("put", f"{STATES}/9999999999999999999/reason", {"reason_id": "jam"}),
        ("post", f"{STATES}/-9999999999999999999/split", {"at": "1", "comment": "c"}),
        ("post", f"{STATES}/99999999999999999999/revert", {"comment": "c"}),
    ],
)
def test_numbers_out_of_range_in_paths_are_refused(
    api: MesApi, method: str, url: str, body: dict[str, Any]
) -> None:
    audit = api.audit()
    response = getattr(api.client(Role.SUPERVISOR), method)(url, json=body)
    assert response.status_code == 422, response.text
    assert api.audit() == audit


# -- old intervals ----------------------------------------------------------------------------

JAM = T0 + 2 * HOUR  # a stop on the first day: [T0 + 2 h, T0 + 3 h), default reason "jam"


def _three_days(api: MesApi) -> None:
    """Each hour a state (a jam every fifth hour from the third), fed live: the service keeps
    one day in memory and prunes the rest."""
    for h in range(72):
        api.mes.now = T0 + h * HOUR
        api.mes.service.offer([Sample(TAG + "State", T0 + h * HOUR, 10 if h % 5 == 2 else 1)])
    api.mes.flush()


def test_old_intervals_are_looked_up_without_loading_them(tmp_path: Path) -> None:
    api = MesApi(f"sqlite:///{tmp_path / 'old.db'}", horizon_ms=DAY)
    try:
        _three_days(api)
        service = api.mes.service

        def window() -> tuple[int, int]:
            intervals = service._assets[ASSET].intervals.intervals
            return intervals[0].start_ms, len(intervals)

        held, kept = service.memory_size(ASSET), window()
        assert kept[0] > JAM + DAY  # the first day is no longer in memory
        found = service.interval_at(ASSET, JAM + 1)
        assert found is not None
        assert (found.start_ms, found.reason_id) == (JAM, "jam")
        assert service.interval_at(ASSET, 1) is None  # before any data
        assert service.memory_size(ASSET) == held
        url = f"{STATES}/{JAM}/reason"
        response = api.client(Role.OPERATOR).put(url, json={"reason_id": "mech"})
        assert response.status_code == 200, response.text
        # What the edit loaded is forgotten again (but the mode in force at the window's start).
        assert window() == kept
        assert service.memory_size(ASSET) <= held + 1
        stored = service.interval_at(ASSET, JAM)
        assert stored is not None
        assert stored.reason_id == "mech"
        missing = api.client(Role.OPERATOR).put(f"{STATES}/1/reason", json={"reason_id": "jam"})
        assert missing.status_code == 404
        assert window() == kept
    finally:
        api.close()


def test_edits_reaching_further_back_than_the_limit_are_refused(tmp_path: Path) -> None:
    api = MesApi(f"sqlite:///{tmp_path / 'old.db'}", horizon_ms=DAY, limits=MesLimits(31, 1, 367))
    try:
        _three_days(api)
        audit, held = api.audit(), api.mes.service.memory_size(ASSET)
        url = f"{STATES}/{JAM}/reason"
        response = api.client(Role.OPERATOR).put(url, json={"reason_id": "mech"})
        assert response.status_code == 422, response.text
        assert "setting mes_edit_max_age_days" in response.json()["detail"]
        assert (api.audit(), api.mes.service.memory_size(ASSET)) == (audit, held)
        recent = T0 + 67 * HOUR  # a jam in memory (the window) is edited as always
        response = api.client(Role.OPERATOR).put(
            f"{STATES}/{recent}/reason", json={"reason_id": "mech"}
        )
        assert response.status_code == 200, response.text
    finally:
        api.close()
