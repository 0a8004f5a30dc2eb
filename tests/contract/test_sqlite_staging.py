"""SQLite stages the samples of wide batches and moves them to ``sample`` in bulk.

``sample`` is clustered by (tag, time): a commit of one value per tag writes a page per value.
Wide batches therefore go to ``sample_recent`` in arrival order and move to ``sample`` once it
holds ``recent_merge_rows`` rows; a deep batch (several values per tag) goes straight into
``sample``, less the instants already staged. The store contract checks what reads return;
this checks where the rows are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from andon.storage.migrate import upgrade_database
from andon.storage.sqlite import SqliteHistorianStore
from andon.storage.types import Sample
from andon.storage.writer_commands import is_transient_error

T0 = 1_700_000_000_000
TAGS = [f"g/e/m{m}/v{v}" for m in range(40) for v in range(25)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHistorianStore]:
    url = f"sqlite:///{tmp_path / 'historian.db'}"
    upgrade_database(url)
    opened = SqliteHistorianStore(url, recent_merge_rows=2_500)
    yield opened
    opened.close()


def _rows(store: SqliteHistorianStore) -> tuple[int, int]:
    """(rows in sample, rows in sample_recent)."""
    with store.engine.connect() as connection:
        stored, staged = (
            connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            for table in ("sample", "sample_recent")
        )
    return int(stored), int(staged)


def _wide(second: int) -> list[Sample]:
    return [Sample(tag, T0 + second * 1000, float(second), datatype=10) for tag in TAGS]


def test_wide_batches_are_staged_until_the_merge_threshold(store: SqliteHistorianStore) -> None:
    assert store.write_batch(_wide(0)) == 1000
    assert store.write_batch(_wide(1)) == 1000
    assert _rows(store) == (0, 2000)
    assert store.count() == 2000
    assert store.write_batch(_wide(2)) == 1000  # 2,000 staged + 1,000 reach 2,500: merged
    assert _rows(store) == (3000, 0)
    assert [s.value for s in store.history(TAGS[3], T0, T0 + 3000)] == [0.0, 1.0, 2.0]
    assert store.write_batch(_wide(1)) == 0  # re-sent after the merge: still duplicates
    assert _rows(store) == (3000, 0)


def test_a_deep_batch_leaves_out_staged_instants_and_the_rest_staged(
    store: SqliteHistorianStore,
) -> None:
    store.write_batch(_wide(0))
    deep = [Sample(TAGS[0], T0 + i * 250, 100.0 + i, datatype=10) for i in range(8)]
    assert store.write_batch(deep) == 7  # T0 of TAGS[0] came first, with the wide batch
    assert _rows(store) == (7, 1000)  # moving every staged row would cost a page per value
    assert store.latest(TAGS[0]) == Sample(TAGS[0], T0 + 1750, 107.0, datatype=10)
    assert [s.value for s in store.history(TAGS[0], T0, T0 + 500)] == [0.0, 101.0]
    assert store.write_batch(deep) == 0


def test_a_store_notices_another_writer_moved_its_rows(tmp_path: Path) -> None:
    # Two writers of one file (a cluster's domains): one's merge moves the other's staged rows
    # into sample, which the other's memory of each tag's newest stored row does not know.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade_database(url)
    one, other = SqliteHistorianStore(url), SqliteHistorianStore(url, recent_merge_rows=1)
    try:
        assert one.write_batch(_wide(0)) == 1000
        assert one.write_batch(_wide(1)) == 1000  # one now knows no tag has a stored row
        other_tag = [Sample("g/other/v", T0 + 5, 1.0, datatype=10)]
        assert other.write_batch(other_tag) == 1  # reaches its threshold: moves everything
        assert _rows(one) == (2001, 0)
        assert one.write_batch(_wide(1)) == 0  # re-sent: duplicates, not new rows
        assert one.count() == 2001
    finally:
        one.close()
        other.close()


def test_staged_rows_survive_a_new_store_on_the_same_file(store: SqliteHistorianStore) -> None:
    store.write_batch(_wide(0))
    reopened = SqliteHistorianStore(store.engine, recent_merge_rows=2_500)
    assert reopened.count() == 1000
    assert reopened.write_batch(_wide(0)) == 0
    assert reopened.write_batch([*_wide(1), *_wide(2)]) == 2000  # two values a tag: still wide
    assert _rows(reopened) == (3000, 0)


def test_reads_leave_out_a_staged_copy_of_a_stored_row(store: SqliteHistorianStore) -> None:
    # Another process may write straight into sample a row this one staged meanwhile: reads
    # show the stored row once, and the merge keeps it.
    store.write_batch(_wide(0))
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO sample SELECT tag_id, ts, -1.0, value_int, value_text, value_bytes,"
            " quality, is_historical FROM sample_recent WHERE tag_id = 1"
        )
    tag = TAGS[0]  # tag id 1: the first path in order
    assert store.count() == 1000
    assert [s.value for s in store.history(tag, T0, T0 + 1)] == [-1.0]
    bucket = store.aggregate(tag, T0, T0 + 1000, 1000)
    assert [(b.count, b.last) for b in bucket] == [(1, -1.0)]
    store.write_batch([Sample(TAGS[0], T0 + i, 5.0, datatype=10) for i in range(1, 5)])
    store.write_batch(_wide(9))
    store.write_batch(_wide(10))  # the threshold: the merge keeps the stored row
    assert _rows(store) == (3004, 0)
    assert [s.value for s in store.history(tag, T0, T0 + 2)] == [-1.0, 5.0]


def test_a_failing_merge_keeps_the_rows_staged_and_the_batch(
    store: SqliteHistorianStore, caplog: pytest.LogCaptureFixture
) -> None:
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON sample BEGIN SELECT RAISE(ABORT, 'no"
            " room'); END"
        )
    store.write_batch(_wide(0))
    store.write_batch(_wide(1))
    assert store.write_batch(_wide(2)) == 1000  # the merge it starts fails; the batch stays
    assert "not moved yet" in caplog.text
    assert _rows(store) == (0, 3000)
    assert store.count() == 3000
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER refuse")
    assert store.write_batch(_wide(3)) == 1000
    assert _rows(store) == (4000, 0)
    assert [s.value for s in store.history(TAGS[9], T0, T0 + 4000)] == [0.0, 1.0, 2.0, 3.0]


def test_driver_errors_keep_their_class_for_the_writer(
    store: SqliteHistorianStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The historian writer retries (and spools) on an OperationalError such as a full disk,
    # and quarantines on other errors: the driver's error must arrive as SQLAlchemy's class.
    def full(*_args: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_insert_into", full)
    with pytest.raises(sa.exc.OperationalError) as raised:
        store.write_batch(_wide(0))
    assert is_transient_error(raised.value)
    # Rolled back: no sample of the batch was written. Its tags were created in a transaction
    # of their own (sql_store._resolve_tags) and stay; the retry finds them.
    assert store.count() == 0
    assert _rows(store) == (0, 0)
    monkeypatch.undo()
    assert store.write_batch(_wide(0)) == 1000
    assert store.count() == 1000
