"""The plant overview and the operator screen on the small test plant: tiles with states, runs
and figures, the drill-down, the stops with the reason picker, and the operator's actions (reason,
start and end a run, mode) going through the API's own code, audited, errors shown in place."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi
from fastapi.testclient import TestClient

from andon.domain.users import Role
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

HOUR = 3_600_000
JAM = T0 - 2 * HOUR  # the stop: [T0 - 2 h, T0 - 1 h), Jam, default reason "jam"
SCREEN = f"/operator/{CELL}"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    states = [(T0 - 3 * HOUR, 1), (JAM, 10), (T0 - HOUR, 3)]  # ... then blocked, still open
    counts = [(T0 - 3 * HOUR, 0), (T0 - 2 * HOUR - 1, 120)]
    api.mes.service.offer(
        [Sample(TAG + "State", ts, code) for ts, code in states]
        + [Sample(TAG + "In", ts, n) for ts, n in counts]
        + [Sample(TAG + "Waste", ts, 0) for ts, _ in counts]
    )
    api.mes.flush()
    yield api
    api.close()


def _post(client: TestClient, url: str, **form: Any) -> Any:
    return client.post(url, data={k: str(v) for k, v in form.items()})


def test_the_overview_opens_on_the_single_site_and_drills_down(api: MesApi) -> None:
    operator = api.client(Role.OPERATOR)
    home = operator.get("/")
    assert home.status_code == 200
    html = home.text
    assert "<title>Site · Overview · Andon</title>" in html
    assert 'data-live-states="Site"' in html  # states pushed for everything below the site
    assert 'href="/plant/Site/Area"' in html  # the area's tile
    assert 'class="tile st-blocked"' in html  # coloured by its worst machine...
    assert '<span class="state-name">Blocked</span>' in html  # ...always with the state's name
    assert '<span class="running-count">0</span> of 1 running' in html

    line = operator.get("/plant/Site/Area/Line").text
    assert 'href="/operator/Site/Area/Line/Cell"' in line  # a machine's tile opens its screen
    assert f'data-since-of="{CELL}" data-since="{T0 - HOUR}"' in line
    assert "1 h 00 min" in line  # time in state, ticking in the browser from here
    assert "Run <strong>PO1</strong> · w <small>(on Line)</small>" in line
    assert "120 of 1,000 good (12.0 %)" in line
    assert "Shift Night" in line
    assert operator.get("/fragments/overview?asset=Site/Area").status_code == 200
    missing = operator.get("/plant/Site/Nowhere")
    assert missing.status_code == 404
    assert "unknown asset Site/Nowhere" in missing.text


def test_the_operator_screen_shows_state_run_figures_and_stops(api: MesApi) -> None:
    html = api.client(Role.OPERATOR).get(SCREEN).text
    assert f'data-asset-state="{CELL}"><span class="state-name">Blocked</span>' in html
    assert f'data-reason-of="{CELL}">Line / Blocked<' in html
    assert f'data-mode-of="{CELL}">Production<' in html
    assert 'name="run_id" value="R1"' in html  # the line's run can be ended from here
    assert '<option value="PO1">PO1 · w · 1,000 (running)</option>' in html
    for mode in ("Production", "Changeover", "Maintenance", "Idle"):
        assert f'name="mode" value="{mode}"' in html
    stops = re.findall(r'<tr class="[^"]*" data-stop="(\d+)">', html)
    assert stops == [str(T0 - HOUR), str(JAM)]  # newest first; the running time is no stop
    assert "Needs a reason" not in html  # both stops have their state's reason


def test_the_reason_picker_walks_the_tree_and_assigns_through_the_api(api: MesApi) -> None:
    operator = api.client(Role.OPERATOR)
    base = f"/fragments/operator/reasons?asset={CELL}&start_ms={JAM}"
    top = operator.get(base).text
    assert "Reason for the stop at 22:00:00" in top
    assert "parent=mech" in top  # categories lead deeper
    assert "parent=line" in top
    assert 'name="reason_id"' not in top
    mech = operator.get(f"{base}&parent=mech").text
    assert "<strong>Mechanical</strong>" in mech
    assert 'name="reason_id" value="jam"' in mech
    assert operator.get(f"{base}&parent=nope").status_code == 404

    done = _post(operator, "/fragments/operator/reason", asset=CELL, start_ms=JAM,
                 reason_id="blocked")  # fmt: skip
    assert done.status_code == 200, done.text
    assert "Reason set: Line / Blocked" in done.text
    assert 'id="picker" class="picker-host" hx-swap-oob="true"' in done.text  # closes it
    [entry] = api.audit(entity="state_interval", entity_id=f"{CELL}@{JAM}")
    assert (entry["action"], entry["username"]) == ("state_interval.reason", "test-operator")
    assert entry["after"]["reason_id"] == "blocked"


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"start_ms": JAM, "reason_id": "nope"}, 422, "unknown reason"),
        ({"start_ms": T0 - 3 * HOUR, "reason_id": "jam"}, 422, "running time"),
        ({"start_ms": JAM + 1, "reason_id": "jam"}, 404, "no state interval"),
        ({"start_ms": "soon", "reason_id": "jam"}, 422, "which stop?"),
    ],
)
def test_a_refused_reason_is_shown_in_place_and_changes_nothing(
    api: MesApi, form: dict[str, Any], status: int, message: str
) -> None:
    response = _post(api.client(Role.OPERATOR), "/fragments/operator/reason", asset=CELL, **form)
    assert response.status_code == status
    assert '<p class="error" role="alert">' in response.text
    assert message in response.text
    assert response.text.lstrip().startswith('<section id="downtime"')
    assert api.audit(entity="state_interval") == []


def test_the_operator_starts_and_ends_a_run_the_api_confirms(api: MesApi) -> None:
    operator = api.client(Role.OPERATOR)
    started = _post(operator, "/fragments/operator/start-run", asset=CELL, order_id="PO1")
    assert started.status_code == 200, started.text
    assert "started for order PO1" in started.text
    [run] = [r for r in api.runs() if r["asset"] == CELL]
    assert (run["order_id"], run["start_ms"], run["end_ms"]) == ("PO1", T0, None)
    assert f'name="run_id" value="{run["id"]}"' in started.text  # the panel now ends it

    again = _post(operator, "/fragments/operator/start-run", asset=CELL, order_id="PO1")
    assert again.status_code == 409  # the API's overlap rule, shown in the panel
    assert "overlap" in again.text.lower()
    unknown = _post(operator, "/fragments/operator/start-run", asset=CELL, order_id="PO9")
    assert unknown.status_code == 422
    assert "unknown order" in unknown.text

    api.mes.now = T0 + HOUR
    ended = _post(operator, "/fragments/operator/end-run", asset=CELL, run_id=run["id"])
    assert ended.status_code == 200, ended.text
    assert [r["end_ms"] for r in api.runs() if r["asset"] == CELL] == [T0 + HOUR]
    actions = [e["action"] for e in api.audit(entity="run", entity_id=run["id"])]
    assert actions == ["run.ended", "run.started"]


def test_the_operator_changes_the_mode(api: MesApi) -> None:
    operator = api.client(Role.OPERATOR)
    response = _post(operator, "/fragments/operator/mode", asset=CELL, mode="Changeover")
    assert response.status_code == 200, response.text
    assert "Mode changed to Changeover" in response.text
    assert 'value="Changeover" class="current" aria-pressed="true"' in response.text
    [entry] = api.audit(entity="asset", entity_id=CELL)
    assert entry["after"]["mode"] == "Changeover"
    same = _post(operator, "/fragments/operator/mode", asset=CELL, mode="Changeover")
    assert same.status_code == 422
    assert "nothing to change" in same.text


def test_an_unknown_asset_on_the_operator_screen_is_404(api: MesApi) -> None:
    response = api.client(Role.OPERATOR).get("/operator/Site/Nowhere")
    assert response.status_code == 404
    assert "unknown asset" in response.text
    picker = api.client(Role.OPERATOR).get("/operator")
    assert picker.status_code == 200
    assert f'href="/operator/{CELL}"' in picker.text
