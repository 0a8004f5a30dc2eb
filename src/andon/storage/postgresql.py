"""The historian store on PostgreSQL: COPY into a temporary staging table, then one INSERT.

COPY is the fastest way into PostgreSQL but cannot skip duplicates, so rows go to a per-session
``TEMP ... ON COMMIT DELETE ROWS`` table first and ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING`` moves them into ``sample`` in the same transaction.
"""

from __future__ import annotations

from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from andon.cluster.model import FencingToken
from andon.storage.cluster_fencing import bound_fenced_transaction, check_fence
from andon.storage.codec import SampleRow
from andon.storage.schema import tag_table
from andon.storage.sql_store import SqlHistorianStore

__all__ = ["PostgresHistorianStore"]

_COLUMNS = "tag_id, ts, value_double, value_int, value_text, value_bytes, quality, is_historical"
_COPY_TYPES = ["int4", "int8", "float8", "int8", "text", "bytea", "int2", "bool"]
_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS andon_sample_staging ("
    " tag_id integer, ts bigint, value_double double precision, value_int bigint,"
    " value_text text, value_bytes bytea, quality smallint, is_historical boolean"
    ") ON COMMIT DELETE ROWS"
)
_COPY_STAGING = f"COPY andon_sample_staging ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_MOVE_STAGING = (
    f"INSERT INTO sample ({_COLUMNS}) SELECT {_COLUMNS} FROM andon_sample_staging"
    " ON CONFLICT (tag_id, ts) DO NOTHING"
)
#: Key in the pooled connection's ``info``: the staging table exists in that session. The
#: pool clears ``info`` when it replaces a broken connection, so a new session recreates it.
_STAGING_READY = "andon_sample_staging_ready"


class PostgresHistorianStore(SqlHistorianStore):
    """Construct from a ``postgresql[+psycopg]://`` URL or an engine from ``create_engine_for``."""

    def _insert_tags(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        # A concurrent writer inserting the same path makes this wait for its commit and then
        # skip the row; the SELECT that follows sees the committed id.
        statement = pg_insert(tag_table).on_conflict_do_nothing(index_elements=["path"])
        connection.execute(statement, rows)

    def _insert_rows(
        self, connection: sa.Connection, rows: list[SampleRow], fence: FencingToken | None
    ) -> int:
        # The fence's lease row is taken only after the COPY: PostgreSQL cannot time out a COPY
        # whose client went silent, and a takeover must not wait for one (cluster_fencing).
        if fence is not None:
            bound_fenced_transaction(connection, fence)
        if not rows:
            if fence is not None:
                check_fence(connection, fence, bounded=True)
            return 0
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        try:
            with driver.cursor() as cursor:
                if not connection.connection.info.get(_STAGING_READY):
                    cursor.execute(_CREATE_STAGING)
                with cursor.copy(_COPY_STAGING) as copy:
                    copy.set_types(_COPY_TYPES)
                    write_row = copy.write_row
                    for row in rows:
                        write_row(row)
                if fence is not None:
                    check_fence(connection, fence, bounded=True)
                cursor.execute(_MOVE_STAGING)
                return int(cursor.rowcount)
        except psycopg.Error as error:
            raise _as_sqlalchemy_error(connection, error) from error

    def _after_commit(self, connection: sa.Connection) -> None:
        # Only now: a CREATE inside a rolled-back transaction would not have survived.
        connection.connection.info[_STAGING_READY] = True


def _as_sqlalchemy_error(connection: sa.Connection, error: psycopg.Error) -> sa.exc.DBAPIError:
    """The driver's error as SQLAlchemy would have raised it: the historian writer tells an
    outage (retry, spool) from bad data (quarantine) by its class, and a connection the error
    broke is invalidated so the pool does not hand it out again."""
    # SQLAlchemy's stubs know DB-API errors only as a protocol psycopg's do not name.
    disconnected = connection.dialect.is_disconnect(cast(Any, error), connection.connection, None)
    if disconnected:
        connection.invalidate(error)
    wrapped = sa.exc.DBAPIError.instance(
        "historian insert", None, error, psycopg.Error, connection_invalidated=disconnected
    )
    assert isinstance(wrapped, sa.exc.DBAPIError)
    return wrapped
