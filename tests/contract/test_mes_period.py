"""PeriodReads (the UNS mirror's grouped reads) and the derived writes they read: the same on
SQLite and PostgreSQL, and equal to MesRepository's one-asset reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from andon.domain import (
    PRODUCTION,
    AssetPath,
    CountCorrection,
    ProducedCount,
    StateInterval,
    StateType,
    TimeAccount,
)
from andon.storage.mes import MesChanges, MesRepository
from andon.storage.mes_period import PeriodReads
from andon.storage.schema import mes_count_correction_table

A, B, C = (AssetPath.parse(f"Site/Line/{name}") for name in ("A", "B", "C"))
H = 3_600_000


@pytest.fixture
def repo(migrated_url: str) -> Iterator[MesRepository]:
    repository = MesRepository(migrated_url)
    yield repository
    repository.close()


def _stored(repo: MesRepository) -> None:
    changes = MesChanges()
    for i, asset in enumerate((A, B)):
        for hour in range(3):
            part = TimeAccount(
                running_ms=1000 * (hour + 1) + i,
                unplanned_downtime_ms=50 * hour,
                total_count=10 + hour + i,
                reject_count=hour,
                loss_by_reason=(("jam", 50 * hour),) if hour else (),
            )
            changes.add_account(str(asset), "hour", hour * H, (hour + 1) * H, "", part)
        changes.add_account(str(asset), "shift", 0, 8 * H, "d/Day", TimeAccount(running_ms=9 + i))
        for ts in (10, H + 20, 2 * H + 30):
            changes.counts[(str(asset), ts)] = ProducedCount(asset, ts, 3 + i, i, startup=ts == 10)
    repo.write_changes(changes)


def test_rollup_sums_per_asset_equal_the_repository_total(repo: MesRepository) -> None:
    _stored(repo)
    reads = PeriodReads(repo.engine)
    sums = reads.rollup_sums([A, B, C], "hour", H, 3 * H)
    assert set(sums) == {A, B}  # C has no bucket
    for asset in (A, B):
        account, end = sums[asset]
        assert account == repo.rollup_total([asset], "hour", H, 3 * H)
        assert account.loss_by_reason == (("jam", 150),)
        assert end == 3 * H
    shift, end = reads.rollup_sums([B], "shift", 0, 1)[B]
    assert (shift.running_ms, end) == (10, 8 * H)


def test_counts_and_corrections_in_a_span(repo: MesRepository) -> None:
    _stored(repo)
    with repo.engine.begin() as connection:
        connection.execute(
            sa.insert(mes_count_correction_table),
            [
                {"edit_id": 1, "asset": str(A), "ts_ms": H + 40, "total": -2, "reject": 0},
                {"edit_id": 1, "asset": str(A), "ts_ms": 3 * H, "total": 5, "reject": 1},
            ],
        )
    found = PeriodReads(repo.engine).counts([A, B, C], H, 3 * H)
    assert sorted(found[A], key=lambda r: r.ts_ms) == [
        ProducedCount(A, H + 20, 3, 0),
        CountCorrection(A, H + 40, -2, 0),
        ProducedCount(A, 2 * H + 30, 3, 0),
    ]
    assert found[B] == repo.counts(B, H, 3 * H)
    assert C not in found
    assert PeriodReads(repo.engine).counts([A], 0, 11)[A] == [ProducedCount(A, 10, 3, 0, True)]


def _interval(start: int, end: int | None, code: int = 1) -> StateInterval:
    kind = StateType.RUNNING if code == 1 else StateType.UNPLANNED_DOWNTIME
    return StateInterval(A, start, end, code, kind, None if code == 1 else "jam", PRODUCTION)


def test_keyed_rows_written_over_and_deleted_in_one_change(repo: MesRepository) -> None:
    first = MesChanges()
    first.intervals[(str(A), 0)] = _interval(0, None)
    first.counts[(str(A), 10)] = ProducedCount(A, 10, 5, 1)
    repo.write_changes(first)
    second = MesChanges()
    second.intervals[(str(A), 0)] = _interval(0, 40)  # written over
    second.intervals[(str(A), 40)] = _interval(40, None, code=10)
    second.counts[(str(A), 10)] = ProducedCount(A, 10, 6, 2, startup=True)  # written over
    second.counts[(str(A), 20)] = None  # never stored: nothing to delete
    repo.write_changes(second)
    third = MesChanges()
    third.intervals[(str(A), 40)] = None
    third.intervals[(str(A), 0)] = _interval(0, None)
    repo.write_changes(third)
    assert repo.intervals(A, 0, 100) == [_interval(0, None)]
    assert repo.counts(A, 0, 100) == [ProducedCount(A, 10, 6, 2, startup=True)]
