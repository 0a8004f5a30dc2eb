"""MES records in the database: derived changes (intervals, counts, rollups), reads for the API,
and the plant structure. Orders and runs: ``andon.storage.mes_runs``.

Derived changes are written only by the historian writer thread (``MesWrite`` is its
``DerivedWrite`` command), so one database keeps one writer. They are coalesced while they wait:
intervals and counts are keyed rows (the latest version of a key wins, ``None`` deletes it);
rollups are *increments* added to the stored row (``INSERT ... ON CONFLICT DO UPDATE SET x = x +
excluded.x``), so the service never needs the absolute value of a bucket it does not hold.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine

from andon.cluster.model import FencingToken
from andon.domain import (
    CHANGEOVER,
    IDLE,
    MAINTENANCE,
    PRODUCTION,
    AssetPath,
    Mode,
    ProducedCount,
    StateInterval,
    StateType,
    TimeAccount,
)
from andon.domain.oee import SUMMED_FIELDS
from andon.storage.cluster_fencing import check_fence
from andon.storage.engine import SQLITE_BEGIN_OPTION, create_engine_for, is_sqlite
from andon.storage.mes_edit_outcome import write_in_order
from andon.storage.outbox import mes_changes_written
from andon.storage.schema import (
    MES_ACCOUNT_COLUMNS,
    mes_count_table,
    mes_rollup_reason_table,
    mes_rollup_table,
    mes_state_interval_table,
)

__all__ = ["AccountRow", "MesChanges", "MesRepository", "MesWrite", "RollupIncrement"]

IntervalKey = tuple[str, int]
_stored_values = operator.attrgetter(*MES_ACCOUNT_COLUMNS)
_BUILTIN_MODES = {m.name: m for m in (PRODUCTION, CHANGEOVER, MAINTENANCE, IDLE)}
RollupRowKey = tuple[str, str, int]


@dataclass(slots=True)
class RollupIncrement:
    end_ms: int
    label: str
    values: dict[str, int]


@dataclass(slots=True)
class MesChanges:
    """What to write; ``merge`` folds a newer change set into this one (in place)."""

    intervals: dict[IntervalKey, StateInterval | None] = field(default_factory=dict)
    counts: dict[IntervalKey, ProducedCount | None] = field(default_factory=dict)
    rollups: dict[RollupRowKey, RollupIncrement] = field(default_factory=dict)
    reasons: dict[tuple[str, str, int, str], int] = field(default_factory=dict)
    #: Run inside the transaction that writes the rest (e.g. the audit entry of a manual edit).
    hooks: list[Callable[[sa.Connection], None]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        rows = len(self.intervals) + len(self.counts) + len(self.rollups) + len(self.reasons)
        return rows + len(self.hooks)

    def add_account(
        self, asset: str, kind: str, start_ms: int, end_ms: int, label: str, part: TimeAccount
    ) -> None:
        key = (asset, kind, start_ms)
        row = self.rollups.get(key)
        if row is None:
            row = self.rollups[key] = RollupIncrement(end_ms, label, {})
        values = row.values
        for name, value in zip(MES_ACCOUNT_COLUMNS, _stored_values(part), strict=True):
            if value:
                values[name] = values.get(name, 0) + value
        for reason_id, ms in part.loss_by_reason:
            rkey = (asset, kind, start_ms, reason_id)
            self.reasons[rkey] = self.reasons.get(rkey, 0) + ms

    def merge(self, newer: MesChanges) -> None:
        self.intervals.update(newer.intervals)
        self.counts.update(newer.counts)
        for key, inc in newer.rollups.items():
            row = self.rollups.get(key)
            if row is None:
                self.rollups[key] = RollupIncrement(inc.end_ms, inc.label, dict(inc.values))
            else:
                for name, value in inc.values.items():
                    row.values[name] = row.values.get(name, 0) + value
        for rkey, ms in newer.reasons.items():
            self.reasons[rkey] = self.reasons.get(rkey, 0) + ms
        self.hooks.extend(newer.hooks)


@dataclass(slots=True)
class MesWrite:
    """The historian writer's ``DerivedWrite`` for MES changes. A manual edit (changes with
    hooks) is never merged with other changes: it waits in ``later`` and is written in a
    transaction of its own, in order (``andon.storage.mes_edit_outcome``)."""

    repository: MesRepository
    changes: MesChanges
    later: list[MesChanges] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.changes.rows + sum(changes.rows for changes in self.later)

    def merge(self, newer: MesWrite) -> None:
        for changes in (newer.changes, *newer.later):
            last = self.later[-1] if self.later else self.changes
            if changes.hooks or last.hooks:
                self.later.append(changes)
            else:
                last.merge(changes)

    def write(self, fence: FencingToken | None = None) -> None:
        pending = [self.changes, *self.later]
        try:
            write_in_order(lambda changes: self.repository.write_changes(changes, fence), pending)
        finally:  # what is not written yet stays for the writer's retry
            self.changes, self.later = (pending[0], pending[1:]) if pending else (MesChanges(), [])


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One rollup bucket (or a sum of them) as read back: the account and its bucket."""

    start_ms: int
    end_ms: int
    label: str
    account: TimeAccount


#: The stored columns that add up to a bucket's covered time (all time but no-data time).
_COVERED_TIME_COLUMNS = (
    "running_ms",
    "setup_ms",
    "unplanned_downtime_ms",
    "blocked_ms",
    "starved_ms",
    "planned_downtime_ms",
    "not_scheduled_ms",
)
# ``rollup_series`` builds accounts positionally: the stored columns must be the account's
# fields in order, with no-data time after the covered-time columns.
_ACCOUNT_ORDER = (*_COVERED_TIME_COLUMNS, "no_data_ms", *MES_ACCOUNT_COLUMNS[7:])
if MES_ACCOUNT_COLUMNS[:7] != _COVERED_TIME_COLUMNS or _ACCOUNT_ORDER != SUMMED_FIELDS:
    raise ImportError("MES_ACCOUNT_COLUMNS no longer match TimeAccount's fields")


def _account(row: Any, reasons: Iterable[tuple[str, int]] = ()) -> TimeAccount:
    values = {name: int(row[name] or 0) for name in MES_ACCOUNT_COLUMNS}
    losses = tuple(sorted((k, int(v)) for k, v in reasons if v))
    return TimeAccount(**values, loss_by_reason=losses)


class MesRepository:
    def __init__(
        self, engine: Engine | str | URL, *, modes: Mapping[str, Mode] = _BUILTIN_MODES
    ) -> None:
        if isinstance(engine, Engine):
            self._engine, self._owns = engine, False
        else:
            self._engine, self._owns = create_engine_for(engine), True
        self._sqlite = is_sqlite(self._engine.url)
        self._modes = dict(modes)
        self._write_options = {SQLITE_BEGIN_OPTION: "IMMEDIATE"} if self._sqlite else {}
        self._keyed: dict[str, tuple[Any, Any]] = {}  # table -> (delete, upsert), built once
        # id(statement) -> (statement, SQL, parameter order): ``_execute_many`` on SQLite.
        self._compiled: dict[int, tuple[Any, str, Sequence[str]]] = {}

    @property
    def engine(self) -> Engine:
        return self._engine

    def set_modes(self, modes: Mapping[str, Mode]) -> None:
        self._modes = dict(modes)

    def close(self) -> None:
        if self._owns:
            self._engine.dispose()

    def _upsert(self, table: sa.Table) -> Any:
        return (sqlite.insert if self._sqlite else postgresql.insert)(table)

    # The rollup upserts run with every derived write: built once, since building one (and its
    # cache key) cost more than executing it in profiles of a 1,000-asset plant.
    @functools.cached_property
    def _rollup_statement(self) -> Any:
        table = mes_rollup_table
        statement = self._upsert(table)
        return statement.on_conflict_do_update(
            index_elements=["asset", "kind", "start_ms"],
            set_={name: table.c[name] + statement.excluded[name] for name in MES_ACCOUNT_COLUMNS},
        )

    @functools.cached_property
    def _reason_statement(self) -> Any:
        table = mes_rollup_reason_table
        statement = self._upsert(table)
        return statement.on_conflict_do_update(
            index_elements=["asset", "kind", "start_ms", "reason_id"],
            set_={"loss_ms": table.c.loss_ms + statement.excluded.loss_ms},
        )

    def begin_write(self) -> Any:
        connection = self._engine.connect()
        connection.execution_options(**self._write_options)
        return connection

    # -- derived changes (historian writer thread only) ------------------------------------------
    def write_changes(self, changes: MesChanges, fence: FencingToken | None = None) -> None:
        with self.begin_write() as connection, connection.begin():
            if fence is not None:
                check_fence(connection, fence)
            self._write_keyed(connection, mes_state_interval_table, "start_ms", changes.intervals)
            self._write_keyed(connection, mes_count_table, "ts_ms", changes.counts)
            if changes.rollups:
                self._add_rollups(connection, changes.rollups)
            if changes.reasons:
                self._add_reasons(connection, changes.reasons)
            for hook in changes.hooks:
                hook(connection)
            # The same changes to the outbox, in this transaction (no-op without one).
            mes_changes_written(connection, changes)

    def _write_keyed(
        self,
        connection: sa.Connection,
        table: sa.Table,
        time_column: str,
        rows: Mapping[IntervalKey, StateInterval | ProducedCount | None],
    ) -> None:
        """The latest version of each keyed row: written over the stored one (an upsert),
        or deleted (None)."""
        if not rows:
            return
        delete, upsert = self._keyed_statements(table, time_column)
        gone = [{"k_asset": a, "k_ts": t} for (a, t), record in rows.items() if record is None]
        if gone:
            connection.execute(delete, gone)
        values = [_row(record) for record in rows.values() if record is not None]
        if values:
            self._execute_many(connection, upsert, values)

    def _keyed_statements(self, table: sa.Table, time_column: str) -> tuple[Any, Any]:
        found = self._keyed.get(table.name)
        if found is None:
            delete = table.delete().where(
                table.c.asset == sa.bindparam("k_asset"),
                table.c[time_column] == sa.bindparam("k_ts"),
            )
            statement = self._upsert(table)
            key = ("asset", time_column)
            upsert = statement.on_conflict_do_update(
                index_elements=list(key),
                set_={c.name: statement.excluded[c.name] for c in table.c if c.name not in key},
            )
            found = self._keyed[table.name] = (delete, upsert)
        return found

    def _add_rollups(
        self, connection: sa.Connection, rollups: Mapping[RollupRowKey, RollupIncrement]
    ) -> None:
        rows = [
            {
                "asset": asset,
                "kind": kind,
                "start_ms": start,
                "end_ms": inc.end_ms,
                "label": inc.label,
                **{name: inc.values.get(name, 0) for name in MES_ACCOUNT_COLUMNS},
            }
            for (asset, kind, start), inc in rollups.items()
        ]
        self._execute_many(connection, self._rollup_statement, rows)

    def _add_reasons(
        self, connection: sa.Connection, reasons: Mapping[tuple[str, str, int, str], int]
    ) -> None:
        rows = [
            {"asset": a, "kind": k, "start_ms": s, "reason_id": r, "loss_ms": ms}
            for (a, k, s, r), ms in reasons.items()
            if ms
        ]
        if rows:
            self._execute_many(connection, self._reason_statement, rows)

    def _execute_many(
        self, connection: sa.Connection, statement: Any, rows: list[dict[str, Any]]
    ) -> None:
        """``connection.execute(statement, rows)``; on SQLite through the driver, the statement
        compiled once: SQLAlchemy's processing of each row's parameters was most of the cost of
        the derived writes (a 1,000-asset plant writes 2,000 rollup rows every half second)."""
        compiled = self._compiled.get(id(statement)) if self._sqlite else None
        if compiled is None and self._sqlite:
            found = statement.compile(dialect=self._engine.dialect)
            order = found.positiontup
            if found.positional and order is not None and set(order) == set(rows[0]):
                compiled = self._compiled[id(statement)] = (statement, found.string, order)
        if compiled is None or compiled[0] is not statement:
            connection.execute(statement, rows)
            return
        values = operator.itemgetter(*compiled[2])
        connection.exec_driver_sql(compiled[1], [values(row) for row in rows])

    # -- reads --------------------------------------------------------------------------------
    def _interval(self, row: Any) -> StateInterval:
        mode = self._modes.get(row["mode"]) or Mode(row["mode"])
        return StateInterval(
            AssetPath.parse(row["asset"]),
            int(row["start_ms"]),
            None if row["end_ms"] is None else int(row["end_ms"]),
            int(row["code"]),
            StateType(row["state_type"]),
            row["reason_id"],
            mode,
        )

    def intervals(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[StateInterval]:
        """Intervals of ``asset`` overlapping [start_ms, end_ms), by start."""
        t = mes_state_interval_table
        name = str(asset)
        before = (
            sa.select(t)
            .where(t.c.asset == name, t.c.start_ms <= start_ms)
            .order_by(t.c.start_ms.desc())
            .limit(1)
        )
        inside = (
            sa.select(t)
            .where(t.c.asset == name, t.c.start_ms > start_ms, t.c.start_ms < end_ms)
            .order_by(t.c.start_ms)
        )
        with self._engine.connect() as connection:
            first = [dict(r) for r in connection.execute(before).mappings()]
            rest = [dict(r) for r in connection.execute(inside).mappings()]
        found = [self._interval(r) for r in first + rest]
        return [iv for iv in found if iv.end_ms is None or iv.end_ms > start_ms]

    def interval_at(self, asset: AssetPath, ts_ms: int) -> StateInterval | None:
        """The stored interval of ``asset`` containing ``ts_ms`` (an open one: from its start
        on), in one indexed query."""
        t = mes_state_interval_table
        query = (
            sa.select(t)
            .where(t.c.asset == str(asset), t.c.start_ms <= ts_ms)
            .order_by(t.c.start_ms.desc())
            .limit(1)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        found = None if row is None else self._interval(row)
        if found is None or (found.end_ms is not None and found.end_ms <= ts_ms):
            return None
        return found

    def open_intervals(self) -> list[StateInterval]:
        t = mes_state_interval_table
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(t).where(t.c.end_ms.is_(None))).mappings().all()
        return [self._interval(r) for r in rows]

    def intervals_since(self, asset: AssetPath, since_ms: int) -> list[StateInterval]:
        """Intervals that end after ``since_ms`` (or are open): to seed a builder at start."""
        t = mes_state_interval_table
        query = (
            sa.select(t)
            .where(t.c.asset == str(asset), sa.or_(t.c.end_ms.is_(None), t.c.end_ms > since_ms))
            .order_by(t.c.start_ms)
        )
        with self._engine.connect() as connection:
            return [self._interval(r) for r in connection.execute(query).mappings()]

    def counts(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[ProducedCount]:
        t = mes_count_table
        query = (
            sa.select(t)
            .where(t.c.asset == str(asset), t.c.ts_ms >= start_ms, t.c.ts_ms < end_ms)
            .order_by(t.c.ts_ms)
        )
        with self._engine.connect() as connection:
            return [
                ProducedCount(asset, int(r["ts_ms"]), int(r["total"]), int(r["reject"]),
                              bool(r["startup"]))
                for r in connection.execute(query).mappings()
            ]  # fmt: skip

    def last_count_ts(self, asset: AssetPath) -> int | None:
        t = mes_count_table
        query = sa.select(sa.func.max(t.c.ts_ms)).where(t.c.asset == str(asset))
        with self._engine.connect() as connection:
            value = connection.execute(query).scalar()
        return None if value is None else int(value)

    def rollup_total(
        self, assets: Sequence[AssetPath], kind: str, start_ms: int, end_ms: int
    ) -> TimeAccount:
        """Sum of the buckets of ``assets`` starting in [start_ms, end_ms), with reasons."""
        t, rt = mes_rollup_table, mes_rollup_reason_table
        names = [str(a) for a in assets]
        sums = sa.select(*(sa.func.sum(t.c[n]).label(n) for n in MES_ACCOUNT_COLUMNS)).where(
            t.c.asset.in_(names), t.c.kind == kind, t.c.start_ms >= start_ms, t.c.start_ms < end_ms
        )
        by_reason = (
            sa.select(rt.c.reason_id, sa.func.sum(rt.c.loss_ms))
            .where(
                rt.c.asset.in_(names),
                rt.c.kind == kind,
                rt.c.start_ms >= start_ms,
                rt.c.start_ms < end_ms,
            )
            .group_by(rt.c.reason_id)
        )
        with self._engine.connect() as connection:
            row = connection.execute(sums).mappings().one()
            reasons = [(r[0], int(r[1] or 0)) for r in connection.execute(by_reason)]
        return _account(row, reasons)

    def rollup_series(
        self, assets: Sequence[AssetPath], kind: str, start_ms: int, end_ms: int
    ) -> list[AccountRow]:
        """Buckets starting in [start_ms, end_ms), summed over ``assets`` per bucket start
        (without reasons: a trend does not need them). Each account's no-data time is the rest
        of the bucket's span times the number of assets."""
        t = mes_rollup_table
        names = [str(a) for a in assets]
        where = (
            t.c.asset.in_(names),
            t.c.kind == kind,
            t.c.start_ms >= start_ms,
            t.c.start_ms < end_ms,
        )
        if len(names) == 1:
            # One asset: its rows as stored, in key order -- no grouping (a year's trend of one
            # machine is the common question, and SUM/GROUP BY over 8,760 rows doubled it).
            query = (
                sa.select(t.c.start_ms, t.c.end_ms, t.c.label,
                          *(t.c[n] for n in MES_ACCOUNT_COLUMNS))
                .where(*where)
                .order_by(t.c.start_ms)
            )  # fmt: skip
        else:
            query = (
                sa.select(
                    t.c.start_ms,
                    sa.func.max(t.c.end_ms).label("end_ms"),
                    sa.func.max(t.c.label).label("label"),
                    *(sa.func.sum(t.c[n]).label(n) for n in MES_ACCOUNT_COLUMNS),
                )
                .where(*where)
                .group_by(t.c.start_ms)
                .order_by(t.c.start_ms)
            )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        width = len(names)  # each asset contributes the bucket's span once
        series = []
        covered = len(_COVERED_TIME_COLUMNS)
        for start, end, label, *sums in rows:  # plain tuples: a year is 8,760 rows
            values = [int(v or 0) for v in sums]
            no_data = (int(end) - int(start)) * width - sum(values[:covered])
            # Positional (see _ACCOUNT_ORDER): keyword dicts per row dominated a year's trend.
            account = TimeAccount(*values[:covered], no_data, *values[covered:], ())  # type: ignore[arg-type, call-arg]
            series.append(AccountRow(int(start), int(end), label, account))
        return series


def _row(record: StateInterval | ProducedCount) -> dict[str, Any]:
    if isinstance(record, StateInterval):
        return {
            "asset": str(record.asset),
            "start_ms": record.start_ms,
            "end_ms": record.end_ms,
            "code": record.code,
            "state_type": record.state_type.value,
            "reason_id": record.reason_id,
            "mode": record.mode.name,
        }
    return {
        "asset": str(record.asset),
        "ts_ms": record.ts_ms,
        "total": record.total,
        "reject": record.reject,
        "startup": record.startup,
    }
