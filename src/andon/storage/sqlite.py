"""The historian store on SQLite (the single-node default)."""

from __future__ import annotations

import itertools
import sqlite3
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from andon.storage.codec import SampleRow
from andon.storage.engine import SQLITE_BEGIN_OPTION
from andon.storage.schema import tag_table
from andon.storage.sql_store import SqlHistorianStore

__all__ = ["SqliteHistorianStore"]

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


@cache
def _insert_samples_sql(rows: int) -> str:
    return (
        "INSERT INTO sample (tag_id, ts, value_double, value_int, value_text, value_bytes,"
        " quality, is_historical) VALUES "
        + ", ".join([_ROW_PLACEHOLDERS] * rows)
        + " ON CONFLICT (tag_id, ts) DO NOTHING"
    )


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

    def _insert_rows(self, connection: sa.Connection, rows: list[SampleRow]) -> int:
        if not rows:
            return 0
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        cursor = driver.cursor()
        # total_changes counts only rows really inserted; skipped duplicates do not count.
        before: int = driver.total_changes
        start = 0
        for size in _chunk_sizes(driver):
            statement = _insert_samples_sql(size)
            while len(rows) - start >= size:
                chunk = rows[start : start + size]
                cursor.execute(statement, list(itertools.chain.from_iterable(chunk)))
                start += size
        cursor.close()
        return int(driver.total_changes) - before
