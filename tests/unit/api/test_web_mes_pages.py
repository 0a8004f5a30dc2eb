"""The supervisor, analysis and admin pages (FastAPI TestClient, the small test plant on SQLite):
login required, role enforced, sections, edit dialogs and histories rendered from the MES."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _auth_rig import AuthRig
from _mes_api_rig import MesApi
from fastapi.testclient import TestClient

from andon.domain import AssetPath
from andon.domain.users import Role
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG
from andon.web.mes_view import newest_intervals

HOUR = 3_600_000
LINE = "Site/Area/Line"
JAM = T0 - 2 * HOUR  # a stop [T0 - 2 h, T0 - 1 h) with the default reason "jam"
PERIOD = {"asset": "Site", "from": "2026-03-01", "to": "2026-03-02"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    states = [(T0 - 3 * HOUR, 1), (JAM, 10), (T0 - HOUR, 1)]
    api.mes.service.offer([Sample(TAG + "State", ts, code) for ts, code in states])
    counts = [(T0 - 3 * HOUR, 0), (T0 - HOUR // 2, 100)]
    api.mes.service.offer([Sample(TAG + "In", ts, n) for ts, n in counts])
    api.mes.flush()
    yield api
    api.close()


def _anonymous(api: MesApi) -> TestClient:
    return TestClient(api.app, follow_redirects=False)


def _chart(page: str, kind: str) -> list[Any]:
    found = re.findall(rf'data-kind="{kind}" data-chart="([^"]*)"', page)
    return [json.loads(html.unescape(text)) for text in found]


# -- access -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/supervisor", "/supervisor/fragments/runs", "/supervisor/forms/run-add", "/analysis",
     "/admin", "/admin/fragments/users", "/admin/forms/user-add"],
)  # fmt: skip
def test_pages_need_a_login(api: MesApi, path: str) -> None:
    response = _anonymous(api).get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    fragment = _anonymous(api).get(path, headers={"HX-Request": "true"})
    assert fragment.status_code == 401
    assert fragment.headers["HX-Redirect"].startswith("/login?next=")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/supervisor", Role.SUPERVISOR),
        ("/supervisor/fragments/downtime", Role.SUPERVISOR),
        ("/supervisor/forms/run-add", Role.SUPERVISOR),
        ("/supervisor/history?entity=run&entity_id=R1", Role.SUPERVISOR),
        ("/analysis", Role.OPERATOR),
        ("/admin", Role.ADMIN),
        ("/admin/forms/user-add", Role.ADMIN),
        ("/admin/history?username=test-admin", Role.ADMIN),
    ],
)
def test_each_page_opens_for_its_role_and_up_only(api: MesApi, path: str, allowed: Role) -> None:
    for role in Role:
        response = api.client(role).get(path)
        if role.allows(allowed):
            assert response.status_code == 200, (role, response.text)
        else:
            assert response.status_code == 403, role
            assert f"needs the role <strong>{allowed.value}</strong>" in response.text


def test_the_navigation_shows_only_the_pages_of_the_role(api: MesApi) -> None:
    operator = api.client(Role.OPERATOR).get("/analysis").text
    assert 'href="/analysis"' in operator
    assert 'href="/supervisor"' not in operator
    assert 'href="/admin"' not in operator
    admin = api.client(Role.ADMIN).get("/analysis").text
    assert 'href="/supervisor"' in admin
    assert 'href="/admin"' in admin


# -- supervisor -------------------------------------------------------------------------------


def test_supervisor_page_lists_runs_downtime_and_the_schedule(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    body = {"id": "S1", "order_id": "PO1", "asset": LINE, "start": str(T0 + HOUR),
            "end": str(T0 + 9 * HOUR), "comment": "planned"}  # fmt: skip
    assert supervisor.post("/api/v1/schedule", json=body).status_code == 201

    page = supervisor.get("/supervisor", params=PERIOD)
    assert page.status_code == 200, page.text
    text = page.text
    assert '<tr data-id="R1">' in text  # the plant file's run on the line
    assert '<tr data-id="S1">' in text
    # The stop, on the site's clock (Europe/Prague, UTC+1): 2026-03-01 22:00 .. 23:00.
    assert f'data-asset="{CELL}" data-start-ms="{JAM}"' in text
    assert "2026-03-01 22:00:00" in text
    assert "Site / mech / jam" not in text
    assert "Mechanical / Jam" in text
    [chart] = _chart(text, "gantt")
    assert chart["rows"] == [LINE, CELL]
    kinds = {(bar["id"], bar["kind"]) for bar in chart["bars"]}
    assert kinds == {("S1", "scheduled"), ("R1", "actual")}


def test_downtime_lists_stops_only_unless_every_state_is_asked_for(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    stops = supervisor.get("/supervisor/fragments/downtime", params=PERIOD).text
    every = supervisor.get("/supervisor/fragments/downtime", params={**PERIOD, "all_states": "1"})
    assert stops.count("data-start-ms=") == 1
    assert every.text.count("data-start-ms=") == 3
    assert stops.lstrip().startswith('<section id="downtime"')  # a fragment, not a page


def test_edit_dialogs_name_the_api_call_they_make(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    edit = supervisor.get("/supervisor/forms/run-edit", params={"id": "R1"}).text
    assert 'data-api-url="/api/v1/runs/R1"' in edit
    assert 'data-api-method="PATCH"' in edit
    assert "data-send-changed" in edit
    assert 'data-tz="Europe/Prague"' in edit
    assert 'value="2026-03-01T01:00:00"' in edit  # R1's start on the site's clock
    split = supervisor.get(
        "/supervisor/forms/interval-split", params={"asset": CELL, "start_ms": str(JAM)}
    ).text
    assert f'data-api-url="/api/v1/assets/Site/Area/Line/Cell/states/{JAM}/split"' in split
    assert 'value="2026-03-01T22:30:00"' in split  # the middle of the stop
    added = supervisor.get("/supervisor/forms/downtime-add", params={"asset": CELL}).text
    assert 'data-api-url="/api/v1/assets/{asset}/states"' in added
    assert '<option value="10"' in added
    assert '<option value="1"' not in added
    for name, params, status in [
        ("run-edit", {"id": "R9"}, 404),
        ("interval-split", {"asset": CELL, "start_ms": "5"}, 404),
        ("interval-split", {"asset": CELL, "start_ms": "x"}, 422),
        ("no-such-form", {}, 404),
    ]:
        assert supervisor.get(f"/supervisor/forms/{name}", params=params).status_code == status


def test_the_history_of_a_record_shows_its_audit_entries(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    body = {"id": "R2", "order_id": "PO1", "asset": CELL, "start": str(T0 - 3 * HOUR),
            "end": str(T0 - 2 * HOUR), "comment": "missed on the panel"}  # fmt: skip
    assert supervisor.post("/api/v1/runs", json=body).status_code == 201
    patch = {"end": str(T0 - HOUR), "comment": "ran an hour longer"}
    assert supervisor.patch("/api/v1/runs/R2", json=patch).status_code == 200

    history = supervisor.get("/supervisor/history", params={"entity": "run", "entity_id": "R2"})
    rows = re.findall(r'<tr data-audit-id="\d+">(.*?)</tr>', history.text, re.S)
    assert len(rows) == 2
    assert "run.edited" in rows[0]
    assert "ran an hour longer" in rows[0]
    assert "<b>end_ms</b>: 2026-03-01 22:00:00 &rarr; 2026-03-01 23:00:00" in rows[0]
    assert "run.added" in rows[1]
    assert "missed on the panel" in rows[1]
    assert "test-supervisor" in rows[1]
    none = supervisor.get("/supervisor/history", params={"entity": "run", "entity_id": "R1"})
    assert "No audited change" in none.text


# -- analysis ---------------------------------------------------------------------------------


def test_analysis_shows_the_api_figures(api: MesApi) -> None:
    operator = api.client(Role.OPERATOR)
    page = operator.get("/analysis", params={**PERIOD, "asset": CELL, "by": "day"})
    assert page.status_code == 200, page.text
    start = re.search(r'data-api="([^"]+)"', page.text)
    assert start is not None
    oee = operator.get(html.unescape(start.group(1))).json()
    tiles = dict(re.findall(r'data-figure="(\w+)" data-value="([^"]*)"', page.text))
    for key in ("availability", "performance", "quality", "oee", "mtbf_ms", "mttr_ms"):
        expected = oee["total"][key]
        assert tiles[key] == ("" if expected is None else repr(expected)), key
    assert tiles["good"] == str(oee["total"]["account"]["good_count"]) == "100"
    [trend] = _chart(page.text, "trend")
    assert [b["start_ms"] for b in trend["buckets"]] == [b["start_ms"] for b in oee["buckets"]]
    assert [b["oee"] for b in trend["buckets"]] == [b["oee"] for b in oee["buckets"]]
    pareto = operator.get(
        "/api/v1/downtime/pareto",
        params={"asset": CELL, "start": oee["total"]["start"], "end": oee["total"]["end"]},
    ).json()
    reasons = _chart(page.text, "pareto")[0]
    assert (
        [(r["key"], r["downtime_ms"]) for r in reasons]
        == [(r["reason_id"], r["downtime_ms"]) for r in pareto]
        == [("jam", HOUR)]
    )
    [timeline] = _chart(page.text, "timeline")
    assert timeline["rows"] == [CELL]
    assert [bar["label"] for bar in timeline["bars"]] == ["Running", "Jam", "Running"]
    assert "/api/v1/export/oee?" in page.text
    assert "format=parquet" in page.text


def test_analysis_by_week_sums_the_days(api: MesApi) -> None:
    operator = api.client(Role.OPERATOR)
    params = {**PERIOD, "asset": CELL, "from": "2026-02-27", "to": "2026-03-03"}
    days = _chart(operator.get("/analysis", params={**params, "by": "day"}).text, "trend")[0]
    weeks = _chart(operator.get("/analysis", params={**params, "by": "week"}).text, "trend")[0]
    assert [w["label"] for w in weeks["buckets"]] == ["2026-W09", "2026-W10"]
    assert sum(d["good"] for d in days["buckets"]) == sum(w["good"] for w in weeks["buckets"])
    assert weeks["buckets"][0]["start_ms"] == days["buckets"][0]["start_ms"]
    assert weeks["buckets"][1]["start_ms"] == days["buckets"][3]["start_ms"]  # Monday 03-02


def test_a_bad_query_is_named_not_guessed(api: MesApi) -> None:
    page = api.client(Role.OPERATOR).get("/analysis", params={"asset": "Nope", "from": "x"})
    assert page.status_code == 200
    assert "asset: unknown asset Nope" in page.text
    assert "use dates as YYYY-MM-DD" in page.text


# -- admin ------------------------------------------------------------------------------------


def test_admin_lists_users_and_shows_the_running_plant(api: MesApi) -> None:
    page = api.client(Role.ADMIN).get("/admin").text
    for role in Role:
        assert f'<tr data-username="test-{role.value}">' in page
    assert 'class="plant-source">test.toml</code>' in page
    assert "The tables show the configuration this server is running" in page
    assert "G/N/Cell/State" in page  # a tag binding
    assert "Mechanical" in page
    assert "Day" in page
    assert "PO1" in page


def test_admin_user_forms_patch_the_users_api(api: MesApi) -> None:
    admin = api.client(Role.ADMIN)
    form = admin.get("/admin/forms/user-disable", params={"username": "test-operator"}).text
    assert 'data-api-url="/api/v1/users/test-operator"' in form
    assert 'data-api-method="PATCH"' in form
    assert "data-bool" in form
    assert admin.get("/admin/forms/user-role", params={"username": "nobody"}).status_code == 404
    patch = {"role": "supervisor", "comment": "promoted"}
    assert admin.patch("/api/v1/users/test-operator", json=patch).status_code == 200
    history = admin.get("/admin/history", params={"username": "test-operator"}).text
    assert "user.role_changed" in history
    assert "promoted" in history
    assert "<b>role</b>: operator &rarr; supervisor" in history


def test_counts_show_the_api_buckets_and_the_edits_with_their_history(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    edit = {"start": str(T0 - 3 * HOUR), "end": str(T0 - 2 * HOUR), "infeed": 250, "mode": "set",
            "comment": "counted by hand"}  # fmt: skip
    response = supervisor.post(f"/api/v1/assets/{CELL}/counts/edits", json=edit)
    assert response.status_code == 201, response.text
    edit_id = response.json()["id"]

    section = supervisor.get("/supervisor/fragments/counts", params={**PERIOD, "asset": CELL})
    assert section.status_code == 200, section.text
    rows = re.findall(r'<tr data-start-ms="(\d+)">(.*?)</tr>', section.text, re.S)
    api_rows = supervisor.get(
        f"/api/v1/assets/{CELL}/counts",
        params={"start": str(T0 - 24 * HOUR), "end": str(T0 + 24 * HOUR), "by": "hour"},
    ).json()
    assert len(rows) == len(api_rows)
    shown = {int(start): ("edited" in cells, re.findall(r'class="num">([\d,]+)<', cells))
             for start, cells in rows}  # fmt: skip
    for bucket in api_rows:
        edited, numbers = shown[bucket["start_ms"]]
        figures = [f"{bucket[k]:,}" for k in ("infeed", "outfeed", "waste")]
        assert (edited, numbers) == (bucket["edited"], figures), bucket
    assert shown[T0 - 3 * HOUR] == (True, ["250", "250", "0"])
    assert f'<tr data-edit-id="{edit_id}">' in section.text
    assert "counted by hand" in section.text

    form = supervisor.get("/supervisor/forms/count-edit-revert", params={"id": str(edit_id)}).text
    assert f'data-api-url="/api/v1/count-edits/{edit_id}/revert"' in form
    history = supervisor.get(
        "/supervisor/history", params={"entity": "count_edit", "entity_id": str(edit_id)}
    ).text
    assert "count_edit.added" in history
    assert "counted by hand" in history
    correct = supervisor.get(
        "/supervisor/forms/counts-edit", params={"asset": LINE, "start_ms": str(T0 - HOUR)}
    ).text
    assert 'data-api-url="/api/v1/assets/{asset}/counts/edits"' in correct
    assert f'<option value="{CELL}" selected>' in correct  # the line's cell gets it
    assert 'value="2026-03-01T23:00:00"' in correct


def test_a_cancelled_plan_and_a_deleted_run_stay_listed_for_revert(api: MesApi) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    plan = {"id": "S1", "order_id": "PO1", "asset": CELL, "start": str(T0 + HOUR),
            "end": str(T0 + 2 * HOUR), "comment": "planned"}  # fmt: skip
    assert supervisor.post("/api/v1/schedule", json=plan).status_code == 201
    assert supervisor.delete("/api/v1/schedule/S1", params={"comment": "no"}).status_code == 204
    run = {"id": "R2", "order_id": "PO1", "asset": CELL, "start": str(T0 - 3 * HOUR),
           "end": str(T0 - 2 * HOUR), "comment": "missed"}  # fmt: skip
    assert supervisor.post("/api/v1/runs", json=run).status_code == 201
    assert supervisor.delete("/api/v1/runs/R2", params={"comment": "wrong"}).status_code == 204

    page = supervisor.get("/supervisor", params=PERIOD).text
    removed = re.findall(
        r'removed-table" data-entity="(\w+)">.*?<tr data-id="([^"]+)">', page, re.S
    )
    assert removed == [("scheduled_run", "S1"), ("run", "R2")]
    assert "scheduled_run.cancelled · test-supervisor" in page
    form = supervisor.get("/supervisor/forms/run-revert", params={"id": "R2"}).text
    assert 'data-api-url="/api/v1/runs/R2/revert"' in form
    assert supervisor.post("/api/v1/runs/R2/revert", json={"comment": "oops"}).status_code == 200
    page = supervisor.get("/supervisor", params=PERIOD).text
    assert '<tr data-id="R2">' in page  # back among the runs
    assert 'data-entity="run"' not in page  # and no longer listed as removed


def test_newest_intervals_reads_back_from_the_end_and_says_when_it_cut(api: MesApi) -> None:
    minute = 60_000
    start = T0 - 20 * HOUR
    states = [(start + i * 10 * minute, 10 if i % 2 else 1) for i in range(60)]  # 10 h of flips
    api.mes.service.offer([Sample(TAG + "State", ts, code) for ts, code in states])
    api.mes.flush()
    cell = AssetPath.parse(CELL)
    everything = api.mes.queries.intervals(cell, start, T0)

    newest, complete = newest_intervals(api.mes.queries, [cell], start, T0, 5)
    assert not complete
    assert [iv.start_ms for iv in newest] == sorted(
        (iv.start_ms for iv in everything), reverse=True
    )[:5]
    found, complete = newest_intervals(api.mes.queries, [cell], start, T0, 1000)
    assert complete
    assert sorted(iv.start_ms for iv in found) == [iv.start_ms for iv in everything]


def test_without_a_plant_file_the_pages_say_so(tmp_path: Path) -> None:
    rig = AuthRig(tmp_path)
    try:
        admin = rig.client(Role.ADMIN)
        for path in ("/supervisor", "/analysis"):
            response = admin.get(path)
            assert response.status_code == 503
            assert "No plant file is loaded" in response.text
        page = admin.get("/admin")
        assert page.status_code == 200
        assert "No plant file is loaded" in page.text
        assert '<tr data-username="test-admin">' in page.text
    finally:
        rig.users.repository.close()
