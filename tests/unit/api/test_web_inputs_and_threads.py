"""Out-of-range numbers and dates on the pages get their normal error, never a server error; and
the operator's actions re-read the screen on a worker thread, not on the server's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.api.timeparse import MAX_INSTANT_MS, MIN_INSTANT_MS
from andon.domain.users import Role
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG
from andon.web import operator as operator_page

HOUR = 3_600_000
HUGE = "9" * 25
NEGATIVE_HUGE = "-" + HUGE


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    api.mes.service.offer(
        [Sample(TAG + "State", T0 - 3 * HOUR, 1), Sample(TAG + "State", T0 - 2 * HOUR, 10)]
    )
    api.mes.flush()
    yield api
    api.close()


# -- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_ms", [HUGE, NEGATIVE_HUGE, str(MAX_INSTANT_MS + 1)])
def test_the_reason_picker_refuses_an_instant_out_of_range(api: MesApi, start_ms: str) -> None:
    response = api.client(Role.OPERATOR).get(
        "/fragments/operator/reasons", params={"asset": CELL, "start_ms": start_ms}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("start_ms", [MIN_INSTANT_MS, MAX_INSTANT_MS])
def test_the_reason_picker_at_the_ends_of_time_finds_no_stop(api: MesApi, start_ms: int) -> None:
    response = api.client(Role.OPERATOR).get(
        "/fragments/operator/reasons", params={"asset": CELL, "start_ms": str(start_ms)}
    )
    assert response.status_code == 404


@pytest.mark.parametrize("start_ms", [HUGE, NEGATIVE_HUGE, str(MIN_INSTANT_MS)])
def test_the_operator_reason_form_refuses_an_instant_out_of_range(
    api: MesApi, start_ms: str
) -> None:
    response = api.client(Role.OPERATOR).post(
        "/fragments/operator/reason",
        data={"asset": CELL, "start_ms": start_ms, "reason_id": "jam"},
    )
    assert response.status_code in (404, 422)  # in range but no stop there: 404
    assert '<p class="error" role="alert">' in response.text
    assert api.audit(entity="state_interval") == []


@pytest.mark.parametrize(
    ("form", "params"),
    [
        ("counts-edit", {"asset": CELL, "start_ms": HUGE}),
        ("counts-edit", {"asset": CELL, "start_ms": str(T0), "end_ms": NEGATIVE_HUGE}),
        ("counts-edit", {"asset": CELL, "start_ms": str(MIN_INSTANT_MS)}),
        ("interval-reason", {"asset": CELL, "start_ms": NEGATIVE_HUGE}),
        ("interval-split", {"asset": CELL, "start_ms": HUGE}),
        ("interval-revert", {"asset": CELL, "start_ms": str(MAX_INSTANT_MS)}),
        ("interval-reason", {"asset": CELL, "start_ms": "x" * 5000}),
    ],
)
def test_edit_forms_refuse_instants_out_of_range(
    api: MesApi, form: str, params: dict[str, str]
) -> None:
    response = api.client(Role.SUPERVISOR).get(f"/supervisor/forms/{form}", params=params)
    assert response.status_code == 422
    assert "start_ms" in response.text or "end_ms" in response.text


# -- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "params"),
    [
        ("/supervisor", {"from": "0001-01-01", "to": "0001-01-02"}),
        ("/supervisor", {"from": "9999-12-30", "to": "9999-12-31"}),
        ("/supervisor/fragments/counts", {"from": "0001-01-01"}),
        ("/analysis", {"from": "9999-12-30"}),
        ("/analysis", {"from": "0001-01-01", "to": "0001-01-03", "by": "week"}),
        ("/analysis", {"from": "9999-12-01", "to": "9999-12-31", "by": "shift"}),
    ],
)
def test_pages_show_their_error_for_dates_out_of_range(
    api: MesApi, page: str, params: dict[str, str]
) -> None:
    response = api.client(Role.SUPERVISOR).get(page, params=params)
    assert response.status_code == 200
    if "/fragments/" not in page:  # a fragment falls back to the default period silently
        assert "from/to: give dates from 1970-01-01 to 9998-12-31" in response.text


@pytest.mark.parametrize(
    "params",
    [
        {"from": "1970-01-01", "to": "1970-01-02", "by": "week"},
        {"from": "9998-12-29", "to": "9998-12-31", "by": "week"},
        {"from": "9998-12-29", "to": "9998-12-31", "by": "shift"},
    ],
)
def test_pages_open_at_the_first_and_last_day_they_take(
    api: MesApi, params: dict[str, str]
) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    assert supervisor.get("/analysis", params=params).status_code == 200
    assert supervisor.get("/supervisor", params=params).status_code == 200


# -- the event loop -----------------------------------------------------------------------------


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_operator_actions_read_the_screen_off_the_event_loop(
    api: MesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel = operator_page._panel
    where: list[bool] = []

    def watched(*args: Any) -> Any:
        where.append(_on_event_loop())  # the MES lock may be held: never block the loop
        return panel(*args)

    monkeypatch.setattr(operator_page, "_panel", watched)
    operator = api.client(Role.OPERATOR)
    changed = operator.post("/fragments/operator/mode", data={"asset": CELL, "mode": "Idle"})
    assert changed.status_code == 200, changed.text
    refused = operator.post("/fragments/operator/mode", data={"asset": CELL, "mode": "Nope"})
    assert refused.status_code == 422
    assert where == [False, False]


# -- wall-clock times the clocks pass twice ------------------------------------------------------

FIRST_0230 = 1_792_888_200_000  # 2026-10-25 02:30 CEST in Prague (UTC+02:00)
SECOND_0230 = 1_792_891_800_000  # an hour later, 02:30 CET again (UTC+01:00)


@pytest.mark.parametrize(("instant", "which"), [(FIRST_0230, "first"), (SECOND_0230, "second")])
def test_a_form_flags_a_wall_time_the_clocks_pass_twice(
    api: MesApi, instant: int, which: str
) -> None:
    form = api.client(Role.SUPERVISOR).get(
        "/supervisor/forms/counts-edit", params={"asset": CELL, "start_ms": str(instant)}
    )
    assert form.status_code == 200
    html = form.text
    assert 'value="2026-10-25T02:30:00"' in html  # the field shows the wall time...
    assert f'data-instant="{instant}"' in html  # ...and is sent back as this exact instant
    assert f"happens twice that day (the clocks go back); this is the {which} one" in html


def test_an_ordinary_wall_time_is_not_flagged(api: MesApi) -> None:
    html = (
        api.client(Role.SUPERVISOR)
        .get("/supervisor/forms/counts-edit", params={"asset": CELL, "start_ms": str(T0)})
        .text
    )
    assert f'data-instant="{T0}"' in html
    assert "happens twice" not in html
