"""Count edits through the API: the counts per hour and shift, set and add with every view
following (counts, OEE, export, runs re-rating), each validation error changing nothing, the
audit entries, reverts (and the 409s), on SQLite and PostgreSQL. 401/403 come from
``REQUIRED_ROLE`` in test_api_auth.py."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.domain.users import Role
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

HOUR = 3_600_000
START = T0 - 4 * HOUR  # 20:00 local, in the night shift that began at 18:00 (T0 - 6 h)
EDITS = f"/api/v1/assets/{CELL}/counts/edits"


def _feed(api: MesApi) -> None:
    """Running from T0 - 5 h; each minute from START 10 pieces in, every tenth minute 1 waste."""
    samples = [Sample(TAG + "State", T0 - 5 * HOUR, 1)]
    for minute in range(240):
        ts = START + minute * 60_000
        samples += [Sample(TAG + "In", ts, 10 * minute), Sample(TAG + "Waste", ts, minute // 10)]
    api.mes.service.offer(samples)
    api.mes.flush()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    _feed(api)
    yield api
    api.close()


def _counts(api: MesApi, by: str = "hour", start: int = START) -> list[dict[str, Any]]:
    response = api.client(Role.OPERATOR).get(
        f"/api/v1/assets/{CELL}/counts", params={"start": str(start), "end": str(T0), "by": by}
    )
    assert response.status_code == 200, response.text
    buckets: list[dict[str, Any]] = response.json()
    return buckets


def _figures(api: MesApi) -> list[tuple[int, int, int, bool]]:
    return [(b["infeed"], b["outfeed"], b["waste"], b["edited"]) for b in _counts(api)]


def _oee_account(api: MesApi) -> dict[str, Any]:
    params = {"asset": CELL, "start": str(START), "end": str(T0)}
    response = api.client(Role.OPERATOR).get("/api/v1/oee", params=params)
    assert response.status_code == 200, response.text
    account: dict[str, Any] = response.json()["total"]["account"]
    return account


def _edit(api: MesApi, **body: Any) -> dict[str, Any]:
    response = api.client(Role.SUPERVISOR).post(EDITS, json={"comment": "recount", **body})
    assert response.status_code == 201, response.text
    edit: dict[str, Any] = response.json()
    return edit


BEFORE = [(590, 585, 5, False), (600, 594, 6, False), (600, 594, 6, False), (600, 594, 6, False)]


def test_counts_per_hour_and_per_shift(api: MesApi) -> None:
    assert _figures(api) == BEFORE
    hours = _counts(api)
    assert [b["start_ms"] for b in hours] == [START + i * HOUR for i in range(4)]
    assert all(b["good"] == b["outfeed"] for b in hours)
    [night] = _counts(api, by="shift", start=T0 - 6 * HOUR)
    assert (night["label"], night["infeed"], night["waste"]) == ("2026-03-01/Night", 2390, 23)


def test_setting_an_hours_waste_shows_in_counts_oee_export_and_audit(api: MesApi) -> None:
    edit = _edit(api, start=str(START + HOUR), end=str(START + 2 * HOUR), mode="set", waste=20)
    assert (edit["asset"], edit["mode"], edit["user"], edit["comment"]) == (
        CELL, "set", "test-supervisor", "recount",
    )  # fmt: skip
    assert (edit["infeed_delta"], edit["outfeed_delta"], edit["waste_delta"]) == (0, -14, 14)
    assert edit["requested"] == {"infeed": None, "outfeed": None, "waste": 20}
    assert (edit["start_ms"], edit["end_ms"], edit["created_ms"]) == (
        START + HOUR, START + 2 * HOUR, T0,
    )  # fmt: skip
    assert (edit["in_force"], edit["reverted_ms"]) == (True, None)
    assert _figures(api) == [BEFORE[0], (600, 580, 20, True), BEFORE[2], BEFORE[3]]
    account = _oee_account(api)
    assert (account["total_count"], account["reject_count"]) == (2390, 23 + 14)
    [entry] = api.audit(entity="count_edit", entity_id=str(edit["id"]))
    assert (entry["action"], entry["username"], entry["before"]) == (
        "count_edit.added", "test-supervisor", None,
    )  # fmt: skip
    assert entry["after"]["waste_delta"] == 14
    listed = api.client(Role.OPERATOR).get(EDITS)
    assert [e["id"] for e in listed.json()] == [edit["id"]]
    exported = api.client(Role.OPERATOR).get(
        "/api/v1/export/counts", params={"asset": CELL, "start": str(START), "end": str(T0)}
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sum(int(r["reject"]) for r in rows) == 37
    assert {r["edit_id"] for r in rows if r["edit_id"]} == {str(edit["id"])}


def test_adding_over_a_period_is_spread_over_its_hours_exactly(api: MesApi) -> None:
    _edit(api, start=str(START), end=str(T0), mode="add", outfeed=100)
    after = _figures(api)
    assert sum(infeed for infeed, *_ in after) == 2390 + 100
    assert [waste for _, _, waste, _ in after] == [5, 6, 6, 6]  # waste stays
    assert all(a[0] >= b[0] for a, b in zip(after, BEFORE, strict=True))
    assert all(edited for *_, edited in after)
    account = _oee_account(api)
    assert account["total_count"] == 2490
    assert account["ideal_time_us"] == 2490 * 1_000_000  # 60 per minute: 1 s each


def test_removing_everything_leaves_no_hour_below_zero(api: MesApi) -> None:
    _edit(api, start=str(START), end=str(T0), mode="set", infeed=0, waste=0)
    assert _figures(api) == [(0, 0, 0, True)] * 4


def test_a_run_change_re_rates_the_corrections_too(api: MesApi) -> None:
    _edit(api, start=str(START), end=str(T0), mode="add", infeed=10)
    supervisor = api.client(Role.SUPERVISOR)
    assert supervisor.delete("/api/v1/runs/R1", params={"comment": "no order"}).status_code == 204
    account = _oee_account(api)
    assert (account["ideal_time_us"], account["unrated_count"]) == (0, 2400)


@pytest.mark.parametrize(
    ("url", "body", "status", "detail"),
    [
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "waste": 1}, 422,
         "comment"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "waste": 1, "comment": " "},
         422, "comment"),
        (EDITS, {"end": str(T0), "mode": "set", "waste": 1, "comment": "c"}, 422, "start"),
        (EDITS, {"start": str(T0), "end": str(START), "mode": "set", "waste": 1, "comment": "c"},
         422, "end must be after start"),
        (EDITS, {"start": str(START), "end": str(T0 + HOUR), "mode": "set", "waste": 1,
                 "comment": "c"}, 422, "out of bounds"),
        (EDITS, {"start": "soon", "end": str(T0), "mode": "set", "waste": 1, "comment": "c"},
         422, "not a time"),
        (EDITS, {"start": str(START), "end": str(T0), "waste": 1, "comment": "c"}, 422, "mode"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "swap", "waste": 1,
                 "comment": "c"}, 422, "mode"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "comment": "c"}, 422,
         "give infeed, outfeed or waste"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "infeed": -5,
                 "comment": "c"}, 422, "cannot be negative"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "infeed": 10,
                 "comment": "c"}, 422, "waste 23 would be above infeed 10"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "infeed": 10,
                 "outfeed": 20, "comment": "c"}, 422, "good 20 above total 10"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "infeed": 10,
                 "outfeed": 5, "waste": 1, "comment": "c"}, 422, "is not outfeed 5 + waste 1"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "add", "waste": -24,
                 "comment": "c"}, 422, "waste would be -1"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "waste": 23,
                 "comment": "c"}, 422, "nothing to change"),
        (EDITS, {"start": str(START), "end": str(T0), "mode": "set", "waste": 1, "comment": "c",
                 "why": "x"}, 422, "why"),
        (EDITS.replace(CELL, "Site/Nowhere"), {"start": str(START), "end": str(T0),
                                               "mode": "set", "waste": 1, "comment": "c"},
         404, "Nowhere"),
        (EDITS.replace(CELL, "Site/Area/Line"), {"start": str(START), "end": str(T0),
                                                 "mode": "set", "waste": 1, "comment": "c"},
         404, "no state tag"),
    ],
)  # fmt: skip
def test_invalid_edits_are_refused_and_change_nothing(
    api: MesApi, url: str, body: dict[str, Any], status: int, detail: str
) -> None:
    figures, account, audit = _figures(api), _oee_account(api), api.audit()
    response = api.client(Role.SUPERVISOR).post(url, json=body)
    assert response.status_code == status, response.text
    assert detail in str(response.json()["detail"])
    assert (_figures(api), _oee_account(api), api.audit()) == (figures, account, audit)
    assert api.client(Role.OPERATOR).get(EDITS).json() == []


def test_revert_takes_an_edit_back_once(api: MesApi) -> None:
    figures, account = _figures(api), _oee_account(api)
    edit = _edit(api, start=str(START), end=str(START + 2 * HOUR), mode="add", infeed=50)
    supervisor = api.client(Role.SUPERVISOR)
    url = f"/api/v1/count-edits/{edit['id']}/revert"
    refused = supervisor.post(url, json={})
    assert (refused.status_code, _figures(api)[0][3]) == (422, True)
    api.mes.now += 60_000
    response = supervisor.post(url, json={"comment": "counted twice"})
    assert response.status_code == 200, response.text
    reverted = response.json()
    assert (reverted["in_force"], reverted["reverted_ms"], reverted["reverted_by"]) == (
        False, T0 + 60_000, "test-supervisor",
    )  # fmt: skip
    assert (_figures(api), _oee_account(api)) == (figures, account)
    entries = api.audit(entity="count_edit", entity_id=str(edit["id"]))
    assert [e["action"] for e in entries] == ["count_edit.reverted", "count_edit.added"]
    assert (entries[0]["before"]["reverted_ms"], entries[0]["comment"]) == (None, "counted twice")
    again = supervisor.post(url, json={"comment": "c"})
    assert (again.status_code, "already reverted" in again.json()["detail"]) == (409, True)
    assert supervisor.post("/api/v1/count-edits/999/revert", json={"comment": "c"}).status_code == (
        404
    )
    listed = api.client(Role.OPERATOR).get(EDITS).json()
    assert [(e["id"], e["in_force"]) for e in listed] == [(edit["id"], False)]


def test_an_edit_a_later_one_relies_on_cannot_be_reverted(api: MesApi) -> None:
    hour = {"start": str(START), "end": str(START + HOUR)}
    first = _edit(api, **hour, mode="add", outfeed=1000)
    _edit(api, **hour, mode="set", outfeed=100)  # takes mostly from the first edit's pieces
    figures, audit = _figures(api), api.audit()
    response = api.client(Role.SUPERVISOR).post(
        f"/api/v1/count-edits/{first['id']}/revert", json={"comment": "c"}
    )
    assert response.status_code == 409
    assert "revert the later edits" in response.json()["detail"]
    assert (_figures(api), api.audit()) == (figures, audit)


@pytest.mark.postgres
def test_count_edits_and_reverts_on_postgresql(postgres_url: str) -> None:
    api = MesApi(postgres_url)
    try:
        _feed(api)
        assert _figures(api) == BEFORE
        edit = _edit(api, start=str(START + HOUR), end=str(START + 2 * HOUR), mode="set",
                     waste=20)  # fmt: skip
        assert _figures(api)[1] == (600, 580, 20, True)
        url = f"/api/v1/count-edits/{edit['id']}/revert"
        assert api.client(Role.SUPERVISOR).post(url, json={"comment": "c"}).status_code == 200
        assert _figures(api) == BEFORE
        entries = api.audit(entity="count_edit", entity_id=str(edit["id"]))
        assert [e["action"] for e in entries] == ["count_edit.reverted", "count_edit.added"]
    finally:
        api.close()
