"""MesRepository and RunRepository: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from andon.domain import (
    PRODUCTION,
    AssetPath,
    DomainError,
    OrderState,
    ProducedCount,
    ProductionOrder,
    Run,
    StateInterval,
    StateType,
    TimeAccount,
)
from andon.storage.mes import MesChanges, MesRepository
from andon.storage.mes_runs import RunRepository

A = AssetPath.parse("Site/Line/Cell")
H = 3_600_000


@pytest.fixture
def repo(migrated_url: str) -> Iterator[MesRepository]:
    repository = MesRepository(migrated_url)
    yield repository
    repository.close()


def _interval(start: int, end: int | None, code: int = 1) -> StateInterval:
    kind = StateType.RUNNING if code == 1 else StateType.UNPLANNED_DOWNTIME
    return StateInterval(A, start, end, code, kind, None if code == 1 else "jam", PRODUCTION)


def test_keyed_rows_are_replaced_and_deleted_and_rollups_add_up(repo: MesRepository) -> None:
    first = MesChanges()
    first.intervals[(str(A), 0)] = _interval(0, None)
    first.counts[(str(A), 10)] = ProducedCount(A, 10, 5, 1)
    first.add_account(str(A), "hour", 0, H, "", TimeAccount(running_ms=100, total_count=5))
    first.add_account(str(A), "hour", 0, H, "", TimeAccount(blocked_ms=7,
                      loss_by_reason=(("jam", 7),)))  # fmt: skip
    repo.write_changes(first)
    second = MesChanges()
    second.intervals[(str(A), 0)] = _interval(0, 50)
    second.intervals[(str(A), 50)] = _interval(50, None, code=10)
    second.counts[(str(A), 10)] = None
    second.counts[(str(A), 20)] = ProducedCount(A, 20, 3)
    second.add_account(str(A), "hour", 0, H, "", TimeAccount(running_ms=-40, total_count=-2,
                       loss_by_reason=(("jam", 3),)))  # fmt: skip
    repo.write_changes(second)

    assert repo.intervals(A, 0, 100) == [_interval(0, 50), _interval(50, None, code=10)]
    assert repo.intervals(A, 60, 100) == [_interval(50, None, code=10)]
    assert repo.open_intervals() == [_interval(50, None, code=10)]
    assert repo.counts(A, 0, 100) == [ProducedCount(A, 20, 3)]
    assert repo.last_count_ts(A) == 20
    total = repo.rollup_total([A], "hour", 0, H)
    assert (total.running_ms, total.blocked_ms, total.total_count) == (60, 7, 3)
    assert total.loss_by_reason == (("jam", 10),)
    series = repo.rollup_series([A], "hour", 0, 2 * H)
    assert [(r.start_ms, r.end_ms, r.account.running_ms) for r in series] == [(0, H, 60)]


def test_merged_changes_write_the_same_as_applied_one_after_the_other() -> None:
    a, b = MesChanges(), MesChanges()
    a.intervals[(str(A), 0)] = _interval(0, None)
    a.add_account(str(A), "hour", 0, H, "", TimeAccount(running_ms=5))
    b.intervals[(str(A), 0)] = None
    b.add_account(str(A), "hour", 0, H, "", TimeAccount(running_ms=-5, setup_ms=2))
    a.merge(b)
    assert a.intervals == {(str(A), 0): None}
    assert a.rollups[(str(A), "hour", 0)].values == {"running_ms": 0, "setup_ms": 2}


def test_runs_never_overlap_on_one_asset(repo: MesRepository) -> None:
    runs = RunRepository(repo.engine)
    order = ProductionOrder("PO1", "item", 10, OrderState.RELEASED)
    assert runs.insert_missing([order], [Run("R1", "PO1", A, 0, 100)]) == 2
    assert runs.insert_missing([order], [Run("R1", "PO1", A, 0, 100)]) == 0
    runs.start_run("R2", "PO1", A, 100)  # touching is fine
    with pytest.raises(DomainError, match="overlaps"):
        runs.add_run(Run("R3", "PO1", A, 50, 150))
    with pytest.raises(DomainError, match="overlaps"):
        runs.start_run("R3", "PO1", A, 500)  # R2 is still open
    with pytest.raises(DomainError, match="unknown order"):
        runs.add_run(Run("R4", "PO9", AssetPath.parse("Other"), 0, 1))
    ended = runs.end_run("R2", 200)
    assert ended.end_ms == 200
    runs.start_run("R3", "PO1", A, 200)
    assert [r.id for r in runs.runs(A)] == ["R1", "R2", "R3"]
    with pytest.raises(DomainError, match="already ended"):
        runs.end_run("R1", 300)
    assert runs.set_order_state("PO1", OrderState.RUNNING).state is OrderState.RUNNING
    with pytest.raises(DomainError, match="cannot go from running to planned"):
        runs.set_order_state("PO1", OrderState.PLANNED)
