"""Plant structure, production orders and runs in the database.

The plant structure is replaced as a whole on every load of the plant file (one transaction).
Orders and runs are operational records: the plant file only inserts the ones whose id is not
known yet; afterwards they change through these methods, which check the domain's rules (order
lifecycle, no overlapping runs on one asset) inside the transaction that writes them, under a
lock per asset, so two concurrent requests cannot both pass the check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from andon.domain import (
    AssetPath,
    AssetTree,
    DomainError,
    IdealRate,
    Item,
    OrderState,
    ProductionOrder,
    ReasonTree,
    Run,
    RunBook,
    ShiftCalendar,
    StateMap,
)
from andon.storage.engine import SQLITE_BEGIN_OPTION, is_sqlite
from andon.storage.outbox import records_changed
from andon.storage.schema import (
    mes_asset_table,
    mes_binding_table,
    mes_calendar_table,
    mes_ideal_rate_table,
    mes_item_table,
    mes_order_table,
    mes_reason_table,
    mes_run_table,
    mes_state_definition_table,
)

__all__ = ["PlantRecords", "RunHook", "RunRepository", "calendar_json"]

#: Called inside the transaction of a run change with (connection, before, after), e.g. to write
#: the audit entry: if it raises, the change rolls back with it.
RunHook = Callable[[sa.Connection, Run | None, Run | None], None]


def calendar_json(calendar: ShiftCalendar) -> str:
    return json.dumps(
        {
            "timezone": calendar.timezone,
            "holidays": sorted(d.isoformat() for d in calendar.holidays),
            "shifts": [
                {
                    "name": p.name,
                    "weekdays": sorted(p.weekdays),
                    "start": p.start.isoformat("minutes"),
                    "end": p.end.isoformat("minutes"),
                    "breaks": [
                        {
                            "name": b.name,
                            "start": b.start.isoformat("minutes"),
                            "end": b.end.isoformat("minutes"),
                        }
                        for b in p.breaks
                    ],
                }
                for p in calendar.patterns
            ],
        },
        sort_keys=True,
    )


class PlantRecords:
    """The plant structure, as ``save`` writes it (the plant file is its source)."""

    def __init__(
        self,
        tree: AssetTree,
        bindings: Mapping[str, tuple[AssetPath, str]],
        state_maps: Mapping[AssetPath, StateMap],
        counter_max: Mapping[AssetPath, int],
        reasons: ReasonTree,
        items: Iterable[Item],
        rates: Iterable[IdealRate],
        calendars: Mapping[AssetPath, ShiftCalendar],
    ) -> None:
        self.assets = [
            {"path": str(a.path), "position": i, "kind": a.kind.value, "name": a.name,
             "timezone": a.timezone, "counter_max": counter_max.get(a.path)}
            for i, a in enumerate(tree)
        ]  # fmt: skip
        self.bindings = [
            {"tag_path": tag, "asset": str(asset), "role": role}
            for tag, (asset, role) in bindings.items()
        ]
        self.states = [
            {"asset": str(asset), "code": d.code, "name": d.name, "state_type": d.type.value,
             "reason_id": d.default_reason}
            for asset, state_map in state_maps.items()
            for d in state_map.definitions.values()
        ]  # fmt: skip
        self.reasons = [
            {"id": r.id, "name": r.name, "parent_id": r.parent_id}
            for r in (*reasons.categories(), *_below(reasons))
        ]
        self.items = [{"id": i.id, "name": i.name} for i in items]
        self.rates = [
            {"item_id": r.item_id, "asset": str(r.asset),
             "cycle_ms_numerator": r.cycle_time_ms.numerator,
             "cycle_ms_denominator": r.cycle_time_ms.denominator}
            for r in rates
        ]  # fmt: skip
        self.calendars = [
            {"site": str(site), "definition_json": calendar_json(c)}
            for site, c in calendars.items()
        ]


def _below(reasons: ReasonTree) -> list[Any]:
    found, stack = [], list(reasons.categories())
    while stack:
        for child in reasons.children(stack.pop().id):
            found.append(child)
            stack.append(child)
    return found


def _run(row: Any) -> Run:
    end = row["end_ms"]
    return Run(
        row["id"],
        row["order_id"],
        AssetPath.parse(row["asset"]),
        int(row["start_ms"]),
        None if end is None else int(end),
    )


class RunRepository:
    """Plant structure, orders and runs on one engine (shared with ``MesRepository``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine.url)
        self._options = {SQLITE_BEGIN_OPTION: "IMMEDIATE"} if self._sqlite else {}

    def _write(self) -> sa.Connection:
        connection = self._engine.connect()
        connection.execution_options(**self._options)
        return connection

    def save_plant(self, plant: PlantRecords) -> None:
        tables = (
            (mes_asset_table, plant.assets),
            (mes_binding_table, plant.bindings),
            (mes_state_definition_table, plant.states),
            (mes_reason_table, plant.reasons),
            (mes_item_table, plant.items),
            (mes_ideal_rate_table, plant.rates),
            (mes_calendar_table, plant.calendars),
        )
        with self._write() as connection, connection.begin():
            for table, rows in tables:
                connection.execute(table.delete())
                if rows:
                    connection.execute(table.insert(), rows)

    def insert_missing(self, orders: Iterable[ProductionOrder], runs: Iterable[Run]) -> int:
        """Orders and runs whose id is unknown (from the plant file); returns how many."""
        added = 0
        with self._write() as connection, connection.begin():
            known = set(connection.execute(sa.select(mes_order_table.c.id)).scalars())
            for order in orders:
                if order.id not in known:
                    connection.execute(mes_order_table.insert(), [_order_row(order)])
                    records_changed(connection, "order", [(order.id,)])
                    added += 1
            known_runs = set(connection.execute(sa.select(mes_run_table.c.id)).scalars())
            for run in runs:
                if run.id not in known_runs:
                    self._check_free(connection, run, None)
                    connection.execute(mes_run_table.insert(), [_run_row(run)])
                    records_changed(connection, "run", [(run.id,)])
                    added += 1
        return added

    # -- orders ---------------------------------------------------------------------------------
    def orders(self) -> list[ProductionOrder]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(mes_order_table)).mappings().all()
        return [
            ProductionOrder(r["id"], r["item_id"], int(r["quantity"]), OrderState(r["state"]))
            for r in rows
        ]

    def add_order(self, order: ProductionOrder) -> ProductionOrder:
        with self._write() as connection, connection.begin():
            if connection.execute(
                sa.select(mes_order_table.c.id).where(mes_order_table.c.id == order.id)
            ).first():
                raise DomainError(f"order {order.id!r} already exists")
            connection.execute(mes_order_table.insert(), [_order_row(order)])
            records_changed(connection, "order", [(order.id,)])
        return order

    def set_order_state(self, order_id: str, state: OrderState) -> ProductionOrder:
        with self._write() as connection, connection.begin():
            row = (
                connection.execute(
                    sa.select(mes_order_table).where(mes_order_table.c.id == order_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise DomainError(f"unknown order {order_id!r}")
            order = ProductionOrder(
                row["id"], row["item_id"], int(row["quantity"]), OrderState(row["state"])
            ).transition(state)
            connection.execute(
                mes_order_table.update()
                .where(mes_order_table.c.id == order_id)
                .values(state=order.state.value)
            )
            records_changed(connection, "order", [(order_id,)])
        return order

    # -- runs -----------------------------------------------------------------------------------
    def runs(self, asset: AssetPath | None = None) -> list[Run]:
        t = mes_run_table
        query = sa.select(t).order_by(t.c.asset, t.c.start_ms)
        if asset is not None:
            query = query.where(t.c.asset == str(asset))
        with self._engine.connect() as connection:
            return [_run(r) for r in connection.execute(query).mappings()]

    def get_run(self, run_id: str) -> Run | None:
        t = mes_run_table
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(t).where(t.c.id == run_id)).mappings().first()
        return None if row is None else _run(row)

    def add_run(self, run: Run, hook: RunHook | None = None) -> Run:
        """A run with its start and (optional) end, e.g. a manual patch-up of a missed run."""
        with self._write() as connection, connection.begin():
            return self.add_run_in(connection, run, hook)

    def start_run(
        self,
        run_id: str,
        order_id: str,
        asset: AssetPath,
        start_ms: int,
        hook: RunHook | None = None,
    ) -> Run:
        return self.add_run(Run(run_id, order_id, asset, start_ms, None), hook)

    def end_run(self, run_id: str, end_ms: int, hook: RunHook | None = None) -> Run:
        with self._write() as connection, connection.begin():
            return self.end_run_in(connection, run_id, end_ms, hook)

    def edit_run(self, run: Run, hook: RunHook | None = None) -> tuple[Run, Run]:
        """Replace the stored run of ``run.id`` (same asset) by ``run``; returns (old, new)."""
        with self._write() as connection, connection.begin():
            return self.edit_run_in(connection, run, hook)

    def delete_run(self, run_id: str, hook: RunHook | None = None) -> Run:
        with self._write() as connection, connection.begin():
            return self.delete_run_in(connection, run_id, hook)

    # The same changes inside the caller's transaction (an MES derived write, so that a run
    # change and the rollups it re-rates commit together).
    def add_run_in(self, connection: sa.Connection, run: Run, hook: RunHook | None = None) -> Run:
        if connection.execute(
            sa.select(mes_run_table.c.id).where(mes_run_table.c.id == run.id)
        ).first():
            raise DomainError(f"run {run.id!r} already exists")
        self._check_order(connection, run)
        self._check_free(connection, run, None)
        connection.execute(mes_run_table.insert(), [_run_row(run)])
        records_changed(connection, "run", [(run.id,)])
        if hook is not None:
            hook(connection, None, run)
        return run

    def end_run_in(
        self, connection: sa.Connection, run_id: str, end_ms: int, hook: RunHook | None = None
    ) -> Run:
        run = self._locked_run(connection, run_id)
        if run.end_ms is not None:
            raise DomainError(f"run {run_id!r} has already ended at {run.end_ms}")
        ended = replace(run, end_ms=end_ms)  # Run checks end > start
        self._check_free(connection, ended, run)
        connection.execute(
            mes_run_table.update().where(mes_run_table.c.id == run_id).values(end_ms=end_ms)
        )
        records_changed(connection, "run", [(run_id,)])
        if hook is not None:
            hook(connection, run, ended)
        return ended

    def edit_run_in(
        self, connection: sa.Connection, run: Run, hook: RunHook | None = None
    ) -> tuple[Run, Run]:
        old = self._locked_run(connection, run.id)
        if old.asset != run.asset:
            raise DomainError(f"run {run.id!r} cannot move to another asset")
        self._check_order(connection, run)
        self._check_free(connection, run, old)
        row = _run_row(run)
        del row["id"]
        connection.execute(mes_run_table.update().where(mes_run_table.c.id == run.id).values(**row))
        records_changed(connection, "run", [(run.id,)])
        if hook is not None:
            hook(connection, old, run)
        return old, run

    def delete_run_in(
        self, connection: sa.Connection, run_id: str, hook: RunHook | None = None
    ) -> Run:
        old = self._locked_run(connection, run_id)
        connection.execute(mes_run_table.delete().where(mes_run_table.c.id == run_id))
        records_changed(connection, "run", [(run_id,)])  # a tombstone
        if hook is not None:
            hook(connection, old, None)
        return old

    def _locked_run(self, connection: sa.Connection, run_id: str) -> Run:
        t = mes_run_table
        query = sa.select(t).where(t.c.id == run_id)
        if not self._sqlite:
            query = query.with_for_update()
        row = connection.execute(query).mappings().first()
        if row is None:
            raise DomainError(f"unknown run {run_id!r}")
        return _run(row)

    def _check_order(self, connection: sa.Connection, run: Run) -> None:
        t = mes_order_table
        if not connection.execute(sa.select(t.c.id).where(t.c.id == run.order_id)).first():
            raise DomainError(f"run {run.id!r}: unknown order {run.order_id!r}")

    def _check_free(self, connection: sa.Connection, run: Run, old: Run | None) -> None:
        """The domain's overlap rule against the asset's runs, read under a per-asset lock
        (PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE already serialises writers)."""
        if not self._sqlite:
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"mes_run:{run.asset}"},
            )
        t = mes_run_table
        rows = connection.execute(sa.select(t).where(t.c.asset == str(run.asset))).mappings()
        book = RunBook(run.asset, [r for r in map(_run, rows) if old is None or r.id != old.id])
        book.add(run)


def _order_row(order: ProductionOrder) -> dict[str, Any]:
    return {
        "id": order.id,
        "item_id": order.item_id,
        "quantity": order.quantity,
        "state": order.state.value,
    }


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "order_id": run.order_id,
        "asset": str(run.asset),
        "start_ms": run.start_ms,
        "end_ms": run.end_ms,
    }
