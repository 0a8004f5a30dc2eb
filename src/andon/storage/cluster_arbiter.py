"""The cluster arbiter in a SQL database: a SQLite file (nodes on one host) or PostgreSQL
(nodes on several hosts). The rules are ``andon.cluster.arbiter``'s; this module makes each
decision atomic and timed by the database's clock:

* SQLite: every operation is one ``BEGIN IMMEDIATE`` transaction, serialised by the write lock.
* PostgreSQL: the lease row is locked ``FOR UPDATE`` before the clock is read and the rule
  applied, so concurrent candidates decide one after the other; a takeover also waits there for
  in-flight fenced writes (``cluster_fencing``). Each transaction runs with a statement, lock and
  idle-in-transaction timeout, so an arbiter call cannot hang the lease loop, and a node cut off
  in the middle of one cannot keep the lease row locked.

Every database error is raised as ``ArbiterError`` (one line), never as a SQLAlchemy error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine

from andon.cluster.arbiter import acquisition_refusal, switchover_refusal
from andon.cluster.model import ArbiterError, Lease, Member, SwitchoverError
from andon.storage.cluster_fencing import now_ms_expression
from andon.storage.engine import SQLITE_BEGIN_OPTION, create_engine_for, normalize_url
from andon.storage.schema import cluster_lease_table, cluster_member_table

__all__ = ["DEFAULT_ARBITER_TIMEOUT_MS", "SqlArbiter", "open_sql_arbiter"]

#: Longest an arbiter statement may run (or wait for a lock) before the call fails.
DEFAULT_ARBITER_TIMEOUT_MS = 1_000

_L = cluster_lease_table.c
_M = cluster_member_table.c


def _lease(row: Any) -> Lease:
    return Lease(
        domain=row.domain,
        node=row.node,
        epoch=int(row.epoch),
        acquired_at_ms=int(row.acquired_at_ms),
        renewed_at_ms=int(row.renewed_at_ms),
        expires_at_ms=int(row.expires_at_ms),
        switchover_from=row.switchover_from,
        switchover_to=row.switchover_to,
        switchover_requested_at_ms=row.switchover_requested_at_ms,
    )


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


class SqlArbiter:
    """``preferences``: domain -> candidate nodes, most preferred first (see ``ClusterPlan``)."""

    def __init__(
        self,
        database: str | URL | Engine,
        preferences: Mapping[str, Sequence[str]] | None = None,
        *,
        timeout_ms: int = DEFAULT_ARBITER_TIMEOUT_MS,
    ) -> None:
        if timeout_ms <= 0:
            raise ValueError("the arbiter timeout must be positive")
        self._timeout_ms = int(timeout_ms)
        if isinstance(database, Engine):
            self._engine, self._owns = database, False
        else:
            url = normalize_url(database)
            options: dict[str, Any] = {}
            if url.get_backend_name() == "postgresql":
                # libpq's smallest connect timeout is 2 s.
                connect_s = max(2, math.ceil(self._timeout_ms / 1000))
                options["connect_args"] = {"connect_timeout": connect_s}
            self._engine, self._owns = create_engine_for(url, **options), True
        self._dialect = self._engine.dialect.name
        if self._dialect == "sqlite" and self._owns:
            self._bound_sqlite_waits()
        self._now = now_ms_expression(self._dialect)
        self._preferences = {k: tuple(v) for k, v in (preferences or {}).items()}
        self._where = self._engine.url.render_as_string(hide_password=True)

    def _bound_sqlite_waits(self) -> None:
        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Runs after the engine's own listener: wait for the write lock no longer than
            # the arbiter timeout (the historian's 30 s would stall the lease loop).
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout={self._timeout_ms}")
            finally:
                cursor.close()

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as connection:
                if self._dialect == "sqlite":
                    connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
                with connection.begin():
                    if self._dialect == "postgresql":
                        # idle_in_transaction too: a node cut off (or frozen) between two
                        # statements must not keep the lease row locked for everyone else.
                        for setting in (
                            "statement_timeout",
                            "lock_timeout",
                            "idle_in_transaction_session_timeout",
                        ):
                            connection.exec_driver_sql(f"SET LOCAL {setting} = {self._timeout_ms}")
                    yield connection
        except sa_exc.SQLAlchemyError as error:
            raise ArbiterError(f"cluster arbiter {self._where}: {_one_line(error)}") from error

    def _clock(self, connection: sa.Connection) -> int:
        return int(connection.execute(sa.select(self._now)).scalar_one())

    def _select_lease(self, connection: sa.Connection, domain: str) -> Lease | None:
        query = sa.select(cluster_lease_table).where(_L.domain == domain)
        if self._dialect == "postgresql":
            query = query.with_for_update()
        row = connection.execute(query).first()
        return None if row is None else _lease(row)

    def _last_seen(self, connection: sa.Connection) -> dict[str, int]:
        return {n: int(s) for n, s in connection.execute(sa.select(_M.node, _M.last_seen_ms))}

    def _insert(self, table: sa.Table) -> Any:
        return (sqlite.insert if self._dialect == "sqlite" else postgresql.insert)(table)

    # -- the Arbiter protocol ----------------------------------------------------------------

    def now_ms(self) -> int:
        with self._transaction() as connection:
            return self._clock(connection)

    def heartbeat(self, node: str, info: Mapping[str, Any]) -> None:
        text = json.dumps(dict(info), sort_keys=True, default=str)
        statement = self._insert(cluster_member_table).values(
            node=node, info_json=text, last_seen_ms=self._now
        )
        statement = statement.on_conflict_do_update(
            index_elements=["node"],
            set_={"info_json": statement.excluded.info_json, "last_seen_ms": self._now},
        )
        with self._transaction() as connection:
            connection.execute(statement)

    def try_acquire(self, domain: str, node: str, ttl_ms: int) -> Lease | None:
        with self._transaction() as connection:
            lease = self._select_lease(connection, domain)
            if lease is None:
                # The row every later takeover updates; epoch 0: never held.
                connection.execute(
                    self._insert(cluster_lease_table)
                    .values(
                        domain=domain,
                        node=None,
                        epoch=0,
                        acquired_at_ms=0,
                        renewed_at_ms=0,
                        expires_at_ms=0,
                    )
                    .on_conflict_do_nothing(index_elements=["domain"])
                )
                lease = self._select_lease(connection, domain)
                assert lease is not None
            now = self._clock(connection)  # after any wait for the row lock
            refusal = acquisition_refusal(
                lease=lease,
                node=node,
                now_ms=now,
                ttl_ms=ttl_ms,
                preference=self._preferences.get(domain, ()),
                last_seen=self._last_seen(connection),
            )
            if refusal is not None:
                return None
            taken = Lease(domain, node, lease.epoch + 1, now, now, now + ttl_ms)
            updated = connection.execute(
                cluster_lease_table.update()
                .where(_L.domain == domain, _L.epoch == lease.epoch)
                .values(
                    node=node,
                    epoch=taken.epoch,
                    acquired_at_ms=now,
                    renewed_at_ms=now,
                    expires_at_ms=taken.expires_at_ms,
                    switchover_from=None,
                    switchover_to=None,
                    switchover_requested_at_ms=None,
                )
            )
            return taken if updated.rowcount == 1 else None

    def renew(self, domain: str, node: str, epoch: int, ttl_ms: int) -> Lease | None:
        with self._transaction() as connection:
            lease = self._select_lease(connection, domain)
            now = self._clock(connection)
            if lease is None or lease.holder_at(now) != node or lease.epoch != epoch:
                return None
            if lease.switchover_pending:
                return lease  # not extended: the holder hands over
            connection.execute(
                cluster_lease_table.update()
                .where(_L.domain == domain, _L.epoch == epoch)
                .values(renewed_at_ms=now, expires_at_ms=now + ttl_ms)
            )
            return Lease(
                domain,
                node,
                epoch,
                lease.acquired_at_ms,
                now,
                now + ttl_ms,
            )

    def release(self, domain: str, node: str, epoch: int) -> bool:
        with self._transaction() as connection:
            lease = self._select_lease(connection, domain)
            now = self._clock(connection)
            if lease is None or lease.holder_at(now) != node or lease.epoch != epoch:
                return False
            connection.execute(
                cluster_lease_table.update()
                .where(_L.domain == domain, _L.epoch == epoch)
                .values(expires_at_ms=now)
            )
            return True

    def request_switchover(self, domain: str, to_node: str | None, ttl_ms: int) -> Lease:
        with self._transaction() as connection:
            lease = self._select_lease(connection, domain)
            if lease is None and domain not in self._preferences:
                raise SwitchoverError(f"unknown domain {domain!r}")
            now = self._clock(connection)
            refusal = switchover_refusal(
                lease=lease,
                to_node=to_node,
                now_ms=now,
                ttl_ms=ttl_ms,
                preference=self._preferences.get(domain, ()),
                last_seen=self._last_seen(connection),
            )
            if refusal is not None:
                raise SwitchoverError(f"domain {domain}: {refusal}")
            assert lease is not None
            connection.execute(
                cluster_lease_table.update()
                .where(_L.domain == domain, _L.epoch == lease.epoch)
                .values(
                    switchover_from=lease.node,
                    switchover_to=to_node,
                    switchover_requested_at_ms=now,
                )
            )
            return Lease(
                domain,
                lease.node,
                lease.epoch,
                lease.acquired_at_ms,
                lease.renewed_at_ms,
                lease.expires_at_ms,
                switchover_from=lease.node,
                switchover_to=to_node,
                switchover_requested_at_ms=now,
            )

    def leases(self) -> list[Lease]:
        with self._transaction() as connection:
            rows = connection.execute(sa.select(cluster_lease_table).order_by(_L.domain))
            return [_lease(row) for row in rows]

    def members(self) -> list[Member]:
        query = sa.select(_M.node, _M.last_seen_ms, _M.info_json).order_by(_M.node)
        with self._transaction() as connection:
            rows = connection.execute(query).all()
        members = []
        for node, last_seen_ms, info_json in rows:
            try:
                info = json.loads(info_json)
            except ValueError:
                info = {"unreadable_info": info_json}
            members.append(Member(node, int(last_seen_ms), info if isinstance(info, dict) else {}))
        return members

    def close(self) -> None:
        if self._owns:
            self._engine.dispose()


def open_sql_arbiter(
    url: str,
    preferences: Mapping[str, Sequence[str]] | None = None,
    *,
    timeout_ms: int = DEFAULT_ARBITER_TIMEOUT_MS,
) -> SqlArbiter:
    """An arbiter on ``url``, its tables created or upgraded first (idempotent, safe from
    several nodes at once), so a dedicated arbiter database needs no separate step."""
    from andon.storage.migrate import upgrade_database

    try:
        upgrade_database(url)
    except sa_exc.SQLAlchemyError as error:
        where = normalize_url(url).render_as_string(hide_password=True)
        raise ArbiterError(f"cluster arbiter {where}: {_one_line(error)}") from error
    return SqlArbiter(url, preferences, timeout_ms=timeout_ms)
