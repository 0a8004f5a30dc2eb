"""MesAggregates: the sums edits and queries read, the same on SQLite and PostgreSQL and equal to
what the records they sum give (segments beyond one query's share included)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from andon.domain import (
    AssetPath,
    CountCorrection,
    CountEdit,
    CountEditMode,
    CountTriple,
    ProducedCount,
    TimeAccount,
)
from andon.storage.mes import MesChanges, MesRepository
from andon.storage.mes_aggregates import MesAggregates
from andon.storage.mes_edits import MesEditRepository

A = AssetPath.parse("Site/Line/Cell")
B = AssetPath.parse("Site/Line/Other")
MIN = 60_000


@pytest.fixture
def repo(migrated_url: str) -> Iterator[MesRepository]:
    repository = MesRepository(migrated_url)
    yield repository
    repository.close()


def _store(repo: MesRepository) -> tuple[list[ProducedCount], list[CountCorrection]]:
    """A count each minute for 3,000 minutes (uneven, some waste, some start-up), another
    asset's counts, and one count edit's corrections."""
    rng = random.Random(3)
    changes = MesChanges()
    counts = []
    for m in range(3000):
        total = rng.choice([1, 2, 2, 3, 5])
        reject = rng.choice([0, 0, 0, 1])
        count = ProducedCount(A, m * MIN, total, reject, startup=m % 97 == 0)
        counts.append(count)
        changes.counts[(str(A), count.ts_ms)] = count
        changes.counts[(str(B), count.ts_ms)] = ProducedCount(B, count.ts_ms, 7, 7)
    corrections = [CountCorrection(A, m * MIN + 1, -1, 0) for m in range(0, 3000, 50)]
    edit = CountEdit(0, A, 0, 3000 * MIN, CountEditMode.ADD, (None, -60, None),
                     CountTriple(-60, -60, 0), "s", "c", 0)  # fmt: skip
    stored: list[CountCorrection] = []

    def insert(connection: object) -> None:
        done = MesEditRepository(repo.engine).insert_edit(connection, edit, corrections)  # type: ignore[arg-type]
        stored.extend(CountCorrection(A, c.ts_ms, c.total, c.reject, done.id) for c in corrections)

    changes.hooks.append(insert)  # type: ignore[arg-type]
    repo.write_changes(changes)
    return counts, stored


def test_figures_are_the_sums_of_the_records_of_each_segment(repo: MesRepository) -> None:
    counts, corrections = _store(repo)
    bounds = list(range(-MIN, 3001 * MIN, 2 * MIN + 7))  # 1,500 segments: two queries' worth
    figures = MesAggregates(repo.engine).figures(A, bounds)
    expected = []
    for a, b in itertools.pairwise(bounds):
        inside = [r for r in (*counts, *corrections) if a <= r.ts_ms < b]
        expected.append((sum(r.total - r.reject for r in inside), sum(r.reject for r in inside)))
    assert figures == expected
    own = MesAggregates(repo.engine).figures(A, bounds, edit_id=corrections[0].edit_id)
    assert sum(good for good, _ in own) == -60
    assert MesAggregates(repo.engine).figures(A, [5 * MIN + 2, 6 * MIN]) == [(0, 0)]


def test_groups_hold_every_record_once_at_its_segment_start(repo: MesRepository) -> None:
    counts, corrections = _store(repo)
    bounds = list(range(0, 3000 * MIN + 1, 60 * MIN))
    groups = MesAggregates(repo.engine).groups(A, bounds)

    def key(record: object, start: int) -> tuple[object, ...]:
        r: ProducedCount | CountCorrection = record  # type: ignore[assignment]
        return (type(r).__name__, start, r.total, r.reject, r.startup)

    found = Counter({key(r, r.ts_ms): times for r, times in groups})
    expected: Counter[tuple[object, ...]] = Counter()
    for record in (*counts, *corrections):
        start = max(b for b in bounds if b <= record.ts_ms)
        expected[key(record, start)] += 1
    assert found == expected
    assert sum(times for _, times in groups) == len(counts) + len(corrections)


def test_count_span_is_the_first_and_last_record(repo: MesRepository) -> None:
    _store(repo)
    aggregates = MesAggregates(repo.engine)
    assert aggregates.count_span(A, -10, 2**62) == (0, 2999 * MIN)
    assert aggregates.count_span(A, 100 * MIN + 2, 150 * MIN + 2) == (101 * MIN, 150 * MIN + 1)
    assert aggregates.count_span(A, 4000 * MIN, 2**62) is None


def test_rollups_by_start_sum_the_assets_with_their_losses(repo: MesRepository) -> None:
    changes = MesChanges()
    for start in (0, 60 * MIN, 120 * MIN):
        for asset, share in ((A, 1), (B, 2)):
            account = TimeAccount(running_ms=share * 1000, total_count=share,
                                  loss_by_reason=(("jam", share * 10),))  # fmt: skip
            changes.add_account(str(asset), "shift", start, start + 60 * MIN, "x", account)
    repo.write_changes(changes)
    found = MesAggregates(repo.engine).rollups_by_start([A, B], "shift", 0, 120 * MIN)
    assert sorted(found) == [0, 60 * MIN]
    for start, account in found.items():
        assert account == repo.rollup_total([A, B], "shift", start, start + 1)
        assert (account.running_ms, account.total_count) == (3000, 3)
        assert account.loss_by_reason == (("jam", 30),)


def test_account_rows_are_the_rollups_with_their_no_data_time(repo: MesRepository) -> None:
    changes = MesChanges()
    for hour in (0, 1, 3):  # hour 2 has no rollup
        start = hour * 60 * MIN
        for asset, share in ((A, 1), (B, 2)):
            account = TimeAccount(running_ms=share * 1000 + hour, blocked_ms=7, not_scheduled_ms=5,
                                  total_count=share, ideal_time_us=10**12 * share,
                                  loss_by_reason=(("jam", 7),))  # fmt: skip
            if (asset, hour) != (B, 3):
                changes.add_account(str(asset), "hour", start, start + 60 * MIN, "", account)
    repo.write_changes(changes)
    aggregates = MesAggregates(repo.engine)
    for assets in ([A], [A, B]):
        rows = aggregates.account_rows(assets, "hour", 0, 4 * 60 * MIN)
        assert all(type(value) is int for row in rows for value in row)  # never Decimal
        series = repo.rollup_series(assets, "hour", 0, 4 * 60 * MIN)
        assert [(r[0], r[1], TimeAccount(*r[2:])) for r in rows] == [
            (s.start_ms, s.end_ms, s.account) for s in series
        ]
    [*_, last] = aggregates.account_rows([A, B], "hour", 0, 4 * 60 * MIN)
    assert TimeAccount(*last[2:]).no_data_ms == 2 * 60 * MIN - (1003 + 7 + 5)
    assert aggregates.account_rows([A], "hour", 60 * MIN, 3 * 60 * MIN)[0][0] == 60 * MIN
