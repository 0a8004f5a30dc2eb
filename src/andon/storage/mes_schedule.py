"""The schedule: planned (scheduled) runs per asset, in the database.

A scheduled run is a plan, not production: it never changes counts, rollups or OEE, so it is kept
apart from the actual runs (``andon.storage.mes_runs``). Scheduled runs on one asset never overlap
(the domain's ``Schedule`` rule), checked inside the transaction that writes them under a lock per
asset, so two concurrent requests cannot both pass the check. Each change takes an optional hook
called in the same transaction (the audit entry): if it raises, the change rolls back with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from andon.domain import AssetPath, DomainError, Schedule, ScheduledRun
from andon.storage.engine import SQLITE_BEGIN_OPTION, is_sqlite
from andon.storage.outbox import records_changed
from andon.storage.schema import mes_order_table, mes_scheduled_run_table

__all__ = ["ScheduleHook", "ScheduleRepository"]

#: Called inside the transaction of a schedule change with (connection, before, after).
ScheduleHook = Callable[[sa.Connection, ScheduledRun | None, ScheduledRun | None], None]


def _scheduled(row: Any) -> ScheduledRun:
    return ScheduledRun(
        row["id"],
        row["order_id"],
        AssetPath.parse(row["asset"]),
        int(row["start_ms"]),
        int(row["end_ms"]),
    )


def _row(run: ScheduledRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "order_id": run.order_id,
        "asset": str(run.asset),
        "start_ms": run.start_ms,
        "end_ms": run.end_ms,
    }


class ScheduleRepository:
    """Scheduled runs on one engine (shared with ``MesRepository``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine.url)
        self._options = {SQLITE_BEGIN_OPTION: "IMMEDIATE"} if self._sqlite else {}

    def _write(self) -> sa.Connection:
        connection = self._engine.connect()
        connection.execution_options(**self._options)
        return connection

    # -- reads ----------------------------------------------------------------------------------
    def scheduled_runs(
        self,
        asset: AssetPath | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[ScheduledRun]:
        """Scheduled runs at or below ``asset`` (None: all) overlapping [start_ms, end_ms),
        ordered by asset and start."""
        t = mes_scheduled_run_table
        query = sa.select(t).order_by(t.c.asset, t.c.start_ms)
        if end_ms is not None:
            query = query.where(t.c.start_ms < end_ms)
        if start_ms is not None:
            query = query.where(t.c.end_ms > start_ms)
        with self._engine.connect() as connection:
            found = [_scheduled(r) for r in connection.execute(query).mappings()]
        if asset is None:
            return found
        return [r for r in found if r.asset == asset or asset.is_ancestor_of(r.asset)]

    def get(self, run_id: str) -> ScheduledRun | None:
        t = mes_scheduled_run_table
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(t).where(t.c.id == run_id)).mappings().first()
        return None if row is None else _scheduled(row)

    # -- changes --------------------------------------------------------------------------------
    def add(self, run: ScheduledRun, hook: ScheduleHook | None = None) -> ScheduledRun:
        t = mes_scheduled_run_table
        exists = DomainError(f"scheduled run {run.id!r} already exists")
        try:
            with self._write() as connection, connection.begin():
                if connection.execute(sa.select(t.c.id).where(t.c.id == run.id)).first():
                    raise exists
                self._check_order(connection, run)
                self._check_free(connection, run, None)
                connection.execute(t.insert(), [_row(run)])
                records_changed(connection, "scheduled_run", [(run.id,)])
                if hook is not None:
                    hook(connection, None, run)
        except sa.exc.IntegrityError as error:
            # The check above runs before the per-asset lock: the same id added on another
            # asset at the same time passes it, and the primary key refuses the second one.
            if self.get(run.id) is None:
                raise  # another constraint: not a duplicate id
            raise exists from error
        return run

    def edit(
        self, run: ScheduledRun, hook: ScheduleHook | None = None
    ) -> tuple[ScheduledRun, ScheduledRun]:
        """Replace the stored scheduled run ``run.id`` (same asset); returns (old, new)."""
        t = mes_scheduled_run_table
        with self._write() as connection, connection.begin():
            old = self._locked(connection, run.id)
            if old.asset != run.asset:
                raise DomainError(f"scheduled run {run.id!r} cannot move to another asset")
            self._check_order(connection, run)
            self._check_free(connection, run, old)
            values = _row(run)
            del values["id"]
            connection.execute(t.update().where(t.c.id == run.id).values(**values))
            records_changed(connection, "scheduled_run", [(run.id,)])
            if hook is not None:
                hook(connection, old, run)
        return old, run

    def delete(self, run_id: str, hook: ScheduleHook | None = None) -> ScheduledRun:
        t = mes_scheduled_run_table
        with self._write() as connection, connection.begin():
            old = self._locked(connection, run_id)
            connection.execute(t.delete().where(t.c.id == run_id))
            records_changed(connection, "scheduled_run", [(run_id,)])  # a tombstone
            if hook is not None:
                hook(connection, old, None)
        return old

    # -- checks ---------------------------------------------------------------------------------
    def _locked(self, connection: sa.Connection, run_id: str) -> ScheduledRun:
        t = mes_scheduled_run_table
        query = sa.select(t).where(t.c.id == run_id)
        if not self._sqlite:
            query = query.with_for_update()
        row = connection.execute(query).mappings().first()
        if row is None:
            raise DomainError(f"unknown scheduled run {run_id!r}")
        return _scheduled(row)

    def _check_order(self, connection: sa.Connection, run: ScheduledRun) -> None:
        t = mes_order_table
        if not connection.execute(sa.select(t.c.id).where(t.c.id == run.order_id)).first():
            raise DomainError(f"scheduled run {run.id!r}: unknown order {run.order_id!r}")

    def _check_free(
        self, connection: sa.Connection, run: ScheduledRun, old: ScheduledRun | None
    ) -> None:
        """The domain's overlap rule against the asset's schedule, read under a per-asset lock
        (PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE already serialises writers)."""
        if not self._sqlite:
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"mes_schedule:{run.asset}"},
            )
        t = mes_scheduled_run_table
        rows = connection.execute(sa.select(t).where(t.c.asset == str(run.asset))).mappings()
        others = [r for r in map(_scheduled, rows) if old is None or r.id != old.id]
        Schedule(run.asset, others).add(run)
