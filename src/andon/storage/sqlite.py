"""The historian store on SQLite (the single-node default)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from andon.storage.codec import SampleRow
from andon.storage.engine import SQLITE_BEGIN_OPTION
from andon.storage.schema import tag_table
from andon.storage.sql_store import SqlHistorianStore

__all__ = ["SqliteHistorianStore"]

# Driver-level SQL: executemany straight on the sqlite3 cursor, without SQLAlchemy's per-row
# parameter processing (which would cost more than the insert itself).
_INSERT_SAMPLES = (
    "INSERT INTO sample (tag_id, ts, value_double, value_int, value_text, value_bytes,"
    " quality, is_historical) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tag_id, ts) DO NOTHING"
)


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
        assert driver is not None
        # total_changes counts only rows really inserted; skipped duplicates do not count.
        before: int = driver.total_changes
        connection.exec_driver_sql(_INSERT_SAMPLES, rows)
        return int(driver.total_changes) - before
