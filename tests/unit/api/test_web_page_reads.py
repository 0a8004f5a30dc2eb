"""What one page refresh reads: each account of the overview once however many tiles share it,
the runs once per supervisor page, and a removed record looked up only when the page lists it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_api_rig import MesApi

from andon.domain.users import Role
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG

HOUR = 3_600_000
PERIOD = {"asset": "Site", "from": "2026-03-01", "to": "2026-03-02"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    states = [(T0 - 3 * HOUR, 1), (T0 - 2 * HOUR, 10), (T0 - HOUR, 1)]
    api.mes.service.offer([Sample(TAG + "State", ts, code) for ts, code in states])
    api.mes.service.offer([Sample(TAG + "In", T0 - 3 * HOUR, 0), Sample(TAG + "In", T0 - 1, 9)])
    api.mes.flush()
    yield api
    api.close()


def _counting(api: MesApi, monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> Counter[Any]:
    """Count the calls of ``obj.name`` by their arguments."""
    calls: Counter[Any] = Counter()
    original = getattr(obj, name)

    def counted(*args: Any) -> Any:
        calls[args] += 1
        return original(*args)

    monkeypatch.setattr(obj, name, counted)
    return calls


@pytest.mark.parametrize("url", ["/fragments/overview", "/fragments/overview?asset=Site/Area/Line"])
def test_an_overview_refresh_reads_each_account_once(
    api: MesApi, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    accounts = _counting(api, monkeypatch, api.mes.queries, "account")
    response = api.client(Role.OPERATOR).get(url)
    assert response.status_code == 200
    assert accounts  # the summary tile and the machines' tiles read the cell's shift...
    assert max(accounts.values()) == 1, accounts  # ...once, not once per tile


def test_a_supervisor_page_reads_the_runs_once(
    api: MesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _counting(api, monkeypatch, api.mes.service.run_repository, "runs")
    assert api.client(Role.SUPERVISOR).get("/supervisor", params=PERIOD).status_code == 200
    assert sum(runs.values()) == 1


def test_removed_runs_outside_the_period_cost_no_lookup(
    api: MesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = api.client(Role.SUPERVISOR)
    for number in range(3):  # runs of last year, deleted: the audit trail keeps them
        start = T0 - 400 * 24 * HOUR + number * HOUR
        run = {"id": f"OLD{number}", "order_id": "PO1", "asset": CELL, "start": str(start),
               "end": str(start + HOUR // 2), "comment": "missed"}  # fmt: skip
        assert supervisor.post("/api/v1/runs", json=run).status_code == 201, run
        deleted = supervisor.delete(f"/api/v1/runs/OLD{number}", params={"comment": "wrong"})
        assert deleted.status_code == 204
    lookups = _counting(api, monkeypatch, api.mes.service.run_repository, "get_run")
    page = supervisor.get("/supervisor", params=PERIOD)
    assert page.status_code == 200
    assert "OLD0" not in page.text
    assert sum(lookups.values()) == 0
