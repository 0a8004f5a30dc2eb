"""Fencing at the storage layer: a write transaction proves its node still leads the domain.

``check_fence`` runs inside the write transaction, before its first write to shared tables,
against the lease row in the same database, by the database's clock:

* PostgreSQL: the lease row is read ``FOR SHARE``, so a takeover's ``UPDATE`` (which needs the
  row exclusively) waits until the fenced transaction has committed or rolled back (R-07); and a
  fenced write arriving after a takeover sees the new epoch. The wait is bounded: the fenced
  transaction runs with ``statement_timeout``, ``lock_timeout`` and
  ``idle_in_transaction_session_timeout`` set to the token's ``statement_timeout_ms``.
  One wait PostgreSQL cannot bound: a backend reading ``COPY ... FROM STDIN`` data from its
  client is neither cancelled by ``statement_timeout`` nor counted as idle, so a client cut off
  mid-COPY (a half-open link) leaves it waiting, with every lock its transaction holds, until
  the operating system gives up on the connection (hours by default; about 30 s for Andon's
  connections, ``andon.storage.engine.PG_DEAD_LINK_SERVER``). A fenced transaction that
  copies therefore sets the timeouts first (``bound_fenced_transaction``), holds no lock of a
  shared table while it copies into its session's own table, and takes the lease row after the
  COPY (R-04: before this, a leader cut off mid-COPY kept the standby from ever taking over).
* SQLite: write transactions begin IMMEDIATE and the arbiter's do too, so they are serialised
  by the database's write lock; nothing more is needed.

Either way a stale leader's write raises ``FencedOut`` and the transaction commits nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from andon.cluster.model import FencedOut, FencingToken
from andon.storage.schema import cluster_lease_table

__all__ = ["bound_fenced_transaction", "check_fence", "now_ms_expression"]


def now_ms_expression(dialect_name: str) -> sa.ColumnElement[Any]:
    """The database's clock in UTC ms as SQL."""
    if dialect_name == "postgresql":
        # clock_timestamp(), not now(): now() is when the transaction began, and a transaction
        # that waited for a row lock must see the time after the wait.
        return sa.literal_column(
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", sa.BigInteger
        )
    if dialect_name == "sqlite":
        # SQLite has no server: this is the host's clock (fine for nodes on one host), in ms.
        return sa.literal_column(
            "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)", sa.BigInteger
        )
    raise ValueError(f"no database clock for dialect {dialect_name!r}")


def bound_fenced_transaction(connection: sa.Connection, token: FencingToken) -> None:
    """PostgreSQL: bound every wait of the open transaction by the token's timeout (a stuck
    statement, a lock, the client gone quiet between statements). ``check_fence`` does this
    too; call it first when the fence is checked later in the transaction."""
    if connection.dialect.name != "postgresql":
        return
    timeout = int(token.statement_timeout_ms)
    if timeout <= 0:
        raise ValueError(f"fence statement timeout must be positive, got {timeout}")
    # set_config(..., true) is SET LOCAL; one statement, one round trip for the three.
    connection.exec_driver_sql(
        "SELECT set_config('statement_timeout', %(t)s, true),"
        " set_config('lock_timeout', %(t)s, true),"
        " set_config('idle_in_transaction_session_timeout', %(t)s, true)",
        {"t": str(timeout)},
    )


def check_fence(connection: sa.Connection, token: FencingToken, *, bounded: bool = False) -> None:
    """Raise ``FencedOut`` unless the lease of ``token.domain`` still carries the token's node
    and epoch and has not expired. Call it in an open write transaction before its first
    write to shared tables (first of all, unless the transaction copies: see above).
    ``bounded``: ``bound_fenced_transaction`` was called already in this transaction."""
    dialect = connection.dialect.name
    lease = cluster_lease_table.c
    query = sa.select(lease.node, lease.epoch, lease.expires_at_ms).where(
        lease.domain == token.domain
    )
    if dialect == "postgresql":
        if not bounded:
            bound_fenced_transaction(connection, token)
        query = query.with_for_update(read=True)
    row = connection.execute(query).first()
    # Read the clock only now, after any wait for the row lock.
    now_ms = int(connection.execute(sa.select(now_ms_expression(dialect))).scalar_one())
    if row is None:
        raise FencedOut(
            token, "no lease row for the domain in this database (is the arbiter elsewhere?)"
        )
    node, epoch, expires_at_ms = row
    if node != token.node or epoch != token.epoch:
        raise FencedOut(token, f"the lease is now {node}'s, epoch {epoch}")
    if expires_at_ms <= now_ms:
        raise FencedOut(token, f"the lease expired {now_ms - expires_at_ms} ms ago")
