"""The historian store on SQLite (the single-node default)."""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Iterable
from functools import cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from andon.cluster.model import FencingToken
from andon.storage.cluster_fencing import check_fence
from andon.storage.codec import INT64_MIN, SampleRow
from andon.storage.engine import SQLITE_BEGIN_OPTION
from andon.storage.schema import sample_recent_table, tag_table
from andon.storage.sql_store import SqlHistorianStore

__all__ = ["RECENT_MERGE_ROWS", "SqliteHistorianStore"]

log = logging.getLogger(__name__)

# Driver-level SQL straight on the sqlite3 cursor, without SQLAlchemy's per-row parameter
# processing (which would cost more than the insert itself). Many rows per statement rather than
# executemany: the sqlite3 module releases the GIL around every step, and executemany steps once
# per row, so in a busy server (MQTT, ingest and web threads wanting the GIL) each row paid a GIL
# hand-over. Measured with one competing Python thread: 20,000 rows/s with executemany against
# 76,000 with 4,000 rows per statement, same batches (docs/benchmarks.md, "ingest").
_SAMPLE_COLUMNS = 8
_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?)"
#: Rows per statement, largest first. A few fixed sizes keep every statement in the sqlite3
#: statement cache (a batch of any length is a sum of them); the largest stays under the
#: default limit of 32,766 parameters of SQLite >= 3.32.
_CHUNK_SIZES = (4000, 256, 16, 1)


_VALUE_COLUMNS = (
    "tag_id, ts, value_double, value_int, value_text, value_bytes, quality, is_historical"
)

#: A batch with fewer values than this per tag goes to ``sample_recent`` (schema.py): written
#: straight into ``sample`` it would cost about a page per value. Measured on 25,000 tags with
#: 300 s of history (docs/benchmarks.md, "scale", session 7): 23 us of CPU a value at one value
#: per tag and commit, 8 us at four.
_DENSE_VALUES_PER_TAG = 4
#: ``sample_recent`` moves to ``sample`` once it holds about this many rows: each tag's page is
#: then written once for all its values (25,000 tags at 1 Hz: every 20 s, 20 values a page).
RECENT_MERGE_ROWS = 500_000


@cache
def _insert_samples_sql(table: str, rows: int) -> str:
    return (
        f"INSERT INTO {table} ({_VALUE_COLUMNS}) VALUES "
        + ", ".join([_ROW_PLACEHOLDERS] * rows)
        + " ON CONFLICT (tag_id, ts) DO NOTHING"
    )


# A row this batch staged (seq above the largest before it) that ``sample`` already holds is a
# duplicate: the first value written for an instant is the one kept, wherever it went. One
# statement per suspect row when there are few (replays), one for the whole batch otherwise.
_DROP_STAGED_DUPLICATE = (
    "DELETE FROM sample_recent WHERE seq > ? AND tag_id = ? AND ts = ?"
    " AND EXISTS (SELECT 1 FROM sample WHERE tag_id = ? AND ts = ?)"
)
_DROP_STAGED_DUPLICATES = (
    "DELETE FROM sample_recent WHERE seq > ? AND EXISTS (SELECT 1 FROM sample"
    " WHERE sample.tag_id = sample_recent.tag_id AND sample.ts = sample_recent.ts)"
)
# WHERE true: SQLite needs it to read ON CONFLICT after INSERT ... SELECT. A staged row never
# conflicts with a row this process stored, but may with one another writer of the same file
# stored meanwhile; the stored row came first and is kept.
_MERGE_STAGED = (
    f"INSERT INTO sample ({_VALUE_COLUMNS}) SELECT {_VALUE_COLUMNS} FROM sample_recent"
    " WHERE true ORDER BY tag_id, ts ON CONFLICT (tag_id, ts) DO NOTHING"
)
#: Tag ids per ``IN (...)`` of the staged keys a deep batch must leave out.
_TAG_CHUNK = 500


def _chunk_sizes(driver: sqlite3.Connection) -> tuple[int, ...]:
    """The chunk sizes this SQLite library allows (old builds cap parameters at 999)."""
    most = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _SAMPLE_COLUMNS
    return tuple(size for size in _CHUNK_SIZES if size <= most) or (1,)


class SqliteHistorianStore(SqlHistorianStore):
    """Construct from a ``sqlite:///path`` URL or an engine from ``create_engine_for``."""

    # Take the write lock at BEGIN so two writers queue on busy_timeout instead of one failing.
    _write_options = {SQLITE_BEGIN_OPTION: "IMMEDIATE"}

    def _insert_tags(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        statement = sqlite_insert(tag_table).on_conflict_do_nothing(index_elements=["path"])
        connection.execute(statement, rows)

    #: Reads add the staged rows (sql_store).
    _staged_table = sample_recent_table

    def __init__(self, *args: Any, recent_merge_rows: int = RECENT_MERGE_ROWS, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._recent_merge_rows = recent_merge_rows
        # tag id -> no row of the tag in ``sample`` is newer than this. A staged row newer than
        # that cannot be a duplicate of a stored one, so live data skips the lookup in
        # ``sample`` (at 25,000 tags it read a page from the OS per value). Valid while
        # ``sample_version`` (bumped by every write into ``sample``, by any writer of the file)
        # is the version this store last saw or wrote; cleared when it is not. A rolled-back
        # transaction leaves it too high (more lookups) and the version mismatched (cleared).
        self._stored_until: dict[int, int] = {}
        self._sample_version: int | None = None

    def _insert_rows(
        self, connection: sa.Connection, rows: list[SampleRow], fence: FencingToken | None
    ) -> int:
        if fence is not None:
            check_fence(connection, fence)
        if not rows:
            return 0
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        cursor = driver.cursor()
        try:
            return self._insert_staged_or_stored(driver, cursor, rows)
        except sqlite3.Error as error:
            # As SQLAlchemy's class of the error (OperationalError for a full disk or a lock,
            # IntegrityError...): the historian writer tells an outage from bad data by it.
            raise sa.exc.DBAPIError.instance(
                "historian insert", None, error, sqlite3.Error
            ) from error
        finally:
            cursor.close()

    def _insert_staged_or_stored(
        self, driver: sqlite3.Connection, cursor: sqlite3.Cursor, rows: list[SampleRow]
    ) -> int:
        # Two walks down an edge of a B-tree: whether rows are staged, and who wrote last.
        staged_until, version = cursor.execute(
            "SELECT (SELECT max(seq) FROM sample_recent), (SELECT version FROM sample_version)"
        ).fetchone()
        staged_until = staged_until or 0
        if version is None or version != self._sample_version:
            self._stored_until.clear()
            self._sample_version = version
        tag_ids = set(map(itemgetter(0), rows))
        if len(rows) >= _DENSE_VALUES_PER_TAG * len(tag_ids):
            if staged_until:
                rows = self._without_staged_keys(cursor, rows, tag_ids)
            self._raise_stored_until(rows)
            self._bump_sample_version(cursor)
            return self._insert_into(driver, cursor, "sample", rows)
        inserted = self._insert_into(driver, cursor, "sample_recent", rows)
        suspects = self._maybe_stored(cursor, rows, tag_ids)
        if suspects:
            before = driver.total_changes
            if len(suspects) * 4 < len(rows):
                cursor.executemany(
                    _DROP_STAGED_DUPLICATE,
                    [(staged_until, tag_id, ts, tag_id, ts) for tag_id, ts in suspects],
                )
            else:
                cursor.execute(_DROP_STAGED_DUPLICATES, (staged_until,))
            inserted -= driver.total_changes - before
        if staged_until + len(rows) >= self._recent_merge_rows:
            self._merge_staged(cursor)
        return inserted

    @staticmethod
    def _without_staged_keys(
        cursor: sqlite3.Cursor, rows: list[SampleRow], tag_ids: set[int]
    ) -> list[SampleRow]:
        """``rows`` less those whose (tag, instant) is staged: the staged value came first.
        (Merging everything staged instead would make each deep batch cost the wide plant a
        page per staged value again.)"""
        ordered = sorted(tag_ids)
        staged: set[tuple[int, int]] = set()
        for i in range(0, len(ordered), _TAG_CHUNK):
            chunk = ordered[i : i + _TAG_CHUNK]
            marks = ", ".join("?" * len(chunk))
            staged.update(
                cursor.execute(
                    f"SELECT tag_id, ts FROM sample_recent WHERE tag_id IN ({marks})", chunk
                )
            )
        return [row for row in rows if (row[0], row[1]) not in staged] if staged else rows

    def _maybe_stored(
        self, cursor: sqlite3.Cursor, rows: list[SampleRow], tag_ids: set[int]
    ) -> list[tuple[int, int]]:
        """(tag id, ts) of the rows that ``sample`` may already hold: not newer than the
        newest stored row of their tag (looked up once per tag while the version holds)."""
        known = self._stored_until
        for tag_id in tag_ids.difference(known):
            (newest,) = cursor.execute(
                "SELECT max(ts) FROM sample WHERE tag_id = ?", (tag_id,)
            ).fetchone()
            known[tag_id] = INT64_MIN if newest is None else newest
        return [(row[0], row[1]) for row in rows if row[1] <= known[row[0]]]

    def _raise_stored_until(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """``rows`` (tag id, ts, ...) go into ``sample``: raise the known tags' mark. Tags not
        known yet stay unknown (older rows of theirs may be newer than these)."""
        known = self._stored_until
        if not known:  # nothing staged in this process (a deep plant): no need to walk rows
            return
        for row in rows:
            until = known.get(row[0])
            if until is not None and row[1] > until:
                known[row[0]] = row[1]

    def _bump_sample_version(self, cursor: sqlite3.Cursor) -> None:
        cursor.execute("UPDATE sample_version SET version = version + 1")
        if self._sample_version is not None:
            self._sample_version += 1

    def _insert_into(
        self, driver: sqlite3.Connection, cursor: sqlite3.Cursor, table: str, rows: list[SampleRow]
    ) -> int:
        # total_changes counts only rows really inserted; skipped duplicates do not count.
        before: int = driver.total_changes
        start = 0
        for size in _chunk_sizes(driver):
            statement = _insert_samples_sql(table, size)
            while len(rows) - start >= size:
                chunk = rows[start : start + size]
                cursor.execute(statement, list(itertools.chain.from_iterable(chunk)))
                start += size
        return int(driver.total_changes) - before

    def _merge_staged(self, cursor: sqlite3.Cursor) -> None:
        """Move the staged rows to ``sample``. Under a savepoint: a merge that fails (a full
        disk needs room for the merge before the batch's own rows run out of it) leaves the
        rows staged and the batch committed; the next batch tries again."""
        cursor.execute("SAVEPOINT merge_staged")
        try:
            newest = cursor.execute("SELECT tag_id, max(ts) FROM sample_recent GROUP BY tag_id")
            marks = newest.fetchall()
            cursor.execute(_MERGE_STAGED)
            cursor.execute("DELETE FROM sample_recent")
            self._bump_sample_version(cursor)
        except sqlite3.Error as error:
            cursor.execute("ROLLBACK TO merge_staged")
            cursor.execute("RELEASE merge_staged")
            self._sample_version = None  # the bump may not have happened: look again
            log.warning("historian: staged samples not moved yet (%s); they stay readable", error)
            return
        cursor.execute("RELEASE merge_staged")
        self._raise_stored_until(marks)
