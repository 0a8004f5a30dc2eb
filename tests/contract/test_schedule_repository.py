"""ScheduleRepository: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from andon.domain import AssetPath, DomainError, ProductionOrder, ScheduledRun
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.mes_schedule import ScheduleRepository
from andon.storage.migrate import upgrade_database
from andon.storage.schema import mes_scheduled_run_table

LINE = AssetPath.parse("Site/Line")
CELL = AssetPath.parse("Site/Line/Cell")
OTHER = AssetPath.parse("Site/Line2")
H = 3_600_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScheduleRepository]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'andon.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_database(url)
    mes = MesRepository(url)
    RunRepository(mes.engine).add_order(ProductionOrder("PO1", "w", 100))
    yield ScheduleRepository(mes.engine)
    mes.close()


def _plan(plan_id: str, start: int, end: int, asset: AssetPath = LINE) -> ScheduledRun:
    return ScheduledRun(plan_id, "PO1", asset, start, end)


def test_plans_are_stored_listed_by_asset_and_period(repo: ScheduleRepository) -> None:
    repo.add(_plan("S1", 0, H))
    repo.add(_plan("S2", H, 2 * H))  # touching is fine
    repo.add(_plan("S3", 0, H, CELL))  # another asset may overlap
    repo.add(_plan("S4", 0, H, OTHER))

    assert repo.get("S2") == _plan("S2", H, 2 * H)
    assert repo.get("nope") is None
    assert [p.id for p in repo.scheduled_runs()] == ["S1", "S2", "S3", "S4"]
    assert [p.id for p in repo.scheduled_runs(LINE)] == ["S1", "S2", "S3"]
    assert [p.id for p in repo.scheduled_runs(CELL)] == ["S3"]
    assert [p.id for p in repo.scheduled_runs(LINE, H, 3 * H)] == ["S2"]
    assert [p.id for p in repo.scheduled_runs(None, 2 * H, 3 * H)] == []


def test_an_overlap_is_refused_naming_the_other_plan_and_nothing_changes(
    repo: ScheduleRepository,
) -> None:
    repo.add(_plan("S1", 0, H))
    with pytest.raises(DomainError, match="overlaps scheduled run 'S1'"):
        repo.add(_plan("S2", H // 2, 2 * H))
    repo.add(_plan("S2", H, 2 * H))
    with pytest.raises(DomainError, match="overlaps scheduled run 'S1'"):
        repo.edit(_plan("S2", H - 1, 2 * H))
    with pytest.raises(DomainError, match="already exists"):
        repo.add(_plan("S1", 5 * H, 6 * H))
    with pytest.raises(DomainError, match="unknown order"):
        repo.add(ScheduledRun("S9", "PO-unknown", LINE, 5 * H, 6 * H))
    with pytest.raises(DomainError, match="cannot move to another asset"):
        repo.edit(_plan("S2", H, 2 * H, CELL))
    assert repo.scheduled_runs() == [_plan("S1", 0, H), _plan("S2", H, 2 * H)]


def test_edit_and_delete_call_the_hook_in_their_transaction(repo: ScheduleRepository) -> None:
    seen: list[tuple[ScheduledRun | None, ScheduledRun | None]] = []

    def hook(
        connection: sa.Connection, before: ScheduledRun | None, after: ScheduledRun | None
    ) -> None:
        seen.append((before, after))

    repo.add(_plan("S1", 0, H), hook)
    old, new = repo.edit(_plan("S1", 2 * H, 3 * H), hook)
    assert (old, new) == (_plan("S1", 0, H), _plan("S1", 2 * H, 3 * H))
    assert repo.delete("S1", hook) == _plan("S1", 2 * H, 3 * H)
    assert seen == [
        (None, _plan("S1", 0, H)),
        (_plan("S1", 0, H), _plan("S1", 2 * H, 3 * H)),
        (_plan("S1", 2 * H, 3 * H), None),
    ]
    assert repo.scheduled_runs() == []
    with pytest.raises(DomainError, match="unknown scheduled run"):
        repo.delete("S1")


def test_a_failing_hook_rolls_the_change_back(repo: ScheduleRepository) -> None:
    def refuse(connection: sa.Connection, before: object, after: object) -> None:
        raise DomainError("audit refused")

    with pytest.raises(DomainError, match="audit refused"):
        repo.add(_plan("S1", 0, H), refuse)
    assert repo.scheduled_runs() == []
    repo.add(_plan("S1", 0, H))
    with pytest.raises(DomainError):
        repo.edit(_plan("S1", H, 2 * H), refuse)
    with pytest.raises(DomainError):
        repo.delete("S1", refuse)
    assert repo.scheduled_runs() == [_plan("S1", 0, H)]


@pytest.mark.postgres
def test_the_same_new_id_on_two_assets_at_once_is_refused_as_a_duplicate(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests adding one id on two assets: each passes the "id exists" check before it
    takes its asset's lock; the second insert meets the first's row (a DomainError, not a
    database error)."""
    upgrade_database(postgres_url)
    mes = MesRepository(postgres_url)
    try:
        RunRepository(mes.engine).add_order(ProductionOrder("PO1", "w", 100))
        repo = ScheduleRepository(mes.engine)
        checked = ScheduleRepository._check_free

        def meanwhile(
            self: ScheduleRepository, connection: sa.Connection, run: ScheduledRun, old: object
        ) -> None:
            checked(self, connection, run, old)  # type: ignore[arg-type]
            with mes.engine.begin() as other:  # the other request commits first
                other.execute(
                    mes_scheduled_run_table.insert(),
                    [{"id": run.id, "order_id": "PO1", "asset": str(LINE), "start_ms": 0,
                      "end_ms": H}],
                )  # fmt: skip

        monkeypatch.setattr(ScheduleRepository, "_check_free", meanwhile)
        with pytest.raises(DomainError, match="scheduled run 'S1' already exists"):
            repo.add(_plan("S1", 0, H, OTHER))
        monkeypatch.undo()
        assert repo.scheduled_runs() == [_plan("S1", 0, H, LINE)]
    finally:
        mes.close()
